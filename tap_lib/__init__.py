"""tap: a notebook-driven operations runbook for the TapStack AWS payment stack.

The public surface notebooks and scripts use; everything else is an implementation detail:
`Stack.open(env, target, overrides)` and its methods (preview, plan, deploy, refresh, destroy,
outputs, verify, inspect, repair), the settings model, and the errors to catch by type.
"""
from typing import TYPE_CHECKING

from .errors import (ChecksFailed, ConfigError, NotDeployed, OperationFailed, PlanRefused,
                     PreflightBlocked, ProtectedStack, SandboxStateLost, StackLocked, TapError,
                     TargetUnreachable, UsageError)
from .version import __version__

__all__ = ["Stack", "Settings", "load_settings", "TapError", "ConfigError", "UsageError",
           "ChecksFailed", "PreflightBlocked", "TargetUnreachable", "OperationFailed",
           "StackLocked", "NotDeployed", "ProtectedStack", "PlanRefused", "SandboxStateLost",
           "__version__"]

if TYPE_CHECKING:
    from .config import Settings, load_settings  # noqa: F401
    from .ops.handle import Stack


def __getattr__(name: str):
    """The settings model and the Stack handle on first use: `tap --version` and `tap audit
    verify` never need pydantic's models (0.12 s), nor the operations' pandas."""
    if name in ("Settings", "load_settings"):
        from . import config

        return getattr(config, name)
    if name == "Stack":
        from .ops.handle import Stack

        return Stack
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
