"""The emulator's processes, through psutil: is a pid alive, is it tap's emulator, which
emulators did this home start, since when, and stopping one.

One liveness rule for the whole package (the lock holder in locks.py uses it too): a process
exists until it is gone or a zombie; one tap may not inspect or signal (another user's) still
exists. Whether a live process is *tap's emulator* is a separate question (`is_emulator`).
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import datetime, timezone

import psutil

from ...errors import TapError

EMULATOR_MODULE = "tap_lib.engines.sandbox.emulator"  # moto.server, see emulator.py
STOP_TIMEOUT_S = 5.0


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a killed child not yet reaped holds no
    lock and serves no port). AccessDenied means it exists: we may not look, it is still there."""
    if pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:      # ZombieProcess included
        return False
    except psutil.AccessDenied:
        return True


def is_emulator(pid: int) -> bool:
    """Alive and running tap's emulator module. A process we may not inspect is not ours: tap
    starts its emulator as the same user, so it can always read its own command line."""
    if not pid_alive(pid):
        return False
    try:
        return EMULATOR_MODULE in psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def find_emulators(home: str) -> list[tuple[int, int]]:
    """(pid, port) of every live emulator started with `home` (a sandbox directory) as its
    working directory and tap's emulator module on its command line."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        argv, cwd = proc.info.get("cmdline") or [], proc.info.get("cwd")
        if EMULATOR_MODULE not in argv or cwd != home:
            continue
        try:
            port = int(argv[argv.index("-p") + 1])
        except (ValueError, IndexError):
            continue
        if pid_alive(proc.pid):
            found.append((proc.pid, port))
    return found


def started_at(pid: int) -> datetime:
    """When a process started; now if it cannot be told (gone, or not ours to look at)."""
    try:
        return datetime.fromtimestamp(psutil.Process(pid).create_time(), timezone.utc)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return datetime.now(timezone.utc)


def terminate(pid: int, alive: Callable[[int], bool] = is_emulator) -> None:
    """SIGTERM, then SIGKILL, to the process group the emulator leads (started with
    start_new_session, so pgid == pid), or the process alone; waits until `alive` says no."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.05)
        if not alive(pid):
            return
    raise TapError(f"the sandbox server (pid {pid}) survived SIGKILL")
