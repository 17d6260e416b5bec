"""Sandbox handlers of the two types that harden s3_bucket_event_notifications_enabled and
backup_reportplans_exist away (S3 events to EventBridge, AWS Backup's job report plan), run
against moto in process: what they write is what the emulator then reports, what verify and
Prowler read."""
from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from tap_lib.engines.sandbox.handlers import REGISTRY, Context
from tap_lib.engines.sandbox.handlers.base import URN_TAG
from tap_lib.errors import OperationFailed

NOTIFICATION = "aws:s3/bucketNotification:BucketNotification"
REPORT_PLAN = "aws:backup/reportPlan:ReportPlan"
REGION, BUCKET = "eu-west-2", "tap-handler-logs"
URN = "urn:pulumi:dev::tap::aws:backup/reportPlan:ReportPlan::backup-report-plan-dev"


@pytest.fixture
def ctx():
    """moto in process, with the emulator's patch that makes GetBucketNotificationConfiguration
    report EventBridge (patches/s3_notifications.py), undone afterwards."""
    from moto.s3.responses import S3Response

    from tap_lib.engines.sandbox.patches import s3_notifications
    before = S3Response.get_bucket_notification
    s3_notifications.install("")
    with mock_aws():
        def clients(service):
            return boto3.client(service, region_name=REGION)
        clients("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={
            "LocationConstraint": REGION})
        yield Context(REGION, "123456789012", URN, "r", clients)
    S3Response.get_bucket_notification = before


def test_the_patch_adds_eventbridge_to_either_form_of_the_configuration():
    from tap_lib.engines.sandbox.patches.s3_notifications import (
        ELEMENT,
        _with_eventbridge,
    )
    empty = '<?xml version="1.0"?>\n<NotificationConfiguration xmlns="http://s3"/>'
    assert _with_eventbridge(empty) == ('<?xml version="1.0"?>\n<NotificationConfiguration '
                                        f'xmlns="http://s3">{ELEMENT.decode()}'
                                        '</NotificationConfiguration>')
    full = b"<NotificationConfiguration><QueueConfiguration/></NotificationConfiguration>"
    assert _with_eventbridge(full).count(ELEMENT) == 1
    assert _with_eventbridge(_with_eventbridge(full)) == _with_eventbridge(full)
    assert _with_eventbridge(b"<Error>NoSuchBucket</Error>") == b"<Error>NoSuchBucket</Error>"


def _plan_inputs(**over) -> dict:
    return {"name": "tapstack_daily_dev", "description": "daily report",
            "reportDeliveryChannel": {"s3BucketName": BUCKET, "s3KeyPrefix": "backup-reports",
                                      "formats": ["CSV"]},
            "reportSetting": {"reportTemplate": "BACKUP_JOB_REPORT"},
            "tags": {"Environment": "dev"}, **over}


def test_types_are_registered_with_the_providers_replacement_rules():
    assert REGISTRY[NOTIFICATION].classify(["eventbridge"]) == "update"
    assert REGISTRY[NOTIFICATION].classify(["bucket"]) == "replace"
    assert REGISTRY[REPORT_PLAN].classify(["reportDeliveryChannel", "description"]) == "update"
    assert REGISTRY[REPORT_PLAN].classify(["name"]) == "replace"
    # report_template is ForceNew inside report_setting: any change to it replaces
    assert REGISTRY[REPORT_PLAN].classify(["reportSetting"]) == "replace"


def test_bucket_notification_to_eventbridge_round_trips_and_is_removed(ctx):
    h, s3 = REGISTRY[NOTIFICATION], ctx.client("s3")
    id_, outputs = h.create(ctx, {"bucket": BUCKET, "eventbridge": True})
    assert id_ == BUCKET and outputs["eventbridge"] is True
    assert "EventBridgeConfiguration" in s3.get_bucket_notification_configuration(Bucket=BUCKET)
    assert h.read(ctx, id_, {}) == {"bucket": BUCKET, "eventbridge": True}
    h.modify(ctx, id_, outputs, {"bucket": BUCKET, "eventbridge": False}, {"eventbridge"})
    assert h.read(ctx, id_, {})["eventbridge"] is False
    h.create(ctx, {"bucket": BUCKET, "eventbridge": True})
    h.delete(ctx, id_, {}, {})
    assert "EventBridgeConfiguration" not in s3.get_bucket_notification_configuration(
        Bucket=BUCKET)


def test_a_destination_the_sandbox_does_not_deliver_to_is_refused(ctx):
    with pytest.raises(OperationFailed) as err:
        REGISTRY[NOTIFICATION].create(ctx, {"bucket": BUCKET, "queues": [
            {"queueArn": "arn:aws:sqs:eu-west-2:123456789012:q", "events": ["s3:*"]}]})
    assert "queues" in str(err.value) and "EventBridge" in str(err.value)
    assert "QueueConfigurations" not in ctx.client("s3").get_bucket_notification_configuration(
        Bucket=BUCKET)


def test_report_plan_is_created_read_tagged_changed_and_deleted(ctx):
    h, backup = REGISTRY[REPORT_PLAN], ctx.client("backup")
    id_, outputs = h.create(ctx, _plan_inputs())
    assert id_ == "tapstack_daily_dev" and outputs["arn"].startswith("arn:aws:backup:")
    listed = backup.list_report_plans()["ReportPlans"]
    assert [p["ReportPlanName"] for p in listed] == [id_]
    read = h.read(ctx, id_, {})
    assert read["reportDeliveryChannel"]["s3BucketName"] == BUCKET
    assert read["reportDeliveryChannel"]["s3KeyPrefix"] == "backup-reports"
    assert read["reportSetting"] == {"reportTemplate": "BACKUP_JOB_REPORT"}
    tags = h.tags(ctx, id_)
    assert tags["Environment"] == "dev" and tags[URN_TAG] == URN
    # found again by name (an interrupted create is adopted, not duplicated)
    assert h.find(ctx, _plan_inputs()) == id_
    new = _plan_inputs(reportDeliveryChannel={"s3BucketName": BUCKET, "s3KeyPrefix": "other"})
    learned = h.modify(ctx, id_, outputs, new, {"reportDeliveryChannel"})
    assert learned["arn"] and h.read(ctx, id_, {})["reportDeliveryChannel"]["s3KeyPrefix"] == \
        "other"
    assert any("UpdateReportPlan" in n for n in ctx.notes)
    h.delete(ctx, id_, {}, {})
    assert h.read(ctx, id_, {}) is None
    h.delete(ctx, id_, {}, {})       # already gone: nothing to do, no error


def test_a_report_plan_without_its_delivery_bucket_is_refused_by_the_handler(ctx):
    broken = _plan_inputs(reportDeliveryChannel={})
    with pytest.raises(KeyError):
        REGISTRY[REPORT_PLAN].create(ctx, broken)
    assert ctx.client("backup").list_report_plans()["ReportPlans"] == []
