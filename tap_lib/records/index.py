"""The index: one JSON line per record, so listing never opens thousands of notebooks.

It is rebuilt from the records only when missing. It is no authority of its own: each row names
its record relative to the root, with the SHA-256 of the record, the hash of the record's trail
entry, and fields that entry pins by the digest of the row (``index_sha256``), so an edited row
shows in `tap audit verify` (records/verify.py). An S3 root keeps its index locally under
``tap_home()/audit/``.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterator

from .. import trail
from ..errors import UsageError
from ..trail import local_dir, record_location, records_root, relative_record, writing
from .store import read_bytes, record_paths

INDEX_NAME = "index.jsonl"
COLUMNS = ["time", "env", "notebook", "stack", "target", "operator", "status", "duration_s",
           "summary", "path"]


def index_path(root: str) -> Path:
    """Next to the records when local; under tap_home() for an S3 root (S3 has no append)."""
    return local_dir(root) / INDEX_NAME


def index_row(meta: dict[str, Any], path: str, sha256: str | None = None,
              entry: str | None = None) -> dict[str, Any]:
    """The index line of one record, from its ``metadata.tap``, with the SHA-256 of its content
    and the hash of its trail entry when known; `path` as the trail names it."""
    return {"time": meta.get("start", ""), "env": meta.get("env", ""),
            "notebook": meta.get("notebook", ""), "stack": meta.get("stack", ""),
            "target": meta.get("target", ""), "operator": meta.get("operator", ""),
            "status": meta.get("status", ""), "duration_s": meta.get("duration_s"),
            "summary": meta.get("summary", {}), "path": path, "sha256": sha256,
            "entry": entry}


def row_digest(row: dict[str, Any]) -> str:
    """What a record's trail entry pins of its index row: every field but `entry` (the entry's
    own hash, unknown while the entry is written)."""
    return trail.sha256_bytes(trail.canonical({k: v for k, v in row.items() if k != "entry"}))


def add_to_index(row: dict[str, Any], root: str) -> None:
    """Append one record's line; a missing index is first rebuilt (it then holds the record)."""
    path = index_path(root)
    with index_lock(path):
        if not path.exists():
            rebuild_locked(root, path)
            return
        # rebuilt when lost: no fsync
        trail.append_bytes(path, json.dumps(row, sort_keys=True).encode() + b"\n", sync=False)


def rebuild_index(output_dir: str | None = None) -> Path:
    """Scan every record's metadata (slow, one read per record) and rewrite the index."""
    root = records_root(output_dir)
    path = index_path(root)
    with index_lock(path):
        rebuild_locked(root, path)
    return path


def read_index(path: Path) -> Iterator[dict[str, Any]]:
    """Lines of the index; a torn last line (a writer killed mid-append) is skipped."""
    for _, row in numbered_rows(path):
        if row is not None:
            yield row


def numbered_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, row) for every non-blank line; None for one that is no JSON object."""
    try:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    row = None
                yield lineno, row if isinstance(row, dict) else None
    except FileNotFoundError:
        return


def by_name(record: str) -> str:
    """The path (or URL) of the one record whose file name or stem is `record`."""
    root = records_root()
    path = index_path(root)
    wanted = record.removesuffix(".ipynb")
    matches = [r["path"] for r in read_index(path)
               if str(r.get("path", "")).rsplit("/", 1)[-1].removesuffix(".ipynb") == wanted]
    if len(matches) != 1:
        raise UsageError(f"no single audit record named {record!r} "
                         f"({len(matches)} found in {path})",
                         hint="pass the record's path as shown by `tap audit`")
    return str(record_location(matches[0], root))


def rebuild_locked(root: str, path: Path) -> None:
    import nbformat

    chained = {record_location(e.get("record"), root): e for e in trail.read(root)
               if e.get("operation") == "record"}
    rows = []
    for record in record_paths(root):
        try:
            raw = read_bytes(record)
            meta = nbformat.reads(raw.decode("utf-8"), as_version=4).metadata.get("tap")
        except Exception:  # noqa: BLE001 - a damaged or half-written record: verify names it
            continue
        if meta:
            entry = chained.get(record, {}).get("hash")
            rows.append(index_row(meta, relative_record(record, root),
                                  trail.sha256_bytes(raw), entry))
    rows.sort(key=lambda r: str(r["time"]))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path):
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows),
                       encoding="utf-8")
        os.replace(tmp, path)


@contextlib.contextmanager
def index_lock(path: Path) -> Iterator[None]:
    """Writers (runs finishing at once, a rebuild) take turns; readers need no lock."""
    with writing(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path.with_name(".index.lock"), "a")
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
