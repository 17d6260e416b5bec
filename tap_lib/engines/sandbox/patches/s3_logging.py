"""PutBucketLogging with a target bucket whose policy has a `"Principal": "*"` statement (IAM
User Guide, "AWS JSON policy elements: Principal": `"*"` is a valid principal).

moto 5.2 reads every statement's Principal as a mapping and fails (HTTP 500) on the string
form, so any bucket with a TLS-only Deny to "*" cannot receive access logs. The patch lets
moto's check (is the logging service allowed to write?) see only the statements it can read;
a "*" statement is not the logging service's grant either way.

Delivery (S3 User Guide, "Logging requests with server access logging": records are delivered
on a best-effort basis, in batches, usually within a few hours; one log object holds many
records). moto writes one log object per request inside the request, a versioned PUT (the
stack's log bucket has Object Lock) on every call a client makes. Here a request only queues
its record; the records of each target go out together as one object DELIVERY_DELAY_S later,
and before any request to the target bucket itself, so whoever reads, empties or deletes the
log bucket finds every record of the requests answered before. A delivery that fails (the
target is gone) is dropped, as moto drops it.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import threading
import urllib.parse
from types import SimpleNamespace
from typing import Any

DELIVERY_DELAY_S = 1.0


def install(endpoint: str) -> None:
    from moto.s3.models import FakeBucket, S3Backend

    check = FakeBucket._log_permissions_enabled_policy

    def _log_permissions_enabled_policy(target_bucket, target_prefix):
        policy = target_bucket.policy
        if policy:
            document = json.loads(policy.decode() if isinstance(policy, bytes) else policy)
            statements = document.get("Statement", [])
            if isinstance(statements, dict):
                statements = [statements]
            document["Statement"] = [s for s in statements
                                     if isinstance(s.get("Principal", {}), dict)]
            target_bucket = SimpleNamespace(policy=json.dumps(document).encode(),
                                            partition=target_bucket.partition,
                                            name=target_bucket.name)
        return check(target_bucket, target_prefix)

    FakeBucket._log_permissions_enabled_policy = staticmethod(_log_permissions_enabled_policy)
    S3Backend.log_incoming_request = _log_incoming_request


class _Deliveries:
    """Records waiting for delivery, by (backend, target bucket, prefix)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[tuple[Any, str, str], list[str]] = {}
        self.targets: set[str] = set()
        self.timer: threading.Timer | None = None

    def add(self, backend: Any, target: str, prefix: str, record: str) -> None:
        with self.lock:
            self.pending.setdefault((backend, target, prefix), []).append(record)
            self.targets.add(target)
            if self.timer is None:
                self.timer = threading.Timer(DELIVERY_DELAY_S, self.deliver)
                self.timer.daemon = True
                self.timer.start()

    def deliver(self, backend: Any = None, target: str | None = None) -> None:
        """Write the waiting records (of `backend`'s `target` only, if given)."""
        if target is not None and target not in self.targets:
            return  # the common case, checked without the lock
        with self.lock:
            keys = [k for k in self.pending
                    if target is None or (k[0] is backend and k[1] == target)]
            batches = [(key, self.pending.pop(key)) for key in keys]
            self.targets = {k[1] for k in self.pending}
            if target is None:
                self.timer = None
        for (owner_backend, bucket, prefix), records in batches:
            _write(owner_backend, bucket, prefix, records)


_deliveries = _Deliveries()


def _write(backend: Any, bucket: str, prefix: str, records: list[str]) -> None:
    from moto.moto_api._internal import mock_random as random

    name = datetime.datetime.now().strftime(
        f"%Y-%m-%d-%H-%M-%S-{random.getrandbits(64):016X}")
    with contextlib.suppress(Exception):  # best effort, as on AWS: the target may be gone
        backend.put_object(bucket, prefix + name, value="\n".join(records) + "\n")


def _record(request: Any, bucket_name: str) -> str:
    """One record, in the fields and order moto writes them."""
    from moto.moto_api._internal import mock_random as random
    from moto.s3.models import OWNER

    date = datetime.datetime.now().strftime("%d/%b/%Y:%H:%M:%S +0000")
    path = urllib.parse.urlparse(request.url).path or "-"
    agent = f"{request.headers.get('User-Agent')} prompt/off command/s3api.put-object"
    host = f"{request.url.split('amazonaws.com')[0]}amazonaws.com"
    return (f"{OWNER} {bucket_name} [{date}] 0.0.0.0 - {random.getrandbits(64):016x} "
            f"REST.{request.method}.BUCKET - {request.method} {path} HTTP/1.1 "
            f'200 - - 1 2 "-" {agent} - c29tZSB1bmtub3duIGRhdGE= SigV4 '
            f"ECDHE-RSA-AES128-GCM-SHA256 AuthHeader {host} TLSv1.2 - -")


def _log_incoming_request(self: Any, request: Any, bucket_name: str) -> None:
    """S3Backend.log_incoming_request, queued (moto calls it before answering a request)."""
    _deliveries.deliver(self, bucket_name)
    bucket = self.buckets.get(bucket_name)
    logging = getattr(bucket, "logging", None) or {}
    target = logging.get("TargetBucket")
    if target:
        _deliveries.add(self, target, logging.get("TargetPrefix", ""), _record(request,
                                                                               bucket_name))
