"""Reviewed plans on the sandbox: a deploy from a saved plan applies exactly it; a plan whose
settings, code, state or age no longer hold is refused with nothing changed; the engine stops
at a step the plan does not have; an edited plan file is refused; four eyes on approval.

The project is a throwaway git repository (Pulumi.yaml, params/ copied; TAP_PROJECT_DIR), so a
test can edit an environment file or commit without touching the real repo."""
from __future__ import annotations

import json
import re

import pytest

from tap_lib.engines.base import Plan, Step
from tap_lib.engines.sandbox.engine import SandboxEngine
from tap_lib.errors import PlanMismatch
from tap_lib.ops import plans
from tap_lib.ops import stack as stack_ops

from fixtures_signing import git, make_signed_project
from helpers import engines, tap_popen

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]

ENV = "dev"


@pytest.fixture(scope="module")
def keys(sandbox_home, tmp_path_factory):
    made = make_signed_project(tmp_path_factory.mktemp("signed"), notebooks=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAP_PROJECT_DIR", str(made.project))
        made.use(mp, "alice")
        stack_ops.deploy(ENV, "sandbox")
        yield made


@pytest.fixture(scope="module")
def project(keys):
    return keys.project


def memory(engine: SandboxEngine) -> int:
    name = engine.outputs()["lambda_function_name"]
    return engine.clients()("lambda").get_function_configuration(FunctionName=name)["MemorySize"]


engine = engines(ENV)


def test_a_deploy_from_a_saved_plan_applies_it(project, tmp_path):
    reviewed = plans.make_plan(ENV, "sandbox", ["lambda.memory_mb=512"])
    path = plans.save_plan(reviewed, tmp_path / "plan.json")
    assert {s.name: s.op for s in reviewed.plan.changes} == {"payment-fn-dev": "update"}
    result = stack_ops.deploy(ENV, "sandbox", plan=path)
    assert [(s.name, s.op, s.diffs) for s in result.changes] == \
        [(s.name, s.op, s.diffs) for s in reviewed.plan.changes]
    assert any(n.startswith(f"applied reviewed plan {reviewed.hash}") for n in result.notes)
    assert memory(engine()) == 512
    # the plan's own overrides apply; the stack as the file says comes back with a new plan
    back = plans.save_plan(plans.make_plan(ENV, "sandbox"), tmp_path / "back.json")
    stack_ops.deploy(ENV, "sandbox", plan=back)
    assert memory(engine()) == 256 and not engine().preview().changes


def test_settings_changed_after_the_plan_is_refused(project, tmp_path):
    path = plans.save_plan(plans.make_plan(ENV, "sandbox"), tmp_path / "plan.json")
    env_file = project / "params" / "dev.yaml"
    original = env_file.read_text()
    env_file.write_text(original.replace("memory_mb: 256", "memory_mb: 512"))
    try:
        before = engine().store.state.to_json()
        with pytest.raises(plans.PlanRefused, match=r"settings changed after the plan: "
                                                    r"lambda.memory_mb 256 -> 512") as info:
            stack_ops.deploy(ENV, "sandbox", plan=path)
        assert info.value.exit_code == 2 and "nothing was changed" in str(info.value)
        assert engine().store.state.to_json() == before and memory(engine()) == 256
    finally:
        env_file.write_text(original)


def test_plans_on_other_code_state_or_too_old_are_refused(project, tmp_path, monkeypatch):
    old = plans.save_plan(plans.make_plan(ENV, "sandbox"), tmp_path / "old.json")
    monkeypatch.setenv(plans.MAX_AGE_ENV, "0.000001")
    with pytest.raises(plans.PlanRefused, match="h old"):
        stack_ops.deploy(ENV, "sandbox", plan=old)
    monkeypatch.delenv(plans.MAX_AGE_ENV)

    (project / "README").write_text("a change to the code\n")
    git(project, "add", "README")
    git(project, "commit", "-qm", "code")
    with pytest.raises(plans.PlanRefused, match="made at commit"):
        stack_ops.deploy(ENV, "sandbox", plan=old)

    stale = plans.save_plan(plans.make_plan(ENV, "sandbox"), tmp_path / "stale.json")
    stack_ops.deploy(ENV, "sandbox", ["tags.Owner=someone"])          # the stack moves on
    with pytest.raises(plans.PlanRefused, match="the stack changed after the plan"):
        stack_ops.deploy(ENV, "sandbox", plan=stale)
    with pytest.raises(plans.PlanRefused, match="exactly those"):
        stack_ops.deploy(ENV, "sandbox", ["lambda.timeout_s=60"], plan=stale)
    stack_ops.deploy(ENV, "sandbox")                                  # back as the file says


def test_an_edited_plan_file_is_refused(project, tmp_path):
    path = plans.save_plan(plans.make_plan(ENV, "sandbox", ["lambda.memory_mb=512"]),
                           tmp_path / "plan.json")
    data = json.loads(path.read_text())
    data["steps"] = [s for s in data["steps"] if s["op"] == "same"]   # hide the changes
    path.write_text(json.dumps(data))
    with pytest.raises(plans.PlanRefused, match="changed after it was saved"):
        stack_ops.deploy(ENV, "sandbox", plan=path)
    assert memory(engine()) == 256


def test_the_engine_stops_at_a_step_the_plan_does_not_have(project):
    """Below the file checks: a plan whose steps are all `same` meets a real update."""
    eng = engine("lambda.memory_mb=1024")
    planned = eng.preview()
    unchanged = Plan(planned.stack, "sandbox",
                     [Step(s.urn, s.type, s.name, "same") for s in planned.steps])
    with pytest.raises(PlanMismatch, match="payment-fn-dev") as info:
        eng.up(plan=unchanged)
    assert "planned: same" in str(info.value) and "now: update memorySize" in str(info.value)
    assert memory(engine()) == 256


def test_four_eyes_are_two_keys(keys, tmp_path, monkeypatch):
    path = plans.save_plan(plans.make_plan(ENV, "sandbox"), tmp_path / "plan.json")
    for name in ("alice", "Alice", "alice ", "bob"):   # a name is not a key
        monkeypatch.setenv("TAP_OPERATOR", name)
        with pytest.raises(plans.PlanRefused, match="cannot approve it too"):
            plans.approve(path)
    keys.use(monkeypatch, "bob")
    approved = plans.approve(path)
    assert plans.approved_by(approved) == ["bob@example.com"]
    assert plans.load_plan(path).approvals[0]["principal"] == "bob@example.com"
    from tap_lib import trail
    entry = trail.read()[-1]
    assert (entry["operation"], entry["operator"], entry["plan_hash"]) == (
        "approve", "bob", approved.hash)


def test_two_approvers_at_once_both_count(keys, tmp_path, monkeypatch):
    """bob and carol approve the same plan at the same moment: carol's approval lands while
    bob's is being signed (injected in-process at that point), and neither is lost."""
    from tap_lib import signing

    path = plans.save_plan(plans.make_plan(ENV, "sandbox"), tmp_path / "plan.json")
    keys.use(monkeypatch, "bob")
    real_sign, injected = signing.sign, []

    def sign_while_carol_approves(message, *args, **kwargs):
        if not injected:
            injected.append(True)
            with pytest.MonkeyPatch.context() as mp:
                keys.use(mp, "carol")
                plans.approve(path)
        return real_sign(message, *args, **kwargs)

    monkeypatch.setattr(signing, "sign", sign_while_carol_approves)
    approved = plans.approve(path)
    assert injected
    assert sorted(a["principal"] for a in plans.load_plan(path).approvals) == [
        "bob@example.com", "carol@example.com"]
    assert sorted(plans.approved_by(approved)) == ["bob@example.com", "carol@example.com"]


def test_a_preview_record_carries_its_plan(keys, monkeypatch):
    """The preview notebook's record is a plan: approve it, deploy it."""
    from tap_lib.ops.runbook import run_notebooks

    record = run_notebooks("preview", env=ENV, target="sandbox")[0]
    assert record.status == "succeeded", record.error
    reviewed = plans.load_plan(record.path)
    assert reviewed.author == "alice" and reviewed.stack == "TapStackdev"
    keys.use(monkeypatch, "bob")
    plans.approve(record.path)
    result = stack_ops.deploy(ENV, "sandbox", plan=record.path)
    assert not result.changes and any(reviewed.hash in n for n in result.notes)


def test_two_operators_applying_one_plan_at_once_apply_it_once(project, tmp_path):
    """Both start from the same reviewed plan at the same moment: one applies it; the other is
    refused (the stack is locked, or the plan no longer matches the stack the first left), and
    the trail says which did what."""
    from tap_lib import trail

    path = plans.save_plan(plans.make_plan(ENV, "sandbox", ["lambda.memory_mb=384"]),
                           tmp_path / "plan.json")
    before = len(trail.read())
    procs = [tap_popen("deploy", "--env", ENV, "--plan", str(path), "--yes") for _ in range(2)]
    results = [(p.returncode, out + err) for p in procs
               for out, err in [p.communicate(timeout=300)]]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] in (2, 3, 4), results
    refused = next(err for code, err in results if code)
    assert "Traceback" not in refused
    assert re.search(r"locked|changed after the plan|planned: update", refused), refused
    assert memory(engine()) == 384
    entries = [e for e in trail.read()[before:]
               if e["operation"] == "deploy" and e["result"] != "started"]
    outcomes = sorted(e["result"] for e in entries)
    assert len(outcomes) == 2 and outcomes[1] == "succeeded" and \
        outcomes[0] in ("failed", "refused"), entries
    stack_ops.deploy(ENV, "sandbox")                                  # back as the file says
    assert memory(engine()) == 256


def test_an_engine_opened_before_another_deploy_works_from_the_stack_as_it_is_now(project):
    """Operator B opened the stack, A deployed a change, then B deploys the file's settings:
    B's deploy reads the state again under the lock, so it sees A's change and undoes it
    (state and live agree) instead of writing back the state it read before A."""
    late = engine()                                   # B opens the stack (memory 256)
    stack_ops.deploy(ENV, "sandbox", ["lambda.memory_mb=640"])      # A changes it
    assert memory(engine()) == 640
    result = late.up()
    assert [(s.name, s.op) for s in result.changes] == [("payment-fn-dev", "update")]
    assert memory(engine()) == 256
    assert not engine().preview().changes


def test_a_plan_in_an_s3_records_root_is_approved_and_applied_there(keys, tmp_path,
                                                                    monkeypatch):
    """Records roots are s3:// in production (Airflow's deploy task gets the preview record's
    URL): the plan is read from there and its approval is stored beside it, locked."""
    import boto3

    from tap_lib.engines.sandbox import server

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint())
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="tap-plan-records", ObjectLockEnabledForBucket=True)
    local = plans.save_plan(plans.make_plan(ENV, "sandbox", ["lambda.memory_mb=448"]),
                            tmp_path / "plan.json")
    url = "s3://tap-plan-records/runbook/dev/plan.json"
    s3.put_object(Bucket="tap-plan-records", Key="runbook/dev/plan.json",
                  Body=local.read_bytes())

    with pytest.raises(plans.PlanRefused, match="no such plan file"):
        plans.load_plan(url + ".missing")
    keys.use(monkeypatch, "bob")
    approved = plans.approve(url)
    assert plans.approved_by(plans.load_plan(url)) == ["bob@example.com"] == \
        plans.approved_by(approved)
    head = s3.head_object(Bucket="tap-plan-records", Key="runbook/dev/plan.json.approvals.json")
    assert head["ObjectLockMode"] == "COMPLIANCE"

    result = stack_ops.deploy(ENV, "sandbox", plan=url)
    assert any(n.startswith(f"applied reviewed plan {approved.hash}") for n in result.notes)
    assert memory(engine()) == 448
    stack_ops.deploy(ENV, "sandbox")                                  # back as the file says
    assert memory(engine()) == 256


def test_an_interactive_deploy_applies_exactly_the_plan_it_showed(keys, monkeypatch, capsys):
    """As `terraform apply`: while the operator reads the plan, another operator changes the
    stack; answering yes applies what was shown or nothing (never the program as it is now)."""
    from tap_lib import cli

    def meanwhile(question: str) -> bool:
        stack_ops.deploy(ENV, "sandbox", ["lambda.memory_mb=640"])   # another operator
        return True

    monkeypatch.setattr(cli, "_interactive", lambda: True)
    monkeypatch.setattr(cli, "_ask", meanwhile)
    code = cli.main(["deploy", "--env", ENV, "--set", "lambda.memory_mb=512"])
    err = capsys.readouterr().err
    assert code == 2 and "the plan shown: the stack changed after the plan" in err, err
    assert memory(engine()) == 640                    # the other operator's, not a mix
    monkeypatch.setattr(cli, "_ask", lambda question: True)
    assert cli.main(["deploy", "--env", ENV, "--set", "lambda.memory_mb=512"]) == 0
    assert memory(engine()) == 512
    stack_ops.deploy(ENV, "sandbox")                                  # back as the file says
    assert memory(engine()) == 256


def test_approving_needs_a_listed_key(keys, tmp_path, monkeypatch, capsys):
    from tap_lib import cli

    path = plans.save_plan(plans.make_plan(ENV, "sandbox"), tmp_path / "plan.json")
    monkeypatch.delenv("TAP_SIGNING_KEY")
    monkeypatch.setenv("TAP_OPERATOR", "bob")
    assert cli.main(["approve", str(path)]) == 2
    assert "TAP_SIGNING_KEY is not set" in capsys.readouterr().err
    keys.use(monkeypatch, "mallory")
    assert cli.main(["approve", str(path)]) == 2
    assert "not listed in params/approvers" in capsys.readouterr().err
    assert plans.load_plan(path).approvals == []


def test_a_plan_binds_values_not_only_property_names(keys, tmp_path, capsys):
    """A reviewer approved memorySize 256 → 512. If the stack is at 640 when the plan is
    applied, the step is still `update memorySize`, but not the change that was reviewed."""
    from tap_lib import cli

    reviewed = plans.make_plan(ENV, "sandbox", ["lambda.memory_mb=512"])
    [step] = reviewed.plan.changes
    assert step.changes == [{"property": "memorySize", "old": 256, "new": 512}]
    path = plans.save_plan(reviewed, tmp_path / "plan.json")
    assert cli.main(["approve", str(path)]) == 2       # (alice wrote it: no self-approval)
    capsys.readouterr()
    cli.main(["preview", "--env", ENV, "--set", "lambda.memory_mb=512"])
    assert "payment-fn-dev  memorySize: 256 → 512" in capsys.readouterr().out
    stack_ops.deploy(ENV, "sandbox", ["lambda.memory_mb=640"])       # the stack moves on
    eng = engine("lambda.memory_mb=512")
    with pytest.raises(PlanMismatch, match="planned: update memorySize: 256 → 512; now: update "
                                           "memorySize: 640 → 512"):
        eng.up(plan=reviewed.plan)                   # below the file checks: the engine's own
    assert memory(engine()) == 640
    stack_ops.deploy(ENV, "sandbox")                                  # back as the file says
    assert memory(engine()) == 256


def test_progress_never_counts_past_its_total(keys):
    """A deploy that adds resources to a stack went [49/48], [50/48]: the total was the
    stack's old size. With a plan the total is the plan's; without, it is dropped once outgrown."""
    seen = []
    stack_ops.deploy(ENV, "sandbox", ["secrets.rotation_enabled=false"])   # two fewer
    stack_ops.deploy(ENV, "sandbox", progress=seen.append)                 # two more again
    done = [e for e in seen if e.phase == "done"]
    assert len(done) == len(engine().resources()) and done[-1].index == len(done)
    assert all(e.total is None or e.index <= e.total for e in done), \
        [(e.index, e.total) for e in done if e.total and e.index > e.total]
    reviewed = plans.make_plan(ENV, "sandbox", ["lambda.memory_mb=512"])
    seen.clear()
    stack_ops.deploy(ENV, "sandbox", plan=reviewed, progress=seen.append)
    assert {e.total for e in seen} == {len(reviewed.plan.steps)}
    stack_ops.deploy(ENV, "sandbox")
