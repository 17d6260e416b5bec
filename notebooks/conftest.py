"""Run the committed notebooks under nbval, in runbook order, on a throwaway sandbox.

The notebooks deploy, check and destroy a real (emulated) stack, so they need the runbook's
order and an isolated tap home, records directory and emulator port; the emulator and any
stand-in PostgreSQL are stopped afterwards. This conftest sits beside the notebooks so that
`pytest notebooks/` gets the same isolation as the whole suite. Both hooks are session-wide and
do nothing when no notebook was collected.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Generator, Iterator

import pytest

from tap_lib.localdb import free_port

ORDER = ("preflight", "preview", "deploy", "verify", "inspect", "repair", "fleet", "destroy",
         "audit")
_ISOLATED = ("TAP_HOME", "TAP_OUTPUTS", "TAP_SANDBOX_PORT", "TAP_TARGET", "ENVIRONMENT_SUFFIX")


def is_notebook_item(item: pytest.Item) -> bool:
    return item.path.suffix == ".ipynb"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Notebooks after the other tests, in runbook order (nbval collects them by file name);
    a notebook's cells keep their order because the sort is stable."""
    rank = {name: i for i, name in enumerate(ORDER)}
    items.sort(key=lambda item: (rank.get(item.path.stem, len(ORDER)) + 1)
               if is_notebook_item(item) else 0)


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, Any, Any]:
    """The kernels nbval starts inherit this process's environment: isolate it for the loop."""
    if not any(is_notebook_item(item) for item in session.items):
        return (yield)
    with notebook_sandbox():
        return (yield)


@contextlib.contextmanager
def notebook_sandbox() -> Iterator[Path]:
    """Fresh TAP_HOME, TAP_OUTPUTS and emulator port; the sandbox target; cleaned up after."""
    from tap_lib.engines.sandbox import server, standin

    root = Path(tempfile.mkdtemp(prefix="tap-nbval-"))
    saved = {name: os.environ.get(name) for name in _ISOLATED}
    os.environ.update(TAP_HOME=str(root / "home"), TAP_OUTPUTS=str(root / "outputs"),
                      TAP_SANDBOX_PORT=str(free_port()), TAP_TARGET="sandbox")
    os.environ.pop("ENVIRONMENT_SUFFIX", None)
    try:
        yield root
    finally:
        try:
            standin.forget_every_stack()
            server.stop()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            shutil.rmtree(root, ignore_errors=True)

