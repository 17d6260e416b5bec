"""The cost of a plan: what the stack costs after it (the declared program) and before it (the
resources the engine's state records), both priced with the same catalog and usage, so the
delta is what the plan itself changes. Both come from data every engine has (the synthesized
program and `Engine.resources()`), so the figure is the same on every target."""
from __future__ import annotations

from typing import Any

from ..config import Settings
from ..engines.base import Plan
from .catalog import Catalog
from .estimate import Estimate, estimate_program, estimate_state

TOP_ITEMS = 5


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 2)


def plan_cost(plan: Plan, settings: Settings, current_resources: list,
              catalog: Catalog | None = None, synthesis=None) -> tuple[Estimate, Estimate]:
    """Price `plan` in place (each step's monthly_usd, the plan's cost); returns (after,
    before). A deleted resource costs 0.0 after the plan."""
    after = estimate_program(settings, catalog, synthesis)
    before = estimate_state(current_resources, settings, catalog)
    by_urn = after.by_urn()
    by_name = {(r.type, r.name): r for r in after.resources}
    for step in plan.steps:
        if step.op == "delete":
            step.monthly_usd = 0.0
            continue
        rc = by_urn.get(step.urn) or by_name.get((step.type, step.name))
        step.monthly_usd = None if rc is None else _round(rc.monthly_usd)
    plan.cost = cost_summary(after, before)
    return after, before


def cost_summary(after: Estimate, before: Estimate) -> dict[str, Any]:
    """The plan's `cost` object (DESIGN.md): totals are sums of the known amounts; `unknown`
    names every item left out, so an incomplete figure never passes for a complete one."""
    after_unknown, before_unknown = set(after.unknown), set(before.unknown)
    return {
        "monthly_usd": _round(after.monthly_usd),
        "delta_monthly_usd": _round(after.monthly_usd - before.monthly_usd),
        "before_monthly_usd": _round(before.monthly_usd),
        "currency": after.currency,
        "as_of": after.as_of,
        "complete": after.complete,
        "unknown": sorted(after_unknown),
        # the delta leaves out what is unknown on one side only
        "delta_complete": after_unknown == before_unknown,
        "top": [{"name": r.name, "type": r.type, "monthly_usd": _round(r.known_usd),
                 "complete": r.monthly_usd is not None} for r in after.top(TOP_ITEMS)],
        "assumptions": after.assumptions,
    }
