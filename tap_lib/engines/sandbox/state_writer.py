"""Group commit for a stack's state file: many concurrent changes, few whole-file writes.

A change to the state must be on disk before the call that made it returns: the resolver records
a resource it created and relies on that record surviving a kill, or the resource is orphaned.
Rewriting the whole file once per change made a 32-thread deploy O(n²) in serialization and
queued every thread on one lock (issue #23). Here each change takes a generation number under
the state lock; whichever caller gets the writer lock writes the newest state, and the callers
queued behind it find their number already saved and return without writing.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


class StateWriter:
    """Writes `state()` to `path`; `stamp` numbers a change, `commit` waits until it is saved.

    Lock order: the writer lock, then the state lock (held only while serializing, so a
    change is never half-written and steps are not blocked on the disk)."""

    def __init__(self, path: Path, state_lock: threading.Lock, state: Callable[[], Any]):
        self.path = path
        self._state_lock = state_lock
        self._state = state
        self.write_lock = threading.Lock()
        self._gen = 0                                  # newest change; under the state lock
        self._saved = 0                                # newest change on disk
        self._failed: tuple[int, Exception] | None = None   # newest failed save and its error
        # Whether the file on disk records resources (the backup rule in StateStore.save).
        self.disk_has_resources = False

    def stamp(self) -> int:
        """The number of the change just made: call with the state lock held."""
        self._gen += 1
        return self._gen

    def commit(self, gen: int) -> None:
        """Return once a save holding change `gen` has replaced the file. A save that held it
        and failed raises its error here too: the caller must not believe the change saved
        (the state in memory keeps it, so the next successful save writes it)."""
        with self.write_lock:
            if self._saved >= gen:
                return
            if self._failed is not None and self._failed[0] >= gen:
                raise self._failed[1]
            upto = gen
            try:
                with self._state_lock:
                    upto, state = self._gen, self._state()
                    text = state.to_text()
                    has_resources = bool(state.resources)
                self._write(text)
            except Exception as exc:       # an interrupt is not a failed save: waiters retry
                self._failed = (upto, exc)
                raise
            self._saved = upto
            self.disk_has_resources = has_resources

    def _write(self, text: str) -> None:
        """Atomic: a reader sees the old file or the new one; the old one becomes the backup
        (a hard link, no copy) unless it recorded no resources and a backup exists."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tag = f"{os.getpid()}.{threading.get_ident()}"
        tmp = self.path.with_suffix(f".tmp{tag}")
        try:
            tmp.write_text(text, encoding="utf-8")
            bak = self.path.with_name(self.path.name + ".bak")
            if self.disk_has_resources or not bak.exists():
                bak_tmp = self.path.with_suffix(f".bak{tag}")
                try:
                    os.link(self.path, bak_tmp)
                    os.replace(bak_tmp, bak)
                except FileNotFoundError:
                    pass                  # first save: nothing to keep
                except OSError:           # no hard links here: the backup is best effort
                    bak_tmp.unlink(missing_ok=True)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)   # a failed write leaves no stray temp file
            raise
