"""The trail is written before the change (trail.recorded): a mutation whose entry cannot be
written never starts, and what could not be written is said with its path and the system's
reason. TAP_OPERATOR, shown in every entry and listing, is checked before anything runs.

The engine is the real SandboxEngine with its apply replaced by a spy (no emulator), except in
the one test that deploys for real through `tap deploy`.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from fixtures_audit import dev_engine, fresh_outputs, run_verify, spy_on_apply

from tap_lib import trail
from tap_lib.cli import main
from tap_lib.errors import ConfigError, RecordsUnwritable
from tap_lib.ops import audit, runbook
from tap_lib.ops import stack as stack_ops


@pytest.fixture
def outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return fresh_outputs(tmp_path, monkeypatch)


@pytest.fixture
def applied(monkeypatch: pytest.MonkeyPatch) -> list[list[dict]]:
    return spy_on_apply(monkeypatch)


def no_space(monkeypatch: pytest.MonkeyPatch, after: list | None = None) -> None:
    """The disk is full (for every fsync, or once `after` is not empty)."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if after is None or after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_the_started_entry_is_on_disk_before_the_first_change(outputs: Path,
                                                               applied: list) -> None:
    dev_engine().up()
    [seen] = applied
    assert [(e["operation"], e["result"]) for e in seen] == [("deploy", "started")]
    started, done = trail.read()
    assert (done["result"], done["started"], done["summary"]) == (
        "succeeded", started["hash"], {"update": 1})


def test_no_space_for_the_started_entry_changes_nothing(outputs: Path, applied: list,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while the start is written: the apply never runs, the trail keeps no half line
    (before: the apply ran, then the entry failed with a bare OSError)."""
    trail.append("refresh", stack="TapStackdev")
    before = trail.trail_path().read_bytes()
    no_space(monkeypatch)
    with pytest.raises(RecordsUnwritable) as info:
        dev_engine().up()
    assert applied == []
    assert trail.trail_path().read_bytes() == before
    message = str(info.value)
    assert info.value.exit_code == 2 and "No space left on device" in message
    assert str(trail.trail_path()) in message and f"TAP_OUTPUTS={outputs}" in message
    assert "nothing was changed" in message


def test_no_space_for_the_outcome_says_the_mutation_ran(outputs: Path, applied: list,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    no_space(monkeypatch, after=applied)
    with pytest.raises(RecordsUnwritable, match=r"the deploy of TapStackdev succeeded, but the "
                                                r"trail has only its start \(entry #0\)"):
        dev_engine().up()
    assert len(applied) == 1
    code, out = run_verify(capsys)
    assert code == 0 and "started and never ended" in out and "entries #0" in out


def test_tap_outputs_naming_a_file_refuses_before_anything_runs(
        tmp_path: Path, applied: list, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    records = tmp_path / "records.txt"
    records.write_text("not a folder\n")
    monkeypatch.setenv("TAP_OUTPUTS", str(records))
    with pytest.raises(RecordsUnwritable, match="Not a directory") as info:
        audit.records_root()
    assert f"{records} (TAP_OUTPUTS={records})" in str(info.value)
    with pytest.raises(RecordsUnwritable):
        dev_engine().up()
    assert applied == []
    with pytest.raises(RecordsUnwritable):  # checked before a kernel starts
        runbook.run_notebooks("audit", env="dev")
    with pytest.raises(RecordsUnwritable):
        audit.picture_path("dev", "topology")
    assert main(["audit", "verify"]) == 2
    assert "TAP_OUTPUTS" in capsys.readouterr().err
    assert records.read_text() == "not a folder\n"


@pytest.mark.sandbox
def test_a_deploy_into_a_records_root_that_is_a_file_creates_nothing(
        sandbox_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """The real path: `tap deploy` on the sandbox (before: the stack was created, then the
    trail entry failed)."""
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "waf")
    records = tmp_path / "outputs"
    records.write_text("")
    monkeypatch.setenv("TAP_OUTPUTS", str(records))
    assert main(["deploy", "--env", "dev", "--yes"]) == 2
    err = capsys.readouterr().err
    assert f"TAP_OUTPUTS={records}" in err and "Not a directory" in err, err
    assert "nothing was changed" in err
    assert stack_ops.open_engine(stack_ops.settings_for("dev"), "sandbox").resources() == []


# -- TAP_OPERATOR ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "alice\nbob", "\x1b[2J\x1b[Hroot", "a" * 129, "evil\u202egnp.exe", "   ", "tab\there",
])
def test_an_operator_name_that_could_forge_a_line_is_refused_before_anything_runs(
        outputs: Path, applied: list, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("TAP_OPERATOR", name)
    with pytest.raises(ConfigError, match="field 'TAP_OPERATOR'") as info:
        trail.current_operator()
    assert info.value.exit_code == 2 and "\n" not in info.value.message
    with pytest.raises(ConfigError, match="TAP_OPERATOR"):
        dev_engine().up()
    assert applied == [] and not trail.trail_path().exists()


def test_printable_operator_names_up_to_128_characters_are_kept(
        outputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("José Ñúñez", "ops-bot@ci", "a" * 128):
        monkeypatch.setenv("TAP_OPERATOR", name)
        assert trail.append("refresh", stack="x")["operator"] == name


def test_the_login_name_is_checked_too_and_so_is_a_run_operator(
        outputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAP_OPERATOR")
    monkeypatch.setenv("LOGNAME", "root\x1b]0;owned\x07")  # getpass reads LOGNAME first
    with pytest.raises(ConfigError, match="login name"):
        trail.current_operator()
    monkeypatch.setenv("TAP_OPERATOR", "alice")
    with pytest.raises(ConfigError, match="'-p operator'"):
        runbook.run_notebooks("audit", env="dev", parameters={"operator": "b" * 129})
    from tap_lib.airflow.records import begin  # Airflow's half of `tap run`: the same check

    with pytest.raises(ConfigError, match="'operator'"):
        begin("verify", {"env": "dev", "operator": "airflow\nadmin"})
    assert not outputs.exists()
