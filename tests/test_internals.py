"""Private internals of pulumi and moto that tap relies on are still there.

pyproject.toml bounds both packages to the minor versions tested; when that bound is moved,
this file says which internal a new release dropped, instead of a confusing error deep inside
a deploy.
"""
from __future__ import annotations

import importlib
import inspect
from importlib.metadata import version

import pytest

# (module, dotted attribute, who uses it and why)
INTERNALS = [
    ("pulumi.runtime.sync_await", "_sync_await",
     "tap_lib/engines/synth.py runs the program under mocks to completion from sync code"),
    ("pulumi.runtime.settings", "reset_options",
     "tap_lib/engines/synth.py resets the runtime between two syntheses in one process"),
    ("pulumi.runtime.settings", "SETTINGS.rpc_manager.clear",
     "tap_lib/engines/synth.py drops RPCs left by an earlier synthesis"),
    ("pulumi.runtime.settings", "SETTINGS.outputs.clear",
     "tap_lib/engines/synth.py drops outputs left by an earlier synthesis"),
    ("pulumi.runtime.settings", "get_root_resource",
     "tap_lib/engines/synth.py reads the stack exports from the root resource"),
    ("pulumi.runtime.stack", "run_pulumi_func",
     "tap_lib/engines/synth.py awaits the program under mocks"),
    ("pulumi.runtime.mocks", "MockMonitor",
     "tap_lib/engines/synth.py records registrations in a MockMonitor subclass"),
    ("pulumi.runtime.rpc", "deserialize_properties",
     "tap_lib/engines/synth.py decodes registered inputs"),
    ("moto.iam.access_control", "IAMPolicyStatement.is_action_permitted",
     "tap_lib/engines/sandbox/emulator.py wraps it to honour aws:SecureTransport"),
    ("moto.iam.access_control", "PermissionResult.NEUTRAL",
     "tap_lib/engines/sandbox/emulator.py answers NEUTRAL for insecure-transport statements"),
]


def _distribution(module: str) -> str:
    name = module.split(".")[0]
    return f"{name} {version(name)}"


@pytest.mark.parametrize("module, attribute, use", INTERNALS,
                         ids=[f"{m}.{a}" for m, a, _ in INTERNALS])
def test_internal_is_still_there(module: str, attribute: str, use: str) -> None:
    where = f"{module}.{attribute}"
    try:
        target = importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(f"{_distribution(module)} has no module {module} ({exc}); {use}. "
                    "Keep the pin in pyproject.toml or port that code.")
    for part in attribute.split("."):
        if not hasattr(target, part):
            pytest.fail(f"{_distribution(module)} no longer has {where}; {use}. "
                        "Keep the pin in pyproject.toml or port that code.")
        target = getattr(target, part)


def test_moto_policy_statement_keeps_the_shape_the_emulator_wraps() -> None:
    """The wrapper reads `self._statement` and forwards the four arguments by position."""
    from moto.iam.access_control import IAMPolicyStatement

    statement = {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}
    assert getattr(IAMPolicyStatement(statement), "_statement", None) is statement, (
        f"{_distribution('moto')}: IAMPolicyStatement no longer keeps its statement in "
        "_statement; tap_lib/engines/sandbox/emulator.py reads it")
    parameters = list(inspect.signature(IAMPolicyStatement.is_action_permitted).parameters)
    assert parameters == ["self", "action", "resource", "principal",
                          "incoming_condition_values"], (
        f"{_distribution('moto')}: IAMPolicyStatement.is_action_permitted{parameters} changed; "
        "tap_lib/engines/sandbox/emulator.py forwards exactly these arguments")


def test_the_emulator_correction_still_applies() -> None:
    """Behaviour, not just names: the TLS-only Deny is neutral, any other Deny still denies."""
    from moto.iam import access_control

    from tap_lib.engines.sandbox import emulator

    tls_only = access_control.IAMPolicyStatement({
        "Effect": "Deny", "Action": "s3:*", "Resource": "*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}})
    plain = access_control.IAMPolicyStatement({"Effect": "Deny", "Action": "s3:*",
                                               "Resource": "*"})
    result = access_control.PermissionResult
    assert emulator._is_action_permitted(tls_only, "s3:GetObject") == result.NEUTRAL
    assert emulator._is_action_permitted(plain, "s3:GetObject") == result.DENIED


def test_a_botocore_session_forgets_its_credentials_when_told(monkeypatch) -> None:
    """tap_lib/engines/sandbox/lambda_runtime.py (_fresh_container) reuses boto3's default
    session across a warm worker's containers and clears its private `_credentials`, so the
    next container's credentials come from its own environment."""
    import botocore.session

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "first")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "first-secret")
    session = botocore.session.Session()
    assert session.get_credentials().access_key == "first"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "second")
    assert session.get_credentials().access_key == "first"      # cached
    assert hasattr(session, "_credentials"), "botocore Session._credentials is gone"
    session._credentials = None
    assert session.get_credentials().access_key == "second", \
        "botocore no longer re-resolves credentials after Session._credentials is cleared"
