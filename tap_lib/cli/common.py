"""What every command module of the CLI shares: the command registry and progress lines."""
from __future__ import annotations

import argparse
from typing import Callable

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    """Register a `tap NAME` handler: it takes the parsed arguments, returns the exit code."""
    def register(fn):
        COMMANDS[name] = fn
        return fn
    return register


def progress_for(args):
    """Per-resource progress lines on stderr, none with --json (stdout stays one document)."""
    if args.json:
        return None
    from ..progress import LineProgress

    return LineProgress()
