"""What `tap audit` and `tap audit trail` list: records from the index, entries from the trail.

Both show text someone with a shell could have written (an operator's name, a stack): control
characters in it are shown escaped, never sent to the terminal as they are.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import trail
from ..trail import record_location, records_root
from . import seals
from .index import COLUMNS, index_path, read_index, rebuild_index

if TYPE_CHECKING:  # pandas loads in ~0.7 s; `tap audit trail --json` does without it
    import pandas as pd

TRAIL_COLUMNS = ["seq", "time", "operation", "stack", "operator", "status", "error", "target",
                 "record", "sealed", "sealed_by"]


def audit_table(env: str | None = None, output_dir: str | None = None) -> pd.DataFrame:
    """One row per record, oldest first, read from the index only."""
    import pandas as pd

    root = records_root(output_dir)
    path = index_path(root)
    if not path.exists():
        rebuild_index(root)
    rows = [{**r, "path": record_location(r.get("path"), root)} for r in read_index(path)]
    if env:
        rows = [r for r in rows if r.get("env") == env]
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["summary"] = table["summary"].map(format_summary)
    for column in ("env", "notebook", "stack", "target", "operator", "status", "path"):
        table[column] = table[column].map(printable)
    return table.sort_values("time", kind="stable", ignore_index=True)


def format_summary(summary: Any) -> str:
    """{'create': 50, 'same': 0} -> 'create=50, same=0' (compact enough for a table cell)."""
    if not isinstance(summary, dict):
        return "" if summary is None else printable(summary)
    return printable(", ".join(f"{key}={value}" for key, value in summary.items()))


def trail_entries(env: str | None = None, output_dir: str | None = None) -> list[dict[str, Any]]:
    """Every trail entry, oldest first: seq, time, operation, stack, operator, status (its
    result), error, target, record (where it is now), and whether a valid seal vouches for it
    (and whose). `env` keeps the entries of one environment file."""
    root = records_root(output_dir)
    entries = trail.read(root)
    signers = seals.check(root, entries).signers()
    rows = []
    for e in entries:
        if env and e.get("env") != env and e.get("env_file") != f"params/{env}.yaml":
            continue
        seq = e.get("seq")
        who = signers.get(seq) if isinstance(seq, int) else None
        rows.append({"seq": seq, "time": printable(e.get("time")),
                     "operation": printable(e.get("operation")), "stack": printable(e.get("stack")),
                     "operator": printable(e.get("operator")),
                     "status": printable(e.get("result")), "error": printable(e.get("error")),
                     "target": printable(e.get("target")),
                     "record": printable(record_location(e.get("record"), root)),
                     "sealed": who is not None, "sealed_by": who})
    return rows


def printable(value: Any) -> Any:
    """Text as it can be shown on a terminal: control characters escaped (\\x1b, \\n)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)
