"""The package's public surface and its exception tree are what they claim to be."""
from __future__ import annotations

import tap_lib
from tap_lib import errors


def test_public_names_exist_and_nothing_else_is_promised():
    assert sorted(tap_lib.__all__) == sorted(set(tap_lib.__all__))
    for name in tap_lib.__all__:
        assert getattr(tap_lib, name) is not None, name
    assert tap_lib.__version__ != "0+unknown"  # installed: the version comes from metadata


def test_exception_tree_and_exit_codes():
    assert all(issubclass(cls, errors.TapError) for cls in (
        errors.ConfigError, errors.UsageError, errors.ChecksFailed, errors.TargetUnreachable,
        errors.OperationFailed, errors.StackLocked, errors.DuplicateUrnError,
        errors.UnsupportedResource, errors.SandboxStateLost))
    codes = {cls.__name__: cls.exit_code for cls in (
        errors.ChecksFailed, errors.ConfigError, errors.UsageError, errors.TargetUnreachable,
        errors.OperationFailed, errors.StackLocked)}
    assert codes == {"ChecksFailed": 1, "ConfigError": 2, "UsageError": 2,
                     "TargetUnreachable": 3, "OperationFailed": 3, "StackLocked": 4}
    err = errors.ConfigError("not allowed", file="params/dev.yaml", field="vpc.az_count",
                             value=9, allowed="2-6")
    assert str(err) == "params/dev.yaml: field 'vpc.az_count': not allowed (got 9); allowed: 2-6"
    assert "urn:x" in str(errors.DuplicateUrnError("urn:x"))


def test_the_stack_handle_is_public_and_loaded_on_first_use():
    """`import tap_lib` (as `tap --version` does) loads no operation, pandas nor pulumi; the
    handle's methods are the operations the notebooks and the CLI use."""
    import subprocess
    import sys

    code = ("import sys, tap_lib; loaded = [m for m in ('tap_lib.ops.handle', 'pandas', "
            "'pulumi') if m in sys.modules]; print(loaded); print(tap_lib.Stack.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[:2] == ["[]", "tap_lib.ops.handle"]
    assert "Stack" in tap_lib.__all__
    for method in ("open", "preview", "plan", "deploy", "refresh", "destroy", "outputs",
                   "verify", "inspect", "repair"):
        assert callable(getattr(tap_lib.Stack, method)), method
    for name in ("NotDeployed", "ProtectedStack", "PlanRefused", "PreflightBlocked"):
        assert issubclass(getattr(tap_lib, name), errors.TapError), name
