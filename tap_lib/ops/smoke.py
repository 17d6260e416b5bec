"""End-to-end proof for verify: log in with the current secret and run one synthetic payment.

The engine invokes the function the way its target can (on AWS the deployed function; on the
sandbox the shipped handler in a local runtime stand-in). Where the database sits in private
subnets, the login check runs only through the function.
"""
from __future__ import annotations

import json
import ssl
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..lambdas import pgclient


Clients = Callable[[str], Any]


def synthetic_event(now: datetime | None = None) -> dict:
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%f")
    return {"payment_id": f"tap-verify-{stamp}", "amount": "0.01", "currency": "GBP",
            "merchant_id": "tap-verify", "metadata": {"source": "tap verify"}}


def db_login(clients: Clients, secret_arn: str, endpoint: tuple[str, int],
             address: Callable[[str, int], tuple[str, int]], cafile: Path) -> tuple[str, str]:
    """(expected, actual) for logging in with AWSCURRENT's credentials at the cluster's current
    endpoint (the stack's outputs, as the functions connect; routed as the target does:
    `address`), over TLS verified against `cafile` as the functions verify it; never shows the
    password."""
    try:
        creds = json.loads(clients("secretsmanager").get_secret_value(
            SecretId=secret_arn, VersionStage="AWSCURRENT")["SecretString"])
        if "password" not in creds:
            return "login ok", "no password yet (rotation has not run)"
        host, port = address(*endpoint)
        conn = pgclient.connect(creds["username"], creds["password"], host, port,
                                creds["dbname"], timeout=10, application_name="tap-verify",
                                ssl_context=ssl.create_default_context(cafile=str(cafile)))
        try:
            user = conn.run("SELECT current_user")[0][0]
        finally:
            conn.close()
        return "login ok", f"login ok as {user}"
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        return "login ok", f"failed: {type(exc).__name__}"


def run_payment(invoke: Callable[[dict, dict], dict], function: dict) -> tuple[str, str]:
    """(expected, actual) for one synthetic payment through the payment handler."""
    try:
        result = invoke(function, synthetic_event())
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        return "statusCode 200, transaction logged", f"failed: {exc}"
    body = json.loads(result.get("body") or "{}")
    if result.get("statusCode") != 200:
        return "statusCode 200, transaction logged", \
            f"statusCode {result.get('statusCode')}: {body.get('error')}"
    return "statusCode 200, transaction logged", \
        f"statusCode 200, transaction logged ({body.get('log_object', '?').split('/')[-1]})"
