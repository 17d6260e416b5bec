"""The transaction-log bucket: stable name, versioned, SSE-KMS, private, TLS-only, lifecycle."""
from __future__ import annotations

import pulumi
import pulumi_aws as aws

from ..config import Settings
from ..naming import PhysicalNames
from .policies import tls_only_bucket_policy


def build_bucket(s: Settings, names: PhysicalNames, kms_key: aws.kms.Key,
                 opts: pulumi.ResourceOptions) -> aws.s3.Bucket:
    sfx = s.suffix
    bucket = aws.s3.Bucket(f"transaction-logs-{sfx}", bucket=names.s3_bucket,
                           force_destroy=not s.db.deletion_protection,
                           tags=s.all_tags(), opts=opts)
    aws.s3.BucketVersioning(f"transaction-logs-versioning-{sfx}", bucket=bucket.id,
                            versioning_configuration={"status": "Enabled"}, opts=opts)
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"transaction-logs-sse-{sfx}", bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {
            "sse_algorithm": "aws:kms", "kms_master_key_id": kms_key.arn},
            "bucket_key_enabled": True}], opts=opts)
    pab = aws.s3.BucketPublicAccessBlock(
        f"transaction-logs-pab-{sfx}", bucket=bucket.id, block_public_acls=True,
        block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
        opts=opts)
    aws.s3.BucketPolicy(
        f"transaction-logs-policy-{sfx}", bucket=bucket.id,
        policy=bucket.arn.apply(tls_only_bucket_policy),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[pab])))
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
