"""The audit trail: one append-only, hash-chained line per mutation and per stored record.

Why here, below the operations: every deploy, destroy and refresh passes through
`engines.base.Engine` whichever path started it (the CLI, `tap run`, a notebook in JupyterLab,
a library call), and the engine writes its entries through `recorded()`: a "started" entry
*before* the first change (when it cannot be written, nothing runs: RecordsUnwritable), then
the outcome. Records (executed and saved notebooks) are chained as they are stored
(ops/runbook.store_record: operation "record").

The trail is ``<records root>/trail.jsonl``. An ``s3://`` root keeps it locally, beside its
index, under ``tap_home()/audit/`` (S3 has no append), and locks a copy of every line in the
bucket as it is appended, seals too (object_lock.py; records/locked.py compares them): a line
whose copy cannot be written is taken back, so a mutation whose "started" entry is not locked
never starts. Each line is one entry::

    {"seq": n, "time": UTC, "operation": "deploy|destroy|refresh|approve|record|...",
     "result": "started|succeeded|failed|refused", "error": ErrorClass | null,
     "operator", "stack", "target", "env_file", "commit", "dirty", "plan_hash",
     "summary": {...}, "notes": [...], "record": path | null, "record_sha256": hex | null,
     "started": hash of its "started" entry (outcomes of recorded()),
     "prev": hash of entry n-1 (64 zeros for the first), "hash": SHA-256 of this entry}

`hash` is the SHA-256 of the entry's canonical JSON (sorted keys, no whitespace, UTF-8) without
`hash`. A record under the root is named relative to it (``dev/<stamp>-deploy.ipynb``), so a
byte-identical copy of the root verifies where it lands. An edit, a deletion, an insertion or a
reordering breaks the chain (`tap audit verify`, tap_lib/records/verify.py).

Rewriting the whole chain needs no key; a seal does. With ``TAP_SIGNING_KEY`` set, each entry
tap appends is sealed (`seal_entries`): a signature over ``tap-seal\\n{first}\\n{seq}\\n{hash}\\n``
kept in ``seals.jsonl`` beside the trail. A seal vouches for entries first..seq - its own entry,
so a forged entry before it stays unsealed - and pins entry seq's hash, and with it every entry
before it. `tap audit seal` vouches for the verified chain up to its head; records/seals.py
judges every seal against params/approvers.

Other mutations (`tap approve`) append with::

    trail.append(operation="approve", stack="TapStackprod", target="aws",
                 env_file="params/prod.yaml", plan_hash=..., record=<plan record>,
                 notes=["approved by bob, authored by alice"])

and `with trail.context(plan_hash=..., notes=[...]):` gives every entry appended inside it
(e.g. by the engine) those fields. Entries never hold secrets: error messages are not kept,
only their class.
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import functools
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from . import signing
from .errors import RecordsUnwritable, TapError, UsageError
from .object_lock import entry_url, put_line, seal_url
from .project import outputs_dir, tap_home
# Who, which record, which commit (re-exported: callers have long asked the trail).
from .provenance import (MAX_OPERATOR_CHARS, RECORD_ENV, SESSION_ENV,  # noqa: F401
                         check_operator, current_operator, current_record, git_state)


class Mutating(Protocol):
    """What the trail reads of an engine (engines/base.Engine), without importing it."""

    stack: str
    name: str
    settings: Any


TRAIL_NAME = "trail.jsonl"
SEALS_NAME = "seals.jsonl"
GENESIS = "0" * 64
OPERATIONS = ("deploy", "destroy", "refresh", "approve", "record", "verify", "reset")
RESULTS = ("started", "succeeded", "failed", "refused")

# Called with the operation's name after each engine mutation's outcome entry. Layers above
# attach their own (a JupyterLab session kernel logs the entry for the notebook's next save:
# lab.attach), so neither the trail nor the engine below it imports them.
AFTER_MUTATION: list[Callable[[str], None]] = []

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("tap_trail",
                                                                          default={})


# -------------------------------------------------------------------------- where things live

def records_root(output_dir: str | None = None) -> str:
    """The records' root: a local directory path or an ``s3://`` URL (no trailing slash);
    RecordsUnwritable when it names a file."""
    raw = output_dir or os.environ.get("TAP_OUTPUTS", "")
    if is_remote(raw):
        return raw.rstrip("/")
    root = Path(output_dir).resolve() if output_dir else outputs_dir()
    if root.exists() and not root.is_dir():
        raise unwritable(root, os.strerror(errno.ENOTDIR))
    return str(root)


def is_remote(path: str) -> bool:
    return str(path).startswith("s3://")


def local_dir(root: str) -> Path:
    """Where the trail and the index of `root` live: the root itself, or under tap_home() for
    S3 (no appends there)."""
    if is_remote(root):
        return tap_home() / "audit" / root.removeprefix("s3://")
    return Path(root)


def trail_path(root: str | None = None) -> Path:
    return local_dir(root or records_root()) / TRAIL_NAME


def relative_record(record: str | None, root: str) -> str | None:
    """How an entry (or an index row) names a record: relative to the records root when it lies
    under it, so a copy of the root still names it; anything else absolute, as it was."""
    if not record:
        return record
    if is_remote(record):
        return record[len(root) + 1:] if record.startswith(root + "/") else record
    path = os.path.abspath(record)
    if not is_remote(root) and path.startswith(root.rstrip("/") + "/"):
        return Path(path).relative_to(root).as_posix()
    return path


def record_location(record: Any, root: str) -> Any:
    """Where a record an entry names is now: a relative name under `root`; an absolute path or
    URL (older entries, files outside the root) as it is."""
    if not isinstance(record, str) or not record or is_remote(record) or os.path.isabs(record):
        return record
    if is_remote(root):
        return f"{root}/{record}"
    if _plain(record) and _normal_root(root):  # Path's answer without building one: verify
        return f"{root}/{record}"               # asks this twice per record (~2 s per 10,000)
    return str(Path(root) / record)


def _plain(name: str) -> bool:
    """A relative name Path would keep as it is (no empty or `.` parts to drop)."""
    return not (name == "." or name.startswith("./") or name.endswith(("/", "/."))
                or "//" in name or "/./" in name)


@functools.lru_cache(maxsize=8)
def _normal_root(root: str) -> bool:
    """`root` is as str(Path(root)) writes it, so f"{root}/{name}" is Path's answer."""
    return root != "/" and str(Path(root)) == root


def unwritable(path: object, reason: str, outcome: str = "nothing was changed",
               kind: type[RecordsUnwritable] = RecordsUnwritable) -> RecordsUnwritable:
    return kind(path, reason, variable=os.environ.get("TAP_OUTPUTS") or None, outcome=outcome)


@contextlib.contextmanager
def writing(path: object, outcome: str = "nothing was changed") -> Iterator[None]:
    """Any OSError while writing the records (a file where a folder should be, ENOSPC, EACCES)
    becomes RecordsUnwritable naming the path, TAP_OUTPUTS and the system's reason."""
    try:
        yield
    except OSError as exc:
        raise unwritable(path, exc.strerror or type(exc).__name__, outcome) from exc


def append_bytes(path: Path, data: bytes, sync: bool = True) -> None:
    """Append `data` as whole lines (durably with `sync`), or not at all: a failed write or
    fsync (a full disk) is cut back off, so no half line stays. A torn last line (a writer
    killed mid-append) is left alone on its own line."""
    with writing(path):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if sync:
                    os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)


def append_line(path: Path, line: bytes, copy_url: str | None = None) -> None:
    """Append one line durably; with `copy_url` (an s3:// root), also lock a copy of it there
    (object_lock.py), or take the local line back: the line is kept in both or in neither.
    The caller holds the trail's lock."""
    try:
        size: int | None = os.stat(path).st_size
    except (FileNotFoundError, NotADirectoryError):
        size = None
    append_bytes(path, line + b"\n")
    if copy_url is None:
        return
    try:
        put_line(copy_url, line)
    except BaseException:
        with contextlib.suppress(OSError):
            if size is None:
                os.unlink(path)
            else:
                os.truncate(path, size)
        raise


# -------------------------------------------------------------------------------- the chain

def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 of the entry's canonical JSON without its own `hash`."""
    if "hash" not in entry:
        return hashlib.sha256(canonical(entry)).hexdigest()
    body = dict(entry)
    del body["hash"]
    return hashlib.sha256(canonical(body)).hexdigest()


HASH_SUFFIX = len(b',"hash":"') + 64 + len(b'"}')


def line_hash_ok(line: bytes, stored: Any) -> bool:
    """Whether a trail line (as append writes it) hashes to `stored`, from its bytes alone;
    False for a line in any other layout (then compare entry_hash of the parsed entry)."""
    tail = line[-HASH_SUFFIX:]
    if not (tail.startswith(b',"hash":"') and tail.endswith(b'"}')):
        return False
    return hashlib.sha256(line[:-HASH_SUFFIX] + b"}").hexdigest() == stored


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Head:
    seq: int          # seq of the last entry; -1 for an empty trail
    hash: str         # its hash; GENESIS for an empty trail
    time: str = ""


def head(root: str | None = None) -> Head:
    """The last entry (read from the file's tail: cheap whatever the trail's length)."""
    path = trail_path(root)
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            chunk = 1 << 16
            while True:
                start = max(0, size - chunk)
                fh.seek(start)
                lines = fh.read(size - start).splitlines()
                for line in reversed(lines[1:] if start else lines):
                    with contextlib.suppress(ValueError, AttributeError, KeyError):
                        entry = json.loads(line)
                        return Head(int(entry["seq"]), str(entry["hash"]),
                                    str(entry.get("time", "")))
                if not start:
                    return Head(-1, GENESIS)
                chunk *= 4
    except (FileNotFoundError, NotADirectoryError):
        return Head(-1, GENESIS)


_locks: dict[Path, Any] = {}


@contextlib.contextmanager
def locked(root: str | None = None) -> Iterator[Path]:
    """Hold the trail's lock (appenders in every process take turns); yields the trail's path.
    Reentrant within a process, so a record writer can read the head, write, then append."""
    from filelock import FileLock

    path = trail_path(root)
    with writing(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = _locks.setdefault(path, FileLock(str(path.with_name(".trail.lock"))))
        lock.acquire()
    try:
        yield path
    finally:
        lock.release()


@contextlib.contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Entries appended inside the block carry `fields` (e.g. plan_hash, notes) unless the
    appender gives its own; notes add up."""
    outer = _context.get()
    merged = {**outer, **fields}
    if "notes" in outer and "notes" in fields:
        merged["notes"] = [*outer["notes"], *fields["notes"]]
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def append(operation: str, *, stack: str, target: str | None = None,
           env_file: str | None = None, result: str = "succeeded", error: str | None = None,
           summary: dict[str, Any] | None = None, notes: list[str] | tuple[str, ...] = (),
           record: str | None = None, record_sha256: str | None = None,
           plan_hash: str | None = None, operator: str | None = None,
           extra: dict[str, Any] | None = None, root: str | None = None,
           seal: bool | None = None) -> dict[str, Any]:
    """Append one entry, chained to the current head; returns it as written (with its hash).
    Sealed when `seal`, by default when TAP_SIGNING_KEY is set. With an s3:// root the entry is
    also locked in the bucket (object_lock.py). RecordsUnwritable when the trail or its
    locked copy cannot be written (LockedCopyUnwritable); then the trail is as it was."""
    if operation not in OPERATIONS:
        raise ValueError(f"operation {operation!r}; allowed: {', '.join(OPERATIONS)}")
    if result not in RESULTS:
        raise ValueError(f"result {result!r}; allowed: {', '.join(RESULTS)}")
    root = root or records_root()
    ctx = _context.get()
    commit, dirty = git_state()
    entry: dict[str, Any] = {
        "time": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        "operation": operation, "result": result, "error": error,
        "operator": check_operator(operator, "operator") if operator else current_operator(),
        "stack": stack, "target": target, "env_file": env_file, "commit": commit,
        "dirty": dirty, "plan_hash": plan_hash or ctx.get("plan_hash"),
        "summary": dict(summary or {}), "notes": [*ctx.get("notes", ()), *notes],
        "record": relative_record(record if record is not None else current_record(), root),
        "record_sha256": record_sha256, **(extra or {})}
    with locked(root) as path:
        last = head(root)
        entry["seq"], entry["prev"] = last.seq + 1, last.hash
        body = canonical(entry)
        entry["hash"] = hashlib.sha256(body).hexdigest()
        # the line is the canonical body with the hash as its last member: verify can hash
        # the line's own bytes instead of encoding the entry again (records/verify.py)
        append_line(path, body[:-1] + b',"hash":"' + entry["hash"].encode() + b'"}',
                    _entry_copy(root, entry))
    if signing.has_signing_key() if seal is None else seal:
        seal_entries(entry, root)
    return entry


def _entry_copy(root: str, entry: dict[str, Any]) -> str | None:
    if not is_remote(root):
        return None
    return entry_url(root, entry["seq"], entry["hash"])


def seal_message(first: int, seq: int, hash_: str) -> bytes:
    """What a seal signs: entries first..seq, the last of them with this hash."""
    return f"tap-seal\n{first}\n{seq}\n{hash_}\n".encode()


def seal_entries(last: dict[str, Any], root: str | None = None,
                 first: int | None = None) -> dict[str, Any]:
    """Sign entries `first` (default: `last` alone) to `last` with TAP_SIGNING_KEY and keep the
    seal in seals.jsonl: ``{"first", "seq", "hash", "time", "signature"}``; with an s3:// root
    also locked in the bucket, or not kept at all (LockedCopyUnwritable)."""
    root = root or records_root()
    seq = int(last["seq"])
    start = seq if first is None else first
    seal = {"first": start, "seq": seq, "hash": last["hash"],
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "signature": signing.sign(seal_message(start, seq, last["hash"]))}
    line = canonical(seal)
    copy = None
    if is_remote(root):
        copy = seal_url(root, seq, line)
    with locked(root) as path:
        append_line(path.with_name(SEALS_NAME), line, copy)
    return seal


@contextlib.contextmanager
def recorded(engine: Mutating, operation: str) -> Iterator[dict[str, Any]]:
    """Wrap one engine mutation, write-ahead: a "started" entry (sealed when a key is set)
    before the body runs - if it cannot be written or sealed, the body never runs - then its
    outcome: succeeded (with the Result's summary and notes), refused (a guard said no:
    ProtectedStack, UsageError) or failed (anything else); the exception goes on. The caller
    puts the Result in the yielded dict as "result"."""
    common: dict[str, Any] = dict(stack=engine.stack, target=engine.name,
                                  env_file=engine.settings.source, root=records_root())
    begun = append(operation, result="started", seal=False, **common)
    common["extra"] = {"started": begun["hash"]}
    outcome: dict[str, Any] = {}
    try:
        if signing.has_signing_key():
            seal_entries(begun, common["root"])
    except TapError as exc:  # a key that cannot sign: refused before any change
        _finish(operation, begun, common, exc, result="refused", seal=False)
        raise
    try:
        yield outcome
    except UsageError as exc:  # ProtectedStack is a UsageError: a guard refused
        _finish(operation, begun, common, exc, result="refused")
        raise
    except BaseException as exc:
        _finish(operation, begun, common, exc, result="failed")
        raise
    res = outcome.get("result")
    failed = getattr(res, "status", "succeeded") != "succeeded"
    _finish(operation, begun, common, None, result="failed" if failed else "succeeded",
            summary=getattr(res, "summary", None), notes=list(getattr(res, "notes", ()) or ()))


def _finish(operation: str, begun: dict[str, Any], common: dict[str, Any],
            exc: BaseException | None, *, seal: bool = True, **fields: Any) -> None:
    """The outcome entry of a recorded mutation, sealed when a key is set. When even that
    cannot be written, say what happened and what the trail holds of it."""
    happened = f"the {operation} of {common['stack']} {fields['result']}" + (
        f" ({type(exc).__name__})" if exc else "")
    try:
        entry = append(operation, error=type(exc).__name__ if exc else None, seal=False,
                       **common, **fields)
    except RecordsUnwritable as failed:  # `tap audit verify` shows it as interrupted
        raise unwritable(failed.path, failed.reason, f"{happened}, but the trail has only its "
                         f"start (entry #{begun['seq']})", type(failed)) from exc
    if seal and signing.has_signing_key():
        try:
            seal_entries(entry, common["root"])
        except RecordsUnwritable as failed:
            raise unwritable(failed.path, failed.reason, f"{happened}; its outcome is entry "
                             f"#{entry['seq']}, not sealed (`tap audit seal`)",
                             type(failed)) from exc
    _after_mutation(operation)


def _after_mutation(operation: str) -> None:
    """Run AFTER_MUTATION's hooks. Never fails the mutation: it happened and its entry is
    written; a hook's problem is said on stderr."""
    for hook in list(AFTER_MUTATION):
        try:
            hook(operation)
        except Exception as exc:  # noqa: BLE001
            print(f"tap: after {operation}: {getattr(hook, '__qualname__', hook)} failed: "
                  f"{type(exc).__name__}", file=sys.stderr)


def read(root: str | None = None) -> list[dict[str, Any]]:
    """Every readable entry as written, in file order (an unreadable line is skipped; verify
    names it). A record is named as stored: `record_location` says where it is."""
    entries = []
    try:
        with open(trail_path(root), encoding="utf-8") as fh:
            for line in fh:
                with contextlib.suppress(ValueError):
                    entries.append(json.loads(line))
    except FileNotFoundError:
        pass
    return entries
