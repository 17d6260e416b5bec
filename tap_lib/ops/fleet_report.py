"""What a fleet run found: each stack's result, the fleet's report and its tables (summary,
stack x control matrix) and what each stack costs a month."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..config import Settings
from .fleet_stacks import StackRef

SUMMARY_COLUMNS = ["stack", "env", "suffix", "status", "exit_code", "duration_s", "error"]
COST_COLUMNS = ["monthly_usd", "cost"]      # verify and inspect: what each stack costs now
COSTED = ("verify", "inspect")


# -- results -----------------------------------------------------------------------------------
@dataclass
class StackResult:
    ref: StackRef
    stack: str
    status: str                # passed | failed | not-deployed | error
    exit_code: int
    counts: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    error: str | None = None
    report: Any = None         # VerifyReport | Plan | Inspection
    cost: dict[str, Any] | None = None   # stack_cost(); None: not priced (not deployed)

    def to_dict(self) -> dict[str, Any]:
        body = self.report.to_dict() if self.report is not None else {}
        out = {**body, "stack": self.stack, **self.ref.to_dict(), "status": self.status,
               "exit_code": self.exit_code, "counts": self.counts,
               "duration_s": round(self.duration_s, 3), "error": self.error}
        if self.cost is not None or "cost" not in out:
            out["cost"] = self.cost or unpriced("not deployed" if self.status == "not-deployed"
                                                else "the stack could not be read")
        return out

    def cost_cells(self) -> dict[str, Any]:
        """The summary's cost columns: the monthly figure only when every item is priced
        (else <NA>), and in words what it rests on or what is unknown."""
        cost = self.cost or unpriced("not deployed" if self.status == "not-deployed"
                                     else "the stack could not be read")
        known, n = cost["known_monthly_usd"], len(cost["unknown"])
        if cost["monthly_usd"] is not None:
            text = f"{cost['monthly_usd']:.2f} {cost['currency']}"
        elif known is None:
            text = f"unknown ({cost['unknown'][0]})"
        else:
            text = f"unknown ({known:.2f} {cost['currency']} + {n} unpriced)"
        return {"monthly_usd": cost["monthly_usd"], "cost": text}


@dataclass
class FleetReport:
    operation: str
    target: str
    results: list[StackResult]
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """The worst stack's: 3 (unreachable, not deployed) > 2 > 1 (problems found) > 0."""
        return max((r.exit_code for r in self.results), default=0)

    def summary(self) -> pd.DataFrame:
        """One row per stack: how it ended and its counts."""
        costed = self.operation in COSTED
        rows = [{"stack": r.stack, "env": r.ref.env, "suffix": r.ref.suffix or "",
                 "status": r.status, "exit_code": r.exit_code, **r.counts,
                 **(r.cost_cells() if costed else {}),
                 "duration_s": round(r.duration_s, 2), "error": r.error or ""}
                for r in self.results]
        counts = list(dict.fromkeys(k for r in self.results for k in r.counts))
        columns = (SUMMARY_COLUMNS[:5] + counts + (COST_COLUMNS if costed else [])
                   + SUMMARY_COLUMNS[5:])
        frame = pd.DataFrame(rows, columns=columns)
        # a stack without counts: <NA>; AWS calls per stack may be a fraction (shared calls)
        whole = {k: all(float(r.counts.get(k, 0)).is_integer() for r in self.results)
                 for k in counts}
        types = {k: "Int64" if whole[k] else "Float64" for k in counts}
        return frame.astype({**types, **({"monthly_usd": "Float64"} if costed else {})})

    def matrix(self) -> pd.DataFrame:
        """Stack x control: 'fail' where any check of that control failed on that stack,
        else 'excepted' where a policy exception covers one, 'pass' where all passed, empty
        where the stack has no such check (or no report).
        Controls are the check ids (the Security Hub id is in each check's row)."""
        cells: dict[str, dict[str, str]] = {}
        for r in self.results:
            checks = getattr(r.report, "checks", None)
            if checks is None or checks.empty:
                cells[r.stack] = {}
                continue
            cells[r.stack] = checks.groupby("id")["status"].apply(
                lambda s: "fail" if (s == "fail").any() else
                "excepted" if (s == "excepted").any() else "pass").to_dict()
        controls = sorted({c for row in cells.values() for c in row})
        return pd.DataFrame.from_dict(cells, orient="index", columns=controls).reindex(
            [r.stack for r in self.results]).fillna("")

    def drifted(self) -> list[str]:
        """Stacks whose verify failed a check or whose inspect found drift."""
        return [r.stack for r in self.results
                if r.counts.get("failed") or r.counts.get("drifted")]

    def to_list(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.results]


# -- cost ------------------------------------------------------------------------------------
def unpriced(why: str) -> dict[str, Any]:
    return {"monthly_usd": None, "known_monthly_usd": None, "complete": False,
            "unknown": [why], "currency": None, "as_of": None}


def stack_cost(engine: Any, settings: Settings) -> dict[str, Any]:
    """What the stack's deployed resources (as its engine's state records them) cost a month,
    priced by the catalog (tap_lib.cost): `monthly_usd` only when every item has a price,
    `known_monthly_usd` the sum of those that do, `unknown` names the rest. Never 0 for
    unknown; a failure to price is a note here, not the stack's failure."""
    from ..cost import estimate_state

    try:
        est = estimate_state(engine.resources(), settings)
    except Exception as exc:  # noqa: BLE001 - the price is a column, not a check
        return unpriced(f"not priced: {type(exc).__name__}: {exc}")
    known = round(float(est.monthly_usd), 2)
    return {"monthly_usd": known if est.complete else None, "known_monthly_usd": known,
            "complete": est.complete, "unknown": est.unknown, "currency": est.currency,
            "as_of": est.as_of}
