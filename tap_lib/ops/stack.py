"""Preview, deploy, refresh, destroy and outputs: thin, engine-agnostic operations returning data.

Preview and deploy are gated by preflight, as a policy pack gates `pulumi up`: an error-level
finding stops them before the engine runs (`skip_rules` names deliberate exceptions, with the
reason, which the result carries). Protection and origin guards live in the engine itself
(engines/base.Engine), so no path around these functions bypasses them; protected stacks deploy
only reviewed plans (ops/plans).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import trail
from ..config import Settings, load_settings
from ..engines.base import Plan, ProgressCallback, Result
from ..engines.registry import check_target, open_engine
from ..errors import ChecksFailed, PreflightBlocked, ProtectedStack, UsageError

if TYPE_CHECKING:
    from . import plans
    from .preflight import PreflightReport


def settings_for(env: str, overrides: tuple[str, ...] | list[str] = ()) -> Settings:
    return load_settings(env, tuple(overrides))


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
            reason: str | None = None, artifact=None) -> Plan:
    """The plan and its cost. A stack another operation holds is refused before preflight
    (StackLocked); the program is synthesized once for preflight and the cost."""
    settings = settings_for(env, overrides)
    skip = skip_map(skip_rules, reason)
    engine = open_engine(settings, target, tuple(overrides))
    engine.check_not_busy()
    _, report = _gate(settings, target, "preview", skip)
    plan = engine.preview(artifact)
    from ..cost.plan import plan_cost

    # the plan's cost: after (the synthesis preflight read), and after - before
    plan_cost(plan, settings, engine.resources(), synthesis=report.synthesis)
    return plan


def deploy(env: str, target: str | None = None, overrides=(),
           progress: ProgressCallback | None = None, *, yes: bool = False,
           confirm: str | None = None, skip_rules=(), reason: str | None = None,
           refresh: bool = False, plan: str | Path | plans.ReviewedPlan | None = None
           ) -> Result:
    """Apply the program. A protected stack deploys only from a reviewed plan (`plan`: a file
    `tap preview --save-plan` wrote, or a preview record) signed by its author and approved by
    a second key, and needs `confirm` (its name) for deletes and replacements. Unprotected
    stacks deploy the program as it is now, exactly a given plan, or exactly the unsaved plan
    an interactive deploy showed (`plans.make_plan`: refused if the stack moved since)."""
    from . import plans

    saved = isinstance(plan, (str, Path))
    reviewed = plans.load_plan(plan) if saved else plan
    if reviewed is not None:
        if reviewed.operation != "deploy":
            raise plans.PlanRefused(reviewed.source, f"a {reviewed.operation} plan; "
                                    f"`tap {reviewed.operation} --plan` applies it")
        if refresh:
            raise UsageError("--refresh changes the state a reviewed plan was computed "
                             "against; refresh first, then make the plan")
        if env != reviewed.body["env"]:
            raise plans.PlanRefused(reviewed.source, f"the plan is for --env "
                                                     f"{reviewed.body['env']}, not {env}")
        overrides = overrides or tuple(reviewed.body["overrides"])
        skip = dict(reviewed.body["skipped_rules"])
    else:
        skip = skip_map(skip_rules, reason)
    settings = settings_for(env, overrides)
    target = check_target(target)
    engine = open_engine(settings, target, tuple(overrides))
    engine.check_not_busy()
    try:  # refusals before the engine runs are policy decisions: the trail keeps them too
        engine.check_origin(confirm)
        if reviewed is not None:
            plans.check_applicable(reviewed, engine, env, target, tuple(overrides))
        elif engine.is_protected():
            raise ProtectedStack(engine.stack, "it deploys only from a reviewed plan signed by "
                                               "its author and approved by a second key",
                                 confirm,
                                 hint=f"tap preview --env {env} --save-plan FILE; another "
                                      "principal of params/approvers: tap approve FILE; then "
                                      f"tap deploy --env {env} --plan FILE")
        notes = gate(settings, target, "deploy", skip)
    except (UsageError, ChecksFailed) as exc:
        _refused("deploy", engine, exc, reviewed)
        raise
    if reviewed is not None and saved:
        approved = plans.approved_by(reviewed)
        notes.append(f"applied reviewed plan {reviewed.hash} by {reviewed.author}, approved "
                     f"by {', '.join(approved) or 'nobody'}")
    elif reviewed is not None:
        notes.append(f"applied the plan shown ({reviewed.hash})")
    if refresh:  # repair drift: compare the program with what is live, not with old state
        drifted = engine.refresh(confirm=confirm).changes
        notes.append(f"refresh found {len(drifted)} resource(s) changed behind tap's back"
                     + (": " + ", ".join(s.name for s in drifted) if drifted else ""))
    with trail.context(notes=notes,  # the trail entry carries the skipped rules too
                       plan_hash=reviewed.hash if reviewed else None):
        result = engine.up(progress, confirm=confirm,
                           plan=reviewed.plan if reviewed else None,
                           authorization=reviewed.authorization if reviewed else None)
    result.notes[:0] = notes
    return result


def refresh(env: str, target: str | None = None, overrides=(),
            progress: ProgressCallback | None = None, *, confirm: str | None = None,
            plan: str | Path | None = None) -> Result:
    """Read what is live into the state; a protected stack only with an approved refresh plan
    (`tap preview --refresh --save-plan FILE`, then `tap approve FILE`)."""

    target = check_target(target)
    engine = open_engine(settings_for(env, overrides), target, tuple(overrides))
    reviewed = _reviewed("refresh", plan, engine, env, target, overrides)
    return engine.refresh(progress, confirm=confirm,
                          authorization=reviewed.authorization if reviewed else None)


def check_destroy_confirmation(settings: Settings, yes: bool) -> None:
    """destroy always needs --yes; a protected stack also needs --confirm (engine guard)."""
    if not yes:
        raise UsageError(f"destroy deletes every resource of {settings.stack_name}; "
                         "re-run with --yes")


def destroy(env: str, target: str | None = None, overrides=(), *, yes: bool = False,
            confirm: str | None = None, progress: ProgressCallback | None = None,
            plan: str | Path | None = None) -> Result:
    """Delete every resource; a protected stack only with an approved destroy plan (`tap
    preview --destroy --save-plan FILE`, then `tap approve FILE`)."""

    settings = settings_for(env, overrides)
    check_destroy_confirmation(settings, yes)
    target = check_target(target)
    engine = open_engine(settings, target, tuple(overrides))
    reviewed = _reviewed("destroy", plan, engine, env, target, overrides)
    return engine.destroy(progress, confirm=confirm,
                          authorization=reviewed.authorization if reviewed else None)


def _reviewed(operation: str, plan: str | Path | None, engine, env: str, target: str,
              overrides) -> plans.ReviewedPlan | None:
    """The saved `operation` plan, checked against the stack before the engine runs; a refused
    one is a policy decision, so the trail keeps it too."""
    from . import plans

    reviewed = plans.load_plan(plan) if plan else None
    try:
        if reviewed is not None:
            if reviewed.operation != operation:
                raise plans.PlanRefused(reviewed.source, f"not a {operation} plan (make one with "
                                        f"`tap preview --{operation} --save-plan`)")
            plans.check_applicable(reviewed, engine, env, target, tuple(overrides))
    except UsageError as exc:
        _refused(operation, engine, exc, reviewed)
        raise
    return reviewed


def _refused(operation: str, engine, exc: Exception, reviewed) -> None:
    trail.append(operation=operation, stack=engine.stack, target=engine.name,
                 env_file=engine.settings.source, result="refused", error=type(exc).__name__,
                 plan_hash=reviewed.hash if reviewed else None)


def outputs(env: str, target: str | None = None, overrides=()) -> dict[str, Any]:
    return open_engine(settings_for(env, overrides), target, tuple(overrides)).outputs()
