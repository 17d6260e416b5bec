"""CloudWatch log groups."""
from __future__ import annotations

from .base import Handler, handler, ignore_missing


@handler
class LogGroup(Handler):
    type = "aws:cloudwatch/logGroup:LogGroup"
    applies = frozenset({"retentionInDays", "kmsKeyId"})
    state_only = frozenset({"skipDestroy"})
    tagger = "logs"
    id_input = "name"

    def create(self, ctx, inputs):
        logs = ctx.client("logs")
        logs.create_log_group(logGroupName=inputs["name"], tags={
            **(inputs.get("tags") or {}), "tap:urn": ctx.urn},
            **({"kmsKeyId": inputs["kmsKeyId"]} if inputs.get("kmsKeyId") else {}))
        return inputs["name"], {**inputs, **self.modify(ctx, inputs["name"], {}, inputs,
                                                        {"retentionInDays"})}

    def modify(self, ctx, id_, old, new, changed):
        logs = ctx.client("logs")
        # AWS's in-place calls (moto 5.2 implements neither: an update of the key fails there).
        if "kmsKeyId" in changed and new.get("kmsKeyId"):
            logs.associate_kms_key(logGroupName=id_, kmsKeyId=new["kmsKeyId"])
        elif "kmsKeyId" in changed:
            logs.disassociate_kms_key(logGroupName=id_)
        if new.get("retentionInDays"):
            logs.put_retention_policy(logGroupName=id_,
                                      retentionInDays=int(new["retentionInDays"]))
        else:
            logs.delete_retention_policy(logGroupName=id_)
        return {**new, "id": id_,
                "arn": f"arn:aws:logs:{ctx.region}:{ctx.account}:log-group:{id_}"}

    def read(self, ctx, id_, inputs):
        for group in ctx.client("logs").describe_log_groups(logGroupNamePrefix=id_)["logGroups"]:
            if group["logGroupName"] == id_:
                return {"name": id_, "retentionInDays": group.get("retentionInDays"),
                        "kmsKeyId": group.get("kmsKeyId")}
        return None

    def tags(self, ctx, id_):
        return (ignore_missing(ctx.client("logs").list_tags_log_group, logGroupName=id_,
                               codes=("ResourceNotFoundException",)) or {}).get("tags")

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("logs").delete_log_group, logGroupName=id_,
                       codes=("ResourceNotFoundException",))
