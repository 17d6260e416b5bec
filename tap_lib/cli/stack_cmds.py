"""`tap config|preflight|preview|approve|deploy|destroy|refresh|outputs|verify|inspect`: the
commands that read or change one stack. Each parses nothing itself: it opens the stack's handle
(tap_lib.Stack), calls one of its operations and displays what it returns (imports on demand,
so `tap --help` stays light)."""
from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..terminal import emit_json, emit_table, plan_text
from .common import command, progress_for


def _stack(args):
    """The handle on the stack the arguments name (--env, --target, --set)."""
    from ..ops.handle import Stack

    return Stack.open(args.env, args.target, args.set)


@command("config")
def cmd_config(args) -> int:
    from ..ops.names import account_for, names_table

    stack = _stack(args)
    settings, target = stack.settings, stack.target
    names = settings.physical_names(account_for(target, settings.region))
    table = names_table(names)
    if args.json:
        emit_json({"stack": settings.stack_name, "target": target,
                   "settings": settings.public_dict(), "names": table.to_dict("records")})
    else:
        import yaml

        print(f"# {settings.stack_name} (target {target})")
        print(yaml.safe_dump(settings.public_dict(), sort_keys=False).rstrip())
        emit_table(table[["resource", "kind", "name", "valid"]], "\nphysical names:")
    return 0 if table["valid"].all() else 1


@command("preflight")
def cmd_preflight(args) -> int:
    from ..ops.preflight import run_preflight

    stack = _stack(args)
    report = run_preflight(stack.settings, target=stack.target)
    if args.json:
        emit_json(report.to_dict())
    else:
        emit_table(report.findings, f"preflight {args.env}:", problems_first=True)
        print(f"{report.errors} error(s), {report.warnings} warning(s)")
    return 0 if report.ok else 1


@command("preview")
def cmd_preview(args) -> int:
    stack = _stack(args)
    if args.save_plan:
        from ..ops import plans

        # Where a target with plans of its own (Pulumi) keeps one; others write nothing there.
        artifact = Path(args.save_plan + ".target-plan.json")
        reviewed = stack.plan(skip_rules=args.skip_rule, reason=args.reason, artifact=artifact,
                              destroy=args.destroy, refresh=args.refresh)
        path = plans.save_plan(reviewed, args.save_plan)
        plan = reviewed.plan
    elif args.destroy or args.refresh:
        raise UsageError("--destroy and --refresh make a plan for review: give --save-plan "
                         "FILE")
    else:
        plan = stack.preview(skip_rules=args.skip_rule, reason=args.reason)
    if args.json:
        emit_json({**plan.to_dict(), **({"plan_file": str(path), "plan_hash": reviewed.hash}
                                        if args.save_plan else {})})
    else:
        plan_text(plan)
        if args.save_plan:
            signed = "signed" if reviewed.signature else \
                "UNSIGNED (no TAP_SIGNING_KEY: a protected stack will not deploy it)"
            print(f"plan saved to {path} ({reviewed.hash}), {signed}; a second principal of "
                  f"params/approvers approves it with `tap approve {path}`")
    return 0


@command("approve")
def cmd_approve(args) -> int:
    from ..ops import plans

    reviewed = plans.approve(args.plan)
    if args.json:
        emit_json({"plan": reviewed.source, "hash": reviewed.hash, "author": reviewed.author,
                   "approved_by": plans.approved_by(reviewed)})
    else:
        plan_text(reviewed.plan)
        print(f"approved {reviewed.source} ({reviewed.hash}) by "
              f"{', '.join(plans.approved_by(reviewed))}; author {reviewed.author}")
    return 0


@command("deploy")
def cmd_deploy(args) -> int:
    from .. import cli  # its _interactive and _ask, looked up now (tests replace them)

    skip = dict(skip_rules=args.skip_rule, reason=args.reason)
    if args.plan:
        result = _stack(args).deploy(progress=progress_for(args), confirm=args.confirm,
                                     plan=args.plan, **skip)
        return _show_result(args, result)
    shown = None
    if not args.yes and (args.json or not cli._interactive()):
        raise UsageError("deploy needs --yes when not run interactively")
    stack = _stack(args)
    if not args.yes:  # as `terraform apply`: refresh, show the plan, apply exactly it
        if args.refresh:
            stack.refresh(confirm=args.confirm)
        shown = stack.plan(**skip)
        shown.source = "the plan shown"
        plan_text(shown.plan)
        if not shown.plan.changes:
            print("nothing to do")
            return 0
        if not cli._ask(f"apply these changes to {shown.stack}? [y/N] "):
            print("cancelled; nothing changed")
            return 0
    result = stack.deploy(progress=progress_for(args), confirm=args.confirm,
                          refresh=args.refresh and shown is None, plan=shown,
                          **({} if shown else skip))
    return _show_result(args, result)


def _show_result(args, result) -> int:
    if args.json:
        emit_json(result.to_dict())
    else:
        plan_text(result)
        for note in result.notes:
            print(f"note: {note}")
        print(f"done in {result.duration_s:.1f}s")
    return 0


@command("destroy")
def cmd_destroy(args) -> int:
    result = _stack(args).destroy(yes=args.yes, confirm=args.confirm,
                                  progress=progress_for(args), plan=args.plan)
    emit_json(result.to_dict()) if args.json else plan_text(result)
    return 0


@command("refresh")
def cmd_refresh(args) -> int:
    result = _stack(args).refresh(progress=progress_for(args), confirm=args.confirm,
                                  plan=args.plan)
    emit_json(result.to_dict()) if args.json else plan_text(result)
    return 0


@command("outputs")
def cmd_outputs(args) -> int:
    out = _stack(args).outputs()
    if args.json:
        emit_json(out)
    else:
        for key, value in out.items():
            print(f"{key:<24} {value}")
    return 0


@command("verify")
def cmd_verify(args) -> int:
    report = _stack(args).verify()
    if args.json:
        emit_json(report.to_dict())
    else:
        emit_table(report.checks, f"verify {args.env}:", problems_first=True)
        print(f"{report.passed} passed, {report.failed} failed"
              + (f", {report.excepted} excepted" if report.excepted else "")
              + (f", {report.unverified} unverified (the target cannot show them)"
                 if report.unverified else "")
              + f" ({report.aws_calls} AWS calls)")
        for note in report.notes:
            print(f"note: {note}")
        if report.failed:
            print(f"to converge drift: tap run repair --env {args.env} (verify, refresh, "
                  "deploy, revoke undeclared rules, verify again; its record shows each "
                  "failed check before and after)")
    return 0 if report.failed == 0 else 1


@command("inspect")
def cmd_inspect(args) -> int:
    result = _stack(args).inspect()
    if args.json:
        emit_json(result.to_dict())
    else:
        for key, value in result.outputs.items():
            print(f"{key:<24} {value}")
        emit_table(result.inventory, "\nresources:")
        emit_table(result.drift, "\ndrift:")
        emit_table(result.history, "\nhistory:")
        if result.topology_path:
            print(f"\ntopology picture: {result.topology_path}")
    return 0
