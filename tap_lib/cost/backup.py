"""How many GB-months of Aurora backup storage an AWS Backup vault's recovery points are billed.

AWS Backup's Aurora recovery points are cluster snapshots, billed by RDS as Aurora backup storage
(Aurora is not under "full AWS Backup management": https://docs.aws.amazon.com/aws-backup/latest/
devguide/metering-and-billing.html). A snapshot costs nothing while it is younger than the
cluster's own backup retention period, and the full cluster volume once older
(https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/aurora-storage-backup.html,
https://aws.amazon.com/blogs/database/understanding-how-backups-work-in-amazon-aurora/).
So a daily rule kept K days over a cluster retaining R days bills (K - R) snapshots of the
cluster's size at any time: read from the declared plan, its selection and the cluster, times
usage.aurora_storage_gb. Aurora's free allocation (one cluster volume) is left to the cluster's
automated backups, which the estimate does not price, so the figure is an upper bound.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

PLAN = "aws:backup/plan:Plan"
SELECTION = "aws:backup/selection:Selection"
CLUSTER = "aws:rds/cluster:Cluster"

# AWS Backup's cron: minutes hours day-of-month month day-of-week year; one run a day only.
DAILY = re.compile(r"^cron\(\d{1,2} \d{1,2} \* \* [?*] \*\)$")


@dataclass(frozen=True)
class Snapshots:
    """What a vault's plan rules keep past the clusters' retention: `billed` snapshots, or
    None with `why`; `basis` says how it was counted."""

    billed: float | None
    basis: str
    why: str = ""


def _rules_into(vault: Any, plans: list) -> list[tuple[Any, dict]]:
    name = vault.props.get("name")
    return [(p, rule) for p in plans for rule in (p.props.get("rules") or [])
            if name and rule.get("targetVaultName") == name]


def _clusters_of(plan: Any, selections: list, clusters: list) -> list:
    arns = {a for s in selections if s.props.get("planId") == plan.props.get("id")
            for a in (s.props.get("resources") or [])}
    return [c for c in clusters if c.props.get("arn") in arns]


def vault_snapshots(vault: Any, of) -> Snapshots:
    """`of(type)` lists the declared resources of a type (the estimator's context)."""
    rules = _rules_into(vault, of(PLAN))
    if not rules:
        return Snapshots(0, "no backup plan rule stores recovery points in this vault")
    billed, parts = 0.0, []
    for plan, rule in rules:
        name = rule.get("ruleName") or "?"
        schedule = str(rule.get("schedule") or "")
        if rule.get("enableContinuousBackup"):
            return Snapshots(None, "", f"rule {name} is a continuous backup, which tap does "
                             "not price; set usage.backup_gb_stored")
        if not DAILY.match(schedule):
            return Snapshots(None, "", f"rule {name}'s schedule {schedule or '(none)'} is not "
                             "a daily cron, the only one tap counts; set usage.backup_gb_stored")
        keep = (rule.get("lifecycle") or {}).get("deleteAfter")
        if not keep:
            return Snapshots(None, "", f"rule {name} keeps recovery points forever: storage "
                             "grows without bound")
        clusters = _clusters_of(plan, of(SELECTION), of(CLUSTER))
        if not clusters:
            return Snapshots(None, "", f"rule {name}: no Aurora cluster found in the plan's "
                             "selection; set usage.backup_gb_stored")
        for cluster in clusters:
            retention = float(cluster.props.get("backupRetentionPeriod") or 1)
            past = max(0.0, float(keep) - retention)
            billed += past
            parts.append(f"rule {name}: daily, kept {float(keep):g} d, {past:g} past the "
                         f"cluster's {retention:g}-day retention")
    return Snapshots(billed, "; ".join(parts))
