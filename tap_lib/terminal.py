"""Text output of the `tap` command: JSON, tables that fit a terminal (status first, cut with
"…" unless --wide), plans with their values and cost. Only the command line prints; operations
return data.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas loads in ~0.7 s: imported where a table is shown
    import pandas as pd

def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str, sort_keys=False))


# Terminal tables fit this many columns (status first) unless --wide.
TABLE_WIDTH = 100
FIRST_COLUMNS = ("status", "op", "severity")
# With problems_first, rows in this order of their status or severity (others after, in order).
PROBLEM_ORDER = {"fail": 0, "failed": 0, "error": 0, "warning": 1, "excepted": 2}
wide = False   # --wide: set by the command line for this run


def emit_table(df: pd.DataFrame, title: str | None = None, *,
               problems_first: bool = False) -> None:
    """A table, never cut: long cells wrap within their column (--wide: one line a row)."""
    if title:
        print(title)
    if df.empty:
        print("  (none)")
        return
    df = _ordered(df, problems_first)
    if wide:
        import pandas as pd

        with pd.option_context("display.max_rows", None, "display.max_columns", None,
                               "display.width", 10_000, "display.max_colwidth", None):
            print(df.to_string(index=False))
        return
    print(fit_table(df, TABLE_WIDTH))


def _ordered(df: pd.DataFrame, problems_first: bool) -> pd.DataFrame:
    """Status (or op, severity) first; with `problems_first`, failing rows on top."""
    first = [c for c in FIRST_COLUMNS if c in df.columns]
    df = df[first + [c for c in df.columns if c not in first]]
    key = next((c for c in ("status", "severity") if c in df.columns), None)
    if problems_first and key:
        rank = df[key].map(lambda v: PROBLEM_ORDER.get(str(v).lower(), 9))
        df = df.assign(_rank=rank).sort_values("_rank", kind="stable").drop(columns="_rank")
    return df.reset_index(drop=True)


def fit_table(df: pd.DataFrame, width: int) -> str:
    """The table as text within `width` columns: the widest columns narrowed until it fits,
    their cells wrapped onto more lines, never cut (the evidence is the point)."""
    cells = [["" if _blank(v) else str(v).replace("\n", " ") for v in row]
             for row in df.itertuples(index=False)]
    return fit_rows([str(c) for c in df.columns], cells, width)


def fit_rows(cols: list[str], cells: list[list[str]], width: int) -> str:
    """fit_table over plain rows of text: no pandas, for the commands that print a plan."""
    import textwrap

    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    floor = [min(w, max(8, len(c))) for w, c in zip(widths, cols)]
    while sum(widths) + 2 * (len(widths) - 1) > width:
        shrinkable = [k for k in range(len(widths)) if widths[k] > floor[k]]
        if not shrinkable:
            break
        widths[max(reversed(shrinkable), key=lambda k: widths[k])] -= 1

    def lines_of(row: list[str]) -> list[str]:
        wrapped = [textwrap.wrap(v, w, break_on_hyphens=False) or [""]
                   for v, w in zip(row, widths)]
        return ["  ".join((col[i] if i < len(col) else "").ljust(w)
                          for col, w in zip(wrapped, widths)).rstrip()
                for i in range(max(len(col) for col in wrapped))]

    return "\n".join([*lines_of(cols), *(line for row in cells for line in lines_of(row))])


def _blank(value: Any) -> bool:
    import pandas as pd

    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def plan_text(plan) -> None:
    from .engines.changes import describe

    if plan.changes and wide:
        emit_table(plan.changes_frame())
    elif plan.changes:  # as changes_frame, without loading pandas (~1 s) for a plan
        rows = sorted([s.op, s.type.split(":")[-1], s.name, ", ".join(s.diffs)]
                      for s in plan.changes)
        print(fit_rows(["op", "type", "name", "diffs"], rows, TABLE_WIDTH))
    values = [f"  {step.name}  {describe(c)}" for step in plan.changes for c in step.changes]
    if values:
        print("values (old → new):")
        print("\n".join(values))
    summary = ", ".join(f"{n} {op}" for op, n in plan.summary.items() if n)
    print(f"{plan.stack} ({plan.target}) {plan.operation}: {summary or 'no resources'}")
    if getattr(plan, "cost", None):
        cost_text(plan.cost)


def cost_text(cost: dict) -> None:
    """The estimate under a plan: total, delta, biggest items, and what it leaves out."""
    partial = "" if cost["complete"] else f" + {len(cost['unknown'])} unknown item(s)"
    print(f"monthly estimate: {cost['monthly_usd']:,.2f} {cost['currency']}{partial} "
          f"(change {cost['delta_monthly_usd']:+,.2f}"
          f"{'' if cost['delta_complete'] else ', excluding unknown items'}; "
          f"prices as of {cost['as_of']})")
    for key, date in cost["assumptions"].get("price_dates", {}).items():
        print(f"  price of {key} as of {date} (catalog.json names its source)")
    for item in cost["top"][:3]:
        more = "" if item["complete"] else " + unknown"
        print(f"  {item['monthly_usd']:>10,.2f}{more}  {item['name']} "
              f"({item['type'].split(':')[-1]})")
    for line in cost["unknown"]:
        what, _, why = line.partition(": ")
        if len(why) > 80:  # a price's research (catalog.json "missing"): --json has it whole
            why = "no price in the catalog (tap_lib/cost/catalog.json 'missing' says what " \
                  "was searched; --json has it whole)"
        print(f"  unknown: {what}: {why}")
