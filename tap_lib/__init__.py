"""tap: a notebook-driven operations runbook for the TapStack AWS payment stack.

The public surface notebooks and scripts use; everything else is an implementation detail.
"""
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from .errors import (ChecksFailed, ConfigError, OperationFailed, SandboxStateLost, StackLocked,
                     TapError, TargetUnreachable, UsageError)

try:
    __version__ = version("tap-runbook")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["Settings", "load_settings", "TapError", "ConfigError", "UsageError", "ChecksFailed",
           "TargetUnreachable", "OperationFailed", "StackLocked", "SandboxStateLost",
           "__version__"]

if TYPE_CHECKING:
    from .config import Settings, load_settings  # noqa: F401


def __getattr__(name: str):
    """The settings model on first use: `tap --version` and `tap audit verify` never need
    pydantic's models (0.12 s)."""
    if name in ("Settings", "load_settings"):
        from . import config

        return getattr(config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
