"""Command-line figures (issue #23): each command an operator waits for, as a whole `tap` process.

Every figure is the median wall time of N runs of a fresh process, printed beside its ratio to
the floor measured in the same run: a bare Python of the same interpreter importing the
pulumi-aws modules the stack's program uses and touching each class it uses (read from
tap_lib/program/, so the floor follows the program). On a shared machine the seconds move with
the load; the ratios much less, so compare ratios between runs, not seconds. The CPU time
(user + sys of the process itself, from the same rusage) moves least with the load: on a
machine other work keeps busy, its ratio to the floor's is the steadier figure. Peak RSS is the
process's own maximum resident set (os.wait4's rusage of that one child; the sandbox emulator
and the PostgreSQL servers are detached, not counted).

- `tap preview --env dev` (stack empty);
- `tap deploy --env dev --yes` from empty (destroyed, untimed, between runs);
- `tap deploy --env dev --yes` with nothing to do;
- one in-place change end to end: `tap deploy --env dev --yes --set lambda.memory_mb=V`, V
  alternating, so every run changes the function and nothing else;
- `tap audit verify` over 10,000 records (made as bench_audit.py makes them, in their own root);
- then a `python -X importtime` top-10 (cumulative) of `tap preview`.

Everything runs in a throwaway TAP_HOME and TAP_OUTPUTS with its own sandbox port; the sandbox
is started once and stopped at the end, also when a run fails or the script is interrupted.
Goals (issue #23): preview <= 2x the floor, deploy from empty <= 3x, no-op deploy <= 2x, an
in-place change <= 2.5x, audit verify over 10,000 records <= 1.5 s. Prints figures; not a test.

    python benchmarks/bench_cli.py [runs] [--env dev] [--records 10000] [--keep]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TIMEOUT_S = 600.0
MEMORY_VALUES = (512, 384)  # the file says 256: each run changes the value the last one set


def tap_command() -> list[str]:
    """The `tap` console script beside this interpreter (what an operator runs), else -m."""
    script = Path(PYTHON).parent / "tap"
    return [str(script)] if script.is_file() else [PYTHON, "-m", "tap_lib.cli"]


def program_resources() -> list[str]:
    """The pulumi_aws classes the stack's program uses (`aws.ec2.Vpc`), read from its source.
    The floor touches each: `import pulumi_aws.ec2` alone gives a lazy module that loads
    nothing until an attribute is read."""
    found = set()
    for path in (REPO / "tap_lib" / "program").glob("*.py"):
        found.update(re.findall(r"\baws\.[a-z][a-z0-9_]*\.[A-Z][A-Za-z0-9_]*", path.read_text()))
    return sorted(found)


class Failed(RuntimeError):
    pass


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float, str, float]:
    """(seconds, peak RSS MiB, stdout, CPU seconds: user + sys) of one process; raises Failed
    on a non-zero exit."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=env, cwd=REPO)
        timer = threading.Timer(TIMEOUT_S, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        if proc.returncode != 0:
            tail = "\n".join((stdout + err.read().decode(errors="replace")).splitlines()[-20:])
            raise Failed(f"{' '.join(argv)} exited {proc.returncode}:\n{tail}")
        return seconds, usage.ru_maxrss / 1024, stdout, usage.ru_utime + usage.ru_stime


def summary(stdout: str) -> dict[str, int]:
    """The plan's summary line (`TapStackdev (sandbox) update: 1 update, 40 same`) as counts."""
    match = re.search(r"^\S+ \(\w+\) \w+: (.*)$", stdout, re.MULTILINE)
    if not match:
        raise Failed(f"no plan summary in:\n{stdout[-2000:]}")
    return {op: int(n) for n, op in re.findall(r"(\d+) (\w+)", match.group(1))}


def make_records(n: int) -> None:
    """bench_audit.py's chain: n realistic verify records (~30 KB) and n mutation entries, in
    the TAP_OUTPUTS of this process (run in a child, so this script imports nothing of tap)."""
    import nbformat

    from tap_lib import trail
    from tap_lib.ops import audit, runbook

    root = audit.records_root()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("report.checks", outputs=[nbformat.v4.new_output(
        "execute_result", data={"text/plain": "x" * 14_000, "text/html": "<td>y</td>" * 1_500},
        execution_count=1)])]
    state = trail.git_state()
    trail.git_state = lambda: state  # one git call, no fsync: only the chain's content matters
    trail.os.fsync = lambda fd: None
    for i in range(n):
        trail.append("deploy", stack="TapStackdev", target="sandbox",
                     env_file="params/dev.yaml", summary={"same": 50})
        start = f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00+00:00"
        nb.metadata["tap"] = {"notebook": "verify", "env": "dev", "stack": "TapStackdev",
                              "target": "sandbox", "operator": "bench", "status": "succeeded",
                              "start": start, "end": start, "summary": {"passed": i}}
        runbook.store_record(nb, root, runbook.reserve_record(root, "dev", "verify", start))


def importtime(argv: list[str], env: dict[str, str], top: int = 10):
    """(wall s, total import s, the `top` slowest imports by cumulative time, the `top`
    top-level packages by their modules' summed self time) of one run."""
    env = {**env, "PYTHONPROFILEIMPORTTIME": "1"}
    start = time.perf_counter()
    proc = subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=TIMEOUT_S)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise Failed(f"{' '.join(argv)} (importtime) exited {proc.returncode}:\n"
                     + proc.stderr[-2000:])
    rows = []
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)$", line)
        if match:
            rows.append((int(match.group(2)) / 1e6, int(match.group(1)) / 1e6,
                         len(match.group(3)) // 2, match.group(4)))
    total = sum(cum for cum, _, depth, _ in rows if depth == 0)
    by_package: dict[str, float] = {}
    for _, own, _, module in rows:  # self times add up without counting a nested one twice
        by_package[module.split(".")[0]] = by_package.get(module.split(".")[0], 0.0) + own
    packages = sorted(by_package.items(), key=lambda kv: -kv[1])[:top]
    return wall, total, sorted(rows, reverse=True)[:top], packages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="?", type=int, default=5, help="runs per figure (5)")
    parser.add_argument("--env", default="dev")
    parser.add_argument("--records", type=int, default=10_000,
                        help="records for `tap audit verify` (10000)")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway TAP_HOME")
    parser.add_argument("--make-records", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_records is not None:
        return make_records(args.make_records)

    sys.path.insert(0, str(REPO))
    from tap_lib.localdb import free_port

    home = Path(tempfile.mkdtemp(prefix="tap-bench-cli-"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("TAP_TARGET", "ENVIRONMENT_SUFFIX", "TAP_SIGNING_KEY", "TAP_PROJECT_DIR",
                        "PYTHONPROFILEIMPORTTIME")}
    env.update(TAP_HOME=str(home), TAP_OUTPUTS=str(home / "outputs"), TAP_OPERATOR="bench",
               TAP_SANDBOX_PORT=str(free_port()))
    # SIGTERM/SIGHUP unwind through the finally below, so the sandbox is stopped.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))

    tap, e = tap_command(), args.env
    resources = program_resources()
    modules = sorted({name.split(".")[1] for name in resources})
    floor_argv = [PYTHON, "-c", "import pulumi_aws as aws; " + ", ".join(resources)]
    rows: list[tuple[str, list[float], list[float], str, list[float]]] = []

    def measure(name: str, argv, goal: str = "", before=None, check=None):
        times, peaks, cpus = [], [], []
        for i in range(args.runs):
            if before and i:
                before()
            seconds, peak, stdout, cpu = run(argv(i) if callable(argv) else argv, env)
            if check:
                check(summary(stdout), i)
            times.append(seconds)
            peaks.append(peak)
            cpus.append(cpu)
        rows.append((name, times, peaks, goal, cpus))
        print(f"  {name}: " + ", ".join(f"{t:.2f}" for t in times) + " s", flush=True)

    def expect(*, only: set[str], needs: str | None = None):
        def check(counts: dict[str, int], i: int) -> None:
            ops = {op for op, n in counts.items() if n and op != "same"}
            if not ops <= only or (needs and not counts.get(needs)):
                raise Failed(f"unexpected plan {counts} (expected only {sorted(only)})")
        return check

    destroy = [*tap, "destroy", "--env", e, "--yes"]
    started = False
    print(f"bench_cli: {args.runs} run(s) each, TAP_HOME {home}, sandbox port "
          f"{env['TAP_SANDBOX_PORT']}\nfloor: {PYTHON} -c 'import pulumi_aws as aws; "
          f"aws.ec2.Vpc, ...': the {len(resources)} classes the program uses, of pulumi_aws."
          f"{{{','.join(modules)}}}", flush=True)
    try:
        run([*tap, "sandbox", "start"], env)
        started = True
        measure("floor: python importing the program's pulumi_aws classes", floor_argv)
        measure(f"tap preview --env {e}", [*tap, "preview", "--env", e], "<= 2x",
                check=expect(only={"create"}, needs="create"))
        measure(f"tap deploy --env {e} --yes (from empty)", [*tap, "deploy", "--env", e, "--yes"],
                "<= 3x", before=lambda: run(destroy, env),
                check=expect(only={"create"}, needs="create"))
        measure(f"tap deploy --env {e} --yes (nothing to do)",
                [*tap, "deploy", "--env", e, "--yes"], "<= 2x", check=expect(only=set()))
        measure(f"tap deploy --env {e} --yes --set lambda.memory_mb=V (in place)",
                lambda i: [*tap, "deploy", "--env", e, "--yes", "--set",
                           f"lambda.memory_mb={MEMORY_VALUES[i % 2]}"], "<= 2.5x",
                check=expect(only={"update"}, needs="update"))
        run(destroy, env)
        wall, total, top, packages = importtime([*tap, "preview", "--env", e], env)

        audit_env = {**env, "TAP_OUTPUTS": str(home / "audit-outputs")}
        t0 = time.monotonic()
        run([PYTHON, __file__, "--make-records", str(args.records)], audit_env)
        print(f"  ({args.records} records and entries made in {time.monotonic() - t0:.0f} s)",
              flush=True)
        env = audit_env
        measure(f"tap audit verify ({args.records:,} records)", [*tap, "audit", "verify"],
                "<= 1.5 s")
    finally:
        if started:  # forgets every stack of this home and stops their databases too
            try:
                run([*tap, "sandbox", "stop"], {**env, "TAP_OUTPUTS": str(home / "outputs")})
            except Exception as exc:  # noqa: BLE001 - report, go on stopping
                print(f"cleanup: {exc}", file=sys.stderr)
        _stop_leftovers(home)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)

    floor = statistics.median(rows[0][1])
    floor_cpu = statistics.median(rows[0][4])
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, check=False,
                            capture_output=True, text=True).stdout.strip() or "?"
    print(f"\n{date.today().isoformat()}, commit {commit}, {os.cpu_count()} cores, shared "
          f"(load average {os.getloadavg()[0]:.2f}); median of {args.runs}; ratios to the "
          "floor of this run")
    print("| command | median | × floor | CPU (user+sys) | CPU × floor | peak RSS | goal |")
    print("|---|---|---|---|---|---|---|")
    for name, times, peaks, goal, cpus in rows:
        median, cpu = statistics.median(times), statistics.median(cpus)
        print(f"| `{name}` | {median:.2f} s | {median / floor:.1f}× | {cpu:.2f} s | "
              f"{cpu / floor_cpu:.1f}× | {max(peaks):.0f} MiB | {goal or '-'} |")
    print(f"\n`python -X importtime` (PYTHONPROFILEIMPORTTIME=1) of `tap preview --env {e}`: "
          f"{wall:.2f} s wall, {total:.2f} s in imports; top 10 by cumulative time (self "
          "beside it; nested imports indented):")
    print(f"{'cumulative':>10} {'self':>7}  module")
    for cum, own, depth, module in top:
        print(f"{cum:9.2f}s {own:6.2f}s  {'  ' * depth}{module}")
    print("import self time by top-level package (pulumi_aws's modules load lazily, on first "
          "use, each file its own top-level entry above): "
          + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in packages))


def _stop_leftovers(home: Path) -> None:
    """Last resort: any process still running for this throwaway home (an emulator or a
    PostgreSQL server the commands above started) is terminated by its pid."""
    import psutil

    mine = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        info = proc.info
        if str(home) in " ".join(info["cmdline"] or []) or str(info["cwd"] or "").startswith(
                str(home)):
            mine.append(proc)
    for proc in mine:
        print(f"cleanup: stopping leftover pid {proc.pid}", file=sys.stderr)
        try:
            proc.terminate()
        except psutil.Error:
            pass
    psutil.wait_procs(mine, timeout=5)


if __name__ == "__main__":
    main()
