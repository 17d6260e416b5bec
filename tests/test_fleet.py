"""Fleet operations against a real sandbox emulator: two deployed stacks and one that is not,
verified concurrently in one process. Nothing is mocked."""
from __future__ import annotations

import json

import pytest

from tap_lib.cli import main
from tap_lib.errors import ConfigError, UsageError
from tap_lib.ops import fleet
from tap_lib.ops.stack import deploy
from tap_lib.ops.verify import verify

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def two_stacks(sandbox_home):
    """dev/ft1 and dev/ft2 deployed; dev/ft3 never deployed."""
    for suffix in ("ft1", "ft2"):
        deploy("dev", "sandbox", (f"suffix={suffix}",), yes=True)
    return sandbox_home


def test_fleet_verify_matches_single_verify_and_worst_exit(two_stacks, capsys):
    report = fleet.fleet_verify([("dev", "ft1"), ("dev", "ft2"), ("dev", "ft3")], "sandbox", 3)
    by_stack = {r.stack: r for r in report.results}
    assert [r.stack for r in report.results] == ["TapStackft1", "TapStackft2", "TapStackft3"]
    single = verify("dev", "sandbox", ("suffix=ft1",))
    for stack in ("TapStackft1", "TapStackft2"):
        r = by_stack[stack]
        assert (r.status, r.exit_code) == ("passed", 0)
        # per-thread counting on shared clients: each stack made the calls one verify makes
        assert r.counts["aws_calls"] == single.aws_calls
        assert sorted(r.report.calls) == sorted(single.calls)
        assert r.counts["passed"] == single.passed
    assert (by_stack["TapStackft3"].status, by_stack["TapStackft3"].exit_code) == (
        "not-deployed", 3)
    assert report.exit_code == 3
    assert report.notes == ["1 client set(s) shared by 3 stack(s)"]
    matrix = report.matrix()
    assert list(matrix.index) == ["TapStackft1", "TapStackft2", "TapStackft3"]
    assert set(single.checks["id"]) == set(matrix.columns)
    assert (matrix.loc["TapStackft1"] == "pass").all()
    assert (matrix.loc["TapStackft3"] == "").all()
    # each verified stack got its own audit entry
    from tap_lib import trail
    entries = [e for e in trail.read() if e["operation"] == "verify"][-2:]
    assert sorted((e["stack"], e["result"], e["summary"]["failed"]) for e in entries) == [
        ("TapStackft1", "succeeded", 0), ("TapStackft2", "succeeded", 0)]


def test_a_failed_control_shows_in_the_matrix_and_exit_1(two_stacks, capsys):
    from tap_lib.engines.registry import open_engine
    from tap_lib.ops.stack import settings_for

    settings = settings_for("dev", ("suffix=ft2",))
    engine = open_engine(settings, "sandbox")
    bucket = engine.outputs()["s3_bucket_name"]
    s3 = engine.clients()("s3")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    try:
        code = main(["fleet", "verify", "--env", "dev", "--suffix", "ft1", "--suffix", "ft2",
                     "--json"])
        out = json.loads(capsys.readouterr().out)
    finally:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert code == 1
    assert [o["stack"] for o in out] == ["TapStackft1", "TapStackft2"]
    assert [o["exit_code"] for o in out] == [0, 1]
    failed = [c["id"] for c in out[1]["checks"] if c["status"] == "fail"]
    assert failed == ["s3.versioning"]
    assert out[1]["summary"]["failed"] == 1 and out[0]["summary"]["failed"] == 0


def test_fleet_preview_and_inspect(two_stacks):
    preview = fleet.fleet_preview([("dev", "ft1"), ("dev", "ft3")], "sandbox")
    counts = {r.stack: r.counts for r in preview.results}
    assert counts["TapStackft1"]["create"] == 0 and counts["TapStackft1"]["same"] > 0
    assert counts["TapStackft3"]["create"] == counts["TapStackft1"]["same"]
    assert preview.exit_code == 0
    inspected = fleet.fleet_inspect([("dev", "ft1"), ("dev", "ft3")], "sandbox")
    r1, r3 = inspected.results
    assert r1.counts["drifted"] == 0 and r1.counts["resources"] == counts["TapStackft1"]["same"]
    assert (r3.status, r3.exit_code) == ("not-deployed", 3)


def test_fleet_file_is_validated_like_config(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text("stacks:\n  - env: dev\n    suffix: pr1\n  - env: dev\n    sufix: pr2\n")
    with pytest.raises(ConfigError) as err:
        fleet.load_fleet_file(path)
    assert str(path) in str(err.value) and "stacks[1].sufix" in str(err.value)
    assert "allowed: env, suffix" in str(err.value)
    path.write_text("stacks: dev\n")
    with pytest.raises(ConfigError, match="field 'stacks'"):
        fleet.load_fleet_file(path)
    path.write_text("stacks:\n  - env: nosuch\n")
    with pytest.raises(ConfigError, match="no such environment file"):
        fleet.resolve_stacks(fleet_file=path)
    path.write_text("stacks:\n  - env: dev\n    suffix: pr1\n  - env: staging\n")
    refs = [(ref, s.stack_name) for ref, s in fleet.resolve_stacks(fleet_file=path)]
    assert refs[0] == (fleet.StackRef("dev", "pr1"), "TapStackpr1")
    assert refs[1][0] == fleet.StackRef("staging")


def test_stack_selection_errors(monkeypatch):
    with pytest.raises(UsageError, match="same stack TapStackpr1"):
        fleet.resolve_stacks(["dev", "staging"], ["pr1"])
    with pytest.raises(UsageError, match="give at least one --env"):
        fleet.resolve_stacks([], ["pr1"])
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "pr9")
    with pytest.raises(UsageError, match="ENVIRONMENT_SUFFIX"):
        fleet.resolve_stacks(["dev"], ["pr1"])
    assert main(["fleet", "list", "--env", "dev", "--suffix", "pr1", "--fleet", "x.yaml"]) == 2
