"""KMS key and alias."""
from __future__ import annotations

from .base import Handler, adoptable, handler, ignore_missing


def _key_tags(ctx, key_id: str):
    return (ignore_missing(ctx.client("kms").list_resource_tags, KeyId=key_id) or {}).get("Tags")


@handler
class Key(Handler):
    type = "aws:kms/key:Key"
    applies = frozenset({"enableKeyRotation", "description", "policy"})
    state_only = frozenset({"deletionWindowInDays"})  # only used when the key is deleted
    tagger = "kms"

    def create(self, ctx, inputs):
        kms = ctx.client("kms")
        key = kms.create_key(Description=inputs.get("description", ""), Tags=[
            {"TagKey": t["Key"], "TagValue": t["Value"]} for t in ctx.tag_list(inputs.get("tags"))
        ], **({"Policy": inputs["policy"]} if inputs.get("policy") else {}))["KeyMetadata"]
        self.modify(ctx, key["KeyId"], {}, inputs, {"description", "enableKeyRotation"})
        return key["KeyId"], {**inputs, "id": key["KeyId"], "keyId": key["KeyId"],
                              "arn": key["Arn"]}

    def modify(self, ctx, id_, old, new, changed):
        kms = ctx.client("kms")
        if "description" in changed:
            kms.update_key_description(KeyId=id_, Description=new.get("description", ""))
        if "policy" in changed and new.get("policy"):
            kms.put_key_policy(KeyId=id_, PolicyName="default", Policy=new["policy"])
        if "enableKeyRotation" in changed:
            if new.get("enableKeyRotation"):
                kms.enable_key_rotation(KeyId=id_)
            else:
                kms.disable_key_rotation(KeyId=id_)

    def read(self, ctx, id_, inputs):
        kms = ctx.client("kms")
        found = ignore_missing(kms.describe_key, KeyId=id_)
        if found is None or found["KeyMetadata"]["KeyState"] == "PendingDeletion":
            return None
        meta = found["KeyMetadata"]
        rotation = kms.get_key_rotation_status(KeyId=id_)["KeyRotationEnabled"]
        return {"description": meta.get("Description", ""), "enableKeyRotation": rotation}

    def tags(self, ctx, id_):
        return _key_tags(ctx, id_)

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("kms").schedule_key_deletion, KeyId=id_,
                       PendingWindowInDays=int(inputs.get("deletionWindowInDays") or 7),
                       codes=("KMSInvalidStateException",))

    def find(self, ctx, inputs, exclude=frozenset()):
        """The live key with this URN tag: a destroyed one stays listed (and tagged) for its
        deletion window, so it is skipped, as `read` reports it gone."""
        kms = ctx.client("kms")
        for key in kms.list_keys()["Keys"]:
            if key["KeyId"] in exclude:
                continue
            if adoptable(ctx, self.tags(ctx, key["KeyId"])) and \
                    self.read(ctx, key["KeyId"], inputs) is not None:
                return key["KeyId"]
        return None


@handler
class Alias(Handler):
    type = "aws:kms/alias:Alias"
    applies = frozenset({"targetKeyId"})
    id_input = "name"

    def create(self, ctx, inputs):
        ctx.client("kms").create_alias(AliasName=inputs["name"], TargetKeyId=inputs["targetKeyId"])
        return inputs["name"], {**inputs, "id": inputs["name"],
                                "arn": f"arn:aws:kms:{ctx.region}:{ctx.account}:{inputs['name']}"}

    def modify(self, ctx, id_, old, new, changed):
        ctx.client("kms").update_alias(AliasName=id_, TargetKeyId=new["targetKeyId"])

    def read(self, ctx, id_, inputs):
        for alias in ctx.client("kms").list_aliases()["Aliases"]:
            if alias["AliasName"] == id_:
                return {"name": id_, "targetKeyId": alias.get("TargetKeyId")}
        return None

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("kms").delete_alias, AliasName=id_)

    def find(self, ctx, inputs, exclude=frozenset()):
        """By its name; an alias has no tags, so the key it points at must be of ctx's stack."""
        name = inputs["name"]
        live = None if name in exclude else self.read(ctx, name, inputs)
        if live is None:
            return None
        key = _key_tags(ctx, live["targetKeyId"]) if live.get("targetKeyId") else None
        return name if adoptable(ctx, key, untagged=True, parent=True) else None
