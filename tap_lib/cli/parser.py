"""The argument parser of `tap`: every command, its options and its help text."""
from __future__ import annotations

import argparse

from ..project import notebook_names  # the one list `tap run` offers


def build_parser() -> argparse.ArgumentParser:
    from ..engines.registry import TARGETS

    from .. import __version__
    from ..project import RUNBOOK

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
    p.add_argument("notebook", metavar="NOTEBOOK",
                   help="one of notebooks/: " + ", ".join(notebook_names()) + "; or all: "
                   + " → ".join(RUNBOOK))
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

    from ..ops.dbconnect import SECRETS

    p = stack_cmd("db", "connect: where the stack's database is and a ready psql command "
                        "(the password goes to a 0600 pgpass file, never to the screen)")
    p.add_argument("action", choices=("connect",))
    p.add_argument("--secret", choices=SECRETS, default=SECRETS[0],
                   help="whose login: the app's (default) or the RDS-managed master's")
    p.add_argument("--ca-file", metavar="PEM",
                   help="the CA bundle that signs the database's certificate (AWS: the RDS "
                        "bundle); sslmode verify-full with it")
    return parser
