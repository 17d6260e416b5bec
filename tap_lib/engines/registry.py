"""Engines by target name. A target is one Engine subclass and one line here; modules load on
first use, so `tap --help` and the sandbox never import what the aws target needs."""
from __future__ import annotations

import importlib
import os

from ..config import Settings
from ..errors import UsageError
from .base import Engine

TARGETS: dict[str, str] = {
    "sandbox": "tap_lib.engines.sandbox.engine:SandboxEngine",   # local emulator, the default
    "aws": "tap_lib.engines.pulumi_engine:PulumiEngine",          # Pulumi Automation API
}
DEFAULT_TARGET = "sandbox"


def default_target() -> str:
    return os.environ.get("TAP_TARGET", DEFAULT_TARGET)


def check_target(target: str | None) -> str:
    target = target or default_target()
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; allowed: {', '.join(TARGETS)} "
                         "(--target or TAP_TARGET)")
    return target


def engine_class(target: str | None = None) -> type[Engine]:
    module, _, name = TARGETS[check_target(target)].partition(":")
    return getattr(importlib.import_module(module), name)


def open_engine(settings: Settings, target: str | None = None,
                overrides: tuple[str, ...] = ()) -> Engine:
    return engine_class(target)(settings, overrides)
