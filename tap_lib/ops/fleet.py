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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from ..config import Settings, load_settings, read_settings_file
from ..errors import ChecksFailed, ConfigError, TapError, UsageError
from ..project import FLEET_FILE, params_dir

OPERATIONS = ("verify", "preview", "inspect")
STACK_KEYS = ("env", "suffix")
DEFAULT_WORKERS = 4
MAX_STACKS = 500
SUMMARY_COLUMNS = ["stack", "env", "suffix", "status", "exit_code", "duration_s", "error"]
COST_COLUMNS = ["monthly_usd", "cost"]      # verify and inspect: what each stack costs now
COSTED = ("verify", "inspect")


@dataclass(frozen=True)
class StackRef:
    """One stack of a fleet: an environment file and, for ad-hoc stacks, a suffix."""

    env: str
    suffix: str | None = None

    @property
    def overrides(self) -> tuple[str, ...]:
        return (f"suffix={self.suffix}",) if self.suffix else ()

    def settings(self) -> Settings:
        return load_settings(self.env, self.overrides)

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "suffix": self.suffix}


# -- which stacks ------------------------------------------------------------------------------
def fleet_file_path(path: str | Path | None = None) -> Path:
    return Path(path) if path else params_dir() / FLEET_FILE


def load_fleet_file(path: str | Path | None = None) -> list[StackRef]:
    """`stacks:` a list of mappings with `env` and optionally `suffix`, read as untrusted input
    like an environment file; ConfigError names the file and the field."""
    path = fleet_file_path(path)
    if not path.is_file():
        raise ConfigError("no such fleet file", file=str(path),
                          hint="list the stacks with --env/--suffix, or write the file")
    data = read_settings_file(path)
    unknown = sorted(set(data) - {"stacks"})
    if unknown:
        raise ConfigError("unknown key", file=str(path), field=str(unknown[0]), allowed="stacks")
    items = data.get("stacks")
    if not isinstance(items, list) or not items:
        raise ConfigError("must be a non-empty list of stacks", file=str(path), field="stacks",
                          allowed="a list of {env: NAME, suffix: TEXT}")
    if len(items) > MAX_STACKS:
        raise ConfigError(f"lists {len(items)} stacks; at most {MAX_STACKS}", file=str(path),
                          field="stacks")
    refs = []
    for i, item in enumerate(items):
        where = f"stacks[{i}]"
        if not isinstance(item, dict):
            raise ConfigError("must be a mapping", file=str(path), field=where,
                              allowed="{env: NAME, suffix: TEXT}")
        extra = sorted(map(str, set(item) - set(STACK_KEYS)))
        if extra:
            raise ConfigError("unknown key", file=str(path), field=f"{where}.{extra[0]}",
                              allowed=", ".join(STACK_KEYS))
        for key in STACK_KEYS:
            value = item.get(key)
            if (key == "env" or value is not None) and (not isinstance(value, str) or not value):
                raise ConfigError("must be non-empty text", file=str(path),
                                  field=f"{where}.{key}")
        refs.append(StackRef(item["env"], item.get("suffix")))
    return refs


def resolve_stacks(envs: Iterable[str] = (), suffixes: Iterable[str] = (),
                   fleet_file: str | Path | None = None) -> list[tuple[StackRef, Settings]]:
    """The fleet's stacks with their validated settings, in the order given, each once.
    Nothing runs until every stack's settings are valid."""
    import os

    envs = [envs] if isinstance(envs, str) else list(envs or ())
    suffixes = [suffixes] if isinstance(suffixes, str) else list(suffixes or ())
    if fleet_file is not None and (envs or suffixes):
        raise UsageError("give the stacks either with --env/--suffix or with --fleet, not both")
    if suffixes and os.environ.get("ENVIRONMENT_SUFFIX"):
        raise UsageError("ENVIRONMENT_SUFFIX is set and --suffix names suffixes too; unset the "
                         "variable for a fleet")
    if envs:
        refs = [StackRef(env, suffix) for env in envs for suffix in (suffixes or [None])]
    elif suffixes:
        raise UsageError("--suffix applies to each --env; give at least one --env")
    else:
        refs = load_fleet_file(fleet_file)
    out: list[tuple[StackRef, Settings]] = []
    seen: dict[str, StackRef] = {}
    for ref in dict.fromkeys(refs):
        settings = ref.settings()
        other = seen.get(settings.stack_name)
        if other is not None:
            raise UsageError(f"{ref.env}/{ref.suffix or '-'} and {other.env}/"
                             f"{other.suffix or '-'} are the same stack {settings.stack_name}")
        seen[settings.stack_name] = ref
        out.append((ref, settings))
    return out


# -- results -----------------------------------------------------------------------------------
@dataclass
class StackResult:
    ref: StackRef
    stack: str
    status: str                # passed | failed | not-deployed | error
    exit_code: int
    counts: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    error: str | None = None
    report: Any = None         # VerifyReport | Plan | Inspection
    cost: dict[str, Any] | None = None   # stack_cost(); None: not priced (not deployed)

    def to_dict(self) -> dict[str, Any]:
        body = self.report.to_dict() if self.report is not None else {}
        out = {**body, "stack": self.stack, **self.ref.to_dict(), "status": self.status,
               "exit_code": self.exit_code, "counts": self.counts,
               "duration_s": round(self.duration_s, 3), "error": self.error}
        if self.cost is not None or "cost" not in out:
            out["cost"] = self.cost or unpriced("not deployed" if self.status == "not-deployed"
                                                else "the stack could not be read")
        return out

    def cost_cells(self) -> dict[str, Any]:
        """The summary's cost columns: the monthly figure only when every item is priced
        (else <NA>), and in words what it rests on or what is unknown."""
        cost = self.cost or unpriced("not deployed" if self.status == "not-deployed"
                                     else "the stack could not be read")
        known, n = cost["known_monthly_usd"], len(cost["unknown"])
        if cost["monthly_usd"] is not None:
            text = f"{cost['monthly_usd']:.2f} {cost['currency']}"
        elif known is None:
            text = f"unknown ({cost['unknown'][0]})"
        else:
            text = f"unknown ({known:.2f} {cost['currency']} + {n} unpriced)"
        return {"monthly_usd": cost["monthly_usd"], "cost": text}


@dataclass
class FleetReport:
    operation: str
    target: str
    results: list[StackResult]
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """The worst stack's: 3 (unreachable, not deployed) > 2 > 1 (problems found) > 0."""
        return max((r.exit_code for r in self.results), default=0)

    def summary(self) -> pd.DataFrame:
        """One row per stack: how it ended and its counts."""
        costed = self.operation in COSTED
        rows = [{"stack": r.stack, "env": r.ref.env, "suffix": r.ref.suffix or "",
                 "status": r.status, "exit_code": r.exit_code, **r.counts,
                 **(r.cost_cells() if costed else {}),
                 "duration_s": round(r.duration_s, 2), "error": r.error or ""}
                for r in self.results]
        counts = list(dict.fromkeys(k for r in self.results for k in r.counts))
        columns = (SUMMARY_COLUMNS[:5] + counts + (COST_COLUMNS if costed else [])
                   + SUMMARY_COLUMNS[5:])
        frame = pd.DataFrame(rows, columns=columns)
        # a stack without counts: <NA>; AWS calls per stack may be a fraction (shared calls)
        whole = {k: all(float(r.counts.get(k, 0)).is_integer() for r in self.results)
                 for k in counts}
        types = {k: "Int64" if whole[k] else "Float64" for k in counts}
        return frame.astype({**types, **({"monthly_usd": "Float64"} if costed else {})})

    def matrix(self) -> pd.DataFrame:
        """Stack x control: 'fail' where any check of that control failed on that stack,
        else 'excepted' where a policy exception covers one, 'pass' where all passed, empty
        where the stack has no such check (or no report).
        Controls are the check ids (the Security Hub id is in each check's row)."""
        cells: dict[str, dict[str, str]] = {}
        for r in self.results:
            checks = getattr(r.report, "checks", None)
            if checks is None or checks.empty:
                cells[r.stack] = {}
                continue
            cells[r.stack] = checks.groupby("id")["status"].apply(
                lambda s: "fail" if (s == "fail").any() else
                "excepted" if (s == "excepted").any() else "pass").to_dict()
        controls = sorted({c for row in cells.values() for c in row})
        return pd.DataFrame.from_dict(cells, orient="index", columns=controls).reindex(
            [r.stack for r in self.results]).fillna("")

    def drifted(self) -> list[str]:
        """Stacks whose verify failed a check or whose inspect found drift."""
        return [r.stack for r in self.results
                if r.counts.get("failed") or r.counts.get("drifted")]

    def to_list(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.results]


# -- cost ------------------------------------------------------------------------------------
def unpriced(why: str) -> dict[str, Any]:
    return {"monthly_usd": None, "known_monthly_usd": None, "complete": False,
            "unknown": [why], "currency": None, "as_of": None}


def stack_cost(engine: Any, settings: Settings) -> dict[str, Any]:
    """What the stack's deployed resources (as its engine's state records them) cost a month,
    priced by the catalog (tap_lib.cost): `monthly_usd` only when every item has a price,
    `known_monthly_usd` the sum of those that do, `unknown` names the rest. Never 0 for
    unknown; a failure to price is a note here, not the stack's failure."""
    from ..cost import estimate_state

    try:
        est = estimate_state(engine.resources(), settings)
    except Exception as exc:  # noqa: BLE001 - the price is a column, not a check
        return unpriced(f"not priced: {type(exc).__name__}: {exc}")
    known = round(float(est.monthly_usd), 2)
    return {"monthly_usd": known if est.complete else None, "known_monthly_usd": known,
            "complete": est.complete, "unknown": est.unknown, "currency": est.currency,
            "as_of": est.as_of}


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
    from ..errors import OperationFailed
    from .inspect import inspect_stack

    result = inspect_stack(ref.env, target, ref.overrides)
    if not result.outputs:
        raise OperationFailed(f"stack {result.stack} is not deployed on {result.target}")
    counts = {"resources": len(result.inventory), "drifted": len(result.drift)}
    return "passed", counts, result, stack_cost(open_engine(settings, target, ref.overrides),
                                                settings)


# Each returns (status, counts, report, cost).
RUNNERS: dict[str, Callable[..., tuple[str, dict[str, int], Any, dict | None]]] = {
    "verify": _verify_one, "preview": _preview_one, "inspect": _inspect_one}


def _exit_code(status: str) -> int:
    return 1 if status == "failed" else 0


def as_stacks(stacks: Iterable[Any]) -> list[tuple[StackRef, Settings]]:
    """Stacks as resolve_stacks gives them, from StackRefs, (env, suffix) pairs or env names."""
    out = []
    for item in stacks:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Settings):
            out.append(item)
            continue
        ref = item if isinstance(item, StackRef) else (
            StackRef(item) if isinstance(item, str) else StackRef(*item))
        out.append((ref, ref.settings()))
    return out


def _failed(ref: StackRef, settings: Settings, exc: BaseException) -> StackResult:
    """How a stack that raised ends: as its own command would (not deployed: 3)."""
    if isinstance(exc, TapError):
        not_deployed = "is not deployed" in exc.message
        status = "not-deployed" if not_deployed else (
            "failed" if isinstance(exc, ChecksFailed) else "error")
        return StackResult(ref, settings.stack_name, status, exc.exit_code, error=exc.message)
    return StackResult(ref, settings.stack_name, "error", 3,
                       error=f"{type(exc).__name__}: {exc}")


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
