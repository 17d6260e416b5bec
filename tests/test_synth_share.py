"""One synthesis per command: preflight's run serves the sandbox engine's preview, only when it
was made from exactly the same inputs and the engine's resolver gives every answer that run was
given. No emulator: a preview of a stack with nothing recorded reads only tap's state."""
from __future__ import annotations

import pytest

from tap_lib.config import load_settings
from tap_lib.engines import synth
from tap_lib.engines.sandbox.engine import SandboxEngine
from tap_lib.engines.sandbox.state import ResourceRecord
from tap_lib.engines.synth import (PlaceholderResolver, Synthesis, forget_shared, replays, share,
                                   share_key, take_shared)
from tap_lib.ops.preflight import _synthesize as preflight_synthesis
from tap_lib.program.entry import define_stack

VPC = "aws:ec2/vpc:Vpc"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TAP_HOME", str(tmp_path))
    monkeypatch.setenv("TAP_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.delenv("ENVIRONMENT_SUFFIX", raising=False)
    forget_shared()
    yield tmp_path
    forget_shared()


@pytest.fixture
def runs(monkeypatch) -> list[Synthesis]:
    """Every program run from now on (the synthesis it made)."""
    made: list[Synthesis] = []
    real = synth._run

    def counted(*args):
        made.append(real(*args))
        return made[-1]
    monkeypatch.setattr(synth, "_run", counted)
    return made


def settings(*overrides: str):
    return load_settings("dev", ("suffix=share", *overrides))


def plan_of(plan) -> list[tuple[str, str, list[str]]]:
    """The steps, sorted: registration order varies between runs (executor threads race)."""
    return sorted((s.urn, s.op, s.diffs) for s in plan.steps)


def test_preflight_run_serves_the_preview_of_an_empty_stack(home, runs):
    fresh = plan_of(SandboxEngine(settings())._plan_now())
    assert len(runs) == 1 and {op for _, op, _ in fresh} == {"create"}
    preflight_synthesis(settings(), None)  # what run_preflight does first
    assert len(runs) == 2
    shared = plan_of(SandboxEngine(settings())._plan_now())
    assert len(runs) == 2           # no run of its own
    assert shared == fresh          # and the plan a run of its own gives
    SandboxEngine(settings())._plan_now()
    assert len(runs) == 3           # an offer serves one consumer only


def test_a_changed_setting_gets_a_synthesis_of_its_own(home, runs):
    preflight_synthesis(settings(), None)
    SandboxEngine(settings("lambda.memory_mb=512"))._plan_now()
    assert len(runs) == 2
    fn = next(r for r in runs[-1].registrations if r.name == "payment-fn-share")
    assert fn.inputs["memorySize"] == 512
    assert next(r for r in runs[0].registrations
                if r.name == "payment-fn-share").inputs["memorySize"] != 512


def test_another_program_gets_a_synthesis_of_its_own(home, runs):
    def other(s):
        return define_stack(s)
    preflight_synthesis(settings(), None)
    SandboxEngine(settings(), program=other)._plan_now()
    assert len(runs) == 2


def test_a_stack_with_recorded_resources_is_not_planned_from_placeholders(home, runs):
    """The resolver answers a recorded resource with its stored id and outputs, not the
    placeholders preflight's run was given: the program must run against those."""
    syn = preflight_synthesis(settings(), None)
    vpc = syn.of_type(VPC)[0]
    eng = SandboxEngine(settings())
    eng.store.put(ResourceRecord(vpc.urn, vpc.type, vpc.name, "vpc-0123456789abcdef0",
                                 eng_inputs(vpc), {"id": "vpc-0123456789abcdef0"},
                                 vpc.dependencies, vpc.parent))
    plan = eng._plan_now()
    assert len(runs) == 2
    assert {urn: op for urn, op, _ in plan_of(plan)}[vpc.urn] != "create"


def eng_inputs(reg) -> dict:
    from tap_lib.engines.sandbox.state import normalize
    return normalize(reg.inputs)


def test_share_key_covers_every_setting_and_the_answers():
    base = settings()
    resolver = PlaceholderResolver(base.region)
    key = share_key(base, None, resolver)
    assert key == share_key(settings(), define_stack, PlaceholderResolver(base.region))
    assert key != share_key(settings("lambda.memory_mb=512"), None, resolver)
    assert key != share_key(settings("tags.CostCenter=other"), None, resolver)
    assert key != share_key(base, None, PlaceholderResolver("us-east-1"))
    assert key != share_key(base, None, PlaceholderResolver(base.region, "210987654321"))
    assert key != share_key(base, None, resolver, preview=False)


def test_an_offer_expires_and_a_failed_run_is_never_offered(home, monkeypatch):
    base = settings()
    key = share_key(base, None, PlaceholderResolver(base.region))
    failed = Synthesis("TapStackshare", [], {}, [], [], RuntimeError("boom"), 0.0)
    share(failed, key)
    assert take_shared(key) is None
    good = Synthesis("TapStackshare", [], {}, [], [], None, 0.0)
    share(good, key)
    assert take_shared(("another key",)) is None
    assert take_shared(key) is None          # the mismatch emptied the slot
    share(good, key)
    monkeypatch.setattr(synth, "SHARE_TTL_S", -1.0)
    assert take_shared(key) is None          # too old for this command
    monkeypatch.setattr(synth, "SHARE_TTL_S", 120.0)
    share(good, key)
    assert take_shared(key) is good


class _Differs(PlaceholderResolver):
    """Placeholders, except for one answer."""

    def __init__(self, region: str, *, resource: str = "", invoke: bool = False):
        super().__init__(region)
        self.odd_resource, self.odd_invoke = resource, invoke

    def resource(self, reg):
        id_, outputs = super().resource(reg)
        return (id_ + "-other", outputs) if reg.name == self.odd_resource else (id_, outputs)

    def invoke(self, token, args):
        answer = super().invoke(token, args)
        return {**answer, "accountId": "210987654321"} if self.odd_invoke else answer


def test_replays_only_when_every_answer_is_the_same(home):
    syn = synth.synthesize(settings())
    assert syn.invokes, "the program asks for the caller identity"
    assert replays(syn, PlaceholderResolver(syn_region := settings().region))
    assert not replays(syn, _Differs(syn_region, resource="vpc-share"))
    assert not replays(syn, _Differs(syn_region, invoke=True))


def test_stack_traces_are_skipped_only_inside_a_synthesis():
    """Pulumi's walk of the Python stack (source positions the mock monitor drops) is skipped
    on synthesis threads only; the Pulumi CLI's own runs keep it."""
    import threading

    class Resource:
        def __init__(self):
            self.trace = synth.pulumi_resource._get_stack_trace()

    class Custom(Resource):
        def __init__(self):
            super().__init__()

    class Concrete(Custom):   # the SDK looks for the third __init__ frame, as in a resource
        def __init__(self):
            super().__init__()

    assert len(Concrete().trace.frames) > 0
    seen = []

    def in_synthesis():
        synth._IN_SYNTHESIS.active = True
        seen.append(Concrete().trace)
    thread = threading.Thread(target=in_synthesis)
    thread.start()
    thread.join()
    assert len(seen[0].frames) == 0
    assert len(Concrete().trace.frames) > 0   # this thread is still not a synthesis thread


def test_nothing_to_apply_only_when_the_apply_pass_would_write_nothing(home):
    """The no-op deploy skips its apply pass only when that pass would call no handler and
    record nothing: each condition alone makes it run."""
    from dataclasses import replace
    from types import SimpleNamespace

    from tap_lib.engines.base import Step
    from tap_lib.engines.sandbox.state import normalize
    from tap_lib.engines.sandbox.steps import nothing_to_apply

    from tap_lib.engines.sandbox.steps import trigger_of

    syn = synth.synthesize(settings(), preview=False)   # a deployed stack's outputs are known
    declared = [r for r in syn.registrations if r.custom and not r.is_provider]
    records = {r.urn: ResourceRecord(r.urn, r.type, r.name, r.id, normalize(r.inputs),
                                     normalize(r.outputs), r.dependencies, r.parent,
                                     replacement_trigger=trigger_of(r, True))
               for r in declared}
    assert any(rec.replacement_trigger is not None for rec in records.values())
    same = [Step(r.urn, r.type, r.name, "same") for r in declared]
    state = SimpleNamespace(resources=records, outputs=normalize(syn.outputs))
    assert nothing_to_apply(same, syn, state, [])
    assert not nothing_to_apply([*same[1:], replace(same[0], op="update")], syn, state, [])
    assert not nothing_to_apply(same, syn, state, [Step("urn:x", "t", "x", "delete")])
    assert not nothing_to_apply(same, syn, SimpleNamespace(
        resources=records, outputs={**state.outputs, "region": "us-east-1"}), [])
    first = declared[0].urn
    for changed in (replace(records[first], status="pending-create"),
                    replace(records[first], replacement_trigger={"v": 1})):  # set or changed
        assert not nothing_to_apply(same, syn, SimpleNamespace(
            resources={**records, first: changed}, outputs=state.outputs), [])
    triggered = next(u for u, rec in records.items() if rec.replacement_trigger is not None)
    assert not nothing_to_apply(same, syn, SimpleNamespace(   # a trigger never recorded
        resources={**records, triggered: replace(records[triggered], replacement_trigger=None)},
        outputs=state.outputs), [])
    missing = {u: r for u, r in records.items() if u != first}
    assert not nothing_to_apply(same, syn, SimpleNamespace(resources=missing,
                                                           outputs=state.outputs), [])
