"""The transaction-log bucket and its separate configuration resources."""
from __future__ import annotations

import json

from botocore.exceptions import ClientError

from .base import Handler, handler, ignore_missing


def _empty(s3, bucket: str) -> None:
    """Every version and delete marker, as force_destroy does before deleting the bucket."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        objects = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                   for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if objects:
            # As the provider's force_destroy: GOVERNANCE-mode Object Lock is bypassed (the
            # caller may); COMPLIANCE-mode versions stay, and the bucket delete then says so.
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects},
                              BypassGovernanceRetention=True)


@handler
class Bucket(Handler):
    type = "aws:s3/bucket:Bucket"
    state_only = frozenset({"forceDestroy"})  # read when the bucket is deleted
    tagger = "s3"
    id_input = "bucket"

    def create(self, ctx, inputs):
        s3 = ctx.client("s3")
        name = inputs["bucket"]
        kwargs = {}
        if ctx.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": ctx.region}
        if inputs.get("objectLockEnabled"):
            kwargs["ObjectLockEnabledForBucket"] = True   # only at creation (ForceNew)
        s3.create_bucket(Bucket=name, **kwargs)
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": ctx.tag_list(inputs.get("tags"))})
        return name, {**inputs, "id": name, "arn": f"arn:aws:s3:::{name}",
                      "bucketDomainName": f"{name}.s3.amazonaws.com"}

    def read(self, ctx, id_, inputs):
        # head_bucket reports a missing bucket as a bare HTTP 404
        s3 = ctx.client("s3")
        found = ignore_missing(s3.head_bucket, Bucket=id_, codes=("404",))
        if found is None:
            return None
        lock = ignore_missing(s3.get_object_lock_configuration, Bucket=id_,
                              codes=("ObjectLockConfigurationNotFoundError",)) or {}
        return {"bucket": id_, "objectLockEnabled": lock.get(
            "ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"}

    def tags(self, ctx, id_):
        # None for a bucket a killed create never tagged (NoSuchTagSet), or one that is gone
        return (ignore_missing(ctx.client("s3").get_bucket_tagging, Bucket=id_) or {}).get(
            "TagSet")

    def delete(self, ctx, id_, inputs, outputs):
        s3 = ctx.client("s3")
        if inputs.get("forceDestroy"):
            ignore_missing(_empty, s3, id_)
        try:
            ignore_missing(s3.delete_bucket, Bucket=id_)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "BucketNotEmpty":
                raise
            raise RuntimeError(
                f"bucket {id_} still holds transaction logs and this environment keeps them "
                "(force_destroy is off where deletion protection is on); empty the bucket "
                "first if you really mean to destroy it") from None


class _BucketConfig(Handler):
    """A bucket sub-resource: id is the bucket name; put replaces, delete removes. Nothing to
    find after a crash: put is idempotent, so recreating over a half-applied config is safe."""

    # Every updatable input of these types is written by one put of the whole configuration.
    applies = frozenset({"versioningConfiguration", "rules", "policy", "blockPublicAcls",
                         "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets",
                         "mfa", "transitionDefaultMinimumObjectSize"})
    state_only = frozenset({"skipDestroy"})
    unique = ("bucket",)              # one configuration per bucket: put overwrites

    def put(self, s3, bucket: str, inputs: dict) -> None:
        raise NotImplementedError

    def get(self, s3, bucket: str) -> dict:
        raise NotImplementedError

    def remove(self, s3, bucket: str) -> None:
        raise NotImplementedError

    def create(self, ctx, inputs):
        self.put(ctx.client("s3"), inputs["bucket"], inputs)
        return inputs["bucket"], {**inputs, "id": inputs["bucket"]}

    def modify(self, ctx, id_, old, new, changed):
        self.put(ctx.client("s3"), id_, new)

    def read(self, ctx, id_, inputs):
        found = ignore_missing(self.get, ctx.client("s3"), id_)
        return None if found is None else {"bucket": id_, **found}

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(self.remove, ctx.client("s3"), id_)


@handler
class BucketVersioning(_BucketConfig):
    type = "aws:s3/bucketVersioning:BucketVersioning"

    def put(self, s3, bucket, inputs):
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={
            "Status": inputs["versioningConfiguration"]["status"]})

    def get(self, s3, bucket):
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status", "Disabled")
        return {"versioningConfiguration": {"status": status}}

    def remove(self, s3, bucket):
        # A versioned bucket can only be suspended, as the real provider does on delete; one
        # with Object Lock cannot be (S3 refuses; the provider leaves it as it is). moto would
        # suspend it, and then refuse the Object Lock configuration's own delete.
        lock = ignore_missing(s3.get_object_lock_configuration, Bucket=bucket,
                              codes=("ObjectLockConfigurationNotFoundError",)) or {}
        if lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled":
            return
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})


@handler
class BucketServerSideEncryptionConfiguration(_BucketConfig):
    type = ("aws:s3/bucketServerSideEncryptionConfiguration:"
            "BucketServerSideEncryptionConfiguration")

    def put(self, s3, bucket, inputs):
        rules = []
        for rule in inputs["rules"]:
            default = rule["applyServerSideEncryptionByDefault"]
            by_default = {"SSEAlgorithm": default["sseAlgorithm"]}
            if default.get("kmsMasterKeyId"):
                by_default["KMSMasterKeyID"] = default["kmsMasterKeyId"]
            rules.append({"ApplyServerSideEncryptionByDefault": by_default,
                          "BucketKeyEnabled": bool(rule.get("bucketKeyEnabled", False))})
        s3.put_bucket_encryption(Bucket=bucket,
                                 ServerSideEncryptionConfiguration={"Rules": rules})

    def get(self, s3, bucket):
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        return {"rules": [{"applyServerSideEncryptionByDefault": {
            "sseAlgorithm": r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
            "kmsMasterKeyId": r["ApplyServerSideEncryptionByDefault"].get("KMSMasterKeyID")}}
            for r in rules]}

    def remove(self, s3, bucket):
        s3.delete_bucket_encryption(Bucket=bucket)


@handler
class BucketPublicAccessBlock(_BucketConfig):
    type = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
    FLAGS = {"blockPublicAcls": "BlockPublicAcls", "blockPublicPolicy": "BlockPublicPolicy",
             "ignorePublicAcls": "IgnorePublicAcls",
             "restrictPublicBuckets": "RestrictPublicBuckets"}

    def put(self, s3, bucket, inputs):
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
            aws: bool(inputs.get(key, False)) for key, aws in self.FLAGS.items()})

    def get(self, s3, bucket):
        conf = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        return {key: conf.get(aws, False) for key, aws in self.FLAGS.items()}

    def remove(self, s3, bucket):
        s3.delete_public_access_block(Bucket=bucket)


@handler
class BucketPolicy(_BucketConfig):
    type = "aws:s3/bucketPolicy:BucketPolicy"

    def put(self, s3, bucket, inputs):
        s3.put_bucket_policy(Bucket=bucket, Policy=inputs["policy"])

    def get(self, s3, bucket):
        return {"policy": json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])}

    def remove(self, s3, bucket):
        s3.delete_bucket_policy(Bucket=bucket)


@handler
class BucketLifecycleConfiguration(_BucketConfig):
    type = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"

    def put(self, s3, bucket, inputs):
        rules = []
        for r in inputs["rules"]:
            rule = {"ID": r["id"], "Status": r["status"],
                    "Filter": {"Prefix": (r.get("filter") or {}).get("prefix", "")}}
            if r.get("transitions"):
                rule["Transitions"] = [{"Days": int(t["days"]), "StorageClass": t["storageClass"]}
                                       for t in r["transitions"]]
            if r.get("expiration"):
                rule["Expiration"] = {"Days": int(r["expiration"]["days"])}
            if r.get("noncurrentVersionExpiration"):
                rule["NoncurrentVersionExpiration"] = {
                    "NoncurrentDays": int(r["noncurrentVersionExpiration"]["noncurrentDays"])}
            if r.get("abortIncompleteMultipartUpload"):
                rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(
                    r["abortIncompleteMultipartUpload"]["daysAfterInitiation"])}
            rules.append(rule)
        s3.put_bucket_lifecycle_configuration(Bucket=bucket,
                                              LifecycleConfiguration={"Rules": rules})

    def get(self, s3, bucket):
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        return {"rules": [{"id": r.get("ID"), "status": r.get("Status")} for r in rules]}

    def remove(self, s3, bucket):
        s3.delete_bucket_lifecycle(Bucket=bucket)
