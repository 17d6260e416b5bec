"""Which stacks a fleet is: `--env`/`--suffix` pairs or a fleet file (`params/fleet.yaml`),
each resolved to validated settings before any stack is touched.

The fleet file is untrusted input like an environment file: its shape is a pydantic model
and every problem is a ConfigError naming the file, the field and what is allowed.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from ..config import Settings, load_settings, read_settings_file
from ..errors import ConfigError, UsageError
from ..project import FLEET_FILE, params_dir

STACK_KEYS = ("env", "suffix")
MAX_STACKS = 500


@dataclass(frozen=True)
class StackRef:
    """One stack of a fleet: an environment file and, for ad-hoc stacks, a suffix."""

    env: str
    suffix: str | None = None

    @property
    def overrides(self) -> tuple[str, ...]:
        return (f"suffix={self.suffix}",) if self.suffix else ()

    def settings(self) -> Settings:
        return load_settings(self.env, self.overrides)

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "suffix": self.suffix}


class _FleetStack(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    env: StrictStr = Field(min_length=1)
    suffix: StrictStr | None = Field(default=None, min_length=1)


class _FleetFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    stacks: list[_FleetStack] = Field(min_length=1, max_length=MAX_STACKS)


# -- which stacks ------------------------------------------------------------------------------
def fleet_file_path(path: str | Path | None = None) -> Path:
    return Path(path) if path else params_dir() / FLEET_FILE


def load_fleet_file(path: str | Path | None = None) -> list[StackRef]:
    """`stacks:` a list of mappings with `env` and optionally `suffix`, read as untrusted input
    like an environment file; ConfigError names the file and the field."""
    path = fleet_file_path(path)
    if not path.is_file():
        raise ConfigError("no such fleet file", file=str(path),
                          hint="list the stacks with --env/--suffix, or write the file")
    data = read_settings_file(path)
    try:
        model = _FleetFile.model_validate(data)
    except ValidationError as exc:
        raise _fleet_error(path, exc.errors()[0]) from None
    return [StackRef(s.env, s.suffix) for s in model.stacks]


def _fleet_error(path: Path, error: dict) -> ConfigError:
    """The first validation error of a fleet file, said as tap says config errors."""
    loc = list(error["loc"])
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    kind = error["type"]
    if kind == "extra_forbidden":
        return ConfigError("unknown key", file=str(path), field=field,
                           allowed="stacks" if len(loc) == 1 else ", ".join(STACK_KEYS))
    if loc == ["stacks"] and kind == "too_long":
        n = len(error.get("input") or ())
        return ConfigError(f"lists {n} stacks; at most {MAX_STACKS}", file=str(path),
                           field="stacks")
    if loc in (["stacks"], []):
        return ConfigError("must be a non-empty list of stacks", file=str(path),
                           field="stacks", allowed="a list of {env: NAME, suffix: TEXT}")
    if len(loc) == 2:
        return ConfigError("must be a mapping", file=str(path), field=field,
                           allowed="{env: NAME, suffix: TEXT}")
    return ConfigError("must be non-empty text", file=str(path), field=field)


def resolve_stacks(envs: Iterable[str] = (), suffixes: Iterable[str] = (),
                   fleet_file: str | Path | None = None) -> list[tuple[StackRef, Settings]]:
    """The fleet's stacks with their validated settings, in the order given, each once.
    Nothing runs until every stack's settings are valid."""
    envs = [envs] if isinstance(envs, str) else list(envs or ())
    suffixes = [suffixes] if isinstance(suffixes, str) else list(suffixes or ())
    if fleet_file is not None and (envs or suffixes):
        raise UsageError("give the stacks either with --env/--suffix or with --fleet, not both")
    if suffixes and os.environ.get("ENVIRONMENT_SUFFIX"):
        raise UsageError("ENVIRONMENT_SUFFIX is set and --suffix names suffixes too; unset the "
                         "variable for a fleet")
    if envs:
        refs = [StackRef(env, suffix) for env in envs for suffix in (suffixes or [None])]
    elif suffixes:
        raise UsageError("--suffix applies to each --env; give at least one --env")
    else:
        refs = load_fleet_file(fleet_file)
    out: list[tuple[StackRef, Settings]] = []
    seen: dict[str, StackRef] = {}
    for ref in dict.fromkeys(refs):
        settings = ref.settings()
        other = seen.get(settings.stack_name)
        if other is not None:
            raise UsageError(f"{ref.env}/{ref.suffix or '-'} and {other.env}/"
                             f"{other.suffix or '-'} are the same stack {settings.stack_name}")
        seen[settings.stack_name] = ref
        out.append((ref, settings))
    return out


def as_stacks(stacks: Iterable[Any]) -> list[tuple[StackRef, Settings]]:
    """Stacks as resolve_stacks gives them, from StackRefs, (env, suffix) pairs or env names."""
    out = []
    for item in stacks:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Settings):
            out.append(item)
            continue
        ref = item if isinstance(item, StackRef) else (
            StackRef(item) if isinstance(item, str) else StackRef(*item))
        out.append((ref, ref.settings()))
    return out
