"""Figures for the two Lambda functions, run in process against real servers.

A PostgreSQL set up as the sandbox's stand-in (TLS only, verified with its CA; a master that is
not a superuser) stands in for Aurora and a moto server for Secrets Manager and S3, as in
tests/test_lambdas.py (whose helpers this uses). Prints payments per second through the payment
handler with p50/p99 per payment: warm (the container keeps its connection, clients and secret:
one database round trip and one S3 PUT per payment), the same without the S3 PUT (the
database's share), and cold (a new secret read and TLS login per payment); then the duration
of one full rotation (the four steps), first (bootstrap) and later ones. Figures, not a timed
test: they depend on the machine and include moto's HTTP round trips.

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

from fixtures_lambdas import (STEPS, aws_environment, begin_rotation,  # noqa: E402
                              create_stack, moto_process, moto_server, run_steps,
                              set_environment,
                              standin_server)
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


def _record_only(payment_id: str) -> None:
    """The handler's database work alone (validation and the one-statement insert)."""
    found, errors = payment.validate_payment({"payment_id": payment_id, "amount": "19.99",
                                              "currency": "EUR", "merchant_id": "bench"})
    assert found is not None, errors
    payment._with_connection(lambda conn: payment._record(conn, found))


def _log_only(bucket: str, key: str) -> None:
    """The handler's S3 share alone: one transaction-log PUT through its cached client."""
    payment._write_log(bucket, key, {"payment_id": key, "amount": "19.99"})


def _latency_line(label: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (f"{label:<34} {len(ms) / sum(seconds):8.1f} /s   p50 {statistics.median(ms):6.2f} ms"
            f"   p99 {p99:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=500)
    parser.add_argument("--cold", type=int, default=50)
    parser.add_argument("--rotations", type=int, default=10)
    parser.add_argument("--moto", choices=("process", "thread"), default="process",
                        help="moto in a process of its own, as the sandbox's emulator (default), "
                             "or a thread of this one, as the tests run it")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines

    with tempfile.TemporaryDirectory(prefix="tap-bench-") as tmp, \
            standin_server(Path(tmp)) as (server, ca_file), \
            (moto_process() if args.moto == "process" else moto_server()) as endpoint:
        set_environment(aws_environment(endpoint))
        assert server.port is not None
        stack = create_stack(server.host, server.port, ca_file=ca_file)
        set_environment(stack.payment_environment())
        conn = stack.master_connection()
        version = conn.run("SHOW server_version")[0][0]
        conn.close()
        print(f"PostgreSQL {version} on 127.0.0.1 (TLS), moto server ({args.moto}), Python "
              f"{platform.python_version()}, {platform.machine()}")

        first = begin_rotation(stack.app_arn)
        bootstrap = _timed(run_steps, stack.app_arn, first)
        _pay("warm-up")  # first login creates the table

        warm = [_timed(_pay, f"warm-{i}") for i in range(args.payments)]
        retries = [_timed(_pay, f"warm-{i}") for i in range(args.payments // 5)]
        database = [_timed(_record_only, f"db-{i}") for i in range(args.payments)]
        s3_share = [_timed(_log_only, stack.bucket, f"bench/s3-{i}.json")
                    for i in range(args.payments)]
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
    print(_latency_line(f"database share, warm ({len(database)})", database))
    print(_latency_line(f"S3 log PUT share, warm ({len(s3_share)})", s3_share))
    print(_latency_line(f"payments, cold start ({args.cold})", cold))
    print(f"{'rotation, bootstrap (creates role)':<34} {bootstrap * 1000:8.1f} ms")
    print(f"{f'rotation, full 4 steps ({args.rotations})':<34} "
          f"{statistics.mean(rotations) * 1000:8.1f} ms mean   "
          f"min {min(rotations) * 1000:.1f}   max {max(rotations) * 1000:.1f}")
    print("  per step (mean): " + ", ".join(
        f"{step} {total / args.rotations * 1000:.1f} ms" for step, total in per_step.items()))


if __name__ == "__main__":
    main()
