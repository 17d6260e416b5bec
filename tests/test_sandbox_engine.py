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

from tap_lib.engines.sandbox import server
from tap_lib.engines.sandbox.engine import SandboxEngine
from tap_lib.engines.sandbox.state import OperationLock, stack_dir
from tap_lib.errors import DuplicateUrnError, SandboxStateLost, StackLocked, UnsupportedResource
from tap_lib.program.entry import define_stack

from helpers import live_counts, make_engine, tagged, tap_popen

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]

READ_PREFIXES = ("Describe", "Get", "List", "Head")


def count_writes(eng: SandboxEngine) -> list[str]:
    """Record every mutating API call the engine's clients make from now on."""
    writes: list[str] = []

    def on_call(model, **_):
        if not model.name.startswith(READ_PREFIXES):
            writes.append(model.name)

    eng.clients().session.events.register("before-call", on_call)
    return writes


def count_runs(mp: pytest.MonkeyPatch) -> list[bool]:
    """Record every program run (its preview flag) from now on."""
    from tap_lib.engines import synth
    runs: list[bool] = []
    real = synth._run

    def counted(settings, resolver, preview, *rest):
        runs.append(preview)
        return real(settings, resolver, preview, *rest)
    mp.setattr(synth, "_run", counted)
    return runs


def test_deploy_noop_update_destroy(sandbox_home):
    eng = make_engine(suffix="life")
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
    again = make_engine(suffix="life")
    writes = count_writes(again)
    with pytest.MonkeyPatch.context() as mp:
        runs = count_runs(mp)
        noop = again.up()
    assert set(s.op for s in noop.steps) == {"same"}
    assert writes == []
    assert runs == [True]   # the preview pass under the lock showed nothing to apply

    # a changed setting shows as update, is applied, and is visible in the emulator
    changed = make_engine("lambda.memory_mb=512", "lambda.log_retention_days=30", suffix="life")
    plan = changed.preview()
    updates = {s.name: s.diffs for s in plan.steps if s.op == "update"}
    assert updates == {"payment-fn-life": ["memorySize"], "payment-logs-life": ["retentionInDays"],
                       "rotation-logs-life": ["retentionInDays"]}
    assert plan.summary["create"] == plan.summary["delete"] == plan.summary["replace"] == 0
    with pytest.MonkeyPatch.context() as mp:
        runs = count_runs(mp)
        changed.up()
    assert runs == [True, False]   # something to do: the preview pass, then the apply pass
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
    assert tagged(changed, "vpcs", changed.stack) == []
    assert c("rds").describe_db_clusters()["DBClusters"] == []
    assert c("lambda").list_functions()["Functions"] == []
    assert [s["Name"] for s in c("secretsmanager").list_secrets()["SecretList"]
            if "life" in s["Name"]] == []
    assert bucket not in [b["Name"] for b in c("s3").list_buckets()["Buckets"]]
    history = changed.history()
    assert [h.operation for h in history] == ["deploy", "deploy", "deploy", "destroy"]
    assert all(h.result == "succeeded" for h in history)

    # the same stack can come straight back (no leftovers such as automated DB snapshots)
    again = make_engine("secrets.rotation_enabled=false", suffix="life")
    assert again.up().summary["create"] == result.summary["create"] - 2
    again.destroy()


def test_second_concurrent_operation_is_refused(sandbox_home):
    eng = make_engine(suffix="lock")
    with OperationLock(eng.stack, "deploy"):
        proc = tap_popen("deploy", "--env", "dev", "--set", "suffix=lock", "--yes")
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 4
    assert "locked" in err and f"pid {os.getpid()}" in err and "deploy" in err
    assert "Traceback" not in err
    assert eng.store.state.resources == {}
    with pytest.raises(StackLocked):
        with OperationLock(eng.stack, "deploy"), OperationLock(eng.stack, "destroy"):
            pass


def test_a_locked_stack_is_refused_before_preflight_runs(sandbox_home, monkeypatch):
    """A second operator hears at once that the stack is busy, not after preflight's work."""
    from tap_lib.ops import preflight
    from tap_lib.ops import stack as stack_ops

    def preflight_ran(*args, **kwargs):
        raise AssertionError("preflight ran for a locked stack")

    monkeypatch.setattr(preflight, "run_preflight", preflight_ran)
    holder = subprocess.Popen(   # another operator's process, mid-deploy
        [sys.executable, "-c", "import sys, time\n"
         "from tap_lib.engines.sandbox.state import OperationLock\n"
         "with OperationLock('TapStackbusy', 'deploy'):\n"
         "    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StackLocked, match="locked: deploy by pid"):
            stack_ops.deploy("dev", "sandbox", ["suffix=busy"], yes=True)
    finally:
        holder.communicate("", timeout=30)


def test_two_concurrent_deploys_one_refused(sandbox_home):
    procs = [tap_popen("deploy", "--env", "dev", "--set", "suffix=race", "--yes") for _ in range(2)]
    results = [(p.returncode, err) for p in procs
               for _, err in [p.communicate(timeout=300)]]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 4], results
    refused = next(err for code, err in results if code == 4)
    assert "stack TapStackrace is locked: deploy by pid" in refused and "since" in refused
    eng = make_engine(suffix="race")
    assert live_counts(eng, "vpcs", stack=eng.stack) == {"vpcs": 1}
    eng.destroy()


def test_killed_deploy_converges_without_orphans(sandbox_home):
    state_file = stack_dir("TapStackkill") / "state.json"
    proc = tap_popen("deploy", "--env", "dev", "--set", "suffix=kill", "--yes")
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

    eng = make_engine(suffix="kill")
    result = eng.up()
    assert all(r.status == "created" for r in eng.store.state.resources.values())
    assert len(eng.store.state.resources) == len(result.steps)
    # exactly one of everything: no orphan or duplicate from the killed run
    assert live_counts(eng, "vpcs", "subnets", "eips", "nats", "route_tables", stack=eng.stack
                       ) == {"vpcs": 1, "subnets": 4, "eips": 1, "nats": 1, "route_tables": 3}
    for urn in eng.store.state.resources:
        assert eng.read_live(urn) is not None, urn
    assert set(s.op for s in make_engine(suffix="kill").preview().steps) == {"same"}
    eng.destroy()


def test_emulator_restart_is_detected_and_next_deploy_recreates(sandbox_home):
    eng = make_engine("secrets.rotation_enabled=false", suffix="boot")
    first = eng.up()
    server.stop()
    server.start()  # a fresh emulator: empty, with a new boot id
    with pytest.raises(SandboxStateLost) as lost:
        make_engine("secrets.rotation_enabled=false", suffix="boot").preview()
    assert "restarted" in str(lost.value) and "tap deploy --env dev" in str(lost.value)
    again = make_engine("secrets.rotation_enabled=false", suffix="boot")
    result = again.up()
    assert result.summary["create"] == first.summary["create"]
    assert any("recreated" in n for n in result.notes)
    assert live_counts(again, "vpcs", stack=again.stack) == {"vpcs": 1}
    again.destroy()


def _twice(settings):
    define_stack(settings)
    define_stack(settings)


def test_duplicate_urn_is_an_error_naming_the_urn(sandbox_home):
    with pytest.raises(DuplicateUrnError) as err:
        make_engine(suffix="dup", program=_twice).preview()
    assert "urn:pulumi:TapStackdup::TapStack::" in str(err.value)


def _with_topic(settings):
    define_stack(settings)
    aws.sns.Topic("alerts", opts=pulumi.ResourceOptions())


def test_unsupported_type_is_an_error_naming_the_type(sandbox_home):
    eng = make_engine(suffix="sns", program=_with_topic)
    with pytest.raises(UnsupportedResource) as err:
        eng.preview()
    assert "aws:sns/topic:Topic" in str(err.value)
    assert eng.store.state.resources == {}


def _key_with(option: str):
    """One KMS key carrying one resource option the sandbox does not model."""
    def program(settings):
        first = aws.kms.Key(f"first-key-{settings.suffix}", description="first")
        opts = {"protect": {"protect": True},
                "retain_on_delete": {"retain_on_delete": True},
                "aliases": {"aliases": [pulumi.Alias(name="old-key")]},
                "import_": {"import_": "1234abcd-12ab-34cd-56ef-1234567890ab"},
                "deleted_with": {"deleted_with": first},
                "custom_timeouts": {"custom_timeouts": pulumi.CustomTimeouts(create="5m")},
                }[option]
        aws.kms.Key(f"opt-key-{settings.suffix}", description="option",
                    opts=pulumi.ResourceOptions(**opts))
    return program


@pytest.mark.parametrize("option", ["protect", "retain_on_delete", "aliases", "import_",
                                    "deleted_with", "custom_timeouts"])
def test_an_option_the_sandbox_does_not_model_fails_loudly(sandbox_home, option):
    """A protect that protects nothing here, an alias that recreates instead of renaming, an
    import that creates a second copy: refused by name, before anything is created."""
    eng = make_engine(suffix=f"opt{option.strip('_').replace('_', '')}", program=_key_with(option))
    for run in (eng.preview, eng.up):
        with pytest.raises(UnsupportedResource) as err:
            run()
        assert err.value.options == [option] and "aws:kms/key:Key" in str(err.value)
        assert "scope.py" in err.value.hint
    assert not [urn for urn in eng.store.state.resources if "opt-key" in urn]


# -- replacement options, honoured as Pulumi's step generator does --------------------------------
KEY = "aws:kms/key:Key"


def _key_program(description: str = "options", **options):
    """One KMS key (no physical name, so by default replaced create-before-delete) with the
    given ResourceOptions replacement options."""
    def program(settings):
        aws.kms.Key(f"opt-key-{settings.suffix}", description=description,
                    opts=pulumi.ResourceOptions(**options))
    return program


def _key_calls(monkeypatch) -> list[str]:
    """The KMS key handler's create/delete calls, in order (the real calls still run)."""
    from tap_lib.engines.sandbox.handlers import REGISTRY
    calls: list[str] = []
    handler = REGISTRY[KEY]
    for method in ("create", "delete"):
        def call(*args, _m=method, _real=getattr(handler, method), **kwargs):
            calls.append(_m)
            return _real(*args, **kwargs)
        monkeypatch.setattr(handler, method, call)
    return calls


def _key_step(result):
    return next(s for s in result.steps if s.type == KEY)


def test_replacement_trigger_replaces_when_it_changes(sandbox_home, monkeypatch):
    from tap_lib.engines.sandbox.engine import REPLACEMENT_TRIGGER
    make_engine(suffix="trg", program=_key_program()).up()
    # a trigger where state has none: no replace (Pulumi: null means no trigger), recorded
    eng = make_engine(suffix="trg", program=_key_program(replacement_trigger={"v": "a"}))
    assert _key_step(eng.preview()).op == "same"
    urn = _key_step(eng.up()).urn
    first_id = eng.store.state.resources[urn].id
    assert eng.store.state.resources[urn].replacement_trigger == {"v": "a"}
    assert _key_step(eng.preview()).op == "same"
    calls = _key_calls(monkeypatch)
    eng = make_engine(suffix="trg", program=_key_program(replacement_trigger={"v": "b"}))
    step = _key_step(eng.preview())
    assert (step.op, step.diffs) == ("replace", [REPLACEMENT_TRIGGER])
    done = _key_step(eng.up())
    assert (done.op, done.diffs) == ("replace", [REPLACEMENT_TRIGGER])
    assert calls == ["create", "delete"]          # no physical name: create before delete
    record = eng.store.state.resources[done.urn]
    assert record.id != first_id and record.replacement_trigger == {"v": "b"}
    kms = eng.clients()("kms")
    assert kms.describe_key(KeyId=first_id)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert {s.op for s in eng.preview().steps} == {"same"}
    # an input change and a trigger change together: one replace naming both
    eng = make_engine(suffix="trg", program=_key_program("other", replacement_trigger={"v": "c"}))
    assert sorted(_key_step(eng.preview()).diffs) == sorted(["description", REPLACEMENT_TRIGGER])
    make_engine(suffix="trg", program=_key_program()).destroy()


def test_delete_before_replace_option_orders_the_replacement(sandbox_home, monkeypatch):
    make_engine(suffix="dbr", program=_key_program(replacement_trigger=1)).up()
    calls = _key_calls(monkeypatch)
    eng = make_engine(suffix="dbr", program=_key_program(replacement_trigger=2,
                                                         delete_before_replace=True))
    assert _key_step(eng.up()).op == "replace"
    assert calls == ["delete", "create"]
    assert {s.op for s in eng.preview().steps} == {"same"}
    eng.destroy()


def test_replace_on_changes_turns_an_update_into_a_replace(sandbox_home):
    make_engine(suffix="roc", program=_key_program()).up()
    new = make_engine(suffix="roc", program=_key_program("new"))
    assert _key_step(new.preview()).op == "update"
    eng = make_engine(suffix="roc", program=_key_program("new", replace_on_changes=["description"]))
    assert _key_step(eng.preview()).op == "replace"
    assert _key_step(make_engine(suffix="roc", program=_key_program(
        "new", replace_on_changes=["*"])).preview()).op == "replace"
    assert _key_step(make_engine(suffix="roc", program=_key_program(
        replace_on_changes=["description"])).preview()).op == "same"
    eng.destroy()


def test_unknown_replacement_trigger_replaces_in_preview_and_fails_a_deploy():
    """As Pulumi: unknowns in a trigger count as changed in a preview, and are an error in a
    deploy (nothing knows whether to replace)."""
    from pulumi.runtime import rpc

    from tap_lib.engines.sandbox.steps import diff as _diff
    from tap_lib.engines.sandbox.steps import trigger_of as _trigger
    from tap_lib.engines.sandbox.handlers import REGISTRY
    from tap_lib.engines.sandbox.state import ResourceRecord
    from tap_lib.engines.synth import Registration
    from tap_lib.errors import OperationFailed

    reg = Registration("urn:k", KEY, "k", "", True, {"description": "d"}, [],
                       replacement_trigger={"cluster": rpc.UNKNOWN, "user": "app"})
    record = ResourceRecord("urn:k", KEY, "k", "id", {"description": "d"}, {}, [],
                            replacement_trigger={"cluster": "cluster-1", "user": "app"})
    trigger = _trigger(reg, apply=False)
    assert _diff(REGISTRY[KEY], reg, record, {"description": "d"}, trigger)[0] == "replace"
    with pytest.raises(OperationFailed, match="replacement trigger contains unknowns for urn:k"):
        _trigger(reg, apply=True)
    known = Registration("urn:k", KEY, "k", "", True, {"description": "d"}, [],
                         replacement_trigger={"cluster": "cluster-1", "user": "app"})
    assert _diff(REGISTRY[KEY], known, record, {"description": "d"},
                 _trigger(known, apply=True)) == ("same", [])
