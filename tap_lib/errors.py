"""tap's exception tree: one base class, each error knows the exit code the CLI returns.

    TapError                      (3)
    ├── ConfigError               (2)  bad environment file, --set override or parameter
    ├── UsageError                (2)  bad command-line use (missing --yes, wrong --confirm)
    │   ├── ProtectedStack        (2)  a protected stack changed without an approved plan
    │   ├── DestroyBlocked        (2)  a destroy would stop part-way; nothing was deleted
    │   ├── PlanRefused           (2)  a reviewed plan that no longer holds; nothing changed
    │   ├── SignatureRefused      (2)  a signature missing, damaged, or by a key not approved
    │   └── RecordsUnwritable     (2)  the audit records cannot be written; nothing started
    │       └── LockedCopyUnwritable   the Object Lock copy of an s3:// root cannot be written
    ├── ChecksFailed              (1)  the operation ran and found problems
    │   └── PreflightBlocked      (1)  error-level preflight findings stopped preview/deploy
    ├── TargetUnreachable         (3)  emulator / AWS / pulumi CLI not available
    ├── OperationFailed           (3)  an operation failed part-way
    │   ├── StackLocked           (4)  another operation holds (or is changing) the stack;
    │   │                                  checked before preflight, nothing ran: retry later
    │   ├── StateCorrupt          (3)  one of tap's own files is damaged; names file and fix
    │   ├── PlanMismatch          (3)  a step differs from the reviewed plan: stopped there
    │   ├── OrphanedResources     (3)  no state, but the stack's tagged resources are live
    │   ├── DuplicateUrnError     (3)  the program registered one URN twice
    │   ├── UnsupportedResource   (3)  the sandbox has no handler for a resource type
    │   └── UnknownProperty       (3)  a changed input the replacement table does not know
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
    """Its own exit code, so a script can tell "busy, retry" from "broken" (3)."""
    exit_code = 4


class NotDeployed(OperationFailed):
    """The operation needs a deployed stack and finds none (no outputs): callers such as the
    fleet tell it by type, never by the message's words."""
    exit_code = 3


class StateCorrupt(OperationFailed):
    """One of tap's own files (state, history, lock info, emulator runtime) cannot be used:
    the message names the file and what is wrong, the hint how to recover."""

    def __init__(self, file: object, problem: str, *, hint: str | None = None):
        super().__init__(f"{file}: {problem}", hint=hint)
        self.file, self.problem = str(file), problem


class OrphanedResources(OperationFailed):
    """A deploy found no state but live resources tagged with the stack's URNs: creating the
    stack again would duplicate them."""

    def __init__(self, stack: str, counts: dict[str, int], *, hint: str | None = None):
        listed = ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
        super().__init__(f"stack {stack} has no state in tap, but the emulator holds "
                         f"{sum(counts.values())} resources tagged with its URNs ({listed}); "
                         "a deploy would duplicate them and is refused; nothing was changed",
                         hint=hint)
        self.stack, self.counts = stack, dict(counts)


class PlanMismatch(OperationFailed):
    """deploy --plan met a step the reviewed plan does not have; it stopped before that step."""

    def __init__(self, stack: str, resource: str, planned: str, now: str):
        super().__init__(f"{stack}: {resource} differs from the reviewed plan (planned: "
                         f"{planned}; now: {now}); the deploy stopped before changing it",
                         hint="preview again, save a new plan and have it reviewed")
        self.resource = resource


class DuplicateUrnError(OperationFailed):
    def __init__(self, urn: str):
        super().__init__(f"duplicate resource URN '{urn}'",
                         hint="the program registers this resource twice; "
                              "the stack must be instantiated exactly once")
        self.urn = urn


class UnsupportedResource(OperationFailed):
    """The sandbox does not model a resource type, or a resource option the program set."""

    def __init__(self, type_: str, urn: str | None = None, *, options: list[str] = ()):
        at = f" ({urn})" if urn else ""
        if options:
            super().__init__(f"the sandbox does not model the resource option(s) "
                             f"{', '.join(options)} set on {type_}{at}; it would ignore them",
                             hint="remove them, or rehearse with --target aws "
                                  "(tap_lib/engines/sandbox/scope.py lists what it models)")
        else:
            super().__init__(f"the sandbox has no handler for resource type '{type_}'{at}",
                             hint="add a handler in tap_lib/engines/sandbox/handlers/ "
                                  "or deploy with --target aws")
        self.type, self.options = type_, list(options)


class SandboxStateLost(TapError):
    exit_code = 3


class ProtectedStack(UsageError):
    """A protected stack's deletes and replacements need the stack name as confirmation."""

    def __init__(self, stack: str, what: str, confirm: str | None, hint: str | None = None):
        super().__init__(f"{stack} is protected: {what}; nothing was changed",
                         hint=hint or f"re-run with --confirm {stack} (or the notebook "
                                      f"parameter confirm={stack!r}) if that is intended" +
                              (f"; got {confirm!r}" if confirm else ""))
        self.stack = stack


class DestroyBlocked(UsageError):
    """Something would stop a destroy part-way (deletion protection): refused before the first
    delete, so a stack is never left half-destroyed."""

    def __init__(self, stack: str, blockers: list[str]):
        super().__init__(f"destroy of {stack} would stop part-way: {'; '.join(blockers)}; "
                         "nothing was deleted",
                         hint="deploy with db.deletion_protection=false first (a reviewed plan "
                              "on a protected stack), then destroy")
        self.stack, self.blockers = stack, list(blockers)


class PreflightBlocked(ChecksFailed):
    """Error-level preflight findings stopped a preview or deploy; nothing was changed."""

    def __init__(self, stack: str, operation: str, report):
        super().__init__(f"preflight found {report.errors} error(s); {operation} of {stack} "
                         f"stopped before anything changed:\n{report.errors_text()}",
                         hint="fix them (tap preflight shows every finding), or skip a rule on "
                              "purpose with --skip-rule ID --reason TEXT")
        self.report = report


class PlanRefused(UsageError):
    """The plan cannot be applied as reviewed; nothing was changed."""

    def __init__(self, source: str, problem: str, hint: str | None = None):
        super().__init__(f"{source}: {problem}; nothing was changed",
                         hint=hint or "make a new plan with `tap preview --save-plan FILE` and "
                                      "have it reviewed")


class SignatureRefused(UsageError):
    """A signature (plan, approval, seal) that proves nothing: missing, damaged, made by a key
    params/approvers does not list, or over other content."""

    def __init__(self, what: str, problem: str, hint: str | None = None):
        super().__init__(f"{what}: {problem}; nothing was changed",
                         hint=hint or "sign with a key listed in params/approvers "
                                      "(TAP_SIGNING_KEY)")
        self.what, self.problem = what, problem


class UnknownProperty(OperationFailed):
    """A changed input the replacement table does not know: classifying it would be a guess."""

    def __init__(self, type_: str, names: list[str]):
        super().__init__(f"{type_}: no replacement rule for changed input(s) {', '.join(names)}",
                         hint="regenerate tap_lib/engines/sandbox/replacements.json with "
                              "scripts/gen_replacements.py from a terraform-provider-aws checkout "
                              "that has these attributes")
        self.type, self.names = type_, names


class RecordsUnwritable(UsageError):
    """The audit trail, a seal, a record or the index cannot be written (TAP_OUTPUTS names a
    file, no space left, no permission): a mutation tap cannot record does not start."""

    def __init__(self, path: object, reason: str, *, variable: str | None = None,
                 outcome: str = "nothing was changed"):
        where = f"{path}" + (f" (TAP_OUTPUTS={variable})" if variable else "")
        super().__init__(f"cannot write the audit records at {where}: {reason}; {outcome}",
                         hint="point TAP_OUTPUTS at a writable directory with free space "
                              "(or unset it for outputs/)")
        self.path, self.reason, self.variable = str(path), reason, variable


class LockedCopyUnwritable(RecordsUnwritable):
    """A trail entry or seal could not be written to the Object Lock copy of an s3:// records
    root (access denied, no Object Lock, unreachable): its local line was taken back, and a
    mutation whose start is not locked does not start."""

    def __init__(self, path: object, reason: str, *, variable: str | None = None,
                 outcome: str = "nothing was changed"):
        super().__init__(path, reason, variable=variable, outcome=outcome)
        self.hint = ("TAP_OUTPUTS must name a reachable bucket with S3 Object Lock enabled, "
                     "where you may s3:PutObject and s3:PutObjectRetention")
