"""One mutation per stack at a time: the operation lock and the read check that honours it.

The lock is an OS file lock taken through filelock, which the kernel drops when its holder's
process ends however it ends, so a dead holder never blocks. filelock cannot say *who* holds a
lock, and neither can psutil (an open file is not a held lock), so the one question of who holds
it is asked of the kernel's lock table (`flock_holder`, Linux /proc/locks) and checked against
the note the holder leaves in `lock.json`.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout
from pydantic import ValidationError

from ...errors import StackLocked, StateCorrupt
from .processes import pid_alive
from .state_models import LockInfoModel, stack_dir

# A writer waits this long for the lock, so a reader's momentary probe never refuses it.
LOCK_WAIT_S = 1.0
_held: dict[str, OperationLock] = {}   # stacks this process is changing: its own reads pass


@contextlib.contextmanager
def held(path: Path, timeout: float) -> Iterator[bool]:
    """An exclusive OS lock on `path` for the block (the one lock style of the sandbox: the
    emulator's start/stop lock uses it, the stack lock is the same filelock). With timeout 0
    it yields False instead of waiting; a longer wait that runs out raises filelock.Timeout."""
    lock = FileLock(path, timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        if timeout != 0:
            raise
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def lock_paths(stack: str) -> tuple[Path, Path]:
    d = stack_dir(stack)
    return d / "operation.lock", d / "lock.json"


class OperationLock:
    """Held for the whole operation on `operation.lock`. `lock.json` beside it only names the
    holder (pid, operation, since) for the message a second operator gets; it decides nothing,
    so a stale or garbage one is simply overwritten."""

    def __init__(self, stack: str, operation: str):
        self.stack, self.operation = stack, operation
        self.path, self.info_path = lock_paths(stack)
        self._lock = FileLock(self.path, timeout=LOCK_WAIT_S)

    def __enter__(self) -> OperationLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise locked_error(self.stack) from None
        except OSError as exc:
            raise StateCorrupt(self.path, f"cannot be used as a lock file "
                                          f"({exc.strerror or type(exc).__name__})",
                               hint=f"remove {self.path}; tap creates it again") from None
        try:
            info = {"pid": os.getpid(), "operation": self.operation,
                    "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            tmp = self.info_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(info))
            os.replace(tmp, self.info_path)
        except OSError:
            pass  # the holder's name is only for messages; the OS lock is what guards
        _held[self.stack] = self
        return self

    def __exit__(self, *exc) -> None:
        _held.pop(self.stack, None)
        self.info_path.unlink(missing_ok=True)
        self._lock.release()


def reading_check(stack: str) -> None:
    """Refuse to read a stack another process is changing: its state is half-applied then.
    Probes the operation lock without waiting and lets it go at once; this process's own
    operation may read its stack."""
    if stack in _held:
        return
    path, _ = lock_paths(stack)
    if not path.exists():
        return
    probe = FileLock(path, timeout=0)
    try:
        probe.acquire()
    except Timeout:
        raise locked_error(stack, reading=True) from None
    except OSError:
        return  # an unusable lock file: no writer can hold it either
    probe.release()


def locked_error(stack: str, *, reading: bool = False) -> StackLocked:
    """Who holds the stack, from lock.json, checked against the kernel's lock table."""
    path, info_path = lock_paths(stack)
    info = holder_info(info_path)
    kernel_pid = flock_holder(path)
    if info is not None and (kernel_pid is None or kernel_pid == info.pid):
        who = f"{info.operation} by pid {info.pid} since {info.since}"
        operation = info.operation
    else:  # no info yet, stale info of an earlier holder, or garbage
        who = f"held by pid {kernel_pid}" if kernel_pid else "held by another process"
        who += f" ({info_path.name} does not name it)"
        operation = "operation"
    if reading:
        return StackLocked(
            f"stack {stack} is locked: {who}; it is mid-{operation}, so what tap would "
            "show now is half-applied",
            hint=f"wait for the {operation} to finish, then retry")
    return StackLocked(
        f"stack {stack} is locked: {who}",
        hint="wait for it to finish; the lock is held by that process and ends with it, even "
             "if it is killed, so it never needs removing by hand")


def holder_info(path: Path) -> LockInfoModel | None:
    """The holder's note, if it is readable and names a live process; texts cut short."""
    try:
        info = LockInfoModel.model_validate_json(path.read_bytes())
    except (OSError, ValidationError, ValueError, RecursionError):
        return None
    if not pid_alive(info.pid):
        return None
    return info.model_copy(update={"operation": str(info.operation)[:40],
                                   "since": str(info.since)[:40]})


def flock_holder(path: Path) -> int | None:
    """The pid holding a flock on the file, from /proc/locks (Linux); None if unknown."""
    try:
        inode = path.stat().st_ino
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    for line in table.splitlines():
        parts = line.split()
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
            continue
        try:
            if int(parts[5].rsplit(":", 1)[1]) == inode:
                return int(parts[4])
        except (IndexError, ValueError):
            continue
    return None
