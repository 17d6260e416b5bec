"""Shared by the audit tests: a fresh records root per test, records stored the way `tap run`
stores them, chains of mutations and records, and `tap audit verify` as the CLI runs it."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tap_lib import trail
from tap_lib.cli import main
from tap_lib.ops import runbook


def fresh_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty records root for one test (each module's `outputs` fixture)."""
    out = tmp_path / "outputs"
    monkeypatch.setenv("TAP_OUTPUTS", str(out))
    monkeypatch.setenv("TAP_OPERATOR", "alice")
    for key in ("TAP_TARGET", trail.RECORD_ENV, trail.SESSION_ENV):
        monkeypatch.delenv(key, raising=False)
    return out


def entries(**match) -> list[dict]:
    return [e for e in trail.read() if all(e.get(k) == v for k, v in match.items())]


def fake_record(root: Path, env: str, name: str, second: int, status: str = "succeeded") -> str:
    """Store a small executed-looking notebook as a record, the way `tap run` stores one."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"print({second})")]
    start = f"2026-11-28T10:00:{second:02d}+00:00"
    nb.metadata["tap"] = {"notebook": name, "env": env, "stack": f"TapStack{env}",
                          "target": "sandbox", "operator": "alice", "status": status,
                          "start": start, "end": start, "summary": {"passed": second}}
    path = runbook.reserve_record(str(root), env, name, start)
    runbook.store_record(nb, str(root), path)
    return path


def run_verify(capsys: pytest.CaptureFixture, *extra: str) -> tuple[int, str]:
    code = main(["audit", "verify", *extra])
    return code, capsys.readouterr().out


def chain_of(outputs: Path, n: int = 6) -> tuple[list[str], list[str]]:
    """n mutation entries interleaved with n records; returns (trail lines, record paths)."""
    paths = []
    for i in range(n):
        trail.append("deploy", stack="TapStackdev", target="sandbox",
                     env_file="params/dev.yaml", summary={"same": i})
        paths.append(fake_record(outputs, "dev", "verify", i))
    return trail.trail_path().read_text().splitlines(keepends=True), paths


def spy_on_apply(monkeypatch: pytest.MonkeyPatch) -> list[list[dict]]:
    """Replace the sandbox engine's apply (and its stack lookup) with a spy, so a mutation runs
    without an emulator; returns each call as the trail stood when it began (the first change)."""
    from types import SimpleNamespace

    from tap_lib.engines.sandbox.engine import SandboxEngine

    calls: list[list[dict]] = []

    def spy_up(self, progress, **kwargs):
        calls.append(trail.read())
        return SimpleNamespace(status="succeeded", summary={"update": 1}, notes=[])

    monkeypatch.setattr(SandboxEngine, "_up", spy_up)
    monkeypatch.setattr(SandboxEngine, "stack_meta", lambda self: None)
    return calls


def dev_engine():
    from tap_lib.engines.sandbox.engine import SandboxEngine
    from tap_lib.ops.stack import settings_for

    return SandboxEngine(settings_for("dev"))
