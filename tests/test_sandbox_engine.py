"""The sandbox engine against a real emulator: deploy, no-op, update, destroy, locking, crashes,
emulator restarts, duplicate URNs and unsupported types."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pulumi
import pulumi_aws as aws
import pytest

from tap_lib.config import load_settings
from tap_lib.engines.sandbox import server
from tap_lib.engines.sandbox.engine import SandboxEngine
from tap_lib.engines.sandbox.state import OperationLock, stack_dir
from tap_lib.errors import DuplicateUrnError, SandboxStateLost, StackLocked, UnsupportedResource
from tap_lib.program.entry import define_stack

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]

READ_PREFIXES = ("Describe", "Get", "List", "Head")


def engine(suffix: str, *overrides: str, program=None) -> SandboxEngine:
    return SandboxEngine(load_settings("dev", [f"suffix={suffix}", *overrides]), program=program)


def count_writes(eng: SandboxEngine) -> list[str]:
    """Record every mutating API call the engine's clients make from now on."""
    writes: list[str] = []

    def on_call(model, **_):
        if not model.name.startswith(READ_PREFIXES):
            writes.append(model.name)

    eng.clients().session.events.register("before-call", on_call)
    return writes


def tagged(eng: SandboxEngine, describe: str, key: str) -> list[dict]:
    ec2 = eng.clients()("ec2")
    items = getattr(ec2, describe)(Filters=[{"Name": "tag-key", "Values": ["tap:urn"]}])[key]
    return [i for i in items if any(t["Value"].startswith(f"urn:pulumi:{eng.stack}::")
                                    for t in i.get("Tags", []))
            and i.get("State") not in ("deleted", "deleting")]


def test_deploy_noop_update_destroy(sandbox_home):
    eng = engine("life")
    plan = eng.preview()
    assert plan.summary["create"] == len(plan.steps) > 40
    result = eng.up()
    assert result.summary["create"] == plan.summary["create"]
    out = eng.outputs()
    c = eng.clients()

    # every resource kind, described with boto3
    vpc = c("ec2").describe_vpcs(VpcIds=[out["vpc_id"]])["Vpcs"][0]
    assert vpc["CidrBlock"] == "10.0.0.0/16"
    subnets = c("ec2").describe_subnets(SubnetIds=out["public_subnet_ids"]
                                        + out["private_subnet_ids"])["Subnets"]
    assert sorted({s["AvailabilityZone"] for s in subnets}) == ["eu-west-2a", "eu-west-2b"]
    assert len(c("ec2").describe_nat_gateways(NatGatewayIds=out["nat_gateway_ids"])
               ["NatGateways"]) == 1
    cluster = c("rds").describe_db_clusters(DBClusterIdentifier=out["rds_cluster_id"])[
        "DBClusters"][0]
    assert cluster["Engine"] == "aurora-postgresql" and cluster["StorageEncrypted"]
    assert c("rds").describe_db_instances()["DBInstances"][0]["PubliclyAccessible"] is False
    secret = c("secretsmanager").describe_secret(SecretId=out["db_secret_arn"])
    assert secret["RotationEnabled"] and secret["RotationLambdaARN"].endswith(
        out["rotation_function_name"])
    fn = c("lambda").get_function_configuration(FunctionName=out["lambda_function_name"])
    assert fn["Environment"]["Variables"]["DB_SECRET_ARN"] == out["db_secret_arn"]
    assert sorted(fn["VpcConfig"]["SubnetIds"]) == sorted(out["private_subnet_ids"])
    bucket = out["s3_bucket_name"]
    assert c("s3").get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert c("s3").get_public_access_block(Bucket=bucket)[
        "PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    assert "aws:SecureTransport" in c("s3").get_bucket_policy(Bucket=bucket)["Policy"]
    assert c("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/tapstack-payment-life")[
        "logGroups"][0]["retentionInDays"] == 14

    # a second deploy with unchanged configuration is all `same` and writes nothing
    again = engine("life")
    writes = count_writes(again)
    noop = again.up()
    assert set(s.op for s in noop.steps) == {"same"}
    assert writes == []

    # a changed setting shows as update, is applied, and is visible in the emulator
    changed = engine("life", "lambda.memory_mb=512", "lambda.log_retention_days=30")
    plan = changed.preview()
    updates = {s.name: s.diffs for s in plan.steps if s.op == "update"}
    assert updates == {"payment-fn-life": ["memorySize"], "payment-logs-life": ["retentionInDays"],
                       "rotation-logs-life": ["retentionInDays"]}
    assert plan.summary["create"] == plan.summary["delete"] == plan.summary["replace"] == 0
    changed.up()
    assert c("lambda").get_function_configuration(
        FunctionName=out["lambda_function_name"])["MemorySize"] == 512
    assert c("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/tapstack-payment-life")[
        "logGroups"][0]["retentionInDays"] == 30

    # destroy: reverse dependency order, then nothing of the stack is left
    gone = changed.destroy()
    assert gone.summary["delete"] == result.summary["create"]
    order = [s.type for s in gone.steps]
    assert order.index("aws:ec2/subnet:Subnet") > order.index("aws:lambda/function:Function")
    assert order[-1] == "aws:ec2/vpc:Vpc" or order.index("aws:ec2/vpc:Vpc") > order.index(
        "aws:ec2/subnet:Subnet")
    assert changed.store.state.resources == {}
    assert tagged(changed, "describe_vpcs", "Vpcs") == []
    assert c("rds").describe_db_clusters()["DBClusters"] == []
    assert c("lambda").list_functions()["Functions"] == []
    assert [s["Name"] for s in c("secretsmanager").list_secrets()["SecretList"]
            if "life" in s["Name"]] == []
    assert bucket not in [b["Name"] for b in c("s3").list_buckets()["Buckets"]]
    history = changed.history()
    assert [h.operation for h in history] == ["deploy", "deploy", "deploy", "destroy"]
    assert all(h.result == "succeeded" for h in history)

    # the same stack can come straight back (no leftovers such as automated DB snapshots)
    again = engine("life", "secrets.rotation_enabled=false")
    assert again.up().summary["create"] == result.summary["create"] - 2
    again.destroy()


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tap_lib.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())


def test_second_concurrent_operation_is_refused(sandbox_home):
    eng = engine("lock")
    with OperationLock(eng.stack, "deploy"):
        proc = _cli("deploy", "--env", "dev", "--set", "suffix=lock", "--yes")
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3
    assert "locked" in err and f"pid {os.getpid()}" in err and "deploy" in err
    assert "Traceback" not in err
    assert eng.store.state.resources == {}
    with pytest.raises(StackLocked):
        with OperationLock(eng.stack, "deploy"), OperationLock(eng.stack, "destroy"):
            pass


def test_two_concurrent_deploys_one_refused(sandbox_home):
    procs = [_cli("deploy", "--env", "dev", "--set", "suffix=race", "--yes") for _ in range(2)]
    results = [(p.returncode, err) for p in procs
               for _, err in [p.communicate(timeout=300)]]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 3], results
    refused = next(err for code, err in results if code == 3)
    assert "stack TapStackrace is locked: deploy by pid" in refused and "since" in refused
    eng = engine("race")
    assert len(tagged(eng, "describe_vpcs", "Vpcs")) == 1
    eng.destroy()


def test_killed_deploy_converges_without_orphans(sandbox_home):
    state_file = stack_dir("TapStackkill") / "state.json"
    proc = _cli("deploy", "--env", "dev", "--set", "suffix=kill", "--yes")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if state_file.exists():
            try:
                resources = json.loads(state_file.read_text())["resources"]
            except json.JSONDecodeError:
                resources = []
            if len(resources) >= 12:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    recorded = json.loads(state_file.read_text())["resources"]
    assert 12 <= len(recorded) < 50, "the deploy must be killed part-way"

    eng = engine("kill")
    result = eng.up()
    assert all(r.status == "created" for r in eng.store.state.resources.values())
    assert len(eng.store.state.resources) == len(result.steps)
    # exactly one of everything: no orphan or duplicate from the killed run
    assert len(tagged(eng, "describe_vpcs", "Vpcs")) == 1
    assert len(tagged(eng, "describe_subnets", "Subnets")) == 4
    assert len(tagged(eng, "describe_addresses", "Addresses")) == 1
    assert len(tagged(eng, "describe_nat_gateways", "NatGateways")) == 1
    assert len(tagged(eng, "describe_route_tables", "RouteTables")) == 3
    for urn in eng.store.state.resources:
        assert eng.read_live(urn) is not None, urn
    assert set(s.op for s in engine("kill").preview().steps) == {"same"}
    eng.destroy()


def test_emulator_restart_is_detected_and_next_deploy_recreates(sandbox_home):
    eng = engine("boot", "secrets.rotation_enabled=false")
    first = eng.up()
    server.stop()
    server.start()  # a fresh emulator: empty, with a new boot id
    with pytest.raises(SandboxStateLost) as lost:
        engine("boot", "secrets.rotation_enabled=false").preview()
    assert "restarted" in str(lost.value) and "tap deploy --env dev" in str(lost.value)
    again = engine("boot", "secrets.rotation_enabled=false")
    result = again.up()
    assert result.summary["create"] == first.summary["create"]
    assert any("recreated" in n for n in result.notes)
    assert len(tagged(again, "describe_vpcs", "Vpcs")) == 1
    again.destroy()


def _twice(settings):
    define_stack(settings)
    define_stack(settings)


def test_duplicate_urn_is_an_error_naming_the_urn(sandbox_home):
    with pytest.raises(DuplicateUrnError) as err:
        engine("dup", program=_twice).preview()
    assert "urn:pulumi:TapStackdup::TapStack::" in str(err.value)


def _with_topic(settings):
    define_stack(settings)
    aws.sns.Topic("alerts", opts=pulumi.ResourceOptions())


def test_unsupported_type_is_an_error_naming_the_type(sandbox_home):
    eng = engine("sns", program=_with_topic)
    with pytest.raises(UnsupportedResource) as err:
        eng.preview()
    assert "aws:sns/topic:Topic" in str(err.value)
    assert eng.store.state.resources == {}
