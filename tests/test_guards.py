"""Guards that cannot be bypassed: protection recorded with the stack, the environment file that
created it, closed stdin, and preflight gating preview and deploy. Each reproduction of issue 10's
guard list runs against a real deployed (emulated) prod stack, through every path: the command
line, `tap run` notebooks (real kernels), the library, and the engine itself."""
from __future__ import annotations

import json

import pytest

from tap_lib import trail
from tap_lib.config import load_settings
from tap_lib.engines.base import StackMeta
from tap_lib.engines.sandbox.engine import SandboxEngine
from tap_lib.errors import ProtectedStack, UsageError
from tap_lib.ops import stack as stack_ops

from helpers import live_counts, make_engine, tap, tap_process

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]

PROD = "TapStackprod"


def counts(eng: SandboxEngine) -> dict[str, int]:
    """What the emulator holds (boto3, not tap's state): the stack's VPCs, and every database
    instance, bucket, function and secret."""
    return live_counts(eng, "vpcs", stack=eng.stack) | live_counts(
        eng, "instances", "buckets", "functions", "secrets")


@pytest.fixture(scope="module")
def prod(sandbox_home, signers, tmp_path_factory):
    plans_dir = tmp_path_factory.mktemp("prod-plans")
    stack_ops.deploy("prod", plan=signers.approved("prod", plans_dir / "create.json"),
                     confirm=PROD)
    eng = make_engine(env="prod")
    assert eng.stack_meta() == StackMeta("params/prod.yaml", True)
    yield eng
    # As an operator retires prod: lift the database's deletion protection (which fails RDS.7
    # on the cluster and RDS.8 on its instances), then destroy, each by a reviewed plan.
    unprotect = ["db.deletion_protection=false"]
    stack_ops.deploy("prod", overrides=unprotect, plan=signers.approved(
        "prod", plans_dir / "unprotect.json", unprotect, skip_rules=["TAP103", "TAP433"],
        reason="retiring prod"), confirm=PROD)
    stack_ops.destroy("prod", yes=True, confirm=PROD, plan=signers.approved(
        "prod", plans_dir / "destroy.json", destroy=True))
    assert counts(eng)["vpcs"] == 0


def test_destroy_of_prod_from_an_overridden_environment_is_refused(prod):
    before = counts(prod)
    out = tap("destroy", "--env", "prod", "--yes", "--set", "environment=dev")
    assert out.returncode == 2, out.stderr
    assert f"{PROD} is protected" in out.stderr and "a destroy needs a reviewed plan" in out.stderr
    assert "--destroy --save-plan FILE" in out.stderr and "Traceback" not in out.stderr
    assert counts(prod) == before


def test_a_stack_operated_from_another_environment_file_is_refused(prod):
    before = counts(prod)
    out = tap("destroy", "--env", "dev", "--yes", env={"ENVIRONMENT_SUFFIX": "prod"})
    assert out.returncode == 2, out.stderr
    # prod's name is reserved by params/prod.yaml: refused before the stack is even opened
    assert "TapStackprod is reserv" in out.stderr and "ENVIRONMENT_SUFFIX" in out.stderr
    deploy = tap("deploy", "--env", "dev", "--yes", env={"ENVIRONMENT_SUFFIX": "prod"})
    assert deploy.returncode == 2 and "TapStackprod is reserv" in deploy.stderr
    assert counts(prod) == before


def test_protection_cannot_be_overridden_on_the_command_line(prod):
    out = tap("destroy", "--env", "prod", "--yes", "--set", "protected=false")
    assert out.returncode == 2
    assert "params/prod.yaml (--set protected)" in out.stderr


def test_closed_stdin_is_no_confirmation(prod):
    out = tap_process("deploy", "--env", "prod", close_stdin=True)
    assert out.returncode == 2, out.stderr
    assert "--yes" in out.stderr and "Traceback" not in out.stderr
    assert "AttributeError" not in out.stderr


def reviewed_plan(path, *args: str, signers=None) -> str:
    """alice saves a plan, bob approves it, each with their own key: the only way a protected
    stack deploys."""
    saved = tap("preview", "--env", "prod", *args, "--save-plan", str(path),
                env=signers.env("alice"))
    assert saved.returncode == 0, saved.stderr
    approved = tap("approve", str(path), env=signers.env("bob"))
    assert approved.returncode == 0, approved.stderr
    return str(path)


def test_a_protected_stack_deploys_only_a_reviewed_plan_and_deletes_need_its_name(
        prod, tmp_path, signers):
    before = counts(prod)
    assert before["instances"] == 3
    unplanned = tap("deploy", "--env", "prod", "--yes", "--set", "db.instances=2")
    assert unplanned.returncode == 2, unplanned.stderr
    assert "deploys only from a reviewed plan" in unplanned.stderr
    assert "tap approve" in unplanned.stderr and "Traceback" not in unplanned.stderr
    with pytest.raises(ProtectedStack):                  # the library refuses the same way
        stack_ops.deploy("prod", overrides=["db.instances=2"], yes=True, confirm=PROD)
    unapproved = tap("preview", "--env", "prod", "--set", "db.instances=2", "--save-plan",
                     str(tmp_path / "unapproved.json"), env=signers.env("alice"))
    assert unapproved.returncode == 0, unapproved.stderr
    refused = tap("deploy", "--env", "prod", "--plan", str(tmp_path / "unapproved.json"))
    assert refused.returncode == 2 and "needs the approval of a second key" in refused.stderr
    assert counts(prod) == before

    fewer = reviewed_plan(tmp_path / "fewer.json", "--set", "db.instances=2", signers=signers)
    no_name = tap("deploy", "--env", "prod", "--plan", fewer)
    assert no_name.returncode == 2, no_name.stderr
    assert "would delete" in no_name.stderr and "nothing was changed" in no_name.stderr
    # Below the operations, the engine refuses the same deletion, whoever calls it.
    engine = make_engine("db.instances=2", env="prod")
    with pytest.raises(ProtectedStack):
        engine.up()
    with pytest.raises(ProtectedStack):  # below Engine.up's preview: the resolver itself
        engine._up(None, confirm=None, meta=engine.stack_meta())
    assert counts(prod) == before

    applied = tap("deploy", "--env", "prod", "--plan", fewer, "--confirm", PROD, "--json")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["summary"]["delete"] == 1
    assert counts(prod)["instances"] == 2
    # Adding back only creates: a reviewed plan without --confirm is enough.
    more = reviewed_plan(tmp_path / "more.json", signers=signers)
    assert tap("deploy", "--env", "prod", "--plan", more).returncode == 0
    assert counts(prod)["instances"] == 3
    assert prod.stack_meta() == StackMeta("params/prod.yaml", True)


def test_unattended_paths_need_a_reviewed_plan(prod, sandbox_home, tmp_path, signers):
    before = counts(prod)
    with pytest.raises(ProtectedStack):
        stack_ops.deploy("prod")                       # a library call: no plan, no name
    with pytest.raises(ProtectedStack):
        stack_ops.destroy("prod", yes=True)
    with pytest.raises(ProtectedStack):
        stack_ops.destroy("prod", yes=True, confirm="TapStackdev")
    with pytest.raises(UsageError, match="--yes"):
        stack_ops.destroy("prod", confirm=PROD)

    refused = tap("run", "deploy", "--env", "prod", "-p", "confirm", PROD, "--json")
    assert refused.returncode == 1
    record = json.loads(refused.stdout)[0]
    assert record["status"] == "failed" and "ProtectedStack" in record["error"]
    plan = reviewed_plan(tmp_path / "same.json", signers=signers)
    confirmed = tap("run", "deploy", "--env", "prod", "-p", "plan", plan, "--json")
    assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
    assert counts(prod) == before


def test_preflight_errors_block_preview_and_deploy(sandbox_home):
    eng = make_engine(suffix="gate")
    out = tap("deploy", "--env", "dev", "--yes", "--set", "suffix=gate",
              "--set", "db.engine_version=99.9")
    assert out.returncode == 1, out.stderr
    assert "TAP005" in out.stderr and "99.9 is not offered" in out.stderr
    assert "stopped before anything changed" in out.stderr
    assert counts(eng)["vpcs"] == 0 and not eng.store.state.resources
    refusal = trail.read()[-1]                     # the audit trail keeps the refusal too
    assert (refusal["operation"], refusal["result"], refusal["error"], refusal["stack"]) == (
        "deploy", "refused", "PreflightBlocked", "TapStackgate")
    preview = tap("preview", "--env", "dev", "--set", "suffix=gate",
                  "--set", "db.engine_version=99.9")
    assert preview.returncode == 1 and "TAP005" in preview.stderr

    no_reason = tap("preview", "--env", "dev", "--set", "suffix=gate",
                    "--set", "db.engine_version=99.9", "--skip-rule", "TAP005")
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    unknown = tap("preview", "--env", "dev", "--set", "suffix=gate", "--skip-rule", "TAP999",
                  "--reason", "x")
    assert unknown.returncode == 2 and "TAP999" in unknown.stderr and "TAP005" in unknown.stderr
    skipped = tap("preview", "--env", "dev", "--set", "suffix=gate",
                  "--set", "db.engine_version=99.9", "--skip-rule", "TAP005",
                  "--reason", "engine preview build", "--json")
    assert skipped.returncode == 0, skipped.stderr
    from tap_lib.engines.synth import synthesize

    declared = synthesize(load_settings("dev", ("suffix=gate", "db.engine_version=99.9")))
    assert json.loads(skipped.stdout)["summary"]["create"] == len(declared.resources) > 0


def test_a_destroy_that_would_stop_part_way_is_refused_before_the_first_delete(
        prod, tmp_path, signers):
    """An approved destroy plan, but the cluster's deletion protection would stop it after the
    NATs, functions and secrets were gone: refused whole, nothing deleted, the trail says so."""
    before = counts(prod)
    plan = tmp_path / "destroy.json"
    saved = tap("preview", "--env", "prod", "--destroy", "--save-plan", str(plan),
                env=signers.env("alice"))
    assert saved.returncode == 0, saved.stderr
    assert tap("approve", str(plan), env=signers.env("bob")).returncode == 0
    out = tap("destroy", "--env", "prod", "--yes", "--confirm", PROD, "--plan", str(plan))
    assert out.returncode == 2, out.stderr
    assert "would stop part-way: RDS cluster" in out.stderr and "nothing was deleted" in \
        out.stderr and "Traceback" not in out.stderr
    assert counts(prod) == before
    entry = [e for e in trail.read() if e["operation"] == "destroy"][-1]
    assert (entry["result"], entry["error"]) == ("refused", "DestroyBlocked")
    # a deploy plan is no destroy plan, and a destroy plan deploys nothing
    with pytest.raises(UsageError, match="a destroy plan"):
        stack_ops.deploy("prod", plan=plan, confirm=PROD)


def test_bare_engine_calls_and_hand_built_authorizations_are_refused(prod, signers):
    from tap_lib.authority import Authorization

    before = counts(prod)
    engine = make_engine("lambda.memory_mb=384", env="prod")
    with pytest.raises(ProtectedStack, match="needs a reviewed plan"):
        engine.up(confirm=PROD)                     # a library call with the stack's name
    with pytest.raises(ProtectedStack, match="needs a reviewed plan"):
        engine.destroy(confirm=PROD)
    forged = Authorization({"stack": PROD, "operation": "deploy", "steps": []}, "sha256:0",
                           "not a signature", ({"operator": "bob", "plan": "sha256:0"},))
    with pytest.raises(UsageError, match="does not match its hash"):
        engine.up(confirm=PROD, authorization=forged)
    assert counts(prod) == before


def test_sandbox_reset_and_repair_refuse_a_protected_stack(prod, sandbox_home):
    before = counts(prod)
    out = tap_process("sandbox", "reset", close_stdin=True)
    assert out.returncode == 2, out.stderr
    assert f"{PROD} is protected: a sandbox reset would lose it" in out.stderr
    assert "--destroy --save-plan" in out.stderr and "Traceback" not in out.stderr
    entry = trail.read()[-1]
    assert (entry["operation"], entry["result"], entry["stack"]) == ("reset", "refused", PROD)
    stop = tap_process("sandbox", "stop", close_stdin=True)   # the emulator would forget prod too
    assert stop.returncode == 2 and "stopping the sandbox would lose it" in stop.stderr
    assert trail.read()[-1]["notes"] == ["tap sandbox stop"]
    from tap_lib.ops.repair import repair
    with pytest.raises(ProtectedStack, match="repair changes it outside a reviewed plan"):
        repair("prod")
    assert counts(prod) == before


def test_a_protected_refresh_needs_an_approved_refresh_plan(prod, tmp_path, signers):
    """A refresh changes no resource, but it changes what every later plan is computed
    against: on a protected stack it, too, goes only through an approved plan."""
    state = prod.store.path.read_bytes()
    out = tap("refresh", "--env", "prod")
    assert out.returncode == 2 and "a refresh needs a reviewed plan" in out.stderr
    assert "--refresh --save-plan" in out.stderr and "Traceback" not in out.stderr
    with pytest.raises(ProtectedStack):
        make_engine(env="prod").refresh(confirm=PROD)    # below the operations
    assert prod.store.path.read_bytes() == state
    deploy_plan = reviewed_plan(tmp_path / "deploy.json", signers=signers)
    wrong = tap("refresh", "--env", "prod", "--plan", deploy_plan)
    assert wrong.returncode == 2 and "not a refresh plan" in wrong.stderr
    refused = trail.read()[-1]                    # a refused plan stays in the trail
    assert (refused["operation"], refused["result"], refused["error"]) == (
        "refresh", "refused", "PlanRefused")
    plan = tmp_path / "refresh.json"
    saved = tap("preview", "--env", "prod", "--refresh", "--save-plan", str(plan),
                env=signers.env("alice"))
    assert saved.returncode == 0, saved.stderr
    unapproved = tap("refresh", "--env", "prod", "--plan", str(plan))
    assert unapproved.returncode == 2 and "second key" in unapproved.stderr
    assert tap("approve", str(plan), env=signers.env("carol")).returncode == 0
    done = tap("refresh", "--env", "prod", "--plan", str(plan), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["operation"] == "refresh"
    entry = [e for e in trail.read() if e["operation"] == "refresh"][-1]
    assert entry["result"] == "succeeded"


def test_a_state_file_edited_by_hand_does_not_lift_protection(prod):
    """Someone with a shell sets `protected: false` in prod's state file: the environment file
    still says protected, and that is enough to refuse an unreviewed deploy."""
    path = prod.store.path
    original = path.read_text()
    state = json.loads(original)
    state["protected"] = False
    path.write_text(json.dumps(state))
    try:
        before = counts(prod)
        out = tap("deploy", "--env", "prod", "--yes", "--set", "lambda.memory_mb=384")
        assert out.returncode == 2 and "deploys only from a reviewed plan" in out.stderr
        with pytest.raises(ProtectedStack):
            make_engine("lambda.memory_mb=384", env="prod").up(confirm=PROD)
        assert counts(prod) == before
    finally:
        path.write_text(original)
