"""The master user of a stand-in PostgreSQL, made as Aurora makes it.

On Aurora the cluster's MasterUsername is not a superuser: it is a member of `rds_superuser`,
which may create roles and databases, read and write all data, signal other backends, and
owns the database the cluster was created with. The stand-in gives its master user the same
(no more), so what works here - the rotation function creating and altering the application
user - needs no privilege Aurora would refuse. tap's own setup runs as a separate bootstrap
superuser (LocalPostgres.start_bootstrapped).
"""
from __future__ import annotations

import base64
import logging

import pg8000.native
import scramp

log = logging.getLogger(__name__)

SCRAM_ITERATIONS = 4096
# Predefined roles rds_superuser holds where the server version has them.
RDS_SUPERUSER_ROLES = ("pg_read_all_data", "pg_write_all_data", "pg_signal_backend")


def scram_verifier(password: str) -> str:
    """The stored form of a SCRAM-SHA-256 password: sent instead of the password, so the plain
    text never reaches the server (nor its log, should a statement fail)."""
    salt, stored_key, server_key, iterations = scramp.ScramMechanism(
        "SCRAM-SHA-256").make_auth_info(password, iteration_count=SCRAM_ITERATIONS)
    b64 = lambda data: base64.b64encode(data).decode("ascii")  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def ensure_rds_master(conn: pg8000.native.Connection, username: str, password: str,
                      database: str) -> None:
    """Create or update the master role on a superuser's connection: login with `password`,
    NOSUPERUSER CREATEROLE CREATEDB, rds_superuser's predefined roles, owner of `database`."""
    role = pg8000.native.identifier(username)
    verifier = pg8000.native.literal(scram_verifier(password))
    exists = conn.run("SELECT 1 FROM pg_roles WHERE rolname = :name", name=username)
    present = {row[0] for row in conn.run(
        "SELECT rolname FROM pg_roles WHERE rolname = ANY(CAST(:names AS text[]))",
        names=list(RDS_SUPERUSER_ROLES))}
    conn.run("BEGIN")
    try:
        conn.run(f"{'ALTER' if exists else 'CREATE'} ROLE {role} WITH LOGIN NOSUPERUSER "
                 f"CREATEROLE CREATEDB INHERIT PASSWORD {verifier}")
        for granted in RDS_SUPERUSER_ROLES:
            if granted in present:
                conn.run(f"GRANT {granted} TO {role}")
        conn.run(f"ALTER DATABASE {pg8000.native.identifier(database)} OWNER TO {role}")
        conn.run("COMMIT")
    except Exception:
        conn.run("ROLLBACK")
        raise
    log.info("master user %s set up as rds_superuser has it (no superuser)", username)


def set_password(conn: pg8000.native.Connection, username: str, password: str) -> None:
    """A new password for an existing role (the master secret rotated)."""
    conn.run(f"ALTER ROLE {pg8000.native.identifier(username)} WITH PASSWORD "
             f"{pg8000.native.literal(scram_verifier(password))}")
