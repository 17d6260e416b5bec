"""The public `Stack` handle: settings read at open, one engine opened lazily and reused, and
every guard of the operations below it still refusing (here a protected stack, never deployed:
the refusals come before anything would be created)."""
from __future__ import annotations

import json

import pytest

from tap_lib import Stack, trail
from tap_lib.config import load_settings
from tap_lib.engines.sandbox.engine import SandboxEngine
from tap_lib.errors import ConfigError, PlanRefused, ProtectedStack, UsageError


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TAP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TAP_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.delenv("ENVIRONMENT_SUFFIX", raising=False)
    monkeypatch.delenv("TAP_TARGET", raising=False)
    return tmp_path


def test_open_reads_the_settings_and_no_engine_until_one_is_needed(home, opened):
    stack = Stack.open("dev", overrides=["lambda.memory_mb=512"])
    assert stack.settings == load_settings("dev", ("lambda.memory_mb=512",))
    assert stack.name == stack.settings.stack_name and stack.target == "sandbox"
    assert opened == []
    assert stack.outputs() == {} and stack.resources() == []    # never deployed
    assert stack.engine is stack.engine and opened == [stack.engine]


def test_bad_input_is_refused_by_type(home, opened):
    with pytest.raises(ConfigError):
        Stack.open("no-such-env")
    with pytest.raises(ConfigError, match="protection is declared by the environment file"):
        Stack.open("prod", overrides=["protected=false"])
    nowhere = Stack.open("dev", "mars")
    with pytest.raises(UsageError, match="unknown target 'mars'"):
        nowhere.verify()
    with pytest.raises(UsageError, match="--yes"):            # before any engine opens
        Stack.open("dev").destroy()
    with pytest.raises(UsageError, match="--reason"):
        Stack.open("dev").preview(skip_rules=["TAP103"])
    assert opened == []


def test_a_protected_stack_refuses_every_unreviewed_change_through_the_handle(home, opened):
    prod = Stack.open("prod", "sandbox")
    with pytest.raises(ProtectedStack, match="deploys only from a reviewed plan"):
        prod.deploy()
    with pytest.raises(ProtectedStack, match="deploys only from a reviewed plan"):
        prod.deploy(confirm=prod.name)                      # the name alone is not a plan
    with pytest.raises(ProtectedStack, match="repair changes it outside a reviewed plan"):
        prod.repair(confirm=prod.name)
    with pytest.raises(ProtectedStack, match="a refresh needs a reviewed plan"):
        prod.refresh()
    with pytest.raises(ProtectedStack, match="a destroy needs a reviewed plan"):
        prod.destroy(yes=True, confirm=prod.name)
    assert len(opened) == 5                                 # one engine for each change
    assert prod.resources() == [] and opened[-1] is prod.engine   # nothing was created
    refused = [e for e in trail.read() if e["result"] == "refused"]
    assert [(e["operation"], e["stack"], e["error"]) for e in refused][:1] == [
        ("deploy", prod.name, "ProtectedStack")]


def test_a_damaged_or_foreign_plan_is_refused_before_the_engine_runs(home, opened, tmp_path):
    stack = Stack.open("dev", "sandbox")
    with pytest.raises(PlanRefused, match="no such plan file"):
        stack.deploy(plan=tmp_path / "missing.json")
    damaged = tmp_path / "damaged.json"
    damaged.write_text("{not json")
    with pytest.raises(PlanRefused, match="not a readable plan"):
        stack.deploy(plan=damaged)
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps({"kind": "tap-plan", "version": 2, "operation": "deploy",
                                  "hash": "sha256:0"}))
    with pytest.raises(PlanRefused, match="changed after it was saved"):
        stack.deploy(plan=edited)
    assert opened == []


def test_a_change_judges_the_stack_as_it_is_now_not_as_the_handle_first_read_it(home, opened):
    """A long-lived handle (a lab session) read the stack; then the stack was recorded as
    protected elsewhere. Its deploy must see that, not the state its first engine holds."""
    stack = Stack.open("dev", "sandbox")
    assert stack.resources() == [] and not stack.engine.is_protected()
    elsewhere = SandboxEngine(stack.settings)
    elsewhere.store.state.origin, elsewhere.store.state.protected = stack.settings.source, True
    elsewhere.store.save()
    with pytest.raises(ProtectedStack, match="deploys only from a reviewed plan"):
        stack.deploy()
    assert stack.engine.is_protected()
