"""The local AWS emulator's lifecycle: moto in server mode on 127.0.0.1, shared by every process.

Each notebook runs in its own kernel, so the emulator is a detached child process (its own session)
that outlives whoever started it. It is found again through a small JSON runtime file under
``tap_home()/sandbox/``; an advisory lock on ``server.lock`` there keeps concurrent ``start()`` calls
from spawning two servers.

moto keeps all state in the server process only. Right after a start (and after a reset) a fresh
boot id is stored *inside* the emulator as an SSM parameter; state that remembers an older boot id,
or an emulator that has none, means the emulator restarted and forgot everything.

The runtime file is a convenience, not the only way to find the emulator: tap starts it with its
own module on the command line and this home's sandbox directory as working directory, so a
damaged or missing runtime file never orphans it — `stop` finds it (processes.py) and stops it,
`start` adopts it and rewrites the file, and `status` names the damage.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from filelock import Timeout

from ...errors import ConfigError, StateCorrupt, TapError, TargetUnreachable
from ...project import tap_home
from . import processes, runtime_file
from .locks import held
from .processes import EMULATOR_MODULE
from .runtime_file import Runtime as _Runtime

HOST = "127.0.0.1"
DEFAULT_PORT = 5599
PORT_ENV = "TAP_SANDBOX_PORT"
BOOT_ID_PARAMETER = "/tap/sandbox/boot-id"
BOOT_ID_REGION = "us-east-1"
START_TIMEOUT_S = 20.0
LOCK_TIMEOUT_S = 60.0
_HEALTH_PATH = "/moto-api/config"  # small JSON that only moto serves
_LOG_TAIL_LINES = 20

# boto3 clients for the emulator: a dead emulator must fail in seconds, not after minutes of retries.
CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 2},
                        connect_timeout=2, read_timeout=30, proxies={})
# Never send 127.0.0.1 traffic through an HTTP(S)_PROXY from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Servers spawned by this process, so their exit is reaped (no zombies, no ResourceWarning).
_children: dict[int, subprocess.Popen[bytes]] = {}


@atexit.register
def _leave_running() -> None:
    """An emulator outlives the process that started it, on purpose (every notebook kernel
    shares it): not a leaked child, so Popen must not warn "still running" at exit."""
    for proc in _children.values():
        if proc.poll() is None:
            proc.returncode = 0


@dataclass(frozen=True)
class SandboxStatus:
    """What `tap sandbox status` shows; `running` means the pid is alive AND the endpoint answers."""

    running: bool
    endpoint: str
    port: int
    pid: int | None = None
    started_at: datetime | None = None
    uptime_s: float | None = None
    boot_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The `--json` shape: running, endpoint, pid (+ port, started_at, uptime_s, boot_id)."""
        return {
            "running": self.running,
            "endpoint": self.endpoint,
            "pid": self.pid,
            "port": self.port,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "uptime_s": None if self.uptime_s is None else round(self.uptime_s, 3),
            "boot_id": self.boot_id,
        }


# ---------------------------------------------------------------------------------------- public

def sandbox_port() -> int:
    """The configured port: TAP_SANDBOX_PORT, default 5599."""
    raw = os.environ.get(PORT_ENV, "").strip()
    if not raw:
        return DEFAULT_PORT
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise ConfigError("not a TCP port", field=PORT_ENV, value=raw, allowed="an integer 1-65535")
    return port


def endpoint(port: int | None = None) -> str:
    """The emulator's URL on the configured (or given) port."""
    return f"http://{HOST}:{sandbox_port() if port is None else port}"


def status() -> SandboxStatus:
    """Inspect without side effects other than removing a stale runtime file (dead pid).

    A runtime file that is damaged, or missing or stale while an emulator this home started
    still runs, is a StateCorrupt error saying so: status never reports a running emulator as
    stopped."""
    problem = None
    try:
        rt = _read_runtime()
    except StateCorrupt as exc:
        rt, problem = None, exc.problem
    if rt is not None and not _pid_alive(rt.pid):
        _discard_stale(rt)
        problem, rt = f"names pid {rt.pid}, which is not tap's emulator (it is not running)", None
    if rt is not None:
        return _status_of(rt)
    with _locked(timeout=0) as idle:          # a start() in flight has not written it yet
        found = _find_emulators() if idle else []
    if found:
        running = ", ".join(f"pid {pid} on port {port}" for pid, port in found)
        raise StateCorrupt(_runtime_path(),
                           f"{problem or 'is missing'}; tap's emulator still runs ({running})",
                           hint="`tap sandbox start` rewrites the file for it; "
                                "`tap sandbox stop` stops it")
    if problem is not None and _runtime_path().exists():
        raise StateCorrupt(_runtime_path(), f"{problem}; no emulator of this TAP_HOME runs",
                           hint="`tap sandbox stop` removes the file; `tap sandbox start` "
                                "starts afresh")
    return _status_of(None)


def start() -> SandboxStatus:
    """Start the emulator unless it already runs (idempotent; safe across concurrent processes)."""
    with _locked():
        return _start_locked()


def ensure_running() -> SandboxStatus:
    """Auto-start on first use: every sandbox operation calls this before talking to the emulator."""
    return start()


def stop() -> SandboxStatus:
    """Terminate the server's process group (SIGTERM, then SIGKILL) and forget it (idempotent).

    Also stops what the runtime file does not name (damaged, missing, or naming another pid):
    every emulator this home started, found by command line and working directory. If moto still answers on the port
    afterwards, that is said (StateCorrupt naming the file), never reported as stopped."""
    with _locked():
        damage: StateCorrupt | None = None
        try:
            rt = _read_runtime()
        except StateCorrupt as exc:
            rt, damage = None, exc
        ports = {sandbox_port()}
        if rt is not None:
            ports.add(rt.port)
            if _pid_alive(rt.pid):
                _terminate(rt.pid)
        for pid, port in _find_emulators():
            ports.add(port)
            _terminate(pid)
        still = sorted(port for port in ports if _ping(port, timeout=0.5))
        if still:
            problem = damage.problem if damage else "does not name the running emulator"
            raise StateCorrupt(
                _runtime_path(),
                f"{problem}; moto still answers on port {', '.join(map(str, still))} and tap "
                "could not tell which process it is, so it was not stopped",
                hint=f"find it with `ss -ltnp 'sport = :{still[0]}'` and stop it by hand; "
                     "then `tap sandbox stop` removes the file")
        _runtime_path().unlink(missing_ok=True)
    return _status_of(None)


def reset() -> SandboxStatus:
    """Wipe all emulator state without restarting, then store a new boot id.

    A stopped emulator is started instead: a fresh one is empty anyway.
    """
    with _locked():
        rt = _read_runtime_or_adopt()
        if rt is None or not _pid_alive(rt.pid) or not _ping(rt.port):
            return _start_locked()
        try:
            request = urllib.request.Request(endpoint(rt.port) + "/moto-api/reset", method="POST",
                                             data=b"")
            with _HTTP.open(request, timeout=10) as response:
                response.read()
        except (OSError, urllib.error.URLError) as exc:
            raise TargetUnreachable(f"the sandbox at {endpoint(rt.port)} refused the reset: {exc}",
                                    hint="restart it with `tap sandbox stop` and "
                                         "`tap sandbox start`") from None
        rt = rt.model_copy(update={"boot_id": _write_boot_id(rt.port)})
        _write_runtime(rt)
        return _status_of(rt)


def boot_id() -> str | None:
    """The boot id stored inside the emulator; None means it lost state or was not started by tap."""
    return _read_boot_id(sandbox_port())


def client(service: str, region: str) -> Any:
    """A boto3 client for the emulator: dummy credentials, few retries, short connect timeout."""
    return _client(service, region, sandbox_port())


# -------------------------------------------------------------------------------------- internals

def _start_locked() -> SandboxStatus:
    port = sandbox_port()
    rt = _read_runtime_or_adopt()
    if rt is not None:
        alive = _pid_alive(rt.pid)
        if alive and _ping(rt.port):
            if rt.port != port:
                raise TargetUnreachable(
                    f"the sandbox already runs on port {rt.port} (pid {rt.pid}), "
                    f"but {PORT_ENV} asks for port {port}",
                    hint=f"run `tap sandbox stop` first, or set {PORT_ENV}={rt.port}")
            return _status_of(rt, answered=True)
        if alive:  # alive but not answering: hung, or a start that died half-way
            _terminate(rt.pid)
        _runtime_path().unlink(missing_ok=True)

    if _port_in_use(port):
        raise _port_taken(port)
    log_path = _dir() / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", EMULATOR_MODULE, "-H", HOST, "-p", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=_dir(), env={
                **os.environ, "PYTHONUNBUFFERED": "1",
                # AWS's managed policies exist, as on AWS (the backup and monitoring roles
                # attach them)
                "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"})
    _children[proc.pid] = proc
    rt = _Runtime(pid=proc.pid, port=port, started_at=datetime.now(timezone.utc))
    _write_runtime(rt)  # before waiting, so a crashed start leaves a pid that stop() can find
    try:
        _wait_healthy(proc, port, log_path)
        rt = rt.model_copy(update={"boot_id": _write_boot_id(port)})
    except BaseException:
        _terminate(proc.pid)
        _runtime_path().unlink(missing_ok=True)
        raise
    _write_runtime(rt)
    return _status_of(rt)


def _wait_healthy(proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = _log_tail(log_path)
            if "address already in use" in tail.lower():
                raise _port_taken(port)
            raise TargetUnreachable(
                f"the sandbox server exited with code {proc.returncode} during start-up; "
                f"last lines of {log_path}:\n{tail}")
        if _ping(port, timeout=0.5):
            return
        time.sleep(0.1)
    raise TargetUnreachable(
        f"the sandbox server (pid {proc.pid}) did not answer on {endpoint(port)} within "
        f"{START_TIMEOUT_S:.0f} s; last lines of {log_path}:\n{_log_tail(log_path)}")


def _client(service: str, region: str, port: int) -> Any:
    """One session per region and process: building one loads botocore's data files (0.35 s),
    and a command asks for several clients (boot id, health); each client is made once (the
    service's model is parsed again for every new client). Sessions are not thread-safe, so
    clients are made under a lock; the clients themselves are."""
    key = (service, region, port)
    with _SESSION_LOCK:
        made = _CLIENTS.get(key)
        if made is None:
            made = _CLIENTS[key] = _session(region).client(
                service, endpoint_url=endpoint(port), config=CLIENT_CONFIG)
        return made


_SESSION_LOCK = threading.Lock()
_CLIENTS: dict[tuple[str, str, int], Any] = {}


def data_loader() -> Any:
    """botocore's loader (its parsed endpoint and service files) of the sessions above: a new
    session given this one parses none of them again. The loader only caches what it read."""
    with _SESSION_LOCK:
        return _session(BOOT_ID_REGION)._session.get_component("data_loader")


@functools.lru_cache(maxsize=None)
def _session(region: str) -> Any:
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                 aws_session_token="testing", region_name=region)


def _read_boot_id(port: int) -> str | None:
    ssm = _client("ssm", BOOT_ID_REGION, port)
    try:
        return str(ssm.get_parameter(Name=BOOT_ID_PARAMETER)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        return None
    except (BotoCoreError, ClientError) as exc:
        raise _unreachable(port, exc) from None


def _write_boot_id(port: int) -> str:
    value = str(uuid.uuid4())
    ssm = _client("ssm", BOOT_ID_REGION, port)
    try:
        ssm.put_parameter(Name=BOOT_ID_PARAMETER, Value=value, Type="String", Overwrite=True)
    except (BotoCoreError, ClientError) as exc:
        raise _unreachable(port, exc) from None
    return value


def _status_of(rt: _Runtime | None, answered: bool = False) -> SandboxStatus:
    """`answered`: the caller has just pinged it, with an answer; not asked again."""
    if rt is None:
        port = sandbox_port()
        return SandboxStatus(running=False, endpoint=endpoint(port), port=port)
    running = answered or _ping(rt.port)
    bid: str | None = None
    if running:
        with contextlib.suppress(TapError):
            bid = _read_boot_id(rt.port)
    return SandboxStatus(
        running=running, endpoint=endpoint(rt.port), port=rt.port, pid=rt.pid,
        started_at=rt.started_at,
        uptime_s=max(0.0, time.time() - rt.started_at.timestamp()) if running else None,
        boot_id=bid)


def _ping(port: int, timeout: float = 1.0) -> bool:
    """True when moto (not just anything) answers on the port."""
    try:
        with _HTTP.open(endpoint(port) + _HEALTH_PATH, timeout=timeout) as response:
            return isinstance(json.loads(response.read()), dict)
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _port_in_use(port: int) -> bool:
    # SO_REUSEADDR: only a listening socket blocks the bind, not connections in TIME_WAIT.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def _port_taken(port: int) -> TargetUnreachable:
    return TargetUnreachable(
        f"port {port} on {HOST} is already in use by another program, not tap's sandbox",
        hint=f"stop that program, or choose a free port with {PORT_ENV}=<port>")


def _unreachable(port: int, exc: Exception) -> TargetUnreachable:
    return TargetUnreachable(f"the sandbox at {endpoint(port)} did not answer: {exc}",
                             hint="check `tap sandbox status`; `tap sandbox start` starts it")


def _pid_alive(pid: int) -> bool:
    """Alive and still tap's emulator (a pid reused by another program counts as dead). Our own
    children are asked through Popen, which also reaps them."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    return processes.is_emulator(pid)


def _terminate(pid: int) -> None:
    processes.terminate(pid, _pid_alive)
    _children.pop(pid, None)


def _dir() -> Path:
    path = tap_home() / "sandbox"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _runtime_path() -> Path:
    return _dir() / "server.json"


def _read_runtime() -> _Runtime | None:
    return runtime_file.read(_runtime_path())


def _read_runtime_or_adopt() -> _Runtime | None:
    """For start/reset: a damaged runtime file is replaced by one describing the emulator this
    home started, if one runs, else dropped."""
    try:
        return _read_runtime()
    except StateCorrupt:
        path = _runtime_path()
        for pid, port in _find_emulators():
            if _ping(port):
                bid = None
                with contextlib.suppress(TapError):
                    bid = _read_boot_id(port)
                rt = _Runtime(pid=pid, port=port, started_at=processes.started_at(pid),
                              boot_id=bid)
                _write_runtime(rt)
                return rt
        path.unlink(missing_ok=True)
        return None


def _find_emulators() -> list[tuple[int, int]]:
    """(pid, port) of every live emulator this TAP_HOME started (see processes.find_emulators)."""
    return [(pid, port) for pid, port in processes.find_emulators(str(_dir().resolve()))
            if _pid_alive(pid)]


def _write_runtime(rt: _Runtime) -> None:
    runtime_file.write(_runtime_path(), rt)


def _discard_stale(rt: _Runtime) -> None:
    """Remove a runtime file naming a dead pid, unless a start() holds the lock right now."""
    with _locked(timeout=0) as acquired:
        try:
            current = _read_runtime()
        except StateCorrupt:
            return
        if acquired and current is not None and current.pid == rt.pid:
            _runtime_path().unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(timeout: float = LOCK_TIMEOUT_S) -> Iterator[bool]:
    """sandbox/server.lock held; with timeout=0 yields False when another process holds it."""
    with contextlib.ExitStack() as stack:
        try:
            acquired = stack.enter_context(held(_dir() / "server.lock", timeout))
        except Timeout:
            raise TargetUnreachable(f"another tap process has held the sandbox lock for "
                                    f"{timeout:.0f} s", hint=f"wait for it, or check "
                                    f"{_dir() / 'server.lock'}") from None
        yield acquired


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(log is empty)"
