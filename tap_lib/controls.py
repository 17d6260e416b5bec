"""The security controls tap judges, by the id an independent scanner reports them under.

One table, so that preflight, verify and a params file's policy exceptions agree on what a
control id means: an exception naming an id that is not here is an error (a typo would
otherwise except nothing and say nothing). Ids are Security Hub's (FSBP) where it has the
control, else Prowler's check id, else tap's own (`tap:`), which neither scanner has.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Control:
    id: str
    source: str        # securityhub | prowler | tap
    title: str


_TABLE = [
    # Security Hub (AWS Foundational Security Best Practices)
    ("RDS.2", "securityhub", "DB instances prohibit public access"),
    ("RDS.7", "securityhub", "DB clusters have deletion protection enabled"),
    ("RDS.9", "securityhub", "DB instances publish logs to CloudWatch Logs"),
    ("RDS.10", "securityhub", "IAM authentication is configured for DB instances"),
    ("RDS.11", "securityhub", "automatic backups retained at least 7 days"),
    ("RDS.12", "securityhub", "IAM authentication is configured for DB clusters"),
    ("RDS.15", "securityhub", "DB clusters are configured for multiple Availability Zones"),
    ("RDS.27", "securityhub", "DB clusters are encrypted at rest"),
    ("RDS.37", "securityhub", "Aurora PostgreSQL clusters publish logs to CloudWatch Logs"),
    ("S3.1", "securityhub", "account-level S3 Block Public Access"),
    ("S3.5", "securityhub", "buckets require requests to use TLS"),
    ("S3.8", "securityhub", "buckets block public access"),
    ("S3.9", "securityhub", "buckets have server access logging enabled"),
    ("S3.12", "securityhub", "ACLs are not used to manage user access to buckets"),
    ("S3.13", "securityhub", "buckets have lifecycle configurations"),
    ("S3.14", "securityhub", "buckets have versioning enabled"),
    ("S3.15", "securityhub", "buckets have Object Lock enabled"),
    ("S3.17", "securityhub", "buckets are encrypted at rest with KMS keys"),
    ("EC2.2", "securityhub", "VPC default security groups allow no inbound or outbound traffic"),
    ("EC2.6", "securityhub", "VPC flow logging is enabled"),
    ("EC2.10", "securityhub", "EC2 is configured to use VPC endpoints created for the EC2 service"),
    ("EC2.18", "securityhub", "security groups admit unrestricted traffic only on allowed ports"),
    ("EC2.21", "securityhub", "network ACLs admit no ingress from 0.0.0.0/0 to port 22 or 3389"),
    ("Lambda.5", "securityhub", "VPC Lambda functions operate in multiple Availability Zones"),
    ("SecretsManager.1", "securityhub", "secrets have automatic rotation enabled"),
    ("SecretsManager.4", "securityhub", "secrets are rotated within 90 days"),
    ("IAM.1", "securityhub", "policies allow no full '*:*' administrative privileges"),
    ("RDS.6", "securityhub", "enhanced monitoring is configured for DB instances"),
    ("RDS.38", "securityhub", "RDS for PostgreSQL connections are encrypted in transit"),
    ("SQS.1", "securityhub", "SQS queues are encrypted at rest"),
    # the storage side's remaining controls (preflight/rds_controls.py, storage_controls.py)
    ("RDS.1", "securityhub", "RDS snapshots are private"),
    ("RDS.3", "securityhub", "DB instances have encryption at rest enabled"),
    ("RDS.4", "securityhub", "DB cluster snapshots and database snapshots are encrypted"),
    ("RDS.5", "securityhub", "DB instances are configured with multiple Availability Zones"),
    ("RDS.8", "securityhub", "DB instances have deletion protection enabled"),
    ("RDS.13", "securityhub", "automatic minor version upgrades are enabled"),
    ("RDS.16", "securityhub", "DB clusters copy tags to snapshots"),
    ("RDS.18", "securityhub", "DB instances are deployed in a VPC"),
    ("RDS.23", "securityhub", "DB instances do not use a database engine default port"),
    ("RDS.24", "securityhub", "DB clusters use a custom administrator username"),
    ("RDS.25", "securityhub", "DB instances use a custom administrator username"),
    ("RDS.35", "securityhub", "Multi-AZ DB clusters upgrade minor versions automatically"),
    ("RDS.39", "securityhub", "connections are encrypted in transit (Prowler judges it by "
                              "rds_instance_transport_encrypted, as RDS.38)"),
    ("S3.3", "securityhub", "buckets prohibit public write access"),
    ("S3.6", "securityhub", "bucket policies restrict access to other AWS accounts"),
    ("S3.7", "securityhub", "cross-account access (Prowler judges it by "
                            "s3_bucket_cross_account_access, as S3.6)"),
    ("S3.20", "securityhub", "versioned buckets have MFA delete enabled"),
    # Prowler check ids, where FSBP has no control
    # (Security Hub's RDS.26 leaves out cluster members, so the cluster's is Prowler's)
    ("rds_cluster_protected_by_backup_plan", "prowler",
     "the DB cluster is protected by an AWS Backup plan"),
    ("backup_vaults_encrypted", "prowler", "AWS Backup vaults are encrypted with a KMS key"),
    ("awslambda_function_no_dead_letter_queue", "prowler",
     "Lambda functions have a dead-letter queue for failed asynchronous invokes"),
    ("secretsmanager_has_restrictive_resource_policy", "prowler",
     "secrets have a resource policy denying everyone but the principals that need them"),
    ("cloudwatch_log_group_kms_encryption_enabled", "prowler",
     "log groups are encrypted with a KMS key"),
    ("cloudwatch_log_group_retention_policy_specific_days_enabled", "prowler",
     "log groups keep events at least 365 days"),
    ("iam_role_cross_service_confused_deputy_prevention", "prowler",
     "service roles' trust policies prevent the cross-service confused deputy"),
    ("rds_cluster_non_default_port", "prowler", "DB clusters do not use the engine's default port"),
    ("rds_instance_deprecated_engine_version", "prowler",
     "DB instances run an engine version the region still offers"),
    ("rds_instance_extended_support", "prowler", "DB instances are not enrolled in RDS Extended "
                                                 "Support"),
    ("rds_instance_certificate_expiration", "prowler",
     "DB instances' CA certificates are valid for more than three months"),
    ("s3_bucket_cross_region_replication", "prowler",
     "buckets replicate to a bucket in another region"),
    ("s3_bucket_default_encryption", "prowler", "buckets have default encryption"),
    ("s3_bucket_event_notifications_enabled", "prowler", "buckets send event notifications"),
    ("s3_bucket_public_access", "prowler", "buckets are not public (ACL or policy)"),
    ("s3_bucket_public_list_acl", "prowler", "no ACL lets everyone list a bucket"),
    ("secretsmanager_not_publicly_accessible", "prowler",
     "no secret's resource policy allows everyone"),
    ("secretsmanager_secret_unused", "prowler", "secrets were read within 90 days"),
    ("sqs_queues_not_publicly_accessible", "prowler", "no queue policy allows everyone"),
    ("backup_plans_exist", "prowler", "an AWS Backup plan exists"),
    ("backup_vaults_exist", "prowler", "an AWS Backup vault exists"),
    ("backup_reportplans_exist", "prowler", "an AWS Backup report plan exists"),
    # tap's own (no scanner id)
    ("tap:backup-plan-retention", "tap",
     "the AWS Backup plan runs daily and keeps recovery points as long as the file asks"),
    ("tap:lambda-env-cmk", "tap",
     "Lambda environment variables are encrypted with the stack's customer-managed key"),
    ("tap:vpc-endpoints", "tap",
     "the Lambdas reach S3 and Secrets Manager through VPC endpoints, not the NAT"),
]

# the network, compute and identity controls (issue 19), one table in their own module
from .controls_compute import TABLE as _COMPUTE  # noqa: E402

_TABLE += _COMPUTE
CONTROLS: dict[str, Control] = {i: Control(i, source, title) for i, source, title in _TABLE}

SECRETS_MAX_ROTATION_DAYS = 90     # SecretsManager.4's default maxDaysSinceRotation
MIN_BACKUP_DAYS = 7                # RDS.11's default
MIN_LOG_RETENTION_DAYS = 365       # Prowler's default for the retention check

LOG_KMS = "cloudwatch_log_group_kms_encryption_enabled"
LOG_RETENTION = "cloudwatch_log_group_retention_policy_specific_days_enabled"
CONFUSED_DEPUTY = "iam_role_cross_service_confused_deputy_prevention"
LAMBDA_CMK = "tap:lambda-env-cmk"
BACKUP_PLAN = "rds_cluster_protected_by_backup_plan"
BACKUP_VAULT_KMS = "backup_vaults_encrypted"
BACKUP_RETENTION = "tap:backup-plan-retention"
LAMBDA_DLQ = "awslambda_function_no_dead_letter_queue"
SECRET_POLICY = "secretsmanager_has_restrictive_resource_policy"
VPC_ENDPOINTS = "tap:vpc-endpoints"
MIN_PROD_BACKUP_PLAN_DAYS = 35     # the payment stack's own floor on a protected stack


def controls_of(label: str) -> list[str]:
    """The control ids a rule, rule label or check names: 'TAP111 S3.1/S3.8 public-access-block'
    -> [S3.1, S3.8]; none for a rule that is not keyed to a control."""
    for token in (label or "").split():
        found = [c for c in token.split("/") if c in CONTROLS]
        if found:
            return found
    return []
