"""AWS Backup over the Aurora cluster: a vault encrypted with the stack's key, a daily plan and
a selection naming the cluster, with the service role AWS Backup assumes.

RDS's own automated backups (RDS.11) die with the cluster's retention window and its account;
an AWS Backup plan (Prowler rds_cluster_protected_by_backup_plan; Security Hub's RDS.26 leaves
out cluster members) keeps recovery points in a vault of their own, for backup.retention_days.
A report plan (backup_reportplans_exist) writes the daily job report to the access-log bucket,
so a job that fails every night is on record before a restore finds nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from ..config import Settings
from ..naming import PhysicalNames
from .database import Database
from .policies import assume_role_policy
from .storage import BACKUP_REPORT_PREFIX

# Daily at 03:00 UTC, after RDS's own backup window (02:00-03:00, database.py).
SCHEDULE = "cron(0 3 * * ? *)"
BACKUP_POLICY_ARN = ("arn:aws:iam::aws:policy/service-role/"
                     "AWSBackupServiceRolePolicyForBackup")
RESTORE_POLICY_ARN = ("arn:aws:iam::aws:policy/service-role/"
                      "AWSBackupServiceRolePolicyForRestores")
REPORT_TEMPLATE = "BACKUP_JOB_REPORT"


def report_plan_name(backup_plan: str) -> str:
    """Report plan names allow letters, digits and underscores only: the backup plan's name in
    that charset (ops/hardening_storage.report_plan_name, which verify looks for, agrees)."""
    return backup_plan.replace("-", "_").replace(".", "_")


@dataclass
class Backup:
    vault: aws.backup.Vault
    plan: aws.backup.Plan
    selection: aws.backup.Selection
    role: aws.iam.Role
    report_plan: aws.backup.ReportPlan


def build_backup(s: Settings, names: PhysicalNames, db: Database, kms_key: aws.kms.Key,
                 account: str, opts: pulumi.ResourceOptions,
                 report_bucket: aws.s3.Bucket | None = None) -> Backup:
    tags = s.all_tags()
    sfx = s.suffix
    # backup_vaults_encrypted: recovery points encrypted with the stack's key, not AWS's.
    vault = aws.backup.Vault(f"backup-vault-{sfx}", name=names.backup_vault,
                             kms_key_arn=kms_key.arn,
                             force_destroy=not s.db.deletion_protection, tags=tags, opts=opts)
    plan = aws.backup.Plan(
        f"backup-plan-{sfx}", name=names.backup_plan,
        rules=[{"rule_name": "daily", "target_vault_name": vault.name, "schedule": SCHEDULE,
                "start_window": 60, "completion_window": 180,
                "lifecycle": {"delete_after": s.backup.retention_days}}],
        tags=tags, opts=opts)
    role = aws.iam.Role(f"backup-role-{sfx}", name=names.backup_role,
                        assume_role_policy=assume_role_policy("backup.amazonaws.com", account),
                        tags=tags, opts=opts)
    for what, arn in (("backup", BACKUP_POLICY_ARN), ("restore", RESTORE_POLICY_ARN)):
        aws.iam.RolePolicyAttachment(f"backup-role-{what}-{sfx}", role=role.name,
                                     policy_arn=arn, opts=opts)
    selection = aws.backup.Selection(
        f"backup-selection-{sfx}", name=names.backup_selection, plan_id=plan.id,
        iam_role_arn=role.arn, resources=[db.cluster.arn], opts=opts)
    # Delivered to the access-log bucket, whose policy lets AWS Backup's reports role write
    # under BACKUP_REPORT_PREFIX (storage.backup_reports_statement).
    report_plan = aws.backup.ReportPlan(
        f"backup-report-plan-{sfx}", name=report_plan_name(names.backup_plan),
        description=f"daily AWS Backup job report of {names.backup_plan}",
        report_delivery_channel={"s3_bucket_name": report_bucket.bucket if report_bucket
                                 else names.s3_access_log_bucket,
                                 "s3_key_prefix": BACKUP_REPORT_PREFIX, "formats": ["CSV"]},
        report_setting={"report_template": REPORT_TEMPLATE}, tags=tags, opts=opts)
    return Backup(vault, plan, selection, role, report_plan)
