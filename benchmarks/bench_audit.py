"""Audit figures: what the trail adds to each mutation, and `tap audit verify` over 10,000 records.

- overhead per operation: one trail entry as Engine.up/destroy/refresh append it (git status,
  lock, tail read, hash, fsync), and one record chained as `tap run` stores it (lock, head,
  write, entry, index line);
- verify: 10,000 records of a realistic size (an executed verify notebook is ~30 KB) chained
  with 10,000 mutation entries, every record re-hashed and every entry checked.
Goal: verify under 2 s. Prints figures; not a test.

    python benchmarks/bench_audit.py [records]
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(n: int = 10_000) -> None:
    home = Path(tempfile.mkdtemp(prefix="tap-bench-audit-"))
    os.environ.update(TAP_HOME=str(home), TAP_OUTPUTS=str(home / "outputs"),
                      TAP_OPERATOR="bench")

    import nbformat

    from tap_lib import trail
    from tap_lib.ops import audit, runbook

    root = audit.records_root()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("report.checks", outputs=[nbformat.v4.new_output(
        "execute_result", data={"text/plain": "x" * 14_000, "text/html": "<td>y</td>" * 1_500},
        execution_count=1)])]

    def store(i: int) -> None:
        start = f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00+00:00"
        nb.metadata["tap"] = {"notebook": "verify", "env": "dev", "stack": "TapStackdev",
                              "target": "sandbox", "operator": "bench", "status": "succeeded",
                              "start": start, "end": start, "summary": {"passed": i}}
        runbook.store_record(nb, root, runbook.reserve_record(root, "dev", "verify", start))

    # -- overhead per operation (timed on the first 200, the rest only to fill the chain)
    entry_ms, record_ms = [], []
    t_all = time.monotonic()
    for i in range(n):
        t0 = time.perf_counter()
        trail.append("deploy", stack="TapStackdev", target="sandbox",
                     env_file="params/dev.yaml", summary={"same": 50})
        t1 = time.perf_counter()
        store(i)
        t2 = time.perf_counter()
        if i < 200:
            entry_ms.append((t1 - t0) * 1000)
            record_ms.append((t2 - t1) * 1000)
        elif i == 200:  # timed enough: fill the rest faster (one git call, no fsync)
            state = trail.git_state()
            trail.git_state = lambda: state
            trail.os.fsync = lambda fd: None
    size = sum(p.stat().st_size for p in (home / "outputs" / "dev").glob("*.ipynb"))
    print(f"chain built: {n} records ({size / n / 1024:.0f} KB each) + {n} mutation entries "
          f"in {time.monotonic() - t_all:.0f}s")
    print(f"audit overhead per mutation (trail entry):     median "
          f"{statistics.median(entry_ms):.1f} ms, p95 {_p95(entry_ms):.1f} ms")
    print(f"audit overhead per record (chain + index row): median "
          f"{statistics.median(record_ms):.1f} ms, p95 {_p95(record_ms):.1f} ms")

    # -- verify, in-process and as the operator runs it (a fresh `tap` process, cold imports)
    times = []
    for _ in range(3):
        report = audit.verify()
        assert report.ok, report.problems[:5]
        times.append(report.duration_s)
    print(f"audit.verify over {report.records} records, {report.entries} entries: "
          f"best {min(times):.2f}s, median {statistics.median(times):.2f}s")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tap_lib.cli", "audit", "verify"],
                          capture_output=True, text=True)
    print(f"`tap audit verify` (new process, incl. imports): {time.monotonic() - t0:.2f}s, "
          f"exit {proc.returncode}")
    print(f"goal: verify < 2 s -> {'met' if min(times) < 2 else 'NOT met'}")
    print(f"(data under {home}; delete it when done)")


def _p95(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.95) - 1]


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
