"""Sandbox engine figures: preview (cold process and warm), deploy from empty, no-op redeploy,
destroy, peak memory. Prints figures; not a test. Targets on a 2-core machine: warm preview
<= 2 s, deploy from empty <= 10 s, no-op redeploy <= 3 s.

    python benchmarks/bench_engine.py [--env dev]
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
    finally:
        server.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for name, seconds in figures.items():
        print(f"{name:<30} {seconds:6.2f} s")
    print(f"{'peak memory (this process)':<30} {peak:6.0f} MiB")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
