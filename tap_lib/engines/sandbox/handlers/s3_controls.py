"""Bucket controls beyond the basics: ownership (S3.12), Object Lock (S3.15) and server
access logging (S3.9), each a separate provider resource keyed by its bucket."""
from __future__ import annotations

from botocore.exceptions import ClientError

from ....errors import OperationFailed
from .base import handler
from .s3 import _BucketConfig

# moto refuses PutObjectLockConfiguration on a bucket holding objects (S3 itself once did;
# since 2023 it enables Object Lock on an existing versioned bucket and changes a default
# retention at any time). The emulator's refusal is reported as such, never papered over.
EMULATOR_REFUSES = "InvalidBucket"


def _put_lock(s3, bucket: str, conf: dict) -> None:
    try:
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=conf)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != EMULATOR_REFUSES:
            raise
        raise OperationFailed(
            f"the sandbox emulator (moto) refuses an Object Lock configuration on bucket "
            f"{bucket} because it holds objects; AWS accepts it",
            hint="in the sandbox, empty the bucket (or destroy and redeploy the stack) "
                 "first") from None


@handler
class BucketOwnershipControls(_BucketConfig):
    type = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
    applies = frozenset({"rule"})

    def put(self, s3, bucket, inputs):
        s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={"Rules": [
            {"ObjectOwnership": inputs["rule"]["objectOwnership"]}]})

    def get(self, s3, bucket):
        rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
        return {"rule": {"objectOwnership": rules[0]["ObjectOwnership"]} if rules else None}

    def remove(self, s3, bucket):
        s3.delete_bucket_ownership_controls(Bucket=bucket)


@handler
class BucketObjectLockConfiguration(_BucketConfig):
    type = "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"
    applies = frozenset({"rule", "token"})

    def put(self, s3, bucket, inputs):
        conf = {"ObjectLockEnabled": inputs.get("objectLockEnabled", "Enabled")}
        retention = (inputs.get("rule") or {}).get("defaultRetention")
        if retention:
            conf["Rule"] = {"DefaultRetention": {
                "Mode": retention["mode"],
                **({"Days": int(retention["days"])} if retention.get("days") else {}),
                **({"Years": int(retention["years"])} if retention.get("years") else {})}}
        _put_lock(s3, bucket, conf)

    def get(self, s3, bucket):
        conf = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        retention = (conf.get("Rule") or {}).get("DefaultRetention") or {}
        return {"objectLockEnabled": conf.get("ObjectLockEnabled"),
                "rule": {"defaultRetention": {"mode": retention.get("Mode"),
                                              "days": retention.get("Days")}}
                if retention else None}

    def remove(self, s3, bucket):
        # As the provider: the lock stays enabled (it cannot be turned off), the default
        # retention goes. On the emulator a bucket holding objects keeps its retention (see
        # EMULATOR_REFUSES): tolerated here only, since a removed configuration precedes the
        # bucket's own delete, which then decides (force_destroy, COMPLIANCE-locked versions).
        try:
            s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled"})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (EMULATOR_REFUSES,
                                                                 "InvalidBucketState"):
                raise


@handler
class BucketLogging(_BucketConfig):
    type = "aws:s3/bucketLogging:BucketLogging"
    applies = frozenset({"targetBucket", "targetPrefix", "targetGrants",
                         "targetObjectKeyFormat"})

    def put(self, s3, bucket, inputs):
        s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={"LoggingEnabled": {
            "TargetBucket": inputs["targetBucket"], "TargetPrefix": inputs["targetPrefix"]}})

    def get(self, s3, bucket):
        enabled = s3.get_bucket_logging(Bucket=bucket).get("LoggingEnabled")
        if not enabled:
            return None
        return {"targetBucket": enabled["TargetBucket"],
                "targetPrefix": enabled.get("TargetPrefix", "")}

    def remove(self, s3, bucket):
        s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={})


@handler
class BucketNotification(_BucketConfig):
    """Where the bucket's object events go (s3_bucket_event_notifications_enabled). As the
    provider: one configuration per bucket, written whole; removing it writes an empty one."""
    type = "aws:s3/bucketNotification:BucketNotification"
    applies = frozenset({"eventbridge", "topics", "queues", "lambdaFunctions"})

    def put(self, s3, bucket, inputs):
        unmodelled = sorted(k for k in ("topics", "queues", "lambdaFunctions") if inputs.get(k))
        if unmodelled:
            # the emulator would accept them but the sandbox delivers to none of them
            raise OperationFailed(
                f"bucket {bucket}: the sandbox models EventBridge notifications only, not "
                f"{', '.join(unmodelled)}",
                hint="send the bucket's events to EventBridge (eventbridge=True) and route "
                     "them from there")
        conf = {"EventBridgeConfiguration": {}} if inputs.get("eventbridge") else {}
        s3.put_bucket_notification_configuration(Bucket=bucket,
                                                 NotificationConfiguration=conf)

    def get(self, s3, bucket):
        conf = s3.get_bucket_notification_configuration(Bucket=bucket)
        return {"eventbridge": "EventBridgeConfiguration" in conf}

    def remove(self, s3, bucket):
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
