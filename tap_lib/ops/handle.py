"""`Stack`: the public handle on one stack, as Pulumi's automation `Stack` is.

    stack = Stack.open("dev", "sandbox")       # settings now (ConfigError before anything runs)
    plan = stack.preview()                     # the engine opens on first use, once
    result = stack.deploy(plan=reviewed)       # or a plan file / preview record
    report = stack.verify()

The notebooks and the CLI use it instead of the operations' ten arguments. Settings are read
once; the engine opens on first use and every step of an operation runs on it (a repair used
to open six engines, it now opens one). It only delegates: preflight, plan checks, protection,
origin, locks and the trail all run in the operations and the engine below it, so a path that
skips the handle skips no guard. Errors are the typed ones of errors.py.

Reads share the engine. A change (deploy, refresh, destroy, repair) starts on a freshly opened
one, which later reads then share: an engine may hold the stack's state as it first read it
(the sandbox's does), and the guards of a change (a plan's state fingerprint, the stack's
origin and protection, what would block a destroy) must judge the stack as it is now, not as
an earlier call of a long-lived handle saw it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Settings
from ..engines.base import Engine, Plan, ProgressCallback, ResourceState, Result
from ..engines.registry import check_target, open_engine
from . import plans
from . import stack as stack_ops
from .gating import settings_for, skip_map


class Stack:
    """One stack: an environment file (with overrides) on a target."""

    def __init__(self, env: str, settings: Settings, target: str | None = None,
                 overrides: tuple[str, ...] = ()):
        self.env = env
        self.settings = settings
        self.overrides = tuple(overrides)
        self._target = target
        self._engine: Engine | None = None

    @classmethod
    def open(cls, env: str, target: str | None = None, overrides=()) -> Stack:
        """Read the environment file now (ConfigError names the field); the engine waits for
        the first operation that needs it."""
        overrides = tuple(overrides or ())
        return cls(env, settings_for(env, overrides), target, overrides)

    # -- what it is ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.settings.stack_name

    @property
    def target(self) -> str:
        """The target's name (`--target`, else TAP_TARGET, else the sandbox), fixed at first
        use; UsageError for an unknown one."""
        self._target = check_target(self._target)
        return self._target

    @property
    def engine(self) -> Engine:
        """The engine this handle reads with, opened on first use."""
        if self._engine is None:
            self._engine = open_engine(self.settings, self.target, self.overrides)
        return self._engine

    def _engine_for_change(self) -> Engine:
        """A freshly opened engine for a change, kept for the reads after it."""
        self._engine = None
        return self.engine

    def __repr__(self) -> str:
        return f"Stack({self.name!r}, env={self.env!r}, target={self._target!r})"

    # -- reading ------------------------------------------------------------------------------
    def outputs(self) -> dict[str, Any]:
        return stack_ops.outputs(self.env, self.target, self.overrides, engine=self.engine)

    def resources(self) -> list[ResourceState]:
        return self.engine.resources()

    def verify(self, *, live: bool = True):
        """verify's report (ops/verify.VerifyReport); NotDeployed for a stack never deployed."""
        from .verify import verify

        return verify(self.env, self.target, self.overrides, live=live, engine=self.engine)

    def inspect(self):
        """Outputs, inventory, drift, history and topology (ops/inspect.Inspection)."""
        from .inspect import inspect_stack

        return inspect_stack(self.env, self.target, self.overrides, engine=self.engine)

    # -- planning -----------------------------------------------------------------------------
    def preview(self, *, skip_rules=(), reason: str | None = None,
                artifact: Path | None = None) -> Plan:
        """The plan and its cost, gated by preflight (PreflightBlocked)."""
        skip_map(skip_rules, reason)    # a usage error before the engine opens, as ever
        return stack_ops.preview(self.env, self.target, self.overrides, skip_rules=skip_rules,
                                 reason=reason, artifact=artifact, engine=self.engine)

    def plan(self, *, skip_rules=(), reason: str | None = None, artifact: Path | None = None,
             destroy: bool = False, refresh: bool = False) -> plans.ReviewedPlan:
        """A plan for review (`plans.save_plan` writes it; a second principal approves it):
        the preview with everything it was computed against, signed when a key is set."""
        skip_map(skip_rules, reason)
        return plans.make_plan(self.env, self.target, self.overrides, skip_rules=skip_rules,
                               reason=reason, artifact=artifact, destroy=destroy,
                               refresh=refresh, engine=self.engine)

    # -- changing -----------------------------------------------------------------------------
    def deploy(self, *, plan: str | Path | plans.ReviewedPlan | None = None,
               progress: ProgressCallback | None = None, confirm: str | None = None,
               skip_rules=(), reason: str | None = None, refresh: bool = False) -> Result:
        """Apply the program, or exactly `plan` (a file, a preview record, or a ReviewedPlan).
        A protected stack deploys only an approved plan (ProtectedStack, PlanRefused)."""
        if plan is None:
            skip_map(skip_rules, reason)
            engine = self._engine_for_change()
        else:  # a plan names its overrides: the operation reads it, then opens its engine
            engine = self._engine = None
        return stack_ops.deploy(self.env, self.target, self.overrides, progress, yes=True,
                                confirm=confirm, skip_rules=skip_rules, reason=reason,
                                refresh=refresh, plan=plan, engine=engine)

    def refresh(self, *, progress: ProgressCallback | None = None, confirm: str | None = None,
                plan: str | Path | None = None) -> Result:
        """Read what is live into the state; a protected stack needs an approved refresh plan."""
        return stack_ops.refresh(self.env, self.target, self.overrides, progress,
                                 confirm=confirm, plan=plan, engine=self._engine_for_change())

    def destroy(self, *, yes: bool = False, confirm: str | None = None,
                progress: ProgressCallback | None = None,
                plan: str | Path | None = None) -> Result:
        """Delete every resource: needs `yes`; a protected stack an approved destroy plan."""
        stack_ops.check_destroy_confirmation(self.settings, yes)   # before the engine opens
        return stack_ops.destroy(self.env, self.target, self.overrides, yes=yes,
                                 confirm=confirm, progress=progress, plan=plan,
                                 engine=self._engine_for_change())

    def repair(self, *, progress: ProgressCallback | None = None, confirm: str | None = None):
        """verify, refresh, preview, deploy, revoke undeclared ingress, verify again, on this
        handle's engine (ops/repair.RepairResult); a protected stack is refused."""
        from .repair import repair

        return repair(self.env, self.target, self.overrides, progress=progress, yes=True,
                      confirm=confirm, engine=self._engine_for_change())
