"""Real servers for the Lambda tests and the Lambda benchmark: a moto server and a PostgreSQL.

Plain context managers and helpers (no pytest here), so benchmarks/bench_lambdas.py uses the
same setup as the tests. moto's backends are process-wide, so nothing here resets them: every
stack gets names of its own instead.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pg8000.native
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from tap_lib.lambdas.rotation import handler as rotation
from tap_lib.localdb import LocalPostgres
from tap_lib.localdb_roles import ensure_rds_master
from tap_lib.localtls import CertificateAuthority

REGION = "eu-west-2"
MASTER_USER = "dbadmin"
MASTER_PASSWORD = "master-Pw-0123456789abcdef"
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on a free loopback port; yields its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def moto_process(timeout: float = 60) -> Iterator[str]:
    """A moto server in a process of its own, as the sandbox's emulator runs (the client and
    the server do not share one interpreter's lock); yields its endpoint URL."""
    with server_process("moto.server", what="moto server", timeout=timeout) as (endpoint, _):
        yield endpoint


@contextlib.contextmanager
def server_process(module: str, *, what: str, timeout: float = 60,
                   **popen: Any) -> Iterator[tuple[str, int]]:
    """`python -m MODULE -H 127.0.0.1 -p PORT` on a free port until the block ends, once it
    accepts connections; yields (endpoint URL, pid). `popen`: cwd, env."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", module, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start on port {port}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A private directory for PostgreSQL data, deleted on exit.

    Not pytest's tmp_path: every pytest session resets /tmp/pytest-of-<user> to mode 0700, so
    a concurrent session would lock the `postgres` user (a root-run server) out of its data.
    """
    with tempfile.TemporaryDirectory(prefix="tap-lambdas-") as base:
        yield Path(base)


@contextlib.contextmanager
def standin_server(base: Path) -> Iterator[tuple[LocalPostgres, Path]]:
    """A PostgreSQL set up as the sandbox's stand-in is: TLS only, under a CA of its own
    (base/ca), tap's bootstrap superuser, and MASTER_USER made as Aurora makes its master (not
    a superuser). Yields (server, CA certificate file); stopped and deleted on exit."""
    authority = CertificateAuthority(base / "ca").ensure()
    server = LocalPostgres(base / "data")
    try:
        server.start_bootstrapped(tls=authority.issue_server([]))
        conn = server.connect_bootstrap()
        try:
            ensure_rds_master(conn, MASTER_USER, MASTER_PASSWORD, "postgres")
        finally:
            conn.close()
        yield server, authority.cert_file
    finally:
        server.remove()


def aws_environment(endpoint: str) -> dict[str, str]:
    """Variables pointing plain boto3 clients at `endpoint` with dummy credentials."""
    return {**AWS_ENV, "AWS_ENDPOINT_URL": endpoint}


@dataclass
class Stack:
    """What the TapStack creates around the two functions, simulated on moto and PostgreSQL."""

    db_host: str
    db_port: int
    dbname: str
    app_user: str
    master_arn: str
    app_arn: str
    bucket: str
    ca_file: str = ""

    def payment_environment(self) -> dict[str, str]:
        """The payment function's variables (DB_CA_FILE: the rotation function reads it too)."""
        return {"DB_SECRET_ARN": self.app_arn, "BUCKET_NAME": self.bucket,
                **({"DB_CA_FILE": self.ca_file} if self.ca_file else {})}

    def master_connection(self) -> pg8000.native.Connection:
        return pg8000.native.Connection(MASTER_USER, password=MASTER_PASSWORD, host=self.db_host,
                                        port=self.db_port, database=self.dbname, timeout=10)

    def terminate_app_connections(self) -> None:
        """What a failover or an idle timeout does to a warm container's connection."""
        conn = self.master_connection()
        try:
            conn.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE usename = :user", user=self.app_user)
        finally:
            conn.close()


def create_stack(db_host: str, db_port: int, *, versioned_bucket: bool = False,
                 object_lock: bool = False, ca_file: Path | str = "") -> Stack:
    """A database, the RDS-managed master secret, the app secret (no password) and a bucket.

    Needs the AWS variables set (aws_environment) and the master user in the server.
    """
    suffix = uuid.uuid4().hex[:10]
    dbname, app_user = f"payments_{suffix}", f"app_{suffix}"
    admin = pg8000.native.Connection(MASTER_USER, password=MASTER_PASSWORD, host=db_host,
                                     port=db_port, database="postgres", timeout=10)
    try:
        admin.run(f"CREATE DATABASE {dbname}")
    finally:
        admin.close()
    sm = boto3.client("secretsmanager")
    master_arn = sm.create_secret(
        Name=f"rds!cluster-{suffix}",
        SecretString=json.dumps({"username": MASTER_USER, "password": MASTER_PASSWORD}))["ARN"]
    app_arn = sm.create_secret(Name=f"tap/db-app-{suffix}", SecretString=json.dumps({
        "engine": "postgres", "host": db_host, "port": db_port, "dbname": dbname,
        "username": app_user, "masterarn": master_arn}))["ARN"]
    bucket = f"tap-transactions-{suffix}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION},
                     **({"ObjectLockEnabledForBucket": True} if object_lock else {}))
    if object_lock:  # as the stack's transaction-log bucket: a default retention
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    if versioned_bucket:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return Stack(db_host, db_port, dbname, app_user, master_arn, app_arn, bucket, str(ca_file))


def begin_rotation(secret_arn: str, token: str | None = None) -> str:
    """Put the secret where Secrets Manager puts it before invoking the rotation function.

    moto's RotateSecret records the rotation settings (RotationEnabled), adds a version for the
    token staged AWSPENDING and holding no value, then fails because the function does not
    exist in moto (it could not run it anyway). That is exactly the state AWS hands to
    createSecret. Returns the token.
    """
    token = token or str(uuid.uuid4())
    absent = f"arn:aws:lambda:{REGION}:123456789012:function:absent-{uuid.uuid4().hex[:8]}"
    try:
        boto3.client("secretsmanager").rotate_secret(
            SecretId=secret_arn, ClientRequestToken=token, RotationLambdaARN=absent,
            RotationRules={"AutomaticallyAfterDays": 30})
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    else:
        raise AssertionError("moto ran a rotation function it should not have found")
    return token


def run_steps(secret_arn: str, token: str, steps: tuple[str, ...] = STEPS) -> None:
    for step in steps:
        rotation.lambda_handler({"SecretId": secret_arn, "ClientRequestToken": token,
                                 "Step": step}, None)


def rotate(secret_arn: str) -> str:
    """One full rotation, the four steps in process as Secrets Manager would invoke them."""
    token = begin_rotation(secret_arn)
    run_steps(secret_arn, token)
    return token


def stages(secret_arn: str) -> dict[str, list[str]]:
    """Version id -> staging labels, without versions that have none left."""
    described = boto3.client("secretsmanager").describe_secret(SecretId=secret_arn)
    return {version: sorted(labels)
            for version, labels in described.get("VersionIdsToStages", {}).items() if labels}


def secret_value(secret_arn: str, stage: str = "AWSCURRENT") -> dict[str, Any]:
    value = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn,
                                                            VersionStage=stage)
    secret: dict[str, Any] = json.loads(value["SecretString"])
    return secret


def login_works(stack: Stack, user: str, password: str) -> bool:
    """Whether PostgreSQL accepts the password (False on an authentication failure only)."""
    try:
        pg8000.native.Connection(user, password=password, host=stack.db_host,
                                 port=stack.db_port, database=stack.dbname, timeout=10).close()
    except pg8000.native.DatabaseError as exc:
        if exc.args and isinstance(exc.args[0], dict) and exc.args[0].get("C") == "28P01":
            return False
        raise
    return True


@contextlib.contextmanager
def forwarded_port(host: str, port: int) -> Iterator[int]:
    """The database reached at another port (a changed cluster port): a TCP forwarder on a free
    loopback port to host:port. Yields that port."""
    listener = socket.create_server(("127.0.0.1", 0))

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:   # the listener was closed
                return
            upstream = socket.create_connection((host, port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(source, sink), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        # shutdown wakes the blocked accept(); close alone leaves the port listening
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()


def set_environment(variables: dict[str, str]) -> None:
    """For scripts; tests use monkeypatch instead."""
    os.environ.update(variables)
    os.environ.pop("AWS_PROFILE", None)
