"""Verify: read-only checks that the deployed stack is what its environment file declares.

Two phases keep the AWS calls proportional to resource kinds, not to checks x resources:
`read_facts` fetches each kind once (one describe per kind, shared by every check; in a fleet,
once per region for all its stacks where AWS can filter by several ids), then
each check family in `CHECKS` is a pure function of (declared stack, facts). A new check is one
more function in `CHECKS`; it costs no AWS call unless it needs a new kind of fact.
The facts come from `facts.py` (the reading); this module only judges them. Secret values
appear in no check, note or error: they are compared as digests.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import pandas as pd

from ..config import Settings
from ..engines.base import Engine
from ..controls import MIN_BACKUP_DAYS
from ..errors import NotDeployed
from . import hardening_compute, hardening_data, hardening_storage, smoke
from .checks import MISSING, Check, Declared, apply_exception, check, text  # noqa: F401
from .facts import (PASSWORD_KEY, CallCounter, Clients, Facts, Reading, digest, read_facts,
                    tags_of)
from .hardening_network import network_hardening_checks
from .hardening import (database_hardening_checks, function_key_checks, log_group_checks,
                        role_trust_checks, secret_checks)
from .gating import engine_for

COLUMNS = ["id", "control", "resource", "expected", "actual", "status"]
REQUIRED_TAGS = ("Project", "Environment", "Stack", "ManagedBy")
ENGINE = "aurora-postgresql"
WORLD = ("0.0.0.0/0", "::/0")
TIERS = ("public", "private", "other")


# -- the report ----------------------------------------------------------------------------
@dataclass
class VerifyReport:
    stack: str
    target: str
    checks: pd.DataFrame
    aws_calls: int | float    # its own calls plus its share of calls made for a whole fleet
    calls: list[str] = field(default_factory=list)    # "service.Operation": own, then shared
    notes: list[str] = field(default_factory=list)
    shared_by: int = 1        # stacks that shared the group's describes (a fleet's region)

    @property
    def passed(self) -> int:
        return int((self.checks["status"] == "pass").sum())

    @property
    def failed(self) -> int:
        return int((self.checks["status"] == "fail").sum())

    @property
    def excepted(self) -> int:
        return int((self.checks["status"] == "excepted").sum())

    @property
    def unverified(self) -> int:
        """Checks the target cannot answer (an emulator gap, named in the notes): not passes."""
        return int((self.checks["status"] == hardening_data.UNVERIFIED).sum())

    def to_dict(self) -> dict:
        return {"stack": self.stack, "target": self.target,
                "checks": self.checks.to_dict("records"),
                "summary": {"passed": self.passed, "failed": self.failed,
                            "excepted": self.excepted, "unverified": self.unverified,
                            "aws_calls": self.aws_calls},
                "notes": self.notes}


# -- checks ----------------------------------------------------------------------------------
def network_checks(d: Declared, f: Facts) -> list[Check]:
    vpc_id = d.outputs.get("vpc_id")
    active = [fl for fl in f.flow_logs if fl.get("FlowLogStatus") == "ACTIVE"]
    return [
        check("vpc.cidr", "", vpc_id, d.settings.vpc.cidr, (f.vpc or {}).get("CidrBlock")),
        check("vpc.dns-support", "", vpc_id, True, f.dns.get("enableDnsSupport")),
        check("vpc.dns-hostnames", "", vpc_id, True, f.dns.get("enableDnsHostnames")),
        check("vpc.flow-logs", "EC2.6", vpc_id, "ALL traffic, active",
              [f"{fl['TrafficType']} traffic, active" for fl in active] or "none active",
              ok=any(fl.get("TrafficType") == "ALL" for fl in active)),
        *subnet_checks(d, f),
    ]


def subnet_checks(d: Declared, f: Facts) -> list[Check]:
    """Per AZ: exactly the declared public and private subnet, with the declared CIDRs."""
    tiers = {**{s: "public" for s in d.ids("public_subnet_ids")},
             **{s: "private" for s in d.ids("private_subnet_ids")}}
    public, private = d.settings.subnet_cidrs()
    out = []
    for i, az in enumerate(d.settings.availability_zones):
        found = sorted(((tiers.get(s["SubnetId"], "other"), s["CidrBlock"])
                        for s in f.subnets.values() if s["AvailabilityZone"] == az),
                       key=lambda t: (TIERS.index(t[0]), t[1]))
        out.append(check("subnets.per-az", "", az, [f"public {public[i]}", f"private {private[i]}"],
                         [f"{tier} {cidr}" for tier, cidr in found]))
    return out


def nat_checks(d: Declared, f: Facts) -> list[Check]:
    """NAT gateways per the layout (one, or one per AZ), each in a public subnet with a VPC EIP;
    every private subnet's default route goes through one of them."""
    vpc_id, want = d.outputs.get("vpc_id"), d.settings.nat_count
    public = set(d.ids("public_subnet_ids"))
    available = [n for n in f.nat_gateways if n["State"] == "available"]
    placed = {n["SubnetId"] for n in available if n["SubnetId"] in public}
    elsewhere = len(available) - sum(n["SubnetId"] in public for n in available)
    eips = [a["AllocationId"] for n in available for a in n.get("NatGatewayAddresses", [])
            if a.get("AllocationId") in f.addresses]
    actual_nat = f"{len(placed)} in public subnets" + (f", {elsewhere} elsewhere"
                                                       if elsewhere else "")
    return [
        check("nat.gateways", "", vpc_id, f"{want} in public subnets", actual_nat,
              ok=len(placed) == want and not elsewhere),
        check("nat.eips", "", vpc_id, f"{want} Elastic IP(s), domain vpc",
              f"{len(eips)} Elastic IP(s), domain vpc"),
        *(private_route_check(subnet, f, {n["NatGatewayId"] for n in available})
          for subnet in d.ids("private_subnet_ids")),
    ]


def private_route_check(subnet: str, f: Facts, nats: set[str]) -> Check:
    explicit = [t for t in f.route_tables
                if any(a.get("SubnetId") == subnet for a in t.get("Associations", []))]
    main = [t for t in f.route_tables if any(a.get("Main") for a in t.get("Associations", []))]
    routes = (explicit or main or [{}])[0].get("Routes", [])
    target = next((r.get("NatGatewayId") or r.get("GatewayId") or r.get("TransitGatewayId")
                   for r in routes if r.get("DestinationCidrBlock") == "0.0.0.0/0"), None)
    return check("routes.private-via-nat", "", subnet, "0.0.0.0/0 via a stack NAT gateway",
                 f"0.0.0.0/0 via {target}" if target else "no default route",
                 ok=target in nats)


def _rules(perm: dict) -> list[str]:
    """One 'proto ports from source' string per source of a security group permission."""
    proto = "all" if perm.get("IpProtocol") == "-1" else perm.get("IpProtocol")
    ports = "" if perm.get("FromPort") in (None, -1) else (
        f" {perm['FromPort']}" if perm["FromPort"] == perm.get("ToPort")
        else f" {perm['FromPort']}-{perm.get('ToPort')}")
    sources = ([g["GroupId"] for g in perm.get("UserIdGroupPairs", [])]
               + [r["CidrIp"] for r in perm.get("IpRanges", [])]
               + [r["CidrIpv6"] for r in perm.get("Ipv6Ranges", [])]
               + [p["PrefixListId"] for p in perm.get("PrefixListIds", [])])
    return [f"{proto}{ports} from {src}" for src in sources]


def world_ingress(group: dict) -> list[str]:
    return [r for p in group.get("IpPermissions", []) for r in _rules(p)
            if r.endswith(WORLD)]


def security_group_checks(d: Declared, f: Facts) -> list[Check]:
    """No stack security group admits the internet; the database admits only the Lambda SG."""
    out = [check("sg.no-world-ingress", "EC2.18", g["GroupName"],
                 "no ingress from 0.0.0.0/0 or ::/0", world_ingress(g) or "none",
                 ok=not world_ingress(g))
           for g in f.security_groups.values() if g.get("GroupName") != "default"]
    payment = (f.functions.get(d.outputs.get("lambda_function_name")) or {})
    lambda_sgs = sorted(payment.get("Configuration", {}).get("VpcConfig", {})
                        .get("SecurityGroupIds", []))
    port = d.settings.db.port
    expected = [f"tcp {port} from {sg}" for sg in lambda_sgs] or "tcp from the Lambda SG"
    for ref in (f.cluster or {}).get("VpcSecurityGroups", []):
        group = f.security_groups.get(ref["VpcSecurityGroupId"], {})
        rules = sorted(r for p in group.get("IpPermissions", []) for r in _rules(p))
        out.append(check("sg.db-ingress", "", group.get("GroupName", ref["VpcSecurityGroupId"]),
                         expected, rules or "none", ok=bool(lambda_sgs) and rules == expected))
    return out


def database_checks(d: Declared, f: Facts) -> list[Check]:
    c, db = f.cluster or {}, d.settings.db
    cid = d.outputs.get("rds_cluster_id")
    backups = c.get("BackupRetentionPeriod")
    # RDS.11's 7 days, or more where the file asks for more (then less is drift).
    need = max(MIN_BACKUP_DAYS, db.backup_retention_days)
    out = [
        check("rds.status", "", cid, "available", c.get("Status")),
        check("rds.engine", "", cid, ENGINE, c.get("Engine")),
        check("rds.engine-version", "", cid, db.engine_version, c.get("EngineVersion")),
        check("rds.encrypted", "RDS.27", cid, True, c.get("StorageEncrypted")),
        # Judged as the controls define them, not as the environment file declares: an
        # environment that differs on purpose carries a policy exception (then `excepted`).
        check("rds.deletion-protection", "RDS.7", cid, True, c.get("DeletionProtection"),
              logical=d.logical("aurora-cluster")),
        check("rds.backups", "RDS.11", cid, f">= {need} day(s)",
              None if backups is None else f"{backups} day(s)", ok=(backups or 0) >= need,
              logical=d.logical("aurora-cluster")),
        check("rds.instances", "", cid, db.instances, len(f.instances)),
    ]
    out += [check("rds.not-public", "RDS.2", i["DBInstanceIdentifier"], False,
                  i.get("PubliclyAccessible")) for i in f.instances]
    return out


def function_checks(d: Declared, f: Facts) -> list[Check]:
    out = []
    for name, fn in f.functions.items():
        conf = (fn or {}).get("Configuration", {})
        out.append(subnet_placement_check(d, name, conf.get("VpcConfig") if fn else None))
        out.append(password_check(name, conf, f.secret_digests))
    payment = d.outputs.get("lambda_function_name")
    env = _env((f.functions.get(payment) or {}).get("Configuration", {}))
    secret_arn = d.outputs.get("db_secret_arn") or ""
    out += [check("lambda.secret-ref", "", payment, arn_display(secret_arn, secret_arn),
                  arn_display(env.get("DB_SECRET_ARN"), secret_arn),
                  ok=env.get("DB_SECRET_ARN") == secret_arn),
            check("lambda.bucket-ref", "", payment, d.outputs.get("s3_bucket_name"),
                  env.get("BUCKET_NAME"))]
    return out


def subnet_placement_check(d: Declared, name: str, vpc_config: dict | None) -> Check:
    """Lambda.5: in exactly the private subnets, one per AZ (so in several AZs)."""
    private = d.ids("private_subnet_ids")
    public = set(d.ids("public_subnet_ids"))
    want = f"the {len(private)} private subnets"
    subnets = sorted((vpc_config or {}).get("SubnetIds", []))
    if vpc_config is None:
        actual = None
    elif set(subnets) == set(private):
        actual = want
    else:
        actual = [f"{s} ({'public' if s in public else 'private' if s in private else 'other'})"
                  for s in subnets] or "not in the VPC"
    return check("lambda.private-subnets", "Lambda.5", name, want, actual)


def arn_display(value: str | None, reference: str) -> str | None:
    """An ARN in the reference's account and region reads as its resource part."""
    prefix = ":".join(reference.split(":")[:5]) + ":"
    return value[len(prefix):] if value and reference and value.startswith(prefix) else value


def _env(conf: dict) -> dict[str, str]:
    return (conf.get("Environment") or {}).get("Variables") or {}


def sensitive(key: str, value: Any, digests: frozenset[str] | None) -> bool:
    """A variable that holds (or is named like) a password."""
    return bool(PASSWORD_KEY.search(key)) or (
        isinstance(value, str) and digests is not None and digest(value) in digests)


def password_check(name: str, conf: dict, digests: frozenset[str] | None) -> Check:
    """Names the offending variables only: their values may be the password itself."""
    found = sorted(k for k, v in _env(conf).items() if sensitive(k, v, digests))
    return check("lambda.no-password", "", name, "no password in environment",
                 f"password in {', '.join(found)}" if found else "no password in environment")


def bucket_checks(d: Declared, f: Facts) -> list[Check]:
    b, name = f.bucket, d.outputs.get("s3_bucket_name")
    algorithms = [r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm")
                  for r in b.encryption or []]
    pab = b.public_access_block
    off = [k for k, v in (pab or {}).items() if v is not True]
    statements = (b.policy or {}).get("Statement", [])
    tls = any(s.get("Effect") == "Deny" and str((s.get("Condition") or {}).get("Bool", {})
                                                .get("aws:SecureTransport")).lower() == "false"
              for s in statements)
    enabled = [r for r in b.lifecycle or [] if r.get("Status") == "Enabled"]
    return [
        check("s3.versioning", "S3.14", name, "Enabled", b.versioning),
        check("s3.encryption", "S3.17", name, "aws:kms", algorithms or "none"),
        check("s3.public-access-block", "S3.8", name, "all four flags on",
              "none" if pab is None else (f"off: {', '.join(off)}" if off
                                          else "all four flags on"),
              ok=pab is not None and len(pab) == 4 and not off),
        check("s3.tls-only", "S3.5", name, "Deny when aws:SecureTransport=false",
              "Deny when aws:SecureTransport=false" if tls
              else ("no such statement" if b.policy else "no bucket policy")),
        check("s3.lifecycle", "S3.13", name, ">= 1 enabled rule",
              f"{len(enabled)} enabled rule(s)", ok=bool(enabled)),
    ]


def tag_checks(d: Declared, f: Facts) -> list[Check]:
    want = {k: d.settings.all_tags()[k] for k in REQUIRED_TAGS}
    tagged = {d.outputs.get("vpc_id"): tags_of((f.vpc or {}).get("Tags")) if f.vpc else None,
              d.outputs.get("rds_cluster_id"):
                  tags_of(f.cluster.get("TagList")) if f.cluster else None,
              d.outputs.get("s3_bucket_name"): f.bucket.tags,
              **{n: fn.get("Tags", {}) if fn else None for n, fn in f.functions.items()}}
    return [tag_check(resource, want, tags) for resource, tags in tagged.items()]


def tag_check(resource: str | None, want: dict[str, str], tags: dict[str, str] | None) -> Check:
    """Shows only the tags that differ, to keep the table narrow."""
    wrong = [f"{k}={tags.get(k, MISSING)}" for k, v in want.items() if tags.get(k) != v] \
        if tags is not None else ["(resource missing)"]
    return check("tags.required", "", resource, [f"{k}={v}" for k, v in want.items()],
                 wrong or "as expected", ok=not wrong)


CHECKS: tuple[Callable[[Declared, Facts], list[Check]], ...] = (
    network_checks, nat_checks, security_group_checks, database_checks, secret_checks,
    function_checks, bucket_checks, tag_checks, database_hardening_checks, log_group_checks,
    function_key_checks, role_trust_checks, network_hardening_checks,
    hardening_data.data_hardening_checks, hardening_compute.compute_hardening_checks,
    hardening_storage.storage_checks)


def run_checks(declared: Declared, facts: Facts) -> pd.DataFrame:
    rows = [asdict(apply_exception(declared.settings, c)) for family in CHECKS
            for c in family(declared, facts)]
    return pd.DataFrame(rows, columns=COLUMNS)




# -- the operation ---------------------------------------------------------------------------
def deployed_outputs(engine: Engine, env: str) -> dict[str, Any]:
    """The stack's outputs; a stack that was never deployed has nothing to verify."""
    outputs = engine.outputs()
    if not outputs:
        raise NotDeployed(f"stack {engine.stack} is not deployed on {engine.name}",
                              hint=f"run tap deploy --env {env} first")
    return outputs


@dataclass(frozen=True)
class Subject:
    """A deployed stack about to be verified: its settings, engine and outputs."""

    env: str
    settings: Settings
    engine: Engine
    outputs: dict[str, Any]


def subject(env: str, target: str | None = None, overrides=(), *,
            clients: Clients | None = None, engine: Engine | None = None) -> Subject:
    """The stack to verify. `clients`: clients on its target and region that the engine it
    opens then uses for everything (a fleet's shared set: one per region, not one per stack,
    whose making on the sandbox means a locked check that the emulator runs). `engine`: one
    already open on the stack (a `Stack` handle's), used as it is."""
    if engine is None:
        engine = engine_for(env, target, overrides)
        if clients is not None:
            engine.clients = lambda: clients   # type: ignore[method-assign]
    return Subject(env, engine.settings, engine, deployed_outputs(engine, env))


def verify(env: str, target: str | None = None, overrides=(), *,
           live: bool = True, clients: Clients | None = None,
           engine: Engine | None = None) -> VerifyReport:
    """Check the live stack against its environment file; read-only. `clients`: clients on
    the stack's target and region to use instead of the engine's own (a fleet shares them).
    `engine`: one already open on the stack (a `Stack` handle's), else one is opened."""
    stack = subject(env, target, overrides, engine=engine)
    clients = clients or stack.engine.clients()
    reading = read_facts(clients, {0: stack.outputs})[0]
    if isinstance(reading, Exception):
        raise reading
    return judge(stack, reading, clients, live=live)


def judge(stack: Subject, reading: Reading, clients: Clients, *, live: bool = True
          ) -> VerifyReport:
    """The report for one stack from its facts (however they were read), with the live checks
    run now. A fleet reads many stacks' facts at once and judges each here, as verify does."""
    engine, notes = stack.engine, list(reading.notes)
    declared = Declared(stack.settings, stack.outputs)
    # The data side's facts are found by the physical names the settings give (the shared
    # reader has only outputs): read here, once, and counted with the stack's own calls.
    owner = object()
    with CallCounter(clients) as counter, counter.owner(owner):
        reading.facts.data = hardening_data.read(counter, declared, reading.facts, engine.name)
        reading.facts.data.storage = hardening_storage.read(counter, declared, reading.facts,
                                                            reading.facts.data.on_sandbox)
        # Facts has no field for these (facts.py): the family reads it back by this name
        reading.facts.compute = hardening_compute.read(counter, declared, reading.facts)
    data_calls = counter.by_owner.get(owner, [])
    checks = run_checks(declared, reading.facts)
    gaps = hardening_data.gap_note(checks)
    notes += [gaps] if gaps else []
    if live:
        checks = pd.concat([checks, pd.DataFrame(
            [asdict(c) for c in live_checks(engine, stack.settings, stack.outputs,
                                            reading.facts, clients)],
            columns=COLUMNS)], ignore_index=True)
        if engine.invoke_note:
            notes.append(engine.invoke_note)
    calls = round(reading.aws_calls + len(data_calls), 2)
    return VerifyReport(engine.stack, engine.name, checks,
                        aws_calls=int(calls) if calls == int(calls) else calls,
                        calls=reading.calls + data_calls + reading.shared_calls, notes=notes,
                        shared_by=reading.shared_by)


def live_checks(engine: Engine, settings: Settings, outputs: dict[str, Any], facts: Facts,
                clients: Clients) -> list[Check]:
    """Prove the stack works, not just that it is configured: the current credentials log in
    and a synthetic payment goes through the payment handler to the database and the bucket."""
    payment = outputs.get("lambda_function_name")
    out = []
    if engine.login_check():
        expected, actual = smoke.db_login(
            clients, outputs.get("db_secret_arn", ""),
            (outputs.get("rds_cluster_endpoint", ""), int(outputs.get("rds_cluster_port") or 0)),
            engine.db_address, engine.db_ca_file())
        out.append(check("db.login", "", outputs.get("rds_cluster_id"), expected, actual,
                         ok=actual.startswith(expected)))
    expected, actual = smoke.run_payment(engine.invoke, facts.functions.get(payment) or {})
    out.append(check("payment.synthetic", "", payment, expected, actual,
                     ok=actual.startswith(expected)))
    return out
