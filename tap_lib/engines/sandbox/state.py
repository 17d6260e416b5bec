"""The sandbox engine's per-stack state: resources, outputs, history and the operation lock.

State is rewritten atomically (temp file + rename) after every step, so a process killed at any
point leaves a file that describes exactly what was done, plus 'pending' markers for the one
step in flight; the file it replaces stays as `state.json.bak`. Secret inputs are stored as
digests, never as plaintext.

tap's own files are input like any other: a damaged state, history or lock-info file is a
`StateCorrupt` error naming the file, what is wrong and how to recover, never a bare traceback
(their shapes: state_models.py; the operation lock: locks.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pulumi

from ...errors import StateCorrupt
from ..base import HistoryEntry, is_secret

# Re-exported: the engine, lifecycle and tests know them as state.*.
from .locks import LOCK_WAIT_S, OperationLock, locked_error, reading_check  # noqa: F401
from .state_models import (  # noqa: F401
    RECORD_STATUSES,
    STATE_VERSION,
    HistoryLineModel,
    ResourceRecordModel,
    StateFileModel,
    check_version,
    json_type,
    short,
    stack_dir,
    validated,
)
from .state_writer import StateWriter


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
    # The replacement_trigger option as last applied (normalized like inputs); None: not set.
    replacement_trigger: Any = None


@dataclass
class StackState:
    stack: str
    region: str = ""
    boot_id: str | None = None
    resources: dict[str, ResourceRecord] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    origin: str = ""          # the environment file that created the stack (first deploy)
    protected: bool = False   # that file declared it protected: recorded, read back from here

    def to_json(self) -> dict:
        """Every field (fields added later included), resources as a list, plus the version.
        Shallow: it shares the records' dicts (serialize it, do not change it)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["resources"] = [{f.name: getattr(r, f.name) for f in fields(r)}
                             for r in self.resources.values()]
        return {"version": STATE_VERSION, **data}

    def to_text(self) -> str:
        """The file's text: one line per resource record. (An indented dump goes through json's
        pure-Python encoder, ~3x slower, and a deploy saves the state once per step.)"""
        data = self.to_json()
        records = ",\n".join(json.dumps(r, sort_keys=True, default=str)
                             for r in data.pop("resources"))
        head = json.dumps(data, sort_keys=True, default=str)
        return f'{head[:-1]}, "resources": [\n{records}\n]}}\n'

    @classmethod
    def from_json(cls, data: Any, file: Path | str = "state.json",
                  stack: str | None = None) -> StackState:
        """Validated: the version, each field's type and each resource record, so a damaged
        file is a StateCorrupt naming the field, never a KeyError or TypeError later."""
        def bad(problem: str) -> StateCorrupt:
            return StateCorrupt(file, problem, hint=state_fix_hint(Path(file)))

        if not isinstance(data, dict):
            raise bad(f"holds a JSON {json_type(data)}, not an object")
        check_version(data, file, bad)
        model = validated(StateFileModel, data, bad)
        if stack is not None and model.stack != stack:
            raise bad(f"belongs to stack {short(model.stack)}, not {stack!r} (copied from "
                      "another stack's directory?)")
        state = cls(**model.model_dump(exclude={"resources"}))
        for i, raw in enumerate(model.resources):
            where = f"resources[{i}]"
            rec = ResourceRecord(**validated(ResourceRecordModel, raw, bad, where + ".")
                                 .model_dump())
            if rec.urn in state.resources:
                raise bad(f"{where}: resource {rec.urn} is recorded twice")
            state.resources[rec.urn] = rec
        return state


def state_fix_hint(path: Path) -> str:
    """How to recover from a damaged state file: the backup if it is usable, else start over."""
    bak = path.with_name(path.name + ".bak")
    steps = []
    if _usable(bak):
        steps.append(f"restore the previous good state with `cp {bak} {path}`")
    steps.append("or start the whole sandbox empty with `tap sandbox reset`")
    return "; ".join(steps)


def _usable(path: Path) -> bool:
    try:
        StackState.from_json(json.loads(path.read_text(encoding="utf-8")), path)
    except (OSError, ValueError, StateCorrupt):
        return False
    return True


class StateStore:
    """Reads and atomically writes one stack's state; thread-safe for concurrent steps.

    A change returns once the file holds it; changes made while a save is being written
    go to disk together in the next one (group commit: state_writer.py)."""

    def __init__(self, stack: str):
        self.dir = stack_dir(stack)
        self.path = self.dir / "state.json"
        self.history_path = self.dir / "history.jsonl"
        self._lock = threading.Lock()
        self._writer = StateWriter(self.path, self._lock, lambda: self.state)
        self.stack = stack
        self.reload()

    @property
    def _disk_has_resources(self) -> bool:
        return self._writer.disk_has_resources

    def reload(self) -> None:
        """Read the file again: a mutation does so once it holds the operation lock, since
        another operator may have changed the stack after this store was opened."""
        with self._writer.write_lock, self._lock:
            self.state = self._load(self.stack)
            self._writer.disk_has_resources = bool(self.state.resources)

    def _load(self, stack: str) -> StackState:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return StackState(stack=stack)
        except (OSError, UnicodeDecodeError) as exc:
            raise StateCorrupt(self.path, f"cannot be read ({_reason(exc)})",
                               hint=state_fix_hint(self.path)) from None
        if not text.strip():
            raise StateCorrupt(self.path, "is empty", hint=state_fix_hint(self.path))
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise StateCorrupt(self.path, f"is not valid JSON ({_reason(exc)}); truncated or "
                                          "overwritten", hint=state_fix_hint(self.path)) from None
        return StackState.from_json(data, self.path, stack)

    def save(self) -> None:
        """Write the state as it is now (engine code sets fields, then saves). Atomic: a
        reader sees the old file or the new one. The old one stays as state.json.bak (a hard
        link, so keeping it costs no copy), unless it recorded no resources and a backup
        exists: a state written after a loss must not replace the last one that knew the
        stack."""
        with self._lock:
            gen = self._writer.stamp()
        self._writer.commit(gen)

    def put(self, record: ResourceRecord) -> None:
        self.change(put=[record])

    def drop(self, urn: str) -> None:
        self.change(drop=[urn])

    def change(self, put: list[ResourceRecord] = (), drop: list[str] = ()) -> None:
        """Several records in one write: a killed process leaves all of it or none (a
        replacement's old record moves aside in the same write that marks the new one).
        Returns once a save holding this change has replaced the file."""
        with self._lock:
            for urn in drop:
                self.state.resources.pop(urn, None)
            for record in put:
                self.state.resources[record.urn] = record
            gen = self._writer.stamp()
        self._writer.commit(gen)

    def append_history(self, entry: HistoryEntry) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(entry)) + "\n"
        with self.history_path.open("a+b") as fh:
            if fh.tell() > 0:             # a torn last line must not swallow this entry
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    line = "\n" + line
            fh.write(line.encode())

    def history(self) -> list[HistoryEntry]:
        path = self.history_path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise StateCorrupt(path, f"cannot be read ({_reason(exc)})",
                               hint=_history_hint(path)) from None
        entries = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue

            def bad(problem: str, n: int = n) -> StateCorrupt:
                return StateCorrupt(path, f"line {n}: {problem}", hint=_history_hint(path, n))

            try:
                raw = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise bad(f"not valid JSON ({_reason(exc)})") from None
            entries.append(HistoryEntry(**validated(HistoryLineModel, raw, bad).model_dump()))
        return entries


def _history_hint(path: Path, line: int | None = None) -> str:
    where = f"delete line {line} of it" if line else "delete it"
    return (f"the history only records past operations (the stack's state is separate and "
            f"unaffected): {where}, or move {path.name} aside to start a new one")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text at byte {exc.start}"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)


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
