"""Figures for the two Lambda functions, run in process against real servers.

A PostgreSQL from Debian's binaries stands in for Aurora and a moto server for Secrets Manager
and S3, as in tests/test_lambdas.py (whose helpers this uses). Prints payments per second through
the payment handler (warm container, and cold: a new secret read and login per payment), and the
duration of one full rotation (the four steps), first (bootstrap) and later ones.
Figures, not a timed test: they depend on the machine and include moto's HTTP round trips.

    python benchmarks/bench_lambdas.py [--payments 500] [--cold 50] [--rotations 10]
"""
from __future__ import annotations

import argparse
import logging
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from fixtures_lambdas import (MASTER_PASSWORD, MASTER_USER, STEPS, aws_environment,  # noqa: E402
                              begin_rotation, create_stack, moto_server, run_steps,
                              set_environment)
from tap_lib import localdb  # noqa: E402
from tap_lib.lambdas.payment import handler as payment  # noqa: E402


def _timed(action: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    action(*args)
    return time.perf_counter() - started


def _pay(payment_id: str) -> None:
    response = payment.lambda_handler({"payment_id": payment_id, "amount": "19.99",
                                       "currency": "EUR", "merchant_id": "bench"}, None)
    if response["statusCode"] != 200:
        raise RuntimeError(f"payment {payment_id} failed: {response}")


def _latency_line(label: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return (f"{label:<34} {len(ms) / sum(seconds):8.1f} /s   p50 {statistics.median(ms):6.2f} ms"
            f"   p95 {p95:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=500)
    parser.add_argument("--cold", type=int, default=50)
    parser.add_argument("--rotations", type=int, default=10)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines

    with tempfile.TemporaryDirectory(prefix="tap-bench-") as tmp, \
            localdb.running(Path(tmp) / "pg", MASTER_USER, MASTER_PASSWORD) as server, \
            moto_server() as endpoint:
        set_environment(aws_environment(endpoint))
        assert server.port is not None
        stack = create_stack(server.host, server.port)
        set_environment(stack.payment_environment())
        conn = stack.master_connection()
        version = conn.run("SHOW server_version")[0][0]
        conn.close()
        print(f"PostgreSQL {version} on 127.0.0.1, moto server, Python "
              f"{platform.python_version()}, {platform.machine()}")

        first = begin_rotation(stack.app_arn)
        bootstrap = _timed(run_steps, stack.app_arn, first)
        _pay("warm-up")  # first login creates the table

        warm = [_timed(_pay, f"warm-{i}") for i in range(args.payments)]
        retries = [_timed(_pay, f"warm-{i}") for i in range(args.payments // 5)]
        cold = []
        for i in range(args.cold):
            payment.reset_cache()
            cold.append(_timed(_pay, f"cold-{i}"))

        rotations: list[float] = []
        per_step = {step: 0.0 for step in STEPS}
        for _ in range(args.rotations):
            token = begin_rotation(stack.app_arn)
            steps = {step: _timed(run_steps, stack.app_arn, token, (step,)) for step in STEPS}
            rotations.append(sum(steps.values()))
            for step, seconds in steps.items():
                per_step[step] += seconds
        payment.close_connection()
        _pay("after-rotations")  # stale cached password: refreshed from the secret
        payment.reset_cache()

    print(_latency_line(f"payments, warm ({args.payments})", warm))
    print(_latency_line(f"retried payments ({len(retries)})", retries))
    print(_latency_line(f"payments, cold start ({args.cold})", cold))
    print(f"{'rotation, bootstrap (creates role)':<34} {bootstrap * 1000:8.1f} ms")
    print(f"{f'rotation, full 4 steps ({args.rotations})':<34} "
          f"{statistics.mean(rotations) * 1000:8.1f} ms mean   "
          f"min {min(rotations) * 1000:.1f}   max {max(rotations) * 1000:.1f}")
    print("  per step (mean): " + ", ".join(
        f"{step} {total / args.rotations * 1000:.1f} ms" for step, total in per_step.items()))


if __name__ == "__main__":
    main()
