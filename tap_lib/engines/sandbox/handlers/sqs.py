"""SQS queues (the payment function's dead-letter queue)."""
from __future__ import annotations

from .base import TAGGERS, Handler, adoptable, handler, ignore_missing

# Input -> queue attribute, as SetQueueAttributes takes them (all strings).
ATTRIBUTES = {"kmsMasterKeyId": "KmsMasterKeyId",
              "kmsDataKeyReusePeriodSeconds": "KmsDataKeyReusePeriodSeconds",
              "messageRetentionSeconds": "MessageRetentionPeriod",
              "visibilityTimeoutSeconds": "VisibilityTimeout",
              "delaySeconds": "DelaySeconds", "maxMessageSize": "MaximumMessageSize",
              "receiveWaitTimeSeconds": "ReceiveMessageWaitTimeSeconds",
              "redrivePolicy": "RedrivePolicy", "sqsManagedSseEnabled": "SqsManagedSseEnabled"}
MISSING_CODES = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


def _attributes(inputs: dict) -> dict[str, str]:
    return {attr: str(inputs[prop]).lower() if isinstance(inputs[prop], bool)
            else str(inputs[prop])
            for prop, attr in ATTRIBUTES.items() if inputs.get(prop) is not None}


def _url(ctx, name: str) -> str | None:
    found = ignore_missing(ctx.client("sqs").get_queue_url, QueueName=name, codes=MISSING_CODES)
    return found["QueueUrl"] if found else None


def _sqs_tags(ctx, id_, old, put, remove):
    sqs, url = ctx.client("sqs"), _url(ctx, id_)
    if put:
        sqs.tag_queue(QueueUrl=url, Tags=put)
    if remove:
        sqs.untag_queue(QueueUrl=url, TagKeys=remove)


TAGGERS["sqs"] = _sqs_tags      # base.TAGGERS: each service's way to change tags in place


@handler
class Queue(Handler):
    type = "aws:sqs/queue:Queue"
    applies = frozenset(ATTRIBUTES)
    id_input = "name"
    tagger = "sqs"

    def create(self, ctx, inputs):
        sqs = ctx.client("sqs")
        url = sqs.create_queue(QueueName=inputs["name"], Attributes=_attributes(inputs),
                               tags={t["Key"]: t["Value"]
                                     for t in ctx.tag_list(inputs.get("tags"))})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        # The provider's id is the URL; tap keys the queue by name (its physical name) and
        # keeps the URL and ARN as outputs, as the provider does.
        return inputs["name"], {**inputs, "id": inputs["name"], "arn": arn, "url": url}

    def modify(self, ctx, id_, old, new, changed):
        attrs = {k: v for k, v in _attributes(new).items()
                 if k in {ATTRIBUTES[c] for c in changed}}
        if attrs:
            ctx.client("sqs").set_queue_attributes(QueueUrl=_url(ctx, id_), Attributes=attrs)

    def read(self, ctx, id_, inputs):
        url = _url(ctx, id_)
        if url is None:
            return None
        attrs = ctx.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])[
            "Attributes"]
        return {"name": id_, "kmsMasterKeyId": attrs.get("KmsMasterKeyId"),
                "messageRetentionSeconds": int(attrs.get("MessageRetentionPeriod", 0))}

    def tags(self, ctx, id_):
        url = _url(ctx, id_)
        return ctx.client("sqs").list_queue_tags(QueueUrl=url).get("Tags") if url else None

    def delete(self, ctx, id_, inputs, outputs):
        url = _url(ctx, id_)
        if url:
            ignore_missing(ctx.client("sqs").delete_queue, QueueUrl=url, codes=MISSING_CODES)

    def find(self, ctx, inputs, exclude=frozenset()):
        name = inputs["name"]
        if name in exclude or _url(ctx, name) is None:
            return None
        return name if adoptable(ctx, self.tags(ctx, name), untagged=True) else None
