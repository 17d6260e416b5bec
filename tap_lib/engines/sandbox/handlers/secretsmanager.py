"""The application credentials secret, its initial version, and its rotation schedule."""
from __future__ import annotations

import uuid

from botocore.exceptions import ClientError

from .. import standin
from .base import Handler, adoptable, handler, ignore_missing


def _describe(ctx, secret_id: str) -> dict | None:
    """The secret's metadata, or None when it is gone (deleted or scheduled for deletion)."""
    meta = ignore_missing(ctx.client("secretsmanager").describe_secret, SecretId=secret_id)
    return None if meta is None or meta.get("DeletedDate") else meta


@handler
class Secret(Handler):
    type = "aws:secretsmanager/secret:Secret"
    applies = frozenset({"description", "kmsKeyId"})
    state_only = frozenset({"recoveryWindowInDays", "forceOverwriteReplicaSecret"})
    tagger = "secretsmanager"

    def create(self, ctx, inputs):
        secret = ctx.client("secretsmanager").create_secret(
            Name=inputs["name"], Description=inputs.get("description", ""),
            KmsKeyId=inputs.get("kmsKeyId"), Tags=ctx.tag_list(inputs.get("tags")))
        return secret["ARN"], {**inputs, "id": secret["ARN"], "arn": secret["ARN"]}

    def modify(self, ctx, id_, old, new, changed):
        ctx.client("secretsmanager").update_secret(
            SecretId=id_, Description=new.get("description", ""), KmsKeyId=new.get("kmsKeyId"))

    def read(self, ctx, id_, inputs):
        meta = _describe(ctx, id_)
        if meta is None:
            return None
        return {"name": meta["Name"], "kmsKeyId": meta.get("KmsKeyId"),
                "rotationEnabled": bool(meta.get("RotationEnabled")),
                "rotationLambdaArn": meta.get("RotationLambdaARN")}

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("secretsmanager").delete_secret, SecretId=id_,
                       ForceDeleteWithoutRecovery=True, codes=("ResourceNotFoundException",))

    def find(self, ctx, inputs, exclude=frozenset()):
        meta = _describe(ctx, inputs["name"])
        return meta["ARN"] if meta and adoptable(ctx, meta.get("Tags"), untagged=True) else None


@handler
class SecretVersion(Handler):
    type = "aws:secretsmanager/secretVersion:SecretVersion"
    unique = ()                       # a new version beside the old one, as AWS keeps both

    def create(self, ctx, inputs):
        out = ctx.client("secretsmanager").put_secret_value(
            SecretId=inputs["secretId"], SecretString=inputs["secretString"])
        vid = f"{inputs['secretId']}|{out['VersionId']}"
        return vid, {**inputs, "id": vid, "versionId": out["VersionId"], "arn": out["ARN"]}

    def read(self, ctx, id_, inputs):
        arn, _, version = id_.partition("|")
        meta = _describe(ctx, arn)
        return {"secretId": arn} if meta and version in meta.get("VersionIdsToStages", {}) \
            else None

    def delete(self, ctx, id_, inputs, outputs):
        pass  # versions go with their secret; AWS keeps superseded versions anyway


@handler
class SecretRotation(Handler):
    type = "aws:secretsmanager/secretRotation:SecretRotation"
    unique = ("secretId",)            # one schedule per secret: deleting the old cancels it
    applies = frozenset({"rotationRules", "rotationLambdaArn"})
    state_only = frozenset({"rotateImmediately"})

    def create(self, ctx, inputs):
        """RotateSecret, as the provider calls it: with `rotateImmediately` (default true) AWS
        rotates right away, which is what creates the application role in the database."""
        secret_id = inputs["secretId"]
        token = str(uuid.uuid4())
        now = inputs.get("rotateImmediately") is not False
        sm = ctx.client("secretsmanager")
        try:
            sm.rotate_secret(SecretId=secret_id, ClientRequestToken=token,
                             RotationLambdaARN=inputs["rotationLambdaArn"],
                             RotationRules={"AutomaticallyAfterDays": int(
                                 inputs["rotationRules"]["automaticallyAfterDays"])},
                             RotateImmediately=now)
        except ClientError as exc:
            # The emulator records the schedule, then fails to run the Lambda (it cannot
            # execute Lambdas). tap runs the same handler code in-process instead, below.
            live = self.read(ctx, secret_id, inputs)
            if not live or live["rotationLambdaArn"] != inputs["rotationLambdaArn"]:
                raise RuntimeError(f"rotation schedule not saved: {exc}") from exc
        if now:
            standin.rotate_in_process(ctx, secret_id, token, inputs["rotationLambdaArn"])
            ctx.notes.append("sandbox: rotation ran in-process (the emulator cannot execute "
                             "Lambdas)")
        return secret_id, {**inputs, "id": secret_id, "rotationEnabled": True}

    def modify(self, ctx, id_, old, new, changed):
        return self.create(ctx, new)[1]

    def read(self, ctx, id_, inputs):
        meta = _describe(ctx, id_)
        if meta is None or not meta.get("RotationEnabled"):
            return None
        return {"secretId": id_, "rotationLambdaArn": meta.get("RotationLambdaARN"),
                "rotationRules": {"automaticallyAfterDays":
                                  meta.get("RotationRules", {}).get("AutomaticallyAfterDays")}}

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("secretsmanager").cancel_rotate_secret, SecretId=id_,
                       codes=("ResourceNotFoundException",))

    def find(self, ctx, inputs, exclude=frozenset()):
        """The secret's schedule, only on a secret of ctx's stack (a schedule has no tags)."""
        meta = _describe(ctx, inputs["secretId"])
        ours = meta is not None and adoptable(ctx, meta.get("Tags"), untagged=True, parent=True)
        return inputs["secretId"] if ours and self.read(ctx, inputs["secretId"], inputs) else None
