"""Fleet operations against a real sandbox emulator: two deployed stacks and one that is not,
verified concurrently in one process. Nothing is mocked, except where a test makes AWS itself
refuse one call (a botocore hook that answers with an error, said at the test)."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from tap_lib.cli import main
from tap_lib.errors import ConfigError, UsageError
from tap_lib.ops import fleet
from tap_lib.ops.stack import deploy
from tap_lib.ops.verify import verify

pytestmark = pytest.mark.sandbox


# Describes one call can make for several stacks: DescribeVpcs, DescribeFlowLogs,
# DescribeSubnets, DescribeNatGateways, DescribeAddresses, DescribeRouteTables,
# DescribeSecurityGroups, DescribeNetworkAcls, DescribeVpcEndpoints, DescribeDBClusters,
# DescribeDBInstances, BatchGetSecretValue.
SHARED_KINDS = 12


def judgement(report) -> list[tuple]:
    """Every check as (id, resource, expected, actual, status), the synthetic payment's log
    object name (it differs per run) left out."""
    rows = report.checks.to_dict("records")
    return sorted((c["id"], c["resource"], c["expected"],
                   c["actual"].split(" (")[0] if c["id"] == "payment.synthetic" else c["actual"],
                   c["status"]) for c in rows)


def same_judgement(a, b) -> bool:
    return judgement(a) == judgement(b)


def refuse(clients, operation: str, when) -> None:
    """Mocks AWS itself: `operation` answers AccessDenied when `when(params)` holds."""
    from botocore.exceptions import ClientError

    service, _, name = operation.partition(".")

    def hook(params, **_):
        if when(params):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "refused"}}, name)

    clients(service).meta.events.register(f"before-parameter-build.{service}.{name}", hook)


@pytest.fixture(scope="module")
def two_stacks(sandbox_home):
    """dev/ft1 and dev/ft2 deployed; dev/ft3 never deployed."""
    for suffix in ("ft1", "ft2"):
        deploy("dev", "sandbox", (f"suffix={suffix}",), yes=True)
    return sandbox_home


def test_fleet_verify_matches_single_verify_and_worst_exit(two_stacks, capsys):
    report = fleet.fleet_verify([("dev", "ft1"), ("dev", "ft2"), ("dev", "ft3")], "sandbox", 3)
    by_stack = {r.stack: r for r in report.results}
    assert [r.stack for r in report.results] == ["TapStackft1", "TapStackft2", "TapStackft3"]
    single = verify("dev", "sandbox", ("suffix=ft1",))
    for stack in ("TapStackft1", "TapStackft2"):
        r = by_stack[stack]
        assert (r.status, r.exit_code) == ("passed", 0)
        # the same reads as one verify: the describes that filter by several ids were made
        # once for both deployed stacks, and each stack counts half of them
        assert Counter(r.report.calls) == Counter(single.calls)
        own = len(single.calls) - SHARED_KINDS
        assert r.counts["aws_calls"] == own + SHARED_KINDS / 2 < single.aws_calls
        assert r.report.shared_by == 2
        assert r.counts["passed"] == single.passed
        assert same_judgement(r.report, single) if stack == "TapStackft1" else True
    assert (by_stack["TapStackft3"].status, by_stack["TapStackft3"].exit_code) == (
        "not-deployed", 3)
    assert report.exit_code == 3
    assert report.notes == ["1 client set(s) shared by 3 stack(s)"]
    matrix = report.matrix()
    assert list(matrix.index) == ["TapStackft1", "TapStackft2", "TapStackft3"]
    assert set(single.checks["id"]) == set(matrix.columns)
    # dev's policy exceptions read `excepted` in the matrix, never pass; the rest pass
    excepted = set(single.checks[single.checks.status == "excepted"].id)
    assert excepted and {c: v for c, v in matrix.loc["TapStackft1"].items() if v != "pass"} == \
        dict.fromkeys(excepted, "excepted")
    assert (matrix.loc["TapStackft3"] == "").all()
    # the cost column: each deployed stack priced from its own recorded resources; the stack
    # that is not deployed is unknown, never 0
    from tap_lib.cost import estimate_state
    from tap_lib.engines.registry import open_engine
    from tap_lib.ops.stack import settings_for

    settings = settings_for("dev", ("suffix=ft1",))
    est = estimate_state(open_engine(settings, "sandbox").resources(), settings)
    cost = by_stack["TapStackft1"].to_dict()["cost"]
    assert cost["known_monthly_usd"] == round(est.monthly_usd, 2) > 0
    assert cost["unknown"] == est.unknown and cost["complete"] == est.complete
    assert cost["monthly_usd"] == (cost["known_monthly_usd"] if est.complete else None)
    summary = report.summary().set_index("stack")
    assert list(summary.columns[-4:]) == ["monthly_usd", "cost", "duration_s", "error"]
    assert summary.loc["TapStackft3", "cost"].startswith("unknown (not deployed")
    assert by_stack["TapStackft3"].to_dict()["cost"]["monthly_usd"] is None
    assert summary["monthly_usd"].isna().tolist() == [not est.complete] * 2 + [True]
    if not est.complete:   # dev's Aurora instance class has no eu-west-2 price in the catalog
        assert summary.loc["TapStackft1", "cost"].startswith(
            f"unknown ({cost['known_monthly_usd']:.2f} USD + {len(est.unknown)} unpriced)")
    # each verified stack got its own audit entry
    from tap_lib import trail
    entries = [e for e in trail.read() if e["operation"] == "verify"][-2:]
    assert sorted((e["stack"], e["result"], e["summary"]["failed"]) for e in entries) == [
        ("TapStackft1", "succeeded", 0), ("TapStackft2", "succeeded", 0)]


def test_a_failed_control_shows_in_the_matrix_and_exit_1(two_stacks, capsys):
    from tap_lib.engines.registry import open_engine
    from tap_lib.ops.stack import settings_for

    settings = settings_for("dev", ("suffix=ft2",))
    engine = open_engine(settings, "sandbox")
    bucket = engine.outputs()["s3_bucket_name"]
    s3 = engine.clients()("s3")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    try:
        code = main(["fleet", "verify", "--env", "dev", "--suffix", "ft1", "--suffix", "ft2",
                     "--json"])
        out = json.loads(capsys.readouterr().out)
    finally:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert code == 1
    assert [o["stack"] for o in out] == ["TapStackft1", "TapStackft2"]
    assert [o["exit_code"] for o in out] == [0, 1]
    failed = [c["id"] for c in out[1]["checks"] if c["status"] == "fail"]
    assert failed == ["s3.versioning"]
    assert out[1]["summary"]["failed"] == 1 and out[0]["summary"]["failed"] == 0


def test_drift_judged_per_stack_as_single_verify_judges_it(two_stacks):
    """A stack with drift (its database admits the world, its bucket lost versioning) fails
    exactly the checks its own tap verify fails; the clean stack beside it is untouched."""
    from tap_lib.engines.registry import open_engine
    from tap_lib.ops.stack import settings_for

    engine = open_engine(settings_for("dev", ("suffix=ft2",)), "sandbox")
    out, clients = engine.outputs(), engine.clients()
    cluster = clients("rds").describe_db_clusters(
        DBClusterIdentifier=out["rds_cluster_id"])["DBClusters"][0]
    group = cluster["VpcSecurityGroups"][0]["VpcSecurityGroupId"]
    world = [{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
              "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    clients("ec2").authorize_security_group_ingress(GroupId=group, IpPermissions=world)
    clients("s3").put_bucket_versioning(Bucket=out["s3_bucket_name"],
                                       VersioningConfiguration={"Status": "Suspended"})
    try:
        report = fleet.fleet_verify([("dev", "ft1"), ("dev", "ft2")], "sandbox", 2)
        alone = verify("dev", "sandbox", ("suffix=ft2",))
    finally:
        clients("ec2").revoke_security_group_ingress(GroupId=group, IpPermissions=world)
        clients("s3").put_bucket_versioning(Bucket=out["s3_bucket_name"],
                                           VersioningConfiguration={"Status": "Enabled"})
    ft1, ft2 = report.results
    assert (ft1.status, ft2.status, report.exit_code) == ("passed", "failed", 1)
    assert set(alone.checks[alone.checks.status == "fail"].id) == {
        "s3.versioning", "sg.no-world-ingress", "sg.db-ingress",
        "sg.internet"}   # the world rule also fails the internet-ingress controls
    assert same_judgement(ft2.report, alone)
    assert report.drifted() == ["TapStackft2"]
    assert (report.matrix().loc["TapStackft2", "s3.versioning"],
            report.matrix().loc["TapStackft1", "s3.versioning"]) == ("fail", "pass")


def test_a_stack_whose_read_fails_does_not_sink_the_others(two_stacks, monkeypatch):
    """AWS refuses one of ft2's own reads: ft2 ends in error (exit 3, as its own verify would),
    ft1 is verified in full. AWS refusing a shared describe (one that filters by several ids)
    costs nothing but the share: each stack then reads that kind on its own, same result."""
    from tap_lib.engines.registry import open_engine
    from tap_lib.ops.stack import settings_for

    vpc2 = open_engine(settings_for("dev", ("suffix=ft2",)), "sandbox").outputs()["vpc_id"]
    made = fleet.ClientCache.get

    def clients_refusing(self, *args):
        clients = made(self, *args)
        refuse(clients, "ec2.DescribeVpcAttribute", lambda p: p.get("VpcId") == vpc2)
        refuse(clients, "ec2.DescribeSubnets",
               lambda p: len(p.get("Filters", [{}])[0].get("Values", [])) > 1)
        return clients

    monkeypatch.setattr(fleet.ClientCache, "get", clients_refusing)
    report = fleet.fleet_verify([("dev", "ft1"), ("dev", "ft2")], "sandbox", 2)
    ft1, ft2 = report.results
    assert (ft2.status, ft2.exit_code) == ("error", 3)
    assert "DescribeVpcAttribute failed: AccessDenied" in ft2.error
    assert (ft1.status, ft1.exit_code, report.exit_code) == ("passed", 0, 3)
    single = verify("dev", "sandbox", ("suffix=ft1",))
    assert same_judgement(ft1.report, single)
    # the refused shared DescribeSubnets (refused before it was sent, so not counted): ft1
    # described its own subnets, and shares the other nine kinds
    assert Counter(ft1.report.calls) == Counter(single.calls)
    own = len(single.calls) - SHARED_KINDS + 1
    assert ft1.counts["aws_calls"] == own + (SHARED_KINDS - 1) / 2


def test_fleet_preview_and_inspect(two_stacks):
    preview = fleet.fleet_preview([("dev", "ft1"), ("dev", "ft3")], "sandbox")
    counts = {r.stack: r.counts for r in preview.results}
    assert counts["TapStackft1"]["create"] == 0 and counts["TapStackft1"]["same"] > 0
    assert counts["TapStackft3"]["create"] == counts["TapStackft1"]["same"]
    assert preview.exit_code == 0
    inspected = fleet.fleet_inspect([("dev", "ft1"), ("dev", "ft3")], "sandbox")
    r1, r3 = inspected.results
    assert r1.counts["drifted"] == 0 and r1.counts["resources"] == counts["TapStackft1"]["same"]
    assert (r3.status, r3.exit_code) == ("not-deployed", 3)


def test_fleet_file_is_validated_like_config(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text("stacks:\n  - env: dev\n    suffix: pr1\n  - env: dev\n    sufix: pr2\n")
    with pytest.raises(ConfigError) as err:
        fleet.load_fleet_file(path)
    assert str(path) in str(err.value) and "stacks[1].sufix" in str(err.value)
    assert "allowed: env, suffix" in str(err.value)
    path.write_text("stacks: dev\n")
    with pytest.raises(ConfigError, match="field 'stacks'"):
        fleet.load_fleet_file(path)
    path.write_text("stacks:\n  - env: nosuch\n")
    with pytest.raises(ConfigError, match="no such environment file"):
        fleet.resolve_stacks(fleet_file=path)
    path.write_text("stacks:\n  - env: dev\n    suffix: pr1\n  - env: staging\n")
    refs = [(ref, s.stack_name) for ref, s in fleet.resolve_stacks(fleet_file=path)]
    assert refs[0] == (fleet.StackRef("dev", "pr1"), "TapStackpr1")
    assert refs[1][0] == fleet.StackRef("staging")


@pytest.mark.parametrize("text, field, problem", [
    ("stacks: []\n", "stacks", "non-empty list"),
    ("stacks:\n  - dev\n", "stacks[0]", "must be a mapping"),
    ("stacks:\n  - env: dev\n    suffix: ''\n", "stacks[0].suffix", "non-empty text"),
    ("stacks:\n  - suffix: pr1\n", "stacks[0].env", "non-empty text"),
    ("stacks:\n  - env: 5\n", "stacks[0].env", "non-empty text"),
    ("stacks:\n  - env: dev\nextra: 1\n", "extra", "allowed: stacks"),
    ("stacks:\n" + "  - env: dev\n" * (fleet.MAX_STACKS + 1), "stacks",
     f"at most {fleet.MAX_STACKS}"),
])
def test_fleet_file_errors_name_the_field(tmp_path, text, field, problem):
    """The fleet file's pydantic model: each problem a ConfigError naming file and field."""
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        fleet.load_fleet_file(path)
    assert str(path) in str(err.value) and f"field '{field}'" in str(err.value), str(err.value)
    assert problem in str(err.value)


def test_not_deployed_is_told_by_type_not_by_words():
    from tap_lib.config import load_settings
    from tap_lib.errors import NotDeployed, StateCorrupt

    ref, settings = fleet.StackRef("dev", "nd1"), load_settings("dev", ["suffix=nd1"])
    result = fleet._failed(ref, settings, NotDeployed("stack TapStacknd1 has no outputs"))
    assert (result.status, result.exit_code) == ("not-deployed", 3)
    damaged = StateCorrupt("state.json", "names stack x, which is not deployed on sandbox")
    assert fleet._failed(ref, settings, damaged).status == "error"


def test_stack_selection_errors(monkeypatch):
    with pytest.raises(UsageError, match="same stack TapStackpr1"):
        fleet.resolve_stacks(["dev", "staging"], ["pr1"])
    with pytest.raises(UsageError, match="give at least one --env"):
        fleet.resolve_stacks([], ["pr1"])
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "pr9")
    with pytest.raises(UsageError, match="ENVIRONMENT_SUFFIX"):
        fleet.resolve_stacks(["dev"], ["pr1"])
    assert main(["fleet", "list", "--env", "dev", "--suffix", "pr1", "--fleet", "x.yaml"]) == 2


def test_warm_runtime_answers_as_a_cold_child_would():
    """The fleet's shared runtime worker: a failing invocation says what a child of its own
    says, and each sequence starts from a fresh environment (the previous sequence's
    variables are gone). No emulator needed: the handler fails before its first AWS call."""
    from tap_lib.engines.sandbox import lambda_runtime
    from tap_lib.errors import OperationFailed
    from tap_lib.ops.smoke import synthetic_event

    def failure(variables):
        with pytest.raises(OperationFailed) as err:
            lambda_runtime.invoke("payment", synthetic_event(), endpoint="http://127.0.0.1:9",
                                  region="eu-west-2", variables=variables, timeout=60)
        return err.value.message

    cold = failure({})
    assert cold == ("payment handler failed on invoke: RuntimeError: environment variable "
                    "BUCKET_NAME is not set")
    with lambda_runtime.shared():
        with_bucket = failure({"BUCKET_NAME": "b"})     # gets further: no DB_SECRET_ARN
        assert with_bucket != cold and "BUCKET_NAME" not in with_bucket
        assert failure({}) == cold                       # BUCKET_NAME did not stay behind
    assert lambda_runtime._shared is None
