"""What the runbook notebooks share: their setup cell, in one call, and how they show things.

`setup(env, target)` replaces the cell every notebook used to carry (pandas display options,
the stack's settings and the line naming it); the display helpers format figures for people:
money as currency (`$1,234.56/month`, never `3.650000e+01`), counts with thousands separators,
an unknown price as "unknown", never as 0. This module is the notebooks' layer: ops code never
imports it.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .config import Settings

# The notebooks' other display helpers, so a notebook imports its helpers from one place.
from .ops.runbook import show_summary, styled, table_or_words  # noqa: F401
from .ops.stack import settings_for

MAX_ROWS = 200
SYMBOLS = {"USD": "$"}
UNKNOWN = "unknown"
MONTHLY_COLUMNS = ("monthly_usd", "known_monthly_usd", "before_monthly_usd", "delta_monthly_usd")
PRICE_COLUMNS = ("unit_price",)
COUNT_COLUMNS = ("quantity",)


def setup(env: str | None = None, target: str = "sandbox") -> Settings | None:
    """Display options for whole cells and one line per row in plain-text views; with an
    environment, its settings (ConfigError for a bad one, before anything runs), named in
    one printed line."""
    pd.set_option("display.max_rows", MAX_ROWS)
    pd.set_option("display.max_colwidth", None)
    pd.set_option("display.expand_frame_repr", False)
    if not env:
        return None
    settings = settings_for(env)
    print(f"{settings.stack_name} ({settings.region}) on the {target} target")
    return settings


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def money(value: Any, currency: str | None = "USD", per: str | None = "month", *,
          exact: bool = False, signed: bool = False) -> str:
    """An amount as currency: `$1,234.56/month`. Cents by default; `exact` keeps every
    significant digit of a small unit price (`$0.0000002`); `signed` shows `+`/`-` for a
    change. None or NaN is "unknown": an unpriced item is never shown as free."""
    if _missing(value):
        return UNKNOWN
    amount = float(value)
    sign = ("+" if amount >= 0 else "-") if signed else ("-" if amount < 0 else "")
    digits = 2
    if exact:
        text = f"{abs(amount):.10f}".rstrip("0")
        digits = max(2, len(text.split(".")[1]))
    figure = f"{abs(amount):,.{digits}f}"
    code = currency or "USD"
    symbol = SYMBOLS.get(code)
    text = f"{sign}{symbol}{figure}" if symbol else f"{sign}{figure} {code}"
    return f"{text}/{per}" if per else text


def count(value: Any) -> str:
    """A quantity with thousands separators and no exponent: 5,000,000 and 0.5."""
    if _missing(value):
        return ""
    number = float(value)
    if number.is_integer():
        return f"{int(number):,}"
    return f"{number:,.6f}".rstrip("0").rstrip(".")


def money_frame(frame: pd.DataFrame, currency: str | None = "USD") -> pd.DataFrame:
    """A copy of a cost table for people: monthly columns as `$36.50/month`, unit prices as
    exact currency, quantities without exponents. The numbers stay in the original frame."""
    out = frame.copy()
    for column in out.columns:
        if column in MONTHLY_COLUMNS:
            out[column] = [money(v, currency) for v in out[column]]
        elif column in PRICE_COLUMNS:
            out[column] = [money(v, currency, None, exact=True) for v in out[column]]
        elif column in COUNT_COLUMNS:
            out[column] = [count(v) for v in out[column]]
    return out


def cost_line(cost: dict[str, Any]) -> str:
    """A plan's cost in one line: the total, the change and what it rests on."""
    currency = cost.get("currency")
    total = cost.get("monthly_usd")
    if _missing(total):
        total = cost.get("known_monthly_usd")
    line = (f"monthly estimate {money(total, currency)}, change "
            f"{money(cost.get('delta_monthly_usd'), currency, signed=True)} "
            f"(prices as of {cost.get('as_of') or 'unknown'})")
    unknown = cost.get("unknown") or []
    if not cost.get("complete", not unknown):
        line += f"; {len(unknown)} item(s) of unknown price, not counted"
    return line
