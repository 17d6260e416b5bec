"""PutBucketLogging with a target bucket whose policy has a `"Principal": "*"` statement (IAM
User Guide, "AWS JSON policy elements: Principal": `"*"` is a valid principal).

moto 5.2 reads every statement's Principal as a mapping and fails (HTTP 500) on the string
form, so any bucket with a TLS-only Deny to "*" cannot receive access logs. The patch lets
moto's check (is the logging service allowed to write?) see only the statements it can read;
a "*" statement is not the logging service's grant either way.
"""
from __future__ import annotations

import json
from types import SimpleNamespace


def install(endpoint: str) -> None:
    from moto.s3.models import FakeBucket

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
