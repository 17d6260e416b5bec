"""The sandbox engine's per-stack state: resources, outputs, history and the operation lock.

State is rewritten atomically (temp file + rename) after every step, so a process killed at any
point leaves a file that describes exactly what was done, plus 'pending' markers for the one
step in flight; the file it replaces stays as `state.json.bak`. Secret inputs are stored as
digests, never as plaintext.

tap's own files are input like any other: a damaged state, history or lock-info file is a
`StateCorrupt` error naming the file, what is wrong and how to recover, never a bare traceback.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pulumi
from filelock import FileLock, Timeout

from ...errors import StackLocked, StateCorrupt
from ...project import tap_home
from ..base import HistoryEntry, is_secret

STATE_VERSION = 1       # bump when the file's shape changes; a newer file is refused on load
RECORD_STATUSES = ("created", "pending-create", "pending-delete")


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
        """Every field (fields added later included), resources as a list, plus the version."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["resources"] = [asdict(r) for r in self.resources.values()]
        return {"version": STATE_VERSION, **data}

    @classmethod
    def from_json(cls, data: Any, file: Path | str = "state.json",
                  stack: str | None = None) -> "StackState":
        """Validated: the version, each field's type and each resource record, so a damaged
        file is a StateCorrupt naming the field, never a KeyError or TypeError later."""
        def bad(problem: str) -> StateCorrupt:
            return StateCorrupt(file, problem, hint=state_fix_hint(Path(file)))

        if not isinstance(data, dict):
            raise bad(f"holds a JSON {_json_type(data)}, not an object")
        version = data.get("version")
        if not _is_int(version) or version < 1:
            raise bad(f"field 'version' must be a positive integer, got {_short(version)}")
        if version > STATE_VERSION:
            raise StateCorrupt(
                file, f"was written by a newer tap (state version {version}; this tap reads "
                      f"version {STATE_VERSION} and older)",
                hint="upgrade tap to operate this stack; leave the file as it is")
        values = _fields_from(cls, data, bad, skip={"resources"})
        if stack is not None and values["stack"] != stack:
            raise bad(f"belongs to stack {_short(values['stack'])}, not {stack!r} (copied from "
                      "another stack's directory?)")
        state = cls(**values)
        raw_resources = data.get("resources", [])
        if not isinstance(raw_resources, list):
            raise bad(f"field 'resources' must be a list, got a JSON {_json_type(raw_resources)}")
        for i, raw in enumerate(raw_resources):
            where = f"resources[{i}]"
            if not isinstance(raw, dict):
                raise bad(f"{where} must be an object, got a JSON {_json_type(raw)}")
            rec = ResourceRecord(**_fields_from(ResourceRecord, raw, bad, prefix=where + "."))
            if rec.status not in RECORD_STATUSES:
                raise bad(f"{where}.status is {_short(rec.status)}; allowed: "
                          + ", ".join(RECORD_STATUSES))
            if rec.urn in state.resources:
                raise bad(f"{where}: resource {rec.urn} is recorded twice")
            state.resources[rec.urn] = rec
        return state


_JSON_KINDS = {"str": str, "bool": bool, "int": int, "float": (int, float), "dict": dict,
               "list": list, "None": type(None)}


def _short(value: Any) -> str:
    """A value from a damaged file, quoted and cut short: messages stay small."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fits(value: Any, annotation: Any) -> bool:
    """Does a JSON value fit a dataclass field's annotation ('str | None', 'dict[str, Any]')?
    Types tap does not name here (Any, classes) are not checked."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "Any")
    for part in text.split("|"):
        kind = _JSON_KINDS.get(part.strip().split("[")[0])
        if kind is None:
            return True
        if kind is int and _is_int(value):
            return True
        if kind is not int and isinstance(value, kind) and not (
                kind == (int, float) and isinstance(value, bool)):
            return True
    return False


def _fields_from(cls: type, raw: dict, bad, *, skip: set[str] = frozenset(),
                 prefix: str = "") -> dict:
    """The dataclass's fields from a JSON object, each present when required and of its type.
    Keys the class does not know are ignored (a field a later tap added within this version)."""
    values = {}
    for f in fields(cls):
        if f.name in skip:
            continue
        if f.name not in raw:
            if f.default is MISSING and f.default_factory is MISSING:
                raise bad(f"field '{prefix}{f.name}' is missing")
            continue
        value = raw[f.name]
        if not _fits(value, f.type):
            raise bad(f"field '{prefix}{f.name}' must be {f.type}, got a JSON "
                      f"{_json_type(value)}")
        values[f.name] = value
    return values


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
    """Reads and atomically writes one stack's state; thread-safe for concurrent steps."""

    def __init__(self, stack: str):
        self.dir = stack_dir(stack)
        self.path = self.dir / "state.json"
        self.history_path = self.dir / "history.jsonl"
        self._lock = threading.Lock()
        self.stack = stack
        self.reload()

    def reload(self) -> None:
        """Read the file again: a mutation does so once it holds the operation lock, since
        another operator may have changed the stack after this store was opened."""
        with self._lock:
            self.state = self._load(self.stack)
            self._disk_has_resources = bool(self.state.resources)

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
        """Atomic: a reader sees the old file or the new one. The old one stays as
        state.json.bak (a hard link, so keeping it costs no copy), unless it recorded no
        resources and a backup exists: a state written after a loss must not replace the
        last one that knew the stack."""
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            tag = f"{os.getpid()}.{threading.get_ident()}"
            tmp = self.path.with_suffix(f".tmp{tag}")
            tmp.write_text(json.dumps(self.state.to_json(), indent=1, sort_keys=True,
                                      default=str))
            bak = self.path.with_name(self.path.name + ".bak")
            if self._disk_has_resources or not bak.exists():
                bak_tmp = self.path.with_suffix(f".bak{tag}")
                try:
                    os.link(self.path, bak_tmp)
                    os.replace(bak_tmp, bak)
                except FileNotFoundError:
                    pass                  # first save: nothing to keep
                except OSError:           # no hard links here: the backup is best effort
                    bak_tmp.unlink(missing_ok=True)
            os.replace(tmp, self.path)
            self._disk_has_resources = bool(self.state.resources)

    def put(self, record: ResourceRecord) -> None:
        with self._lock:
            self.state.resources[record.urn] = record
        self.save()

    def drop(self, urn: str) -> None:
        with self._lock:
            self.state.resources.pop(urn, None)
        self.save()

    def change(self, put: list[ResourceRecord] = (), drop: list[str] = ()) -> None:
        """Several records in one write: a killed process leaves all of it or none (a
        replacement's old record moves aside in the same write that marks the new one)."""
        with self._lock:
            for urn in drop:
                self.state.resources.pop(urn, None)
            for record in put:
                self.state.resources[record.urn] = record
        self.save()

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
            if not isinstance(raw, dict):
                raise bad(f"a JSON {_json_type(raw)}, not an object")
            entries.append(HistoryEntry(**_fields_from(HistoryEntry, raw, bad)))
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


# A writer waits this long for the lock, so a reader's momentary probe never refuses it.
LOCK_WAIT_S = 1.0
_held: dict[str, "OperationLock"] = {}   # stacks this process is changing: its own reads pass


def _lock_paths(stack: str) -> tuple[Path, Path]:
    d = stack_dir(stack)
    return d / "operation.lock", d / "lock.json"


class OperationLock:
    """One mutation per stack at a time: an OS file lock (flock, through filelock) on
    `operation.lock`, held for the whole operation. The kernel drops it when the holder's
    process ends, however it ends, so a dead holder never blocks. `lock.json` beside it only
    names the holder (pid, operation, since) for the message a second operator gets; it
    decides nothing, so a stale or garbage one is simply overwritten."""

    def __init__(self, stack: str, operation: str):
        self.stack, self.operation = stack, operation
        self.path, self.info_path = _lock_paths(stack)
        self._lock = FileLock(self.path, timeout=LOCK_WAIT_S)

    def __enter__(self) -> "OperationLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise locked_error(self.stack) from None
        except OSError as exc:
            raise StateCorrupt(self.path, f"cannot be used as a lock file ({_reason(exc)})",
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
    path, _ = _lock_paths(stack)
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
    path, info_path = _lock_paths(stack)
    info = _holder_info(info_path)
    kernel_pid = _flock_holder(path)
    if info is not None and (kernel_pid is None or kernel_pid == info["pid"]):
        who = f"{info['operation']} by pid {info['pid']} since {info['since']}"
        operation = info["operation"]
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


def _holder_info(path: Path) -> dict | None:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(info, dict) or not _is_int(info.get("pid")) or not _alive(info["pid"]):
        return None
    return {"pid": info["pid"], "operation": str(info.get("operation", "?"))[:40],
            "since": str(info.get("since", "?"))[:40]}


def _flock_holder(path: Path) -> int | None:
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
