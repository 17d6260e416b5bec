"""Helpers the test modules share: sandbox engines, the `tap` command line (in this process or
in a real one) and live resources counted through boto3 (what the emulator holds, not tap's
state). Plain functions, imported by name (`from helpers import make_engine`)."""
from __future__ import annotations

import contextlib
import functools
import io
import os
import subprocess
import sys
from typing import Callable, NamedTuple

import pytest

TAP = (sys.executable, "-m", "tap_lib.cli")


# -- engines -------------------------------------------------------------------------------------

def make_engine(*overrides: str, env: str = "dev", suffix: str | None = None, program=None,
                tags: dict | None = None):
    """A SandboxEngine on params/<env>.yaml with `--set` overrides (`suffix=` first, as the
    modules' own factories had it); `tags` replaces the whole tag map (`--set` can change a
    key but not remove one); `program` a test's variant of the stack's program."""
    from tap_lib.config import load_settings
    from tap_lib.engines.sandbox.engine import SandboxEngine

    settings = load_settings(env, [*([f"suffix={suffix}"] if suffix else []), *overrides])
    if tags is not None:
        settings = settings.model_copy(update={"tags": tags})
    return SandboxEngine(settings, program=program)


def engines(env: str = "dev", suffix: str | None = None) -> Callable[..., object]:
    """make_engine with a module's environment and stack suffix fixed:
    `engine = engines("dev", "flt")`, then `engine("db.port=5433")`."""
    return functools.partial(make_engine, env=env, suffix=suffix)


# -- the command line ----------------------------------------------------------------------------

class Ran(NamedTuple):
    """An in-process `tap` run: unpacks as (code, out, err) and reads like a CompletedProcess."""
    returncode: int
    stdout: str
    stderr: str


def tap(*args: str, env: dict[str, str | None] | None = None) -> Ran:
    """`tap ARGS` in this process (a cold `tap` costs seconds to import), its output captured;
    `env` sets variables for the run (None unsets one)."""
    from tap_lib import cli

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        for key, value in (env or {}).items():
            if value is None:
                mp.delenv(key, raising=False)
            else:
                mp.setenv(key, value)
        code = cli.main(list(args))
    return Ran(code, out.getvalue(), err.getvalue())


def _environ(env: dict[str, str | None] | None) -> dict[str, str]:
    merged = {**os.environ, **(env or {})}
    return {k: v for k, v in merged.items() if v is not None}


def tap_process(*args: str, env: dict[str, str | None] | None = None, timeout: float = 300,
                close_stdin: bool = False, **run) -> subprocess.CompletedProcess:
    """`python -m tap_lib.cli ARGS` in a process of its own, where the process matters (exit
    path, closed stdin, a fresh interpreter); `env` overlays os.environ (None unsets)."""
    if close_stdin:
        run["preexec_fn"] = lambda: os.close(0)
    return subprocess.run([*TAP, *args], capture_output=True, text=True, timeout=timeout,
                          env=_environ(env), **run)


def tap_popen(*args: str, env: dict[str, str | None] | None = None,
              **popen) -> subprocess.Popen:
    """`python -m tap_lib.cli ARGS` started and left running (killed or raced by the test),
    stdout and stderr piped as text."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([*TAP, *args], text=True, env=_environ(env), **popen)


# -- live resources ------------------------------------------------------------------------------

KINDS = {  # name: (service, list call, key of its answer)
    "vpcs": ("ec2", "describe_vpcs", "Vpcs"),
    "subnets": ("ec2", "describe_subnets", "Subnets"),
    "eips": ("ec2", "describe_addresses", "Addresses"),
    "nats": ("ec2", "describe_nat_gateways", "NatGateways"),
    "route_tables": ("ec2", "describe_route_tables", "RouteTables"),
    "clusters": ("rds", "describe_db_clusters", "DBClusters"),
    "instances": ("rds", "describe_db_instances", "DBInstances"),
    "buckets": ("s3", "list_buckets", "Buckets"),
    "functions": ("lambda", "list_functions", "Functions"),
    "secrets": ("secretsmanager", "list_secrets", "SecretList"),
    "kms_keys": ("kms", "list_keys", "Keys"),
    "roles": ("iam", "list_roles", "Roles"),
}


def region_clients(region: str) -> Callable[[str], object]:
    """boto3 clients on the sandbox emulator in `region` (as eng.clients() gives an engine's)."""
    from tap_lib.engines.sandbox import server

    return lambda service: server.client(service, region)


def _clients(where) -> Callable[[str], object]:
    """An engine's boto3 clients, or `where` itself (region_clients, eng.clients())."""
    return where.clients() if hasattr(where, "clients") else where


def tagged(where, kind: str, stack: str) -> list[dict]:
    """`stack`'s live resources of one kind (KINDS) on `where` (an engine or its clients):
    those whose tap:urn tag names the stack (EC2 filters by the tag key server-side), leaving
    out NAT gateways being deleted."""
    clients = _clients(where)
    service, call, key = KINDS[kind]
    ask = {"Filters": [{"Name": "tag-key", "Values": ["tap:urn"]}]} if service == "ec2" else {}
    prefix = f"urn:pulumi:{stack}::"
    return [i for i in getattr(clients(service), call)(**ask)[key]
            if any(t["Key"] == "tap:urn" and t["Value"].startswith(prefix)
                   for t in i.get("Tags", []))
            and i.get("State") not in ("deleted", "deleting")]


def live_counts(where, *kinds: str, stack: str | None = None) -> dict[str, int]:
    """How many of each kind the emulator holds: `stack`'s own (tagged), or all of them."""
    clients = _clients(where)
    if stack is not None:
        return {kind: len(tagged(clients, kind, stack)) for kind in kinds}
    counts = {}
    for kind in kinds:
        service, call, key = KINDS[kind]
        counts[kind] = len(getattr(clients(service), call)()[key])
    return counts
