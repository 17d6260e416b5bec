"""verify's checks of the data side's controls, judged as the controls define them: RDS.6
enhanced monitoring, RDS.38 TLS enforced by the cluster's parameter group, AWS Backup over the
cluster (plan, selection, vault key), the functions' dead-letter queue (and SQS.1 on it), and
the application secret's resource policy. The facts they need are read here (`read`), one
call per kind, then judged by pure functions with the judgements preflight uses
(preflight/data_controls.py), so an id means the same before and after deploy.

Where the sandbox's emulator cannot hold what is checked (moto 5.2 drops a function's
DeadLetterConfig and has no AWS Backup selections), the check reads `unverified` with a note
naming the gap: never a pass.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from ..controls import (BACKUP_PLAN, BACKUP_RETENTION, BACKUP_VAULT_KMS, LAMBDA_DLQ,
                        SECRET_POLICY)
from .checks import Check, Declared, check
from .facts import Facts, _optional
from .preflight.data_controls import (MONITORING_POLICY, MONITORING_SERVICE, judge_plan_rules,
                                      judge_secret_policy, judge_tls)

UNVERIFIED = "unverified"
MONITORING_POLICY_ARN = f"arn:aws:iam::aws:policy/service-role/{MONITORING_POLICY}"
SANDBOX = "sandbox"


@dataclass
class DataFacts:
    """What the data-side checks read beyond verify's shared facts."""

    account: str = ""
    monitoring_role: dict | None = None
    monitoring_policies: list[str] = field(default_factory=list)
    parameter_group: dict | None = None
    force_ssl: Any = None
    vault: dict | None = None
    plan: dict | None = None            # the BackupPlan document, or None
    plan_id: str | None = None
    selections: list[dict] | None = None   # None: the target could not list them
    selections_error: str = ""
    queue: dict | None = None           # the DLQ's attributes
    queue_arn: str | None = None
    secret_policy: Any = None
    master_secret_policy: Any = None    # the RDS-managed master secret's, or None (none set)
    on_sandbox: bool = False
    managed_policy_absent: bool = False    # the sandbox has not loaded AWS's managed policy
    storage: Any = None    # hardening_storage.StorageFacts (verify.judge reads it after these)


def read(clients: Callable[[str], Any], d: Declared, facts: Facts, target: str) -> DataFacts:
    """One read per kind, by the physical names the program gives (naming.py)."""
    account = (str(d.outputs.get("kms_key_arn") or "") + "::::::").split(":")[4]
    names = d.settings.physical_names(account)
    out = DataFacts(account=account, on_sandbox=target == SANDBOX)
    iam = clients("iam")
    out.monitoring_role = (_optional(iam.get_role, RoleName=names.monitoring_role)
                           or {}).get("Role")
    if out.monitoring_role:
        out.monitoring_policies = [p["PolicyArn"] for p in iam.list_attached_role_policies(
            RoleName=names.monitoring_role)["AttachedPolicies"]]
        out.managed_policy_absent = out.on_sandbox and _optional(
            iam.get_policy, PolicyArn=MONITORING_POLICY_ARN) is None
    group = (facts.cluster or {}).get("DBClusterParameterGroup")
    if group and not group.startswith("default."):
        rds = clients("rds")
        found = _optional(rds.describe_db_cluster_parameter_groups,
                          DBClusterParameterGroupName=group)
        out.parameter_group = (found or {}).get("DBClusterParameterGroups", [None])[0]
        if out.parameter_group:
            params = rds.describe_db_cluster_parameters(
                DBClusterParameterGroupName=group)["Parameters"]
            out.force_ssl = next((p.get("ParameterValue") for p in params
                                  if p["ParameterName"] == "rds.force_ssl"), None)
    backup = clients("backup")
    out.vault = next((v for v in backup.list_backup_vaults().get("BackupVaultList", [])
                      if v["BackupVaultName"] == names.backup_vault), None)
    plan = next((p for p in backup.list_backup_plans().get("BackupPlansList", [])
                 if p["BackupPlanName"] == names.backup_plan), None)
    if plan:
        out.plan_id = plan["BackupPlanId"]
        out.plan = backup.get_backup_plan(BackupPlanId=plan["BackupPlanId"])["BackupPlan"]
        try:
            out.selections = backup.list_backup_selections(
                BackupPlanId=plan["BackupPlanId"]).get("BackupSelectionsList", [])
            for s in out.selections:
                s["Resources"] = backup.get_backup_selection(
                    BackupPlanId=plan["BackupPlanId"], SelectionId=s["SelectionId"]
                )["BackupSelection"].get("Resources", [])
        except (ClientError, BotoCoreError) as exc:
            if not out.on_sandbox:
                raise
            out.selections_error = type(exc).__name__
    sqs = clients("sqs")
    url = (_optional(sqs.get_queue_url, QueueName=names.payment_dlq) or {}).get("QueueUrl")
    if url:
        out.queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        out.queue_arn = out.queue.get("QueueArn")
    secret = d.outputs.get("db_secret_arn")
    if secret:
        policy = (_optional(clients("secretsmanager").get_resource_policy, SecretId=secret)
                  or {}).get("ResourcePolicy")
        out.secret_policy = json.loads(policy) if policy else None
    master = (facts.master_secret or {}).get("ARN")
    if master:
        policy = (_optional(clients("secretsmanager").get_resource_policy, SecretId=master)
                  or {}).get("ResourcePolicy")
        out.master_secret_policy = json.loads(policy) if policy else None
    return out


# -- checks ----------------------------------------------------------------------------------
def monitoring_checks(d: Declared, f: Facts, x: DataFacts) -> list[Check]:
    """RDS.6 per instance: an interval and a role; the role trusted by the monitoring service
    for this account only, with AWS's enhanced monitoring policy."""
    out = []
    role_arn = (x.monitoring_role or {}).get("Arn")
    for i in f.instances:
        interval = i.get("MonitoringInterval") or 0
        ok = bool(interval) and bool(i.get("MonitoringRoleArn")) and \
            i.get("MonitoringRoleArn") == role_arn
        out.append(check("rds.enhanced-monitoring", "RDS.6", i["DBInstanceIdentifier"],
                         f"every {d.settings.db.monitoring_interval_s or 60} s, the stack's role",
                         f"every {interval} s" + (", the stack's role" if ok else
                                                  f", role {i.get('MonitoringRoleArn')}")
                         if interval else "off", ok=ok, logical=_instance_logical(d, i)))
    if x.monitoring_role is not None:
        doc = x.monitoring_role.get("AssumeRolePolicyDocument") or {}
        doc = json.loads(doc) if isinstance(doc, str) else doc
        scoped = [s for s in doc.get("Statement", [])
                  if MONITORING_SERVICE in json.dumps(s.get("Principal"))
                  and "aws:sourceaccount" in json.dumps(s.get("Condition") or {}).lower()]
        has_policy = any(p.endswith(f"/{MONITORING_POLICY}") for p in x.monitoring_policies)
        row = check("rds.monitoring-role", "RDS.6", x.monitoring_role.get("RoleName"),
                    f"trusts {MONITORING_SERVICE} (aws:SourceAccount), {MONITORING_POLICY}",
                    ("trust scoped" if scoped else "trust missing or unscoped") + ", " +
                    (MONITORING_POLICY if has_policy else
                     "policy not loaded in the emulator" if x.managed_policy_absent
                     else "policy not attached"),
                    ok=bool(scoped) and has_policy, logical=d.logical("rds-monitoring-role"))
        out.append(_unverified(row) if scoped and not has_policy and x.managed_policy_absent
                   else row)
    return out


def _instance_logical(d: Declared, instance: dict) -> str:
    """aurora-instance-<i>-<suffix> for the identifier <cluster>-<i+1> (naming.py)."""
    number = instance["DBInstanceIdentifier"].rsplit("-", 1)[-1]
    return d.logical(f"aurora-instance-{int(number) - 1}") if number.isdigit() else \
        d.logical("aurora-instance")


def tls_check(d: Declared, f: Facts, x: DataFacts) -> list[Check]:
    c = f.cluster or {}
    family = (x.parameter_group or {}).get("DBParameterGroupFamily")
    problem = judge_tls(family, c.get("EngineVersion", d.settings.db.engine_version),
                        x.force_ssl)
    return [check("rds.tls-enforced", "RDS.38", d.outputs.get("rds_cluster_id"),
                  "rds.force_ssl=1 in a group of the engine's family",
                  problem or "rds.force_ssl=1 in a group of the engine's family",
                  ok=problem is None, logical=d.logical("aurora-cluster"))]


def backup_checks(d: Declared, f: Facts, x: DataFacts) -> list[Check]:
    key = d.outputs.get("kms_key_arn")
    vault_key = (x.vault or {}).get("EncryptionKeyArn")
    out = [check("backup.vault-kms", BACKUP_VAULT_KMS, (x.vault or {}).get("BackupVaultName"),
                 "the stack's KMS key",
                 "missing" if x.vault is None else
                 "the stack's KMS key" if vault_key == key else vault_key or "none",
                 ok=x.vault is not None and vault_key == key, logical=d.logical("backup-vault"))]
    rules = [{"schedule": r.get("ScheduleExpression"),
              "delete_after": (r.get("Lifecycle") or {}).get("DeleteAfterDays")}
             for r in (x.plan or {}).get("Rules", [])]
    problem = "no plan" if x.plan is None else judge_plan_rules(rules)
    out.append(check("backup.plan", BACKUP_RETENTION, (x.plan or {}).get("BackupPlanName"),
                     "a daily rule keeping >= 35 days", problem or "a daily rule keeping >= 35 "
                     "days", ok=problem is None, logical=d.logical("backup-plan")))
    cluster_arn = (f.cluster or {}).get("DBClusterArn")
    expected = "a selection of the plan names the cluster"
    if x.plan is not None and x.selections is None:
        out.append(_unverified(check(
            "backup.cluster-protected", BACKUP_PLAN, d.outputs.get("rds_cluster_id"), expected,
            f"not readable on the sandbox ({x.selections_error}: the emulator has no AWS "
            "Backup selections)", ok=False, logical=d.logical("aurora-cluster"))))
    else:
        covered = any({cluster_arn, "*"} & set(s.get("Resources", []))
                      for s in x.selections or [])
        out.append(check("backup.cluster-protected", BACKUP_PLAN, d.outputs.get("rds_cluster_id"),
                         expected, expected if covered else
                         "no plan" if x.plan is None else "no selection names it",
                         ok=covered, logical=d.logical("aurora-cluster")))
    return out


def dlq_checks(d: Declared, f: Facts, x: DataFacts) -> list[Check]:
    """Every function (Prowler checks each) sends failed asynchronous events to the stack's
    encrypted queue."""
    out = []
    for name, fn in f.functions.items():
        conf = (fn or {}).get("Configuration", {})
        logical = d.logical("payment-fn" if name == d.outputs.get("lambda_function_name")
                            else "rotation-fn")
        target = (conf.get("DeadLetterConfig") or {}).get("TargetArn")
        if fn and "DeadLetterConfig" not in conf and x.on_sandbox:
            out.append(_unverified(check(
                "lambda.dead-letter-queue", LAMBDA_DLQ, name, "the stack's queue",
                "not reported by the sandbox (moto drops DeadLetterConfig)", ok=False,
                logical=logical)))
            continue
        out.append(check("lambda.dead-letter-queue", LAMBDA_DLQ, name, "the stack's queue",
                         "the stack's queue" if target and target == x.queue_arn
                         else target or "none", ok=bool(target) and target == x.queue_arn,
                         logical=logical))
    q = x.queue or {}
    encrypted = bool(q.get("KmsMasterKeyId")) or str(q.get("SqsManagedSseEnabled")).lower() == \
        "true"
    out.append(check("sqs.encrypted", "SQS.1", x.queue_arn, "encrypted at rest",
                     "missing" if x.queue is None else
                     f"KMS {q['KmsMasterKeyId']}" if q.get("KmsMasterKeyId") else
                     "SSE-SQS" if encrypted else "not encrypted",
                     ok=x.queue is not None and encrypted, logical=d.logical("payment-dlq")))
    return out


def secret_policy_check(d: Declared, f: Facts, x: DataFacts) -> list[Check]:
    """Every secret of the stack, the RDS-managed master secret too (Prowler judges each secret
    of the account): the program sets no policy on a secret RDS owns, so it fails, and an
    environment says why in a policy exception."""
    want = "Deny to all but the stack's principals"
    out = []
    for id_, secret, policy, logical in (
            ("secret.resource-policy", f.secret, x.secret_policy, "db-app-credentials"),
            ("secret.master-resource-policy", f.master_secret, x.master_secret_policy,
             "aurora-cluster")):
        if secret is None:
            continue
        problem = judge_secret_policy(policy, x.account) if policy else "no resource policy"
        out.append(check(id_, SECRET_POLICY, secret.get("Name"), want, problem or want,
                         ok=problem is None, logical=d.logical(logical)))
    return out


def _unverified(c: Check) -> Check:
    return replace(c, status=UNVERIFIED)


CHECKS = (monitoring_checks, tls_check, backup_checks, dlq_checks, secret_policy_check)


def data_hardening_checks(d: Declared, f: Facts) -> list[Check]:
    """verify's check family (ops/verify.CHECKS) on the data facts verify read with `read`
    into `f.data` (they are found by the physical names the stack's settings give)."""
    if f.data is None:
        return []
    return [c for family in CHECKS for c in family(d, f, f.data)]


def gap_note(statuses: pd.DataFrame) -> str | None:
    """The note for checks the target cannot answer (emulator gaps, never passes)."""
    gaps = sorted(set(statuses.loc[statuses["status"] == UNVERIFIED, "id"]))
    return (f"not verifiable on the sandbox (emulator gaps, not passes): {', '.join(gaps)}"
            if gaps else None)
