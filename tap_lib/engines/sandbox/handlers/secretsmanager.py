"""The application credentials secret, its initial version, and its rotation schedule."""
from __future__ import annotations

import uuid

from botocore.exceptions import ClientError

from ....errors import OperationFailed
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
        """By its version id, as the provider reads it (GetSecretValue): a version rotations
        left without a staging label is deprecated, not gone, and still answers by id
        (DescribeSecret's VersionIdsToStages lists only labelled versions)."""
        arn, _, version = id_.partition("|")
        try:
            ctx.client("secretsmanager").get_secret_value(SecretId=arn, VersionId=version)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("ResourceNotFoundException",
                                                             "InvalidRequestException"):
                return None
            raise
        return {"secretId": arn}

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
        rotates right away, which is what creates the application role in the database. The
        emulator runs the rotation function's four steps itself (patches/secrets_rotation.py)."""
        secret_id = inputs["secretId"]
        token = str(uuid.uuid4())
        now = inputs.get("rotateImmediately") is not False
        sm = ctx.client("secretsmanager")
        if now:
            from .. import standin   # here: a preview never loads PostgreSQL's tooling

            standin.sync_masters(ctx, standin.stack_of(ctx.urn))  # setSecret logs in as master
            _clear_unfinished_rotation(sm, secret_id)
        sm.rotate_secret(SecretId=secret_id, ClientRequestToken=token,
                         RotationLambdaARN=inputs["rotationLambdaArn"],
                         RotationRules={"AutomaticallyAfterDays": int(
                             inputs["rotationRules"]["automaticallyAfterDays"])},
                         RotateImmediately=now)
        if now and "AWSCURRENT" not in sm.describe_secret(SecretId=secret_id).get(
                "VersionIdsToStages", {}).get(token, []):
            function = inputs["rotationLambdaArn"].rsplit(":", 1)[-1]
            raise OperationFailed(
                f"the rotation of {secret_id} did not finish (AWSCURRENT is where it was)",
                hint=f"read /aws/lambda/{function} for the failed step, then deploy again")
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


@handler
class SecretPolicy(Handler):
    """The secret's resource policy (secretsmanager_has_restrictive_resource_policy). moto
    stores it and returns it; whether the emulator enforces it is not relied on."""
    type = "aws:secretsmanager/secretPolicy:SecretPolicy"
    unique = ("secretArn",)           # one policy per secret: a second one overwrites it
    applies = frozenset({"policy", "blockPublicPolicy"})

    def create(self, ctx, inputs):
        ctx.client("secretsmanager").put_resource_policy(
            SecretId=inputs["secretArn"], ResourcePolicy=inputs["policy"],
            BlockPublicPolicy=bool(inputs.get("blockPublicPolicy")))
        return inputs["secretArn"], {**inputs, "id": inputs["secretArn"]}

    def modify(self, ctx, id_, old, new, changed):
        self.create(ctx, new)

    def read(self, ctx, id_, inputs):
        if _describe(ctx, id_) is None:
            return None
        found = ctx.client("secretsmanager").get_resource_policy(SecretId=id_)
        if not found.get("ResourcePolicy"):
            return None
        return {"secretArn": id_, "policy": found["ResourcePolicy"]}

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("secretsmanager").delete_resource_policy, SecretId=id_,
                       codes=("ResourceNotFoundException",))

    def find(self, ctx, inputs, exclude=frozenset()):
        """By secret; a policy has no tags, so its secret must be of ctx's stack."""
        meta = _describe(ctx, inputs["secretArn"])
        return inputs["secretArn"] if meta and inputs["secretArn"] not in exclude and \
            adoptable(ctx, meta.get("Tags"), untagged=True, parent=True) and \
            self.read(ctx, inputs["secretArn"], inputs) else None


def _clear_unfinished_rotation(sm, secret_id: str) -> None:
    """A rotation that failed half-way leaves AWSPENDING on a version that never became
    current, and Secrets Manager refuses the next rotation until the label goes: a redeploy
    or repair recovers the secret by removing it (AWSCURRENT never moved)."""
    stages = sm.describe_secret(SecretId=secret_id).get("VersionIdsToStages", {})
    for version, labels in stages.items():
        if "AWSPENDING" in labels and "AWSCURRENT" not in labels:
            sm.update_secret_version_stage(SecretId=secret_id, VersionStage="AWSPENDING",
                                           RemoveFromVersionId=version)
