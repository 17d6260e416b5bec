"""The sandbox server's lifecycle against real moto processes.

Each test gets its own TAP_HOME and a free port, and stops its server in teardown, so tests never
share an emulator and never leak processes.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tap_lib.engines.sandbox import server
from tap_lib.localdb import free_port
from tap_lib.errors import ConfigError, TargetUnreachable

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[1]


def _wait_dead(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server._pid_alive(pid):
        time.sleep(0.05)
    assert not server._pid_alive(pid), f"pid {pid} still alive"


@pytest.fixture
def sandbox_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Own TAP_HOME and port; whatever server the test started is stopped afterwards."""
    monkeypatch.setenv("TAP_HOME", str(tmp_path / "tap-home"))
    port = free_port()
    monkeypatch.setenv("TAP_SANDBOX_PORT", str(port))
    yield port
    server.stop()


def test_lifecycle_start_status_call_restart_noop_stop(sandbox_port: int) -> None:
    started = server.start()
    assert started.running and started.pid and started.port == sandbox_port
    assert started.endpoint == f"http://127.0.0.1:{sandbox_port}"
    assert started.boot_id

    status = server.status()
    assert status.running and status.pid == started.pid
    assert status.uptime_s is not None and status.uptime_s >= 0 and status.started_at is not None
    assert {"running", "endpoint", "pid", "uptime_s", "started_at"} <= status.to_dict().keys()
    json.dumps(status.to_dict())  # the --json output must serialize

    s3 = server.client("s3", "us-east-1")
    s3.create_bucket(Bucket="tap-lifecycle")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["tap-lifecycle"]

    again = server.ensure_running()
    assert again.pid == started.pid and again.boot_id == started.boot_id

    stopped = server.stop()
    assert not stopped.running and stopped.pid is None
    _wait_dead(started.pid)
    assert not server.status().running
    assert not (Path(os.environ["TAP_HOME"]) / "sandbox" / "server.json").exists()
    assert not server.stop().running  # idempotent


def test_concurrent_start_from_two_processes_spawns_one_server(sandbox_port: int) -> None:
    code = ("from tap_lib.engines.sandbox import server; "
            "print(server.start().pid)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    pids = {int(out.strip()) for out, _ in outputs}
    assert len(pids) == 1
    assert server.status().pid == pids.pop()


def test_port_taken_by_another_program_is_a_clear_error(
        sandbox_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", sandbox_port))
        listener.listen()
        with pytest.raises(TargetUnreachable) as info:
            server.start()
        # The port taken between tap's check and moto's bind: moto exits, same message.
        monkeypatch.setattr(server, "_port_in_use", lambda port: False)
        with pytest.raises(TargetUnreachable) as raced:
            server.start()
    for error in (info.value, raced.value):
        assert str(sandbox_port) in str(error) and "TAP_SANDBOX_PORT" in str(error)
    assert not server.status().running


def test_reset_empties_state_and_changes_boot_id(sandbox_port: int) -> None:
    first = server.start()
    s3 = server.client("s3", "us-east-1")
    s3.create_bucket(Bucket="tap-reset")

    after = server.reset()
    assert after.pid == first.pid  # same process: reset does not restart
    assert s3.list_buckets()["Buckets"] == []
    assert after.boot_id and after.boot_id != first.boot_id
    assert server.boot_id() == after.boot_id


def test_killed_server_is_detected_and_restart_gets_new_boot_id(sandbox_port: int) -> None:
    first = server.start()
    assert first.pid is not None and server.boot_id() == first.boot_id
    os.kill(first.pid, signal.SIGKILL)
    _wait_dead(first.pid)

    assert not server.status().running  # stale runtime file is cleaned up
    began = time.monotonic()
    with pytest.raises(TargetUnreachable):
        server.boot_id()
    assert time.monotonic() - began < 10  # a dead emulator fails fast

    second = server.start()
    assert second.running and second.pid != first.pid
    assert second.boot_id and second.boot_id != first.boot_id


def test_invalid_port_setting_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAP_SANDBOX_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="TAP_SANDBOX_PORT"):
        server.sandbox_port()


def test_tap_sandbox_reset_is_written_ahead_in_the_trail(sandbox_port: int, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A reset with no protected stack runs, its start recorded before it, its end after; when
    the trail cannot be written, the emulator keeps everything."""
    from tap_lib import trail
    from tap_lib.engines.sandbox.engine import reset_sandbox
    from tap_lib.errors import RecordsUnwritable

    monkeypatch.setenv("TAP_OUTPUTS", str(tmp_path / "outputs"))
    server.start()
    s3 = server.client("s3", "us-east-1")
    s3.create_bucket(Bucket="tap-kept")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")
    monkeypatch.setenv("TAP_OUTPUTS", str(blocker))
    with pytest.raises(RecordsUnwritable, match="TAP_OUTPUTS"):
        reset_sandbox()
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["tap-kept"]
    monkeypatch.setenv("TAP_OUTPUTS", str(tmp_path / "outputs"))
    reset_sandbox()
    assert s3.list_buckets()["Buckets"] == []
    assert [(e["operation"], e["result"]) for e in trail.read()] == [
        ("reset", "started"), ("reset", "succeeded")]


# ------------------------------------------------------------------ liveness (processes.py)
def test_one_liveness_rule_for_the_emulator_and_the_lock_holder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A live process exists; a zombie (killed, not yet reaped) and a gone pid do not; a pid we
    may not inspect still exists. The server's emulator check and the lock's holder note
    use the same rule, so their answers can no longer disagree."""
    import psutil

    from tap_lib.engines.sandbox import processes
    from tap_lib.engines.sandbox.locks import holder_info

    monkeypatch.setenv("TAP_HOME", str(tmp_path / "home"))
    live = subprocess.Popen(["sleep", "30"])
    zombie = subprocess.Popen(["sleep", "30"])
    try:
        zombie.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 5       # killed but not reaped: a zombie
        while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        note = tmp_path / "lock.json"
        for pid, alive in [(live.pid, True), (zombie.pid, False), (0, False), (-5, False)]:
            assert processes.pid_alive(pid) is alive, pid
            note.write_text(json.dumps({"pid": pid, "operation": "deploy", "since": "t"}))
            assert (holder_info(note) is not None) is alive, pid
        # `sleep` is alive but is not tap's emulator: never stopped or adopted as one
        assert not processes.is_emulator(live.pid) and not server._pid_alive(live.pid)

        # Another user's process: tests run as root here, so no process is closed to them;
        # psutil's answer for one is simulated (the only mock in this module).
        def denied(pid: int) -> psutil.Process:
            raise psutil.AccessDenied(pid)
        with monkeypatch.context() as patched:
            patched.setattr(processes.psutil, "Process", denied)
            assert processes.pid_alive(live.pid)          # exists: we may just not look
            assert not processes.is_emulator(live.pid)    # not ours to stop
    finally:
        live.kill()
        live.wait()
        zombie.wait()
    assert not processes.pid_alive(live.pid)


def test_emulator_is_found_by_command_line_and_home_and_its_start_time(sandbox_port: int
                                                                        ) -> None:
    from tap_lib.engines.sandbox import processes

    started = server.start()
    home = str((Path(os.environ["TAP_HOME"]) / "sandbox").resolve())
    assert processes.find_emulators(home) == [(started.pid, sandbox_port)]
    assert processes.find_emulators(home + "-other") == []
    assert abs((processes.started_at(started.pid) - started.started_at).total_seconds()) < 5


def test_server_lock_held_elsewhere_is_reported_not_waited_on(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """Another process holds sandbox/server.lock: a probe (timeout 0) hears so at once, a
    waiting caller gets a typed error after its timeout, and the lock is free once it ends."""
    monkeypatch.setenv("TAP_HOME", str(tmp_path / "home"))
    lock = Path(os.environ["TAP_HOME"]) / "sandbox" / "server.lock"
    lock.parent.mkdir(parents=True)
    code = ("import sys, time; from filelock import FileLock\n"
            f"held = FileLock({str(lock)!r}); held.acquire(); print('held', flush=True); "
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with server._locked(timeout=0) as acquired:
            assert acquired is False
        with pytest.raises(TargetUnreachable, match="held the sandbox lock"):
            with server._locked(timeout=0.3):
                pass
    finally:
        holder.kill()
        holder.communicate()
    with server._locked(timeout=5) as acquired:
        assert acquired is True
