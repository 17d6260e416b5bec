"""Preflight rules for controls Security Hub (FSBP) does not have, keyed to Prowler's check ids
(or tap's own, `tap:`, where neither scanner has one): log groups, function environments and
service roles' trust. Each id keeps the meaning it has in verify."""
from __future__ import annotations

from ...controls import CONFUSED_DEPUTY, LAMBDA_CMK, LOG_KMS, LOG_RETENTION, MIN_LOG_RETENTION_DAYS
from . import FUNCTION, IAM_ROLE, KMS_KEY, LOG_GROUP, Context, Finding, _statements, rule
from .securityhub import _severity


def _stack_keys(ctx: Context) -> set:
    """The stack's own keys as a reference may name them (id, ARN)."""
    return {v for k in ctx.of(KMS_KEY) for v in (k.id, k.outputs.get("arn"), k.outputs.get("keyId"))
            if v}


@rule("TAP132", LOG_KMS)
def log_group_kms(ctx: Context) -> list[Finding]:
    """Log groups hold payment errors and flow records: encrypted with the stack's key, whose
    use is logged and can be revoked, not only with CloudWatch's own."""
    keys = _stack_keys(ctx)
    return [_severity(ctx)(g.name, "log group is not encrypted with the stack's KMS key",
                           "set kms_key_id=<stack key>.arn (the key policy must let "
                           "logs.<region>.amazonaws.com use it)")
            for g in ctx.of(LOG_GROUP) if g.inputs.get("kmsKeyId") not in keys]


@rule("TAP133", LOG_RETENTION)
def log_group_retention(ctx: Context) -> list[Finding]:
    """Payment investigations and PCI DSS need a year of logs; a shorter retention deletes the
    evidence before anyone asks for it."""
    out = []
    for g in ctx.of(LOG_GROUP):
        days = g.inputs.get("retentionInDays")
        if days and days < MIN_LOG_RETENTION_DAYS:      # 0/unset: kept forever
            out.append(_severity(ctx)(
                g.name, f"log retention is {days:g} days; needs >= {MIN_LOG_RETENTION_DAYS}",
                f"set the retention >= {MIN_LOG_RETENTION_DAYS} in {ctx.params_file} "
                "(vpc.flow_logs_retention_days, lambda.log_retention_days)"))
    return out


@rule("TAP122", LAMBDA_CMK)
def lambda_env_cmk(ctx: Context) -> list[Finding]:
    """Function environments name the database and secret: encrypted with the stack's key, so
    reading them needs kms:Decrypt on it, not just lambda:GetFunctionConfiguration."""
    keys = _stack_keys(ctx)
    return [_severity(ctx)(f.name, "environment is not encrypted with the stack's KMS key",
                           "set kms_key_arn=<stack key>.arn")
            for f in ctx.of(FUNCTION) if f.inputs.get("kmsKeyArn") not in keys]


@rule("TAP152", CONFUSED_DEPUTY)
def role_trust_scoped(ctx: Context) -> list[Finding]:
    """A service role trusted without aws:SourceAccount/aws:SourceArn can be made to act for
    another account's resource (the cross-service confused deputy)."""
    out = []
    for role in ctx.of(IAM_ROLE):
        for s in _statements(role.inputs.get("assumeRolePolicy")):
            service = (s.get("Principal") or {}).get("Service") if isinstance(
                s.get("Principal"), dict) else None
            keys = {k.lower() for cond in (s.get("Condition") or {}).values()
                    if isinstance(cond, dict) for k in cond}
            if s.get("Effect") == "Allow" and service and not keys & {
                    "aws:sourceaccount", "aws:sourcearn", "aws:sourceorgid"}:
                out.append(_severity(ctx)(role.name, f"trusts {service} with no aws:SourceAccount "
                                                     "or aws:SourceArn condition",
                                          "use policies.assume_role_policy(service, account)"))
    return out
