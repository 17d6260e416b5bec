"""An operator's way to the stack's database (`tap db connect --env ENV`).

The secret says where the database is and who logs in: the app secret holds host, port,
dbname, username and password; the RDS-managed master secret holds username and password (the
cluster's description gives the rest). On AWS that endpoint is reached from inside the VPC (or
through the operator's own tunnel); on the sandbox the endpoint name is AWS's and the server is
a local stand-in, so the target maps it (Engine.db_address): the one step the secret alone
cannot give. The password is never printed: it goes into a pgpass file under the tap home
(0600), which psql, libpq and psycopg read through `passfile` in the connection string (or
PGPASSFILE in the environment).
"""
from __future__ import annotations

import json
import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, NotDeployed, OperationFailed
from ..project import tap_home

SECRETS = ("app", "master")
PGPASS_NAME = "pgpass"


@dataclass(frozen=True)
class DbConnection:
    """Where and how to connect; holds no password (that is in `passfile`)."""

    host: str
    port: int
    user: str
    dbname: str
    sslmode: str
    sslrootcert: str | None
    passfile: Path
    endpoint: str          # the endpoint the secret names (AWS's name)
    endpoint_port: int

    def conninfo(self) -> str:
        """A libpq connection string (psql, psycopg.connect, pg_dump …)."""
        parts = {"host": self.host, "port": str(self.port), "dbname": self.dbname,
                 "user": self.user, "sslmode": self.sslmode, "passfile": str(self.passfile)}
        if self.sslrootcert:
            parts["sslrootcert"] = self.sslrootcert
        return " ".join(f"{key}={_quote(value)}" for key, value in parts.items())

    def psql_command(self) -> str:
        return f"psql {shlex.quote(self.conninfo())}"

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "user": self.user, "dbname": self.dbname,
                "sslmode": self.sslmode, "sslrootcert": self.sslrootcert,
                "passfile": str(self.passfile), "endpoint": self.endpoint,
                "endpoint_port": self.endpoint_port, "conninfo": self.conninfo(),
                "psql": self.psql_command()}


def _quote(value: str) -> str:
    """libpq's quoting: single quotes around values with spaces, quotes or backslashes."""
    if value and not any(c in value for c in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def db_connect(env: str, target: str | None = None, overrides=(), *, secret: str = "app",
               ca_file: str | None = None) -> DbConnection:
    """The connection facts for `env`'s database, the password stored in the pgpass file."""
    from ..engines.registry import open_engine
    from .stack import settings_for

    if secret not in SECRETS:
        raise ConfigError("unknown secret", field="--secret", value=secret,
                          allowed=", ".join(SECRETS))
    engine = open_engine(settings_for(env, overrides), target, tuple(overrides))
    outputs = engine.outputs() or {}
    if not outputs.get("rds_cluster_id"):
        raise NotDeployed(f"stack {engine.stack} has no database (not deployed?)",
                              hint=f"tap deploy --env {env}")
    clients = engine.clients()
    cluster = clients("rds").describe_db_clusters(
        DBClusterIdentifier=outputs["rds_cluster_id"])["DBClusters"][0]
    if secret == "app":
        arn = outputs.get("db_secret_arn", "")
    else:
        arn = (cluster.get("MasterUserSecret") or {}).get("SecretArn", "")
    values = json.loads(clients("secretsmanager").get_secret_value(
        SecretId=arn, VersionStage="AWSCURRENT")["SecretString"] or "{}")
    if not values.get("password") or not values.get("username"):
        raise OperationFailed(f"the {secret} secret {arn} holds no credentials yet",
                              hint="its first rotation has not run: tap deploy --refresh")
    endpoint = str(values.get("host") or cluster["Endpoint"])
    endpoint_port = int(values.get("port") or cluster["Port"])
    dbname = str(values.get("dbname") or cluster.get("DatabaseName") or "postgres")
    host, port = engine.db_address(endpoint, endpoint_port)
    # Aurora's certificate chains to the RDS bundle and names the endpoint; a stand-in's chains
    # to the sandbox CA and names the local address too: verified in full either way.
    ca, sslmode = str(ca_file or engine.db_ca_file()), "verify-full"
    passfile = store_password(host, port, dbname, values["username"], values["password"])
    return DbConnection(host, port, values["username"], dbname, sslmode, ca, passfile,
                        endpoint, endpoint_port)


def pgpass_path() -> Path:
    return tap_home() / PGPASS_NAME


def _escape(field: str) -> str:
    return str(field).replace("\\", "\\\\").replace(":", "\\:")


def store_password(host: str, port: int, dbname: str, user: str, password: str) -> Path:
    """Put (or replace) the line for host:port:dbname:user in the pgpass file, 0600, whole or
    not at all; other lines stay."""
    path = pgpass_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = ":".join(_escape(v) for v in (host, str(port), dbname, user)) + ":"
    lines = []
    if path.exists():
        lines = [line for line in path.read_text().splitlines()
                 if line and not line.startswith(key)]
    lines.append(key + _escape(password))
    fd, work = tempfile.mkstemp(dir=path.parent, prefix=f".{PGPASS_NAME}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:  # mkstemp: 0600 from the start
            fh.write("\n".join(lines) + "\n")
        os.replace(work, path)
    except BaseException:
        Path(work).unlink(missing_ok=True)
        raise
    return path
