"""The transaction-log bucket (stable name, versioned, SSE-KMS, private, TLS-only, lifecycle,
Object Lock, ACLs disabled, server access logs) and the bucket its access logs go to."""
from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from ..config import Settings
from ..naming import PhysicalNames
from .policies import tls_only_bucket_policy

ACCESS_LOG_PREFIX = "transaction-logs/"
LOGGING_SERVICE = "logging.s3.amazonaws.com"
BACKUP_REPORT_PREFIX = "backup-reports"
BACKUP_REPORTS_ROLE = ("arn:aws:iam::{account}:role/aws-service-role/"
                       "reports.backup.amazonaws.com/AWSServiceRoleForBackupReports")


def access_log_bucket_policy(log_bucket_arn: str, source_bucket_arn: str, account: str) -> str:
    """TLS only, and S3 log delivery may write under the prefix for the transaction-log bucket
    of this account only (no ACL grant: the bucket enforces bucket-owner ownership). AWS
    Backup's report plan (program/backup.py) delivers its job reports here too."""
    doc = json.loads(tls_only_bucket_policy(log_bucket_arn))
    doc["Statement"].append({
        "Sid": "S3ServerAccessLogsDelivery", "Effect": "Allow",
        "Principal": {"Service": LOGGING_SERVICE}, "Action": "s3:PutObject",
        # one ARN, not a list: the form S3 (and the emulator) recognise as the logging grant
        "Resource": f"{log_bucket_arn}/{ACCESS_LOG_PREFIX}*",
        "Condition": {"ArnLike": {"aws:SourceArn": source_bucket_arn},
                      "StringEquals": {"aws:SourceAccount": account}}})
    doc["Statement"].append(backup_reports_statement(log_bucket_arn, account))
    return json.dumps(doc)


def backup_reports_statement(log_bucket_arn: str, account: str) -> dict:
    """AWS Backup Audit Manager writes report plans' reports as its service-linked role
    AWSServiceRoleForBackupReports. The principal is the account and the role is named in a
    condition (not as the principal): a policy naming a role that does not exist yet is
    refused, and AWS creates the service-linked role with the first report plan."""
    return {"Sid": "BackupReportsDelivery", "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "s3:PutObject",
            "Resource": f"{log_bucket_arn}/{BACKUP_REPORT_PREFIX}/*",
            "Condition": {"ArnLike": {"aws:PrincipalArn": BACKUP_REPORTS_ROLE.format(
                account=account)},
                "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}}}


def _events_to_eventbridge(prefix: str, sfx: str, bucket: aws.s3.Bucket,
                           opts: pulumi.ResourceOptions) -> aws.s3.BucketNotification:
    """s3_bucket_event_notifications_enabled: the bucket's object events go to EventBridge
    (no charge for S3's delivery; rules can be added there without touching the bucket)."""
    return aws.s3.BucketNotification(f"{prefix}-events-{sfx}", bucket=bucket.id,
                                     eventbridge=True, opts=opts)


def _private(prefix: str, sfx: str, bucket: aws.s3.Bucket, opts: pulumi.ResourceOptions
             ) -> aws.s3.BucketPublicAccessBlock:
    """S3.8 public access block and S3.12 ACLs disabled (BucketOwnerEnforced): the bucket
    owner owns every object, and no ACL can grant anything."""
    aws.s3.BucketOwnershipControls(
        f"{prefix}-ownership-{sfx}", bucket=bucket.id,
        rule={"object_ownership": "BucketOwnerEnforced"}, opts=opts)
    return aws.s3.BucketPublicAccessBlock(
        f"{prefix}-pab-{sfx}", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
        ignore_public_acls=True, restrict_public_buckets=True, opts=opts)


def build_access_log_bucket(s: Settings, names: PhysicalNames, opts: pulumi.ResourceOptions
                            ) -> aws.s3.Bucket:
    """Where S3 delivers the transaction-log bucket's server access logs (S3.9). Encrypted with
    SSE-S3: S3 server access logging delivers only to targets whose default encryption is
    SSE-S3 (AWS S3 User Guide, "Enabling Amazon S3 server access logging"), and the target may
    carry no Object Lock default retention. It logs nowhere itself (S3.9). S3.17 and S3.9 are
    policy exceptions for it in the params files."""
    sfx = s.suffix
    # S3.15: Object Lock on, with no default retention (a log target may not have one); the
    # ignore as for the transaction logs: an existing bucket is not replaced for it.
    bucket = aws.s3.Bucket(f"access-logs-{sfx}", bucket=names.s3_access_log_bucket,
                           object_lock_enabled=True, force_destroy=not s.db.deletion_protection,
                           tags=s.all_tags(), opts=pulumi.ResourceOptions.merge(
                               opts, pulumi.ResourceOptions(ignore_changes=["objectLockEnabled"])))
    aws.s3.BucketVersioning(f"access-logs-versioning-{sfx}", bucket=bucket.id,
                            versioning_configuration={"status": "Enabled"}, opts=opts)
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"access-logs-sse-{sfx}", bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
        opts=opts)
    _private("access-logs", sfx, bucket, opts)
    _events_to_eventbridge("access-logs", sfx, bucket, opts)
    aws.s3.BucketLifecycleConfiguration(
        f"access-logs-lifecycle-{sfx}", bucket=bucket.id,
        rules=[{
            "id": "access-log-retention", "status": "Enabled", "filter": {"prefix": ""},
            "expiration": {"days": s.bucket.access_log_days},
            "noncurrent_version_expiration": {"noncurrent_days": 30},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
        }], opts=opts)
    return bucket


def build_bucket(s: Settings, names: PhysicalNames, kms_key: aws.kms.Key,
                 log_bucket: aws.s3.Bucket, account: str,
                 opts: pulumi.ResourceOptions) -> aws.s3.Bucket:
    sfx = s.suffix
    # S3.15: Object Lock is set when a bucket is created (object_lock_enabled is ForceNew).
    # A bucket deployed before this ignores it, so it is never replaced with its logs; the
    # BucketObjectLockConfiguration below then enables Object Lock on it in place, which S3
    # allows on a versioned bucket (PutObjectLockConfiguration with ObjectLockEnabled).
    bucket = aws.s3.Bucket(
        f"transaction-logs-{sfx}", bucket=names.s3_bucket, object_lock_enabled=True,
        force_destroy=not s.db.deletion_protection, tags=s.all_tags(),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
            ignore_changes=["objectLockEnabled"])))
    versioning = aws.s3.BucketVersioning(
        f"transaction-logs-versioning-{sfx}", bucket=bucket.id,
        versioning_configuration={"status": "Enabled"}, opts=opts)
    aws.s3.BucketObjectLockConfiguration(
        f"transaction-logs-object-lock-{sfx}", bucket=bucket.id, object_lock_enabled="Enabled",
        rule={"default_retention": {"mode": s.bucket.object_lock_mode,
                                    "days": s.bucket.object_lock_days}},
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[versioning])))
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"transaction-logs-sse-{sfx}", bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {
            "sse_algorithm": "aws:kms", "kms_master_key_id": kms_key.arn},
            "bucket_key_enabled": True}], opts=opts)
    pab = _private("transaction-logs", sfx, bucket, opts)
    _events_to_eventbridge("transaction-logs", sfx, bucket, opts)
    aws.s3.BucketPolicy(
        f"transaction-logs-policy-{sfx}", bucket=bucket.id,
        policy=bucket.arn.apply(tls_only_bucket_policy),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[pab])))
    log_policy = aws.s3.BucketPolicy(
        f"access-logs-policy-{sfx}", bucket=log_bucket.id,
        policy=pulumi.Output.all(log_bucket.arn, bucket.arn).apply(
            lambda arns: access_log_bucket_policy(arns[0], arns[1], account)),
        opts=opts)
    aws.s3.BucketLogging(
        f"transaction-logs-logging-{sfx}", bucket=bucket.id, target_bucket=log_bucket.id,
        target_prefix=ACCESS_LOG_PREFIX,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=log_policy)))
    aws.s3.BucketLifecycleConfiguration(
        f"transaction-logs-lifecycle-{sfx}", bucket=bucket.id,
        rules=[{
            "id": "transaction-log-retention", "status": "Enabled", "filter": {"prefix": ""},
            "transitions": [{"days": s.bucket.transition_to_ia_days,
                             "storage_class": "STANDARD_IA"}],
            "noncurrent_version_expiration": {"noncurrent_days":
                                              s.bucket.noncurrent_expiration_days},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
        }], opts=opts)
    return bucket
