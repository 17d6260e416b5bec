"""Preflight rules for the data side's controls: enhanced monitoring, TLS enforced by the
cluster's parameter group, AWS Backup over the cluster, the functions' dead-letter queue and
the application secret's resource policy. Each id keeps the meaning it has in verify
(ops/hardening_data.py), where the shared judgements (`judge_*`) are reused on live facts."""
from __future__ import annotations

import re
from typing import Any

from ...controls import (BACKUP_PLAN, BACKUP_RETENTION, BACKUP_VAULT_KMS, LAMBDA_DLQ,
                         MIN_PROD_BACKUP_PLAN_DAYS, SECRET_POLICY)
from . import (CLUSTER, DB_INSTANCE, FUNCTION, IAM_ROLE, SECRET, Context, Finding, _as_list,
               _statements, error, rule)
from .prowler import _stack_keys
from .securityhub import _severity

PARAMETER_GROUP = ("aws:rds/clusterParameterGroup:ClusterParameterGroup",)
POLICY_ATTACHMENT = ("aws:iam/rolePolicyAttachment:RolePolicyAttachment",)
VAULT = ("aws:backup/vault:Vault",)
PLAN = ("aws:backup/plan:Plan",)
SELECTION = ("aws:backup/selection:Selection",)
QUEUE = ("aws:sqs/queue:Queue",)
SECRET_POLICY_TYPE = ("aws:secretsmanager/secretPolicy:SecretPolicy",)
MONITORING_SERVICE = "monitoring.rds.amazonaws.com"
MONITORING_POLICY = "AmazonRDSEnhancedMonitoringRole"
# A daily schedule: cron(minutes hours * * ? *) -- every day of month, every month, any weekday
DAILY = re.compile(r"^cron\(\s*\d{1,2}\s+\d{1,2}\s+\*\s+\*\s+\?\s+\*\s*\)$")


# -- judgements shared with verify (pure functions of plain values) ------------------------
def family_for(engine_version: str) -> str:
    return f"aurora-postgresql{str(engine_version).split('.')[0]}"


def judge_tls(family: str | None, engine_version: str, force_ssl: Any) -> str | None:
    """RDS.38 on Aurora PostgreSQL: the cluster's parameter group is of the engine's family and
    sets rds.force_ssl=1. The problem, or None."""
    if family is None:
        return "the cluster uses the default parameter group (rds.force_ssl=0)"
    if family != family_for(engine_version):
        return f"parameter group family {family}; the engine needs {family_for(engine_version)}"
    if str(force_ssl) != "1":
        return f"rds.force_ssl is {force_ssl if force_ssl is not None else 'unset (0)'}, not 1"
    return None


def judge_plan_rules(rules: list[dict]) -> str | None:
    """tap:backup-plan-retention: a daily rule keeping recovery points >= 35 days.
    `rules`: [{"schedule", "delete_after"}]."""
    daily = [r for r in rules if DAILY.match(str(r.get("schedule") or "").strip())]
    if not daily:
        return "no daily rule (schedules: " + (", ".join(
            str(r.get("schedule")) for r in rules) or "none") + ")"
    best = max((r.get("delete_after") or 0) for r in daily)   # 0/unset: never deleted
    if all(r.get("delete_after") for r in daily) and best < MIN_PROD_BACKUP_PLAN_DAYS:
        return f"daily recovery points kept {best:g} days; needs >= {MIN_PROD_BACKUP_PLAN_DAYS}"
    return None


def judge_secret_policy(policy: Any, account: str, allowed: set[str] | None = None
                        ) -> str | None:
    """secretsmanager_has_restrictive_resource_policy, as Prowler 5.46 reads it: a Deny of
    secretsmanager:* (or *) to Principal * unless aws:PrincipalArn is one of a list (the only
    condition), every listed principal of this account; no Allow to another account.
    `allowed`: the principals that may be listed (the stack's), when known."""
    stmts = _statements(policy)
    if not stmts:
        return "no resource policy"
    for s in stmts:
        if s.get("Effect") != "Allow":
            continue
        for p in _principals(s.get("Principal")):
            if p == "*" or (_is_iam(p) and p.split(":")[4] != account):
                return f"an Allow statement admits {p}"
    for s in stmts:
        cond = {op: {k.lower(): v for k, v in (body or {}).items()}
                for op, body in (s.get("Condition") or {}).items()}
        if s.get("Effect") != "Deny" or "*" not in _principals(s.get("Principal")) or \
                not {"*", "secretsmanager:*"} & set(_as_list(s.get("Action"))) or \
                set(cond) != {"StringNotEquals"} or \
                set(cond["StringNotEquals"]) != {"aws:principalarn"}:
            continue
        listed = _as_list(cond["StringNotEquals"]["aws:principalarn"])
        foreign = [p for p in listed if not _is_iam(p) or p.split(":")[4] != account
                   or "*" in p]
        if foreign:
            return f"the Deny spares principals outside the account or with wildcards: {foreign}"
        extra = sorted(set(listed) - allowed) if allowed is not None else []
        if extra:
            return f"the Deny spares principals the stack does not use: {extra}"
        return None
    return "no Deny of secretsmanager:* to everyone but a list of aws:PrincipalArn"


def _is_iam(arn: str) -> bool:
    parts = arn.split(":") if isinstance(arn, str) else []
    return len(parts) >= 6 and parts[0] == "arn" and parts[2] == "iam"


def _principals(principal: Any) -> list[str]:
    if isinstance(principal, dict):
        return [p for v in principal.values() for p in _as_list(v)]
    return [p for p in _as_list(principal) if isinstance(p, str)]


# -- rules -----------------------------------------------------------------------------------
def _refs(reg) -> set:
    return {v for v in (reg.id, reg.inputs.get("name"), reg.outputs.get("arn"),
                        reg.outputs.get("name")) if v}


@rule("TAP108", "RDS.6 enhanced-monitoring")
def rds_enhanced_monitoring(ctx: Context) -> list[Finding]:
    """RDS.6: without enhanced monitoring an instance's CPU steal, memory and I/O wait are
    invisible when the database slows payments down; the agent needs a role that
    monitoring.rds.amazonaws.com may assume for this account only, with AWS's policy."""
    roles = {r.outputs.get("arn"): r for r in ctx.of(IAM_ROLE) if r.outputs.get("arn")}
    attached = {(a.inputs.get("role"), a.inputs.get("policyArn")) for a in ctx.of(POLICY_ATTACHMENT)}
    out = []
    for i in ctx.of(DB_INSTANCE):
        interval = i.inputs.get("monitoringInterval") or 0
        if not interval:
            out.append(_severity(ctx)(i.name, "enhanced monitoring is off (interval 0)",
                                      f"set db.monitoring_interval_s (e.g. 60) in "
                                      f"{ctx.params_file}"))
            continue
        role = roles.get(i.inputs.get("monitoringRoleArn"))
        if role is None:
            out.append(error(i.name, "monitoring role is not one this stack declares",
                             "pass the stack's monitoring role as monitoring_role_arn"))
            continue
        trusted = [s for s in _statements(role.inputs.get("assumeRolePolicy"))
                   if MONITORING_SERVICE in _principals(s.get("Principal"))]
        if not trusted:
            out.append(error(role.name, f"monitoring role does not trust {MONITORING_SERVICE}",
                             f"assume_role_policy('{MONITORING_SERVICE}', account)"))
        if not any(r in _refs(role) and p.endswith(f"/{MONITORING_POLICY}")
                   for r, p in attached):
            out.append(error(role.name, f"monitoring role lacks {MONITORING_POLICY}",
                             "attach arn:aws:iam::aws:policy/service-role/"
                             f"{MONITORING_POLICY}"))
    return out


@rule("TAP109", "RDS.38 tls-enforced")
def rds_tls_enforced(ctx: Context) -> list[Finding]:
    """RDS.38: unless the cluster's parameter group sets rds.force_ssl=1, a client that never
    asks for TLS sends card data and the password in clear text, and nothing refuses it."""
    groups = {ref: g for g in ctx.of(PARAMETER_GROUP) for ref in _refs(g)}
    out = []
    for c in ctx.of(CLUSTER):
        group = groups.get(c.inputs.get("dbClusterParameterGroupName"))
        params = {p.get("name"): p.get("value")
                  for p in (group.inputs.get("parameters") if group else None) or []}
        problem = judge_tls(group.inputs.get("family") if group else None,
                            c.inputs.get("engineVersion", ""), params.get("rds.force_ssl"))
        if problem:
            out.append(error(c.name, problem,
                             "attach a ClusterParameterGroup of family "
                             f"{family_for(c.inputs.get('engineVersion', ''))} with "
                             "rds.force_ssl=1 (program/database.py)"))
    return out


@rule("TAP161", f"{BACKUP_PLAN} backup-plan")
def rds_backup_plan(ctx: Context) -> list[Finding]:
    """A cluster that no AWS Backup selection names has only RDS's own backups, which go with
    the cluster's retention window (Security Hub's RDS.26 does not cover cluster members)."""
    plans = {ref for p in ctx.of(PLAN) for ref in _refs(p)}
    out = []
    for c in ctx.of(CLUSTER):
        arn = c.outputs.get("arn")
        covered = [s for s in ctx.of(SELECTION) if s.inputs.get("planId") in plans and
                   ({arn, "*"} & set(s.inputs.get("resources") or []))]
        if not covered:
            out.append(error(c.name, "no AWS Backup selection of this stack's plans names the "
                                     "cluster", "program/backup.py: build_backup"))
    return out


@rule("TAP162", f"{BACKUP_VAULT_KMS} vault-kms")
def backup_vault_kms(ctx: Context) -> list[Finding]:
    """Recovery points hold the whole payment database: encrypted with the stack's key, whose
    use is logged and revocable, not AWS Backup's default key."""
    keys = _stack_keys(ctx)
    return [error(v.name, "vault is not encrypted with the stack's KMS key",
                  "set kms_key_arn=<stack key>.arn")
            for v in ctx.of(VAULT) if v.inputs.get("kmsKeyArn") not in keys]


@rule("TAP163", f"{BACKUP_RETENTION} backup-retention")
def backup_plan_retention(ctx: Context) -> list[Finding]:
    """A plan that is not daily, or deletes recovery points before 35 days, cannot restore a
    corruption found at the month's reconciliation."""
    out = []
    for p in ctx.of(PLAN):
        rules = [{"schedule": r.get("schedule"),
                  "delete_after": (r.get("lifecycle") or {}).get("deleteAfter")}
                 for r in p.inputs.get("rules") or []]
        problem = judge_plan_rules(rules)
        if problem:
            out.append(_severity(ctx)(p.name, problem,
                                      f"set backup.retention_days >= {MIN_PROD_BACKUP_PLAN_DAYS}"
                                      f" in {ctx.params_file}"))
    return out


@rule("TAP123", f"{LAMBDA_DLQ} dead-letter-queue")
def lambda_dead_letter_queue(ctx: Context) -> list[Finding]:
    """An asynchronous invoke that fails every retry is dropped unless the function has a
    dead-letter queue: a payment event lost without a trace. The queue must be this stack's."""
    queues = {ref for q in ctx.of(QUEUE) for ref in _refs(q)}
    out = []
    for f in ctx.of(FUNCTION):
        target = (f.inputs.get("deadLetterConfig") or {}).get("targetArn")
        if not target:
            out.append(_severity(ctx)(f.name, "function has no dead-letter queue",
                                      "set dead_letter_config={'target_arn': <queue>.arn}"))
        elif target not in queues:
            out.append(error(f.name, f"dead-letter target {target} is not declared by this "
                                     "stack", "use the stack's queue"))
    return out


@rule("TAP124", "SQS.1 queue-encrypted")
def sqs_encrypted(ctx: Context) -> list[Finding]:
    """SQS.1: failed payment events sit in the queue for days; encrypted at rest."""
    return [error(q.name, "queue is not encrypted at rest",
                  "set kms_master_key_id=<stack key>.arn")
            for q in ctx.of(QUEUE)
            if not q.inputs.get("kmsMasterKeyId") and q.inputs.get("sqsManagedSseEnabled")
            is not True]


@rule("TAP143", f"{SECRET_POLICY} secret-policy")
def secret_resource_policy(ctx: Context) -> list[Finding]:
    """An IAM policy elsewhere in the account (or a mistaken grant) can read the database
    credentials unless the secret itself denies everyone but the stack's functions."""
    policies = ctx.of(SECRET_POLICY_TYPE)
    out = []
    for secret in ctx.of(SECRET):
        mine = [p for p in policies if p.inputs.get("secretArn") in _refs(secret)]
        account = (str(secret.outputs.get("arn") or "") + "::::::").split(":")[4]
        problem = ("no resource policy" if not mine else
                   judge_secret_policy(mine[0].inputs.get("policy"), account))
        if problem:
            out.append(error(secret.name, problem,
                             "declare aws.secretsmanager.SecretPolicy with "
                             "policies.secret_policy(secret.arn, [the stack's roles])"))
    return out
