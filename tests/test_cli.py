"""The command line as scripts use it: JSON shapes, exit codes and guards, in real processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]


def tap(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tap_lib.cli", *args], capture_output=True,
                          text=True, env=os.environ.copy(), timeout=300)


def test_sandbox_status_json(sandbox_home):
    out = tap("sandbox", "status", "--json")
    assert out.returncode == 0
    status = json.loads(out.stdout)
    assert status["running"] is True and status["pid"] > 0
    assert status["endpoint"] == f"http://127.0.0.1:{os.environ['TAP_SANDBOX_PORT']}"


def test_preview_json_shape(sandbox_home):
    out = tap("preview", "--env", "dev", "--set", "suffix=cli", "--json")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # no stray noise (event loops closed at exit, no warnings)
    plan = json.loads(out.stdout)
    assert plan["stack"] == "TapStackcli"
    assert set(plan["summary"]) == {"create", "update", "replace", "delete", "same"}
    assert plan["summary"]["create"] == len(plan["steps"]) == 50
    assert set(plan["steps"][0]) >= {"urn", "type", "name", "op", "diffs"}


def test_exit_codes_and_guards(sandbox_home):
    bad = tap("preview", "--env", "dev", "--set", "vpc.az_count=9")
    assert bad.returncode == 2
    assert "params/dev.yaml (--set vpc.az_count)" in bad.stderr and "Traceback" not in bad.stderr

    problems = tap("preflight", "--env", "dev", "--set", "db.engine_version=15.3", "--json")
    assert problems.returncode == 1
    findings = json.loads(problems.stdout)["findings"]
    assert any(f["rule"].startswith("TAP005") and "15.6" in f["message"] for f in findings)

    not_deployed = tap("verify", "--env", "dev", "--set", "suffix=nothing")
    assert not_deployed.returncode == 3 and "tap deploy --env dev" in not_deployed.stderr

    no_yes = tap("destroy", "--env", "dev")
    assert no_yes.returncode == 2 and "--yes" in no_yes.stderr
    prod = tap("destroy", "--env", "prod", "--yes")
    assert prod.returncode == 2 and "--confirm TapStackprod" in prod.stderr
    wrong = tap("destroy", "--env", "prod", "--yes", "--confirm", "TapStackdev")
    assert wrong.returncode == 2

    deploy = tap("deploy", "--env", "dev", "--set", "suffix=cli")
    assert deploy.returncode == 2 and "--yes" in deploy.stderr  # no terminal to ask on


def test_sandbox_stop_takes_the_stand_in_databases_with_it(sandbox_home):
    deployed = tap("deploy", "--env", "dev", "--set", "suffix=stop", "--yes", "--json")
    assert deployed.returncode == 0, deployed.stderr
    data_dirs = list((sandbox_home / "sandbox" / "stacks" / "TapStackstop").glob("postgres/*"))
    assert len(data_dirs) == 1 and (data_dirs[0] / "postmaster.pid").exists()
    assert tap("sandbox", "stop").returncode == 0
    assert not data_dirs[0].exists()
    assert json.loads(tap("sandbox", "status", "--json").stdout)["running"] is False
    # the next operation starts a fresh emulator and reports the lost stack
    lost = tap("preview", "--env", "dev", "--set", "suffix=stop")
    assert lost.returncode == 3 and "restarted" in lost.stderr
