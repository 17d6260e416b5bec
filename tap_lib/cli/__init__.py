"""`tap`: the command line. Parses, calls an operation, displays what it returns.

One module per concern: stack_cmds (one stack: preview, deploy, verify...), audit_cmds, lab_cmds
(`run`, `lab`), env_cmds (`sandbox`, `fleet`), parser (options and help). Commands import what
they use when they run, so `tap --version` and `tap --help` load neither pulumi nor pandas.

Exit codes (errors.py: each error class carries its own): 0 success; 1 the operation ran and
found problems (failed checks, preflight errors, a broken audit chain); 2 bad usage or
configuration (nothing changed); 3 target unreachable or an operation failed part-way; 4 the
stack is locked by another operation (nothing ran: try again when it ends); 130 interrupted.
"""
from __future__ import annotations

import os
import sys

from .. import terminal
from ..errors import ChecksFailed, TapError
from . import audit_cmds, env_cmds, lab_cmds, stack_cmds  # noqa: F401  register the commands
from .common import COMMANDS, command
from .parser import build_parser, notebook_names

__all__ = ["main", "run", "build_parser", "COMMANDS", "command", "notebook_names"]


def _interactive() -> bool:
    """A person can answer a prompt: stdin is open and a terminal (`<&-` leaves it None)."""
    return sys.stdin is not None and not sys.stdin.closed and sys.stdin.isatty()


def _ask(question: str) -> bool:
    try:
        return input(question).strip().lower() == "y"
    except EOFError:
        return False


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


def run() -> None:
    """The `tap` console script: main() without the cyclic garbage collector, then exit without
    the interpreter's teardown. A command is one short process: each full collection walked
    pulumi_aws's module graph again (0.5-0.7 s of a deploy's CPU), and the teardown spends
    ~0.6 s freeing that graph, which nothing reads again; the cycles a command leaves go with
    the process (a deploy peaks ~10 MiB higher). The exit is skipped only when nothing else
    runs: with another thread alive, the usual exit waits for it. Never inside main(), which
    notebooks and tests call."""
    import atexit
    import gc
    import threading

    gc.disable()
    code = main()   # argparse's SystemExit (--help, bad usage) takes the usual exit
    if threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()   # logging.shutdown and every other registered handler
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed or broken pipe: nothing more to say
            pass
    os._exit(code)
