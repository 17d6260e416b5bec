"""Figures for the two Lambda functions, run in process against real servers.

A PostgreSQL set up as the sandbox's stand-in (TLS only, verified with its CA; a master that is
not a superuser) stands in for Aurora, the sandbox's emulator (moto with tap's patches, as
`tap sandbox` runs it) for S3, KMS and STS, and a plain moto server for Secrets Manager (where
the rotation steps run as in tests/test_lambdas.py, whose helpers this uses). The transaction-log bucket is set up as the stack deploys it: versioned,
Object Lock with a default retention, SSE-KMS, the TLS-only policy, server access logging to a
log bucket of its own. Prints payments per second through the payment handler with p50/p99 per
payment: warm in one execution environment (it keeps its connection, clients and secret: one
database round trip and one S3 PUT per payment), warm in N environments at once (N processes,
as Lambda runs concurrent invocations in environments of their own; payments/s over the wall
time of all of them), the database's share alone, the S3 PUT's share alone, and cold (a new
secret read and TLS login per payment); then one full rotation (the four steps). Also the CPU
time per payment of this process, the emulator and PostgreSQL, and the load average: on a
shared machine the wall figures depend on what else runs. Figures, not a timed test.

    python benchmarks/bench_lambdas.py [--payments 500] [--concurrency 4] [--cold 50]
                                       [--rotations 10] [--moto emulator|process|thread]
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import boto3  # noqa: E402
from fixtures_lambdas import (REGION, STEPS, Stack, aws_environment,  # noqa: E402
                              begin_rotation, create_stack, moto_process, moto_server,
                              run_steps, server_process, set_environment, standin_server)
from tap_lib.lambdas.payment import handler as payment  # noqa: E402
from tap_lib.localdb import LocalPostgres  # noqa: E402


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


@contextlib.contextmanager
def emulator_process(home: Path, timeout: float = 60) -> Iterator[tuple[str, int]]:
    """The sandbox's emulator (python -m tap_lib.engines.sandbox.emulator, moto with tap's
    patches) on a free port, with a TAP_HOME of its own; yields (endpoint, pid)."""
    home.mkdir(parents=True, exist_ok=True)
    with server_process("tap_lib.engines.sandbox.emulator", what="the emulator",
                        timeout=timeout, cwd=home,
                        env={**os.environ, "TAP_HOME": str(home)}) as found:
        yield found


def as_deployed(stack: Stack) -> None:
    """The transaction-log bucket as tap_lib/program/storage.py deploys it, beyond what
    create_stack(object_lock=True, versioned_bucket=True) sets: SSE-KMS with a bucket key, the
    TLS-only policy, and server access logs to a versioned Object Lock bucket (SSE-S3) whose
    policy lets S3's log delivery write."""
    from tap_lib.program.policies import tls_only_bucket_policy
    from tap_lib.program.storage import ACCESS_LOG_PREFIX, access_log_bucket_policy

    s3, account = boto3.client("s3"), boto3.client("sts").get_caller_identity()["Account"]
    logs = f"{stack.bucket}-logs"
    s3.create_bucket(Bucket=logs, ObjectLockEnabledForBucket=True,
                     CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=logs, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(Bucket=logs, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    s3.put_bucket_policy(Bucket=logs, Policy=access_log_bucket_policy(
        f"arn:aws:s3:::{logs}", f"arn:aws:s3:::{stack.bucket}", account))
    key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    s3.put_bucket_encryption(Bucket=stack.bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                "KMSMasterKeyID": key},
         "BucketKeyEnabled": True}]})
    s3.put_bucket_policy(Bucket=stack.bucket,
                         Policy=tls_only_bucket_policy(f"arn:aws:s3:::{stack.bucket}"))
    s3.put_bucket_logging(Bucket=stack.bucket, BucketLoggingStatus={"LoggingEnabled": {
        "TargetBucket": logs, "TargetPrefix": ACCESS_LOG_PREFIX}})


def access_log_records(bucket: str) -> int:
    """Records delivered to the access-log bucket of `bucket` (a request to it delivers any
    that are waiting first)."""
    s3, logs = boto3.client("s3"), f"{bucket}-logs"
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=logs)
            for o in page.get("Contents", [])]
    return sum(len(s3.get_object(Bucket=logs, Key=k)["Body"].read().splitlines())
               for k in keys)


def _environment(prefix: str, count: int, ready, results) -> None:
    """One warm execution environment in a process of its own: a first payment (login, secret,
    clients), then `count` payments once every environment is ready."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    _pay(f"{prefix}-warm-up")
    ready.wait()
    started = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    seconds = [_timed(_pay, f"{prefix}-{i}") for i in range(count)]
    results.put((started, time.perf_counter(), seconds))
    payment.reset_cache()


def concurrent(environments: int, payments: int) -> tuple[float, list[float]]:
    """`payments` spread over `environments` processes at once: (wall seconds, latencies)."""
    context = multiprocessing.get_context("spawn")  # no inherited connection or client
    ready, results = context.Barrier(environments), context.Queue()
    each = max(1, payments // environments)
    procs = [context.Process(target=_environment, args=(f"env{n}", each, ready, results))
             for n in range(environments)]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        if proc.exitcode != 0:
            raise RuntimeError(f"an environment failed (exit {proc.exitcode})")
    wall = max(end for _, end, _ in got) - min(start for start, _, _ in got)
    return wall, [s for _, _, seconds in got for s in seconds]


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _postgres_pids(server: LocalPostgres) -> list[int]:
    """The postmaster and its backends (each connection is a process of its own)."""
    lines = (server.data_dir / "postmaster.pid").read_text().splitlines()
    master = int(lines[0])
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)],
                              check=False, capture_output=True, text=True).stdout.split()
    return [master, *map(int, children)]


def _latency_line(label: str, seconds: list[float], wall: float | None = None) -> str:
    """Payments/s (over `wall` when they ran at once, else one after another) and p50/p99."""
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    rate = len(ms) / (wall if wall is not None else sum(seconds))
    return (f"{label:<44} {rate:8.1f} /s   p50 {statistics.median(ms):6.2f} ms"
            f"   p99 {p99:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4,
                        help="execution environments at once for the concurrent figure")
    parser.add_argument("--cold", type=int, default=50)
    parser.add_argument("--rotations", type=int, default=10)
    parser.add_argument("--moto", choices=("emulator", "process", "thread"), default="emulator",
                        help="the sandbox's emulator (default: moto with tap's patches, the "
                             "bucket as deployed), or plain moto in a process of its own or in "
                             "a thread of this one (a plain bucket: plain moto cannot take the "
                             "stack's policy and logging)")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines

    with contextlib.ExitStack() as stack_:
        tmp = Path(stack_.enter_context(tempfile.TemporaryDirectory(prefix="tap-bench-")))
        server, ca_file = stack_.enter_context(standin_server(tmp))
        emulator_pid = None
        endpoint = stack_.enter_context(
            moto_process() if args.moto != "thread" else moto_server())
        set_environment(aws_environment(endpoint))
        if args.moto == "emulator":
            # Secrets Manager stays on plain moto, where the rotation steps run as the tests
            # run them (the emulator's RotateSecret invokes a deployed function); a warm
            # payment never calls it.
            emulator, emulator_pid = stack_.enter_context(emulator_process(tmp / "home"))
            set_environment({"AWS_ENDPOINT_URL": emulator,
                             "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint})
        assert server.port is not None
        deployed = args.moto == "emulator"
        stack = create_stack(server.host, server.port, ca_file=ca_file,
                             object_lock=deployed, versioned_bucket=deployed)
        if deployed:
            as_deployed(stack)
        set_environment(stack.payment_environment())
        conn = stack.master_connection()
        version = conn.run("SHOW server_version")[0][0]
        conn.close()
        print(f"PostgreSQL {version} on 127.0.0.1 (TLS), moto ({args.moto}"
              f"{', bucket as deployed' if deployed else ', plain bucket'}), Python "
              f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
              "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()))

        first = begin_rotation(stack.app_arn)
        bootstrap = _timed(run_steps, stack.app_arn, first)
        _pay("warm-up")  # first login creates the table

        pids = [p for p in [emulator_pid] if p is not None] + _postgres_pids(server)
        cpu_before = (time.process_time(), _cpu_seconds(pids))
        warm = [_timed(_pay, f"warm-{i}") for i in range(args.payments)]
        cpu = ((time.process_time() - cpu_before[0]) / len(warm),
               (_cpu_seconds(pids + _postgres_pids(server)[1:]) - cpu_before[1]) / len(warm))
        retries = [_timed(_pay, f"warm-{i}") for i in range(args.payments // 5)]
        wall, together = concurrent(args.concurrency, args.payments)
        database = [_timed(_record_only, f"db-{i}") for i in range(args.payments)]
        s3_share = [_timed(_log_only, stack.bucket, f"bench/s3-{i}.json")
                    for i in range(args.payments)]
        cold = []
        for i in range(args.cold):
            payment.reset_cache()
            cold.append(_timed(_pay, f"cold-{i}"))
        records = access_log_records(stack.bucket) if deployed else None

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
        load = os.getloadavg()

    print(_latency_line(f"payments, warm, 1 environment ({args.payments})", warm))
    print(_latency_line(f"payments, warm, {args.concurrency} environments ({len(together)})",
                        together, wall))
    print(_latency_line(f"retried payments ({len(retries)})", retries))
    print(_latency_line(f"database share, warm ({len(database)})", database))
    print(_latency_line(f"S3 log PUT share, warm ({len(s3_share)})", s3_share))
    print(_latency_line(f"payments, cold start ({args.cold})", cold))
    own = "the function and moto" if args.moto == "thread" else "the function"
    print(f"CPU per warm payment: {cpu[0] * 1000:.2f} ms this process ({own}), "
          f"{cpu[1] * 1000:.2f} ms {'emulator + ' if emulator_pid else ''}PostgreSQL")
    if records is not None:
        print(f"access-log records delivered: {records}")
    print(f"{'rotation, bootstrap (creates role)':<44} {bootstrap * 1000:8.1f} ms")
    print(f"{f'rotation, full 4 steps ({args.rotations})':<44} "
          f"{statistics.mean(rotations) * 1000:8.1f} ms mean   "
          f"min {min(rotations) * 1000:.1f}   max {max(rotations) * 1000:.1f}")
    print("  per step (mean): " + ", ".join(
        f"{step} {total / args.rotations * 1000:.1f} ms" for step, total in per_step.items()))
    print("load average at the end: " + " ".join(f"{x:.2f}" for x in load))


if __name__ == "__main__":
    main()
