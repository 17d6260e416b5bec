"""Cross-stack safety: recovering one stack never adopts, and so never deletes, another's.

After a kill mid-deploy an ad-hoc stack's recovery adopted dev's NAT gateway (moto ignores `tag:`
filters on DescribeNatGateways and the handler took the first live one), and its destroy deleted
it. Here two stacks share one sandbox and every EC2 tag filter is stripped on the client before
it is sent (a server that honours none of them), so what holds is each handler's own check of
the URN tag (handlers/base.py `adoptable`), never the server's filtering.
"""
from __future__ import annotations

import time
from typing import Callable

import pytest

from tap_lib.aws import Clients
from tap_lib.engines.sandbox import server
from tap_lib.engines.sandbox.discovery import find_stack_resources
from tap_lib.engines.sandbox.engine import SandboxEngine
from tap_lib.engines.sandbox.handlers import REGISTRY
from tap_lib.engines.sandbox.state import normalize_reveal
from tap_lib.errors import TapError
from tap_lib.ops.verify import verify
from helpers import make_engine
from test_faults import Faults, InjectedFault, count_calls

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]

ADHOC = "pr6329"                  # the suffix of the ad-hoc stack beside dev (dev's file)
NAT = "aws:ec2/natGateway:NatGateway"
SPREAD = 3                        # kill points spread over the ad-hoc deploy, besides NAT's two
CALLS: list[tuple[str, str]] = []     # the handler calls of the ad-hoc stack's first deploy


def _strip_tag_filters(params: dict, **_) -> None:
    """Drop `tag:`, `tag-key` and `tag-value` filters from an EC2 request before it is sent."""
    for key in ("Filters", "Filter"):
        if key in params:
            params[key] = [f for f in params[key] if not f.get("Name", "").startswith("tag")]


@pytest.fixture(scope="module")
def unfiltered():
    """Every EC2 client tap makes in this module answers as if the server ignored tag filters
    (as moto does for NAT gateways, whatever tap's emulator patch does)."""
    real = Clients.__call__

    def call(self, service: str):
        client = real(self, service)
        if service == "ec2":
            client.meta.events.register("before-parameter-build.ec2", _strip_tag_filters,
                                        unique_id="test-cross-stack-unfiltered")
        return client

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Clients, "__call__", call)
        yield


@pytest.fixture(scope="module")
def stacks(sandbox_home, unfiltered):
    """dev and the ad-hoc stack, both deployed on the module's sandbox (the ad-hoc deploy's
    handler calls counted, for the kill points)."""
    dev, adhoc = make_engine(), make_engine(suffix=ADHOC)
    dev.up()
    with pytest.MonkeyPatch.context() as mp:
        CALLS[:] = count_calls(mp, adhoc.up)
    return dev, adhoc


def ids(eng: SandboxEngine) -> set[str]:
    return {r.id for r in eng.store.state.resources.values() if r.id}


def dead(eng: SandboxEngine) -> list[str]:
    """The stack's recorded resources the emulator no longer has under their recorded ids."""
    return [r.urn for r in eng.store.state.resources.values()
            if r.status != "created" or eng.read_live(r.urn) is None]


# --------------------------------------------------------------------------- each find
def test_each_find_returns_only_its_own_stacks_resource(stacks):
    """With both stacks live and no tag filter honoured, every handler's find for a resource of
    one stack returns that resource (or nothing), never one of the other stack: with its own
    inputs, with its own resource excluded (a create that never happened), and with the other
    stack's inputs (names, parents) under its own URN."""
    wrong = []
    for mine, other in (stacks, stacks[::-1]):
        theirs, own_ids = ids(other), ids(mine)
        for rec in mine.store.state.resources.values():
            handler, inputs = REGISTRY[rec.type], normalize_reveal(rec.inputs)
            ctx = mine.context(rec.urn, rec.name)
            found = handler.find(ctx, inputs, frozenset())
            alone = handler.find(ctx, inputs, frozenset({rec.id}))
            if found in theirs or alone in theirs:
                wrong.append(f"{mine.stack} {rec.name}: found {other.stack}'s {found or alone}")
            elif found not in (rec.id, "adopted", None):
                wrong.append(f"{mine.stack} {rec.name}: found {found}, not its own {rec.id}")
        prefix = (f"urn:pulumi:{other.stack}::", f"urn:pulumi:{mine.stack}::")
        for rec in other.store.state.resources.values():
            ctx = mine.context(rec.urn.replace(*prefix), rec.name)
            found = REGISTRY[rec.type].find(ctx, normalize_reveal(rec.inputs), frozenset())
            if found is not None and found not in own_ids:
                wrong.append(f"{mine.stack} with {other.stack}'s {rec.name} inputs: "
                             f"adopted {found}")
    assert not wrong, "\n".join(wrong)


def test_finds_that_look_up_find_their_own(stacks):
    """The ownership check is not a find that finds nothing: every type found by tag or by
    name finds its own live resource."""
    dev, _ = stacks
    looked_up = {r.type for r in dev.store.state.resources.values()
                 if REGISTRY[r.type].find(dev.context(r.urn, r.name), normalize_reveal(r.inputs),
                                          frozenset()) == r.id}
    assert looked_up >= {
        "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/routeTable:RouteTable", "aws:ec2/eip:Eip", NAT,
        "aws:ec2/securityGroup:SecurityGroup", "aws:ec2/flowLog:FlowLog", "aws:kms/key:Key",
        "aws:kms/alias:Alias", "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy",
        "aws:lambda/function:Function", "aws:lambda/permission:Permission",
        "aws:cloudwatch/logGroup:LogGroup", "aws:rds/subnetGroup:SubnetGroup",
        "aws:rds/cluster:Cluster", "aws:rds/clusterInstance:ClusterInstance",
        "aws:s3/bucket:Bucket", "aws:secretsmanager/secret:Secret",
        "aws:secretsmanager/secretRotation:SecretRotation",
        "aws:ec2/routeTableAssociation:RouteTableAssociation"}


def test_discovery_lists_only_its_stack(stacks):
    for mine, other in (stacks, stacks[::-1]):
        found = find_stack_resources(mine.stack, mine.clients())
        assert found and all(f.urn.startswith(f"urn:pulumi:{mine.stack}::") for f in found)
        assert not {f.ref for f in found} & ids(other)


def test_emulator_filters_nat_gateways_by_tag(stacks):
    """tap's emulator patch: DescribeNatGateways honours tag filters as AWS does (a client of
    its own, without this module's filter stripping)."""
    ec2 = server.client("ec2", stacks[0].settings.region)
    for eng in stacks:
        nats = [r for r in eng.store.state.resources.values() if r.type == NAT]
        got = ec2.describe_nat_gateways(Filter=[{"Name": "tag:tap:urn",
                                                 "Values": [nats[0].urn]}])["NatGateways"]
        assert [g["NatGatewayId"] for g in got] == [nats[0].id]
    assert ec2.describe_nat_gateways(Filter=[{"Name": "tag-key",
                                              "Values": ["no-such-key"]}])["NatGateways"] == []


# --------------------------------------------------------------------------- killed deploys
class FailFirst(Faults):
    """Faults whose failing call is the first `create` of one type: a progress point that stays
    put whatever order the concurrent registrations take."""

    def __init__(self, monkeypatch, type_: str, mode: str):
        self.type_ = type_
        super().__init__(monkeypatch, None, mode)

    def _wrap(self, handler, method: str, real: Callable):
        if (handler.type, method) != (self.type_, "create"):
            return real

        def call(*args, **kwargs):
            with self._lock:
                hit = self.failed is None
                self.failed = self.failed or (handler.type, method)
            if hit and self.mode == "refused":
                raise InjectedFault(f"injected: {handler.type}.create refused")
            result = real(*args, **kwargs)
            if hit:
                raise InjectedFault(f"injected: {handler.type}.create answer lost")
            return result
        return call


def _killed(make_faults: Callable, run: Callable[[], object]) -> tuple[str, str]:
    with pytest.MonkeyPatch.context() as mp:
        faults = make_faults(mp)
        with pytest.raises(TapError, match="injected"):
            run()
    assert faults.failed is not None
    return faults.failed


def test_killed_adhoc_deploy_leaves_dev_untouched(stacks):
    """The ad-hoc stack's deploy is killed (a call refused, or its answer lost) at its NAT
    gateway's create and at a few points spread over the deploy; it is deployed again and
    destroyed. dev's resources keep their ids and stay live, and dev still verifies."""
    dev, adhoc = stacks
    before = {u: r.id for u, r in dev.store.state.resources.items()}
    adhoc.destroy()
    total = len(CALLS)
    kills: list[tuple[str, Callable]] = [
        (f"{NAT} create {mode}", lambda mp, mode=mode: FailFirst(mp, NAT, mode))
        for mode in ("refused", "lost")]
    step = (total - 1) / (SPREAD + 1)
    kills += [(f"call {n} {mode}", lambda mp, n=n, mode=mode: Faults(mp, n, mode))
              for n, mode in ((1 + round(i * step), ("lost", "refused")[i % 2])
                              for i in range(1, SPREAD + 1))]
    timings = []
    for label, make in kills:
        start = time.monotonic()
        failed = _killed(make, lambda: make_engine(suffix=ADHOC).up())
        where = f"{label} ({failed[0]}.{failed[1]})"
        make_engine(suffix=ADHOC).up()
        survivor = make_engine(suffix=ADHOC)
        survivor.destroy()
        assert find_stack_resources(survivor.stack, survivor.clients()) == [], \
            f"{where}: the ad-hoc stack left resources behind"
        assert dead(make_engine()) == [], \
            f"{where}: recovering or destroying the ad-hoc stack hit dev"
        timings.append(round(time.monotonic() - start, 1))
    assert {u: r.id for u, r in make_engine().store.state.resources.items()} == before
    report = verify("dev", "sandbox")
    failed_checks = report.checks[report.checks.status == "fail"]
    assert failed_checks.empty, failed_checks.to_string()
    print(f"\nkill points: {[k for k, _ in kills]}; seconds each: {timings}")
