"""TLS end to end and the master user as RDS has it, on the stand-in PostgreSQL.

Real servers, nothing mocked: a local PostgreSQL set up as the sandbox's stand-in (TLS only,
per-sandbox CA, bootstrap superuser) and, for the stand-in's own bookkeeping, a moto server
playing the emulator's RDS and Secrets Manager.
"""
from __future__ import annotations

import json
import logging
import os
import ssl
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pg8000.native
import pytest
from cryptography import x509

from fixtures_lambdas import (MASTER_PASSWORD, MASTER_USER, REGION, STEPS, aws_environment,
                              begin_rotation, moto_server, scratch_dir, standin_server)
from tap_lib.engines.sandbox import lambda_runtime, standin
from tap_lib.errors import OperationFailed
from tap_lib.engines.sandbox.handlers.base import Context
from tap_lib.lambdas.payment import handler as payment
from tap_lib.lambdas.rotation import handler as rotation
from tap_lib.localdb import BOOTSTRAP_FILE, LocalPostgres
from tap_lib.localtls import CertificateAuthority, server_names
from tap_lib.program import packaging


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[LocalPostgres, Path]]:
    with scratch_dir() as base, standin_server(base) as found:
        yield found


def _verified(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def _sqlstate(exc: BaseException) -> str | None:
    details = exc.args[0] if exc.args else None
    return details.get("C") if isinstance(details, dict) else None


# -- the CA ------------------------------------------------------------------------------------

def test_ca_keys_are_private_and_server_certificates_name_what_clients_use(tmp_path: Path):
    authority = CertificateAuthority(tmp_path / "ca").ensure()
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate(authority.cert_file.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # an Aurora endpoint name is longer than a certificate's CN may be (64)
    endpoint = "aurora-cluster-dev-0123456789.cluster-abcdef012345.eu-west-2.rds.amazonaws.com"
    issued = authority.issue_server([endpoint])
    assert server_names(issued.cert_pem) == {endpoint, "localhost", "127.0.0.1"}
    # the same CA again: nothing regenerated (clients keep trusting it)
    before = authority.cert_file.read_bytes()
    assert CertificateAuthority(tmp_path / "ca").ensure().cert_file.read_bytes() == before


# -- the server --------------------------------------------------------------------------------

def test_plain_connections_are_refused(server: tuple[LocalPostgres, Path]):
    pg, _ = server
    with pytest.raises(pg8000.native.DatabaseError) as refused:
        pg.connect(MASTER_USER, MASTER_PASSWORD, "postgres", ssl_context=False)
    assert _sqlstate(refused.value) == "28000"
    assert "no encryption" in str(refused.value)


def test_a_connection_verifying_against_another_ca_fails(server: tuple[LocalPostgres, Path],
                                                         tmp_path: Path):
    pg, ca_file = server
    other = CertificateAuthority(tmp_path / "other").ensure()
    with pytest.raises(ssl.SSLCertVerificationError):
        pg.connect(MASTER_USER, MASTER_PASSWORD, "postgres",
                   ssl_context=_verified(other.cert_file))
    conn = pg.connect(MASTER_USER, MASTER_PASSWORD, "postgres", ssl_context=_verified(ca_file))
    try:
        assert conn.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == [[True]]
    finally:
        conn.close()


def test_the_master_is_not_a_superuser_but_has_rds_superusers_grants(
        server: tuple[LocalPostgres, Path]):
    pg, ca_file = server
    conn = pg.connect(MASTER_USER, MASTER_PASSWORD, "postgres", ssl_context=_verified(ca_file))
    try:
        [[superuser, createrole, createdb]] = conn.run(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
            "WHERE rolname = current_user")
        assert (superuser, createrole, createdb) == (False, True, True)
        for role in ("pg_read_all_data", "pg_write_all_data", "pg_signal_backend"):
            if conn.run("SELECT 1 FROM pg_roles WHERE rolname = :r", r=role):
                assert conn.run("SELECT pg_has_role(current_user, :r, 'MEMBER')", r=role) == [[True]]
        assert conn.run("SELECT pg_get_userbyid(datdba) FROM pg_database "
                        "WHERE datname = 'postgres'") == [[MASTER_USER]]
        with pytest.raises(pg8000.native.DatabaseError) as denied:
            conn.run("CREATE ROLE tap_escalate SUPERUSER")
        assert _sqlstate(denied.value) == "42501"
    finally:
        conn.close()
    # tap's own superuser is kept in the data directory, for the process user only
    assert stat.S_IMODE((pg.data_dir / BOOTSTRAP_FILE).stat().st_mode) == 0o600


# -- the functions -----------------------------------------------------------------------------

@pytest.mark.parametrize("module", [payment, rotation])
def test_functions_refuse_a_database_their_ca_does_not_vouch_for(module, tmp_path: Path):
    missing = tmp_path / "absent.pem"
    with pytest.raises(Exception, match="no CA bundle") as failure:
        module.tls_context(str(missing))
    assert str(missing) in str(failure.value)
    # default: the RDS bundle beside the handler (as packaged) or in tap_lib/lambdas
    context = module.tls_context("")
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_payment_with_the_wrong_ca_fails_verification_and_shows_no_password(
        server: tuple[LocalPostgres, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pg, _ = server
    other = CertificateAuthority(tmp_path / "other").ensure()
    monkeypatch.setenv("DB_CA_FILE", str(other.cert_file))
    payment.reset_cache()
    secret = {"username": MASTER_USER, "password": MASTER_PASSWORD, "host": pg.host,
              "port": pg.port, "dbname": "postgres"}
    try:
        with pytest.raises(ssl.SSLCertVerificationError) as failure:
            payment._login(secret)
        assert MASTER_PASSWORD not in repr(failure.value)
    finally:
        payment.reset_cache()


def test_archives_ship_the_rds_ca_bundle(tmp_path: Path):
    with zipfile.ZipFile(_archive_zip("payment", tmp_path)) as archive:
        bundle = archive.read(packaging.CA_BUNDLE_NAME)
    certs = x509.load_pem_x509_certificates(bundle)
    assert certs and all(c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
                         for c in certs)
    assert all("Amazon RDS" in c.subject.rfc4514_string() for c in certs)
    context = ssl.create_default_context(cadata=bundle.decode())
    assert len(context.get_ca_certs()) == len(certs)


def _archive_zip(function: str, directory: Path) -> Path:
    """The function's archive as Pulumi would zip it (its assets, by name)."""
    archive = packaging.function_archive(function)
    target = directory / f"{function}.zip"
    with zipfile.ZipFile(target, "w") as zf:
        for name, asset in archive.assets.items():
            zf.write(asset.path, name)
    return target


# -- the sandbox: stand-in, its CA and the functions' runtime ----------------------------------

@dataclass
class Sandbox:
    ctx: Context
    secret_arn: str
    endpoint_name: str
    found: standin.Endpoint
    ca_file: Path


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """A cluster in moto (playing the emulator) and its stand-in, made by standin.ensure."""
    with scratch_dir() as home, pytest.MonkeyPatch.context() as monkeypatch, \
            moto_server() as endpoint:
        monkeypatch.setenv("TAP_HOME", str(home))
        for name, value in aws_environment(endpoint).items():
            monkeypatch.setenv(name, value)
        # moto's own secret says admin whatever MasterUsername is: the stand-in must take
        # the user from the cluster and only the password from the secret
        cluster = boto3.client("rds").create_db_cluster(
            DBClusterIdentifier="tls-test", Engine="aurora-postgresql", MasterUsername="admin",
            ManageMasterUserPassword=True, DatabaseName="payments")["DBCluster"]
        ctx = Context(region=REGION, account="123456789012", urn="urn:pulumi:tlsstack::p::x",
                      name="db", clients=lambda service: boto3.client(service))
        secret_arn = cluster["MasterUserSecret"]["SecretArn"]
        try:
            found = standin.ensure(ctx, "tls-test", secret_arn, "payments",
                                   (cluster["Endpoint"],))
            yield Sandbox(ctx, secret_arn, cluster["Endpoint"], found,
                          home / "sandbox" / "ca" / "ca.crt")
        finally:
            standin.forget_all("tlsstack")


def _master_secret(sandbox: Sandbox) -> dict:
    return json.loads(boto3.client("secretsmanager").get_secret_value(
        SecretId=sandbox.secret_arn)["SecretString"])


def _login(sandbox: Sandbox, user: str, password: str) -> pg8000.native.Connection:
    return pg8000.native.Connection(user, password=password, host=sandbox.found.host,
                                    port=sandbox.found.port, database="payments",
                                    ssl_context=_verified(sandbox.ca_file))


def test_standin_serves_the_cluster_endpoint_under_the_sandbox_ca(sandbox: Sandbox):
    cert = LocalPostgres(standin._data_dir("tlsstack", "tls-test")).server_cert()
    assert cert is not None and sandbox.endpoint_name in server_names(cert)
    conn = _login(sandbox, "admin", _master_secret(sandbox)["password"])
    try:
        assert conn.run("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == [[False]]
    finally:
        conn.close()


def test_functions_in_the_sandbox_runtime_verify_the_endpoint_name(sandbox: Sandbox):
    """Rotation then a payment through lambda_runtime (child processes), connecting to the
    cluster's endpoint name, mapped to the stand-in, verified against the sandbox CA."""
    suffix = "tlsrt"
    sm, s3 = boto3.client("secretsmanager"), boto3.client("s3")
    app_arn = sm.create_secret(Name=f"tap/db-app-{suffix}", SecretString=json.dumps({
        "engine": "postgres", "host": sandbox.endpoint_name, "port": 5432,
        "dbname": "payments", "username": f"app_{suffix}",
        "masterarn": sandbox.secret_arn}))["ARN"]
    bucket = f"tap-transactions-{suffix}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    token = begin_rotation(app_arn)
    env = dict(endpoint=os.environ["AWS_ENDPOINT_URL"], region=REGION,
               hosts=standin.host_map("tlsstack"))
    lambda_runtime.invoke_sequence(
        "rotation", [{"Step": step, "SecretId": app_arn, "ClientRequestToken": token}
                     for step in STEPS], **env)
    result = lambda_runtime.invoke(
        "payment", {"payment_id": "tls-1", "amount": "1.00", "currency": "EUR",
                    "merchant_id": "m"},
        variables={"DB_SECRET_ARN": app_arn, "BUCKET_NAME": bucket}, **env)
    assert result["statusCode"] == 200, result
    # the same runtime, told to trust another CA, is refused
    other = CertificateAuthority(sandbox.ca_file.parent.parent / "other-ca").ensure()
    with pytest.raises(OperationFailed, match="CERTIFICATE_VERIFY_FAILED|SSLCertVerification"):
        _invoke_with_ca(other.cert_file, app_arn, bucket, env)


def _invoke_with_ca(ca_file: Path, app_arn: str, bucket: str, env: dict) -> dict:
    """lambda_runtime sets DB_CA_FILE to the sandbox CA; a child started with another CA is
    what a function pointed at the wrong bundle sees."""
    original = lambda_runtime._environment

    def environment(*args, **kwargs):
        return {**original(*args, **kwargs), "DB_CA_FILE": str(ca_file)}

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lambda_runtime, "_environment", environment)
        return lambda_runtime.invoke(
            "payment", {"payment_id": "tls-2", "amount": "1.00", "currency": "EUR",
                        "merchant_id": "m"},
            variables={"DB_SECRET_ARN": app_arn, "BUCKET_NAME": bucket}, **env)


def test_standin_master_follows_its_rotated_secret(sandbox: Sandbox,
                                                   caplog: pytest.LogCaptureFixture,
                                                   capsys: pytest.CaptureFixture[str]):
    """RDS rotates its managed secret behind the stand-in's back; the next sync (ensure, or
    any rotation run in the sandbox) sets the new password and the old one stops working.
    Neither password reaches a log, the output or the server's log."""
    caplog.set_level(logging.DEBUG)
    old = _master_secret(sandbox)["password"]
    new = "Rotated-by-RDS-0123456789abcdef"
    boto3.client("secretsmanager").put_secret_value(
        SecretId=sandbox.secret_arn,
        SecretString=json.dumps({"username": "admin", "password": new}))
    standin.sync_masters_with(lambda service: boto3.client(service), "tlsstack")
    _login(sandbox, "admin", new).close()
    with pytest.raises(pg8000.native.DatabaseError) as refused:
        _login(sandbox, "admin", old)
    assert _sqlstate(refused.value) == "28P01"
    pg = LocalPostgres(standin._data_dir("tlsstack", "tls-test"))
    bootstrap = (pg.data_dir / BOOTSTRAP_FILE).read_text().strip()
    shown = caplog.text + "".join(capsys.readouterr()) + pg.log_file.read_text(errors="replace")
    for secret in (old, new, bootstrap):
        assert secret not in shown


def test_a_standin_an_older_tap_made_is_taken_over(sandbox: Sandbox):
    """Before TLS and the bootstrap user, the master was the stand-in's superuser and plain
    connections were served: the next ensure adds tap's superuser, TLS only, and demotes the
    master to rds_superuser's grants, keeping the data."""
    cluster = boto3.client("rds").create_db_cluster(
        DBClusterIdentifier="tls-legacy", Engine="aurora-postgresql", MasterUsername="admin",
        ManageMasterUserPassword=True, DatabaseName="payments")["DBCluster"]
    arn = cluster["MasterUserSecret"]["SecretArn"]
    password = json.loads(boto3.client("secretsmanager").get_secret_value(
        SecretId=arn)["SecretString"])["password"]
    legacy = LocalPostgres(standin._data_dir("tlsstack", "tls-legacy"))
    legacy.start("admin", password, database="payments")  # as the older tap did
    conn = legacy.connect("admin", password, "payments", ssl_context=False)
    conn.run("CREATE TABLE kept (n int)")
    conn.close()

    found = standin.ensure(sandbox.ctx, "tls-legacy", arn, "payments", (cluster["Endpoint"],))
    assert legacy.bootstrapped and legacy.tls_enabled
    with pytest.raises(pg8000.native.DatabaseError) as refused:
        legacy.connect("admin", password, "payments", ssl_context=False)
    assert _sqlstate(refused.value) == "28000"
    conn = pg8000.native.Connection("admin", password=password, host=found.host,
                                    port=found.port, database="payments",
                                    ssl_context=_verified(sandbox.ca_file))
    try:
        assert conn.run("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == [[False]]
        assert conn.run("SELECT count(*) FROM kept") == [[0]]
    finally:
        conn.close()


def test_verifys_login_check_verifies_the_server_too(sandbox: Sandbox, tmp_path: Path):
    """tap's own login (verify's db.login) trusts only the CA the target names: the sandbox's
    here; a server another CA vouches for is a failed check, the password never shown."""
    from tap_lib.ops import smoke

    master = _master_secret(sandbox)
    arn = boto3.client("secretsmanager").create_secret(
        Name="tls-login-check", SecretString=json.dumps({**master, "dbname": "payments"}))["ARN"]
    clients = sandbox.ctx.clients

    def address(host: str, port: int) -> tuple[str, int]:
        return sandbox.found.host, sandbox.found.port

    endpoint = (sandbox.endpoint_name, 5432)
    assert smoke.db_login(clients, arn, endpoint, address, sandbox.ca_file) == (
        "login ok", f"login ok as {master['username']}")
    other = CertificateAuthority(tmp_path / "other").ensure().cert_file
    expected, actual = smoke.db_login(clients, arn, endpoint, address, other)
    assert actual.startswith("failed: ") and "login ok" not in actual
    assert master["password"] not in actual


# -- the socket under every login ---------------------------------------------------------------

def test_every_login_sends_at_once_and_still_verifies_the_server(server) -> None:
    """pg8000 leaves Nagle's algorithm on, and its login writes twice before it reads (each
    login then waited ~40 ms for the server's delayed ACK). The functions' and tap's own
    connections run over a TCP_NODELAY socket, TLS verified as before (the name check:
    test_functions_in_the_sandbox_runtime_verify_the_endpoint_name)."""
    import socket

    from tap_lib.lambdas import pgclient

    pg, ca_file = server
    sock = pgclient.open_socket(pg.host, pg.port, 5)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        sock.close()
    conn = pgclient.connect(MASTER_USER, MASTER_PASSWORD, pg.host, pg.port, "postgres",
                            timeout=5, ssl_context=_verified(ca_file))
    try:
        assert conn.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == [[True]]
        assert conn._usock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        conn.close()
    own = pg.connect(MASTER_USER, MASTER_PASSWORD, "postgres", ssl_context=_verified(ca_file))
    try:
        assert own._usock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        own.close()


def test_a_server_that_is_not_there_is_pg8000s_interface_error() -> None:
    from tap_lib.lambdas import pgclient
    from tap_lib.localdb import free_port

    with pytest.raises(pg8000.native.InterfaceError, match="Can't create a connection"):
        pgclient.open_socket("127.0.0.1", free_port(), 2)


@pytest.mark.parametrize("function", ["payment", "rotation"])
def test_a_packaged_function_imports_its_client_from_the_archive_root(function, tmp_path):
    import subprocess
    import sys

    with zipfile.ZipFile(_archive_zip(function, tmp_path)) as archive:
        archive.extractall(tmp_path / "root")
    found = subprocess.run(
        [sys.executable, "-c", "import handler; print(handler.pgclient.__file__)"],
        cwd=tmp_path / "root", capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()) == tmp_path / "root" / "pgclient.py"
