"""Deploy, refresh, destroy and outputs: thin, engine-agnostic operations returning data.

Deploy is gated by preflight like preview (ops/gating, re-exported here): an error-level finding
stops it before the engine runs. Protection and origin guards live in the engine itself
(engines/base.Engine), so no path around these functions bypasses them; protected stacks deploy
only reviewed plans (ops/plans). Each operation takes an optional `engine` already open on the
stack (a `Stack` handle's); the checks here run whichever engine it is.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import trail
from ..config import Settings
from ..engines.base import Engine, ProgressCallback, Result
from ..engines.registry import check_target, open_engine
from ..errors import ChecksFailed, ProtectedStack, UsageError
from . import plans
from .gating import _gate, engine_for, gate, preview, settings_for, skip_map  # noqa: F401


def deploy(env: str, target: str | None = None, overrides=(),
           progress: ProgressCallback | None = None, *, yes: bool = False,
           confirm: str | None = None, skip_rules=(), reason: str | None = None,
           refresh: bool = False, plan: str | Path | plans.ReviewedPlan | None = None,
           engine: Engine | None = None) -> Result:
    """Apply the program. A protected stack deploys only from a reviewed plan (`plan`: a file
    `tap preview --save-plan` wrote, or a preview record) signed by its author and approved by
    a second key, and needs `confirm` (its name) for deletes and replacements. Unprotected
    stacks deploy the program as it is now, exactly a given plan, or exactly the unsaved plan
    an interactive deploy showed (`plans.make_plan`: refused if the stack moved since).
    `engine` serves unless a plan brings overrides the engine was not opened with."""
    passed = tuple(overrides)
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
    if tuple(overrides) != passed:
        engine = None                 # the plan's overrides: settings of their own
    settings = engine.settings if engine is not None else settings_for(env, overrides)
    target = check_target(target)
    if engine is None:
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
        with engine.preparing_up():
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
            plan: str | Path | None = None, engine: Engine | None = None) -> Result:
    """Read what is live into the state; a protected stack only with an approved refresh plan
    (`tap preview --refresh --save-plan FILE`, then `tap approve FILE`)."""

    target = check_target(target)
    engine = engine_for(env, target, overrides, engine)
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
            plan: str | Path | None = None, engine: Engine | None = None) -> Result:
    """Delete every resource; a protected stack only with an approved destroy plan (`tap
    preview --destroy --save-plan FILE`, then `tap approve FILE`)."""

    settings = engine.settings if engine is not None else settings_for(env, overrides)
    check_destroy_confirmation(settings, yes)
    target = check_target(target)
    if engine is None:
        engine = open_engine(settings, target, tuple(overrides))
    reviewed = _reviewed("destroy", plan, engine, env, target, overrides)
    return engine.destroy(progress, confirm=confirm,
                          authorization=reviewed.authorization if reviewed else None)


def _reviewed(operation: str, plan: str | Path | None, engine, env: str, target: str,
              overrides) -> plans.ReviewedPlan | None:
    """The saved `operation` plan, checked against the stack before the engine runs; a refused
    one is a policy decision, so the trail keeps it too."""
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


def outputs(env: str, target: str | None = None, overrides=(), *,
            engine: Engine | None = None) -> dict[str, Any]:
    return engine_for(env, target, overrides, engine).outputs()
