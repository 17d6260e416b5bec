"""What signatures cost a protected change: signing a plan or an approval (ssh-keygen -Y sign),
verifying one (ssh-keygen -Y verify), and the engine's whole check of a signed, approved plan
(hash, git state, params/approvers as committed, author and approver signatures), which runs
once in `deploy --plan` and again below it in Engine.up. Prints figures; not a test.

    python benchmarks/bench_signing.py [runs]
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main(runs: int = 30) -> None:
    from fixtures_signing import make_signed_project

    from tap_lib import signing
    from tap_lib.authority import plan_message

    keys = make_signed_project(Path(tempfile.mkdtemp(prefix="tap-bench-sign-")))
    os.environ["TAP_PROJECT_DIR"] = str(keys.project)
    message = plan_message("sha256:" + "ab" * 32)
    armored = signing.sign(message, keys.keys["alice"])
    approvers = signing.approvers_now()
    auth = keys.authorization("TapStackprod")
    rows = [
        ("sign (plan or approval)", timed(lambda: signing.sign(message, keys.keys["alice"]),
                                          runs)),
        ("verify one signature", timed(lambda: signing.verify(message, armored, approvers,
                                                              what="bench"), runs)),
        ("check a signed, approved plan", timed(lambda: auth.check("TapStackprod", "deploy"),
                                                runs)),
    ]
    print(f"{'step':<32} {'median ms':>10} {'min':>8} {'max':>8}   ({runs} runs)")
    for name, figures in rows:
        print(f"{name:<32} {statistics.median(figures):>10.1f} {min(figures):>8.1f} "
              f"{max(figures):>8.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
