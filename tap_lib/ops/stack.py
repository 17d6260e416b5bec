"""Preview, deploy, destroy and outputs: thin, engine-agnostic operations returning data."""
from __future__ import annotations

from typing import Any

from ..config import Settings, load_settings
from ..engines.base import Plan, ProgressCallback, Result
from ..engines.registry import open_engine
from ..errors import UsageError


def settings_for(env: str, overrides: tuple[str, ...] | list[str] = ()) -> Settings:
    return load_settings(env, tuple(overrides))


def preview(env: str, target: str | None = None, overrides=()) -> Plan:
    return open_engine(settings_for(env, overrides), target, tuple(overrides)).preview()


def deploy(env: str, target: str | None = None, overrides=(),
           progress: ProgressCallback | None = None) -> Result:
    return open_engine(settings_for(env, overrides), target, tuple(overrides)).up(progress)


def check_destroy_confirmation(settings: Settings, yes: bool, confirm: str | None) -> None:
    """destroy needs --yes; for prod (deletion-protected data) also the exact stack name."""
    if not yes:
        raise UsageError(f"destroy deletes every resource of {settings.stack_name}; "
                         "re-run with --yes")
    if settings.environment == "prod" and confirm != settings.stack_name:
        raise UsageError(f"destroying prod also needs --confirm {settings.stack_name} "
                         f"(got {confirm!r})")


def destroy(env: str, target: str | None = None, overrides=(), *, yes: bool = False,
            confirm: str | None = None, progress: ProgressCallback | None = None) -> Result:
    settings = settings_for(env, overrides)
    check_destroy_confirmation(settings, yes, confirm)
    return open_engine(settings, target, tuple(overrides)).destroy(progress)


def outputs(env: str, target: str | None = None, overrides=()) -> dict[str, Any]:
    return open_engine(settings_for(env, overrides), target, tuple(overrides)).outputs()
