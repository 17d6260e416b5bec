"""Holding the local trail and seals of an ``s3://`` records root to their Object Lock copy.

The trail and the seals are appended locally (under ``tap_home()/audit/``: S3 has no append),
and each line, as it is appended, is also locked in the bucket as an object of its own
(tap_lib/object_lock.py writes them, below the trail; its names are re-exported here for the
callers that write records, plans and approvals).

`compare` is the half of `tap audit verify` that holds the local trail and seals to that copy,
from one listing of each folder: every local line must have its twin, byte-identical, and
every object there its local line. The key binds the content (an entry's hash is the SHA-256 of
its content, a seal's key that of its line) and the listing's ETag, the MD5 of a single-part
upload, its bytes; an object whose ETag says otherwise (SSE-KMS, or a later version with other
bytes) is read, in parallel. Every object tap writes carries its lock in the PUT itself. Entries
older than the copy's first entry (a trail begun before tap kept one) are pinned by that entry's
``prev``: said as a warning, not a problem. The copy keeps anything from being rewritten or
taken away; an entry someone with s3:PutObject adds to both is no break: seals say who wrote it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import object_lock, trail
# The writing half, below the trail; re-exported for the callers that have long asked here.
from ..object_lock import (DEFAULT_RETENTION_DAYS, SEALS_FOLDER, TRAIL_FOLDER,  # noqa: F401
                           entry_url, put_line, put_locked, retention_days, s3, seal_url)
from ..trail import SEALS_NAME, TRAIL_NAME, local_dir
from .problem import Problem

KEY = re.compile(r"([0-9]{10})-([0-9a-f]{64})\.json")
HEX64 = re.compile(r"[0-9a-f]{64}")
WORKERS = 16


@dataclass
class Comparison:
    """What `compare` found: problems, facts to weigh, and how many objects the copy holds."""

    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    entries: int = 0     # trail objects in the copy
    seals: int = 0       # seal objects in the copy


@dataclass
class _Line:
    what: str            # "entry 12", "seal line 3"
    seq: int
    key: str             # <seq:010d>-<hex>.json
    raw: bytes


def compare(root: str) -> Comparison:
    """Hold the local trail and seals of an s3:// `root` to their Object Lock copy."""
    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    base = f"{prefix}/" if prefix else ""
    client = object_lock.s3(WORKERS)
    # appenders wait, so what is listed is what was read (an auditor's machine with no local
    # trail of this root has none to wait for, and may not be able to write a lock file)
    held = trail.locked(root) if local_dir(root).is_dir() else contextlib.nullcontext()
    with held:
        entries = _local(local_dir(root) / TRAIL_NAME, _entry_key, "entry")
        seals = _local(local_dir(root) / SEALS_NAME, _seal_key, "seal line")

        def listing(folder: str) -> dict[str, dict[str, Any]]:
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=f"{base}{folder}/")
            return {name: obj for page in pages for obj in page.get("Contents", [])
                    if KEY.fullmatch(name := obj["Key"].rsplit("/", 1)[-1])
                    and obj["Key"] == f"{base}{folder}/{name}"}

        with ThreadPoolExecutor(max_workers=2) as pool:  # the two folders listed at once
            listed = dict(zip((TRAIL_FOLDER, SEALS_FOLDER),
                              pool.map(listing, (TRAIL_FOLDER, SEALS_FOLDER))))
    found = Comparison(entries=len(listed[TRAIL_FOLDER]), seals=len(listed[SEALS_FOLDER]))
    locked_seqs = [int(name[:10]) for name in listed[TRAIL_FOLDER]]
    since = min(locked_seqs, default=None)

    def url(folder: str, name: str) -> str:
        return f"{root}/{folder}/{name}"

    # Each local line with a locked twin. The listing's ETag (MD5 of a single-part upload's
    # bytes) settles most; the others (SSE-KMS ETags, or content that differs) are read.
    pairs = [(line, listed[folder][line.key], url(folder, line.key))
             for folder, lines in ((TRAIL_FOLDER, entries), (SEALS_FOLDER, seals))
             for line in lines if line.key in listed[folder]]
    unsettled = [(line, obj, where) for line, obj, where in pairs if not _same(obj, line.raw)]

    def fetch(item: tuple[_Line, dict[str, Any], str]) -> tuple[bytes | None, str | None]:
        try:
            return client.get_object(Bucket=bucket, Key=item[1]["Key"])["Body"].read(), None
        except Exception as exc:  # noqa: BLE001 - botocore ClientError, connection errors
            return None, type(exc).__name__

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        fetched = list(pool.map(fetch, unsettled))
    for (line, _, where), (body, error) in zip(unsettled, fetched):
        if error:
            found.problems.append(Problem("unreadable", line.what, f"its locked copy {where}: "
                                          f"{error}"))
        elif body != line.raw:
            found.problems.append(Problem("edited", line.what, f"differs from its locked copy "
                                          f"{where} (the line, or a later version of the "
                                          "object, was changed)"))

    # local lines without a locked twin
    by_seq: dict[int, list[str]] = {}
    for name in listed[TRAIL_FOLDER]:
        by_seq.setdefault(int(name[:10]), []).append(name)
    older: list[int] = []
    for line in entries:
        if line.key in listed[TRAIL_FOLDER]:
            continue
        if since is None or line.seq < since:
            older.append(line.seq)
        elif by_seq.get(line.seq):
            twin = by_seq[line.seq][0]
            found.problems.append(Problem("edited", line.what, "the locked copy holds another "
                                          f"entry {line.seq} ({url(TRAIL_FOLDER, twin)}): "
                                          "rewritten, its hash recomputed"))
        else:
            found.problems.append(Problem("inserted", line.what, "not in the locked copy "
                                          f"({url(TRAIL_FOLDER, line.key)} is missing): added "
                                          "by hand, or its writer was killed before the upload"))
    for line in seals:
        if line.key not in listed[SEALS_FOLDER] and (since is not None and line.seq >= since):
            found.problems.append(Problem("inserted", line.what, f"a seal of entry {line.seq} "
                                          f"not in the locked copy ({url(SEALS_FOLDER, line.key)}"
                                          " is missing)"))
    # locked objects the local files lack
    local_entries = {line.key for line in entries}
    twinned = {line.seq for line in entries if line.key in listed[TRAIL_FOLDER]}
    local_seqs = {line.seq for line in entries}
    for name in sorted(set(listed[TRAIL_FOLDER]) - local_entries):
        seq = int(name[:10])
        if seq in twinned:  # the local entry of that seq is locked too, and so is this one
            found.problems.append(Problem("edited", f"entry {seq}", "the locked copy also "
                                          f"holds another entry {seq} ({url(TRAIL_FOLDER, name)})"
                                          ", not in the local trail: rewritten, its hash "
                                          "recomputed"))
        elif seq not in local_seqs:  # else named above: a local line without its twin
            found.problems.append(Problem("deleted", f"entry {seq}", "in the locked copy "
                                          f"({url(TRAIL_FOLDER, name)}), not in the local "
                                          "trail"))
    local_seals = {line.key for line in seals}
    for name in sorted(set(listed[SEALS_FOLDER]) - local_seals):
        found.problems.append(Problem("deleted", f"seal of entry {int(name[:10])}",
                                      f"in the locked copy ({url(SEALS_FOLDER, name)}), not in "
                                      f"the local {SEALS_NAME}"))
    if older:
        pinned = (f"pinned by the locked entry #{since}'s prev" if since is not None else
                  "the next entry locked will pin them")
        found.warnings.append(f"{len(older)} entries (#{older[0]}"
                              + (f"…#{older[-1]}" if older[-1] != older[0] else "")
                              + f") predate the Object Lock copy of the trail: {pinned}")
    return found


def _same(obj: dict[str, Any], raw: bytes) -> bool:
    """Whether a listed object holds `raw`, by its size and ETag (MD5 of a single-part upload
    stored with SSE-S3 or none; any other ETag is not settled here)."""
    etag = str(obj.get("ETag", "")).strip('"')
    return obj.get("Size") == len(raw) and etag == hashlib.md5(raw,
                                                               usedforsecurity=False).hexdigest()


def _local(path: Path, key_of, kind: str) -> list[_Line]:
    """Every local line that names its seq (and hash): unreadable lines are the other checks'."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return []
    lines = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict) and type(parsed.get("seq")) is int and parsed["seq"] >= 0:
            key = key_of(parsed, line)
            if key:
                what = f"entry {parsed['seq']}" if kind == "entry" else f"seal line {lineno}"
                lines.append(_Line(what, parsed["seq"], key, line))
    return lines


def _entry_key(entry: dict[str, Any], line: bytes) -> str | None:
    hash_ = entry.get("hash")
    if not isinstance(hash_, str) or not HEX64.fullmatch(hash_):
        return None
    return f"{entry['seq']:010d}-{hash_}.json"


def _seal_key(seal: dict[str, Any], line: bytes) -> str:
    return f"{seal['seq']:010d}-{trail.sha256_bytes(line)}.json"
