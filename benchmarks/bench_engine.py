"""Sandbox engine figures: preview (cold process and warm), deploy from empty, no-op redeploy,
destroy, peak memory; with --matrix, each change-matrix case of tests/test_change_matrix.py
(preview + deploy of the change, then of the revert) and the whole matrix. Prints figures; not a
test. Targets on a 2-core machine: warm preview <= 2 s, deploy from empty <= 10 s, no-op
redeploy <= 3 s, a single in-place change deploys in < 3 s.

    python benchmarks/bench_engine.py [--env dev] [--matrix] [--verify]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="dev")
    parser.add_argument("--matrix", action="store_true",
                        help="also time every change-matrix case (about 2-4 minutes)")
    parser.add_argument("--verify", action="store_true",
                        help="with --matrix: run verify after each change, as the test does")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="tap-bench-")
    os.environ["TAP_HOME"] = home
    os.environ.setdefault("TAP_SANDBOX_PORT", "5899")

    from tap_lib.config import load_settings
    from tap_lib.engines.sandbox import server
    from tap_lib.engines.sandbox.engine import SandboxEngine

    server.start()
    try:
        start = time.perf_counter()
        cold = subprocess.run([sys.executable, "-m", "tap_lib.cli", "preview", "--env", args.env],
                              capture_output=True, text=True, env=os.environ.copy())
        figures = {"preview, cold process (CLI)": time.perf_counter() - start}
        assert cold.returncode == 0, cold.stderr

        settings = load_settings(args.env)
        SandboxEngine(settings).preview()  # import and first-synthesis costs
        figures["preview, warm"] = _timed(lambda: SandboxEngine(settings).preview())
        figures["deploy from empty"] = _timed(lambda: SandboxEngine(settings).up())
        figures["no-op redeploy"] = _timed(lambda: SandboxEngine(settings).up())
        figures["destroy"] = _timed(lambda: SandboxEngine(settings).destroy())
        if args.matrix:
            matrix = _matrix(args.verify)
    finally:
        server.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for name, seconds in figures.items():
        print(f"{name:<30} {seconds:6.2f} s")
    print(f"{'peak memory (this process)':<30} {peak:6.0f} MiB")
    if args.matrix:
        _print_matrix(*matrix)


def _matrix(verify: bool):
    """Every case of the change matrix on one deployed dev stack, as the test runs them."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import test_change_matrix as tm

    tm.engine().up()
    rows, start = [], time.perf_counter()
    for case in tm.cases():
        try:
            tm.run_case(case, verify_change=verify)
            rows.append((case, "ok"))
        except Exception as exc:  # noqa: BLE001 - a benchmark reports and goes on
            rows.append((case, f"FAILED {type(exc).__name__}: {str(exc)[:60]}"))
    whole = time.perf_counter() - start
    tm.engine("db.deletion_protection=false").destroy()
    return rows, whole, tm


def _print_matrix(rows, whole: float, tm) -> None:
    cols = ("change preview", "change deploy", "verify", "revert preview", "revert deploy",
            "total")
    print()
    print(f"{'case':<36} {'kind':<9}" + " ".join(f"{c:>14}" for c in cols) + "  result")
    for case, result in rows:
        t = case.timings
        cells = [f"{t[c]:13.2f}s" if c in t else f"{'-':>14}" for c in cols]
        note = "" if case.deploys else " (no resource: preview only)"
        print(f"{case.key:<36} {_kind(case):<9}" + " ".join(cells) + f"  {result}{note}")
    deployed = [c for c, r in rows if c.deploys and r == "ok"]
    print(f"\n{len(rows)} cases ({len(deployed)} deployed and reverted OK) in {whole:.1f} s")
    # The goal is for an in-place change (every step an update); a case that creates, deletes
    # or replaces (a NAT layout, a new cluster) is shown, not held to it.
    in_place = [c for c in deployed if _kind(c) == "in-place"]
    slowest = max(in_place, key=lambda c: c.timings["change deploy"], default=None)
    if slowest:
        over = [c.key for c in in_place if c.timings["change deploy"] >= 3.0]
        print(f"{len(in_place)} in-place cases; slowest change deploy: {slowest.key} "
              f"{slowest.timings['change deploy']:.2f} s; goal < 3 s per in-place change: "
              + ("met by every one" if not over else f"missed by {', '.join(over)}"))


def _kind(case) -> str:
    """in-place (only updates), replace (some step replaced), or create/delete."""
    if not case.deploys:
        return "none"
    if not case.ops:
        return "-"
    if "replace" in case.ops:
        return "replace"
    return "in-place" if case.ops == {"update"} else "/".join(sorted(case.ops - {"update"}))


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
