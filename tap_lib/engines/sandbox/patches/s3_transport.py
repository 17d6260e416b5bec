"""S3 bucket policies: the `aws:SecureTransport` condition (S3 User Guide, "Bucket policy
examples": deny requests that do not use HTTPS).

moto evaluates bucket policies but ignores their Condition blocks, so the stack's TLS-only
policy (Deny s3:* when aws:SecureTransport is false) would deny every request. The sandbox
endpoint stands in for AWS's HTTPS endpoint, so requests are treated as TLS: a statement that
applies only to insecure transport does not apply. Every other statement is evaluated by moto
unchanged.
"""
from __future__ import annotations

from moto.iam import access_control

_evaluate = access_control.IAMPolicyStatement.is_action_permitted


def _insecure_transport_only(statement: dict) -> bool:
    value = ((statement.get("Condition") or {}).get("Bool") or {}).get("aws:SecureTransport")
    return value is not None and str(value).lower() == "false"


def _is_action_permitted(self, action, resource="*", principal=None,
                         incoming_condition_values=None):
    if _insecure_transport_only(self._statement):
        return access_control.PermissionResult.NEUTRAL
    return _evaluate(self, action, resource, principal, incoming_condition_values)


def install(endpoint: str) -> None:
    access_control.IAMPolicyStatement.is_action_permitted = _is_action_permitted
