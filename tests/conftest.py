"""Shared fixtures: an isolated tap home and a real sandbox emulator on a free port."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import settings

from tap_lib.localdb import free_port

# CI explores the same examples on every run, so a red build is reproducible; locally each run
# explores new ones.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def wait_for_ci_tool(name: str, timeout_s: float = 500.0) -> None:
    """.ci/run builds the test-only tools (airflow, prowler, chromium) while the tests run and
    names the folder where each build leaves NAME.ok or NAME.failed (TAP_CI_TOOLS): wait for
    this one. A failed or overdue build fails the test with the build's log (500 s: below
    pytest-timeout's 600 s per test, so the failure names the build). Outside .ci/run, nothing
    to wait for."""
    folder = os.environ.get("TAP_CI_TOOLS")
    if not folder:
        return
    done, failed, log = (Path(folder) / f"{name}.{end}" for end in ("ok", "failed", "log"))
    deadline = time.monotonic() + timeout_s
    while not done.exists():
        overdue = time.monotonic() > deadline
        if failed.exists() or overdue:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            pytest.fail(f"{name}: .ci/run's build " + ("failed" if failed.exists() else
                        f"still running after {timeout_s:.0f} s") + f"; its log ends:\n{tail}")
        time.sleep(1)


@pytest.fixture(scope="session")
def ci_tool():
    """wait_for_ci_tool, for test modules (a conftest is not imported by name)."""
    return wait_for_ci_tool


@pytest.fixture(scope="module")
def sandbox_home(tmp_path_factory):
    """A running sandbox emulator with its own TAP_HOME and port for one test module.

    Stops the emulator and every stand-in PostgreSQL of the module's stacks afterwards.
    """
    from tap_lib.engines.sandbox import server, standin

    home: Path = tmp_path_factory.mktemp("tap-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAP_HOME", str(home))
        mp.setenv("TAP_SANDBOX_PORT", str(free_port()))
        mp.setenv("TAP_OUTPUTS", str(home / "outputs"))
        mp.delenv("ENVIRONMENT_SUFFIX", raising=False)
        server.start()
        try:
            yield home
        finally:
            standin.forget_every_stack()
            server.stop()


@pytest.fixture(scope="module")
def signers(tmp_path_factory):
    """A signed project for the module (TAP_PROJECT_DIR points at it; fixtures_signing)."""
    from fixtures_signing import make_signed_project

    made = make_signed_project(tmp_path_factory.mktemp("signed"), notebooks=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAP_PROJECT_DIR", str(made.project))
        yield made


@pytest.fixture
def opened(monkeypatch) -> list:
    """Every sandbox engine constructed while the test runs: how many engines one operation
    opens (a repair through the Stack handle opens one)."""
    from tap_lib.engines.sandbox.engine import SandboxEngine

    engines: list = []
    original = SandboxEngine.__init__

    def counting(self, *args, **kwargs):
        engines.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(SandboxEngine, "__init__", counting)
    return engines
