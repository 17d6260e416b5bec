"""Conformance: the real Pulumi engine and the sandbox engine plan the same steps.

The sandbox engine classifies each change from the provider's replacement table; the real engine
asks the provider itself. Here both run against one emulator (the sandbox's moto server; the
real engine reaches it through AWS_ENDPOINT_URL, see tap_lib/program/entry.py), each deploys its
own dev stack, and for each case of the change matrix both preview the same change: the ops per
resource must agree. Needs the Pulumi CLI and its AWS provider plugin, which these machines
cannot download, so it is skipped here and in CI (README, "Tests"); anyone with the CLI runs it:

    .venv/bin/python -m pytest tests/test_conformance.py -m pulumi_cli
"""
from __future__ import annotations

import shutil

import pytest

from tap_lib.config import load_settings
from tap_lib.engines.registry import open_engine

pytestmark = [pytest.mark.pulumi_cli, pytest.mark.sandbox, pytest.mark.skipif(
    shutil.which("pulumi") is None,
    reason="pulumi CLI not installed; these machines cannot download it")]

SANDBOX, REAL = "cfsbx", "cfreal"


def ops(plan, suffix: str) -> dict[str, str]:
    """Step op per logical name, the stack's suffix taken out of the name."""
    return {s.name.replace(suffix, "{sfx}"): s.op for s in plan.steps}


@pytest.fixture(scope="module")
def engines(sandbox_home, tmp_path_factory):
    from tap_lib.engines.sandbox import server

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", server.status().endpoint)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("PULUMI_CONFIG_PASSPHRASE", "conformance")
        mp.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path_factory.mktemp('pulumi')}")
        both = {}
        for target, suffix in (("sandbox", SANDBOX), ("aws", REAL)):
            eng = open_engine(load_settings("dev", [f"suffix={suffix}"]), target)
            eng.up()
            both[target] = eng
        yield mp


def test_both_engines_plan_the_same_steps_over_the_change_matrix(engines):
    from test_change_matrix import cases

    differ = {}
    for case in (c for c in cases() if c.deploys):
        planned = {}
        for target, suffix in (("sandbox", SANDBOX), ("aws", REAL)):
            settings = load_settings("dev", [f"suffix={suffix}", *case.overrides])
            planned[target] = ops(open_engine(settings, target).preview(), suffix)
        if planned["sandbox"] != planned["aws"]:
            differ[case.id] = {name: (op, planned["aws"].get(name))
                               for name, op in planned["sandbox"].items()
                               if planned["aws"].get(name) != op}
    assert not differ, differ
