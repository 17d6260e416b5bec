"""The gated preview and what every stack operation starts from: settings, an engine, preflight.

This is the bottom of the stack operations: reviewed plans (ops/plans) are made from a preview,
and deploy/refresh/destroy (ops/stack) apply reviewed plans, so the preview lives below both
and neither imports the other back. Preview is gated by preflight, as a policy pack gates
`pulumi up`: an error-level finding stops it before the engine runs (`skip_rules` names
deliberate exceptions, with the reason, which the result carries).

Each operation takes an optional `engine` already open on the stack (a `Stack` handle's, so one
repair opens one engine); without one it opens its own. The guards run either way: they sit in
these operations and in the engine, never in the handle.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import Settings, load_settings
from ..engines.base import Engine, Plan
from ..engines.registry import check_target, open_engine
from ..errors import PreflightBlocked, UsageError

if TYPE_CHECKING:
    from .preflight import PreflightReport


def settings_for(env: str, overrides: tuple[str, ...] | list[str] = ()) -> Settings:
    return load_settings(env, tuple(overrides))


def engine_for(env: str, target: str | None, overrides=(), engine: Engine | None = None
               ) -> Engine:
    """`engine` when the caller has one open on this stack, else a new one."""
    if engine is not None:
        return engine
    return open_engine(settings_for(env, overrides), target, tuple(overrides))


def skip_map(skip_rules=(), reason: str | None = None) -> dict[str, str]:
    """--skip-rule IDs with their --reason: a deliberate exception must say why."""
    skip_rules = tuple(skip_rules or ())
    if skip_rules and not (reason or "").strip():
        raise UsageError("--skip-rule needs --reason TEXT: the audit trail records why a rule "
                         "was skipped")
    return {rule.upper(): reason.strip() for rule in skip_rules}


def gate(settings: Settings, target: str | None, operation: str,
         skip: dict[str, str]) -> list[str]:
    """Run preflight; refuse on errors. Returns notes for the skipped rules."""
    return _gate(settings, target, operation, skip)[0]


def _gate(settings: Settings, target: str | None, operation: str,
          skip: dict[str, str]) -> tuple[list[str], PreflightReport]:
    """gate, also returning the report: its synthesis serves the rest of the command."""
    from .preflight import run_preflight

    report = run_preflight(settings, target=check_target(target), skip=skip)
    if not report.ok:
        raise PreflightBlocked(settings.stack_name, operation, report)
    return [f"preflight rule {rule} skipped: {reason}" for rule, reason in skip.items()], report


def preview(env: str, target: str | None = None, overrides=(), *, skip_rules=(),
            reason: str | None = None, artifact=None, engine: Engine | None = None) -> Plan:
    """The plan and its cost. A stack another operation holds is refused before preflight
    (StackLocked); the program is synthesized once for preflight and the cost."""
    settings = engine.settings if engine is not None else settings_for(env, overrides)
    skip = skip_map(skip_rules, reason)
    if engine is None:
        engine = open_engine(settings, target, tuple(overrides))
    engine.check_not_busy()
    _, report = _gate(settings, target, "preview", skip)
    plan = engine.preview(artifact)
    from ..cost.plan import plan_cost

    # the plan's cost: after (the synthesis preflight read), and after - before
    plan_cost(plan, settings, engine.resources(), synthesis=report.synthesis)
    return plan
