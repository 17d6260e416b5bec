"""Lambda Invoke runs the function (Lambda API Reference, "Invoke").

moto stores functions but runs them only in docker ("error running docker" here). This patch
runs the function's deployed code in an execution environment of its own
(lambda_containers: tap's runtime process, kept warm between invocations as Lambda keeps
them), with what Lambda gives it: the function's environment variables, its
execution role's temporary credentials (AWS_ACCESS_KEY_ID/SECRET/SESSION_TOKEN from an
AssumeRole of the role), its timeout and memory size (AWS_LAMBDA_FUNCTION_MEMORY_SIZE; the
memory is reported, not enforced), the AWS_LAMBDA_* variables, and the stack's Aurora endpoint
names resolving to their stand-in databases (TAP_SANDBOX_HOSTS, as a VPC's DNS would).

The response is Invoke's: StatusCode 200 with the function's result; on an error
`X-Amz-Function-Error: Unhandled` and an {errorMessage, errorType, ...} payload, a timeout being
"Task timed out after N.NN seconds"; `X-Amz-Log-Result` the base64 of the last 4 KB of the log
with `LogType=Tail`; InvocationType `Event` answers 202 at once and runs in the background;
`DryRun` answers 204 without running. Every run's log goes to the function's CloudWatch log
group, /aws/lambda/<name>.

GetFunctionConfiguration's VpcConfig.VpcId is the VPC of the function's subnets (moto reports
the constant "vpc-123abc").
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

from .. import lambda_runtime
from .lambda_containers import Invocation, run_code

log = logging.getLogger(__name__)

LOG_TAIL_BYTES = 4096
ROLE_SESSION_SECONDS = 3600
_endpoint = ""


def install(endpoint: str) -> None:
    global _endpoint
    from moto.awslambda.models import LambdaFunction

    _endpoint = endpoint
    LambdaFunction.invoke = _invoke
    LambdaFunction.vpc_config = property(_vpc_config)


def _header(headers: Any, name: str) -> str | None:
    """A request header, whatever its case (werkzeug's headers or a plain dict)."""
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def _invoke(self, body: Any, request_headers: Any, response_headers: dict) -> bytes:
    """LambdaFunction.invoke as Invoke answers (moto's responses add the status code)."""
    event = json.loads(body) if body else {}
    kind = _header(request_headers, "x-amz-invocation-type") or "RequestResponse"
    if kind == "DryRun":
        return b""
    if kind == "Event":
        threading.Thread(target=run, args=(self, event), daemon=True,
                         name=f"lambda-event-{self.function_name}").start()
        return b""
    result = run(self, event)
    if result.error is not None:
        response_headers["x-amz-function-error"] = "Unhandled"
    tail = result.logs.encode()[-LOG_TAIL_BYTES:]
    response_headers["x-amz-log-result"] = base64.b64encode(tail).decode()
    response_headers["x-amz-executed-version"] = self.version
    return result.payload


def run(fn, event: Any) -> Invocation:
    """One invocation of moto's function `fn` (also Secrets Manager's rotation calls)."""
    request_id = str(uuid.uuid4())
    env = lambda_runtime._environment(fn.environment_vars or {}, _endpoint, fn.region,
                                      _host_map())
    env.update(_role_credentials(fn))
    code_dir = _unpacked(fn.code_bytes)
    env.update({
        "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": str(fn.version),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
        "AWS_LAMBDA_LOG_GROUP_NAME": fn.logs_group_name,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{fn.run_time}",
        "LAMBDA_TASK_ROOT": str(code_dir),
        "_HANDLER": fn.handler or "",
    })
    # One log stream per execution environment, as Lambda names them.
    digest = hashlib.sha256(json.dumps(sorted(env.items())).encode()).hexdigest()[:32]
    stream = env["AWS_LAMBDA_LOG_STREAM_NAME"] = f"{_today()}/[{fn.version}]{digest}"
    result = run_code(
        str(code_dir), fn.handler or "lambda_function.lambda_handler", event, env=env,
        timeout=float(fn.timeout), memory_mb=int(fn.memory_size), request_id=request_id,
        context={"function_name": fn.function_name, "function_version": str(fn.version),
                 "invoked_function_arn": fn.function_arn, "memory_limit_in_mb": fn.memory_size,
                 "log_group_name": fn.logs_group_name, "log_stream_name": stream})
    _save_logs(fn, stream, result.logs)
    return result


def _today() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y/%m/%d")


_sessions: dict[tuple[str, str, str], tuple[float, dict[str, str]]] = {}


def _role_credentials(fn) -> dict[str, str]:
    """The execution role's temporary credentials, as Lambda puts them in the environment; one
    session per function and role for half its lifetime (a warm environment keeps them)."""
    from moto.sts.models import sts_backends

    key = (fn.account_id, fn.function_arn, fn.role)
    now = time.monotonic()
    cached = _sessions.get(key)
    if cached is None or now - cached[0] > ROLE_SESSION_SECONDS / 2:
        role = sts_backends[fn.account_id]["global"].assume_role(
            region_name=fn.region, role_session_name=fn.function_name, role_arn=fn.role,
            policy=None, duration=ROLE_SESSION_SECONDS, external_id=None)
        cached = _sessions[key] = (now, {"AWS_ACCESS_KEY_ID": role.access_key_id,
                                         "AWS_SECRET_ACCESS_KEY": role.secret_access_key,
                                         "AWS_SESSION_TOKEN": role.session_token})
    return cached[1]


def _host_map() -> dict[str, str]:
    """Every sandbox stack's Aurora endpoint names → their stand-ins (names are unique)."""
    from ..standin import host_map
    from ..state import stack_dir

    found: dict[str, str] = {}
    root = stack_dir("_").parent
    for directory in sorted(root.iterdir()) if root.exists() else ():
        try:
            found.update(host_map(directory.name))
        except Exception as exc:  # noqa: BLE001 - a damaged stack must not stop the others
            log.warning("stand-in names of stack %s unreadable: %s", directory.name, exc)
    return found


def _code_root() -> Path:
    from ....project import tap_home

    return tap_home() / "sandbox" / "lambda-code"


def _unpacked(code: bytes) -> Path:
    """The deployment package unpacked once per content (its sha256), whole or not at all."""
    target = _code_root() / hashlib.sha256(code or b"").hexdigest()
    if not target.exists():
        work = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
        work.mkdir(parents=True)
        try:
            with zipfile.ZipFile(io.BytesIO(code)) as archive:
                archive.extractall(work)
            os.replace(work, target)
        except OSError:
            if not target.exists():
                raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def _save_logs(fn, stream: str, logs: str) -> None:
    """The run's log lines in /aws/lambda/<name>, one event per line."""
    from moto.core.utils import unix_time_millis

    try:
        fn.logs_backend.ensure_log_group(fn.logs_group_name)
        with contextlib.suppress(Exception):  # the environment's stream may exist already
            fn.logs_backend.create_log_stream(fn.logs_group_name, stream)
        now = unix_time_millis()
        fn.logs_backend.put_log_events(fn.logs_group_name, stream, [
            {"timestamp": now, "message": line} for line in logs.splitlines()])
    except Exception as exc:  # noqa: BLE001 - the invocation's answer matters more
        log.warning("could not store the logs of %s: %s", fn.function_name, exc)


def _vpc_config(self) -> dict[str, Any] | None:
    if not self._vpc_config:
        return None
    config = self._vpc_config.copy()
    subnets = config.get("SubnetIds") or []
    if subnets:
        from moto.ec2.models import ec2_backends

        try:
            config["VpcId"] = ec2_backends[self.account_id][self.region].get_subnet(
                subnets[0]).vpc_id
        except Exception:  # noqa: BLE001 - a deleted subnet: Lambda reports no VPC then
            config["VpcId"] = ""
    else:
        config["VpcId"] = ""
    return config
