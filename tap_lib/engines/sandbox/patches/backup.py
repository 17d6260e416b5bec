"""CreateBackupPlan under the name of a deleted plan (AWS Backup API reference, CreateBackupPlan:
`AlreadyExistsException` is for a plan that exists; a deleted plan's name is free again, so a
destroyed stack can be deployed again).

moto 5.2 keeps deleted plans (with their deletion date) and refuses their names forever. The
patch hides the deleted plans of that name while the new one is created, then keeps them (as
AWS keeps a deleted plan's versions listable by id).
"""
from __future__ import annotations


def install(endpoint: str) -> None:
    from moto.backup.models import BackupBackend

    create = BackupBackend.create_backup_plan

    def create_backup_plan(self, backup_plan, backup_plan_tags, creator_request_id):
        name = backup_plan["BackupPlanName"]
        deleted = {k: p for k, p in self.plans.items()
                   if p.deletion_date is not None and p.backup_plan["BackupPlanName"] == name}
        for key in deleted:
            del self.plans[key]
        try:
            return create(self, backup_plan, backup_plan_tags, creator_request_id)
        finally:
            self.plans.update(deleted)

    BackupBackend.create_backup_plan = create_backup_plan
