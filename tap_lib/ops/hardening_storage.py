"""verify's checks of the storage side's remaining controls (the database's instances,
cluster and snapshots; the buckets; the secrets and the queue not public; AWS Backup's plan,
vault and report plan), judged by the same table and pure judgements as preflight
(preflight/rds_controls.py, preflight/storage_controls.py) over views of the live stack.

The few facts verify's shared reading lacks (MFA delete, ACL grants, notifications,
replication of each bucket; the database's snapshots and offered versions; the report plans)
are read here, one call per kind. What the sandbox's emulator cannot report (moto keeps no
LastAccessedDate on secrets, no certificate details on instances) reads `unverified`, never a
pass.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .checks import Check, Declared, check
from .facts import BucketFacts, Facts, _optional
from .preflight.control_tables import Unknown
from .preflight.rds_controls import CLUSTER_CONTROLS, INSTANCE_CONTROLS, ClusterView, InstanceView
from .preflight.storage_controls import (
    BUCKET_CONTROLS,
    BucketView,
    judge_exists,
    judge_not_public,
    judge_secret_used,
)

UNVERIFIED = "unverified"


@dataclass
class StorageFacts:
    """What these checks read beyond verify's shared facts (see the module docstring)."""

    buckets: dict[str, dict] = field(default_factory=dict)    # name -> extra bucket facts
    snapshots: list[dict] = field(default_factory=list)       # {"id", "encrypted", "public"}
    offered: list[str] | None = None
    offered_note: str = ""
    report_plans: list[dict] | None = None     # None: the target could not list them
    report_plans_note: str = ""


def _bucket_extra(s3: Any, name: str, known: BucketFacts | None) -> dict:
    """MFA delete is read with versioning by facts.py (BucketFacts.mfa_delete) for the
    buckets it reads; asked here only for a bucket it does not."""
    if known is not None:
        versioning = {"MFADelete": known.mfa_delete}
    else:
        versioning = _optional(s3.get_bucket_versioning, Bucket=name) or {}
    acl = _optional(s3.get_bucket_acl, Bucket=name) or {}
    notes = _optional(s3.get_bucket_notification_configuration, Bucket=name) or {}
    replication = (_optional(s3.get_bucket_replication, Bucket=name) or {}).get(
        "ReplicationConfiguration") or {}
    return {"mfa_delete": versioning.get("MFADelete"),
            "grants": [((g.get("Grantee") or {}).get("URI") or "", g.get("Permission") or "")
                       for g in acl.get("Grants", [])],
            "notifications": [k for k in ("TopicConfigurations", "QueueConfigurations",
                                          "LambdaFunctionConfigurations",
                                          "EventBridgeConfiguration") if k in notes],
            "replication": [{"status": r.get("Status"),
                             "destination": (r.get("Destination") or {}).get("Bucket")}
                            for r in replication.get("Rules", [])]}


def read(clients: Callable[[str], Any], d: Declared, facts: Facts, on_sandbox: bool
         ) -> StorageFacts:
    out = StorageFacts()
    s3 = clients("s3")
    known = {d.outputs.get("s3_bucket_name"): facts.bucket,
             d.outputs.get("s3_access_log_bucket_name"): facts.access_logs}
    for name in _bucket_names(d):
        out.buckets[name] = _bucket_extra(s3, name, known.get(name))
    rds = clients("rds")
    cid = d.outputs.get("rds_cluster_id")
    if facts.cluster:
        for s in rds.describe_db_cluster_snapshots(DBClusterIdentifier=cid).get(
                "DBClusterSnapshots", []):
            out.snapshots.append(_snapshot(rds, s, "DBClusterSnapshotIdentifier", True))
    ids = [i["DBInstanceIdentifier"] for i in facts.instances]
    if ids:
        for s in rds.describe_db_snapshots(Filters=[{"Name": "db-instance-id", "Values": ids}]
                                           ).get("DBSnapshots", []):
            out.snapshots.append(_snapshot(rds, s, "DBSnapshotIdentifier", False))
    engine = (facts.cluster or {}).get("Engine") or "aurora-postgresql"
    version = (facts.cluster or {}).get("EngineVersion") or d.settings.db.engine_version
    try:
        found = rds.describe_db_engine_versions(Engine=engine, EngineVersion=version)
        out.offered = [v["EngineVersion"] for v in found.get("DBEngineVersions", [])]
    except (ClientError, BotoCoreError) as exc:
        if not on_sandbox:
            raise
        out.offered_note = f"the emulator's DescribeDBEngineVersions failed: {type(exc).__name__}"
    try:
        out.report_plans = clients("backup").list_report_plans().get("ReportPlans", [])
    except (ClientError, BotoCoreError) as exc:
        if not on_sandbox:
            raise
        out.report_plans_note = type(exc).__name__
    return out


def _snapshot(rds: Any, s: dict, key: str, cluster: bool) -> dict:
    """Manual snapshots can be shared: their restore attribute says with whom ("all")."""
    public = False
    if s.get("SnapshotType") == "manual":
        if cluster:
            attrs = rds.describe_db_cluster_snapshot_attributes(
                DBClusterSnapshotIdentifier=s[key])["DBClusterSnapshotAttributesResult"][
                "DBClusterSnapshotAttributes"]
        else:
            attrs = rds.describe_db_snapshot_attributes(DBSnapshotIdentifier=s[key])[
                "DBSnapshotAttributesResult"]["DBSnapshotAttributes"]
        public = any("all" in (a.get("AttributeValues") or []) for a in attrs
                     if a.get("AttributeName") == "restore")
    # a cluster snapshot says StorageEncrypted, an instance snapshot Encrypted
    return {"id": s[key], "encrypted": s.get("StorageEncrypted" if cluster else "Encrypted"),
            "public": public}


def _bucket_names(d: Declared) -> list[str]:
    return [n for n in (d.outputs.get("s3_bucket_name"), d.outputs.get("s3_access_log_bucket_name"))
            if n]


# -- views of the live stack -----------------------------------------------------------------
def bucket_views(d: Declared, f: Facts, x: StorageFacts, account: str) -> list[BucketView]:
    region = d.settings.region
    names = _bucket_names(d)
    facts_of = {d.outputs.get("s3_bucket_name"): (f.bucket, "transaction-logs"),
                d.outputs.get("s3_access_log_bucket_name"): (f.access_logs, "access-logs")}
    views = []
    for name in names:
        b, logical = facts_of[name]
        b = b or BucketFacts()
        extra = x.buckets.get(name, {})
        views.append(BucketView(
            name=name, logical=d.logical(logical), account=account, region=region,
            # AWS's keys (IgnorePublicAcls) as the program's inputs name them
            public_access_block=None if b.public_access_block is None else {
                k[:1].lower() + k[1:]: v for k, v in b.public_access_block.items()},
            statements=(b.policy or {}).get("Statement", []) if isinstance(
                (b.policy or {}).get("Statement", []), list) else [b.policy["Statement"]],
            grants=extra.get("grants", []), versioning=b.versioning,
            mfa_delete=extra.get("mfa_delete"),
            encryption=[(r.get("ApplyServerSideEncryptionByDefault") or {}).get("SSEAlgorithm")
                        for r in b.encryption or []],
            notifications=extra.get("notifications", []),
            replication=[{**r, "region": region if str(r.get("destination") or "")
                          .rsplit(":", 1)[-1] in names else None}
                         for r in extra.get("replication", [])]))
    return views


def rds_views(d: Declared, f: Facts, x: StorageFacts) -> tuple[ClusterView | None,
                                                                 list[InstanceView]]:
    from .hardening_data import _instance_logical
    c = f.cluster
    if c is None:
        return None, []
    zones = [i.get("AvailabilityZone") for i in f.instances]
    cluster = ClusterView(c.get("DBClusterIdentifier"), d.logical("aurora-cluster"),
                          c.get("Engine") or "", c.get("Port"), c.get("MasterUsername"),
                          c.get("CopyTagsToSnapshot"), x.snapshots,
                          multi_az=bool(c.get("MultiAZ")) or len({z for z in zones if z}) > 1,
                          auto_minor_upgrade=c.get("AutoMinorVersionUpgrade"))
    instances = [InstanceView(
        name=i["DBInstanceIdentifier"], logical=_instance_logical(d, i),
        engine=i.get("Engine") or cluster.engine, zones=zones,
        auto_minor_upgrade=i.get("AutoMinorVersionUpgrade"),
        vpc=(i.get("DBSubnetGroup") or {}).get("VpcId"),
        port=(i.get("Endpoint") or {}).get("Port") or c.get("Port"),
        username=c.get("MasterUsername"), encrypted=i.get("StorageEncrypted"),
        deletion_protection=c.get("DeletionProtection"),
        version=i.get("EngineVersion") or c.get("EngineVersion") or "",
        offered=x.offered, offered_note=x.offered_note,
        lifecycle=i.get("EngineLifecycleSupport") or c.get("EngineLifecycleSupport"),
        ca=i.get("CACertificateIdentifier"),
        cert_valid_till=(i.get("CertificateDetails") or {}).get("ValidTill"))
        for i in f.instances]
    return cluster, instances


# -- checks ----------------------------------------------------------------------------------
def _row(spec, view, on_sandbox: bool) -> Check:
    problem = spec.judge(view)
    row = check(spec.check, spec.controls, view.name, spec.expected, problem or spec.expected,
                ok=problem is None, logical=view.logical)
    # what the emulator cannot report is not the stack's failure, nor a pass
    if on_sandbox and isinstance(problem, Unknown):
        return replace(row, status=UNVERIFIED)
    return row


def rds_checks(d: Declared, f: Facts, x: StorageFacts, on_sandbox: bool) -> list[Check]:
    cluster, instances = rds_views(d, f, x)
    if cluster is None:
        return []
    return [_row(spec, i, on_sandbox) for spec in INSTANCE_CONTROLS for i in instances] + \
        [_row(spec, cluster, on_sandbox) for spec in CLUSTER_CONTROLS]


def bucket_checks(d: Declared, f: Facts, x: StorageFacts, account: str) -> list[Check]:
    return [_row(spec, b, False) for spec in BUCKET_CONTROLS
            for b in bucket_views(d, f, x, account)]


def secret_and_queue_checks(d: Declared, f: Facts, data: Any) -> list[Check]:
    """Not public (each secret, the RDS-managed master secret too, and the dead-letter
    queue); each secret read within 90 days (moto never reports LastAccessedDate: unverified
    there)."""
    out = []
    now = dt.datetime.now(dt.timezone.utc)
    for prefix, secret, policy, logical in (
            ("secret", f.secret, data.secret_policy, "db-app-credentials"),
            ("secret.master", f.master_secret, data.master_secret_policy, "aurora-cluster")):
        if secret is None:
            continue
        statements = (policy or {}).get("Statement", [])
        statements = statements if isinstance(statements, list) else [statements]
        problem = judge_not_public(statements, data.account)
        out.append(check(f"{prefix}.not-public", "secretsmanager_not_publicly_accessible",
                         secret.get("Name"), "no Allow to everyone",
                         problem or ("no Allow to everyone" if policy else "no resource policy"),
                         ok=problem is None, logical=d.logical(logical)))
        last = secret.get("LastAccessedDate")
        problem = judge_secret_used(last, now)
        row = check(f"{prefix}.used", "secretsmanager_secret_unused", secret.get("Name"),
                    "read within 90 days", problem or "read within 90 days",
                    ok=problem is None, logical=d.logical(logical))
        out.append(replace(row, actual="not reported by the sandbox (moto keeps no "
                                       "LastAccessedDate)", status=UNVERIFIED)
                   if last is None and data.on_sandbox else row)
    queue = data.queue
    if queue is not None:
        policy = queue.get("Policy")
        doc = json.loads(policy) if isinstance(policy, str) and policy else policy or {}
        statements = doc.get("Statement", [])
        statements = statements if isinstance(statements, list) else [statements]
        problem = judge_not_public(statements, data.account)
        out.append(check("sqs.not-public", "sqs_queues_not_publicly_accessible", data.queue_arn,
                         "no Allow to everyone", problem or "no Allow to everyone",
                         ok=problem is None, logical=d.logical("payment-dlq")))
    return out


def backup_exist_checks(d: Declared, f: Facts, data: Any, x: StorageFacts) -> list[Check]:
    plan, vault = data.plan, data.vault
    out = [check("backup.plan-exists", "backup_plans_exist", (plan or {}).get("BackupPlanName"),
                 "the stack's plan", "the stack's plan" if plan else "no AWS Backup plan",
                 ok=plan is not None, logical=d.logical("backup-plan")),
           check("backup.vault-exists", "backup_vaults_exist",
                 (vault or {}).get("BackupVaultName"), "the stack's vault",
                 "the stack's vault" if vault else "no AWS Backup vault",
                 ok=vault is not None, logical=d.logical("backup-vault"))]
    if plan is None:
        return out       # Prowler judges report plans only where a backup plan exists
    name = report_plan_name(d.settings.physical_names(data.account).backup_plan)
    if x.report_plans is None:
        out.append(check("backup.report-plan", "backup_reportplans_exist", name,
                         "the stack's report plan", f"not readable ({x.report_plans_note})",
                         ok=False, logical=d.logical("backup-plan")))
        return out
    found = [p for p in x.report_plans if p.get("ReportPlanName") == name]
    problem = judge_exists("AWS Backup report plan", found)
    out.append(check("backup.report-plan", "backup_reportplans_exist", name,
                     "the stack's report plan", problem or "the stack's report plan",
                     ok=problem is None, logical=d.logical("backup-plan")))
    return out


def report_plan_name(backup_plan: str) -> str:
    """The report plan's physical name: the backup plan's in AWS's charset for report plans
    (letters, digits, underscores); program/backup.py names it the same way."""
    return backup_plan.replace("-", "_").replace(".", "_")


def tls_in_transit_check(d: Declared, f: Facts, data: Any) -> list[Check]:
    """RDS.39: Prowler judges it by rds_instance_transport_encrypted, as RDS.38; the same
    judgement (hardening_data.tls_check) under its own id."""
    from .hardening_data import tls_check
    return [replace(c, id="rds.tls-in-transit", control="RDS.39")
            for c in tls_check(d, f, data)]


def storage_checks(d: Declared, f: Facts) -> list[Check]:
    """verify's check family (ops/verify.CHECKS): needs the data facts verify read into
    `f.data` (verify.judge reads these after them, into `f.data.storage`)."""
    data = f.data
    x = getattr(data, "storage", None)
    if data is None or x is None:
        return []
    return (rds_checks(d, f, x, data.on_sandbox) + bucket_checks(d, f, x, data.account)
            + secret_and_queue_checks(d, f, data) + backup_exist_checks(d, f, data, x)
            + tls_in_transit_check(d, f, data))
