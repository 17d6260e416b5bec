"""Preflight rules about money: the declared stack's monthly estimate against the environment
file's budget (tap_lib/cost prices the same synthesized plan the other rules read)."""
from __future__ import annotations

from ...cost.estimate import Resource, estimate
from . import Context, Finding, error, info, rule, warning

WARN_SHARE = 0.8


@rule("TAP201", "cost budget")
def budget(ctx: Context) -> list[Finding]:
    """A plan that costs more than the environment's budget_monthly_usd fails before anything
    is created; at 80% of it preflight warns. An estimate with unknown prices is a lower
    bound: it can fail the budget, never pass it silently."""
    limit = ctx.settings.budget_monthly_usd
    if limit is None:
        return []
    est = estimate([Resource.from_registration(r) for r in ctx.synthesis.registrations],
                   ctx.settings)
    total = est.monthly_usd
    where = f"budget_monthly_usd in {ctx.params_file}"
    known = "" if est.complete else f" (and {len(est.unknown)} item(s) of unknown price)"
    figure = f"monthly estimate {total:,.2f} {est.currency}{known}"
    if total > limit:
        return [error("stack", f"{figure} is over the budget of {limit:,} {est.currency}",
                      f"shrink the stack or raise {where}")]
    if total >= WARN_SHARE * limit:
        return [warning("stack", f"{figure} is {total / limit:.0%} of the budget of "
                        f"{limit:,} {est.currency}", f"review the biggest items (tap preview)"
                        f" or raise {where}")]
    if not est.complete:
        return [info("stack", f"{figure} is within the budget of {limit:,} {est.currency}, "
                     "but the unknown items may not be",
                     "price them: python -m tap_lib.cost.refresh --target aws")]
    return []
