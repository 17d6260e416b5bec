"""A real PostgreSQL standing in for the Aurora cluster, and rotation run like Secrets Manager
would run it - so that the sandbox exercises real credentials and real connectivity.

The emulator creates the cluster's RDS-managed master secret; the stand-in server is started
with exactly those credentials. Its data lives under the stack's state directory and goes away
with the cluster (destroy, or an emulator restart that lost the stack).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ...config_yaml import label
from ...errors import StateCorrupt
from ...localdb import LocalPostgres
from .handlers.base import Context
from .lambda_runtime import invoke_sequence
from .state import stack_dir

ROTATION_STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
# A hosts file lists a cluster's two endpoint names; anything much larger was not written by tap.
MAX_HOSTS_BYTES = 64 * 1024
HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


def _stack_of(urn: str) -> str:
    return urn.split("::")[0].removeprefix("urn:pulumi:")


def _data_dir(stack: str, cluster_id: str) -> Path:
    return stack_dir(stack) / "postgres" / cluster_id


def _hosts_file(stack: str, cluster_id: str) -> Path:
    return stack_dir(stack) / "postgres-hosts" / f"{cluster_id}.json"


def ensure(ctx: Context, cluster_id: str, master_secret_arn: str, dbname: str,
           hosts: tuple[str | None, ...] = ()) -> Endpoint:
    """Start (or re-attach to) the stand-in server for this cluster; `hosts` are the cluster's
    AWS endpoint names, which tap's own connections map to it (host_map)."""
    stack = _stack_of(ctx.urn)
    pg = LocalPostgres(_data_dir(stack, cluster_id))
    if not pg.is_running():
        master = json.loads(ctx.client("secretsmanager").get_secret_value(
            SecretId=master_secret_arn)["SecretString"])
        pg.start(superuser=master["username"], password=master["password"], database=dbname)
    _write_hosts(_hosts_file(stack, cluster_id), sorted(h for h in hosts if h))
    return Endpoint(pg.host, pg.port)


def _write_hosts(path: Path, hosts: list[str]) -> None:
    """Whole or not at all (a kill mid-write must not leave a truncated file behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, work = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(hosts))
        os.replace(work, path)
    except BaseException:
        Path(work).unlink(missing_ok=True)
        raise


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
    stack = _stack_of(ctx.urn)
    LocalPostgres(_data_dir(stack, cluster_id)).remove()
    _hosts_file(stack, cluster_id).unlink(missing_ok=True)


def forget_all(stack: str) -> None:
    """Stop and delete every stand-in server of a stack (destroy, or a lost emulator)."""
    root = stack_dir(stack) / "postgres"
    if root.exists():
        for data_dir in root.iterdir():
            LocalPostgres(data_dir).remove()
        shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(stack_dir(stack) / "postgres-hosts", ignore_errors=True)


def forget_every_stack() -> None:
    """The emulator is stopping or being wiped: every stand-in server loses its meaning."""
    root = stack_dir("_").parent
    if root.exists():
        for directory in root.iterdir():
            forget_all(directory.name)


def rotate_in_process(ctx: Context, secret_id: str, token: str, function_arn: str) -> None:
    """The four rotation steps, in order, as Secrets Manager invokes them, with the rotation
    function's environment."""
    lam = ctx.client("lambda")
    variables = lam.get_function_configuration(FunctionName=function_arn).get(
        "Environment", {}).get("Variables", {})
    invoke_sequence("rotation", [{"Step": step, "SecretId": secret_id, "ClientRequestToken": token}
                                 for step in ROTATION_STEPS],
                    endpoint=lam.meta.endpoint_url, region=ctx.region, variables=variables,
                    hosts=host_map(_stack_of(ctx.urn)))
