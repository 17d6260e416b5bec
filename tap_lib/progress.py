"""Per-resource progress for deploy and destroy, on a terminal or in a notebook.

Both print one line per changed resource (never carriage-return animations), so the output
stays readable when papermill logs cell output or CI captures stderr. Unchanged resources are
counted, not listed.
"""
from __future__ import annotations

import sys
from typing import TextIO

from .engines.base import StepEvent

SYMBOLS = {"create": "+", "update": "~", "replace": "+-", "delete": "-", "same": " "}


class LineProgress:
    def __init__(self, stream: TextIO | None = None, verbose: bool = False):
        self.stream = stream
        self.verbose = verbose
        self.unchanged = 0

    def __call__(self, event: StepEvent) -> None:
        step = event.step
        if step.op == "same":
            self.unchanged += 1
            if not self.verbose:
                return
        if event.phase == "start":
            return
        # A count past its total (an engine's total from before the program grew) would read
        # `[51/1]`: the count alone is then the truth.
        total = f"/{event.total}" if event.total and event.index <= event.total else ""
        status = {"done": "ok", "failed": "FAILED"}.get(event.phase, event.phase)
        line = (f"[{event.index:>3}{total}] {SYMBOLS.get(step.op, '?'):>2} {step.op:<8} "
                f"{step.type.split(':')[-1]:<28} {step.name:<40} {status} "
                f"({event.elapsed_s:5.1f}s)")
        if step.diffs and step.op in ("update", "replace"):
            line += f"  changed: {', '.join(step.diffs)}"
        if event.error:
            line += f"\n      {event.error}"
        print(line, file=self.stream or sys.stderr, flush=True)


def notebook_progress() -> LineProgress:
    """In a notebook, lines go to stdout so they are part of the executed record."""
    return LineProgress(stream=sys.stdout)
