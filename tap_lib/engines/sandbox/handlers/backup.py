"""AWS Backup: the vault, the plan and the selection over the Aurora cluster.

moto 5.2 models vaults (with their encryption key) and plans, but has no backup selections
(no CreateBackupSelection/ListBackupSelections) and runs no backup jobs. A selection is
therefore recorded in the sandbox's state only: nothing on the emulator says the cluster is
covered, and verify reports that check as not verifiable there (ops/hardening_data.py),
never as a pass.
"""
from __future__ import annotations

import uuid

from botocore.exceptions import ClientError

from .base import TAGGERS, Handler, adoptable, handler, ignore_missing


def _backup_tags(ctx, id_, old, put, remove):
    backup = ctx.client("backup")
    if put:
        backup.tag_resource(ResourceArn=old["arn"], Tags=put)
    if remove:
        backup.untag_resource(ResourceArn=old["arn"], TagKeyList=remove)


TAGGERS["backup"] = _backup_tags    # base.TAGGERS: each service's way to change tags in place


def _tags(ctx, inputs: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in ctx.tag_list(inputs.get("tags"))}


@handler
class Vault(Handler):
    type = "aws:backup/vault:Vault"
    state_only = frozenset({"forceDestroy"})
    tagger = "backup"
    id_input = "name"

    def create(self, ctx, inputs):
        vault = ctx.client("backup").create_backup_vault(
            BackupVaultName=inputs["name"], EncryptionKeyArn=inputs.get("kmsKeyArn"),
            BackupVaultTags=_tags(ctx, inputs))
        return inputs["name"], {**inputs, "id": inputs["name"], "arn": vault["BackupVaultArn"],
                                "recoveryPoints": 0}

    def read(self, ctx, id_, inputs):
        found = self._describe(ctx, id_)
        if found is None:
            return None
        return {"name": id_, "kmsKeyArn": found.get("EncryptionKeyArn")}

    @staticmethod
    def _describe(ctx, name: str) -> dict | None:
        # moto's DescribeBackupVault omits EncryptionKeyArn; its ListBackupVaults has it
        vaults = ctx.client("backup").list_backup_vaults().get("BackupVaultList", [])
        return next((v for v in vaults if v["BackupVaultName"] == name), None)

    def tags(self, ctx, id_):
        found = self._describe(ctx, id_)
        return ctx.client("backup").list_tags(ResourceArn=found["BackupVaultArn"]).get(
            "Tags") if found else None

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("backup").delete_backup_vault, BackupVaultName=id_,
                       codes=("ResourceNotFoundException",))


def _plan_document(inputs: dict) -> dict:
    rules = []
    for r in inputs.get("rules") or []:
        rule = {"RuleName": r["ruleName"], "TargetBackupVaultName": r["targetVaultName"],
                "ScheduleExpression": r.get("schedule") or ""}
        if r.get("startWindow"):
            rule["StartWindowMinutes"] = int(r["startWindow"])
        if r.get("completionWindow"):
            rule["CompletionWindowMinutes"] = int(r["completionWindow"])
        if (r.get("lifecycle") or {}).get("deleteAfter"):
            rule["Lifecycle"] = {"DeleteAfterDays": int(r["lifecycle"]["deleteAfter"])}
        if r.get("recoveryPointTags"):
            rule["RecoveryPointTags"] = dict(r["recoveryPointTags"])
        rules.append(rule)
    return {"BackupPlanName": inputs["name"], "Rules": rules}


@handler
class Plan(Handler):
    type = "aws:backup/plan:Plan"
    applies = frozenset({"rules", "advancedBackupSettings"})
    tagger = "backup"

    def modify(self, ctx, id_, old, new, changed):
        """AWS updates a plan in place (UpdateBackupPlan: same id, a new version). moto 5.2 has
        no UpdateBackupPlan: the sandbox deletes the plan and creates it again under its name
        (a new id, which the state-only selection follows). That needs the emulator to accept
        a deleted plan's name, as AWS does; where it does not, the change fails and says so."""
        self.delete(ctx, id_, old, old)
        try:
            _, outputs = self.create(ctx, new)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "AlreadyExistsException":
                raise
            raise RuntimeError(
                f"backup plan {new.get('name')}: the sandbox's emulator cannot change a plan's "
                f"{', '.join(sorted(changed))} (no UpdateBackupPlan, and it refuses a deleted "
                "plan's name); destroy and deploy the sandbox stack to apply it") from None
        ctx.notes.append(f"{new['name']}: re-created with the new rules (the emulator has no "
                         "UpdateBackupPlan)")
        return outputs

    def create(self, ctx, inputs):
        plan = ctx.client("backup").create_backup_plan(
            BackupPlan=_plan_document(inputs), BackupPlanTags=_tags(ctx, inputs),
            CreatorRequestId=str(uuid.uuid4()))
        return plan["BackupPlanId"], {**inputs, "id": plan["BackupPlanId"],
                                      "arn": plan["BackupPlanArn"],
                                      "version": plan.get("VersionId")}

    def read(self, ctx, id_, inputs):
        found = ignore_missing(ctx.client("backup").get_backup_plan, BackupPlanId=id_,
                               codes=("ResourceNotFoundException",))
        if found is None or found.get("DeletionDate"):
            return None
        plan = found["BackupPlan"]
        return {"name": plan["BackupPlanName"],
                "rules": [{"ruleName": r.get("RuleName"),
                           "targetVaultName": r.get("TargetBackupVaultName"),
                           "schedule": r.get("ScheduleExpression"),
                           "lifecycle": {"deleteAfter": (r.get("Lifecycle") or {})
                                         .get("DeleteAfterDays")}}
                          for r in plan.get("Rules", [])]}

    def find(self, ctx, inputs, exclude=frozenset()):
        backup = ctx.client("backup")
        for p in backup.list_backup_plans().get("BackupPlansList", []):
            if p["BackupPlanName"] == inputs["name"] and p["BackupPlanId"] not in exclude and \
                    adoptable(ctx, backup.list_tags(ResourceArn=p["BackupPlanArn"]).get("Tags"),
                              untagged=True):
                return p["BackupPlanId"]
        return None

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("backup").delete_backup_plan, BackupPlanId=id_,
                       codes=("ResourceNotFoundException",))


@handler
class Selection(Handler):
    """State only: moto has no backup selections (see the module docstring)."""
    type = "aws:backup/selection:Selection"
    unique = ("planId", "name")
    EMULATED = False     # read by verify: nothing on the emulator backs this resource

    def create(self, ctx, inputs):
        sid = f"{inputs['planId']}|{inputs['name']}"
        ctx.notes.append(f"{inputs['name']}: the emulator has no AWS Backup selections; "
                         "recorded in tap's state only")
        return sid, {**inputs, "id": sid}

    def read(self, ctx, id_, inputs):
        plan_id = id_.partition("|")[0]
        plan = ignore_missing(ctx.client("backup").get_backup_plan, BackupPlanId=plan_id,
                              codes=("ResourceNotFoundException",))
        return dict(inputs) if plan and not plan.get("DeletionDate") else None

    def delete(self, ctx, id_, inputs, outputs):
        return None


def _report_plan_args(inputs: dict) -> dict:
    channel = inputs.get("reportDeliveryChannel") or {}
    setting = inputs.get("reportSetting") or {}
    delivery = {"S3BucketName": channel["s3BucketName"]}
    if channel.get("s3KeyPrefix"):
        delivery["S3KeyPrefix"] = channel["s3KeyPrefix"]
    if channel.get("formats"):
        delivery["Formats"] = list(channel["formats"])
    report = {"ReportTemplate": setting["reportTemplate"]}
    if setting.get("frameworkArns"):
        report["FrameworkArns"] = list(setting["frameworkArns"])
    return {"ReportPlanName": inputs["name"], "ReportDeliveryChannel": delivery,
            "ReportSetting": report,
            **({"ReportPlanDescription": inputs["description"]}
               if inputs.get("description") else {})}


@handler
class ReportPlan(Handler):
    """AWS Backup Audit Manager's report plan (backup_reportplans_exist). Its id is its name,
    as the provider's. moto 5.2 has no UpdateReportPlan and ignores ReportPlanTags: a change
    re-creates the plan under its name (same id), and the tags are set by TagResource."""
    type = "aws:backup/reportPlan:ReportPlan"
    applies = frozenset({"description", "reportDeliveryChannel", "reportSetting"})
    tagger = "backup"
    id_input = "name"

    def create(self, ctx, inputs):
        backup = ctx.client("backup")
        plan = backup.create_report_plan(**_report_plan_args(inputs))
        tags = _tags(ctx, inputs)
        if tags:
            backup.tag_resource(ResourceArn=plan["ReportPlanArn"], Tags=tags)
        return inputs["name"], {**inputs, "id": inputs["name"], "arn": plan["ReportPlanArn"]}

    def modify(self, ctx, id_, old, new, changed):
        ctx.client("backup").delete_report_plan(ReportPlanName=id_)
        _, outputs = self.create(ctx, {**new, "name": id_})
        ctx.notes.append(f"{id_}: re-created with the new settings (the emulator has no "
                         "UpdateReportPlan)")
        return {"arn": outputs["arn"]}

    def read(self, ctx, id_, inputs):
        found = ignore_missing(ctx.client("backup").describe_report_plan, ReportPlanName=id_,
                               codes=("ResourceNotFoundException",))
        if found is None:
            return None
        plan = found["ReportPlan"]
        channel = plan.get("ReportDeliveryChannel") or {}
        setting = plan.get("ReportSetting") or {}
        return {"name": plan["ReportPlanName"], "arn": plan.get("ReportPlanArn"),
                "description": plan.get("ReportPlanDescription"),
                "reportDeliveryChannel": {"s3BucketName": channel.get("S3BucketName"),
                                          "s3KeyPrefix": channel.get("S3KeyPrefix"),
                                          "formats": channel.get("Formats")},
                "reportSetting": {"reportTemplate": setting.get("ReportTemplate")}}

    def tags(self, ctx, id_):
        found = self.read(ctx, id_, {})
        return ctx.client("backup").list_tags(ResourceArn=found["arn"]).get(
            "Tags") if found else None

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("backup").delete_report_plan, ReportPlanName=id_,
                       codes=("ResourceNotFoundException",))
