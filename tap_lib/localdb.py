"""A throwaway PostgreSQL server, standing in for the Aurora cluster on the sandbox and in tests.

It runs Debian's PostgreSQL binaries (`apt-get install postgresql`) on 127.0.0.1 only, with
SCRAM password authentication, so clients exercise the same connect-and-authenticate path as
against Aurora. The server outlives the process that started it: `LocalPostgres.attach(data_dir)`
finds it again from the files in its data directory.

PostgreSQL refuses to run as root. As root, every server command runs as the `postgres` system
user (created by the Debian package) through `runuser`, the data directory is owned by that user,
and its ancestors get the search bit for others (names in them stay unlistable) so that user can
reach it. Keep the data out of directories whose permissions something else resets: every pytest
session sets /tmp/pytest-of-root back to 0700, locking that user out of data below it.

Passwords never appear in process arguments, logs or exception messages: initdb reads the
superuser's password from a 0600 file that is deleted right after.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pg8000.native

from .errors import OperationFailed

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
SERVICE_USER = "postgres"
LOG_NAME = "server.log"
CONF_NAME = "tap.conf"
# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_INSTALL_HINT = "install PostgreSQL's server binaries: apt-get install postgresql"


class LocalPostgresError(OperationFailed):
    """A local PostgreSQL server could not be found, initialised, started or stopped."""


def find_bindir() -> Path:
    """Directory of the newest installed PostgreSQL server binaries (Debian layout, then PATH)."""
    versions = []
    for candidate in _DEBIAN_ROOT.glob("*/bin"):
        if candidate.parent.name.isdigit() and (candidate / "pg_ctl").is_file():
            versions.append((int(candidate.parent.name), candidate))
    if versions:
        return max(versions)[1]
    on_path = shutil.which("pg_ctl")
    if on_path and (Path(on_path).parent / "initdb").is_file():
        return Path(on_path).parent
    raise LocalPostgresError(f"no PostgreSQL server binaries in {_DEBIAN_ROOT}/*/bin or on PATH",
                             hint=_INSTALL_HINT)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class LocalPostgres:
    """One PostgreSQL server with its data in `data_dir`, listening on 127.0.0.1:`port`."""

    host = HOST

    def __init__(self, data_dir: Path, port: int | None = None):
        """Without a port, a data directory an earlier process initialised keeps its own."""
        self.data_dir = Path(data_dir).absolute()
        self.port = port or self._running_port() or self._configured_port()

    def __repr__(self) -> str:
        return f"LocalPostgres(data_dir={str(self.data_dir)!r}, port={self.port})"

    @classmethod
    def attach(cls, data_dir: Path) -> LocalPostgres:
        """The server initialised in `data_dir` by an earlier process, running or not."""
        server = cls(data_dir)
        if not server.initialized:
            raise LocalPostgresError(f"{server.data_dir} holds no PostgreSQL data directory",
                                     hint="start it first with LocalPostgres(...).start()")
        return server

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    @property
    def log_file(self) -> Path:
        return self.data_dir / LOG_NAME

    def start(self, superuser: str, password: str, *, database: str | None = None,
              timeout: float = 60.0) -> None:
        """Initialise (first time only) and start the server, then create `database` if missing.

        `superuser`/`password` become the bootstrap superuser at initialisation; on later starts
        they are only used to create `database`. Starting a running server does nothing more.
        """
        bindir = find_bindir()
        if not self.initialized:
            self._initdb(bindir, superuser, password)
        if not self.is_running():
            self.port = self.port or free_port()
            self._write_conf()
            self._pg_ctl(bindir, "start", "-w", "-t", str(int(timeout)), "-l", str(self.log_file),
                         timeout=timeout + 10, action="start")
            log.info("PostgreSQL started on %s:%s (data in %s)", self.host, self.port,
                     self.data_dir)
        else:
            self.port = self._running_port()
        if database:
            self.create_database(database, superuser, password)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the server (fast shutdown: open sessions are ended); nothing if not running."""
        if not self.initialized or not self.is_running():
            return
        self._pg_ctl(find_bindir(), "stop", "-m", "fast", "-w", "-t", str(int(timeout)),
                     timeout=timeout + 10, action="stop")
        log.info("PostgreSQL on port %s stopped", self.port)

    def remove(self) -> None:
        """Stop the server and delete its data directory."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def is_running(self) -> bool:
        """Whether a server is running on this data directory (asks pg_ctl, so stale pid files
        left by a crash do not count)."""
        if not (self.data_dir / "postmaster.pid").is_file():
            return False
        result = self._run([str(find_bindir() / "pg_ctl"), "status", "-D", str(self.data_dir)],
                           timeout=30)
        return result.returncode == 0

    def create_database(self, name: str, user: str, password: str) -> None:
        """Create database `name` owned by `user`, unless it exists."""
        conn = self.connect(user, password, "postgres")
        try:
            if not conn.run("SELECT 1 FROM pg_database WHERE datname = :name", name=name):
                conn.run(f"CREATE DATABASE {pg8000.native.identifier(name)}")
                log.info("created database %s", name)
        finally:
            conn.close()

    def connect(self, user: str, password: str, database: str) -> pg8000.native.Connection:
        """A new connection over TCP with password authentication, as clients of Aurora make."""
        if self.port is None:
            raise LocalPostgresError(f"{self!r} has no port: start or attach it first")
        return pg8000.native.Connection(user, host=self.host, port=self.port, database=database,
                                        password=password, timeout=30)

    # -- internals -------------------------------------------------------------------------

    def _initdb(self, bindir: Path, superuser: str, password: str) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if any(self.data_dir.iterdir()):
            raise LocalPostgresError(f"cannot initialise PostgreSQL in {self.data_dir}: "
                                     "the directory is not empty",
                                     hint="choose an empty directory or remove this one")
        self.data_dir.chmod(0o700)
        self._own(self.data_dir)
        fd, pwfile = tempfile.mkstemp(prefix="tap-pg-", text=True)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(password + "\n")
            self._own(Path(pwfile))
            result = self._run([str(bindir / "initdb"), "-D", str(self.data_dir),
                                "--username", superuser, "--pwfile", pwfile,
                                "--auth-local", "scram-sha-256", "--auth-host", "scram-sha-256",
                                "--encoding", "UTF8", "--no-locale", "--no-sync",
                                "--no-instructions"], timeout=120)
        finally:
            os.unlink(pwfile)
        if result.returncode != 0:
            raise LocalPostgresError(f"initdb failed in {self.data_dir}: {_tail(result.stdout)}")
        (self.data_dir / "pg_hba.conf").write_text(
            "# Written by tap: password (SCRAM) authentication, loopback only.\n"
            "local all all scram-sha-256\n"
            f"host  all all {HOST}/32 scram-sha-256\n")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"\ninclude_if_exists = '{CONF_NAME}'\n")
        log.info("initialised PostgreSQL data directory %s", self.data_dir)

    def _write_conf(self) -> None:
        """Settings tap owns, rewritten on each start so a new port takes effect."""
        socket_path = self.data_dir / f".s.PGSQL.{self.port}"
        # Clients here use TCP; the socket is only a convenience, dropped if the path is too long.
        socket_dir = str(self.data_dir) if len(str(socket_path)) <= MAX_SOCKET_PATH else ""
        conf = self.data_dir / CONF_NAME
        conf.write_text(f"listen_addresses = '{HOST}'\n"
                        f"port = {self.port}\n"
                        f"unix_socket_directories = '{socket_dir}'\n"
                        "password_encryption = 'scram-sha-256'\n"
                        "shared_buffers = '32MB'\n"
                        "max_connections = 50\n")
        self._own(conf)

    def _running_port(self) -> int | None:
        """Port from postmaster.pid (line 4), which the server writes while it runs."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        return int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None

    def _configured_port(self) -> int | None:
        try:
            text = (self.data_dir / CONF_NAME).read_text()
        except FileNotFoundError:
            return None
        found = re.search(r"^port = (\d+)$", text, re.MULTILINE)
        return int(found.group(1)) if found else None

    def _pg_ctl(self, bindir: Path, command: str, *args: str, timeout: float,
                action: str) -> None:
        result = self._run([str(bindir / "pg_ctl"), command, "-D", str(self.data_dir), *args],
                           timeout=timeout)
        if result.returncode != 0:
            raise LocalPostgresError(
                f"PostgreSQL failed to {action} (data {self.data_dir}, port {self.port}): "
                f"{_tail(result.stdout)}\n--- server log (tail) ---\n{self._log_tail()}",
                hint=f"full server log: {self.log_file}")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return _tail(self.log_file.read_text(errors="replace"), lines)
        except OSError:
            return "(no server log)"

    def _run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        program = Path(argv[0]).name
        if _as_root():
            self._make_reachable()  # again each time: something may have reset a parent's mode
            argv = ["runuser", "-u", SERVICE_USER, "--", *argv]
        try:
            return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=timeout,
                                  start_new_session=True, cwd="/")
        except subprocess.TimeoutExpired as exc:
            raise LocalPostgresError(
                f"{program} timed out after {timeout:.0f}s (data {self.data_dir})\n"
                f"--- server log (tail) ---\n{self._log_tail()}") from exc

    def _own(self, path: Path) -> None:
        """As root, hand `path` to the service user."""
        if _as_root():
            shutil.chown(path, user=SERVICE_USER, group=SERVICE_USER)

    def _make_reachable(self) -> None:
        """As root, let the service user traverse the data directory's ancestors."""
        if not _as_root():
            return
        for parent in self.data_dir.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
                log.info("granted search permission on %s so PostgreSQL can reach its data",
                         parent)


def _as_root() -> bool:
    return os.geteuid() == 0


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


@contextlib.contextmanager
def running(data_dir: Path, superuser: str, password: str, *,
            database: str | None = None) -> Iterator[LocalPostgres]:
    """A started server that is stopped and deleted on exit (tests, benchmarks)."""
    server = LocalPostgres(data_dir)
    try:
        server.start(superuser, password, database=database)
        yield server
    finally:
        server.remove()
