"""Writing under S3 Object Lock: records, plans and approvals as objects of an ``s3://`` root,
and the locked copy of each trail and seal line.

Why its own module, below the trail: the trail (tap_lib/trail.py) locks every line it appends
to an ``s3://`` root, and records/locked.py, which compares those copies with the local files,
reads the trail; with the writing here, imports run one way (trail -> object_lock, and
records/locked -> trail -> object_lock). S3 has no append, so each trail or seal line becomes
an object of its own holding the line's bytes (no newline)::

    <prefix>/_trail/<seq:010d>-<entry hash>.json
    <prefix>/_seals/<seq:010d>-<SHA-256 of the seal line>.json

written in compliance mode, retained TAP_RECORDS_RETENTION_DAYS days, and only if no object
has that key (``If-None-Match: *``): never overwritten, and out of reach of whoever can write
the local files. trail.append and trail.seal_entries take the local line back when its copy
cannot be written (LockedCopyUnwritable names TAP_OUTPUTS and the object's URL), so a mutation
whose "started" entry is not locked never starts. boto3 is imported on first use only.
"""
from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import ConfigError, LockedCopyUnwritable

DEFAULT_RETENTION_DAYS = 365
TRAIL_FOLDER, SEALS_FOLDER = "_trail", "_seals"


def retention_days() -> int:
    """How long S3 Object Lock keeps each object (TAP_RECORDS_RETENTION_DAYS, default 365)."""
    raw = os.environ.get("TAP_RECORDS_RETENTION_DAYS", "").strip() or str(DEFAULT_RETENTION_DAYS)
    if not re.fullmatch(r"[0-9]{1,5}", raw) or int(raw) < 1:
        raise ConfigError("expected a whole number of days, 1 to 99999",
                          field="TAP_RECORDS_RETENTION_DAYS", value=raw[:40])
    return int(raw)


def put_locked(url: str, content: bytes, *, new: bool = False) -> str:
    """Write `content` at `url` in compliance mode; returns the retain-until date (ISO). With
    `new`, only when no object has that key (S3 answers 412 otherwise)."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    until = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=retention_days())
    s3().put_object(Bucket=bucket, Key=key, Body=content, ContentType="application/json",
                    ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until,
                    ChecksumAlgorithm="SHA256", **({"IfNoneMatch": "*"} if new else {}))
    return until.isoformat()


def entry_url(root: str, seq: int, hash_: str) -> str:
    return f"{root}/{TRAIL_FOLDER}/{seq:010d}-{hash_}.json"


def seal_url(root: str, seq: int, line: bytes) -> str:
    return f"{root}/{SEALS_FOLDER}/{seq:010d}-{hashlib.sha256(line).hexdigest()}.json"


def put_line(url: str, line: bytes) -> None:
    """Lock one trail or seal line at `url`, never replacing an object; LockedCopyUnwritable
    (naming TAP_OUTPUTS and the URL) when it cannot. A retry whose first attempt did land
    (S3's 412 over our own bytes) counts as written."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        put_locked(url, line, new=True)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or type(exc).__name__)
        if code == "PreconditionFailed" and _holds(url, line):
            return
        reason = code + (f": {error['Message']}" if error.get("Message") else "")
        if code == "PreconditionFailed":
            reason = "an object already has this key (PreconditionFailed)"
        raise _refused(url, reason[:300]) from exc
    except BotoCoreError as exc:  # unreachable endpoint, no credentials...
        raise _refused(url, type(exc).__name__) from exc


def _holds(url: str, line: bytes) -> bool:
    try:
        bucket, _, key = url.removeprefix("s3://").partition("/")
        return s3().get_object(Bucket=bucket, Key=key)["Body"].read() == line
    except Exception:  # noqa: BLE001 - cannot tell: not written
        return False


def _refused(url: str, reason: str) -> LockedCopyUnwritable:
    return LockedCopyUnwritable(url, reason, variable=os.environ.get("TAP_OUTPUTS") or None)


_clients: dict[tuple, Any] = {}


def s3(workers: int | None = None):
    """An S3 client, one per AWS configuration in the environment (clients are thread-safe;
    making one costs ~15 ms, each trail line would pay it)."""
    import boto3
    from botocore.config import Config

    key = (workers, *sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    if key not in _clients:
        _clients[key] = boto3.client(
            "s3", config=Config(max_pool_connections=workers) if workers else None)
    return _clients[key]
