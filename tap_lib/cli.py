"""`tap`: the command line. Parses, calls an operation, displays what it returns.

Exit codes: 0 success, 1 the operation found problems, 2 bad usage or configuration,
3 target unreachable or an operation failed part-way (see errors.py).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

from . import terminal
from .errors import ChecksFailed, TapError, UsageError
from .terminal import emit_json, emit_table
from .terminal import plan_text

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn
    return register


def _interactive() -> bool:
    """A person can answer a prompt: stdin is open and a terminal (`<&-` leaves it None)."""
    return sys.stdin is not None and not sys.stdin.closed and sys.stdin.isatty()


def _ask(question: str) -> bool:
    try:
        return input(question).strip().lower() == "y"
    except EOFError:
        return False


def _progress(args):
    if args.json:
        return None
    from .progress import LineProgress

    return LineProgress()


# -- commands ---------------------------------------------------------------------------------
@command("config")
def cmd_config(args) -> int:
    from .engines.registry import check_target
    from .ops.names import account_for, names_table
    from .ops.stack import settings_for

    settings = settings_for(args.env, args.set)
    target = check_target(args.target)
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
    from .engines.registry import check_target
    from .ops.preflight import run_preflight
    from .ops.stack import settings_for

    report = run_preflight(settings_for(args.env, args.set), target=check_target(args.target))
    if args.json:
        emit_json(report.to_dict())
    else:
        emit_table(report.findings, f"preflight {args.env}:", problems_first=True)
        print(f"{report.errors} error(s), {report.warnings} warning(s)")
    return 0 if report.ok else 1


@command("preview")
def cmd_preview(args) -> int:
    from .ops import stack

    if args.save_plan:
        from .ops import plans

        # Where a target with plans of its own (Pulumi) keeps one; others write nothing there.
        artifact = Path(args.save_plan + ".target-plan.json")
        reviewed = plans.make_plan(args.env, args.target, args.set, skip_rules=args.skip_rule,
                                   reason=args.reason, artifact=artifact, destroy=args.destroy,
                                   refresh=args.refresh)
        path = plans.save_plan(reviewed, args.save_plan)
        plan = reviewed.plan
    elif args.destroy or args.refresh:
        raise UsageError("--destroy and --refresh make a plan for review: give --save-plan "
                         "FILE")
    else:
        plan = stack.preview(args.env, args.target, args.set, skip_rules=args.skip_rule,
                             reason=args.reason)
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
    from .ops import plans

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
    from .ops import stack

    skip = dict(skip_rules=args.skip_rule, reason=args.reason)
    if args.plan:
        result = stack.deploy(args.env, args.target, args.set, progress=_progress(args),
                              yes=True, confirm=args.confirm, plan=args.plan, **skip)
        return _show_result(args, result)
    shown = None
    if not args.yes:  # as `terraform apply`: refresh, show the plan, apply exactly it
        if args.json or not _interactive():
            raise UsageError("deploy needs --yes when not run interactively")
        from .ops import plans

        if args.refresh:
            stack.refresh(args.env, args.target, args.set, confirm=args.confirm)
        shown = plans.make_plan(args.env, args.target, args.set, **skip)
        shown.source = "the plan shown"
        plan_text(shown.plan)
        if not shown.plan.changes:
            print("nothing to do")
            return 0
        if not _ask(f"apply these changes to {shown.stack}? [y/N] "):
            print("cancelled; nothing changed")
            return 0
    result = stack.deploy(args.env, args.target, args.set, progress=_progress(args), yes=True,
                          confirm=args.confirm, refresh=args.refresh and shown is None,
                          plan=shown, **({} if shown else skip))
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
    from .ops import stack

    result = stack.destroy(args.env, args.target, args.set, yes=args.yes, confirm=args.confirm,
                           progress=_progress(args), plan=args.plan)
    emit_json(result.to_dict()) if args.json else plan_text(result)
    return 0


@command("refresh")
def cmd_refresh(args) -> int:
    from .ops import stack

    result = stack.refresh(args.env, args.target, args.set, progress=_progress(args),
                           confirm=args.confirm, plan=args.plan)
    emit_json(result.to_dict()) if args.json else plan_text(result)
    return 0


@command("outputs")
def cmd_outputs(args) -> int:
    from .ops import stack

    out = stack.outputs(args.env, args.target, args.set)
    if args.json:
        emit_json(out)
    else:
        for key, value in out.items():
            print(f"{key:<24} {value}")
    return 0


@command("verify")
def cmd_verify(args) -> int:
    from .ops.verify import verify

    report = verify(args.env, args.target, args.set)
    if args.json:
        emit_json(report.to_dict())
    else:
        emit_table(report.checks, f"verify {args.env}:", problems_first=True)
        print(f"{report.passed} passed, {report.failed} failed"
              + (f", {report.excepted} excepted" if report.excepted else "")
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
    from .ops.inspect import inspect_stack

    result = inspect_stack(args.env, args.target, args.set)
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


@command("run")
def cmd_run(args) -> int:
    from .ops.runbook import run_notebooks

    def show(name, record):
        if record is None:
            print(f"running    {name:<12} ...", flush=True)
            return
        print(f"{record.status:<10} {name:<12} {record.duration_s:6.1f}s  {record.path}",
              flush=True)
        if record.error:
            print(f"           {record.error}")

    params = dict(args.parameter or [])
    if len(params) != len(args.parameter or []):
        raise UsageError("each notebook parameter may be given once with -p")
    records = run_notebooks(args.notebook, env=args.env, target=args.target, parameters=params,
                            progress=None if args.json else show)
    if args.json:
        emit_json([r.to_dict() for r in records])
    return 1 if any(r.status != "succeeded" for r in records) else 0


@command("audit")
def cmd_audit(args) -> int:
    from .ops import audit

    if args.export:
        path = audit.export_html(args.export)
        print(path)
        return 0
    if args.action == "verify":
        report = audit.verify(expect_head=args.head, require_seals=args.require_seals)
        if args.json:
            emit_json(report.to_dict())
            return 0 if report.ok else 1
        for problem in report.problems:
            print(problem)
        if report.interrupted:
            print(f"warning: {len(report.interrupted)} mutation(s) started and never ended "
                  "(killed, or still running): entries "
                  + ", ".join(f"#{q}" for q in report.interrupted[:20]))
        for warning in report.warnings:
            print(f"warning: {warning}")
        if report.unsealed:
            first, last = report.unsealed[0], report.unsealed[-1]
            print(f"warning: {len(report.unsealed)} entries unsealed (#{first}"
                  + (f"…#{last}" if last != first else "") + "): no seal by a key "
                  "params/approvers lists vouches for them (`tap audit seal`)")
        state = "intact" if report.ok else f"BROKEN: {len(report.problems)} problem(s)"
        copy = "" if report.locked is None else (
            f" (its Object Lock copy holds {report.locked['entries']} entries, "
            f"{report.locked['seals']} seals)")
        print(f"audit chain {state}: {report.entries} entries, {report.records} records, "
              f"{report.seals} seal(s) under {report.root}{copy}; head #{report.head.seq} "
              f"{report.head.hash}")
        return 0 if report.ok else 1
    if args.action == "seal":
        made = audit.seal()
        if args.json:
            emit_json(made)
        else:
            print(f"sealed entries #{made['first']}…#{made['seq']} (head {made['hash']}) with "
                  f"{os.environ.get('TAP_SIGNING_KEY')}")
        return 0
    if args.action == "trail":
        rows = audit.trail_entries(env=args.env)
        if args.json:
            emit_json(rows)
            return 0
        import pandas as pd

        table = pd.DataFrame(rows, columns=audit.TRAIL_COLUMNS)
        table["sealed"] = table["sealed"].map({True: "yes", False: "no"})
        if not terminal.wide:
            table = table[["status", "seq", "time", "operation", "stack", "operator", "sealed"]]
        emit_table(table, "trail entries:")
        return 0
    table = audit.audit_table(env=args.env)
    if args.json:
        emit_json(table.to_dict("records"))
    else:
        if not terminal.wide:  # the columns an operator scans, within the terminal
            table = table.assign(record=table.path.str.rsplit("/", n=1).str[-1])[
                ["status", "record", "env", "operator", "summary"]]  # the name holds the time
        emit_table(table, "audit records:")
        head = audit.chain_head()
        print(f"chain head: #{head.seq} {head.hash}"
              + (f" ({head.time})" if head.time else " (empty trail)"))
    return 0


@command("lab")
def cmd_lab(args) -> int:
    from .lab import start_lab, stop_labs

    if args.action == "stop":
        stopped = stop_labs()
        for folder in stopped:
            print(f"stopped JupyterLab and its kernels for session {folder}")
        if not stopped:
            print("no tap lab running")
        return 0
    if not args.env:
        raise UsageError("tap lab needs --env ENV (the environment its notebooks run on)")
    return start_lab(args.env, args.target, port=args.port)


@command("sandbox")
def cmd_sandbox(args) -> int:
    from .engines.sandbox import server
    from .engines.sandbox.engine import reset_sandbox, stop_sandbox

    status = {"start": server.start, "stop": stop_sandbox, "status": server.status,
              "reset": reset_sandbox}[args.action]()
    if args.json:
        emit_json(status.to_dict())
    else:
        state = "running" if status.running else "stopped"
        line = f"sandbox {state} at {status.endpoint}"
        if status.running:
            line += f" (pid {status.pid}, up {status.uptime_s or 0:.0f}s)"
        print(line)
    return 0


@command("fleet")
def cmd_fleet(args) -> int:
    """verify|preview|inspect over many stacks at once (ops/fleet.py); list shows the stacks."""
    import pandas as pd

    from .ops import fleet

    stacks = fleet.resolve_stacks(args.env, args.suffix, args.fleet)
    if args.action == "list":
        rows = [{**ref.to_dict(), "stack": s.stack_name, "region": s.region}
                for ref, s in stacks]
        emit_json(rows) if args.json else emit_table(pd.DataFrame(rows), "fleet:")
        return 0

    def show(result) -> None:
        print(f"{result.status:<12} {result.stack:<24} {result.duration_s:6.1f}s"
              + (f"  {result.error}" if result.error else ""), flush=True)

    report = fleet.run_fleet(args.action, stacks, args.target, args.max_workers,
                             progress=None if args.json else show)
    if args.json:
        emit_json(report.to_list())
    else:
        emit_table(report.summary(), f"\nfleet {args.action} ({report.target}):")
        if args.action == "verify":
            matrix = report.matrix()
            failing = matrix.loc[:, (matrix == "fail").any()]
            if failing.shape[1]:
                emit_table(failing.reset_index(names="stack"), "\nfailed checks (stack x id):")
        print(f"{len(report.results)} stack(s) in {report.duration_s:.1f}s; "
              f"exit {report.exit_code}")
    return report.exit_code


# -- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from .engines.registry import TARGETS

    from . import __version__
    from .project import NOTEBOOKS, RUNBOOK

    parser = argparse.ArgumentParser(prog="tap", description="TapStack operations runbook")
    parser.add_argument("--version", action="version", version=f"tap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def stack_cmd(name: str, help_: str, *, sets: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--env", required=True, help="environment file params/<ENV>.yaml")
        p.add_argument("--target", choices=tuple(TARGETS), default=None,
                       help="where the stack lives (default sandbox, also TAP_TARGET)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--wide", action="store_true", help="tables as wide as their content")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override one setting, e.g. db.engine_version=15.6"
                       if sets else argparse.SUPPRESS)
        return p

    stack_cmd("config", "resolved settings and every physical name")
    stack_cmd("preflight", "check configuration and plan before deploying (changes nothing)")
    confirm_help = ("the stack name, e.g. TapStackprod: needed to delete or replace anything "
                    "of a protected stack, or to operate a stack from another environment file")

    def gated(p: argparse.ArgumentParser) -> None:
        p.add_argument("--skip-rule", action="append", default=[], metavar="ID",
                       help="do not let preflight rule ID block this run (needs --reason)")
        p.add_argument("--reason", help="why the skipped rules do not apply (recorded)")

    p = stack_cmd("preview", "show what deploy would change")
    p.add_argument("--save-plan", metavar="FILE",
                   help="save the plan for review, signed with TAP_SIGNING_KEY; `tap deploy "
                        "--plan FILE` applies exactly it")
    p.add_argument("--destroy", action="store_true",
                   help="with --save-plan: a destroy plan (`tap destroy --plan FILE`)")
    p.add_argument("--refresh", action="store_true",
                   help="with --save-plan: a refresh plan (`tap refresh --plan FILE`), which a "
                        "protected stack's refresh needs")
    gated(p)
    p = stack_cmd("deploy", "create or update the stack")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--confirm", metavar="STACK", help=confirm_help)
    p.add_argument("--refresh", action="store_true",
                   help="read what is live first, so the deploy also repairs drift")
    p.add_argument("--plan", metavar="FILE",
                   help="apply exactly this reviewed plan (a --save-plan file or a preview "
                        "record); protected stacks deploy only this way")
    gated(p)
    p = sub.add_parser("approve", help="approve a saved plan with your TAP_SIGNING_KEY (a "
                                       "key other than its author's)")
    p.add_argument("plan", metavar="FILE", help="the plan file or preview record")
    p.add_argument("--json", action="store_true")
    p = stack_cmd("refresh", "read every resource as it is now into the stack's state")
    p.add_argument("--confirm", metavar="STACK", help=confirm_help)
    p.add_argument("--plan", metavar="FILE",
                   help="an approved refresh plan (needed for a protected stack)")
    p = stack_cmd("destroy", "delete every resource of the stack")
    p.add_argument("--yes", action="store_true", help="required")
    p.add_argument("--confirm", metavar="STACK", help=confirm_help)
    p.add_argument("--plan", metavar="FILE",
                   help="an approved destroy plan (needed for a protected stack)")
    stack_cmd("outputs", "stack outputs")
    stack_cmd("verify", "read-only checks of the deployed stack")
    stack_cmd("inspect", "outputs, inventory, drift, history and a topology picture")

    p = sub.add_parser("run", help="execute notebooks with papermill into outputs/")
    p.add_argument("notebook", help="|".join((*NOTEBOOKS, "all")) + " (all: "
                   + " → ".join(RUNBOOK) + ")")
    p.add_argument("--env", required=True)
    p.add_argument("--target", choices=tuple(TARGETS), default=None)
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="notebook parameter")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("audit", help="list audit records; `tap audit verify` checks the chain")
    p.add_argument("action", nargs="?", choices=("list", "verify", "trail", "seal"),
                   default="list",
                   help="list (default) records; verify: exit 1 naming every broken record, "
                        "entry, index row or seal; trail: the trail's entries; seal: vouch "
                        "for the verified chain with TAP_SIGNING_KEY")
    p.add_argument("--head", metavar="HASH",
                   help="with verify: a chain head shown earlier, which must still be there")
    p.add_argument("--require-seals", action="store_true",
                   help="with verify: an entry no valid seal vouches for is a problem too")
    p.add_argument("--wide", action="store_true", help="tables as wide as their content")
    p.add_argument("--env")
    p.add_argument("--json", action="store_true")
    p.add_argument("--export", metavar="RECORD", help="export one record to HTML")

    p = sub.add_parser("lab", help="JupyterLab on working copies of the notebooks "
                                   "(saved sessions and their deploys are recorded)")
    p.add_argument("action", nargs="?", choices=("start", "stop"), default="start",
                   help="start (default) a session, or stop every running one and its kernels")
    p.add_argument("--env", help="environment file params/<ENV>.yaml (start)")
    p.add_argument("--target", choices=tuple(TARGETS), default=None)
    p.add_argument("--port", type=int, help="JupyterLab's port (default: its own choice)")

    p = sub.add_parser("sandbox", help="the local AWS emulator")
    p.add_argument("action", choices=("start", "stop", "status", "reset"))
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("fleet", help="verify, preview or inspect many stacks at once")
    p.add_argument("action", choices=("verify", "preview", "inspect", "list"))
    p.add_argument("--env", action="append", default=[],
                   help="environment file params/<ENV>.yaml (repeat for several)")
    p.add_argument("--suffix", action="append", default=[],
                   help="ad-hoc stack suffix applied to each --env (repeat for several)")
    p.add_argument("--fleet", metavar="FILE", nargs="?", const="",
                   help="a fleet file listing the stacks (default params/fleet.yaml when no "
                        "--env is given)")
    p.add_argument("--target", choices=tuple(TARGETS), default=None)
    p.add_argument("--max-workers", type=int, default=4, help="stacks at a time (default 4)")
    p.add_argument("--json", action="store_true", help="a list, one object per stack")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    terminal.wide = bool(getattr(args, "wide", False))
    try:
        return COMMANDS[args.command](args)
    except ChecksFailed as exc:
        print(f"tap: {exc}", file=sys.stderr)
        return exc.exit_code
    except TapError as exc:
        print(f"tap: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tap: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tap ... --json | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0
    except Exception as exc:  # noqa: BLE001 - a bug or an unexpected service answer
        if os.environ.get("TAP_DEBUG"):
            raise
        print(f"tap: error: {type(exc).__name__}: {exc}\n  hint: set TAP_DEBUG=1 to see the "
              "traceback", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
