"""Every physical AWS name the stack uses, built in one place and valid by construction.

Each kind of name has a `NameRule` (AWS's rules as a checker) and a builder that normalizes
(lowercases where AWS requires, replaces characters AWS rejects, collapses separators) and
shortens over-long names with a short stable hash. A builder never returns an invalid name: it
checks its own result and raises if the rule still fails.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field, fields
from typing import Any, Callable

HASH_LEN = 8


def suffix_key(suffix: str) -> str:
    """The stack suffix as physical names see it: create() lowercases it, so suffixes with the
    same key (prod, Prod, PROD) would name the same resources and must count as one stack."""
    return suffix.lower()


def short_hash(*parts: str, length: int = HASH_LEN) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class NameRule:
    kind: str
    max_len: int
    min_len: int = 1
    charset: str = r"A-Za-z0-9-"          # regex character-class body
    lowercase: bool = False
    first: str | None = None              # class body the first character must match
    last: str | None = None               # class body the last character must match
    no_double: tuple[str, ...] = ()       # forbidden repeated separators such as "--", ".."
    extra: Callable[[str], list[str]] | None = None

    def problems(self, name: str) -> list[str]:
        """Empty when `name` is valid; otherwise one sentence per broken rule."""
        out: list[str] = []
        if not self.min_len <= len(name) <= self.max_len:
            out.append(f"length {len(name)} is outside {self.min_len}-{self.max_len}")
        bad = sorted(set(re.sub(f"[{self.charset}]", "", name)))
        if bad:
            out.append(f"characters not allowed: {''.join(bad)!r} (allowed: [{self.charset}])")
        if self.lowercase and name != name.lower():
            out.append("must be lowercase")
        if name and self.first and not re.match(f"[{self.first}]", name[0]):
            out.append(f"must start with [{self.first}]")
        if name and self.last and not re.match(f"[{self.last}]", name[-1]):
            out.append(f"must end with [{self.last}]")
        for sep in self.no_double:
            if sep in name:
                out.append(f"must not contain {sep!r}")
        if self.extra:
            out.extend(self.extra(name))
        return out

    def is_valid(self, name: str) -> bool:
        return not self.problems(name)


def _bucket_extra(name: str) -> list[str]:
    out = []
    try:
        ipaddress.IPv4Address(name)
        out.append("must not be formatted as an IP address")
    except ValueError:
        pass
    for prefix in ("xn--", "sthree-", "amzn-s3-demo-"):
        if name.startswith(prefix):
            out.append(f"must not start with {prefix!r}")
    for suffix in ("-s3alias", "--ol-s3", ".mrap", "--x-s3"):
        if name.endswith(suffix):
            out.append(f"must not end with {suffix!r}")
    return out


def _secret_extra(name: str) -> list[str]:
    # Secrets Manager appends '-' + 6 random characters to ARNs; a name that already ends that
    # way makes partial-ARN lookups ambiguous.
    if re.search(r"-[A-Za-z0-9]{6}$", name):
        return ["must not end with '-' followed by six characters (looks like an ARN suffix)"]
    return []


def _subnet_group_extra(name: str) -> list[str]:
    return ["must not be 'default'"] if name == "default" else []


def _sg_extra(name: str) -> list[str]:
    return ["must not start with 'sg-'"] if name.lower().startswith("sg-") else []


def _kms_extra(name: str) -> list[str]:
    out = [] if name.startswith("alias/") else ["must start with 'alias/'"]
    if name.startswith("alias/aws/"):
        out.append("'alias/aws/' is reserved for AWS managed keys")
    return out


RULES: dict[str, NameRule] = {
    "rds_cluster": NameRule("rds_cluster", 63, charset="a-z0-9-", lowercase=True, first="a-z",
                            last="a-z0-9", no_double=("--",)),
    "rds_instance": NameRule("rds_instance", 63, charset="a-z0-9-", lowercase=True, first="a-z",
                             last="a-z0-9", no_double=("--",)),
    "db_subnet_group": NameRule("db_subnet_group", 255, charset="a-z0-9_ .-", lowercase=True,
                                extra=_subnet_group_extra),
    "s3_bucket": NameRule("s3_bucket", 63, min_len=3, charset="a-z0-9.-", lowercase=True,
                          first="a-z0-9", last="a-z0-9", no_double=("..",), extra=_bucket_extra),
    "secret": NameRule("secret", 512, charset="A-Za-z0-9/_+=.@-", extra=_secret_extra),
    "lambda_function": NameRule("lambda_function", 64, charset="A-Za-z0-9_-"),
    "iam_role": NameRule("iam_role", 64, charset="A-Za-z0-9_+=,.@-"),
    "log_group": NameRule("log_group", 512, charset="A-Za-z0-9._/#-"),
    "security_group": NameRule("security_group", 255, charset="A-Za-z0-9 ._:/()#,@\\[\\]+=&;{}!$*-",
                               extra=_sg_extra),
    "kms_alias": NameRule("kms_alias", 256, charset="A-Za-z0-9/_-", extra=_kms_extra),
    # cluster parameter group, SQS queue, AWS Backup vault/plan/selection
    "rds_parameter_group": NameRule("rds_parameter_group", 255, charset="a-z0-9-",
                                    lowercase=True, first="a-z", last="a-z0-9",
                                    no_double=("--",)),
    "sqs_queue": NameRule("sqs_queue", 80, charset="A-Za-z0-9_-"),
    "backup_vault": NameRule("backup_vault", 50, min_len=2, charset="A-Za-z0-9_-"),
    "backup_plan": NameRule("backup_plan", 50, charset="A-Za-z0-9_.-"),
    "backup_selection": NameRule("backup_selection", 50, charset="A-Za-z0-9_.-"),
}


class InvalidName(ValueError):
    """A builder could not produce a valid name (a bug: builders must always succeed)."""


def build(kind: str, *parts: str) -> str:
    """Join parts with '-', normalize for `kind`, repair what AWS reserves, shorten with a hash
    if needed, and verify. Names that need no repair come out exactly as joined."""
    rule = RULES[kind]
    raw = "-".join(p for p in parts if p)
    name = raw.lower() if rule.lowercase else raw
    if kind == "kms_alias":
        name = "alias/" + name.removeprefix("alias/")
    name = re.sub(f"[^{rule.charset}]", "-", name)
    if "-" in rule.charset:
        name = re.sub(r"-{2,}", "-", name)
    if "." in rule.charset:
        name = re.sub(r"\.{2,}", ".", name)
    name = name.strip("-. ")
    if rule.first and name and not re.match(f"[{rule.first}]", name[0]):
        name = "x" + name
    digest = short_hash(raw)
    for candidate in _repairs(kind, name, digest):
        candidate = _fit(candidate, rule, digest)
        if rule.is_valid(candidate):
            return candidate
    raise InvalidName(f"{kind} name {name!r} from {parts!r}: {'; '.join(rule.problems(name))}")


def _repairs(kind: str, name: str, digest: str) -> list[str]:
    """Candidates in order of preference: as is; with a hash appended (fixes too-short names,
    reserved suffixes, 'default', a secret ending like an ARN suffix); with a harmless prefix
    (fixes reserved prefixes and IP-shaped bucket names)."""
    if kind == "kms_alias":
        body = name.removeprefix("alias/")
        return [name, f"alias/x-{body}", f"alias/x-{body}-{digest}"]
    return [name, f"{name}-{digest}" if name else digest, f"x-{name}", f"x-{name}-{digest}"]


def _fit(name: str, rule: NameRule, digest: str) -> str:
    """Shorten an over-long name to the rule's maximum, keeping it unique with the hash."""
    if len(name) <= rule.max_len:
        return name
    head = name[: rule.max_len - HASH_LEN - 1].rstrip("-. ")
    return f"{head}-{digest}"


def _kind(kind: str) -> Any:
    """A PhysicalNames field whose names follow RULES[kind]."""
    return field(metadata={"kind": kind})


@dataclass(frozen=True)
class PhysicalNames:
    """All physical names of one stack. Built from (project, suffix, region, account)."""

    rds_cluster: str = _kind("rds_cluster")
    rds_instances: tuple[str, ...] = _kind("rds_instance")
    db_subnet_group: str = _kind("db_subnet_group")
    db_security_group: str = _kind("security_group")
    lambda_security_group: str = _kind("security_group")
    s3_bucket: str = _kind("s3_bucket")
    s3_access_log_bucket: str = _kind("s3_bucket")
    endpoint_security_group: str = _kind("security_group")
    db_secret: str = _kind("secret")
    payment_function: str = _kind("lambda_function")
    rotation_function: str = _kind("lambda_function")
    payment_role: str = _kind("iam_role")
    rotation_role: str = _kind("iam_role")
    flow_logs_role: str = _kind("iam_role")
    payment_log_group: str = _kind("log_group")
    rotation_log_group: str = _kind("log_group")
    flow_log_group: str = _kind("log_group")
    kms_alias: str = _kind("kms_alias")
    # TLS parameter group, enhanced monitoring, payment DLQ, AWS Backup
    db_cluster_parameter_group: str = _kind("rds_parameter_group")
    monitoring_role: str = _kind("iam_role")
    payment_dlq: str = _kind("sqs_queue")
    backup_vault: str = _kind("backup_vault")
    backup_plan: str = _kind("backup_plan")
    backup_selection: str = _kind("backup_selection")
    backup_role: str = _kind("iam_role")

    @classmethod
    def create(cls, project: str, suffix: str, region: str, account_id: str,
               db_instances: int = 1, db_major: str = "") -> "PhysicalNames":
        p, s = project.lower(), suffix_key(suffix)
        payment_fn = build("lambda_function", p, "payment", s)
        rotation_fn = build("lambda_function", p, "db-rotation", s)
        cluster = build("rds_cluster", p, "payments", s)
        return cls(
            rds_cluster=cluster,
            rds_instances=tuple(build("rds_instance", cluster, str(i + 1))
                                for i in range(db_instances)),
            db_subnet_group=build("db_subnet_group", p, "db-subnets", s),
            db_security_group=build("security_group", p, "db", s),
            lambda_security_group=build("security_group", p, "payment-lambda", s),
            # Globally unique yet stable: a hash of (account, region, stack) instead of a random
            # suffix, so the same stack gets the same bucket on every run.
            s3_bucket=build("s3_bucket", p, "txlogs", s,
                            short_hash(account_id, region, f"{project}{suffix}".lower())),
            # Same stable scheme as the transaction logs: its server access logs (S3.9).
            s3_access_log_bucket=build("s3_bucket", p, "accesslogs", s,
                                       short_hash(account_id, region, f"{project}{suffix}".lower())),
            endpoint_security_group=build("security_group", p, "endpoints", s),
            db_secret=build("secret", p, s, "db", "app-credentials"),
            payment_function=payment_fn,
            rotation_function=rotation_fn,
            payment_role=build("iam_role", p, "payment", s),
            rotation_role=build("iam_role", p, "db-rotation", s),
            flow_logs_role=build("iam_role", p, "flow-logs", s),
            payment_log_group=build("log_group", "/aws/lambda/" + payment_fn),
            rotation_log_group=build("log_group", "/aws/lambda/" + rotation_fn),
            flow_log_group=build("log_group", f"/{p}/{s}/vpc-flow-logs"),
            kms_alias=build("kms_alias", f"alias/{p}-{s}"),
            # the engine's major in the name: an upgrade creates the new family's group
            # beside the one the cluster still uses, instead of replacing a group in use
            db_cluster_parameter_group=build("rds_parameter_group", p, "aurora-tls",
                                             f"pg{db_major}" if db_major else "", s),
            monitoring_role=build("iam_role", p, "rds-monitoring", s),
            payment_dlq=build("sqs_queue", p, "payment-dlq", s),
            backup_vault=build("backup_vault", p, "vault", s),
            backup_plan=build("backup_plan", p, "daily", s),
            backup_selection=build("backup_selection", p, "aurora", s),
            backup_role=build("iam_role", p, "backup", s),
        )

    def items(self) -> list[tuple[str, str, str]]:
        """(field, rule kind, name) for every name, for tables and validation."""
        rows = []
        for f in fields(self):
            value = getattr(self, f.name)
            for name in (value if isinstance(value, tuple) else (value,)):
                rows.append((f.name, f.metadata["kind"], name))
        return rows
