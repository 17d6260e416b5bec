"""What the command line prints: the evidence is never cut (issue #20: `--set
db.engine_version=15.3` showed `aurora-postgresql 15…`), failures come first, and --wide keeps
the same column order. Pure text, no emulator."""
from __future__ import annotations

import pandas as pd
import pytest

from tap_lib import terminal


@pytest.fixture
def findings() -> pd.DataFrame:
    return pd.DataFrame([
        {"rule": "TAP001", "resource": "vpc-dev", "message": "fine", "severity": "info"},
        {"rule": "TAP005", "resource": "aurora-cluster-dev",
         "message": "db.engine_version 15.3 is not offered in eu-west-2; offered: 15.6, 15.7, "
                    "15.8, 15.10, 16.2, 16.3, 16.4, 16.6 (catalog tap_lib/data)",
         "severity": "error"},
        {"rule": "TAP190", "resource": "all", "message": "exception expired", "severity":
         "warning"}])


def test_long_cells_wrap_within_the_width_and_are_never_cut(findings, capsys, monkeypatch):
    monkeypatch.setattr(terminal, "wide", False)
    terminal.emit_table(findings, "preflight dev:", problems_first=True)
    out = capsys.readouterr().out
    assert "…" not in out and all(len(line) <= terminal.TABLE_WIDTH for line in out.splitlines())
    words = " ".join(out.split())
    for token in ("15.3", "15.6,", "16.6", "(catalog", "tap_lib/data)"):
        assert token in words, token


def test_failures_first_and_status_first_also_when_wide(findings, capsys, monkeypatch):
    for flag in (False, True):
        monkeypatch.setattr(terminal, "wide", flag)
        terminal.emit_table(findings, problems_first=True)
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split()[0] == "severity"
        ranked = [line.split()[0] for line in lines[1:] if line.split() and
                  line.split()[0] in ("error", "warning", "info")]
        assert ranked == ["error", "warning", "info"], lines


def test_without_problems_first_rows_keep_their_order(findings, capsys, monkeypatch):
    monkeypatch.setattr(terminal, "wide", False)
    terminal.emit_table(findings)
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]
            if line.split() and line.split()[0] in ("error", "warning", "info")]
    assert rows == ["info", "error", "warning"]


def test_a_price_s_research_is_pointed_to_not_printed(capsys):
    research = "searched the AWS Price List API for eu-west-2 " * 12
    cost = {"complete": False, "unknown": [f"aurora-instance-0-dev aurora_instance_hour: "
                                           f"{research}", "nat-dev bytes: quantity unknown"],
            "monthly_usd": 100.0, "currency": "USD", "delta_monthly_usd": 0.0,
            "delta_complete": True, "as_of": "2026-07-08", "assumptions": {}, "top": []}
    terminal.cost_text(cost)
    out = capsys.readouterr().out
    assert research.strip() not in out and "catalog.json 'missing'" in out
    assert "unknown: aurora-instance-0-dev aurora_instance_hour: no price" in out
    assert "unknown: nat-dev bytes: quantity unknown" in out


def _plan(steps):
    from tap_lib.engines.base import Plan, Step

    return Plan("TapStackdev", "sandbox", [Step(f"urn:{n}", t, n, op, diffs)
                                           for op, t, n, diffs in steps], operation="preview")


def test_a_plan_table_matches_the_pandas_one_and_wide_keeps_it(capsys, monkeypatch):
    """plan_text prints its table without pandas (the plain path a preview takes); the text is
    the table changes_frame gives, in the same order, with and without --wide."""
    plan = _plan([("update", "aws:lambda/function:Function", "payment-dev", ["memorySize"]),
                  ("create", "aws:s3/bucket:Bucket", "b-dev", []),
                  ("same", "aws:ec2/vpc:Vpc", "vpc-dev", []),
                  ("create", "aws:ec2/subnet:Subnet", "a-dev", [])])
    monkeypatch.setattr(terminal, "wide", False)
    terminal.plan_text(plan)
    plain = capsys.readouterr().out.splitlines()
    assert plain[0].split() == ["op", "type", "name", "diffs"]
    assert [line.split()[:3] for line in plain[1:4]] == [
        ["create", "Bucket", "b-dev"], ["create", "Subnet", "a-dev"],
        ["update", "Function", "payment-dev"]]
    assert "vpc-dev" not in "\n".join(plain[:4]) and plain[3].endswith("memorySize")
    expected = plan.changes_frame()   # the pandas table: the same rows, the same order
    assert [line.split()[:3] for line in plain[1:4]] == \
        expected[["op", "type", "name"]].values.tolist()
    monkeypatch.setattr(terminal, "wide", True)
    terminal.plan_text(plan)
    assert [line.split()[:3] for line in capsys.readouterr().out.splitlines()[1:4]] == \
        [line.split()[:3] for line in plain[1:4]]


def test_progress_never_shows_a_count_past_its_total(capsys):
    """issue #20: `[51/1]`. A count beyond the total the engine announced shows alone."""
    import sys

    from tap_lib.engines.base import Step, StepEvent
    from tap_lib.progress import LineProgress

    step = Step("urn:x", "aws:s3/bucket:Bucket", "b-dev", "create")
    show = LineProgress(stream=sys.stdout)
    show(StepEvent(step, "done", 1, 2, 0.1))
    show(StepEvent(step, "done", 51, 1, 0.1))
    show(StepEvent(step, "done", 3, None, 0.1))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[  1/2]")
    assert lines[1].startswith("[ 51]") and "/1]" not in lines[1]
    assert lines[2].startswith("[  3]")
