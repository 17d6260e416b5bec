"""The sandbox engine's per-stack state: resources, outputs, history and the operation lock.

State is rewritten atomically (temp file + rename) after every step, so a process killed at any
point leaves a file that describes exactly what was done, plus 'pending' markers for the one
step in flight. Secret inputs are stored as digests, never as plaintext.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pulumi

from ...errors import StackLocked
from ...project import tap_home
from ..base import HistoryEntry, is_secret

STATE_VERSION = 1


def stack_dir(stack: str) -> Path:
    return tap_home() / "sandbox" / "stacks" / stack


@dataclass
class ResourceRecord:
    urn: str
    type: str
    name: str
    id: str | None
    inputs: dict            # normalized (secrets and assets as digests)
    outputs: dict           # redacted the same way
    dependencies: list[str]
    parent: str = ""
    status: str = "created"  # created | pending-create | pending-delete


@dataclass
class StackState:
    stack: str
    region: str = ""
    boot_id: str | None = None
    resources: dict[str, ResourceRecord] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"version": STATE_VERSION, "stack": self.stack, "region": self.region,
                "boot_id": self.boot_id, "outputs": self.outputs,
                "resources": [asdict(r) for r in self.resources.values()]}

    @classmethod
    def from_json(cls, data: dict) -> "StackState":
        state = cls(stack=data["stack"], region=data.get("region", ""),
                    boot_id=data.get("boot_id"), outputs=data.get("outputs", {}))
        for raw in data.get("resources", []):
            rec = ResourceRecord(**raw)
            state.resources[rec.urn] = rec
        return state


class StateStore:
    """Reads and atomically writes one stack's state; thread-safe for concurrent steps."""

    def __init__(self, stack: str):
        self.dir = stack_dir(stack)
        self.path = self.dir / "state.json"
        self.history_path = self.dir / "history.jsonl"
        self._lock = threading.Lock()
        self.state = self._load(stack)

    def _load(self, stack: str) -> StackState:
        if not self.path.exists():
            return StackState(stack=stack)
        return StackState.from_json(json.loads(self.path.read_text()))

    def save(self) -> None:
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(json.dumps(self.state.to_json(), indent=1, sort_keys=True,
                                      default=str))
            os.replace(tmp, self.path)

    def put(self, record: ResourceRecord) -> None:
        with self._lock:
            self.state.resources[record.urn] = record
        self.save()

    def drop(self, urn: str) -> None:
        with self._lock:
            self.state.resources.pop(urn, None)
        self.save()

    def append_history(self, entry: HistoryEntry) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.history_path.open("a") as fh:
            fh.write(json.dumps(asdict(entry)) + "\n")

    def history(self) -> list[HistoryEntry]:
        if not self.history_path.exists():
            return []
        return [HistoryEntry(**json.loads(line))
                for line in self.history_path.read_text().splitlines() if line.strip()]


def digest(value: Any) -> str:
    return "sha256:" + hashlib.sha256(value if isinstance(value, bytes)
                                      else str(value).encode()).hexdigest()[:32]


def normalize(value: Any) -> Any:
    """A JSON-safe, comparable form of program inputs. Secrets become digests (diffable, not
    readable); assets become content digests; 3.0 becomes 3."""
    if is_secret(value):
        return {"secret": digest(json.dumps(normalize_reveal(value["value"]), sort_keys=True))}
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, pulumi.AssetArchive):
        return {"archive": digest(json.dumps({k: normalize(v) for k, v in
                                              sorted(value.assets.items())}, sort_keys=True))}
    if isinstance(value, pulumi.FileAsset):
        return {"file": digest(Path(value.path).read_bytes())}
    if isinstance(value, pulumi.StringAsset):
        return {"file": digest(value.text)}
    return value


def normalize_reveal(value: Any) -> Any:
    """Plain values for handlers: secrets unwrapped, numbers tidied; assets left as objects."""
    if is_secret(value):
        return normalize_reveal(value["value"])
    if isinstance(value, dict):
        return {k: normalize_reveal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalize_reveal(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def keep_secret(outputs: Any, inputs: Any) -> Any:
    """Handlers echo revealed inputs into their outputs; put the secret wrapping back wherever
    the input was secret, so that state and the program see a secret, not its value."""
    if is_secret(inputs):
        return inputs
    if isinstance(outputs, dict) and isinstance(inputs, dict):
        return {k: keep_secret(v, inputs[k]) if k in inputs else v for k, v in outputs.items()}
    return outputs


def changed_keys(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


class OperationLock:
    """One operation per stack at a time. The lock file names its holder; a holder whose
    process is gone is treated as stale and replaced."""

    def __init__(self, stack: str, operation: str):
        self.path = stack_dir(stack) / "lock.json"
        self.stack, self.operation = stack, operation

    def __enter__(self) -> "OperationLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        info = {"pid": os.getpid(), "operation": self.operation,
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info))
        try:
            for _ in range(2):
                try:
                    os.link(tmp, self.path)  # atomic: the lock appears with its holder inside
                    return self
                except FileExistsError:
                    holder = self._holder()
                    if holder is None or _alive(holder.get("pid", -1)):
                        holder = holder or {}
                        raise StackLocked(
                            f"stack {self.stack} is locked: {holder.get('operation', '?')} by "
                            f"pid {holder.get('pid', '?')} since {holder.get('since', '?')}",
                            hint="wait for it to finish; a lock whose process is gone is "
                                 "cleared automatically") from None
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
        finally:
            tmp.unlink(missing_ok=True)
        raise StackLocked(f"could not take the lock on stack {self.stack}")

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def __exit__(self, *exc) -> None:
        holder = self._holder()
        if holder and holder.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed child not yet reaped) holds nothing.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return True
