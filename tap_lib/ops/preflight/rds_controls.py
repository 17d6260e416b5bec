"""Preflight rules for the database's remaining controls, as Prowler 5.46 judges them: per
instance (storage encrypted, multi-AZ, deletion protection, minor upgrades, in a VPC, port,
master username, engine version offered, Extended Support, CA certificate), per cluster (port,
copy tags to snapshots, master username) and over the snapshots (encrypted, not public).

Aurora instances take the cluster's settings (deletion protection, encryption, master user,
Multi-AZ = members in several zones), as Prowler reads them for cluster members. Each control
is one pure judgement over a plain view (`InstanceView`, `ClusterView`, snapshots), built here
from the synthesized program and in verify (ops/hardening_storage.py) from the live stack.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from ...errors import TapError
from . import CLUSTER, DB_INSTANCE, SUBNET, Context, Finding, rule
from .control_tables import TableControl, Unknown, table_rule

SUBNET_GROUP = ("aws:rds/subnetGroup:SubnetGroup",)
SNAPSHOT = ("aws:rds/clusterSnapshot:ClusterSnapshot", "aws:rds/snapshot:Snapshot")
DEFAULT_PORTS = {"aurora-postgresql": 5432, "postgres": 5432, "aurora-mysql": 3306,
                 "mysql": 3306, "mariadb": 3306, "oracle": 1521, "sqlserver": 1433, "db2": 50000}
DEFAULT_USERNAMES = ("admin", "postgres")          # Prowler's rds_*_default_admin
EXTENDED_SUPPORT = "open-source-rds-extended-support"
NO_EXTENDED_SUPPORT = "open-source-rds-extended-support-disabled"
# RDS's CAs and when they expire (RDS User Guide, "Certificate authorities"); a new instance
# with no ca_cert_identifier gets rds-ca-rsa2048-g1.
DEFAULT_CA = "rds-ca-rsa2048-g1"
CA_EXPIRY = {"rds-ca-2019": dt.datetime(2024, 8, 22, tzinfo=dt.timezone.utc),
             "rds-ca-rsa2048-g1": dt.datetime(2061, 5, 25, tzinfo=dt.timezone.utc),
             "rds-ca-rsa4096-g1": dt.datetime(2121, 5, 25, tzinfo=dt.timezone.utc),
             "rds-ca-ecc384-g1": dt.datetime(2121, 5, 25, tzinfo=dt.timezone.utc)}
CERT_MIN_DAYS = 92           # Prowler passes a certificate with more than 3 months left


@dataclass
class InstanceView:
    """What the instance controls read of one instance (with its cluster's settings)."""

    name: str
    logical: str
    engine: str
    zones: list[str | None]          # the zones of every member of its cluster
    auto_minor_upgrade: bool | None  # None: unset (RDS's default, on)
    vpc: str | None
    port: int | None
    username: str | None
    encrypted: bool | None
    deletion_protection: bool | None
    version: str
    offered: list[str] | None        # the versions the region offers; None: unknown
    offered_note: str = ""
    lifecycle: str | None = None     # EngineLifecycleSupport as RDS reports it
    ca: str | None = None
    cert_valid_till: dt.datetime | None = None


@dataclass
class ClusterView:
    name: str
    logical: str
    engine: str
    port: int | None
    username: str | None
    copy_tags: bool | None
    snapshots: list[dict]            # {"id", "encrypted", "public"}
    multi_az: bool = False           # members in more than one zone (AWS's MultiAZ)
    auto_minor_upgrade: bool | None = None   # None: unset (RDS's default, on)


def _default_port(engine: str, port: int | None) -> str | None:
    default = next((p for e, p in DEFAULT_PORTS.items() if e == engine), None)
    return f"port {int(port)} is {engine}'s default" if port is not None and port == default \
        else None


# -- per instance ----------------------------------------------------------------------------
def judge_instance_encrypted(i: InstanceView) -> str | None:
    """RDS.3: the instance's storage is encrypted (an Aurora member: the cluster's)."""
    return None if i.encrypted is True else "storage is not encrypted"


def judge_instance_multi_az(i: InstanceView) -> str | None:
    """RDS.5: the instance is Multi-AZ; an Aurora member is when its cluster is, i.e. its
    members are in more than one zone (AWS's MultiAZ of the cluster)."""
    zones = sorted({z for z in i.zones if z})
    if None in i.zones:
        return "a member names no zone: RDS may put every member in one"
    return None if len(zones) > 1 else (
        f"the cluster's {len(i.zones)} instance(s) are in {len(zones)} zone(s) "
        f"({', '.join(zones) or 'none'})")


def judge_instance_deletion_protection(i: InstanceView) -> str | None:
    """RDS.8: deletion protection on (an Aurora member: the cluster's)."""
    return None if i.deletion_protection is True else "the cluster has no deletion protection"


def judge_minor_upgrades(i: InstanceView) -> str | None:
    """RDS.13: automatic minor version upgrades on, so security patches arrive in the
    maintenance window."""
    return "automatic minor version upgrade is off" if i.auto_minor_upgrade is False else None


def judge_in_vpc(i: InstanceView) -> str | None:
    """RDS.18: the instance is in a VPC (its subnet group's)."""
    return None if i.vpc else "not in a VPC (no subnet group of the stack's subnets)"


def judge_instance_port(i: InstanceView) -> str | None:
    """RDS.23: the instance does not listen on its engine's default port."""
    return _default_port(i.engine, i.port)


def judge_instance_admin(i: InstanceView) -> str | None:
    """RDS.25: the master username is not a default one (admin, postgres)."""
    return f"master username {i.username!r} is a default" \
        if i.username in DEFAULT_USERNAMES or not i.username else None


def judge_engine_supported(i: InstanceView) -> str | None:
    """rds_instance_deprecated_engine_version: the engine version is one the region still
    offers."""
    if i.offered is None:
        return Unknown(f"offered versions unknown ({i.offered_note})")
    return None if i.version in i.offered else \
        f"{i.engine} {i.version} is not offered (deprecated)"


def judge_extended_support(i: InstanceView) -> str | None:
    """rds_instance_extended_support: not enrolled in RDS Extended Support (paid support of a
    major past its end of standard support); RDS enrols a cluster created without a choice."""
    return "enrolled in RDS Extended Support" if i.lifecycle == EXTENDED_SUPPORT else None


def judge_certificate(i: InstanceView, now: dt.datetime | None = None) -> str | None:
    """rds_instance_certificate_expiration: the server certificate's CA is valid for more than
    three months."""
    now = now or dt.datetime.now(dt.timezone.utc)
    valid_till = i.cert_valid_till or CA_EXPIRY.get(i.ca or "")
    if valid_till is None:
        return Unknown(f"certificate details not reported (CA {i.ca or 'unknown'})")
    left = (valid_till - now).days
    return None if left > CERT_MIN_DAYS else (
        f"CA {i.ca} expired" if left < 0 else f"CA {i.ca} expires in {left} days")


# -- per cluster -----------------------------------------------------------------------------
def judge_cluster_port(c: ClusterView) -> str | None:
    """rds_cluster_non_default_port: the cluster does not listen on its engine's default
    port."""
    return _default_port(c.engine, c.port)


def judge_copy_tags(c: ClusterView) -> str | None:
    """RDS.16: snapshots carry the cluster's tags (owner, environment, data class)."""
    return None if c.copy_tags is True else "copy tags to snapshots is off"


def judge_cluster_admin(c: ClusterView) -> str | None:
    """RDS.24: the master username is not a default one (admin, postgres)."""
    return f"master username {c.username!r} is a default" \
        if c.username in DEFAULT_USERNAMES or not c.username else None


def judge_cluster_minor_upgrades(c: ClusterView) -> str | None:
    """RDS.35: a Multi-AZ cluster upgrades minor versions automatically (Prowler judges only
    Multi-AZ clusters)."""
    return "automatic minor version upgrade is off" \
        if c.multi_az and c.auto_minor_upgrade is False else None


def judge_snapshots_public(c: ClusterView) -> str | None:
    """RDS.1: no snapshot of the database is restorable by everyone."""
    public = [s["id"] for s in c.snapshots if s.get("public")]
    return f"public snapshot(s): {', '.join(public)}" if public else None


def judge_snapshots_encrypted(c: ClusterView) -> str | None:
    """RDS.4: every snapshot of the database is encrypted."""
    plain = [s["id"] for s in c.snapshots if s.get("encrypted") is not True]
    return f"unencrypted snapshot(s): {', '.join(plain)}" if plain else None


INSTANCE_CONTROLS = (
    TableControl("TAP431", "RDS.3", "instance-encrypted", "rds.instance-encrypted",
                 "storage encrypted", judge_instance_encrypted,
                 "set storage_encrypted=True on the cluster", False, "instance"),
    TableControl("TAP432", "RDS.5", "instance-multi-az", "rds.instance-multi-az",
                 "the cluster's instances in more than one zone", judge_instance_multi_az,
                 "set db.instances >= 2 (spread over the zones)", True, "instance"),
    TableControl("TAP433", "RDS.8", "instance-deletion-protection",
                 "rds.instance-deletion-protection", "deletion protection on",
                 judge_instance_deletion_protection, "set db.deletion_protection: true", True,
                 "instance"),
    TableControl("TAP434", "RDS.13", "minor-upgrades", "rds.minor-upgrades",
                 "automatic minor version upgrade on", judge_minor_upgrades,
                 "leave auto_minor_version_upgrade unset or True", True, "instance"),
    TableControl("TAP435", "RDS.18", "in-vpc", "rds.in-vpc", "in the stack's VPC", judge_in_vpc,
                 "give the instance the stack's DB subnet group", False, "instance"),
    TableControl("TAP436", "RDS.23", "instance-port", "rds.instance-port",
                 "not the engine's default port", judge_instance_port,
                 "set db.port to a non-default port, or a policy exception", True, "instance"),
    TableControl("TAP437", "RDS.25", "instance-default-admin", "rds.instance-default-admin",
                 "not admin or postgres", judge_instance_admin,
                 "program/database.py MASTER_USERNAME", False, "instance"),
    # preflight: seed rule TAP005 judges the same offer (cluster and instances); verify: this row
    TableControl("TAP005", "rds_instance_deprecated_engine_version", "engine-offered",
                 "rds.engine-offered", "an offered version", judge_engine_supported,
                 "set db.engine_version to an offered version", False, "instance"),
    TableControl("TAP439", "rds_instance_extended_support", "no-extended-support",
                 "rds.extended-support", "not enrolled", judge_extended_support,
                 f"set engine_lifecycle_support='{NO_EXTENDED_SUPPORT}' on the cluster", True,
                 "instance"),
    TableControl("TAP440", "rds_instance_certificate_expiration", "certificate",
                 "rds.certificate", f"CA valid > {CERT_MIN_DAYS} days", judge_certificate,
                 f"set ca_cert_identifier='{DEFAULT_CA}' on the instances", False, "instance"),
)
CLUSTER_CONTROLS = (
    TableControl("TAP441", "rds_cluster_non_default_port", "cluster-port", "rds.cluster-port",
                 "not the engine's default port", judge_cluster_port,
                 "set db.port to a non-default port, or a policy exception", True, "cluster"),
    TableControl("TAP442", "RDS.16", "copy-tags", "rds.copy-tags", "copy tags to snapshots on",
                 judge_copy_tags, "set copy_tags_to_snapshot=True", True, "cluster"),
    TableControl("TAP443", "RDS.24", "default-admin", "rds.default-admin",
                 "not admin or postgres", judge_cluster_admin,
                 "program/database.py MASTER_USERNAME", False, "cluster"),
    TableControl("TAP447", "RDS.35", "cluster-minor-upgrades", "rds.cluster-minor-upgrades",
                 "automatic minor version upgrade on (Multi-AZ)", judge_cluster_minor_upgrades,
                 "leave auto_minor_version_upgrade unset or True", True, "cluster"),
    TableControl("TAP444", "RDS.1", "snapshots-not-public", "rds.snapshots-not-public",
                 "no public snapshot", judge_snapshots_public,
                 "share snapshots with named accounts only", False, "cluster"),
    TableControl("TAP445", "RDS.4", "snapshots-encrypted", "rds.snapshots-encrypted",
                 "every snapshot encrypted", judge_snapshots_encrypted,
                 "encrypt the cluster (its snapshots follow)", False, "cluster"),
)


# -- views of the program --------------------------------------------------------------------
def _members(ctx: Context, c) -> list:
    return [i for i in ctx.of(DB_INSTANCE)
            if i.inputs.get("clusterIdentifier") in (c.id, c.inputs.get("clusterIdentifier"))]


def _offered(ctx: Context) -> tuple[list[str] | None, str]:
    try:
        offered, source = ctx.engine_versions(ctx.settings.region, "aurora-postgresql")
    except (LookupError, TapError) as exc:
        return None, str(exc)
    return offered or None, source


def cluster_views(ctx: Context) -> list[tuple[ClusterView, list[InstanceView]]]:
    vpc_of_subnet = {s.id: s.inputs.get("vpcId") for s in ctx.of(SUBNET)}
    groups = {ref: g for g in ctx.of(SUBNET_GROUP)
              for ref in (g.id, g.inputs.get("name"), g.outputs.get("name")) if ref}
    offered, note = _offered(ctx) if ctx.of(DB_INSTANCE) else (None, "")
    out = []
    for c in ctx.of(CLUSTER):
        ci = c.inputs
        engine = ci.get("engine") or ""
        port = ci.get("port") or DEFAULT_PORTS.get(engine)
        snapshots = [{"id": f"{c.name} (automated)", "encrypted": ci.get("storageEncrypted"),
                      "public": False}]
        members = _members(ctx, c)
        refs = {c.id, ci.get("clusterIdentifier")} | {
            r for i in members for r in (i.id, i.inputs.get("identifier"))}
        snapshots += [{"id": s.name, "encrypted": ci.get("storageEncrypted"),
                       "public": "all" in (s.inputs.get("sharedAccounts") or [])}
                      for s in ctx.of(SNAPSHOT)
                      if refs & {s.inputs.get("dbClusterIdentifier"),
                                 s.inputs.get("dbInstanceIdentifier")}]
        zones = [i.inputs.get("availabilityZone") for i in members]
        view = ClusterView(c.name, c.name, engine, port, ci.get("masterUsername"),
                           ci.get("copyTagsToSnapshot"), snapshots,
                           multi_az=len({z for z in zones if z}) > 1,
                           auto_minor_upgrade=ci.get("autoMinorVersionUpgrade"))
        instances = []
        for i in members:
            group = groups.get(i.inputs.get("dbSubnetGroupName") or ci.get("dbSubnetGroupName"))
            vpcs = {vpc_of_subnet.get(s) for s in (group.inputs.get("subnetIds") or [])} \
                if group else set()
            instances.append(InstanceView(
                name=i.name, logical=i.name, engine=engine, zones=zones,
                auto_minor_upgrade=i.inputs.get("autoMinorVersionUpgrade"),
                vpc=next(iter(sorted(v for v in vpcs if v)), None), port=port,
                username=ci.get("masterUsername"), encrypted=ci.get("storageEncrypted"),
                deletion_protection=ci.get("deletionProtection"),
                version=i.inputs.get("engineVersion") or ci.get("engineVersion") or "",
                offered=offered, offered_note=note,
                # RDS enrols a cluster created without a choice in Extended Support
                lifecycle=ci.get("engineLifecycleSupport") or EXTENDED_SUPPORT,
                ca=i.inputs.get("caCertIdentifier") or DEFAULT_CA))
        out.append((view, instances))
    return out


def _subjects(spec: TableControl) -> Callable[[Context], list]:
    def views(ctx: Context) -> list:
        return [v for cluster, instances in cluster_views(ctx)
                for v in (instances if spec.per == "instance" else [cluster])]
    return views


for _spec in INSTANCE_CONTROLS + CLUSTER_CONTROLS:
    if _spec.rule != "TAP005":   # registered by seed.py: one finding per version, not two
        table_rule(_spec, _subjects(_spec), "rds")


@rule("TAP446", "RDS.39 tls-in-transit")
def rds_tls_in_transit(ctx: Context) -> list[Finding]:
    """RDS.39: Prowler judges it by the check it judges RDS.38 with
    (rds_instance_transport_encrypted: the cluster's parameter group forces TLS), so it is
    judged here by TAP109's judgement, under its own id."""
    from .data_controls import rds_tls_enforced
    return rds_tls_enforced(ctx)
