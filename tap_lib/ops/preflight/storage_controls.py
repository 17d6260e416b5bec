"""Preflight rules for the storage side's remaining controls, as Prowler 5.46 judges them:
the buckets (public write/read/list, cross-account grants, MFA delete, cross-region replication,
default encryption, event notifications), the secrets (not public, read by someone), the
dead-letter queue (not public) and AWS Backup (a plan, a vault, a report plan).

Table-driven: each control is one pure judgement over a plain view of a resource (`judge_*`,
returning the problem or None), applied here to views built from the synthesized program and
in verify (ops/hardening_storage.py) to views built from the live stack, so an id means the
same before and after deploy.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import (
    BUCKET,
    BUCKET_POLICY,
    CLUSTER,
    FUNCTION,
    PUBLIC_ACCESS_BLOCK,
    ROTATION,
    SECRET,
    SSE,
    VERSIONING,
    Context,
    Finding,
    _as_list,
    _attached,
    _statements,
    error,
    rule,
)
from .control_tables import TableControl, table_rule
from .data_controls import PLAN, QUEUE, SECRET_POLICY_TYPE, VAULT
from .securityhub import _severity

NOTIFICATION = ("aws:s3/bucketNotification:BucketNotification",)
REPLICATION = ("aws:s3/bucketReplicationConfig:BucketReplicationConfig",)
BUCKET_ACL = ("aws:s3/bucketAclV2:BucketAclV2", "aws:s3/bucketAcl:BucketAcl")
QUEUE_POLICY = ("aws:sqs/queuePolicy:QueuePolicy",)
REPORT_PLAN = ("aws:backup/reportPlan:ReportPlan",)

# Condition keys that tie a public principal to this account (Prowler's
# is_condition_block_restrictive): with one of them, "*" is not the world.
ACCOUNT_KEYS = {"aws:sourceaccount", "aws:sourceowner", "aws:principalaccount",
                "aws:resourceaccount", "aws:sourcearn", "aws:principalarn", "s3:resourceaccount"}
NETWORK_KEYS = {"aws:sourcevpc", "aws:sourcevpce", "aws:principalorgid", "aws:sourceorgid"}
PUBLIC_GROUPS = ("AllUsers", "AuthenticatedUsers")
# Prowler's s3_bucket_policy_public_write_access not_allowed_actions
WRITE_ACTIONS = {"*", "s3:*", "s3:putobject", "s3:deleteobject", "s3:put*", "s3:delete*"}
CANNED = {"public-read": [("AllUsers", "READ")],
          "public-read-write": [("AllUsers", "READ"), ("AllUsers", "WRITE")],
          "authenticated-read": [("AuthenticatedUsers", "READ")]}
MAX_DAYS_UNUSED = 90        # Prowler's max_days_secret_unused
REPORT_TEMPLATE = "BACKUP_JOB_REPORT"


# -- policy documents ------------------------------------------------------------------------
def _principals(principal: Any) -> list[str]:
    if isinstance(principal, dict):
        return [p for v in principal.values() for p in _as_list(v) if isinstance(p, str)]
    return [p for p in _as_list(principal) if isinstance(p, str)]


def _aws_principals(principal: Any) -> list[str]:
    if isinstance(principal, dict):
        return [p for k in ("AWS", "CanonicalUser") for p in _as_list(principal.get(k))
                if isinstance(p, str)]
    return [p for p in _as_list(principal) if isinstance(p, str)]


def restricted(condition: Any, account: str) -> bool:
    """The condition block confines the statement to this account (or a network or
    organisation of its own)."""
    for body in (condition or {}).values() if isinstance(condition, dict) else []:
        for key, value in (body or {}).items() if isinstance(body, dict) else []:
            k = key.lower()
            if k in NETWORK_KEYS:
                return True
            if k in ACCOUNT_KEYS and account and all(account in str(v) for v in _as_list(value)):
                return True
    return False


def public_statements(statements: list[dict], account: str,
                      actions: set[str] | None = None) -> list[dict]:
    """Allow statements to everyone ("*") that no condition confines to the account; with
    `actions`, only those allowing one of them (lower case, as IAM compares)."""
    out = []
    for s in statements:
        if s.get("Effect") != "Allow" or "*" not in _aws_principals(s.get("Principal")):
            continue
        if restricted(s.get("Condition"), account):
            continue
        if actions is not None and not {str(a).lower() for a in _as_list(s.get("Action"))} \
                & actions:
            continue
        out.append(s)
    return out


def foreign_principals(statements: list[dict], account: str) -> list[str]:
    """Principals of Allow statements outside this account (the world included)."""
    out = []
    for s in statements:
        if s.get("Effect") != "Allow":
            continue
        for p in _aws_principals(s.get("Principal")):
            if p == "*":
                if not restricted(s.get("Condition"), account):
                    out.append(p)
                continue
            owner = p if re.fullmatch(r"\d{12}", p) else (p.split(":") + [""] * 5)[4]
            if owner and owner != account:
                out.append(p)
    return out


# -- buckets ---------------------------------------------------------------------------------
@dataclass
class BucketView:
    """What the bucket controls read of one bucket, from the program or the live stack."""

    name: str
    logical: str
    account: str
    region: str
    public_access_block: dict | None     # {flag: bool}
    statements: list[dict]
    grants: list[tuple[str, str]]         # (grantee URI or group name, permission)
    versioning: str | None                # Enabled | Suspended | None
    mfa_delete: str | None                # Enabled | Disabled | None
    encryption: list[str]                 # default encryption algorithms
    notifications: list[str]              # the kinds of destination configured
    replication: list[dict]               # {"status", "destination", "region" (None: unknown)}


def _acl_closed(b: BucketView) -> bool:
    pab = b.public_access_block or {}
    return pab.get("ignorePublicAcls") is True and pab.get("restrictPublicBuckets") is True


def _public_grants(b: BucketView, permissions: set[str]) -> list[str]:
    return [f"{who.rsplit('/', 1)[-1]} {perm}" for who, perm in b.grants
            if any(g in who for g in PUBLIC_GROUPS) and perm in permissions]


def judge_public_write(b: BucketView) -> str | None:
    """S3.3 (Prowler's s3_bucket_policy_public_write_access and s3_bucket_public_write_acl):
    no policy statement or ACL grant lets the world write, unless the public access block
    restricts public buckets (and ignores public ACLs)."""
    problems = []
    if not (b.public_access_block or {}).get("restrictPublicBuckets"):
        problems += [f"policy statement {s.get('Sid') or '(no Sid)'} lets anyone write"
                     for s in public_statements(b.statements, b.account, WRITE_ACTIONS)]
    if not _acl_closed(b):
        problems += [f"ACL grants {g}" for g in _public_grants(
            b, {"FULL_CONTROL", "WRITE", "WRITE_ACP"})]
    return "; ".join(problems) or None


def judge_public_access(b: BucketView) -> str | None:
    """s3_bucket_public_access: public ACLs ignored and public buckets restricted by the block,
    or else neither an ACL grant nor a policy statement to the world."""
    if _acl_closed(b):
        return None
    problems = [f"ACL grants {g}" for g in _public_grants(
        b, {"FULL_CONTROL", "READ", "READ_ACP", "WRITE", "WRITE_ACP"})]
    problems += [f"policy statement {s.get('Sid') or '(no Sid)'} is public"
                 for s in public_statements(b.statements, b.account)]
    return "; ".join(problems) or None


def judge_public_list(b: BucketView) -> str | None:
    """s3_bucket_public_list_acl: no ACL grant lets the world list the bucket or read its
    ACL, unless the public access block ignores public ACLs and restricts public buckets."""
    if _acl_closed(b):
        return None
    found = _public_grants(b, {"FULL_CONTROL", "READ", "READ_ACP"})
    return ("ACL grants " + ", ".join(found)) if found else None


def judge_cross_account(b: BucketView) -> str | None:
    """S3.6/S3.7 (Prowler's s3_bucket_cross_account_access, mapped to both): the bucket
    policy allows no principal of another account, nor the world."""
    found = foreign_principals(b.statements, b.account)
    return f"the policy allows {', '.join(sorted(set(found)))}" if found else None


def judge_mfa_delete(b: BucketView) -> str | None:
    """S3.20: versioning with MFA delete enabled."""
    return None if b.mfa_delete == "Enabled" else f"MFA delete is {b.mfa_delete or 'off'}"


def judge_replication(b: BucketView) -> str | None:
    """s3_bucket_cross_region_replication: versioned, with an enabled replication rule to a
    bucket in another region."""
    if b.versioning != "Enabled":
        return "versioning is not enabled"
    rules = [r for r in b.replication if r.get("status") == "Enabled" and r.get("destination")]
    if any(r.get("region") and r["region"] != b.region for r in rules):
        return None
    if any(r.get("region") is None for r in rules):
        return "replicates to a bucket outside the stack: its region is unknown"
    return "replicates within its own region" if rules else "no replication rule"


def judge_default_encryption(b: BucketView) -> str | None:
    """s3_bucket_default_encryption: a default encryption configuration."""
    return None if b.encryption else "no default encryption"


def judge_notifications(b: BucketView) -> str | None:
    """s3_bucket_event_notifications_enabled: events go somewhere (EventBridge, SNS, SQS or
    Lambda)."""
    return None if b.notifications else "no event notification configuration"


BUCKET_CONTROLS = (
    TableControl("TAP401", "S3.3", "no-public-write", "s3.public-write",
                 "nobody outside may write", judge_public_write,
                 "keep the public access block's four flags on", False),
    TableControl("TAP402", "s3_bucket_public_access", "not-public", "s3.public-access",
                 "no public ACL or policy", judge_public_access,
                 "keep the public access block's four flags on", False),
    TableControl("TAP403", "s3_bucket_public_list_acl", "no-public-list", "s3.public-list-acl",
                 "no public list or ACL read", judge_public_list,
                 "keep BucketOwnerEnforced and the public access block", False),
    TableControl("TAP404", "S3.6/S3.7", "no-cross-account", "s3.cross-account",
                 "no principal of another account", judge_cross_account,
                 "name only this account's principals in the bucket policy", False),
    TableControl("TAP405", "S3.20", "mfa-delete", "s3.mfa-delete", "MFA delete Enabled",
                 judge_mfa_delete, "only the root user can enable MFA delete (with its MFA "
                                    "device); say so in a policy exception", True),
    TableControl("TAP406", "s3_bucket_cross_region_replication", "cross-region-replication",
                 "s3.cross-region-replication", "an enabled rule to another region",
                 judge_replication, "add BucketReplicationConfig to a bucket in another "
                                     "region, or a policy exception", True),
    TableControl("TAP407", "s3_bucket_default_encryption", "default-encryption",
                 "s3.default-encryption", "default encryption on", judge_default_encryption,
                 "add BucketServerSideEncryptionConfiguration", False),
    TableControl("TAP408", "s3_bucket_event_notifications_enabled", "event-notifications",
                 "s3.event-notifications", "events sent (EventBridge)", judge_notifications,
                 "add aws.s3.BucketNotification(eventbridge=True) (program/storage.py)", True),
)


def _grants_of(acl: dict) -> list[tuple[str, str]]:
    grants = [(g.get("grantee", {}).get("uri") or "", g.get("permission") or "")
              for g in (acl.get("accessControlPolicy") or {}).get("grants") or []]
    return grants + CANNED.get(acl.get("acl") or "", [])


def bucket_views(ctx: Context) -> list[BucketView]:
    """One view per bucket the program declares, from the resources attached to it."""
    account = _account_of(ctx)
    stack_buckets = {v for b in ctx.of(BUCKET)
                     for v in (b.outputs.get("arn"), b.id, b.inputs.get("bucket")) if v}
    views = []
    for b in ctx.of(BUCKET):
        pab = next(iter(_attached(ctx, b, PUBLIC_ACCESS_BLOCK)), None)
        versioning = next(iter(_attached(ctx, b, VERSIONING)), None)
        vconf = (versioning.inputs.get("versioningConfiguration") or {}) if versioning else {}
        notifications = []
        for n in _attached(ctx, b, NOTIFICATION):
            notifications += ["EventBridge"] * bool(n.inputs.get("eventbridge")) + [
                kind for kind in ("topics", "queues", "lambdaFunctions") if n.inputs.get(kind)]
        replication = [{"status": r.get("status"),
                        "destination": (r.get("destination") or {}).get("bucket"),
                        "region": ctx.settings.region
                        if (r.get("destination") or {}).get("bucket") in stack_buckets else None}
                       for c in _attached(ctx, b, REPLICATION) for r in c.inputs.get("rules") or []]
        views.append(BucketView(
            name=b.name, logical=b.name, account=account, region=ctx.settings.region,
            public_access_block={k: pab.inputs.get(k) for k in (
                "blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                "restrictPublicBuckets")} if pab else None,
            statements=[s for p in _attached(ctx, b, BUCKET_POLICY)
                        for s in _statements(p.inputs.get("policy"))],
            grants=[g for a in _attached(ctx, b, BUCKET_ACL) for g in _grants_of(a.inputs)]
            + CANNED.get(b.inputs.get("acl") or "", []),
            versioning=vconf.get("status"), mfa_delete=vconf.get("mfaDelete"),
            encryption=[(r.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
                        for c in _attached(ctx, b, SSE) for r in c.inputs.get("rules") or []],
            notifications=notifications, replication=replication))
    return views


def _account_of(ctx: Context) -> str:
    """The account the plan's ARNs name (the mock's, or the target's)."""
    for r in ctx.synthesis.registrations:
        parts = str(r.outputs.get("arn") or "").split(":")
        if len(parts) > 4 and parts[4].isdigit():
            return parts[4]
    return ""


for _spec in BUCKET_CONTROLS:
    table_rule(_spec, bucket_views, "bucket")


# -- secrets, the queue ----------------------------------------------------------------------
def judge_not_public(statements: list[dict] | None, account: str) -> str | None:
    """secretsmanager_not_publicly_accessible / sqs_queues_not_publicly_accessible: no Allow
    to everyone that a condition does not confine to the account. No policy: not public."""
    found = public_statements(statements or [], account)
    return (f"statement {found[0].get('Sid') or '(no Sid)'} allows everyone"
            if found else None)


def judge_secret_used(last_accessed, now) -> str | None:
    """secretsmanager_secret_unused: read within the last 90 days. `last_accessed`: a date or
    datetime (AWS reports the day), None: never."""
    if last_accessed is None:
        return "never accessed"
    days = (now - last_accessed).days
    return None if days <= MAX_DAYS_UNUSED else f"last accessed {days} days ago"


def _refs(reg) -> set:
    return {v for v in (reg.id, reg.inputs.get("name"), reg.outputs.get("arn"),
                        reg.outputs.get("id"), reg.outputs.get("url")) if v}


@rule("TAP411", "secretsmanager_not_publicly_accessible secret-not-public")
def secret_not_public(ctx: Context) -> list[Finding]:
    """A secret's resource policy that allows everyone hands the database credentials to any
    AWS account that asks."""
    account = _account_of(ctx)
    out = []
    for p in ctx.of(SECRET_POLICY_TYPE):
        problem = judge_not_public(_statements(p.inputs.get("policy")), account)
        if problem:
            secret = next((s.name for s in ctx.of(SECRET)
                           if p.inputs.get("secretArn") in _refs(s)), p.name)
            out.append(error(secret, problem, "deny everyone but the stack's principals "
                                              "(policies.secret_policy)"))
    return out


@rule("TAP412", "secretsmanager_secret_unused secret-used")
def secret_used(ctx: Context) -> list[Finding]:
    """A secret nothing reads is a credential nobody owns: no function of the stack names it
    in its environment and no rotation reads it, so it goes unused (and unrotated in
    practice). The master secret counts when RDS manages it: a function must name it."""
    env_values = {str(v) for f in ctx.of(FUNCTION)
                  for v in ((f.inputs.get("environment") or {}).get("variables") or {}).values()}
    rotated = {r.inputs.get("secretId") for r in ctx.of(ROTATION)}
    out = []
    for s in ctx.of(SECRET):
        if not (_refs(s) & (env_values | rotated)):
            out.append(_severity(ctx)(s.name, "no function or rotation of the stack reads it",
                                      "pass its ARN to the function that uses it, or remove it"))
    for c in ctx.of(CLUSTER):
        if c.inputs.get("manageMasterUserPassword") is not True:
            continue
        arns = {m.get("secretArn") for m in c.outputs.get("masterUserSecrets") or []} - {None}
        if arns and not arns & env_values:
            out.append(_severity(ctx)(c.name, "no function of the stack reads the RDS-managed "
                                              "master secret", "pass MASTER_SECRET_ARN to the "
                                                               "rotation function"))
    return out


@rule("TAP413", "sqs_queues_not_publicly_accessible queue-not-public")
def queue_not_public(ctx: Context) -> list[Finding]:
    """A queue policy that allows everyone lets any account read (and delete) the failed
    payment events, or flood the queue."""
    account = _account_of(ctx)
    out = []
    for q in ctx.of(QUEUE):
        docs = [q.inputs.get("policy")] + [p.inputs.get("policy") for p in ctx.of(QUEUE_POLICY)
                                           if p.inputs.get("queueUrl") in _refs(q)]
        problem = judge_not_public([s for d in docs if d for s in _statements(d)], account)
        if problem:
            out.append(error(q.name, problem, "name the stack's principals, or set no policy"))
    return out


# -- AWS Backup ------------------------------------------------------------------------------
def judge_exists(what: str, found: list) -> str | None:
    """backup_plans_exist / backup_vaults_exist / backup_reportplans_exist: the stack has one."""
    return None if found else f"no {what}"


@rule("TAP421", "backup_plans_exist backup-plan-exists")
def backup_plan_exists(ctx: Context) -> list[Finding]:
    """Without an AWS Backup plan nothing copies the database out of its own retention
    window."""
    problem = judge_exists("AWS Backup plan", ctx.of(PLAN))
    return [error("backup-plan", problem, "program/backup.py: build_backup")] if problem else []


@rule("TAP422", "backup_vaults_exist backup-vault-exists")
def backup_vault_exists(ctx: Context) -> list[Finding]:
    """Recovery points need a vault of the stack's own (encrypted with its key)."""
    problem = judge_exists("AWS Backup vault", ctx.of(VAULT))
    return [error("backup-vault", problem, "program/backup.py: build_backup")] if problem else []


@rule("TAP423", "backup_reportplans_exist backup-report-plan")
def backup_report_plan(ctx: Context) -> list[Finding]:
    """A backup job that fails every night is silent unless a report plan reports the jobs:
    the first anyone hears of it is the restore that finds nothing."""
    plans = ctx.of(PLAN)
    if not plans:
        return []     # Prowler judges report plans only where a backup plan exists
    reports = [r for r in ctx.of(REPORT_PLAN)
               if (r.inputs.get("reportSetting") or {}).get("reportTemplate")]
    problem = judge_exists("AWS Backup report plan", reports)
    return [_severity(ctx)(plans[0].name, problem,
                           f"declare aws.backup.ReportPlan ({REPORT_TEMPLATE}) "
                           "(program/backup.py)")] if problem else []
