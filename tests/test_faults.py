"""Fault injection at every step: a handler call fails part-way, and the next run converges.

Every sandbox handler's create, update and delete is wrapped in-process to fail at its N-th
call, for each N of a change, in two ways: the call is refused before it reaches the emulator,
or it reaches the emulator and the answer is lost (the resource exists but tap never heard).
Replacements are covered both ways the engine makes them: create-before-delete (a new VPC,
everything in it replaced onto it, the old ones deleted last) and delete-before-replace (the
Aurora cluster keeps its identifier: its instances and it are deleted first). After the failure the next deploy (or destroy) must
converge: exactly the declared resources exist, counted through boto3 per kind and tagged with
the stack's URNs where the API allows, nothing orphaned or duplicated, and the next preview is
all `same` (for destroy: the emulator holds none of the stack and its state is empty).

Only tap's own handler calls are made to fail (a stand-in for AWS errors and timeouts); the
emulator, the program and the engine are real.
"""
from __future__ import annotations

import os
import threading
from collections import Counter
from typing import Callable

import pytest

from tap_lib.engines.sandbox.engine import SandboxEngine
from tap_lib.engines.sandbox.handlers import REGISTRY
from tap_lib.errors import TapError

from helpers import engines

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]

METHODS = ("create", "update", "delete")
MODES = ("refused", "lost")   # before the emulator acts / after it acted, answer lost


class InjectedFault(RuntimeError):
    """The fault this test injects (a stand-in for an AWS error or a lost response)."""


class Faults:
    """Counts every handler create/update/delete call; the `fail_at`-th one fails."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int | None = None,
                 mode: str = "refused"):
        self.fail_at, self.mode = fail_at, mode
        self.calls: list[tuple[str, str]] = []     # (type, method) in call order
        self.failed: tuple[str, str] | None = None
        self._lock = threading.Lock()
        for handler in REGISTRY.values():
            for method in METHODS:
                monkeypatch.setattr(handler, method, self._wrap(handler, method,
                                                                getattr(handler, method)))

    def _wrap(self, handler, method: str, real: Callable):
        def call(*args, **kwargs):
            with self._lock:
                self.calls.append((handler.type, method))
                hit = len(self.calls) == self.fail_at
                if hit:
                    self.failed = (handler.type, method)
            if hit and self.mode == "refused":
                raise InjectedFault(f"injected: {handler.type}.{method} refused")
            result = real(*args, **kwargs)
            if hit:
                raise InjectedFault(f"injected: {handler.type}.{method} answer lost")
            return result
        return call


SUFFIX = "flt"


engine = engines("dev", suffix=SUFFIX)


# --------------------------------------------------------------------------- counting live
def _urn(tags, key="Key", value="Value") -> str | None:
    if isinstance(tags, dict):
        return tags.get("tap:urn")
    return next((t[value] for t in tags or [] if t[key] == "tap:urn"), None)


def live_inventory(eng: SandboxEngine) -> dict[str, list[str]]:
    """URNs of the stack's live resources per Pulumi type, read through boto3 kind by kind
    (a duplicate shows as a URN listed twice, an orphan as a URN tap's state lacks)."""
    c, prefix = eng.clients(), f"urn:pulumi:{eng.stack}::"
    ec2 = c("ec2")
    found: dict[str, list[str]] = {}

    def add(type_: str, urn: str | None) -> None:
        """Under the type its URN names: a stack adopts some resources AWS made for it
        (the VPC's default security group) and lists them as their own kind."""
        if urn and urn.startswith(prefix):
            found.setdefault(urn.split("::")[2].rsplit("$", 1)[-1], []).append(urn)

    tagged = [{"Name": "tag-key", "Values": ["tap:urn"]}]
    for type_, call, key in (
            ("aws:ec2/vpc:Vpc", ec2.describe_vpcs, "Vpcs"),
            ("aws:ec2/subnet:Subnet", ec2.describe_subnets, "Subnets"),
            ("aws:ec2/internetGateway:InternetGateway", ec2.describe_internet_gateways,
             "InternetGateways"),
            ("aws:ec2/routeTable:RouteTable", ec2.describe_route_tables, "RouteTables"),
            ("aws:ec2/eip:Eip", ec2.describe_addresses, "Addresses"),
            ("aws:ec2/securityGroup:SecurityGroup", ec2.describe_security_groups,
             "SecurityGroups"),
            ("aws:ec2/flowLog:FlowLog", ec2.describe_flow_logs, "FlowLogs")):
        for item in call(Filters=tagged)[key]:
            add(type_, _urn(item.get("Tags") or item.get("TagList")))
    for nat in ec2.describe_nat_gateways(Filters=tagged)["NatGateways"]:
        if nat["State"] not in ("deleted", "deleting", "failed"):
            add("aws:ec2/natGateway:NatGateway", _urn(nat.get("Tags")))
    rds = c("rds")
    for cluster in rds.describe_db_clusters()["DBClusters"]:
        add("aws:rds/cluster:Cluster", _urn(cluster.get("TagList")))
    for inst in rds.describe_db_instances()["DBInstances"]:
        add("aws:rds/clusterInstance:ClusterInstance", _urn(inst.get("TagList")))
    for group in rds.describe_db_subnet_groups()["DBSubnetGroups"]:
        add("aws:rds/subnetGroup:SubnetGroup", _urn(rds.list_tags_for_resource(
            ResourceName=group["DBSubnetGroupArn"])["TagList"]))
    sm = c("secretsmanager")
    for secret in sm.list_secrets()["SecretList"]:
        if not secret.get("DeletedDate"):
            add("aws:secretsmanager/secret:Secret", _urn(secret.get("Tags")))
    lam = c("lambda")
    for fn in lam.list_functions()["Functions"]:
        add("aws:lambda/function:Function", _urn(lam.list_tags(Resource=fn["FunctionArn"])[
            "Tags"]))
    iam = c("iam")
    for role in iam.list_roles()["Roles"]:
        add("aws:iam/role:Role", _urn(iam.list_role_tags(RoleName=role["RoleName"])["Tags"]))
    logs = c("logs")
    for group in logs.describe_log_groups()["logGroups"]:
        add("aws:cloudwatch/logGroup:LogGroup", _urn(logs.list_tags_log_group(
            logGroupName=group["logGroupName"])["tags"]))
    kms = c("kms")
    for key in kms.list_keys()["Keys"]:
        if kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] != "PendingDeletion":
            add("aws:kms/key:Key", _urn(kms.list_resource_tags(KeyId=key["KeyId"])["Tags"],
                                        "TagKey", "TagValue"))
    s3 = c("s3")
    for bucket in s3.list_buckets()["Buckets"]:
        tags = s3.get_bucket_tagging(Bucket=bucket["Name"])["TagSet"]
        add("aws:s3/bucket:Bucket", _urn(tags))
    return found


def untagged_counts(eng: SandboxEngine, inv: dict[str, list[str]] | None = None
                    ) -> dict[str, int]:
    """Kinds the API cannot tag with a URN, counted where the stack's tagged parents are:
    security-group rules in its groups, KMS aliases on its keys, RDS-managed master secrets
    of its clusters."""
    c = eng.clients()
    inv = live_inventory(eng) if inv is None else inv
    state = eng.store.state.resources
    ids = lambda t: {r.id for r in state.values() if r.type == t}  # noqa: E731
    groups = c("ec2").describe_security_groups(Filters=[{"Name": "tag-key",
                                                         "Values": ["tap:urn"]}])
    mine = [g for g in groups["SecurityGroups"] if _urn(g.get("Tags"), ) in
            set(inv.get("aws:ec2/securityGroup:SecurityGroup", []))]
    keys = {k["KeyId"] for k in c("kms").list_keys()["Keys"]
            if _urn(c("kms").list_resource_tags(KeyId=k["KeyId"])["Tags"], "TagKey",
                    "TagValue") in set(inv.get("aws:kms/key:Key", []))}
    clusters = ids("aws:rds/cluster:Cluster")
    managed = [s for s in c("secretsmanager").list_secrets()["SecretList"]
               if s["Name"].startswith("rds!") and not s.get("DeletedDate")
               and any(cl in str(s.get("Tags")) or cl in s.get("Description", "")
                       for cl in clusters)]
    return {
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
            sum(len(g.get("IpPermissions", [])) for g in mine),
        "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule":
            sum(len(g.get("IpPermissionsEgress", [])) for g in mine),
        "aws:kms/alias:Alias": sum(1 for a in c("kms").list_aliases()["Aliases"]
                                   if a.get("TargetKeyId") in keys),
        "rds-managed master secret": len(managed),
    }


def assert_converged(eng: SandboxEngine, context: str) -> None:
    """Exactly the declared resources: state fully created and equal to the program; live
    resources per kind equal to state, one each."""
    state = eng.store.state.resources
    assert all(r.status == "created" for r in state.values()), context
    assert {s.op for s in engine(*_overrides(eng)).preview().steps} == {"same"}, context
    live = live_inventory(eng)
    dupes = {t: [u for u, n in Counter(urns).items() if n > 1] for t, urns in live.items()}
    assert {t: d for t, d in dupes.items() if d} == {}, f"{context}: duplicated"
    declared = {t: sorted(r.urn for r in state.values() if r.type == t) for t in live} | {
        t: sorted(r.urn for r in state.values() if r.type == t)
        for t in {r.type for r in state.values()} if t in TAGGED_TYPES}
    assert {t: sorted(live.get(t, [])) for t in declared} == declared, \
        f"{context}: live resources differ from the declared ones"
    counts = untagged_counts(eng, live)
    want = Counter(r.type for r in state.values())
    want["rds-managed master secret"] = want["aws:rds/cluster:Cluster"]
    assert counts == {k: want[k] for k in counts}, f"{context}: untagged kinds"


TAGGED_TYPES = {
    "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/routeTable:RouteTable", "aws:ec2/eip:Eip", "aws:ec2/securityGroup:SecurityGroup",
    "aws:ec2/flowLog:FlowLog", "aws:ec2/natGateway:NatGateway", "aws:rds/cluster:Cluster",
    "aws:rds/clusterInstance:ClusterInstance", "aws:rds/subnetGroup:SubnetGroup",
    "aws:secretsmanager/secret:Secret", "aws:lambda/function:Function", "aws:iam/role:Role",
    "aws:cloudwatch/logGroup:LogGroup", "aws:kms/key:Key", "aws:s3/bucket:Bucket"}


def _overrides(eng: SandboxEngine) -> list[str]:
    return list(getattr(eng, "_fault_overrides", []))


def _engine(*overrides: str) -> SandboxEngine:
    eng = engine(*overrides)
    eng._fault_overrides = list(overrides)
    return eng


def assert_empty(eng: SandboxEngine, context: str) -> None:
    assert eng.store.state.resources == {}, context
    assert live_inventory(eng) == {}, f"{context}: left behind"
    counts = untagged_counts(eng)
    assert counts["aws:kms/alias:Alias"] == 0 and counts["rds-managed master secret"] == 0
    names = eng.settings.physical_names(eng.account(eng.settings.region))
    assert not any(a["AliasName"] == names.kms_alias
                   for a in eng.clients()("kms").list_aliases()["Aliases"]), context


# --------------------------------------------------------------------------- the scenarios
def count_calls(monkeypatch, run: Callable[[], object]) -> list[tuple[str, str]]:
    with monkeypatch.context() as mp:
        faults = Faults(mp)
        run()
    return faults.calls


def inject(monkeypatch, n: int, mode: str, run: Callable[[], object]) -> tuple[str, str]:
    """Run with the n-th handler call failing; the run must fail with it, typed."""
    with monkeypatch.context() as mp:
        faults = Faults(mp, fail_at=n, mode=mode)
        with pytest.raises(TapError) as err:
            run()
    assert "injected" in str(err.value), err.value
    assert faults.failed is not None
    return faults.failed


FULL = os.environ.get("TAP_FAULTS_FULL") == "1"
# Fault points per scenario in a normal run (each costs a failing run, a recovery run and the
# convergence checks: ~5-8 s on a loaded 2-core machine). TAP_FAULTS_FULL=1 injects at every N
# in both modes: create and destroy alone make 40+ calls each, so 160+ points; opt-in, with no
# per-test timeout (the README's scheduled command).
BUDGET = {"update": 5, "delete": 4, "create": 6, "destroy": 5,
          "create-before-delete": 6, "delete-before-replace": 6}


def points(total: int, scenario: str) -> list[tuple[int, str]]:
    """(N, mode) fault points: every N in both modes when FULL; otherwise an even spread that
    keeps the first and the last call, the modes alternating."""
    if FULL:
        return [(n, mode) for n in range(1, total + 1) for mode in MODES]
    budget = min(BUDGET[scenario], 2 * total)
    if budget >= 2 * total:
        return [(n, mode) for n in range(1, total + 1) for mode in MODES]
    step = (total - 1) / max(budget - 1, 1)
    ns = sorted({1 + round(i * step) for i in range(budget)})
    return [(n, MODES[i % 2]) for i, n in enumerate(ns)]


INJECTED: Counter = Counter()     # fault points per scenario, printed at the end (-s)


@pytest.fixture(scope="module")
def report():
    yield INJECTED
    print("\nfault points injected: " + ", ".join(f"{k} {v}" for k, v in INJECTED.items())
          + f"; total {sum(INJECTED.values())}")


def _change_cycle(monkeypatch, report, name: str, scenario: str, a: tuple[str, ...],
                  b: tuple[str, ...]) -> None:
    """Deployed at `a`; the change to `b` fails at each N and is converged; the next N goes
    back from `b` to `a` (the same kind of change), so no reset is needed in between."""
    _engine(*a).up()
    calls = count_calls(monkeypatch, lambda: _engine(*b).up())
    assert calls, f"{name}: the change made no handler call"
    _engine(*a).up()
    here, there = a, b
    for n, mode in points(len(calls), scenario):
        failed = inject(monkeypatch, n, mode, lambda: _engine(*there).up())
        eng = _engine(*there)
        eng.up()
        assert_converged(eng, f"{name}: {failed} failed at call {n} ({mode})")
        report[name] += 1
        here, there = there, here
    _engine(*a).up()


def test_update_retag_fails_at_every_step(sandbox_home, monkeypatch, report):
    _change_cycle(monkeypatch, report, "update (retag)", "update", (), ("tags.Owner=alice",))


def test_replace_with_dependents_fails_at_every_step(sandbox_home, monkeypatch, report):
    # create-before-delete: a new VPC; subnets, route tables, routes, associations, groups,
    # rules, NAT gateways (their Elastic IP is kept: delete-before-replace) and the flow log
    # replaced onto it; gateway, subnet group, cluster and functions updated; old ones last
    _change_cycle(monkeypatch, report, "replace with dependents (vpc.cidr)",
                  "create-before-delete", (), ("vpc.cidr=10.1.0.0/16",))


def test_delete_before_replace_fails_at_every_step(sandbox_home, monkeypatch, report):
    # the cluster keeps its identifier: its instances and it are deleted first, then created
    _change_cycle(monkeypatch, report, "delete-before-replace (db.database_name)",
                  "delete-before-replace", (), ("db.database_name=payments2",))


def test_delete_fails_at_every_step(sandbox_home, monkeypatch, report):
    name = "delete (db.instances 2->1)"
    _engine("db.instances=2").up()
    calls = count_calls(monkeypatch, lambda: _engine().up())
    assert ("aws:rds/clusterInstance:ClusterInstance", "delete") in calls
    for n, mode in points(len(calls), "delete"):
        _engine("db.instances=2").up()
        failed = inject(monkeypatch, n, mode, lambda: _engine().up())
        eng = _engine()
        eng.up()
        assert_converged(eng, f"{name}: {failed} failed at call {n} ({mode})")
        report[name] += 1


def test_create_and_destroy_fail_at_every_step(sandbox_home, monkeypatch, report):
    """A fresh deploy fails at its N-th call and the next deploy converges; the converged stack
    is then what a destroy starts from: it fails at its M-th call and the next destroy leaves
    nothing. One deploy and one destroy per pair of fault points (CI time); the points are
    those of two separate scenarios."""
    create, destroy = "create (fresh deploy)", "destroy"
    _engine().destroy()
    calls = count_calls(monkeypatch, lambda: _engine().up())
    assert len(calls) >= 40
    removals = count_calls(monkeypatch, lambda: _engine().destroy())
    assert len(removals) >= 40 and {m for _, m in removals} == {"delete"}
    assert_empty(_engine(), "destroy without faults")
    ups, downs = points(len(calls), "create"), points(len(removals), "destroy")
    for i in range(max(len(ups), len(downs))):
        if i < len(ups):
            n, mode = ups[i]
            failed = inject(monkeypatch, n, mode, lambda: _engine().up())
            context = f"{create}: {failed} failed at call {n} ({mode})"
        else:
            context = f"{create}: without faults"
        eng = _engine()
        eng.up()
        assert_converged(eng, context)
        report[create] += i < len(ups)
        if i < len(downs):
            n, mode = downs[i]
            failed = inject(monkeypatch, n, mode, lambda: _engine().destroy())
            context = f"{destroy}: {failed} failed at call {n} ({mode})"
        else:
            context = f"{create}: destroy after call {ups[i][0]}"
        eng = _engine()
        eng.destroy()
        assert_empty(eng, context)
        report[destroy] += i < len(downs)


def test_failed_deploy_outlives_none_of_its_calls(sandbox_home, monkeypatch):
    """The runtime gives up at the first failed registration while sibling registrations go on
    in executor threads. A recovery deploy started then raced them: an egress rule created
    behind its back (never in its state) failed its own create with InvalidPermission.Duplicate.
    A failed deploy returns only when every handler call it started has ended and is recorded."""
    egress = REGISTRY["aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"]
    real, running, overlapped = egress.create, [], []
    sibling_failed, deploy_over = threading.Event(), threading.Event()

    def create(ctx, inputs):
        if ctx.name.startswith("lambda-to-db"):
            sibling_failed.set()
            raise InjectedFault("injected: lambda-to-db refused")
        running.append(ctx.urn)
        overlapped.append(sibling_failed.wait(timeout=60))   # in flight when its sibling failed
        deploy_over.wait(timeout=2)   # and after: a deploy that returns early finds it running
        out = real(ctx, inputs)
        running.remove(ctx.urn)
        return out

    _engine().destroy()
    with monkeypatch.context() as mp:
        mp.setattr(egress, "create", create)
        with pytest.raises(TapError, match="injected"):
            _engine().up()
        outlived = list(running)
        deploy_over.set()
        assert outlived == [], "a handler call outlived the failed deploy"
        assert overlapped == [True], "no call was in flight when its sibling failed"
    state = _engine().store.state.resources
    https = [r for r in state.values() if r.name.startswith("lambda-to-https")]
    assert all(r.status == "created" for r in https)
    eng = _engine()
    eng.up()
    assert_converged(eng, "after a failed create with a call in flight")
    eng.destroy()
