"""verify's checks of controls judged as the control defines them (not as "matches the
environment file"): the secrets, the RDS-managed master secret among them. A failed check that
a policy exception of the environment file covers reads `excepted` (checks.apply_exception).
"""
from __future__ import annotations

from datetime import datetime, timezone

import json
from urllib.parse import unquote

from ..controls import (CONFUSED_DEPUTY, LAMBDA_CMK, LOG_KMS, LOG_RETENTION,
                        MIN_LOG_RETENTION_DAYS, SECRETS_MAX_ROTATION_DAYS)
from .checks import Check, Declared, check
from .facts import Facts


def secret_checks(d: Declared, f: Facts) -> list[Check]:
    sec, s = d.settings.secrets, f.secret or {}
    arn = s.get("Name") or d.outputs.get("db_secret_arn")
    state = "scheduled for deletion" if s.get("DeletedDate") else ("present" if s else "missing")
    days = (s.get("RotationRules") or {}).get("AutomaticallyAfterDays")
    rotation = f"enabled, every {days} days" if s.get("RotationEnabled") else "disabled"
    app = d.logical("db-app-credentials")
    # SecretsManager.1 asks for rotation; the file's schedule (when it asks for one) must hold.
    out = [check("secret.present", "", arn, "present", state),
           check("secret.rotation", "SecretsManager.1", arn,
                 f"enabled, every {sec.rotation_days} days" if sec.rotation_enabled
                 else "enabled", rotation,
                 ok=bool(s.get("RotationEnabled")) and (
                     not sec.rotation_enabled or days == sec.rotation_days), logical=app),
           rotated_recently("secret.rotated-recently", arn, s, app)]
    if sec.rotation_enabled:
        want = d.outputs.get("rotation_function_name")
        lambda_arn = s.get("RotationLambdaARN") or ""
        name = lambda_arn.split(":function:")[-1].split(":")[0] if lambda_arn else None
        exists = f.functions.get(want) is not None
        gone = name == want and not exists
        out.append(check("secret.rotation-lambda", "", arn, want,
                         f"{name} (no such function)" if gone else name or "(none)",
                         ok=name == want and exists))
    return out + master_secret_checks(d, f)


def master_secret_checks(d: Declared, f: Facts) -> list[Check]:
    """The RDS-managed master secret (rds!cluster-...) is judged like any other secret: RDS
    rotates it (every 7 days) only when it manages the master password."""
    m = f.master_secret
    cluster = d.logical("aurora-cluster")
    if m is None:
        return [check("secret.master-managed", "SecretsManager.1", d.outputs.get("rds_cluster_id"),
                      "master password in an RDS-managed secret", "no managed secret",
                      ok=False, logical=cluster)]
    days = (m.get("RotationRules") or {}).get("AutomaticallyAfterDays")
    return [check("secret.master-rotation", "SecretsManager.1", m.get("Name"), "enabled",
                  f"enabled, every {days} days" if m.get("RotationEnabled") else "disabled",
                  ok=bool(m.get("RotationEnabled")), logical=cluster),
            rotated_recently("secret.master-rotated-recently", m.get("Name"), m, cluster)]


def rotated_recently(id_: str, name: str | None, s: dict, logical: str) -> Check:
    """SecretsManager.4: rotation on, at most every 90 days, and the last rotation (or the
    creation of a secret never yet rotated) less than 90 days ago."""
    limit = SECRETS_MAX_ROTATION_DAYS
    days = (s.get("RotationRules") or {}).get("AutomaticallyAfterDays")
    last = s.get("LastRotatedDate") or s.get("CreatedDate")
    age = None if last is None else (datetime.now(timezone.utc) - last).days
    ok = bool(s.get("RotationEnabled")) and days is not None and days <= limit and \
        age is not None and age <= limit
    actual = ("rotation disabled" if not s.get("RotationEnabled") else
              f"every {days} days, last {age} day(s) ago" if age is not None
              else f"every {days} days, never rotated")
    return check(id_, "SecretsManager.4", name, f"every <= {limit} days, last <= {limit} days ago",
                 actual, ok=ok, logical=logical)


def database_hardening_checks(d: Declared, f: Facts) -> list[Check]:
    """RDS.37 log exports, RDS.12 IAM authentication (Aurora instances take the cluster's),
    RDS.15 instances spread over the environment's zones (where there is more than one)."""
    c, cid = f.cluster or {}, d.outputs.get("rds_cluster_id")
    cluster = d.logical("aurora-cluster")
    exported = sorted(c.get("EnabledCloudwatchLogsExports") or [])
    out = [check("rds.log-exports", "RDS.37", cid, "postgresql", exported or "none",
                 ok="postgresql" in exported, logical=cluster),
           check("rds.iam-auth", "RDS.12", cid, True, c.get("IAMDatabaseAuthenticationEnabled"),
                 logical=cluster)]
    if len(f.instances) > 1:
        zones = sorted({i.get("AvailabilityZone") for i in f.instances} - {None})
        want = min(len(f.instances), len(d.settings.availability_zones))
        out.append(check("rds.zone-spread", "RDS.15", cid,
                         f"{len(f.instances)} instances over {want} zones",
                         f"{len(f.instances)} instances over {len(zones)} zone(s): "
                         f"{', '.join(zones) or 'none'}", ok=len(zones) >= want,
                         logical=cluster))
    return out


def log_group_checks(d: Declared, f: Facts) -> list[Check]:
    """Each log group the stack writes to: encrypted with the stack's key, kept a year."""
    key = d.outputs.get("kms_key_arn")
    out = []
    for name, g in f.log_groups.items():
        logical = _log_group_logical(d, name)
        kms = (g or {}).get("kmsKeyId")
        days = (g or {}).get("retentionInDays")
        out += [check("logs.kms", LOG_KMS, name, "the stack's KMS key",
                      "the stack's KMS key" if kms and kms == key else kms or "none",
                      ok=bool(kms) and kms == key, logical=logical),
                check("logs.retention", LOG_RETENTION, name,
                      f">= {MIN_LOG_RETENTION_DAYS} days",
                      "missing" if g is None else f"{days} days" if days else "never expire",
                      ok=g is not None and (not days or days >= MIN_LOG_RETENTION_DAYS),
                      logical=logical)]
    return out


def _log_group_logical(d: Declared, name: str) -> str:
    if name == f"/aws/lambda/{d.outputs.get('lambda_function_name')}":
        return d.logical("payment-logs")
    if name == f"/aws/lambda/{d.outputs.get('rotation_function_name')}":
        return d.logical("rotation-logs")
    return d.logical("flow-logs")


def function_key_checks(d: Declared, f: Facts) -> list[Check]:
    """Function environments encrypted with the stack's key, not Lambda's own."""
    key = d.outputs.get("kms_key_arn")
    out = []
    for name, fn in f.functions.items():
        arn = (fn or {}).get("Configuration", {}).get("KMSKeyArn")
        logical = d.logical("payment-fn" if name == d.outputs.get("lambda_function_name")
                            else "rotation-fn")
        out.append(check("lambda.env-cmk", LAMBDA_CMK, name, "the stack's KMS key",
                         "the stack's KMS key" if arn and arn == key else arn or "Lambda's own key",
                         ok=bool(arn) and arn == key, logical=logical))
    return out


def role_trust_checks(d: Declared, f: Facts) -> list[Check]:
    """Service roles trusted only on behalf of the stack's account (aws:SourceAccount or
    aws:SourceArn on every service statement): no cross-service confused deputy."""
    out = []
    for name, role in f.roles.items():
        doc = (role or {}).get("AssumeRolePolicyDocument") or {}
        if isinstance(doc, str):
            doc = json.loads(unquote(doc))
        stmts = doc.get("Statement", [])
        open_to = [s["Principal"]["Service"] for s in stmts if isinstance(s.get("Principal"), dict)
                   and "Service" in s["Principal"] and not _scoped(s)]
        out.append(check("iam.trust-scoped", CONFUSED_DEPUTY, name,
                         "service trust scoped by aws:SourceAccount/SourceArn",
                         "missing" if role is None else
                         f"unscoped: {', '.join(map(str, open_to))}" if open_to else
                         "service trust scoped by aws:SourceAccount/SourceArn",
                         ok=role is not None and not open_to, logical=_role_logical(d, name, f)))
    return out


def _scoped(statement: dict) -> bool:
    keys = {k.lower() for cond in (statement.get("Condition") or {}).values()
            if isinstance(cond, dict) for k in cond}
    return bool(keys & {"aws:sourceaccount", "aws:sourcearn", "aws:sourceorgid"})


def _role_logical(d: Declared, name: str, f: Facts) -> str:
    for fn_name, fn in f.functions.items():
        if fn and fn["Configuration"].get("Role", "").rsplit("/", 1)[-1] == name:
            return d.logical("payment-role" if fn_name == d.outputs.get("lambda_function_name")
                             else "rotation-role")
    return d.logical("flow-logs-role")
