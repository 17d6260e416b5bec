"""How the suite spreads over pytest-xdist workers (`-n` in pyproject's addopts).

Tests share expensive things per module (a deployed sandbox stack, a PostgreSQL server), so a
module is the unit of work: it runs whole on one worker. The notebooks are one unit: they deploy,
check and destroy one stack in runbook order (notebooks/conftest.py). The slowest units start
first so that the last one to finish is short; the order below is a measured guess, and a stale
entry only costs balance, never correctness.
"""
from __future__ import annotations

import pytest

# The longest units of a 2-core run (2026-12-03), longest first: the long single-test modules
# start early, so the run does not end with one worker in a 45 s test and the other idle.
# Units not listed follow, those with most tests first (xdist's own order).
SLOWEST_FIRST = (
    "notebooks",
    "tests/test_faults.py",          # ~150 s
    "tests/test_change_matrix.py",
    "tests/test_airflow.py",         # ~70 s; .venv-airflow builds while the tests run
    "tests/test_cross_stack.py",     # one test ~47 s
    "tests/test_lab_browser.py",     # one test ~45 s
    "tests/test_leaks.py",           # one test ~34 s
    "tests/test_security_audit.py",  # live Prowler scan ~26 s and a deploy
    "tests/test_cli.py",
    "tests/test_runbook.py",
    "tests/test_lambdas.py",
    "tests/test_trail.py",
    "tests/test_sandbox_engine.py",
    "tests/test_repair.py",
)


def unit_of(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return "notebooks" if path.endswith(".ipynb") else path


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        """LoadScope with modules (and the notebooks together) as units, slowest first."""

        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

        def _assign_work_unit(self, node) -> None:
            rank = {unit: i for i, unit in enumerate(SLOWEST_FIRST)}
            first = min(self.workqueue, key=lambda unit: rank.get(unit, len(rank)))
            self.workqueue.move_to_end(first, last=False)
            super()._assign_work_unit(node)

    return ModuleScheduling(config, log)
