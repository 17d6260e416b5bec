"""End-to-end proof for verify: log in with the current secret and run one synthetic payment.

On the sandbox the emulator cannot execute Lambdas, so the shipped payment handler runs in the
local runtime stand-in (a child process) against the sandbox's Secrets Manager, S3 and the
PostgreSQL standing in for Aurora. On AWS the deployed function is invoked; the database is in
private subnets, so the login check runs there only through the function.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable

import pg8000.native


Clients = Callable[[str], Any]
SANDBOX_NOTE = ("sandbox: the emulator cannot execute Lambdas; the payment handler ran in tap's "
                "local runtime stand-in against the sandbox's Secrets Manager, S3 and "
                "PostgreSQL")


def synthetic_event(now: datetime | None = None) -> dict:
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%f")
    return {"payment_id": f"tap-verify-{stamp}", "amount": "0.01", "currency": "GBP",
            "merchant_id": "tap-verify", "metadata": {"source": "tap verify"}}


def db_login(clients: Clients, secret_arn: str) -> tuple[str, str]:
    """(expected, actual) for logging in with AWSCURRENT; never shows the password."""
    try:
        creds = json.loads(clients("secretsmanager").get_secret_value(
            SecretId=secret_arn, VersionStage="AWSCURRENT")["SecretString"])
        if "password" not in creds:
            return "login ok", "no password yet (rotation has not run)"
        conn = pg8000.native.Connection(creds["username"], host=creds["host"],
                                        port=int(creds["port"]), password=creds["password"],
                                        database=creds["dbname"], timeout=10)
        try:
            user = conn.run("SELECT current_user")[0][0]
        finally:
            conn.close()
        return "login ok", f"login ok as {user}"
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        return "login ok", f"failed: {type(exc).__name__}"


def run_payment(target: str, clients: Clients, function: dict, endpoint: str | None,
                region: str) -> tuple[str, str]:
    """(expected, actual) for one synthetic payment through the payment handler."""
    event = synthetic_event()
    conf = function.get("Configuration", {})
    try:
        if target == "sandbox":
            from ..engines.sandbox.lambda_runtime import invoke

            result = invoke("payment", event, endpoint=endpoint, region=region,
                            variables=(conf.get("Environment") or {}).get("Variables", {}))
        else:
            response = clients("lambda").invoke(FunctionName=conf["FunctionName"],
                                                Payload=json.dumps(event).encode())
            result = json.loads(response["Payload"].read() or b"{}")
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        return "statusCode 200, transaction logged", f"failed: {exc}"
    body = json.loads(result.get("body") or "{}")
    if result.get("statusCode") != 200:
        return "statusCode 200, transaction logged", \
            f"statusCode {result.get('statusCode')}: {body.get('error')}"
    return "statusCode 200, transaction logged", \
        f"statusCode 200, transaction logged ({body.get('log_object', '?').split('/')[-1]})"
