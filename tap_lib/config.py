"""Per-environment settings: params/<env>.yaml, validated, with --set overrides.

Every error names the file, the field, the offending value and what is allowed, and is raised
before anything is touched. Validation covers what AWS itself would refuse later, part-way
through a deploy (tag rules, zones per region, service limits). The files are read as untrusted
input (config_yaml), and a stack name a protected file reserves is produced by no other file,
suffix or override (config_reserved).
"""
from __future__ import annotations

import ipaddress
import os
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, StrictStr, ValidationError,
                      field_validator, model_validator)

from . import config_reserved, project
from .config_exceptions import PolicyException, utc_today  # noqa: F401  (re-exported)
# Some re-exported: `from tap_lib.config import MAX_FILE_BYTES, read_settings_file` still works.
from .config_yaml import MAX_FILE_BYTES as MAX_FILE_BYTES
from .config_yaml import SECRET_NAME, label, load_yaml, read_settings_file, shorten, shown
from .config_aws import (TAGS_PER_RESOURCE, TAP_TAG_KEYS, ZONES_FILE, _zone_table, aws_regions,
                         region_zones, tag_problem)
from .errors import ConfigError
from .naming import PhysicalNames

LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653)
RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12",
                                                   "192.168.0.0/16"))
SUFFIX_RE = re.compile(r"^[A-Za-z0-9]{1,24}$")
ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
MAX_OVERRIDE_CHARS = 4096
MAX_MESSAGE_CHARS = 1500    # an error message, besides the value it echoes
MONITORING_INTERVALS = (0, 1, 5, 10, 15, 30, 60)   # RDS's allowed MonitoringInterval values
IAM_ROLE_ARN_RE = re.compile(r"arn:aws(-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")

class _Model(BaseModel):
    # strict: YAML and --set already give real ints and bools; `true` is not an instance count
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class VpcSettings(_Model):
    cidr: StrictStr = Field(description="IPv4 CIDR of the VPC, /16 to /24")
    az_count: int = Field(ge=2, le=6, description="availability zones used (Aurora needs 2+)")
    nat_gateways: Literal["single", "per_az"]
    flow_logs_retention_days: int = 30
    # Interface endpoints in the private subnets (EC2.10 asks for the EC2 one; Secrets Manager
    # keeps the Lambdas' secret reads off the NAT). Each costs hours per AZ: dev may go without.
    interface_endpoints: list[Literal["secretsmanager", "ec2"]] = ["secretsmanager", "ec2"]

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        try:
            net = ipaddress.IPv4Network(v, strict=True)
        except ValueError as exc:
            raise ValueError(f"not an IPv4 network CIDR ({exc}); e.g. 10.0.0.0/16") from None
        if not 16 <= net.prefixlen <= 24:
            raise ValueError("prefix length must be /16 to /24")
        if not any(net.subnet_of(block) for block in RFC1918):
            raise ValueError("must be inside a private (RFC 1918) range: 10.0.0.0/8, "
                             "172.16.0.0/12 or 192.168.0.0/16")
        return v

    @field_validator("flow_logs_retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        return _check_retention(v)


class DbSettings(_Model):
    engine_version: StrictStr = Field(description="Aurora PostgreSQL version, quoted, e.g. '15.6'")
    instance_class: StrictStr
    # Aurora: one writer and up to 15 replicas per cluster.
    instances: int = Field(ge=1, le=16)
    # RDS.11's 7 days unless the file says otherwise (dev: 1, with a policy exception)
    backup_retention_days: int = Field(default=7, ge=1, le=35)
    deletion_protection: bool
    # RDS.6 enhanced monitoring, seconds between samples; 0 = off (a policy exception then)
    monitoring_interval_s: int = 60
    database_name: StrictStr = "payments"
    app_username: StrictStr = "tap_app"
    port: int = Field(default=5432, ge=1150, le=65535)

    @field_validator("engine_version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not re.fullmatch(r"[0-9]{2}\.[0-9]{1,2}", v):
            raise ValueError("must be MAJOR.MINOR as a quoted string, e.g. '15.6'")
        return v

    @field_validator("monitoring_interval_s")
    @classmethod
    def _monitoring(cls, v: int) -> int:
        if v not in MONITORING_INTERVALS:
            raise ValueError("not an RDS enhanced monitoring interval; allowed: "
                             f"{', '.join(map(str, MONITORING_INTERVALS))}")
        return v

    @field_validator("instance_class")
    @classmethod
    def _class(cls, v: str) -> str:
        if not re.fullmatch(r"db\.[a-z0-9]+\.[a-z0-9]+", v):
            raise ValueError("must look like db.<family>.<size>, e.g. db.r6g.large")
        return v

    @field_validator("database_name", "app_username")
    @classmethod
    def _pg_ident(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", v):
            raise ValueError("must be a lowercase PostgreSQL identifier: [a-z][a-z0-9_]*, max 63")
        return v


class SecretSettings(_Model):
    rotation_enabled: bool = True
    rotation_days: int = Field(default=30, ge=1, le=1000)
    # Roles that deploy this environment besides the one deploying now: the application
    # secret's policy denies everyone else, PutResourcePolicy included, so a role missing here
    # could not deploy the stack after another role did.
    deployer_roles: tuple[StrictStr, ...] = ()

    @field_validator("deployer_roles", mode="before")
    @classmethod
    def _roles(cls, v: Any) -> Any:
        if isinstance(v, list):
            v = tuple(v)
        for arn in v if isinstance(v, tuple) else ():
            if not isinstance(arn, str) or not IAM_ROLE_ARN_RE.fullmatch(arn):
                raise ValueError(f"{arn!r} is not an IAM role ARN: "
                                 "arn:aws:iam::<12-digit account>:role/<path/name>")
        return v


class LambdaSettings(_Model):
    memory_mb: int = Field(default=256, ge=128, le=10240)
    timeout_s: int = Field(default=30, ge=1, le=900)
    log_retention_days: int = 30

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        return _check_retention(v)


class BucketSettings(_Model):
    transition_to_ia_days: int = Field(default=30, ge=30, le=3650)
    noncurrent_expiration_days: int = Field(default=90, ge=1, le=3650)
    # S3.15: Object Lock default retention of the transaction logs. GOVERNANCE can be lifted by
    # a privileged principal (dev/staging destroy); COMPLIANCE by nobody, not even root (prod).
    object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    object_lock_days: int = Field(default=30, ge=1, le=36500)
    # S3.9: how long the server access logs are kept (PCI DSS 10.5.1 asks for a year).
    access_log_days: int = Field(default=365, ge=90, le=3650)


class BackupSettings(_Model):
    """The AWS Backup plan over the cluster (tap_lib/program/backup.py): daily, kept this long."""

    retention_days: int = Field(default=35, ge=1, le=36500)


class UsageSettings(_Model):
    """Usage assumptions behind the cost estimate's usage-driven items (tap_lib/cost). Whole
    units, so an override reads as a number; an unset one makes its items unknown, never 0."""

    nat_gb_processed_per_month: int | None = Field(default=None, ge=0, le=10_000_000)
    flow_log_gb_per_month: int | None = Field(default=None, ge=0, le=10_000_000)
    log_gb_ingested_per_month: int | None = Field(default=None, ge=0, le=10_000_000)
    lambda_invocations_per_month: int | None = Field(default=None, ge=0, le=10**12)
    lambda_avg_duration_ms: int | None = Field(default=None, ge=1, le=900_000)
    s3_gb_stored: int | None = Field(default=None, ge=0, le=10_000_000)
    s3_gb_standard_ia: int | None = Field(default=None, ge=0, le=10_000_000)
    s3_put_requests_per_month: int | None = Field(default=None, ge=0, le=10**12)
    s3_get_requests_per_month: int | None = Field(default=None, ge=0, le=10**12)
    aurora_storage_gb: int | None = Field(default=None, ge=0, le=131_072)  # 128 TiB
    aurora_io_millions: int | None = Field(default=None, ge=0, le=10_000_000)
    kms_requests_per_month: int | None = Field(default=None, ge=0, le=10**12)
    secrets_api_calls_per_month: int | None = Field(default=None, ge=0, le=10**12)
    # issue 19: interface endpoints' traffic, AWS Backup storage, enhanced monitoring's
    # RDSOSMetrics log volume (all instances together), the dead-letter queue's requests
    vpc_endpoint_gb_per_month: int | None = Field(default=None, ge=0, le=10_000_000)
    backup_gb_stored: int | None = Field(default=None, ge=0, le=10_000_000)
    rds_monitoring_gb_per_month: int | None = Field(default=None, ge=0, le=10_000_000)
    sqs_requests_per_month: int | None = Field(default=None, ge=0, le=10**12)
    s3_access_log_gb_stored: int | None = Field(default=None, ge=0, le=10_000_000)


class Settings(_Model):
    """The resolved configuration of one environment."""

    environment: StrictStr
    suffix: StrictStr
    region: StrictStr
    # Recorded in the stack at its first deploy: deletes and replacements then need --confirm.
    protected: bool = False
    vpc: VpcSettings
    db: DbSettings
    secrets: SecretSettings = SecretSettings()
    function: LambdaSettings = Field(default=LambdaSettings(), alias="lambda")
    bucket: BucketSettings = BucketSettings()
    backup: BackupSettings = BackupSettings()
    tags: dict[StrictStr, StrictStr] = {}
    usage: UsageSettings = UsageSettings()
    # Preflight (ops/preflight/cost.py) warns at 80% of it and fails above it.
    budget_monthly_usd: int | None = Field(default=None, ge=1, le=10_000_000)
    # Controls this environment deliberately does not meet (PolicyException).
    exceptions: list[PolicyException] = Field(default=[], max_length=100)

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)
    _source: str = PrivateAttr(default="")

    @property
    def source(self) -> str:
        """The environment file these settings came from, e.g. params/prod.yaml."""
        return self._source or f"params/{self.environment}.yaml"

    @field_validator("environment")
    @classmethod
    def _env(cls, v: str) -> str:
        if not ENV_NAME_RE.fullmatch(v):
            raise ValueError("must be lowercase letters, digits and '-', starting with a letter")
        return v

    @field_validator("suffix")
    @classmethod
    def _suffix(cls, v: str) -> str:
        if not SUFFIX_RE.fullmatch(v):
            raise ValueError("must be 1-24 letters or digits, e.g. dev or pr6329")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if v not in aws_regions():
            raise ValueError(f"unknown AWS region; allowed: {', '.join(aws_regions())}")
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: dict[str, str]) -> dict[str, str]:
        for key, value in tags.items():
            problem = tag_problem(key, value)
            if problem:
                raise FieldProblem(f"tags.{key}", problem, value)
        room = TAGS_PER_RESOURCE - len(TAP_TAG_KEYS)
        if len(tags) > room:
            raise FieldProblem("tags", f"{len(tags)} tags; AWS allows {TAGS_PER_RESOURCE} on a "
                               f"resource and tap adds {len(TAP_TAG_KEYS)} of its own "
                               f"({', '.join(TAP_TAG_KEYS)})", allowed=f"at most {room} tags")
        return tags

    @model_validator(mode="after")
    def _zones_in_region(self) -> Settings:
        zones = region_zones(self.region)
        if zones is None:
            raise FieldProblem("vpc.az_count", f"tap's zone table ({ZONES_FILE}, as of "
                               f"{_zone_table()['as_of']}) does not list region "
                               f"{self.region}, so the zone count cannot be checked",
                               self.vpc.az_count, related=("region",),
                               allowed=f"a listed region, or add {self.region}'s zones to "
                                       "the table")
        if self.vpc.az_count > len(zones):
            raise FieldProblem("vpc.az_count", f"{self.region} has {len(zones)} availability "
                               f"zones ({ZONES_FILE}, as of {_zone_table()['as_of']})",
                               self.vpc.az_count, related=("region",),
                               allowed=f"2 to {len(zones)}")
        return self

    @property
    def stack_name(self) -> str:
        return project.stack_name(self.suffix)

    @property
    def availability_zones(self) -> list[str]:
        """The first az_count zones of the region, by the names its accounts see."""
        return [f"{self.region}{letter}"
                for letter in (region_zones(self.region) or ())[: self.vpc.az_count]]

    @property
    def nat_count(self) -> int:
        return self.vpc.az_count if self.vpc.nat_gateways == "per_az" else 1

    def subnet_cidrs(self) -> tuple[list[str], list[str]]:
        """(public, private) CIDRs: the VPC split into 16 equal blocks, public first."""
        net = ipaddress.IPv4Network(self.vpc.cidr)
        blocks = [str(b) for b in net.subnets(prefixlen_diff=4)]
        n = self.vpc.az_count
        return blocks[:n], blocks[8: 8 + n]

    def physical_names(self, account: str) -> PhysicalNames:
        """Every physical name of this stack; the account makes the bucket name unique."""
        return PhysicalNames.create(project.project_name(), self.suffix, self.region, account,
                                    self.db.instances, self.db.engine_version.split(".")[0])

    def exception_for(self, control: str, resource: str) -> PolicyException | None:
        """The unexpired exception covering `control` on logical `resource`, if any."""
        return next((e for e in self.exceptions
                     if e.covers(control, resource, self.suffix) and not e.expired()), None)

    def all_tags(self) -> dict[str, str]:
        return {"Project": project.project_name(), "Environment": self.environment,
                "Stack": self.stack_name, "ManagedBy": "tap", **self.tags}

    def public_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)   # exceptions' dates as ISO text


class FieldProblem(ValueError):
    """A validator's complaint about a setting other than the one it validates (a tag, or
    az_count judged against the region); validate() reports it under `field`."""

    def __init__(self, field: str, message: str, value: Any = None, *,
                 related: tuple[str, ...] = (), allowed: str | None = None):
        super().__init__(message)
        self.field, self.value, self.related, self.allowed = field, value, related, allowed


def _check_retention(v: int) -> int:
    if v not in LOG_RETENTION_DAYS:
        raise ValueError(f"not a CloudWatch Logs retention; allowed: "
                         f"{', '.join(map(str, LOG_RETENTION_DAYS))}")
    return v


def available_environments(directory: Path | None = None) -> list[str]:
    """The environments `--env` can load: files whose name is a valid environment name (an
    error that rejects a name must never list it as allowed)."""
    directory = directory or project.params_dir()
    return sorted(p.stem for p in directory.glob("*.yaml")
                  if p.name != project.FLEET_FILE and ENV_NAME_RE.fullmatch(p.stem)
                  and p.is_file())


def parse_override(text: str, source: str | None = None) -> tuple[str, Any]:
    """'db.engine_version=15.6' -> ('db.engine_version', '15.6'). The value is read as YAML
    (numbers, booleans, quoting), except that a decimal stays text ('15.10' is not 15.1) and a
    setting declared as text gets text ('--set suffix=123' is the suffix '123').
    `source`, the environment file overridden, is named in errors."""
    where = f"{source} (--set)" if source else None
    if not isinstance(text, str):
        raise ConfigError("expected KEY=VALUE text", file=where, field="--set",
                          value=shown(text))
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
        raise ConfigError("expected KEY=VALUE with a dotted key, e.g. db.engine_version=15.6",
                          file=where, field="--set",
                          value=shown(text, secret=bool(SECRET_NAME.search(text))))
    if len(text) > MAX_OVERRIDE_CHARS:
        raise ConfigError(f"override is {len(text)} characters; at most {MAX_OVERRIDE_CHARS}",
                          file=source and f"{source} (--set {shorten(key)})",
                          field=shorten(key), value=shown(raw, key))
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError):  # ValueError: an integer of more than 4300 digits
        value = raw
    if isinstance(value, (float, list, dict)) or value is None or \
            (_is_text(_declared_type(key.split("."))) and not isinstance(value, str)):
        value = raw.strip()
    return key, value


def _apply_override(data: dict, key: str, value: Any, source: str) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError("cannot set a sub-key of a scalar setting", file=source, field=key)
        node = child
    node[parts[-1]] = value


def load_settings(env: str, overrides: list[str] | tuple[str, ...] = (),
                  directory: Path | None = None, *, use_environ: bool = True) -> Settings:
    """Load params/<env>.yaml, apply --set overrides and ENVIRONMENT_SUFFIX, validate, and
    refuse a stack name that a protected file (other than this one) reserves."""
    directory = directory or project.params_dir()
    if not isinstance(env, str) or not ENV_NAME_RE.fullmatch(env or ""):
        raise ConfigError("not a valid environment name", field="--env", value=shown(env),
                          allowed=", ".join(available_environments(directory)) or "none found")
    path = directory / f"{env}.yaml"
    if not path.is_file() or path.name == project.FLEET_FILE:
        raise ConfigError("no such environment file", file=str(path), field="--env", value=env,
                          allowed=", ".join(available_environments(directory)) or "none found")
    data = read_settings_file(path)
    source = _display(path)
    overridden = []
    for text in overrides:
        key, value = parse_override(text, source)
        if key == "protected":
            raise ConfigError("protection is declared by the environment file only, never "
                              "overridden", file=f"{source} (--set {key})", field=key)
        _apply_override(data, key, value, f"{source} (--set {key})")
        overridden.append(key)
    suffix = os.environ.get("ENVIRONMENT_SUFFIX") if use_environ else None
    if suffix:
        data["suffix"] = suffix
    settings = validate(data, source, overridden=overridden, suffix_from_env=bool(suffix))
    origin = "environment" if suffix else "override" if "suffix" in overridden else "file"
    config_reserved.check(settings.suffix, path, source, origin=origin, directory=directory)
    settings._source = source
    return settings


def validate(data: dict, source: str, overridden: list[str] = (),
             suffix_from_env: bool = False) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input") if err["type"] != "missing" else None
    allowed, related = None, ()
    problem = (err.get("ctx") or {}).get("error")
    if isinstance(problem, FieldProblem):
        field, value, allowed, related = (problem.field, problem.value, problem.allowed,
                                          problem.related)
    elif err["type"] == "extra_forbidden":
        msg = "unknown setting"
        allowed = ", ".join(_known_keys(err["loc"][:-1]))
    elif err["type"] == "missing":
        msg = "required setting is missing"
    if isinstance(value, dict):
        value = None
    origin = source
    blamed = [f for f in (field, *related) if f in overridden]
    if blamed:
        origin = f"{source} (--set {', '.join(blamed)})"
    elif field == "suffix" and suffix_from_env:
        origin = "environment variable ENVIRONMENT_SUFFIX"
    raise ConfigError(shorten(msg, MAX_MESSAGE_CHARS), file=origin, field=label(field),
                      value=shown(value, field), allowed=allowed and shorten(allowed, 800))


def _declared_type(path: list[str] | tuple) -> Any:
    """The type Settings declares at a dotted path (through sub-models and dict values), or
    None for a path it does not declare."""
    declared: Any = Settings
    for part in path:
        if _is_model(declared):
            fields = {(f.alias or name): f for name, f in declared.model_fields.items()}
            if part not in fields:
                return None
            declared = fields[part].annotation
        elif typing.get_origin(declared) is dict:
            declared = typing.get_args(declared)[1]
        elif typing.get_origin(declared) is list and isinstance(part, int):
            declared = typing.get_args(declared)[0]
        else:
            return None
    return declared


def _is_model(declared: Any) -> bool:
    return isinstance(declared, type) and issubclass(declared, BaseModel)


def _is_text(declared: Any) -> bool:
    if typing.get_origin(declared) is typing.Annotated:
        declared = typing.get_args(declared)[0]
    return declared is str


def _known_keys(loc: tuple) -> list[str]:
    model = _declared_type(loc)
    if not _is_model(model):
        return []
    return sorted((f.alias or name) for name, f in model.model_fields.items())


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(project.project_dir()))
    except ValueError:
        return str(path)
