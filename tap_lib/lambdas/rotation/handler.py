"""Secrets Manager rotation of the payment application's PostgreSQL password.

Secret (JSON): {"engine": "postgres", "host", "port", "dbname", "username", "password",
"masterarn"}. The stack writes the first version without "password", so no password ever
passes through the deployment tool; the first rotation creates the role and its password.
"masterarn" names the RDS-managed master secret, {"username", "password"}.

Connection facts come from this function's environment when it has them (DB_HOST, DB_PORT,
DB_NAME, DB_USERNAME, MASTER_SECRET_ARN, set by the stack from the cluster and the settings):
createSecret writes them into every new version, so a rotation after a change of port,
database, user or cluster leaves a secret that describes the database as it is now, and a new
DB_USERNAME gets its role on that rotation (which also grants it the previous user's role, so
the tables the payment function created stay usable, also after a rename back to an earlier
user). Without them, the AWSCURRENT version's
facts are kept (as AWS's rotation templates do).

Strategy: one application user whose password the master user changes. Chosen because
- the application's table and grants stay with one role: with alternating users, the table
  the payment function creates belongs to whichever user created it, and the other user's
  privileges would have to be kept in sync;
- the master credentials are managed (and rotated) by RDS, so this function can also create
  the role on the first rotation, which is what keeps the password out of the stack;
- its cost is a short window, between setSecret and finishSecret, in which the database accepts
  only the AWSPENDING password. The payment function covers it: when a login is refused for
  authentication it re-reads AWSCURRENT, then AWSPENDING, and retries. Open sessions are not
  affected (PostgreSQL checks passwords at login only).
A failure in setSecret changes nothing in the database, and testSecret refuses to let a
password the database does not accept become AWSCURRENT; either way AWSCURRENT keeps working.
(If testSecret fails after setSecret did change the password, AWSCURRENT stays stale until
Secrets Manager retries the rotation; the payment function keeps working through AWSPENDING.)

Every step is safe to repeat, as Secrets Manager retries: createSecret reuses the AWSPENDING
version of the token, setSecret does nothing when the pending password already logs in,
finishSecret does nothing once the token is AWSCURRENT. finishSecret also removes the
AWSPENDING label, so a finished rotation leaves AWSCURRENT on the new version, AWSPREVIOUS on the
old one and no AWSPENDING.

Every connection is TLS as sslmode=verify-full, against DB_CA_FILE (a path; relative ones are
taken beside this file) or the RDS CA bundle shipped beside this file (rds-global-bundle.pem).

The password reaches PostgreSQL as a SCRAM-SHA-256 verifier computed here, never in plain text
(so not in the server's statement log either). Nothing secret is logged, returned or put in an
exception message. Only the standard library, boto3 and pg8000 are used: this file is packaged
with pg8000 and pgclient.py (TLS and the socket, shared with the payment function).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import ssl
from typing import Any

import boto3
import pg8000.native
from botocore.exceptions import ClientError

try:
    from .. import pgclient           # in tap_lib: tests and tap's own runs
except ImportError:
    import pgclient                   # packaged: at the archive's root beside this file

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)
# botocore's DEBUG records carry request and response bodies, i.e. secret values.
for _wire_logger in ("botocore.endpoint", "botocore.parsers"):
    logging.getLogger(_wire_logger).setLevel(logging.INFO)

PASSWORD_LENGTH = 32
# Characters that break connection strings and URLs, or need quoting in shells.
EXCLUDED_CHARACTERS = "/@\"'\\ "
CONNECT_TIMEOUT_S = 10
SCRAM_ITERATIONS = 4096
REQUIRED_KEYS = ("engine", "host", "port", "dbname", "username", "masterarn")
# Secret key <- environment variable: the connection as the stack declares it now.
ENVIRONMENT_FACTS = {"host": "DB_HOST", "port": "DB_PORT", "dbname": "DB_NAME",
                     "username": "DB_USERNAME", "masterarn": "MASTER_SECRET_ARN"}
# invalid_password, invalid_authorization_specification
AUTH_FAILED = frozenset({"28P01", "28000"})


class RotationError(Exception):
    """A rotation step cannot complete. Messages name secrets and versions, never values."""


def lambda_handler(event: dict[str, Any], context: Any) -> None:
    """Run one rotation step, after the checks AWS's rotation contract asks for."""
    arn, token, step = event["SecretId"], event["ClientRequestToken"], event["Step"]
    client = boto3.client("secretsmanager")
    metadata = client.describe_secret(SecretId=arn)
    if not metadata.get("RotationEnabled"):
        raise RotationError(f"secret {arn} is not enabled for rotation")
    stages: dict[str, list[str]] = metadata.get("VersionIdsToStages", {})
    if token not in stages:
        raise RotationError(f"version {token} of secret {arn} has no stage for rotation")
    if "AWSCURRENT" in stages[token] and "AWSPENDING" not in stages[token]:
        logger.info("%s: version %s of %s is already AWSCURRENT", step, token, arn)
        return
    if "AWSPENDING" not in stages[token]:
        raise RotationError(f"version {token} of secret {arn} is not AWSPENDING")

    if step == "createSecret":
        create_secret(client, arn, token)
    elif step == "setSecret":
        set_secret(client, arn, token)
    elif step == "testSecret":
        test_secret(client, arn, token)
    elif step == "finishSecret":
        finish_secret(client, arn, token, stages)
    else:
        raise RotationError(f"unknown rotation step {step!r}")


def create_secret(client: Any, arn: str, token: str) -> None:
    """Store AWSCURRENT, updated with the current connection facts and a new random password,
    as the token's AWSPENDING version."""
    current = {**_secret(client, arn, "AWSCURRENT", require_password=False,
                         required=("engine",)), **current_facts()}
    missing = [key for key in REQUIRED_KEYS if current.get(key) in (None, "")]
    if missing:
        raise RotationError(f"AWSCURRENT version of secret {arn} lacks {', '.join(missing)} "
                            "and the function's environment does not set them")
    try:
        _secret(client, arn, "AWSPENDING", token)
        logger.info("createSecret: AWSPENDING version %s of %s already exists", token, arn)
        return
    except ClientError as exc:
        if _error_code(exc) != "ResourceNotFoundException":
            raise
    password = client.get_random_password(
        PasswordLength=PASSWORD_LENGTH, ExcludeCharacters=EXCLUDED_CHARACTERS,
        RequireEachIncludedType=True)["RandomPassword"]
    client.put_secret_value(SecretId=arn, ClientRequestToken=token,
                            SecretString=json.dumps({**current, "password": password}),
                            VersionStages=["AWSPENDING"])
    logger.info("createSecret: stored a new password as AWSPENDING version %s of %s", token, arn)


def set_secret(client: Any, arn: str, token: str) -> None:
    """As the master user, create the role if missing, set the pending password, grant access."""
    pending = _secret(client, arn, "AWSPENDING", token)
    if _login_works(pending):
        logger.info("setSecret: the database already accepts version %s of %s", token, arn)
        return
    master = _master_credentials(client, pending["masterarn"])
    if master["username"] == pending["username"]:
        raise RotationError(f"secret {arn} names the master user; it must name the application "
                            "user, whose password this function may change")
    try:
        conn = _connect(pending, master["username"], master["password"])
    except pg8000.native.DatabaseError as exc:
        raise RotationError(f"setSecret: cannot log in with master secret {pending['masterarn']}"
                            f" for {arn}: {_describe(exc)}") from exc
    try:
        _apply(conn, pending, _previous_user(client, arn, pending))
    except pg8000.native.DatabaseError as exc:
        raise RotationError(f"setSecret: cannot set the password of version {token} of {arn}: "
                            f"{_describe(exc)}") from exc
    finally:
        conn.close()
    logger.info("setSecret: database user %s now has the password of version %s of %s",
                pending["username"], token, arn)


def test_secret(client: Any, arn: str, token: str) -> None:
    """Log in with the pending version and check the privileges the payment function needs."""
    pending = _secret(client, arn, "AWSPENDING", token)
    try:
        conn = _connect(pending, pending["username"], pending["password"])
    except pg8000.native.DatabaseError as exc:
        raise RotationError(f"testSecret: the database refuses version {token} of {arn}: "
                            f"{_describe(exc)}") from exc
    try:
        granted = conn.run("SELECT has_database_privilege(current_database(), 'CONNECT'), "
                           "has_schema_privilege('public', 'USAGE'), "
                           "has_schema_privilege('public', 'CREATE')")[0]
    finally:
        conn.close()
    if not all(granted):
        raise RotationError(f"testSecret: user {pending['username']} of version {token} of {arn}"
                            " lacks CONNECT, or USAGE and CREATE on schema public")
    logger.info("testSecret: version %s of %s logs in with the privileges it needs", token, arn)


def finish_secret(client: Any, arn: str, token: str, stages: dict[str, list[str]]) -> None:
    """Move AWSCURRENT to the token (Secrets Manager moves AWSPREVIOUS) and drop AWSPENDING."""
    current = next((version for version, labels in stages.items() if "AWSCURRENT" in labels),
                   None)
    if current != token:
        moved = {"RemoveFromVersionId": current} if current else {}
        client.update_secret_version_stage(SecretId=arn, VersionStage="AWSCURRENT",
                                           MoveToVersionId=token, **moved)
        logger.info("finishSecret: version %s of %s is now AWSCURRENT (was %s)", token, arn,
                    current)
    client.update_secret_version_stage(SecretId=arn, VersionStage="AWSPENDING",
                                       RemoveFromVersionId=token)


def scram_verifier(password: str, *, salt: bytes | None = None,
                   iterations: int = SCRAM_ITERATIONS) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password, as psql's \\password computes it.

    Sent instead of the password, so the plain text never reaches the server. Only printable
    ASCII is accepted: SASLprep leaves it unchanged, so no normalisation is needed.
    """
    if not (password.isascii() and password.isprintable()):
        raise RotationError("generated passwords must be printable ASCII")
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return (f"SCRAM-SHA-256${iterations}:{_b64(salt)}$"
            f"{_b64(stored_key)}:{_b64(server_key)}")


def current_facts() -> dict[str, Any]:
    """The connection facts this function's environment sets (see the module docstring)."""
    facts: dict[str, Any] = {key: os.environ[var] for key, var in ENVIRONMENT_FACTS.items()
                             if os.environ.get(var)}
    if "port" in facts:
        facts["port"] = int(facts["port"])
    return facts


def _previous_user(client: Any, arn: str, pending: dict[str, Any]) -> str | None:
    """AWSCURRENT's user when the pending version names another one (a renamed user)."""
    current = _secret(client, arn, "AWSCURRENT", require_password=False, required=())
    previous = current.get("username")
    return previous if previous and previous != pending["username"] else None


def _apply(conn: pg8000.native.Connection, secret: dict[str, Any],
           previous: str | None = None) -> None:
    """Role, password and grants in one transaction: all of them or none. A renamed user is
    made a member of the previous user's role: the payment function's table belongs to
    whichever user created it, and the new user must keep using it."""
    role = pg8000.native.identifier(secret["username"])
    verifier = pg8000.native.literal(scram_verifier(secret["password"]))
    exists = conn.run("SELECT 1 FROM pg_roles WHERE rolname = :name", name=secret["username"])
    conn.run("BEGIN")
    conn.run(f"{'ALTER' if exists else 'CREATE'} ROLE {role} WITH LOGIN PASSWORD {verifier}")
    conn.run(f"GRANT CONNECT ON DATABASE {pg8000.native.identifier(secret['dbname'])} TO {role}")
    # The payment function creates and then owns its table; it needs nothing else.
    conn.run(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
    if previous and conn.run("SELECT 1 FROM pg_roles WHERE rolname = :old AND NOT "
                             "pg_has_role(:new, :old, 'MEMBER')",
                             old=previous, new=secret["username"]):
        _inherit(conn, secret["username"], previous)
    conn.run("COMMIT")


def _inherit(conn: pg8000.native.Connection, new: str, previous: str) -> None:
    """GRANT previous TO new. A rename back to an earlier user (a -> b -> a) finds the previous
    user a member of the new one, through the grants earlier renames made; PostgreSQL refuses
    a circular membership, so those links are revoked first: the users they served are retired
    (the previous one only until finishSecret, a second later; its own objects stay its own)."""
    links = conn.run(
        "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member "
        "JOIN pg_roles r ON r.oid = a.roleid "
        "WHERE r.rolname = :new AND pg_has_role(:old, m.oid, 'MEMBER')",
        new=new, old=previous)
    for (member,) in links:
        conn.run(f"REVOKE {pg8000.native.identifier(new)} FROM "
                 f"{pg8000.native.identifier(member)}")
    conn.run(f"GRANT {pg8000.native.identifier(previous)} TO {pg8000.native.identifier(new)}")


def _secret(client: Any, arn: str, stage: str, token: str | None = None, *,
            require_password: bool = True,
            required: tuple[str, ...] = REQUIRED_KEYS) -> dict[str, Any]:
    request = {"SecretId": arn, "VersionStage": stage}
    if token:
        request["VersionId"] = token
    secret: dict[str, Any] = json.loads(client.get_secret_value(**request)["SecretString"])
    needed = required + (("password",) if require_password else ())
    missing = [key for key in needed if secret.get(key) in (None, "")]
    if missing:
        raise RotationError(f"{stage} version of secret {arn} lacks {', '.join(missing)}")
    if secret.get("engine", "postgres") != "postgres":
        raise RotationError(f"secret {arn} is for engine {secret['engine']!r}, not postgres")
    return secret


def _master_credentials(client: Any, master_arn: str) -> dict[str, str]:
    master: dict[str, str] = json.loads(client.get_secret_value(
        SecretId=master_arn, VersionStage="AWSCURRENT")["SecretString"])
    if not master.get("username") or not master.get("password"):
        raise RotationError(f"master secret {master_arn} lacks username or password")
    return master


def _login_works(secret: dict[str, Any]) -> bool:
    try:
        _connect(secret, secret["username"], secret["password"]).close()
    except pg8000.native.DatabaseError as exc:
        if _sqlstate(exc) in AUTH_FAILED:
            return False
        raise
    return True


def _connect(secret: dict[str, Any], user: str, password: str) -> pg8000.native.Connection:
    return pgclient.connect(user, password, secret["host"], int(secret["port"]),
                            secret["dbname"], timeout=CONNECT_TIMEOUT_S,
                            application_name="tap-rotation",
                            ssl_context=tls_context(os.environ.get("DB_CA_FILE") or ""))


def tls_context(ca_file: str) -> ssl.SSLContext:
    """pgclient.tls_context beside this file; a missing bundle is a RotationError."""
    try:
        return pgclient.tls_context(ca_file, os.path.dirname(os.path.abspath(__file__)))
    except pgclient.NoCaBundle as exc:
        raise RotationError(str(exc)) from None


def _sqlstate(exc: Exception) -> str | None:
    details = exc.args[0] if exc.args else None
    return details.get("C") if isinstance(details, dict) else None


def _describe(exc: Exception) -> str:
    """SQLSTATE and server message only: enough to act on, nothing from the request."""
    details = exc.args[0] if exc.args else None
    if isinstance(details, dict):
        return f"{details.get('C')} {details.get('M')}"
    return type(exc).__name__


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
