"""Per-environment settings: params/<env>.yaml, validated, with --set overrides.

Every error names the file, the field, the offending value and what is allowed, and is raised
before anything is touched.
"""
from __future__ import annotations

import functools
import ipaddress
import os
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator

from . import project
from .errors import ConfigError
from .naming import PhysicalNames

LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653)
RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12",
                                                   "192.168.0.0/16"))
SUFFIX_RE = re.compile(r"^[A-Za-z0-9]{1,24}$")
ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


@functools.lru_cache(maxsize=1)
def aws_regions() -> tuple[str, ...]:
    """Commercial regions known to the installed botocore (no network call)."""
    import boto3

    return tuple(sorted(boto3.session.Session().get_available_regions("ec2")))


class _Model(BaseModel):
    # strict: YAML and --set already give real ints and bools; `true` is not an instance count
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class VpcSettings(_Model):
    cidr: StrictStr = Field(description="IPv4 CIDR of the VPC, /16 to /24")
    az_count: int = Field(ge=2, le=6, description="availability zones used (Aurora needs 2+)")
    nat_gateways: Literal["single", "per_az"]
    flow_logs_retention_days: int = 30

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
    instances: int = Field(ge=1, le=15)
    backup_retention_days: int = Field(ge=1, le=35)
    deletion_protection: bool
    database_name: StrictStr = "payments"
    app_username: StrictStr = "tap_app"
    port: int = Field(default=5432, ge=1150, le=65535)

    @field_validator("engine_version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not re.fullmatch(r"[0-9]{2}\.[0-9]{1,2}", v):
            raise ValueError("must be MAJOR.MINOR as a quoted string, e.g. '15.6'")
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


class Settings(_Model):
    """The resolved configuration of one environment."""

    environment: StrictStr
    suffix: StrictStr
    region: StrictStr
    vpc: VpcSettings
    db: DbSettings
    secrets: SecretSettings = SecretSettings()
    function: LambdaSettings = Field(default=LambdaSettings(), alias="lambda")
    bucket: BucketSettings = BucketSettings()
    tags: dict[StrictStr, StrictStr] = {}

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

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

    @property
    def stack_name(self) -> str:
        return project.stack_name(self.suffix)

    @property
    def availability_zones(self) -> list[str]:
        return [f"{self.region}{letter}" for letter in "abcdef"[: self.vpc.az_count]]

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
                                    self.db.instances)

    def all_tags(self) -> dict[str, str]:
        return {"Project": project.project_name(), "Environment": self.environment,
                "Stack": self.stack_name, "ManagedBy": "tap", **self.tags}

    def public_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


def _check_retention(v: int) -> int:
    if v not in LOG_RETENTION_DAYS:
        raise ValueError(f"not a CloudWatch Logs retention; allowed: "
                         f"{', '.join(map(str, LOG_RETENTION_DAYS))}")
    return v


def available_environments(directory: Path | None = None) -> list[str]:
    directory = directory or project.params_dir()
    return sorted(p.stem for p in directory.glob("*.yaml"))


def parse_override(text: str) -> tuple[str, Any]:
    """'db.engine_version=15.6' -> ('db.engine_version', '15.6'). The value is read as YAML
    (numbers, booleans, quoting), except that a decimal stays text ('15.10' is not 15.1) and a
    setting declared as text gets text ('--set suffix=123' is the suffix '123')."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
        raise ConfigError("expected KEY=VALUE with a dotted key, e.g. db.engine_version=15.6",
                          field="--set", value=text)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
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
    """Load params/<env>.yaml, apply --set overrides and ENVIRONMENT_SUFFIX, validate."""
    directory = directory or project.params_dir()
    if not isinstance(env, str) or not ENV_NAME_RE.fullmatch(env or ""):
        raise ConfigError("not a valid environment name", field="--env", value=env,
                          allowed=", ".join(available_environments(directory)) or "none found")
    path = directory / f"{env}.yaml"
    if not path.is_file():
        raise ConfigError("no such environment file", file=str(path), field="--env", value=env,
                          allowed=", ".join(available_environments(directory)) or "none found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping", file=str(path))
    source = _display(path)
    overridden = []
    for text in overrides:
        key, value = parse_override(text)
        _apply_override(data, key, value, f"{source} (--set {key})")
        overridden.append(key)
    suffix = os.environ.get("ENVIRONMENT_SUFFIX") if use_environ else None
    if suffix:
        data["suffix"] = suffix
    return validate(data, source, overridden=overridden, suffix_from_env=bool(suffix))


def validate(data: dict, source: str, overridden: list[str] = (),
             suffix_from_env: bool = False) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        origin = source
        if field in overridden:
            origin = f"{source} (--set {field})"
        elif field == "suffix" and suffix_from_env:
            origin = "environment variable ENVIRONMENT_SUFFIX"
        msg = err["msg"].removeprefix("Value error, ")
        allowed = None
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
            allowed = ", ".join(_known_keys(err["loc"][:-1]))
        elif err["type"] == "missing":
            msg = "required setting is missing"
        value = err.get("input") if err["type"] != "missing" else None
        if isinstance(value, dict):
            value = None
        raise ConfigError(msg, file=origin, field=field, value=value, allowed=allowed) from None


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
