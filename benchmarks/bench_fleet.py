"""Fleet verify against one `tap verify` per stack, on the sandbox: 1, 3 and 10 stacks.

Deploys dev/bf1..bf10 on a throwaway sandbox (own TAP_HOME and port), then times, as
subprocesses of the real CLI, `tap fleet verify` over N stacks against N runs of `tap verify`,
with the AWS calls per stack (own plus a share of the describes made once for all stacks of a
region) and the fleet process's peak memory (ru_maxrss). Goal: 10 stacks in
one fleet verify in under 2x one stack's `tap verify`. Prints a table; not a test.

    .venv/bin/python benchmarks/bench_fleet.py [--sizes 1,3,10] [--workers 4]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAP = [sys.executable, "-m", "tap_lib.cli"]


PEAK = ("import resource, runpy, sys; sys.argv = ['tap', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('tap_lib.cli', run_name='__main__')\nfinally:\n"
        "    print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
        "file=sys.stderr)")


def run(argv: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess, int]:
    """Wall time, the process, and that process's own peak RSS in MiB (not its children's:
    RUSAGE_CHILDREN counts a child's pages copied at fork, before exec, so it would only
    repeat the parent's figure)."""
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", PEAK, *argv[len(TAP):]], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    elapsed = time.monotonic() - t0
    kib = [int(line.split()[1]) for line in out.stderr.splitlines()
           if line.startswith("PEAK_KIB")]
    return elapsed, out, (kib[-1] // 1024 if kib else 0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,3,10")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    from tap_lib.localdb import free_port

    home = Path(tempfile.mkdtemp(prefix="tap-bench-fleet-"))
    env = {**os.environ, "TAP_HOME": str(home), "TAP_OUTPUTS": str(home / "outputs"),
           "TAP_SANDBOX_PORT": str(free_port()), "TAP_TARGET": "sandbox"}
    env.pop("ENVIRONMENT_SUFFIX", None)
    suffixes = [f"bf{i}" for i in range(1, max(sizes) + 1)]
    try:
        t0 = time.monotonic()
        for s in suffixes:
            _, out, _ = run(TAP + ["deploy", "--env", "dev", "--set", f"suffix={s}", "--yes",
                                   "--json"], env)
            if out.returncode:
                print(out.stderr, file=sys.stderr)
                return 1
        print(f"deployed {len(suffixes)} stacks in {time.monotonic() - t0:.0f}s")
        rows = []
        for n in sizes:
            single_total, single_calls, single_peak = 0.0, [], 0
            for s in suffixes[:n]:
                elapsed, out, peak = run(TAP + ["verify", "--env", "dev", "--set",
                                                f"suffix={s}", "--json"], env)
                single_total += elapsed
                single_calls.append(json.loads(out.stdout)["summary"]["aws_calls"])
                single_peak = max(single_peak, peak)
            argv = TAP + ["fleet", "verify", "--env", "dev", "--max-workers",
                          str(args.workers), "--json"]
            for s in suffixes[:n]:
                argv += ["--suffix", s]
            elapsed, out, peak = run(argv, env)
            results = json.loads(out.stdout)
            fleet_calls = [r["counts"].get("aws_calls") for r in results]
            rows.append((n, single_total, single_total / n, elapsed, max(single_calls),
                         max(c or 0 for c in fleet_calls), peak,
                         all(r["exit_code"] == 0 for r in results), single_peak))
        one = rows[0][2]
        print(f"\n{'stacks':>6} {'tap verify xN':>14} {'per stack':>10} {'fleet verify':>13} "
              f"{'fleet/one':>10} {'calls/stack single':>19} {'calls/stack fleet':>18} "
              f"{'peak MiB':>9} ok")
        for n, total, per, fleet_s, sc, fc, peak, ok, _ in rows:
            print(f"{n:>6} {total:>13.1f}s {per:>9.1f}s {fleet_s:>12.1f}s {fleet_s / one:>9.2f}x "
                  f"{sc:>19} {fc:>18} {peak:>9} {'yes' if ok else 'NO'}")
        print("\npeak MiB: the fleet verify process's own peak resident set (ru_maxrss); "
              "the fleet's one local Lambda runtime worker is a separate process, not included; "
              f"one tap verify peaked at {rows[0][8]} MiB. calls/stack fleet: the stack's own "
              "calls plus its share of those made once for all stacks of its region")
    finally:
        subprocess.run(TAP + ["sandbox", "stop"], cwd=ROOT, env=env, capture_output=True)
        import shutil

        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
