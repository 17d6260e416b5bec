"""Payment processing: validate a payment, record it in PostgreSQL, log it to S3.

Event (direct invocation): {"payment_id": 1-64 of [A-Za-z0-9_-], "amount": decimal string or
number > 0 with at most 2 decimals, "currency": ISO 4217 code, "merchant_id": 1-64 of
[A-Za-z0-9_.:-], "metadata": optional JSON object}. Environment: DB_SECRET_ARN, BUCKET_NAME,
DB_HOST, DB_PORT, DB_NAME (the cluster as the stack declares it; the secret's copies are used
only where these are unset), LOG_PREFIX (default "transactions"), DB_CA_FILE (the CA bundle
the database's certificate is verified with; default rds-global-bundle.pem, shipped beside
this file: the RDS CAs).

TLS as sslmode=verify-full: the server's certificate must chain to DB_CA_FILE and name the
host connected to (the cluster endpoint); a plain connection is never attempted.

Responses are {"statusCode", "body": JSON text}: 200 when recorded or already recorded
("duplicate": true), 400 for invalid input (each error names its field; nothing is written),
409 when a payment_id is reused for a different payment. Failures of the database or S3 raise,
so the caller retries; retries are safe because payment_id is the idempotency key.

Write order: one statement (its own transaction) inserts the row (INSERT ... ON CONFLICT DO
NOTHING) and returns it or the row stored earlier; then the log
object s3://BUCKET/PREFIX/yyyy/mm/dd/<payment_id>.json is written from the stored row with
If-None-Match: *. So no log object exists for a payment the database lacks, a retry after a
crash between the two writes the missing object, and no retry writes a second one.

Where to connect comes from the environment, which a deploy updates in place when the cluster
changes; who to log in as, and the password, come from the secret (see the rotation
function). A warm container keeps its connection, its boto3 clients and the secret it read
(for SECRET_TTL_S, after which the next login reads it again), as a Lambda container keeps
them between invocations; one payment is then one database round trip (the insert, prepared
once per connection) and one S3 request (on the client's kept-alive HTTP connection).
A connection the server dropped is replaced once, transparently. A login refused for
authentication means a rotation changed the password: AWSCURRENT is read again, then
AWSPENDING (between the rotation's setSecret and finishSecret only the pending password
works), and the login retried.
Nothing secret is logged or returned. Only the standard library, boto3 and pg8000 are used:
this file is packaged with pg8000 and pgclient.py (TLS and the socket, shared with rotation).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, TypeVar, cast

import boto3
import pg8000.native
from botocore.exceptions import ClientError
from botocore.handlers import add_expect_header

try:
    from .. import pgclient           # in tap_lib: tests and tap's own runs
except ImportError:
    import pgclient                   # packaged: at the archive's root beside this file

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)
# botocore's DEBUG records carry request and response bodies, i.e. secret values.
for _wire_logger in ("botocore.endpoint", "botocore.parsers"):
    logging.getLogger(_wire_logger).setLevel(logging.INFO)

DEFAULT_LOG_PREFIX = "transactions"
CONNECT_TIMEOUT_S = 10
# How long a warm container trusts the secret it read before the next login reads it again.
SECRET_TTL_S = 300
# invalid_password, invalid_authorization_specification
AUTH_FAILED = frozenset({"28P01", "28000"})
PAYMENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MERCHANT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
AMOUNT_TEXT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")
MAX_AMOUNT = Decimal("999999999999.99")  # numeric(14, 2)
MAX_METADATA_BYTES = 4096
FIELDS = ("payment_id", "amount", "currency", "merchant_id", "metadata")
# ISO 4217 currencies in circulation (funds, metals and test codes excluded).
CURRENCIES = frozenset("""
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD
    FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP
    MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR
    RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT
    TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR
    ZMW ZWG
""".split())
COLUMNS = "payment_id, amount, currency, merchant_id, metadata, created_at"
SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    payment_id  varchar(64)   PRIMARY KEY,
    amount      numeric(14,2) NOT NULL CHECK (amount > 0),
    currency    char(3)       NOT NULL,
    merchant_id varchar(64)   NOT NULL,
    metadata    jsonb         NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz   NOT NULL DEFAULT now()
)"""

T = TypeVar("T")

# Per-container state, reused across invocations.
_credentials: dict[str, Any] | None = None
_credentials_read_at = 0.0
_connection: pg8000.native.Connection | None = None
_statements: dict[str, Any] = {}  # prepared on _connection, gone with it
_clients: dict[str, Any] = {}
_tls: ssl.SSLContext | None = None


class CredentialsRejected(Exception):
    """The database refused every password the secret holds."""


@dataclass(frozen=True)
class Payment:
    payment_id: str
    amount: Decimal
    currency: str
    merchant_id: str
    metadata: dict[str, Any] = field(default_factory=dict)


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Record one payment; see the module docstring for the contract."""
    payment, errors = validate_payment(event)
    if payment is None:
        logger.info("rejected a payment: invalid %s", ", ".join(e["field"] for e in errors))
        return _response(400, {"error": "invalid payment", "errors": errors})
    bucket = _env("BUCKET_NAME")
    stored, inserted = _with_connection(lambda conn: _record(conn, payment))
    if not inserted and not _same_payment(stored, payment):
        logger.warning("payment %s: id reused for a different payment", payment.payment_id)
        return _response(409, {"error": "payment_id already used for a different payment",
                               "payment_id": payment.payment_id})
    key = log_key(os.environ.get("LOG_PREFIX", DEFAULT_LOG_PREFIX), stored)
    _write_log(bucket, key, stored)
    logger.info("payment %s recorded%s", payment.payment_id, "" if inserted else " (duplicate)")
    return _response(200, {**stored, "duplicate": not inserted,
                           "log_object": f"s3://{bucket}/{key}"})


def validate_payment(event: Any) -> tuple[Payment | None, list[dict[str, str]]]:
    """The payment, or None and one error per offending field."""
    if not isinstance(event, dict):
        return None, [{"field": "event", "message": "must be a JSON object"}]
    errors = [{"field": str(name), "message": "unexpected field"}
              for name in event if name not in FIELDS]

    def check(name: str, ok: bool, message: str) -> None:
        if not ok:
            errors.append({"field": name, "message": message})

    payment_id, merchant_id = event.get("payment_id"), event.get("merchant_id")
    check("payment_id", isinstance(payment_id, str) and bool(PAYMENT_ID.fullmatch(payment_id)),
          "must be 1-64 characters of A-Z, a-z, 0-9, _ and -")
    amount, amount_error = _amount(event.get("amount"))
    check("amount", amount_error is None, amount_error or "")
    currency = event.get("currency")
    check("currency", isinstance(currency, str) and currency in CURRENCIES,
          "must be an ISO 4217 currency code in upper case, such as USD")
    check("merchant_id",
          isinstance(merchant_id, str) and bool(MERCHANT_ID.fullmatch(merchant_id)),
          "must be 1-64 characters of A-Z, a-z, 0-9, _, ., : and -")
    metadata = event.get("metadata")
    metadata = {} if metadata is None else metadata
    check("metadata", _valid_metadata(metadata),
          f"must be a JSON object with string keys, at most {MAX_METADATA_BYTES} bytes")
    if errors:
        return None, errors
    # All checked above.
    return Payment(cast(str, payment_id), cast(Decimal, amount), cast(str, currency),
                   cast(str, merchant_id), metadata), []


def log_key(prefix: str, stored: dict[str, Any]) -> str:
    """<prefix>/<yyyy>/<mm>/<dd>/<payment_id>.json, dated by when the payment was recorded."""
    day = datetime.fromisoformat(stored["created_at"]).strftime("%Y/%m/%d")
    return "/".join(part for part in (prefix.strip("/"), day, f"{stored['payment_id']}.json")
                    if part)


def reset_cache() -> None:
    """Forget the connection, credentials, TLS settings and AWS clients (a fresh container)."""
    global _credentials, _tls
    close_connection()
    _credentials = None
    _tls = None
    _clients.clear()


def close_connection() -> None:
    """Drop the cached connection but keep the cached credentials (a lost connection)."""
    global _connection
    _statements.clear()
    if _connection is not None:
        with contextlib.suppress(pg8000.native.InterfaceError, OSError):
            _connection.close()
        _connection = None


def _amount(value: Any) -> tuple[Decimal | None, str | None]:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        return None, "must be a decimal string or a number"
    if isinstance(value, str) and not AMOUNT_TEXT.fullmatch(value):
        return None, "must be digits with at most 2 decimals, such as 12.50"
    # repr() is the shortest text that reads back as the same float: 0.1 stays 0.1.
    amount = Decimal(repr(value) if isinstance(value, float) else value)
    if not amount.is_finite() or int(amount.as_tuple().exponent) < -2:
        return None, "must be a finite number with at most 2 decimals"
    if not Decimal(0) < amount <= MAX_AMOUNT:
        return None, f"must be greater than 0 and at most {MAX_AMOUNT}"
    return amount.quantize(Decimal("0.01")), None


def _valid_metadata(metadata: Any) -> bool:
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        return False
    try:
        size = len(json.dumps(metadata, allow_nan=False).encode())
    except (TypeError, ValueError):
        return False
    return size <= MAX_METADATA_BYTES


# One statement, so one round trip and its own transaction: the inserted row, or (inserted =
# false) the row already stored under the id. The outer SELECT's snapshot predates the INSERT,
# so it never sees the row just inserted; a row committed by a concurrent insert of the same
# id after that snapshot is read by the fallback SELECT in _record.
RECORD = (f"WITH inserted AS (INSERT INTO payments (payment_id, amount, currency, merchant_id, "
          "metadata) VALUES (:payment_id, :amount, :currency, :merchant_id, "
          f"CAST(:metadata AS jsonb)) ON CONFLICT (payment_id) DO NOTHING RETURNING {COLUMNS}) "
          f"SELECT {COLUMNS}, true FROM inserted UNION ALL "
          f"SELECT {COLUMNS}, false FROM payments WHERE payment_id = :payment_id")


def _record(conn: pg8000.native.Connection, payment: Payment) -> tuple[dict[str, Any], bool]:
    """Insert the payment unless its id exists: (stored row, inserted)."""
    rows = _prepared(conn, RECORD).run(
        payment_id=payment.payment_id, amount=payment.amount, currency=payment.currency,
        merchant_id=payment.merchant_id, metadata=json.dumps(payment.metadata))
    if not rows:
        rows = [[*row, False] for row in conn.run(
            f"SELECT {COLUMNS} FROM payments WHERE payment_id = :payment_id",
            payment_id=payment.payment_id)]
    payment_id, amount, currency, merchant_id, metadata, created_at, inserted = rows[0]
    return {"payment_id": payment_id, "amount": f"{amount:.2f}", "currency": currency,
            "merchant_id": merchant_id, "metadata": metadata, "status": "recorded",
            "created_at": created_at.astimezone(timezone.utc).isoformat()}, inserted


def _prepared(conn: pg8000.native.Connection, sql: str) -> Any:
    """`sql` prepared once per connection: parsed and planned by the server once, then each
    run is a bind and an execute."""
    statement = _statements.get(sql)
    if statement is None or statement.con is not conn:
        statement = _statements[sql] = conn.prepare(sql)
    return statement


def _same_payment(stored: dict[str, Any], payment: Payment) -> bool:
    return (Decimal(stored["amount"]) == payment.amount and stored["currency"] == payment.currency
            and stored["merchant_id"] == payment.merchant_id
            and stored["metadata"] == payment.metadata)


def _write_log(bucket: str, key: str, stored: dict[str, Any]) -> None:
    body = json.dumps(stored, sort_keys=True).encode()
    try:
        _client("s3").put_object(Bucket=bucket, Key=key, Body=body,
                                 ContentType="application/json", IfNoneMatch="*")
    except ClientError as exc:
        if _error_code(exc) != "PreconditionFailed":
            raise
        logger.info("transaction log %s was already written", key)


def _with_connection(work: Callable[[pg8000.native.Connection], T]) -> T:
    """Run `work` on the cached connection; once more on a new one if the cached one was lost."""
    if _connection is not None:
        try:
            return _on_connection(work)
        except Exception as exc:
            if not _connection_lost(exc):
                raise
            logger.info("the cached database connection was lost; reconnecting")
    return _on_connection(work)


def _on_connection(work: Callable[[pg8000.native.Connection], T]) -> T:
    """Run `work` on the cached connection (opened if needed), dropped if anything fails."""
    global _connection
    if _connection is None:
        _connection = _connect()
    try:
        return work(_connection)
    except Exception:
        close_connection()
        raise


def _connect() -> pg8000.native.Connection:
    """A connection with the cached credentials, re-read from the secret if they are refused
    or older than SECRET_TTL_S."""
    global _credentials, _credentials_read_at
    refused: list[dict[str, Any]] = []
    if _credentials is not None and time.monotonic() - _credentials_read_at > SECRET_TTL_S:
        _credentials = None
    if _credentials is not None:
        conn = _login(_credentials)
        if conn is not None:
            return conn
        refused.append(_credentials)
        logger.info("the database refused the cached credentials; re-reading the secret")
    for stage in ("AWSCURRENT", "AWSPENDING"):
        candidate = _read_credentials(stage)
        if candidate is None or candidate in refused:
            continue
        conn = _login(candidate)
        if conn is not None:
            _credentials, _credentials_read_at = candidate, time.monotonic()
            return conn
        refused.append(candidate)
    raise CredentialsRejected(
        f"the database refused every password of secret {_env('DB_SECRET_ARN')} (AWSCURRENT, "
        "AWSPENDING); the first rotation of the secret sets the password")


def _read_credentials(stage: str) -> dict[str, Any] | None:
    """The secret's version at `stage`, or None if it has none or it holds no password yet."""
    arn = _env("DB_SECRET_ARN")
    try:
        value = _client("secretsmanager").get_secret_value(SecretId=arn, VersionStage=stage)
    except ClientError as exc:
        if _error_code(exc) == "ResourceNotFoundException" and stage != "AWSCURRENT":
            return None
        raise
    secret = {**json.loads(value["SecretString"]), **_connection_facts()}
    missing = [k for k in ("host", "port", "dbname", "username") if secret.get(k) in (None, "")]
    if missing:
        raise CredentialsRejected(f"{stage} version of secret {arn} lacks {', '.join(missing)}")
    return secret if secret.get("password") else None


def _connection_facts() -> dict[str, str]:
    """host, port and dbname from the environment, where set."""
    names = {"host": "DB_HOST", "port": "DB_PORT", "dbname": "DB_NAME"}
    return {key: os.environ[var] for key, var in names.items() if os.environ.get(var)}


def _login(secret: dict[str, Any]) -> pg8000.native.Connection | None:
    """A new connection with its table ensured, or None if authentication failed."""
    try:
        conn = pgclient.connect(
            secret["username"], secret["password"], secret["host"], int(secret["port"]),
            secret["dbname"], timeout=CONNECT_TIMEOUT_S, application_name="tap-payment",
            ssl_context=_ssl_context())
    except pg8000.native.DatabaseError as exc:
        if _sqlstate(exc) in AUTH_FAILED:
            return None
        raise
    try:
        conn.run(SCHEMA)
    except pg8000.native.DatabaseError as exc:
        # Another container created the table at the same moment.
        if _sqlstate(exc) not in {"23505", "42P07"}:
            conn.close()
            raise
    return conn


def _connection_lost(exc: Exception) -> bool:
    """Network failure, or the server ended the session (connection_exception, shutdown)."""
    if isinstance(exc, (pg8000.native.InterfaceError, OSError)):
        return True
    state = _sqlstate(exc) or ""
    return state.startswith("08") or state.startswith("57P")


def _ssl_context() -> ssl.SSLContext:
    """sslmode=verify-full with DB_CA_FILE (a relative path is taken beside this file), or the
    RDS CA bundle this file is packaged with; built once per container."""
    global _tls
    if _tls is None:
        _tls = tls_context(os.environ.get("DB_CA_FILE") or "")
    return _tls


def tls_context(ca_file: str) -> ssl.SSLContext:
    """pgclient.tls_context beside this file; a missing bundle is a RuntimeError."""
    try:
        return pgclient.tls_context(ca_file, os.path.dirname(os.path.abspath(__file__)))
    except pgclient.NoCaBundle as exc:
        raise RuntimeError(str(exc)) from None


def _client(service: str) -> Any:
    if service not in _clients:
        # botocore's default checksums stay: an Object Lock bucket refuses a PUT without one
        client = boto3.client(service)
        if service == "s3":
            # `Expect: 100-continue` lets S3 refuse a large body before it is sent; for a log
            # object of a few hundred bytes it only adds a round trip (waiting for "100
            # Continue") to every PUT. The request is otherwise the same, body and checksum.
            client.meta.events.unregister("before-call.s3", add_expect_header)
        _clients[service] = client
    return _clients[service]


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"environment variable {name} is not set")
    return value


def _sqlstate(exc: Exception) -> str | None:
    details = exc.args[0] if exc.args else None
    return details.get("C") if isinstance(details, dict) else None


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "body": json.dumps(body, sort_keys=True)}
