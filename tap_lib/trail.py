"""The audit trail: one append-only, hash-chained line per mutation and per stored record.

Why here, below the operations: every deploy, destroy and refresh passes through
`engines.base.Engine` whichever path started it (the CLI, `tap run`, a notebook in JupyterLab,
a library call), and the engine appends its entry through `recorded()`. Records (executed and
saved notebooks) are chained as they are stored (ops/runbook.store_record: operation "record").

The trail is ``<records root>/trail.jsonl`` (an ``s3://`` root keeps it locally, beside its index,
under ``tap_home()/audit/``). Each line is one entry::

    {"seq": n, "time": UTC, "operation": "deploy|destroy|refresh|approve|record",
     "result": "succeeded|failed|refused", "error": ErrorClass | null,
     "operator", "stack", "target", "env_file", "commit", "dirty", "plan_hash",
     "summary": {...}, "notes": [...], "record": path | null, "record_sha256": hex | null,
     "prev": hash of entry n-1 (64 zeros for the first), "hash": SHA-256 of this entry}

`hash` is the SHA-256 of the entry's canonical JSON (sorted keys, no whitespace, UTF-8) without
`hash`. An edit, a deletion, an insertion or a reordering breaks the chain (`tap audit verify`,
ops/audit.verify); the head hash `tap audit` shows is what an auditor writes down, since an
attacker who rewrites the whole chain (and every record, which embeds the head it followed) can
only be caught against a head kept elsewhere - or against records S3 Object Lock keeps.

Other mutations (the lead's `tap approve`) append with::

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
import getpass
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .project import outputs_dir, project_dir, tap_home

if TYPE_CHECKING:
    from .engines.base import Engine

TRAIL_NAME = "trail.jsonl"
GENESIS = "0" * 64
OPERATIONS = ("deploy", "destroy", "refresh", "approve", "record", "verify")
RESULTS = ("succeeded", "failed", "refused")
# Set by `tap run` for its kernel: the record the run's mutations belong to.
RECORD_ENV = "TAP_RECORD"
# Set by jupyter_server in every kernel it starts for a notebook (sessionmanager.get_kernel_env).
SESSION_ENV = "JPY_SESSION_NAME"

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("tap_trail",
                                                                          default={})


# -------------------------------------------------------------------------- where things live

def records_root(output_dir: str | None = None) -> str:
    """The records' root: a local directory path or an ``s3://`` URL (no trailing slash)."""
    raw = output_dir or os.environ.get("TAP_OUTPUTS", "")
    if is_remote(raw):
        return raw.rstrip("/")
    return str(Path(output_dir).resolve()) if output_dir else str(outputs_dir())


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
    except FileNotFoundError:
        return Head(-1, GENESIS)


_locks: dict[Path, Any] = {}


@contextlib.contextmanager
def locked(root: str | None = None) -> Iterator[Path]:
    """Hold the trail's lock (appenders in every process take turns); yields the trail's path.
    Reentrant within a process, so a record writer can read the head, write, then append."""
    from filelock import FileLock

    path = trail_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _locks.setdefault(path, FileLock(str(path.with_name(".trail.lock"))))
    with lock:
        yield path


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
           extra: dict[str, Any] | None = None, root: str | None = None) -> dict[str, Any]:
    """Append one entry, chained to the current head; returns it (with its hash)."""
    if operation not in OPERATIONS:
        raise ValueError(f"operation {operation!r}; allowed: {', '.join(OPERATIONS)}")
    if result not in RESULTS:
        raise ValueError(f"result {result!r}; allowed: {', '.join(RESULTS)}")
    ctx = _context.get()
    commit, dirty = git_state()
    entry: dict[str, Any] = {
        "time": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        "operation": operation, "result": result, "error": error,
        "operator": operator or current_operator(), "stack": stack, "target": target,
        "env_file": env_file, "commit": commit, "dirty": dirty,
        "plan_hash": plan_hash or ctx.get("plan_hash"),
        "summary": dict(summary or {}), "notes": [*ctx.get("notes", ()), *notes],
        "record": record if record is not None else current_record(),
        "record_sha256": record_sha256, **(extra or {})}
    with locked(root) as path:
        last = head(root)
        entry["seq"], entry["prev"] = last.seq + 1, last.hash
        body = canonical(entry)
        entry["hash"] = hashlib.sha256(body).hexdigest()
        # the line is the canonical body with the hash as its last member: verify can hash
        # the line's own bytes instead of encoding the entry again (ops/audit.py)
        line = body[:-1] + b',"hash":"' + entry["hash"].encode() + b'"}\n'
        with open(path, "ab") as fh:
            if fh.tell() and _last_byte(path) != b"\n":
                line = b"\n" + line  # a torn line (writer killed mid-append) stays alone
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
    return entry


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


@contextlib.contextmanager
def recorded(engine: Engine, operation: str) -> Iterator[dict[str, Any]]:
    """Wrap one engine mutation: its entry says succeeded (with the Result's summary and
    notes), refused (a guard said no: ProtectedStack, UsageError) or failed (anything else),
    and the exception goes on. The caller puts the Result in the yielded dict as "result"."""
    from .errors import UsageError

    outcome: dict[str, Any] = {}
    common = dict(stack=engine.stack, target=engine.name, env_file=engine.settings.source)
    try:
        yield outcome
    except UsageError as exc:  # ProtectedStack is a UsageError: a guard refused
        append(operation, result="refused", error=type(exc).__name__, **common)
        _keep_session_notebook(operation)
        raise
    except BaseException as exc:
        append(operation, result="failed", error=type(exc).__name__, **common)
        _keep_session_notebook(operation)
        raise
    res = outcome.get("result")
    failed = getattr(res, "status", "succeeded") != "succeeded"
    append(operation, result="failed" if failed else "succeeded",
           summary=getattr(res, "summary", None), notes=list(getattr(res, "notes", ()) or ()),
           **common)
    _keep_session_notebook(operation)


def _keep_session_notebook(operation: str) -> None:
    """In a JupyterLab session kernel, the session notebook (as last saved) becomes a record
    when one of its mutations runs; the next save records its outputs. Never fails the
    mutation: a problem is said on stderr."""
    if os.environ.get(RECORD_ENV) or not os.environ.get(SESSION_ENV):
        return
    record = current_record()
    if not record or not Path(record).is_file():
        return
    try:
        from .lab import store_session_notebook

        store_session_notebook(Path(record), reason=f"{operation} ran")
    except Exception as exc:  # noqa: BLE001 - the mutation happened; its entry is written
        print(f"tap: could not keep {record} as an audit record: {type(exc).__name__}",
              file=sys.stderr)


def read(root: str | None = None) -> list[dict[str, Any]]:
    """Every readable entry, in file order (an unreadable line is skipped; verify names it)."""
    entries = []
    try:
        with open(trail_path(root), encoding="utf-8") as fh:
            for line in fh:
                with contextlib.suppress(ValueError):
                    entries.append(json.loads(line))
    except FileNotFoundError:
        pass
    return entries


# -------------------------------------------------------------------------------- who, what

def current_operator() -> str:
    return os.environ.get("TAP_OPERATOR") or getpass.getuser()


def current_record() -> str | None:
    """The record a mutation belongs to: the output notebook of `tap run`, or the session
    notebook JupyterLab runs (jupyter_server names it in the kernel's environment)."""
    record = os.environ.get(RECORD_ENV)
    if record:
        return record
    session = os.environ.get(SESSION_ENV, "")
    if session.endswith(".ipynb"):
        path = Path(session)
        if not path.is_absolute() and (Path.cwd() / path.name).is_file():
            path = Path.cwd() / path.name  # kernels run in the notebook's folder
        return str(path)
    return None


def git_state() -> tuple[str, bool | None]:
    """(commit, dirty) of the project in one `git status` call; ("unknown", None) without git.
    Dirty means `git status --porcelain` lists anything."""
    try:
        out = subprocess.run(["git", "status", "--porcelain=v2", "--branch"],
                             cwd=project_dir(), text=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    if out.returncode != 0:
        return "unknown", None
    commit, dirty = "unknown", False
    for line in out.stdout.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split()[-1]
            commit = oid if oid != "(initial)" else "unknown"
        elif not line.startswith("#"):
            dirty = True
    return commit, dirty
