"""The pulumi engine without the Pulumi CLI: settings, stack config, event translation, error
mapping, and the engine's wiring against a stand-in for pulumi.automation's Stack.

Events come from tests/data/pulumi_events.json, written in the shape the CLI emits (see
sdk/go/common/apitype/events.go). The CLI cannot be installed on these machines; the few tests
that need it are skipped here and run wherever it is on PATH.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto
from pulumi.automation.errors import create_command_error

from tap_lib.config import load_settings
from tap_lib.engines import pulumi_engine as pe
from tap_lib.engines.base import OPS, HistoryEntry, StackMeta, StepEvent
from tap_lib.errors import (ConfigError, OperationFailed, ProtectedStack, StackLocked,
                            TargetUnreachable, UsageError)

REPO = Path(__file__).resolve().parents[1]
EVENTS = json.loads((Path(__file__).parent / "data" / "pulumi_events.json").read_text())
PASSPHRASE = "correct horse battery staple"
STACK_URN = "urn:pulumi:TapStackdev::TapStack::pulumi:pulumi:Stack::TapStack-TapStackdev"
LAMBDA_URN = ("urn:pulumi:TapStackdev::TapStack::tap:index:TapStack$"
              "aws:lambda/function:Function::payment-fn-dev")

needs_cli = pytest.mark.skipif(shutil.which("pulumi") is None,
                               reason="pulumi CLI not installed; these machines cannot download it")


def events(name: str) -> list[auto.EngineEvent]:
    return [auto.EngineEvent.from_json(raw) for raw in EVENTS[name]]


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Own TAP_HOME and passphrase; nothing inherited from the operator's shell."""
    monkeypatch.setenv("TAP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
    for name in ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE_FILE", "ENVIRONMENT_SUFFIX",
                 "PULUMI_PYTHON_CMD", "TAP_PROJECT_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def stub_cli(monkeypatch, tmp_path):
    """A `pulumi` on PATH that fails loudly if anything runs it: the engine may look the CLI up,
    but these tests must never execute it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "pulumi"
    stub.write_text("#!/bin/sh\necho 'stub pulumi: tests must not run the CLI' >&2\nexit 97\n")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))


@pytest.fixture
def settings():
    return load_settings("dev")


@pytest.fixture
def engine(stub_cli, settings):
    return pe.PulumiEngine(settings)


# ---- construction ------------------------------------------------------------------------------

def test_without_cli_on_path_construction_fails_with_install_hint(monkeypatch, tmp_path, settings):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")  # the CLI is checked first
    with pytest.raises(TargetUnreachable) as info:
        pe.PulumiEngine(settings)
    text = str(info.value)
    assert text.startswith("the pulumi CLI is not on PATH; install it with "
                           "`conda env create -f environment.yml` (pulumi-core from conda-forge)")
    assert "https://www.pulumi.com/docs/install/" in text
    assert "--target sandbox" in text
    assert info.value.exit_code == 3
    assert not (tmp_path / "home").exists()


def test_workspace_is_the_repo_whose_pulumi_yaml_names_the_project(engine):
    assert engine.name == "aws"
    assert engine.work_dir == REPO
    assert "name: TapStack\n" in (engine.work_dir / "Pulumi.yaml").read_text()
    assert engine.stack == "TapStackdev"


def test_project_name_is_read_from_pulumi_yaml_only(monkeypatch, tmp_path, stub_cli):
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: PayStack\nruntime: python\n")
    monkeypatch.setenv("TAP_PROJECT_DIR", str(project))
    engine = pe.PulumiEngine(load_settings("dev", directory=REPO / "params"))
    assert engine.work_dir == project
    assert engine.stack == "PayStackdev"


def test_environment_suffix_names_the_stack_and_reaches_the_program(monkeypatch, stub_cli):
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "PR6329")
    engine = pe.PulumiEngine(load_settings("dev"))
    assert engine.stack == "TapStackPR6329"
    assert json.loads(engine.stack_config()["tap:overrides"])[-1] == "suffix='PR6329'"


def test_backend_defaults_to_a_file_backend_under_tap_home(engine, tmp_path):
    local = tmp_path / "home" / "pulumi"
    assert engine.backend_url == f"file://{local}"
    assert local.is_dir()
    assert engine.workspace_env()["PULUMI_BACKEND_URL"] == engine.backend_url


def test_pulumi_backend_url_overrides_the_default(monkeypatch, tmp_path, stub_cli, settings):
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://payments-team-pulumi-state")
    engine = pe.PulumiEngine(settings)
    assert engine.backend_url == "s3://payments-team-pulumi-state"
    assert engine.workspace_env()["PULUMI_BACKEND_URL"] == "s3://payments-team-pulumi-state"
    assert not (tmp_path / "home" / "pulumi").exists()


def test_missing_passphrase_is_a_configuration_error(monkeypatch, stub_cli, settings):
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")
    with pytest.raises(ConfigError) as info:
        pe.PulumiEngine(settings)
    assert "PULUMI_CONFIG_PASSPHRASE" in str(info.value)
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" in str(info.value)
    assert info.value.exit_code == 2


def test_passphrase_file_is_accepted_when_it_exists(monkeypatch, tmp_path, stub_cli, settings):
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="passphrase file not found"):
        pe.PulumiEngine(settings)
    (tmp_path / "passphrase").write_text(PASSPHRASE)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(tmp_path / "passphrase"))
    assert pe.PulumiEngine(settings).stack == "TapStackdev"


def test_passphrase_is_inherited_never_handed_to_the_workspace(engine):
    """LocalWorkspace prints env_vars in its repr; the passphrase must not be among them."""
    assert PASSPHRASE not in json.dumps(engine.workspace_env())
    assert PASSPHRASE not in json.dumps(engine.stack_config())


# ---- stack config ------------------------------------------------------------------------------

def test_stack_config_holds_region_environment_and_overrides(stub_cli, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    overrides = ("db.engine_version=15.10", "lambda.memory_mb=512")
    settings = load_settings("dev", overrides)
    config = pe.PulumiEngine(settings, overrides).stack_config()
    assert config == {
        "aws:region": "eu-west-2",
        "tap:env": "dev",
        "tap:overrides": json.dumps(["db.engine_version=15.10", "lambda.memory_mb=512",
                                     "suffix='dev'"]),
        "tap:endpoint": "",      # written empty, so an endpoint set once never stays behind
    }


def test_an_endpoint_override_sends_the_programs_provider_there(monkeypatch):
    """AWS_ENDPOINT_URL -> tap:endpoint -> the program's explicit provider gets every service's
    endpoint and skips the checks only AWS answers; without it the provider is AWS's own."""
    from tap_lib.engines.synth import synthesize
    from tap_lib.program.entry import ENDPOINT_SERVICES, define_stack

    url = "http://127.0.0.1:4599"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    settings = load_settings("dev")
    endpoint = pe.stack_config(settings)["tap:endpoint"]
    assert endpoint == url

    def provider_inputs(endpoint):
        syn = synthesize(settings, program=lambda s: define_stack(s, endpoint=endpoint))
        assert syn.error is None, syn.error
        return next(r.inputs for r in syn.registrations if r.type == "pulumi:providers:aws")

    pointed = provider_inputs(endpoint)
    endpoints = pointed["endpoints"]
    endpoints = json.loads(endpoints) if isinstance(endpoints, str) else endpoints
    assert endpoints == [dict.fromkeys(ENDPOINT_SERVICES, url)]
    for flag in ("skipCredentialsValidation", "skipRequestingAccountId", "s3UsePathStyle"):
        assert pointed[flag] in (True, "true"), flag
    plain = provider_inputs(None)
    for bad in ("127.0.0.1:4599", "http://", "ftp://host", "http://host/path x"):
        monkeypatch.setenv("AWS_ENDPOINT_URL", bad)
        with pytest.raises(ConfigError, match="AWS_ENDPOINT_URL"):
            pe.stack_config(settings)
    assert "endpoints" not in plain and plain.get("skipCredentialsValidation") in (
        None, False, "false")


@pytest.mark.parametrize("suffix", ["PR6329", "017", "on"])
def test_program_rebuilds_the_same_settings_from_the_stack_config(monkeypatch, suffix):
    """What tap_lib/program/__main__.py does with the config, here without ENVIRONMENT_SUFFIX
    (a later `pulumi up` typed by hand); suffixes YAML would read as numbers or booleans stay."""
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", suffix)
    settings = load_settings("staging", ["lambda.memory_mb=512"])
    config = pe.stack_config(settings, ["lambda.memory_mb=512"])
    monkeypatch.delenv("ENVIRONMENT_SUFFIX")
    rebuilt = load_settings(config["tap:env"], json.loads(config["tap:overrides"]))
    assert rebuilt == settings
    assert rebuilt.stack_name == f"TapStack{suffix}"


# ---- event translation -------------------------------------------------------------------------

def test_every_pulumi_op_maps_to_one_of_taps_five():
    assert {op.value for op in auto.OpType} == set(pe.OP_MAP)
    assert set(pe.OP_MAP.values()) == set(OPS)


def test_pre_outputs_and_failed_events_give_start_done_and_failed():
    translated = [pe.translate_event(e) for e in events("up_failed")]
    phases = [(phase, step.name, step.op) for phase, step in filter(None, translated)]
    assert phases == [("start", "kms-key-dev", "same"), ("done", "kms-key-dev", "same"),
                      ("start", "payment-fn-dev", "create"),
                      ("failed", "payment-fn-dev", "create")]


def test_update_step_carries_type_name_and_changed_properties():
    update = next(e for e in events("up")
                  if e.resource_pre_event and e.resource_pre_event.metadata.op == "update")
    phase, step = pe.translate_event(update)
    assert phase == "start"
    assert step.to_dict() == {
        "urn": ("urn:pulumi:TapStackdev::TapStack::tap:index:TapStack$"
                "aws:cloudwatch/logGroup:LogGroup::payment-logs-dev"),
        "type": "aws:cloudwatch/logGroup:LogGroup", "name": "payment-logs-dev", "op": "update",
        "diffs": ["retentionInDays"], "monthly_usd": None,   # priced by ops (tap_lib/cost)
        "changes": [{"property": "retentionInDays", "old": 14, "new": 30}]}


def test_detailed_diff_gives_top_level_properties_when_diffs_are_absent():
    steps = {s.name: s for _, s in filter(None, map(pe.translate_event, events("preview")))}
    assert steps["payment-fn-dev"].diffs == ["memorySize", "vpcConfig"]


@pytest.mark.parametrize("raw", [e for e in EVENTS["up"] if "resourcePreEvent" not in e
                                 and "resOutputsEvent" not in e])
def test_events_about_no_resource_translate_to_nothing(raw):
    assert pe.translate_event(auto.EngineEvent.from_json(raw)) is None


def test_stack_root_components_and_providers_are_not_steps():
    types = {s.type for _, s in filter(None, map(pe.translate_event, events("destroy")))}
    assert types == {"aws:lambda/function:Function", "aws:cloudwatch/logGroup:LogGroup",
                     "aws:kms/key:Key"}


def test_event_outputs_never_reach_steps():
    for _, step in filter(None, map(pe.translate_event, events("up"))):
        assert "[secret]" not in json.dumps(step.to_dict())
        assert "arn:aws" not in json.dumps(step.to_dict())


def test_resource_names_come_from_the_urn():
    assert pe.urn_name(LAMBDA_URN) == "payment-fn-dev"
    assert pe.urn_name("urn:pulumi:s::p::aws:s3/bucket:Bucket::odd::name") == "odd::name"


@pytest.mark.parametrize("scenario, expected", [
    ("up", [("kms-key-dev", "same", []), ("payment-logs-dev", "update", ["retentionInDays"]),
            ("transaction-logs-dev", "replace", ["bucket"]), ("db-secret-dev", "create", []),
            ("nat-eip-1-dev", "delete", [])]),
    ("preview", [("kms-key-dev", "same", []),
                 ("payment-fn-dev", "update", ["memorySize", "vpcConfig"]),
                 ("db-secret-dev", "create", [])]),
    ("destroy", [("payment-fn-dev", "delete", []), ("payment-logs-dev", "delete", []),
                 ("kms-key-dev", "delete", [])]),
    ("refresh", [("kms-key-dev", "same", []), ("payment-logs-dev", "update", ["retentionInDays"]),
                 ("nat-eip-1-dev", "delete", [])]),
])
def test_tracker_folds_each_operation_into_one_step_per_resource(scenario, expected):
    """A replacement's three events (create-replacement, replace, delete-replaced) are one step;
    a refresh that finds drift reports it as update, a vanished resource as delete."""
    tracker = pe.StepTracker()
    for event in events(scenario):
        tracker(event)
    assert [(s.name, s.op, s.diffs) for s in tracker.steps] == expected


def test_tracker_reports_progress_once_per_resource():
    seen: list[StepEvent] = []
    tracker = pe.StepTracker(seen.append)
    for event in events("up"):
        tracker(event)
    assert [(e.phase, e.step.name, e.index) for e in seen] == [
        ("start", "kms-key-dev", 0), ("done", "kms-key-dev", 1),
        ("start", "payment-logs-dev", 1), ("done", "payment-logs-dev", 2),
        ("start", "transaction-logs-dev", 2), ("done", "transaction-logs-dev", 3),
        ("start", "db-secret-dev", 3), ("done", "db-secret-dev", 4),
        ("start", "nat-eip-1-dev", 4), ("done", "nat-eip-1-dev", 5)]
    assert all(e.total is None and e.error is None and e.elapsed_s >= 0 for e in seen)


def test_tracker_names_the_provider_error_of_a_failed_resource():
    seen: list[StepEvent] = []
    tracker = pe.StepTracker(seen.append)
    for event in events("up_failed"):
        tracker(event)
    failed = seen[-1]
    assert (failed.phase, failed.step.name, failed.index) == ("failed", "payment-fn-dev", 2)
    assert "cannot be assumed by Lambda" in failed.error
    assert tracker.errors[-1] == "update failed"


# ---- state, outputs, history -------------------------------------------------------------------

def test_resources_from_an_export_skip_bookkeeping_and_show_pending_and_no_secrets():
    states = pe.resource_states(auto.Deployment(**EVENTS["export"]))
    assert [(s.name, s.type, s.status) for s in states] == [
        ("kms-key-dev", "aws:kms/key:Key", "created"),
        ("db-secret-dev", "aws:secretsmanager/secret:Secret", "created"),
        ("transaction-logs-dev", "aws:s3/bucket:Bucket", "pending-delete"),
        ("payment-fn-dev", "aws:lambda/function:Function", "pending-create")]
    secret = states[1]
    assert secret.id.startswith("arn:aws:secretsmanager:")
    assert secret.outputs["kmsKeyId"] == "[secret]"
    assert "ciphertext" not in json.dumps([s.outputs for s in states])


def test_secret_outputs_show_as_placeholders():
    outputs = {"vpc_id": auto.OutputValue("vpc-0123456789abcdef0", False),
               "db_password": auto.OutputValue("hunter2", True)}
    assert pe.plain_outputs(outputs) == {"vpc_id": "vpc-0123456789abcdef0",
                                         "db_password": "[secret]"}


def _summary(kind: str, result: str = "succeeded", changes: dict | None = None,
             end: datetime | None = datetime(2024, 6, 1, 10, 0, 42)) -> auto.UpdateSummary:
    return auto.UpdateSummary(kind=kind, start_time=datetime(2024, 6, 1, 10, 0, 0), message="",
                              environment={"exec.kind": "auto.local"}, config={}, result=result,
                              end_time=end, version=3, resource_changes=changes)


def test_history_entries_use_taps_ops_and_operation_names():
    entry = pe.history_entry(_summary("update", changes={
        "create": 3, "same": 2, "replace": 1, "update": 1, "delete": 1}))
    # One vocabulary on every target: Pulumi's "update" is tap's "deploy".
    assert entry == HistoryEntry(time="2024-06-01T10:00:00+00:00", operation="deploy",
                                 result="succeeded", duration_s=42.0, create=3, update=1,
                                 replace=1, delete=1, same=2)
    running = pe.history_entry(_summary("destroy", "in-progress", end=None))
    assert (running.operation, running.result, running.duration_s) == ("destroy", "in-progress",
                                                                       0.0)
    assert running.delete == 0


# ---- error mapping -----------------------------------------------------------------------------

DIY_LOCKED = ("error: the stack is currently locked by 1 lock(s). Either wait for the other "
              "process(es) to end or delete the lock file with `pulumi cancel`.\n"
              "  file:///srv/tap/.tap/pulumi/.pulumi/locks/organization/TapStack/TapStackdev/"
              "2f1e.json: created by alice@build-7 (pid 4242) at 2024-06-01T10:00:00Z")


def _command_error(stderr: str, stdout: str = "", code: int = 255) -> auto.CommandError:
    """Classified by the SDK's own function, as after a real CLI run."""
    return create_command_error(auto.CommandResult(stdout=stdout, stderr=stderr, code=code))


def test_a_locked_stack_says_so_plainly_with_its_holder():
    exc = _command_error(DIY_LOCKED)
    assert isinstance(exc, auto.ConcurrentUpdateError)
    err = pe.map_error(exc, "TapStackdev", backend="file:///srv/tap/.tap/pulumi")
    assert isinstance(err, StackLocked) and isinstance(err, OperationFailed)
    assert err.message == ("stack TapStackdev is locked by another update (alice@build-7 "
                           "(pid 4242) at 2024-06-01T10:00:00Z); wait for it to finish, or run "
                           "`pulumi cancel --stack TapStackdev` if it is stale")
    assert "PULUMI_BACKEND_URL=file:///srv/tap/.tap/pulumi" in err.hint
    assert err.exit_code == 4


def test_a_service_backend_conflict_is_a_locked_stack_too():
    exc = auto.ConcurrentUpdateError(auto.CommandResult(
        stdout="", code=255,
        stderr="error: [409] Conflict: Another update is currently in progress."))
    err = pe.map_error(exc, "TapStackprod")
    assert isinstance(err, StackLocked)
    assert err.message.startswith("stack TapStackprod is locked by another update; ")


def test_command_error_gives_diagnostics_and_stderr_tail_but_never_stdout():
    stdout = "Outputs:\n    db_secret_arn: \"arn:aws:secretsmanager:eu-west-2:1:secret:x\""
    stderr = "\n".join(f"line {i}" for i in range(30)) + "\nerror: update failed"
    err = pe.map_error(_command_error(stderr, stdout), "TapStackdev",
                       diagnostics=["creating Lambda Function (tapstack-payment-dev): denied"])
    assert type(err) is OperationFailed
    lines = err.message.splitlines()
    assert lines[0] == "pulumi failed on stack TapStackdev:"
    assert lines[1] == "creating Lambda Function (tapstack-payment-dev): denied"
    assert lines[-1] == "error: update failed"
    assert "line 20" not in err.message and "line 21" in err.message
    assert "secretsmanager" not in err.message and "Outputs" not in err.message


def test_program_failures_are_operation_failures():
    exc = _command_error("error: an unhandled error occurred: Program exited with non-zero exit "
                         "code: 1", stdout="an unhandled error occurred: Program exited")
    assert isinstance(exc, auto.RuntimeError)
    assert type(pe.map_error(exc, "TapStackdev")) is OperationFailed


def test_error_messages_scrub_the_passphrase_and_url_credentials():
    stderr = (f"error: could not decrypt with {PASSPHRASE}\n"
              "error: backend postgres://tap:pa55word@db.internal/state unreachable")
    err = pe.map_error(_command_error(stderr), "TapStackdev")
    assert PASSPHRASE not in str(err) and "pa55word" not in str(err)
    assert "postgres://***@db.internal/state" in str(err)


def test_a_cli_that_does_not_run_is_unreachable(engine):
    """The real SDK against the stub CLI: LocalWorkspace runs `pulumi version` first."""
    with pytest.raises(TargetUnreachable, match="`pulumi version` exited with 97"):
        engine.outputs()


def test_a_cli_gone_missing_or_too_old_is_unreachable():
    gone = pe.map_error(FileNotFoundError(2, "No such file or directory", "pulumi"), "TapStackdev")
    assert isinstance(gone, TargetUnreachable) and "conda env create" in gone.message
    old = pe.map_error(auto.InvalidVersionError("Minimum version requirement failed"),
                       "TapStackdev")
    assert isinstance(old, TargetUnreachable) and "too old" in old.message


# ---- the engine against a stand-in for pulumi.automation ---------------------------------------

class FakePulumi:
    """Replaces LocalWorkspace and Stack: replays recorded events to `on_event`, then returns
    or raises what the test asks for, and records what the engine asked of it."""

    def __init__(self):
        self.exists = True
        self.events: list[auto.EngineEvent] = []
        self.error: Exception | None = None
        self.outputs: dict[str, auto.OutputValue] = {}
        self.calls: list[str] = []
        self.config: dict[str, str] = {}
        self.kwargs: list[tuple[str, dict[str, Any]]] = []
        self.workspace_kwargs: dict[str, Any] = {}
        fake = self

        class Workspace:
            def __init__(self, **kwargs):
                fake.workspace_kwargs = kwargs

        class Stack:
            @classmethod
            def create_or_select(cls, name, workspace):
                fake.calls.append(f"create_or_select {name}")
                fake.exists = True
                return cls()

            @classmethod
            def select(cls, name, workspace):
                fake.calls.append(f"select {name}")
                if not fake.exists:
                    raise auto.StackNotFoundError(auto.CommandResult(
                        "", f"error: no stack named '{name}' found", 255))
                return cls()

            def set_all_config(self, config):
                # As `pulumi config set-all`: the given keys are set, others are kept.
                fake.config.update({k: v.value for k, v in config.items() if not v.secret})

            def get_all_config(self):
                return {k: auto.ConfigValue(v) for k, v in fake.config.items()}

            def preview(self, on_event, **kwargs):
                fake.kwargs.append(("preview", kwargs))
                fake.replay(on_event)
                return auto.PreviewResult("", "", {})

            def up(self, on_event, **kwargs):
                fake.kwargs.append(("up", kwargs))
                fake.replay(on_event)
                return auto.UpResult("", "", _summary("update"), fake.outputs)

            def destroy(self, on_event, **_):
                fake.replay(on_event)
                return auto.DestroyResult("", "", _summary("destroy"))

            def outputs(self):
                return fake.outputs

            def export_stack(self):
                return auto.Deployment(**EVENTS["export"])

            def history(self, show_secrets):
                assert show_secrets is False
                return [_summary("update", changes={"create": 2})]

        self.Workspace, self.Stack = Workspace, Stack

    def replay(self, on_event) -> None:
        for event in self.events:
            on_event(event)
        if self.error is not None:
            raise self.error


@pytest.fixture
def fake(monkeypatch):
    fake = FakePulumi()
    monkeypatch.setattr(auto, "LocalWorkspace", fake.Workspace)
    monkeypatch.setattr(auto, "Stack", fake.Stack)
    return fake


def test_workspace_runs_the_repo_program_with_the_passphrase_provider(engine, fake):
    engine.outputs()
    kwargs = fake.workspace_kwargs
    assert kwargs == {"work_dir": str(REPO), "secrets_provider": "passphrase",
                      "env_vars": engine.workspace_env()}
    assert kwargs["env_vars"]["PULUMI_PYTHON_CMD"] == sys.executable


def test_up_writes_config_and_returns_steps_outputs_and_progress(engine, fake):
    fake.events = events("up")
    fake.outputs = {"vpc_id": auto.OutputValue("vpc-0123456789abcdef0", False),
                    "db_secret_arn": auto.OutputValue("arn:aws:secretsmanager:x", True)}
    seen: list[StepEvent] = []
    result = engine.up(seen.append)
    # The recorded origin is read first (select), then the stack is changed.
    assert fake.calls == ["select TapStackdev", "create_or_select TapStackdev"]
    assert fake.config == {**engine.stack_config(), "tap:origin": "params/dev.yaml",
                           "tap:protected": "false"}
    assert (result.stack, result.target, result.operation, result.status) == (
        "TapStackdev", "aws", "deploy", "succeeded")
    assert result.summary == {"create": 1, "update": 1, "replace": 1, "delete": 1, "same": 1}
    assert result.outputs == {"vpc_id": "vpc-0123456789abcdef0", "db_secret_arn": "[secret]"}
    assert [e.phase for e in seen] == ["start", "done"] * 5


def test_preview_is_a_plan_of_the_previewed_steps(engine, fake):
    fake.events = events("preview")
    plan = engine.preview()
    assert (plan.stack, plan.target, plan.operation) == ("TapStackdev", "aws", "preview")
    assert [(s.name, s.op) for s in plan.changes] == [("payment-fn-dev", "update"),
                                                      ("db-secret-dev", "create")]
    # the values a reviewer approves, from the event's old and new inputs
    memory = [c for c in plan.changes[0].changes if c["property"] == "memorySize"]
    assert memory == [{"property": "memorySize", "old": 256, "new": 512}]


def test_destroy_deletes_every_resource_and_leaves_no_outputs(engine, fake):
    fake.events = events("destroy")
    result = engine.destroy()
    assert result.operation == "destroy" and result.outputs == {}
    assert result.summary["delete"] == 3 and len(result.steps) == 3


def test_a_failed_up_raises_with_the_provider_error(engine, fake):
    fake.events = events("up_failed")
    fake.error = _command_error("error: update failed", stdout="Diagnostics: ...")
    seen: list[StepEvent] = []
    with pytest.raises(OperationFailed) as info:
        engine.up(seen.append)
    assert "The role defined for the function cannot be assumed by Lambda" in info.value.message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert seen[-1].phase == "failed"


def test_a_concurrent_up_raises_stack_locked(engine, fake):
    fake.error = _command_error(DIY_LOCKED)
    with pytest.raises(StackLocked, match="stack TapStackdev is locked by another update"):
        engine.up()


def test_reads_of_a_stack_never_deployed_are_empty_and_create_nothing(engine, fake):
    fake.exists = False
    assert (engine.outputs(), engine.resources(), engine.history()) == ({}, [], [])
    assert fake.calls == ["select TapStackdev"] * 3


def test_reads_of_a_deployed_stack(engine, fake):
    fake.outputs = {"region": auto.OutputValue("eu-west-2", False)}
    assert engine.outputs() == {"region": "eu-west-2"}
    assert [r.name for r in engine.resources()][0] == "kms-key-dev"
    assert engine.history()[0].create == 2


# ---- with the real CLI (skipped where it cannot be installed) ----------------------------------

@pytest.mark.pulumi_cli
@needs_cli
def test_real_cli_creates_the_stack_with_its_config_and_reads_it_back(monkeypatch, tmp_path):
    """Only the CLI and a file backend: no AWS. A copy of Pulumi.yaml keeps the repo clean."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "Pulumi.yaml", project / "Pulumi.yaml")
    monkeypatch.setenv("TAP_PROJECT_DIR", str(project))
    engine = pe.PulumiEngine(load_settings("dev", directory=REPO / "params"))
    assert (engine.outputs(), engine.history()) == ({}, [])
    result = engine.refresh()
    assert result.status == "succeeded" and result.steps == []
    options = auto.LocalWorkspaceOptions(work_dir=str(project), env_vars=engine.workspace_env())
    config = auto.select_stack(engine.stack, opts=options).get_all_config()
    assert {k: v.value for k, v in config.items()} == engine.stack_config()
    assert engine.history()[0].operation == "refresh"


@pytest.mark.pulumi_cli
@needs_cli
def test_real_cli_previews_the_whole_stack(monkeypatch):
    """Runs the repo's program under the CLI; needs AWS credentials for the provider."""
    import boto3

    if boto3.Session().get_credentials() is None:
        pytest.skip("no AWS credentials for the aws provider")
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", f"t{os.getpid()}")
    engine = pe.PulumiEngine(load_settings("dev"))
    try:
        plan = engine.preview()
        assert plan.summary["create"] > 20
        assert {s.type for s in plan.steps} >= {"aws:ec2/vpc:Vpc", "aws:rds/cluster:Cluster",
                                               "aws:s3/bucket:Bucket"}
    finally:
        with contextlib.suppress(auto.CommandError):
            auto.LocalWorkspace(work_dir=str(REPO), env_vars=engine.workspace_env()).remove_stack(
                engine.stack, force=True)
        (REPO / f"Pulumi.{engine.stack}.yaml").unlink(missing_ok=True)


def test_first_deploy_records_origin_and_protection_in_the_stack(stub_cli, fake, signers,
                                                                 monkeypatch):
    """Protection travels with the stack: written once into its config, read back from there;
    a protected stack changes only through a signed, approved plan, on this engine too."""
    monkeypatch.setenv("TAP_PROJECT_DIR", str(signers.project))  # the autouse fixture unsets it
    prod = pe.PulumiEngine(load_settings("prod"))
    with pytest.raises(ProtectedStack, match="needs a reviewed plan"):
        prod.up(confirm="TapStackprod")
    assert not any(kind == "up" for kind, _ in fake.kwargs)
    approved = signers.authorization("TapStackprod", target="aws")
    prod.up(confirm="TapStackprod", authorization=approved)
    assert fake.config["tap:origin"] == "params/prod.yaml"
    assert fake.config["tap:protected"] == "true"
    assert prod.stack_meta() == StackMeta("params/prod.yaml", True)
    # The same stack named from the dev file (settings built by hand: loading them is refused,
    # prod's name is reserved) is refused unconfirmed, and its destroy needs the approved
    # destroy plan the prod file's protection asks for.
    other = pe.PulumiEngine(load_settings("dev").model_copy(update={"suffix": "prod"}))
    calls = len(fake.calls)
    with pytest.raises(UsageError, match="created from params/prod.yaml"):
        other.destroy()
    with pytest.raises(ProtectedStack):
        prod.destroy()
    assert not any(c.startswith("create_or_select") for c in fake.calls[calls:])
    prod.up(confirm="TapStackprod", authorization=approved)
    assert fake.config["tap:origin"] == "params/prod.yaml"  # never rewritten


def test_a_reviewed_plan_is_pulumis_own_update_plan(engine, fake, tmp_path):
    """preview saves Pulumi's update plan beside tap's; up applies only it (the CLI refuses
    any step the plan lacks). Plans are experimental in Pulumi: the workspace turns them on."""
    artifact = tmp_path / "plan.json.pulumi.json"
    planned = engine.preview(artifact)
    assert fake.kwargs[-1][0] == "preview" and fake.kwargs[-1][1]["plan"] == str(artifact)
    assert planned.artifact == str(artifact)
    engine.up(plan=planned)
    assert fake.kwargs[-1][0] == "up" and fake.kwargs[-1][1]["plan"] == str(artifact)
    engine.up()
    assert "plan" not in fake.kwargs[-1][1]
    assert engine.workspace_env()["PULUMI_EXPERIMENTAL"] == "true"
