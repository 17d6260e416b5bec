"""tap: a notebook-driven operations runbook for the TapStack AWS payment stack.

The public surface notebooks and scripts use; everything else is an implementation detail.
"""
from importlib.metadata import PackageNotFoundError, version

from .config import Settings, load_settings
from .errors import (ChecksFailed, ConfigError, OperationFailed, SandboxStateLost, StackLocked,
                     TapError, TargetUnreachable, UsageError)

try:
    __version__ = version("tap-runbook")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["Settings", "load_settings", "TapError", "ConfigError", "UsageError", "ChecksFailed",
           "TargetUnreachable", "OperationFailed", "StackLocked", "SandboxStateLost",
           "__version__"]
