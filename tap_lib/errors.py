"""tap's exception tree: one base class, each error knows the exit code the CLI returns.

    TapError                      (3)
    ├── ConfigError               (2)  bad environment file, --set override or parameter
    ├── UsageError                (2)  bad command-line use (missing --yes, wrong --confirm)
    ├── ChecksFailed              (1)  the operation ran and found problems
    ├── TargetUnreachable         (3)  emulator / AWS / pulumi CLI not available
    ├── OperationFailed           (3)  an operation failed part-way
    │   ├── StackLocked           (3)  another operation holds the stack
    │   ├── DuplicateUrnError     (3)  the program registered one URN twice
    │   └── UnsupportedResource   (3)  the sandbox has no handler for a resource type
    └── SandboxStateLost          (3)  the emulator restarted and forgot the stack

Messages never include secret values: callers pass names and ARNs, not payloads.
"""
from __future__ import annotations


class TapError(Exception):
    exit_code = 3

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(TapError):
    """Raised for invalid configuration; names the file, field, value and what is allowed."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None,
                 value: object = None, allowed: str | None = None, hint: str | None = None):
        parts = []
        if file:
            parts.append(str(file))
        if field:
            parts.append(f"field '{field}'")
        prefix = ": ".join(parts)
        text = f"{prefix}: {message}" if prefix else message
        if value is not None:
            text += f" (got {value!r})"
        if allowed:
            text += f"; allowed: {allowed}"
        super().__init__(text, hint=hint)
        self.file, self.field, self.value, self.allowed = file, field, value, allowed


class UsageError(TapError):
    exit_code = 2


class ChecksFailed(TapError):
    exit_code = 1


class TargetUnreachable(TapError):
    exit_code = 3


class OperationFailed(TapError):
    exit_code = 3


class StackLocked(OperationFailed):
    pass


class DuplicateUrnError(OperationFailed):
    def __init__(self, urn: str):
        super().__init__(f"duplicate resource URN '{urn}'",
                         hint="the program registers this resource twice; "
                              "the stack must be instantiated exactly once")
        self.urn = urn


class UnsupportedResource(OperationFailed):
    def __init__(self, type_: str, urn: str | None = None):
        super().__init__(f"the sandbox has no handler for resource type '{type_}'"
                         + (f" ({urn})" if urn else ""),
                         hint="add a handler in tap_lib/engines/sandbox/handlers/ "
                              "or deploy with --target aws")
        self.type = type_


class SandboxStateLost(TapError):
    exit_code = 3
