"""Fleet operations: verify, preview or inspect many stacks at once, in one process.

A fleet is a list of (environment file, suffix) pairs: `--env` repeated, each `--suffix` applied
to each env (ENVIRONMENT_SUFFIX semantics, passed as the override `suffix=X` so that threads
never share a changed os.environ), or a fleet file (`params/fleet.yaml`). Every stack's settings
are validated before any stack is touched. The stacks then run concurrently on a bounded thread
pool; the program is imported once, and verify's boto3 clients are made once per (target,
region) and shared. Verify makes each describe that can filter by several ids once per region
for all its stacks and splits the answer per stack (facts.FactReader), so a stack's AWS calls
are its own plus its share of those; its synthetic payment runs in one warm runtime for the
fleet. Each stack is still judged alone, exactly as its own `tap verify` judges it. Verify and
inspect price each deployed stack (cost column; unknown stays unknown, never 0).

Each stack's result keeps the exit code its own `tap` command would have had (a stack that is
not deployed: 3); the fleet's is the worst. Fleet verify's stack x control matrix is what the
fleet notebook draws.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..config import Settings
from ..errors import ChecksFailed, NotDeployed, TapError, UsageError

# The fleet's stacks (fleet_stacks.py) and its report (fleet_report.py), re-exported: callers
# and notebooks know them as fleet.*.
from .fleet_report import (  # noqa: F401
    COST_COLUMNS,
    COSTED,
    SUMMARY_COLUMNS,
    FleetReport,
    StackResult,
    stack_cost,
    unpriced,
)
from .fleet_stacks import (  # noqa: F401
    MAX_STACKS,
    STACK_KEYS,
    StackRef,
    as_stacks,
    fleet_file_path,
    load_fleet_file,
    resolve_stacks,
)

OPERATIONS = ("verify", "preview", "inspect")
DEFAULT_WORKERS = 4


# -- running -----------------------------------------------------------------------------------
class ClientCache:
    """One set of boto3 clients per (target, region), made by the first stack that needs it."""

    def __init__(self):
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, target: str, ref: StackRef, settings: Settings) -> Any:
        from ..engines.registry import open_engine

        key = (target, settings.region)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = open_engine(settings, target, ref.overrides).clients()
            return self._clients[key]

    def __len__(self) -> int:
        return len(self._clients)


def _verify_one(ref: StackRef, settings: Settings, target: str, cache: ClientCache
                ) -> tuple[str, dict[str, int], Any, dict | None]:
    """One stack alone (the fleet verifies in phases instead: see _verify_fleet)."""
    from .facts import read_facts
    from .verify import subject

    clients = cache.get(target, ref, settings)
    stack = subject(ref.env, target, ref.overrides, clients=clients)
    reading = read_facts(clients, {0: stack.outputs})[0]
    if isinstance(reading, Exception):
        raise reading
    return _judged(stack, reading, clients, target, settings)


def _judged(stack, reading, clients, target: str, settings: Settings
            ) -> tuple[str, dict[str, Any], Any, dict | None]:
    from .. import trail
    from .verify import judge

    report = judge(stack, reading, clients)
    counts = {"passed": report.passed, "failed": report.failed, "excepted": report.excepted,
              "aws_calls": report.aws_calls}
    # A scheduled fleet check is evidence per stack: each gets its own trail entry.
    trail.append(operation="verify", stack=report.stack, target=target, env_file=settings.source,
                 result="failed" if report.failed else "succeeded", summary=dict(counts))
    return (("failed" if report.failed else "passed"), counts, report,
            stack_cost(stack.engine, settings))


def _preview_one(ref: StackRef, settings: Settings, target: str, cache: ClientCache
                 ) -> tuple[str, dict[str, int], Any, dict | None]:
    from .stack import preview

    plan = preview(ref.env, target, ref.overrides)
    return "passed", dict(plan.summary), plan, None     # the plan carries its own cost


def _inspect_one(ref: StackRef, settings: Settings, target: str, cache: ClientCache
                 ) -> tuple[str, dict[str, int], Any, dict | None]:
    from ..engines.registry import open_engine
    from .inspect import inspect_stack

    result = inspect_stack(ref.env, target, ref.overrides)
    if not result.outputs:
        raise NotDeployed(f"stack {result.stack} is not deployed on {result.target}",
                          hint=f"run tap deploy --env {ref.env} first")
    counts = {"resources": len(result.inventory), "drifted": len(result.drift)}
    return "passed", counts, result, stack_cost(open_engine(settings, target, ref.overrides),
                                                settings)


# Each returns (status, counts, report, cost).
RUNNERS: dict[str, Callable[..., tuple[str, dict[str, int], Any, dict | None]]] = {
    "verify": _verify_one, "preview": _preview_one, "inspect": _inspect_one}


def _exit_code(status: str) -> int:
    return 1 if status == "failed" else 0


def _failed(ref: StackRef, settings: Settings, exc: BaseException) -> StackResult:
    """How a stack that raised ends: as its own command would (not deployed: 3)."""
    if isinstance(exc, TapError):
        status = "not-deployed" if _not_deployed(exc) else (
            "failed" if isinstance(exc, ChecksFailed) else "error")
        return StackResult(ref, settings.stack_name, status, exc.exit_code, error=exc.message)
    return StackResult(ref, settings.stack_name, "error", 3,
                       error=f"{type(exc).__name__}: {exc}")


def _not_deployed(exc: TapError) -> bool:
    return isinstance(exc, NotDeployed)


def run_fleet(operation: str, stacks: Iterable[Any], target: str | None = None,
              max_workers: int = DEFAULT_WORKERS,
              progress: Callable[[StackResult], None] | None = None) -> FleetReport:
    """Run one operation over every stack, at most `max_workers` at a time. Each stack's own
    record: mutations are recorded by the engine (trail); these read-only operations change
    nothing, and the trail keeps no entry for reads (a scheduled run's notebook record does)."""
    from ..engines.registry import check_target

    stacks = as_stacks(stacks)

    if operation not in RUNNERS:
        raise UsageError(f"unknown fleet operation {operation!r}; allowed: "
                         f"{', '.join(OPERATIONS)}")
    if not isinstance(max_workers, int) or not 1 <= max_workers <= 64:
        raise UsageError(f"max_workers must be a whole number from 1 to 64 (got {max_workers!r})")
    if not stacks:
        raise UsageError("the fleet has no stacks")
    target = check_target(target)
    cache = ClientCache()
    started = time.monotonic()
    workers = min(max_workers, len(stacks))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tap-fleet") as pool:
        if operation == "verify":
            results = _verify_fleet(stacks, target, cache, pool, progress)
        else:
            results = _each(operation, stacks, target, cache, pool, progress)
    report = FleetReport(operation, target, results, time.monotonic() - started)
    if operation == "verify":
        report.notes.append(f"{len(cache)} client set(s) shared by {len(stacks)} stack(s)")
    return report


def _each(operation: str, stacks: list[tuple[StackRef, Settings]], target: str,
          cache: ClientCache, pool: ThreadPoolExecutor,
          progress: Callable[[StackResult], None] | None) -> list[StackResult]:
    """Each stack on its own, concurrently."""
    # Inspect draws each stack's picture to outputs/<env>/topology.png: one env at a time.
    env_locks = {ref.env: threading.Lock() for ref, _ in stacks}

    def one(ref: StackRef, settings: Settings) -> StackResult:
        t0 = time.monotonic()
        try:
            if operation == "inspect":
                with env_locks[ref.env]:
                    status, counts, report, cost = RUNNERS[operation](ref, settings, target,
                                                                      cache)
            else:
                status, counts, report, cost = RUNNERS[operation](ref, settings, target, cache)
            result = StackResult(ref, settings.stack_name, status, _exit_code(status), counts,
                                 report=report, cost=cost)
        except Exception as exc:  # noqa: BLE001 - one stack's bug must not hide the others
            result = _failed(ref, settings, exc)
        result.duration_s = time.monotonic() - t0
        if progress:
            progress(result)
        return result

    return list(pool.map(lambda pair: one(*pair), stacks))


def _verify_fleet(stacks: list[tuple[StackRef, Settings]], target: str, cache: ClientCache,
                  pool: ThreadPoolExecutor, progress: Callable[[StackResult], None] | None
                  ) -> list[StackResult]:
    """Verify in three phases: open every stack (its outputs); make the describes that cover
    several stacks once per region for all of its stacks (FactReader); then each stack reads
    the rest of its facts, is judged and runs its live checks, as `tap verify` would. The
    synthetic payments share one warm runtime (Engine.invocations)."""
    from ..engines.registry import engine_class
    from .facts import FactReader
    from .verify import subject

    n = len(stacks)
    done: dict[int, StackResult] = {}
    spent = [0.0] * n

    def timed(i: int, fn: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        try:
            return fn()
        finally:
            spent[i] += time.monotonic() - t0

    def finish(i: int, result: StackResult) -> None:
        result.duration_s = spent[i]
        done[i] = result
        if progress:
            progress(result)

    def opened(i: int):
        ref, settings = stacks[i]
        try:
            return timed(i, lambda: subject(ref.env, target, ref.overrides,
                                            clients=cache.get(target, ref, settings)))
        except Exception as exc:  # noqa: BLE001 - one stack's failure is its own
            finish(i, _failed(ref, settings, exc))
            return None

    with engine_class(target).invocations():
        subjects = dict(enumerate(pool.map(opened, range(n))))
        groups: dict[str, list[int]] = {}
        for i, stack in subjects.items():
            if stack is not None:
                groups.setdefault(stack.settings.region, []).append(i)

        def share(region: str) -> tuple[str, Any, Any]:
            """The region's shared describes (one per kind for all its stacks)."""
            try:
                clients = subjects[groups[region][0]].engine.clients()
                return region, clients, FactReader(
                    clients, {i: subjects[i].outputs for i in groups[region]})
            except Exception as exc:  # noqa: BLE001 - the region's stacks share the failure
                return region, None, exc

        t0 = time.monotonic()
        readers = {region: (clients, reader)
                   for region, clients, reader in pool.map(share, list(groups))}
        for members in groups.values():
            for i in members:
                spent[i] += time.monotonic() - t0

        def judged(i: int) -> None:
            ref, settings = stacks[i]
            clients, reader = readers[subjects[i].settings.region]
            try:
                if isinstance(reader, Exception):
                    raise reader
                status, counts, report, cost = timed(i, lambda: _judged(
                    subjects[i], reader.read(i), clients, target, settings))
                result = StackResult(ref, settings.stack_name, status, _exit_code(status),
                                     counts, report=report, cost=cost)
            except Exception as exc:  # noqa: BLE001 - one stack's failure is its own
                result = _failed(ref, settings, exc)
            finish(i, result)

        try:
            list(pool.map(judged, [i for members in groups.values() for i in members]))
        finally:
            for _, reader in readers.values():
                if not isinstance(reader, Exception):
                    reader.close()
    return [done[i] for i in range(n)]


def fleet_verify(stacks, target: str | None = None,
                 max_workers: int = DEFAULT_WORKERS) -> FleetReport:
    return run_fleet("verify", stacks, target, max_workers)


def fleet_preview(stacks, target: str | None = None,
                  max_workers: int = DEFAULT_WORKERS) -> FleetReport:
    return run_fleet("preview", stacks, target, max_workers)


def fleet_inspect(stacks, target: str | None = None,
                  max_workers: int = DEFAULT_WORKERS) -> FleetReport:
    return run_fleet("inspect", stacks, target, max_workers)
