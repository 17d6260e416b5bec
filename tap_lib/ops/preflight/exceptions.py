"""Preflight rule on the environment file's policy exceptions themselves.

An exception is a reviewed decision with an end date: once expired it no longer excepts
anything and is an error until someone renews or removes it; one naming a control tap does not
know would silently except nothing, so it is an error too.
"""
from __future__ import annotations

import difflib

from ...config import utc_today
from ...controls import CONTROLS
from . import Context, Finding, error, rule, warning


@rule("TAP190", "policy-exceptions", needs_complete_plan=False)
def policy_exceptions(ctx: Context) -> list[Finding]:
    """Policy exceptions that have expired, name an unknown control, or except a resource the
    plan does not declare: each must be renewed on review, corrected or removed."""
    out = []
    today = utc_today()
    names = {r.name for r in ctx.synthesis.registrations}
    for i, exc in enumerate(ctx.settings.exceptions):
        where = f"{ctx.params_file} exceptions[{i}]"
        if exc.control not in CONTROLS:
            close = difflib.get_close_matches(exc.control, list(CONTROLS), n=3, cutoff=0.5)
            out.append(error(exc.resource, f"{where} names unknown control {exc.control!r}"
                             + (f" (did you mean {', '.join(close)}?)" if close else ""),
                             "use a Security Hub control id or Prowler check id tap judges: "
                             + ", ".join(CONTROLS)))
        if exc.expires < today:
            out.append(error(exc.resource, f"{where} ({exc.control}, owner {exc.owner}) expired "
                                           f"on {exc.expires.isoformat()}; it excepts nothing",
                             "meet the control, or review the exception and set a new expires"))
        if ctx.synthesis.error is None and exc.resource != "all" and not (
                {exc.resource, f"{exc.resource}-{ctx.settings.suffix}"} & names):
            out.append(warning(exc.resource, f"{where} ({exc.control}) names a resource the "
                                             "plan does not declare; it excepts nothing",
                               "use a logical name from `tap config`, or 'all'"))
    return out
