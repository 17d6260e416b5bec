"""The notebooks' shared setup call and how they show money (tap_lib/notebook.py).

Formatter cases are written by hand (what an operator should read), not derived from the code.
The notebook case reads the committed reference output of preview.ipynb, which nbval proves is
what a live run displays (`pytest notebooks/`)."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from tap_lib.config import load_settings
from tap_lib.errors import ConfigError
from tap_lib.notebook import cost_line, count, money, money_frame, setup

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SCIENTIFIC = re.compile(r"\d\.\d+e[+-]\d\d")


@pytest.mark.parametrize("args, kwargs, shown", [
    ((36.5,), {}, "$36.50/month"),
    ((1234.56,), {}, "$1,234.56/month"),
    ((1234567.891,), {}, "$1,234,567.89/month"),
    ((0,), {}, "$0.00/month"),
    ((None,), {}, "unknown"),
    ((math.nan,), {}, "unknown"),
    ((pd.NA,), {}, "unknown"),
    ((47.8,), {"signed": True}, "+$47.80/month"),
    ((-3,), {"signed": True}, "-$3.00/month"),
    ((2e-07, "USD", None), {"exact": True}, "$0.0000002"),
    ((0.5985, "USD", None), {"exact": True}, "$0.5985"),
    ((0.05, "USD", None), {"exact": True}, "$0.05"),
    ((12.5, "EUR"), {}, "12.50 EUR/month"),
    ((12.5, None, "h"), {}, "$12.50/h"),
])
def test_money_reads_as_currency(args, kwargs, shown):
    assert money(*args, **kwargs) == shown


def test_counts_have_no_exponent():
    assert [count(v) for v in (5e6, 730.0, 0.5, 1e-3, None)] == [
        "5,000,000", "730", "0.5", "0.001", ""]


def test_money_frame_formats_a_cost_table_and_keeps_the_numbers():
    frame = pd.DataFrame({"meter": ["nat_gateway_hour", "aurora_io_request", "unpriced"],
                          "quantity": [730.0, 5e6, 1.0],
                          "unit_price": [0.05, 2e-07, math.nan],
                          "monthly_usd": [36.5, 1.0, math.nan]})
    assert SCIENTIFIC.search(frame.to_string())          # what pandas shows on its own
    shown = money_frame(frame)
    assert shown.to_dict("list") == {
        "meter": ["nat_gateway_hour", "aurora_io_request", "unpriced"],
        "quantity": ["730", "5,000,000", "1"],
        "unit_price": ["$0.05", "$0.0000002", "unknown"],
        "monthly_usd": ["$36.50/month", "$1.00/month", "unknown"]}
    assert not SCIENTIFIC.search(shown.to_string()) and not SCIENTIFIC.search(shown.to_html())
    assert frame["monthly_usd"].iloc[0] == 36.5         # the caller's frame is unchanged


def test_cost_line_says_total_change_and_unknowns():
    cost = {"monthly_usd": 1234.5, "delta_monthly_usd": 47.8, "currency": "USD",
            "as_of": "2026-10-06", "complete": False, "unknown": ["aurora instance hour"]}
    assert cost_line(cost) == ("monthly estimate $1,234.50/month, change +$47.80/month "
                               "(prices as of 2026-10-06); 1 item(s) of unknown price, "
                               "not counted")
    assert cost_line({**cost, "complete": True, "unknown": []}).endswith("(prices as of "
                                                                          "2026-10-06)")


def test_setup_names_the_stack_and_sets_display_options(capsys):
    pd.reset_option("display.max_colwidth")
    settings = setup("dev", "sandbox")
    expected = load_settings("dev")
    assert settings.stack_name == expected.stack_name
    assert capsys.readouterr().out == (f"{expected.stack_name} ({expected.region}) on the "
                                       "sandbox target\n")
    assert pd.get_option("display.max_colwidth") is None
    assert pd.get_option("display.expand_frame_repr") is False
    assert setup() is None and capsys.readouterr().out == ""
    with pytest.raises(ConfigError, match="nosuch"):
        setup("nosuch")


def _cells(name: str) -> list[dict]:
    return [c for c in json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]
            if c["cell_type"] == "code"]


@pytest.mark.parametrize("name", sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")))
def test_every_notebook_sets_up_with_one_call(name):
    """The setup cell once copied into every notebook is one call now; nothing of it is left."""
    source = "\n".join("".join(c["source"]) for c in _cells(name))
    assert re.search(r"^(settings = )?setup\((env, target)?\)$", source, re.MULTILINE), name
    assert "pd.set_option" not in source and "getpass" not in source, name


def test_the_preview_notebook_shows_its_cost_table_as_currency():
    cell = next(c for c in _cells("preview") if "money_frame(" in "".join(c["source"]))
    shown = "".join("".join(o.get("text", [])) + "".join(o.get("data", {}).get("text/plain", []))
                    + "".join(o.get("data", {}).get("text/html", []))
                    for o in cell["outputs"])
    assert re.search(r"monthly estimate \$[\d,]+\.\d\d/month, change [+-]\$", shown), shown[:300]
    assert re.search(r"\$\d+\.\d\d/month", shown) and not SCIENTIFIC.search(shown)
