"""Runbook figures: full `tap run all` wall time and per-notebook overhead against the floor
(papermill running an empty notebook with the same kernel). The sandbox work of each notebook
is the same operation run by the CLI in a fresh process. Prints figures; not a test.
Target: runbook <= 1.5 x (floor x notebooks) + the sandbox work itself.

    python benchmarks/bench_runbook.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="tap-bench-runbook-"))
    os.environ.update(TAP_HOME=str(home), TAP_OUTPUTS=str(home / "outputs"))
    os.environ.setdefault("TAP_SANDBOX_PORT", "5898")

    import nbformat
    import papermill

    from tap_lib.engines.sandbox import server
    from tap_lib.ops import runbook, stack

    empty = home / "empty.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("pass")]
    nbformat.write(nb, empty)
    kernel_manager = runbook._this_interpreter_kernel_manager()
    floors = []
    for _ in range(3):
        start = time.perf_counter()
        papermill.execute_notebook(str(empty), str(home / "empty-out.ipynb"), kernel_name="python3",
                                   kernel_manager_class=kernel_manager, progress_bar=False)
        floors.append(time.perf_counter() - start)
    floor = min(floors)

    server.start()
    try:
        # The sandbox work itself: the same operation from a fresh process (the CLI), so it
        # pays the same imports and first synthesis a fresh kernel pays.
        work = {}
        for name in ("preflight", "preview", "deploy", "verify", "inspect"):
            extra = ["--yes"] if name == "deploy" else []
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "tap_lib.cli", name, "--env", "dev", "--json",
                            *extra], check=True, capture_output=True)
            work[name] = time.perf_counter() - start
        stack.destroy("dev", yes=True)

        start = time.perf_counter()
        records = runbook.run_notebooks("all", env="dev")
        wall = time.perf_counter() - start
        stack.destroy("dev", yes=True)
    finally:
        server.stop()

    n = len(records)
    budget = 1.5 * floor * n + sum(work.values())
    print(f"{'floor (empty notebook)':<34} {floor:6.2f} s")
    for record in records:
        overhead = record.duration_s - work[record.notebook]
        if record.error:
            print(f"{record.notebook}: {record.error}")
        print(f"{record.notebook:<12} {record.status:<10} {record.duration_s:6.2f} s  "
              f"(work {work[record.notebook]:5.2f} s, overhead {overhead:5.2f} s)")
    print(f"{'runbook wall time':<34} {wall:6.2f} s")
    print(f"{'budget 1.5 x floor x n + work':<34} {budget:6.2f} s  "
          f"({'within' if wall <= budget else 'OVER'})")


if __name__ == "__main__":
    main()
