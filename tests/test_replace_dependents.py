"""Replacing a resource others depend on, as Pulumi does it (sandbox engine).

Create-before-delete by default: the VPC's replacement exists before anything moves, its
dependents are replaced (or updated) onto it, and the old resources go last, in reverse
dependency order. Delete-before-replace when the replacement keeps a physical name: the Aurora
cluster keeps its identifier, so its instances and it are deleted first, then created again.
Either way a replace is one step, the preview promised exactly what the deploy did, and an
interrupted replacement never costs the old resource while it is still the one in use.

Real parts: the moto server, the program under Pulumi's mock runtime, the engine; only the
handlers' calls are wrapped, to record their order or fail one (a stand-in for an AWS error).
"""
from __future__ import annotations

import dataclasses

import pytest

from tap_lib.engines.base import Plan
from tap_lib.engines.sandbox.engine import REPLACED
from tap_lib.engines.sandbox.handlers import REGISTRY
from tap_lib.errors import PlanMismatch, TapError

from helpers import engines, tagged

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]

VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
CLUSTER = "aws:rds/cluster:Cluster"
INSTANCE = "aws:rds/clusterInstance:ClusterInstance"


engine = engines("dev", suffix="rpl")


def record_calls(monkeypatch, fail: tuple[str, str] | None = None) -> list[tuple[str, str]]:
    """(type, method) of every handler create/delete in call order; `fail` refuses that one."""
    calls: list[tuple[str, str]] = []
    for h in REGISTRY.values():
        for method in ("create", "delete"):
            def call(*args, _h=h, _m=method, _real=getattr(h, method), **kwargs):
                calls.append((_h.type, _m))
                if (_h.type, _m) == fail:
                    raise RuntimeError(f"injected: {_h.type}.{_m} refused")
                return _real(*args, **kwargs)
            monkeypatch.setattr(h, method, call)
    return calls


def ops(steps) -> dict[str, str]:
    return {s.urn: s.op for s in steps if s.op != "same"}


def of_type(steps, type_: str) -> list:
    return [s for s in steps if s.type == type_]


def test_vpc_replacement_creates_before_deleting(sandbox_home, monkeypatch):
    base = engine()
    base.up()
    old_vpc = base.outputs()["vpc_id"]
    eng = engine("vpc.cidr=10.1.0.0/16")
    plan = eng.preview()
    # dependents see the replacement's new id: their ForceNew vpcId replaces them
    assert [s.op for s in of_type(plan.steps, VPC)] == ["replace"]
    assert {s.op for s in of_type(plan.steps, SUBNET)} == {"replace"}
    assert all("vpcId" in s.diffs for s in of_type(plan.steps, SUBNET))
    igw = of_type(plan.steps, "aws:ec2/internetGateway:InternetGateway")
    assert [(s.op, s.diffs) for s in igw] == [("update", ["vpcId"])]   # moved in place
    with monkeypatch.context() as mp:
        calls = record_calls(mp)
        result = eng.up()
    assert ops(result.steps) == ops(plan.steps)
    assert result.summary["delete"] == 0 and result.summary["replace"] == plan.summary["replace"]
    # the new VPC first, the old one last, after every old subnet
    vpc_calls = [m for t, m in calls if t == VPC]
    assert vpc_calls == ["create", "delete"]
    assert calls.index((VPC, "create")) < calls.index((SUBNET, "create"))
    last_subnet_delete = max(i for i, c in enumerate(calls) if c == (SUBNET, "delete"))
    assert last_subnet_delete < calls.index((VPC, "delete"))
    ec2 = eng.clients()("ec2")
    assert ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [old_vpc]}])["Vpcs"] == []
    new = ec2.describe_vpcs(VpcIds=[eng.outputs()["vpc_id"]])["Vpcs"][0]
    assert new["CidrBlock"] == "10.1.0.0/16"
    assert not [u for u in eng.store.state.resources if REPLACED in u]
    assert {s.op for s in engine("vpc.cidr=10.1.0.0/16").preview().steps} == {"same"}

    # A replacement whose create fails leaves the old VPC the stack's VPC: recorded, live,
    # previewed as the same replace again, and replaced cleanly by the next deploy.
    back = engine()
    with monkeypatch.context() as mp:
        record_calls(mp, fail=(VPC, "create"))
        with pytest.raises(TapError, match="injected"):
            back.up()
    current = eng.outputs()["vpc_id"]
    assert ec2.describe_vpcs(VpcIds=[current])["Vpcs"]
    again = engine().preview()
    assert [s.op for s in of_type(again.steps, VPC)] == ["replace"]
    assert [s for s in again.steps if REPLACED in s.urn] == []   # the old copy is the VPC
    engine().up()
    assert ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [current]}])["Vpcs"] == []
    assert [v["CidrBlock"] for v in tagged(eng, "vpcs", "TapStackrpl")] == ["10.0.0.0/16"]


def test_named_replacement_deletes_dependents_first(sandbox_home, monkeypatch):
    engine().up()
    eng = engine("db.database_name=payments2")
    plan = eng.preview()
    assert [(s.op, s.diffs) for s in of_type(plan.steps, CLUSTER)] == [
        ("replace", ["databaseName"])]
    assert {(s.op, tuple(s.diffs)) for s in of_type(plan.steps, INSTANCE)} == {
        ("replace", ("clusterIdentifier",))}
    # a reviewed plan that says otherwise stops the deploy before anything is deleted
    edited = dataclasses.replace(plan, steps=[
        dataclasses.replace(s, op="update") if s.type == INSTANCE else s for s in plan.steps])
    with monkeypatch.context() as mp:
        calls = record_calls(mp)
        with pytest.raises(PlanMismatch):
            eng.up(plan=Plan(edited.stack, edited.target, edited.steps))
    assert calls == []
    with monkeypatch.context() as mp:
        calls = record_calls(mp)
        result = eng.up()
    assert ops(result.steps) == ops(plan.steps) and result.summary["delete"] == 0
    rds = [(t.split(":")[-1], m) for t, m in calls if t in (CLUSTER, INSTANCE)]
    n = len(of_type(plan.steps, INSTANCE))
    assert rds == ([("ClusterInstance", "delete")] * n + [("Cluster", "delete"),
                                                          ("Cluster", "create")]
                   + [("ClusterInstance", "create")] * n)
    out = eng.outputs()
    cluster = eng.clients()("rds").describe_db_clusters(
        DBClusterIdentifier=out["rds_cluster_id"])["DBClusters"][0]
    assert cluster["DatabaseName"] == "payments2" and len(cluster["DBClusterMembers"]) == n
    assert {s.op for s in engine("db.database_name=payments2").preview().steps} == {"same"}
