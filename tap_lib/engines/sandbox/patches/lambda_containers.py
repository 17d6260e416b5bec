"""Execution environments for the emulator's Lambda Invoke (Lambda Developer Guide, "Lambda
execution environment lifecycle"): the function's deployment package unpacked, its handler
loaded once in a process (the Init phase, limited apart from the timeout), then invocations
one at a time in that warm process until it has been idle for WARM_SECONDS, a new package or
configuration needs a new one, or an invocation timed out (Lambda replaces that environment).
Concurrent invocations get environments of their own. Module-level state (a cached
connection, a cached client) lives as long as its environment, as on Lambda.

The environment's own side runs as `python -m tap_lib.engines.sandbox.patches.lambda_containers
CODE_DIR HANDLER`: one JSON request a line on stdin, one JSON reply a line on the original
stdout; print() and logging go to the invocation's log file.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

INIT_TIMEOUT_S = 10.0
WARM_SECONDS = 300.0


@dataclass(frozen=True)
class Invocation:
    """One Invoke in Lambda's terms: the Payload, the errorType when the function failed
    (Invoke's `X-Amz-Function-Error: Unhandled`) and the log lines, START to REPORT."""

    payload: bytes
    error: str | None
    logs: str


class _Environment:
    """One warm process for one (package, handler, configuration)."""

    def __init__(self, code_dir: str, handler: str, env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__, code_dir, handler], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
            cwd=code_dir, bufsize=1)
        self.used = time.monotonic()

    def ask(self, request: dict, limit: float) -> dict | None:
        """The reply, or None when the process died or overran `limit` (then it is killed)."""
        timer = threading.Timer(limit, self.proc.kill)
        timer.start()
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        finally:
            timer.cancel()
            self.used = time.monotonic()
        return json.loads(line) if line.startswith("{") else None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
            self.proc.wait(timeout=5)


_idle: dict[str, list[_Environment]] = {}
_lock = threading.Lock()


def _take(key: str, code_dir: str, handler: str, env: dict[str, str]) -> tuple[_Environment, bool]:
    """A warm environment for `key` if one is idle, else a new one (cold: True)."""
    now = time.monotonic()
    with _lock:
        for name in list(_idle):  # let environments idle too long go, as Lambda does
            keep = [e for e in _idle[name] if now - e.used < WARM_SECONDS and e.alive()]
            for stale in set(_idle[name]) - set(keep):
                stale.close()
            _idle[name] = keep
        if _idle.get(key):
            return _idle[key].pop(), False
    return _Environment(code_dir, handler, env), True


def _give_back(key: str, environment: _Environment) -> None:
    with _lock:
        _idle.setdefault(key, []).append(environment)


def run_code(code_dir: str, handler: str, event: Any, *, env: dict[str, str], timeout: float,
             memory_mb: int, request_id: str, context: dict[str, Any] | None = None
             ) -> Invocation:
    """Invoke `handler` ("module.function") of the unpacked package in `code_dir`."""
    key = json.dumps([code_dir, handler, sorted(env.items())])
    fd, log_path = tempfile.mkstemp(prefix="tap-lambda-", suffix=".log")
    os.close(fd)
    try:
        environment, cold = _take(key, code_dir, handler, env)
        reply = environment.ask({"event": event, "request_id": request_id, "timeout": timeout,
                                 "context": context or {}, "log": log_path},
                                (INIT_TIMEOUT_S if cold else 0) + timeout + 5)
        if reply is not None and not reply.get("timedOut") and environment.alive():
            _give_back(key, environment)
        else:
            environment.close()
        with open(log_path, errors="replace") as fh:
            lines = fh.read()
    finally:
        os.unlink(log_path)
    return _answer(reply, lines, request_id, timeout, memory_mb)


def _answer(reply: dict | None, lines: str, request_id: str, timeout: float,
            memory_mb: int) -> Invocation:
    if reply is None:
        reply = {"errorType": "Runtime.ExitError",
                 "errorMessage": f"RequestId: {request_id} Error: Runtime exited without "
                                 "providing a reason"}
    if reply.get("timedOut"):
        message = f"Task timed out after {timeout:.2f} seconds"
        lines += f"{datetime.now(timezone.utc).isoformat()} {request_id} {message}\n"
        reply = {"errorType": "Sandbox.Timedout", "durationMs": timeout * 1000,
                 "errorMessage": f"RequestId: {request_id} Error: {message}"}
    duration = float(reply.pop("durationMs", 0.0))
    used = reply.pop("maxMemoryMB", None)
    init = reply.pop("initMs", None)
    report = (f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\t"
              f"Billed Duration: {math.ceil(duration)} ms\tMemory Size: {memory_mb} MB\t"
              f"Max Memory Used: {used if used is not None else '-'} MB\t"
              + (f"Init Duration: {init:.2f} ms\t" if init is not None else ""))
    if lines and not lines.endswith("\n"):
        lines += "\n"
    logs = (f"START RequestId: {request_id} Version: $LATEST\n{lines}"
            f"END RequestId: {request_id}\n{report}\n")
    if "result" in reply:
        return Invocation(reply["result"].encode(), None, logs)
    error = {k: reply[k] for k in ("errorMessage", "errorType", "requestId", "stackTrace")
             if k in reply}
    return Invocation(json.dumps(error).encode(), reply.get("errorType", "Unhandled"), logs)


# -- the environment's side ----------------------------------------------------------------
class _TimedOut(BaseException):
    """Raised in the handler when its time is up (a BaseException: `except Exception` in the
    handler does not swallow it)."""


class _Context:
    """The handler's `context` argument: the attributes Lambda's Python runtime provides."""

    def __init__(self, values: dict[str, Any], request_id: str, deadline: float):
        self.function_name = values.get("function_name", "")
        self.function_version = values.get("function_version", "$LATEST")
        self.invoked_function_arn = values.get("invoked_function_arn", "")
        self.memory_limit_in_mb = values.get("memory_limit_in_mb")
        self.log_group_name = values.get("log_group_name", "")
        self.log_stream_name = values.get("log_stream_name", "")
        self.aws_request_id = request_id
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _json_default(value: Any) -> Any:
    """As Lambda's Python runtime marshals a result: Decimal as a number, nothing else extra."""
    import decimal

    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _peak_memory_mb() -> int | None:
    """This process's peak resident memory (VmHWM; getrusage's maxrss starts from the parent's
    at fork)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return None


class _RequestId:
    """Lambda's log format names the invocation's request id on every logging line."""

    current = ""

    def filter(self, record) -> bool:
        record.aws_request_id = self.current
        return True


def _serve(code_dir: str, handler: str) -> None:
    import importlib
    import logging
    import signal
    import socket
    import traceback

    from tap_lib.engines.sandbox.lambda_runtime import HOSTS_VARIABLE, resolving

    replies = os.fdopen(os.dup(1), "w")
    request_ids = _RequestId()
    log_handler = logging.StreamHandler(sys.stderr)
    log_handler.addFilter(request_ids)
    log_handler.setFormatter(logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S"))
    logging.Formatter.converter = time.gmtime
    logging.getLogger().addHandler(log_handler)
    socket.create_connection = resolving(json.loads(os.environ.get(HOSTS_VARIABLE) or "{}"))
    sys.path.insert(0, code_dir)

    def _alarm(signum, frame):
        raise _TimedOut()

    signal.signal(signal.SIGALRM, _alarm)
    function = None
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        request = json.loads(line)
        rid, timeout = request["request_id"], float(request["timeout"])
        request_ids.current = rid
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        reply: dict[str, Any] = {}
        started = time.monotonic()
        if function is None:
            module_name, _, function_name = handler.rpartition(".")
            try:
                function = getattr(importlib.import_module(module_name), function_name)
            except Exception as exc:  # noqa: BLE001 - reported as Lambda reports a failed init
                traceback.print_exc()
                reply = {"errorType": "Runtime.ImportModuleError",
                         "errorMessage": f"Unable to import module '{module_name}': {exc}"}
            reply["initMs"] = (time.monotonic() - started) * 1000
            started = time.monotonic()
        if function is not None:
            reply.update(_call(function, request, rid, timeout, started))
        reply["durationMs"] = (time.monotonic() - started) * 1000
        reply["maxMemoryMB"] = _peak_memory_mb()
        sys.stdout.flush()
        sys.stderr.flush()
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
        if function is None or reply.get("timedOut"):
            break  # a failed init or a timeout: Lambda replaces the environment
    os._exit(0)  # threads the handler left behind do not keep the environment alive


def _call(function, request: dict, rid: str, timeout: float, started: float) -> dict:
    import signal
    import traceback

    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        result = function(request["event"], _Context(request["context"], rid, started + timeout))
        signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            return {"result": json.dumps(result, default=_json_default)}
        except (TypeError, ValueError) as exc:
            return {"errorType": "Runtime.MarshalError",
                    "errorMessage": f"Unable to marshal response: {exc}"}
    except _TimedOut:
        return {"timedOut": True}
    except Exception as exc:  # noqa: BLE001 - the function's error, as Lambda reports it
        signal.setitimer(signal.ITIMER_REAL, 0)
        frames = traceback.extract_tb(exc.__traceback__)[1:]   # not this runtime's own frame
        print(f"[ERROR] {type(exc).__name__}: {exc}\nTraceback (most recent call last):\n"
              + "".join(traceback.format_list(frames)), file=sys.stderr)
        return {"errorMessage": str(exc), "errorType": type(exc).__name__, "requestId": rid,
                "stackTrace": traceback.format_list(frames)}


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])
