"""GetBucketNotificationConfiguration reports EventBridge delivery (S3 API Reference,
GetBucketNotificationConfiguration: the response carries `EventBridgeConfiguration` when
"Amazon EventBridge is enabled for the bucket").

moto 5.2 stores the EventBridgeConfiguration a PutBucketNotificationConfiguration sends but
never returns it, so a bucket whose events go to EventBridge reads as having no notification
at all (to tap verify and to Prowler's s3_bucket_event_notifications_enabled alike). The patch
adds the empty element AWS returns, where moto holds the setting.
"""
from __future__ import annotations

import re

ELEMENT = b"<EventBridgeConfiguration></EventBridgeConfiguration>"
CLOSING = b"</NotificationConfiguration>"
SELF_CLOSED = re.compile(rb"(<NotificationConfiguration\b[^>]*?)\s*/>")


def _with_eventbridge(body: bytes | str) -> bytes | str:
    raw = body.encode() if isinstance(body, str) else body
    if b"<EventBridgeConfiguration" in raw:
        return body
    if CLOSING in raw:
        raw = raw.replace(CLOSING, ELEMENT + CLOSING, 1)
    else:   # EventBridge only: moto renders an empty, self-closed configuration
        raw = SELF_CLOSED.sub(lambda m: m.group(1) + b">" + ELEMENT + CLOSING, raw, count=1)
    return raw.decode() if isinstance(body, str) else raw


def install(endpoint: str) -> None:
    from moto.s3.responses import S3Response

    original = getattr(S3Response.get_bucket_notification, "__wrapped__",
                       S3Response.get_bucket_notification)

    def get_bucket_notification(self):
        response = original(self)
        conf = self.backend.get_bucket_notification_configuration(self.bucket_name)
        if conf is None or conf.event_bridge is None:
            return response
        status, headers, body = response
        return status, headers, _with_eventbridge(body)

    get_bucket_notification.__wrapped__ = original
    S3Response.get_bucket_notification = get_bucket_notification
