"""Audit records: where executed notebooks go, the index that lists them, HTML for reviewers.

Every `tap run` leaves one executed notebook under ``<root>/<env>/`` whose ``metadata.tap`` says
who ran what against which stack. Listing must not open thousands of notebooks, so each record
also appends one JSON line to an index; the index is rebuilt from the records only when missing.

The root is ``outputs/`` (``TAP_OUTPUTS`` moves it), or an ``s3://bucket/prefix`` URL: papermill
reads and writes S3 natively. An S3 root keeps its index locally under ``tap_home()/audit/``.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from ..errors import UsageError
from ..project import outputs_dir, tap_home

INDEX_NAME = "index.jsonl"
COLUMNS = ["time", "env", "notebook", "stack", "target", "operator", "status", "duration_s",
           "summary", "path"]


def records_root(output_dir: str | None = None) -> str:
    """The records' root: a local directory path or an ``s3://`` URL (no trailing slash)."""
    raw = output_dir or os.environ.get("TAP_OUTPUTS", "")
    if is_remote(raw):
        return raw.rstrip("/")
    return str(Path(output_dir).resolve()) if output_dir else str(outputs_dir())


def is_remote(path: str) -> bool:
    return str(path).startswith("s3://")


def index_path(root: str) -> Path:
    """Next to the records when local; under tap_home() for an S3 root (S3 has no append)."""
    if is_remote(root):
        return tap_home() / "audit" / root.removeprefix("s3://") / INDEX_NAME
    return Path(root) / INDEX_NAME


def index_row(meta: dict[str, Any], path: str) -> dict[str, Any]:
    """The index line of one record, from its ``metadata.tap``."""
    return {"time": meta.get("start", ""), "env": meta.get("env", ""),
            "notebook": meta.get("notebook", ""), "stack": meta.get("stack", ""),
            "target": meta.get("target", ""), "operator": meta.get("operator", ""),
            "status": meta.get("status", ""), "duration_s": meta.get("duration_s"),
            "summary": meta.get("summary", {}), "path": path}


def add_to_index(row: dict[str, Any], root: str) -> None:
    """Append one record's line; a missing index is first rebuilt (it then holds the record)."""
    path = index_path(root)
    with _index_lock(path):
        if not path.exists():
            _rebuild_locked(root, path)
            return
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")


def rebuild_index(output_dir: str | None = None) -> Path:
    """Scan every record's metadata (slow, one read per record) and rewrite the index."""
    root = records_root(output_dir)
    path = index_path(root)
    with _index_lock(path):
        _rebuild_locked(root, path)
    return path


def audit_table(env: str | None = None, output_dir: str | None = None) -> pd.DataFrame:
    """One row per record, oldest first, read from the index only."""
    root = records_root(output_dir)
    path = index_path(root)
    if not path.exists():
        rebuild_index(root)
    rows = list(_read_index(path))
    if env:
        rows = [r for r in rows if r.get("env") == env]
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["summary"] = table["summary"].map(format_summary)
    return table.sort_values("time", kind="stable", ignore_index=True)


def format_summary(summary: Any) -> str:
    """{'create': 50, 'same': 0} -> 'create=50, same=0' (compact enough for a table cell)."""
    if not isinstance(summary, dict):
        return "" if summary is None else str(summary)
    return ", ".join(f"{key}={value}" for key, value in summary.items())


def export_html(record: str | Path, dest: str | Path | None = None) -> Path:
    """Render one record to standalone HTML for reviewers without Jupyter.

    `record` is a path, an s3:// URL, or a record's file name (or stem) looked up in the index,
    and must be a record under the records root (confine_record): nothing else is read.
    The HTML goes next to a local record, or under tap_home()/exports for an S3 one.
    """
    from nbconvert import HTMLExporter
    from papermill.iorw import load_notebook_node

    source = confine_record(str(record))
    body, _ = HTMLExporter().from_notebook_node(load_notebook_node(source))
    name = source.rsplit("/", 1)[-1].removesuffix(".ipynb") + ".html"
    if dest is not None:
        target = Path(dest)
    elif is_remote(source):
        target = tap_home() / "exports" / name
    else:
        target = Path(source).with_name(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")
    return target


def confine_record(record: str) -> str:
    """The path or s3:// URL of one audit record, which must lie under the records root.

    `record` is a record's name (file name or stem, looked up in the index) or its path or
    URL. A path is resolved (symlinks included) before it is compared with the root, an index
    row is held to the same rule, and only ``.ipynb`` files count: `../../etc/shadow`, an
    absolute path elsewhere or a link out of the root is refused before anything is opened.
    """
    root = records_root()
    shown = repr(record if len(record) <= 200 else record[:200] + "…")
    if not record or not record.isprintable():
        raise UsageError(f"not an audit record name: {shown}",
                         hint="pass a record's name or path as listed by `tap audit`")
    if "/" not in record and os.sep not in record:
        return _confined(_by_name(record), root, shown)
    return _confined(record, root, shown)


# -------------------------------------------------------------------------------- internals

def _by_name(record: str) -> str:
    path = index_path(records_root())
    wanted = record.removesuffix(".ipynb")
    matches = [r["path"] for r in _read_index(path)
               if str(r.get("path", "")).rsplit("/", 1)[-1].removesuffix(".ipynb") == wanted]
    if len(matches) != 1:
        raise UsageError(f"no single audit record named {record!r} "
                         f"({len(matches)} found in {path})",
                         hint="pass the record's path as shown by `tap audit`")
    return str(matches[0])


def _confined(record: str, root: str, shown: str) -> str:
    outside = UsageError(f"{shown} is not an audit record under the records root {root}",
                         hint="pass a record's name or path as listed by `tap audit`; "
                              "TAP_OUTPUTS moves the root")
    if not record.endswith(".ipynb"):
        raise outside
    if is_remote(root) or is_remote(record):
        if not (is_remote(root) and record.startswith(root + "/")) or \
                ".." in record.removeprefix("s3://").split("/"):
            raise outside
        return record
    resolved = Path(record).resolve()
    if not resolved.is_relative_to(Path(root).resolve()):
        raise outside
    if not resolved.is_file():
        raise UsageError(f"no audit record at {shown}",
                         hint="pass a record's name or path as listed by `tap audit`")
    return str(resolved)


def _read_index(path: Path) -> Iterator[dict[str, Any]]:
    """Lines of the index; a torn last line (a writer killed mid-append) is skipped."""
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                with contextlib.suppress(ValueError):
                    yield json.loads(line)
    except FileNotFoundError:
        return


def _rebuild_locked(root: str, path: Path) -> None:
    from papermill.iorw import load_notebook_node

    rows = []
    for record in _record_paths(root):
        meta = load_notebook_node(record).metadata.get("tap")
        if meta:
            rows.append(index_row(meta, record))
    rows.sort(key=lambda r: r["time"])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)


def _record_paths(root: str) -> list[str]:
    if is_remote(root):
        from papermill.s3 import S3

        return [p for p in S3().list(root + "/") if p.endswith(".ipynb")]
    return [str(p) for p in sorted(Path(root).glob("*/*.ipynb"))]


@contextlib.contextmanager
def _index_lock(path: Path) -> Iterator[None]:
    """Writers (runs finishing at once, a rebuild) take turns; readers need no lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(".index.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
