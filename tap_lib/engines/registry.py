"""Engines by target name: `sandbox` (local emulator, the default) and `aws` (Pulumi CLI)."""
from __future__ import annotations

import os

from ..config import Settings
from ..errors import UsageError
from .base import Engine

TARGETS = ("sandbox", "aws")


def default_target() -> str:
    return os.environ.get("TAP_TARGET", "sandbox")


def check_target(target: str | None) -> str:
    target = target or default_target()
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; allowed: {', '.join(TARGETS)} "
                         "(--target or TAP_TARGET)")
    return target


def open_engine(settings: Settings, target: str | None = None,
                overrides: tuple[str, ...] = ()) -> Engine:
    target = check_target(target)
    if target == "sandbox":
        from .sandbox.engine import SandboxEngine

        return SandboxEngine(settings)
    from .pulumi_engine import PulumiEngine

    return PulumiEngine(settings, overrides)
