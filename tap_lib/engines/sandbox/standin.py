"""A real PostgreSQL standing in for the Aurora cluster, so that the sandbox exercises real
credentials and real connectivity (the emulator runs the rotation function against it).

The emulator creates the cluster's RDS-managed master secret. The stand-in's master user is
the cluster's MasterUsername (describe_db_clusters) with that secret's password, made as Aurora
makes it: not a superuser, rds_superuser's grants (localdb_roles); tap's own setup logs in as a
bootstrap superuser whose password stays in the data directory. The server speaks TLS only
(rds.force_ssl=1), with a certificate from the sandbox CA (sandbox_ca) naming the cluster's
endpoints, localhost and 127.0.0.1.

The master secret rotates as RDS rotates it, behind the stand-in's back: every ensure (deploy,
refresh) and every rotation a deploy starts (the only code that logs in as the master) first
sets the master user's password to the secret's current one (sync_masters).

Its data lives under the stack's state directory and goes away with the cluster (destroy, or
an emulator restart that lost the stack). A deploy initialises it ahead of need (preparing): initdb
is most of a first start and runs on another core while preflight runs; ensure() waits for it
under the same file lock, which also keeps two operators' processes from initialising one
directory at once.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from ...config_yaml import label
from ...errors import OperationFailed, StateCorrupt
from ...localdb import BOOTSTRAP_USER, LocalPostgres
from ...localdb_roles import ensure_rds_master, scram_verifier
from ...localtls import server_names
from . import sandbox_ca
from .handlers.base import Context
from .state import stack_dir

log = logging.getLogger(__name__)

# A hosts file lists a cluster's two endpoint names; anything much larger was not written by tap.
MAX_HOSTS_BYTES = 64 * 1024
HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


def stack_of(urn: str) -> str:
    return urn.split("::")[0].removeprefix("urn:pulumi:")


def _data_dir(stack: str, cluster_id: str) -> Path:
    return stack_dir(stack) / "postgres" / cluster_id


def _init_lock(stack: str, cluster_id: str) -> FileLock:
    path = _data_dir(stack, cluster_id).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path, timeout=300)


def _hosts_file(stack: str, cluster_id: str) -> Path:
    return stack_dir(stack) / "postgres-hosts" / f"{cluster_id}.json"


def _master_file(stack: str, cluster_id: str) -> Path:
    return stack_dir(stack) / "postgres-master" / f"{cluster_id}.json"


def ensure(ctx: Context, cluster_id: str, master_secret_arn: str, dbname: str,
           hosts: tuple[str | None, ...] = ()) -> Endpoint:
    """Start (or re-attach to) the stand-in server for this cluster, TLS-only, with the master
    user as the cluster and its secret say; `hosts` are the cluster's AWS endpoint names, which
    tap's own connections map to it (host_map) and its certificate names."""
    stack = stack_of(ctx.urn)
    names = sorted(h for h in hosts if h)
    authority = sandbox_ca.authority().ensure()
    with _init_lock(stack, cluster_id):
        pg = LocalPostgres(_data_dir(stack, cluster_id))
        pg.require_directory()
        if pg.initialized and not pg.bootstrapped:
            _adopt_legacy(ctx, pg, master_secret_arn)
        cert = pg.server_cert()
        if cert is None or not set(names) <= server_names(cert):
            tls = authority.issue_server(names)
            if pg.initialized:
                pg.install_tls(tls)
        else:
            tls = None
        pg.start_bootstrapped(database=dbname, tls=tls)
    _write_json(_master_file(stack, cluster_id),
                {"secret_arn": master_secret_arn, "dbname": dbname})
    sync_master(ctx, stack, cluster_id)
    _write_hosts(_hosts_file(stack, cluster_id), names)
    return Endpoint(pg.host, pg.port)


@contextlib.contextmanager
def preparing(stack: str, cluster_id: str) -> Iterator[None]:
    """Initialise the stand-in's data directory on a thread while the block runs, unless it
    exists; when the block fails (preflight refused the deploy), wait for the thread and remove
    what it made, unless a server runs there by then (another operator's deploy took it).
    Best effort: what fails here, ensure() meets again and reports."""
    pg = LocalPostgres(_data_dir(stack, cluster_id))
    if pg.initialized:
        yield
        return

    def initialise() -> None:
        try:
            with _init_lock(stack, cluster_id):
                pg.initialize_bootstrapped()
        except Exception as exc:  # noqa: BLE001 - best effort: ensure() reports it
            log.debug("stand-in %s of %s not prepared: %s", cluster_id, stack, exc)

    thread = threading.Thread(target=initialise, name=f"tap-standin-{cluster_id}")
    thread.start()   # not a daemon: the process waits for it before it ends
    try:
        yield
    except BaseException:
        thread.join()
        with _init_lock(stack, cluster_id):
            if pg.initialized and not pg.is_running():
                pg.remove()
        raise


def sync_master(ctx: Context, stack: str, cluster_id: str) -> None:
    """Make the stand-in's master user the cluster's MasterUsername with the master secret's
    current password and rds_superuser's grants (idempotent; also after a rotation of the
    master secret). Nothing of the password is logged or raised."""
    try:
        recorded = json.loads(_master_file(stack, cluster_id).read_text())
    except FileNotFoundError:
        return  # made by an older tap: ensure() writes it at the next deploy
    pg = LocalPostgres(_data_dir(stack, cluster_id))
    if not pg.is_running():
        return
    cluster = ctx.client("rds").describe_db_clusters(
        DBClusterIdentifier=cluster_id)["DBClusters"][0]
    username = cluster["MasterUsername"]
    secret = json.loads(ctx.client("secretsmanager").get_secret_value(
        SecretId=recorded["secret_arn"], VersionStage="AWSCURRENT")["SecretString"])
    password = secret.get("password")
    if not isinstance(password, str) or not password:
        raise OperationFailed(f"the master secret {recorded['secret_arn']} of cluster "
                              f"{cluster_id} holds no password")
    conn = pg.connect_bootstrap("postgres")
    try:
        ensure_rds_master(conn, username, password, recorded["dbname"])
    finally:
        conn.close()


def sync_masters(ctx: Context, stack: str) -> None:
    """sync_master for every stand-in of the stack."""
    for path in sorted((stack_dir(stack) / "postgres-master").glob("*.json")):
        sync_master(ctx, stack, path.stem)


@dataclass(frozen=True)
class _Clients:
    clients: Callable[[str], Any]

    def client(self, service: str) -> Any:
        return self.clients(service)


def sync_masters_with(clients: Callable[[str], Any], stack: str) -> None:
    """sync_masters for callers without a handler Context (verify): `clients(service)` gives
    boto3 clients on the emulator."""
    sync_masters(_Clients(clients), stack)  # type: ignore[arg-type]


def sync_masters_of(secret_arn: str, clients: Callable[[str], Any]) -> None:
    """sync_master for every stand-in, of any stack, whose master secret is `secret_arn`: the
    emulator's rotation of an RDS-managed secret, after which the cluster's master logs in with
    the new password at once, as on RDS."""
    root = stack_dir("_").parent
    for path in sorted(root.glob("*/postgres-master/*.json")) if root.exists() else ():
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError):
            continue          # damaged: the next deploy of that stack says so
        if isinstance(recorded, dict) and recorded.get("secret_arn") == secret_arn:
            sync_master(_Clients(clients), path.parent.parent.name,  # type: ignore[arg-type]
                        path.stem)


def _adopt_legacy(ctx: Context, pg: LocalPostgres, master_secret_arn: str) -> None:
    """A stand-in an older tap made has the master as its superuser and no bootstrap user:
    log in as that master once and create tap's bootstrap superuser."""
    master = json.loads(ctx.client("secretsmanager").get_secret_value(
        SecretId=master_secret_arn)["SecretString"])
    if not pg.is_running():
        pg.start(master["username"], master["password"])
    password = secrets.token_urlsafe(32)
    conn = pg.connect(master["username"], master["password"], "postgres")
    try:
        conn.run(f"CREATE ROLE {BOOTSTRAP_USER} WITH SUPERUSER LOGIN PASSWORD "
                 f"'{scram_verifier(password)}'")
    finally:
        conn.close()
    pg.remember_bootstrap(password)


def _write_json(path: Path, value: object) -> None:
    """Whole or not at all (a kill mid-write must not leave a truncated file behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, work = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(value))
        os.replace(work, path)
    except BaseException:
        Path(work).unlink(missing_ok=True)
        raise


def _write_hosts(path: Path, hosts: list[str]) -> None:
    _write_json(path, hosts)


def _read_hosts(path: Path) -> list[str]:
    """The endpoint names a stand-in answers for, as ensure() wrote them. Anything else was
    written by hand or damaged: guessing would send tap's connections somewhere unintended."""
    hosts = None
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_HOSTS_BYTES + 1)
        if len(raw) > MAX_HOSTS_BYTES:
            problem = f"is larger than {MAX_HOSTS_BYTES // 1024} KiB"
        else:
            hosts = json.loads(raw.decode("utf-8"))
            problem = "is not a JSON list of endpoint host names"
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or type(exc).__name__})"
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        problem = f"is not JSON ({str(exc)[:120]})"
    if isinstance(hosts, list) and all(isinstance(h, str) and HOST_NAME.fullmatch(h)
                                       for h in hosts):
        return hosts
    raise StateCorrupt(label(path, 400), f"the stand-in database's host list {problem}",
                       hint=f"it holds the JSON list of cluster {label(path.stem)}'s endpoint "
                            "names (Endpoint and ReaderEndpoint of `aws rds describe-db-clusters` "
                            "against the sandbox; `tap sandbox status` shows its address): "
                            "write them back, or delete the file and recreate the stack "
                            "(`tap destroy`, then `tap deploy`), which writes it again")


def host_map(stack: str) -> dict[str, str]:
    """{AWS endpoint name: "127.0.0.1:PORT"} for every stand-in of the stack: what a connection
    to the cluster's endpoint (any port) reaches on the sandbox."""
    found: dict[str, str] = {}
    for path in sorted((stack_dir(stack) / "postgres-hosts").glob("*.json")):
        hosts = _read_hosts(path)
        pg = LocalPostgres(_data_dir(stack, path.stem))
        if pg.port:
            found.update({host: f"{pg.host}:{pg.port}" for host in hosts})
    return found


def remove(ctx: Context, cluster_id: str) -> None:
    stack = stack_of(ctx.urn)
    with _init_lock(stack, cluster_id):
        LocalPostgres(_data_dir(stack, cluster_id)).remove()
    _hosts_file(stack, cluster_id).unlink(missing_ok=True)
    _master_file(stack, cluster_id).unlink(missing_ok=True)


def forget_all(stack: str) -> None:
    """Stop and delete every stand-in server of a stack (destroy, or a lost emulator)."""
    root = stack_dir(stack) / "postgres"
    if root.exists():
        for data_dir in root.iterdir():
            if data_dir.is_dir():   # beside them: their init locks
                LocalPostgres(data_dir).remove()
        shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(stack_dir(stack) / "postgres-hosts", ignore_errors=True)
    shutil.rmtree(stack_dir(stack) / "postgres-master", ignore_errors=True)


def forget_every_stack() -> None:
    """The emulator is stopping or being wiped: every stand-in server loses its meaning."""
    root = stack_dir("_").parent
    if root.exists():
        for directory in root.iterdir():
            forget_all(directory.name)
