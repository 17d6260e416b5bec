"""tap's own runs of the shipped handlers (verify's synthetic payment, the sandbox's in-process
rotation): the same handler code in a child process with the function's environment variables
and AWS_ENDPOINT_URL pointing at the emulator. (The emulator's own Lambda Invoke, for any
client, runs the deployed package: patches/lambda_invoke.py and lambda_containers.py; both
share `_environment` and `resolving` from here.) The child process keeps the handler's
module-level caches and any os.environ changes away from the caller. Connections to the Aurora
endpoint names (the host a function reads from its secret) reach the cluster's local stand-in:
the child resolves those names itself, as a VPC's DNS would.

By default every invocation sequence starts its own child (a cold start). Inside `shared()`
(a fleet verify) the sequences go to one long-lived worker instead, which pays for Python and
boto3's imports once: each sequence still runs in a fresh "container" there (the handler module
loaded anew, os.environ, the name map and boto3's default session set up from scratch), so a
stack's result is the one a child of its own would give; only the imports are shared.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
from typing import Iterator

from ...errors import OperationFailed


HOSTS_VARIABLE = "TAP_SANDBOX_HOSTS"
WORKER_FLAG = "--worker"


def invoke(function: str, event: dict, *, endpoint: str, region: str,
           variables: dict[str, str] | None = None, timeout: float = 120,
           hosts: dict[str, str] | None = None) -> dict:
    """Run tap_lib/lambdas/<function>/handler.py's lambda_handler(event) and return its result."""
    return invoke_sequence(function, [event], endpoint=endpoint, region=region,
                           variables=variables, timeout=timeout, hosts=hosts)[0]


def _environment(variables: dict[str, str] | None, endpoint: str, region: str,
                 hosts: dict[str, str] | None) -> dict[str, str]:
    """The function's process environment: tap's own without its AWS_* settings, the
    function's variables, the emulator as endpoint, the name map, and the sandbox CA as the
    database's CA (the stand-ins' certificates are signed by it, not by the RDS CAs)."""
    from .sandbox_ca import CA_VARIABLE, ca_file

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(variables or {})
    env[HOSTS_VARIABLE] = json.dumps(hosts or {})
    env[CA_VARIABLE] = str(ca_file())
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION=region, AWS_REGION=region,
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    return env


def invoke_sequence(function: str, events: list[dict], *, endpoint: str, region: str,
                    variables: dict[str, str] | None = None, timeout: float = 120,
                    hosts: dict[str, str] | None = None) -> list[dict]:
    """Several invocations in order in one warm runtime (as Lambda reuses a warm container);
    stops at the first failure. `hosts` maps endpoint names to "127.0.0.1:PORT"."""
    from ...program.packaging import handler_source  # pulumi: not in every runtime child

    env = _environment(variables, endpoint, region, hosts)
    pool = _shared
    if pool is not None:
        results, error = pool.run(str(handler_source(function)), events, env, timeout)
    else:
        proc = subprocess.run([sys.executable, "-m", __name__, str(handler_source(function))],
                              input=json.dumps(events), capture_output=True, text=True,
                              env=env, timeout=timeout)
        results = [json.loads(line)["result"] for line in proc.stdout.splitlines()
                   if line.startswith("{")]
        # The handler never puts secret values in its errors; the last line is its message.
        lines = (proc.stderr or "").strip().splitlines()
        error = None if proc.returncode == 0 else (
            lines[-1] if lines else f"exit {proc.returncode}")
    if error is not None:
        failed = events[len(results)] if len(results) < len(events) else events[-1]
        raise OperationFailed(f"{function} handler failed on {failed.get('Step', 'invoke')}: "
                              f"{error}")
    return results


# -- the shared worker ---------------------------------------------------------------------
class Worker:
    """One long-lived runtime process; one sequence at a time (os.environ is per process)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = _environment(None, "", "", None)
        return subprocess.Popen([sys.executable, "-m", __name__, WORKER_FLAG],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env, bufsize=1)

    def start(self) -> None:
        with self._lock:
            if self._proc is None:
                self._proc = self._start()

    def run(self, path: str, events: list[dict], env: dict[str, str], timeout: float
            ) -> tuple[list[dict], str | None]:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            proc = self._proc
            proc.stdin.write(json.dumps({"path": path, "events": events, "env": env}) + "\n")
            proc.stdin.flush()
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
            try:
                line = proc.stdout.readline()
            finally:
                timer.cancel()
            if not line:
                self._proc = None
                return [], f"the runtime worker ended (exit {proc.wait()})"
            reply = json.loads(line)
            return reply["results"], reply.get("error")

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Pool:
    """A few workers, handed out round-robin-by-availability to concurrent callers."""

    def __init__(self, size: int):
        self._free: list[Worker] = [Worker() for _ in range(size)]
        self._all = list(self._free)
        self._cond = threading.Condition()

    def prestart(self) -> None:
        for worker in self._all:
            threading.Thread(target=worker.start, daemon=True).start()

    def run(self, path: str, events: list[dict], env: dict[str, str], timeout: float
            ) -> tuple[list[dict], str | None]:
        with self._cond:
            self._cond.wait_for(lambda: self._free)
            worker = self._free.pop()
        try:
            return worker.run(path, events, env, timeout)
        finally:
            with self._cond:
                self._free.append(worker)
                self._cond.notify()

    def close(self) -> None:
        for worker in self._all:
            worker.close()


_shared: Pool | None = None
_shared_users = 0
_shared_lock = threading.Lock()


@contextlib.contextmanager
def shared(workers: int = 1, prestart: bool = False) -> Iterator[None]:
    """Within this block, invocations in this process go to `workers` long-lived runtime
    processes (started on first use, or now with `prestart`) instead of a child each."""
    global _shared, _shared_users
    with _shared_lock:
        if _shared is None:
            _shared = Pool(workers)
        pool = _shared
        _shared_users += 1
    if prestart:
        pool.prestart()
    try:
        yield
    finally:
        with _shared_lock:
            _shared_users -= 1
            if _shared_users == 0:
                _shared = None
        if _shared is not pool:
            pool.close()


# -- the child side ------------------------------------------------------------------------
def resolving(hosts: dict[str, str]):
    """A socket.create_connection that sends the mapped names to their stand-ins."""
    import socket

    connect = socket.create_connection

    def create_connection(address, *args, **kwargs):
        host = address[0]
        if host in hosts:
            local, _, local_port = hosts[host].rpartition(":")
            address = (local, int(local_port))
        return connect(address, *args, **kwargs)

    return create_connection


def _load_handler(path: str):
    """As the Lambda runtime imports the packaged function: `handler` at the root, beside the
    `pgclient` packaged with it (program/packaging.py)."""
    shared = os.path.join(os.path.dirname(os.path.dirname(path)), "pgclient.py")
    for name, file in (("pgclient", shared), ("handler", path)):
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


def _main(path: str) -> None:
    import socket

    socket.create_connection = resolving(json.loads(os.environ.get(HOSTS_VARIABLE) or "{}"))
    module = _load_handler(path)
    for event in json.loads(sys.stdin.read()):
        result = module.lambda_handler(event, None)
        print(json.dumps({"result": result}, default=str), flush=True)


def _fresh_container(env: dict[str, str]) -> None:
    """What a new process would start with: this environment and this name map. boto3's
    default session stays (building one costs more than the handler's work) but forgets the
    credentials it resolved: it reads region, endpoint and credentials from os.environ again,
    as a new process would; only parsed service models are reused."""
    import socket

    os.environ.clear()
    os.environ.update(env)
    socket.create_connection = resolving(json.loads(env.get(HOSTS_VARIABLE) or "{}"))
    boto3 = sys.modules.get("boto3")
    if boto3 is not None and boto3.DEFAULT_SESSION is not None:
        boto3.DEFAULT_SESSION._session._credentials = None


def _worker() -> None:
    """Serve sequences from stdin, one JSON line each; reply one JSON line each. The handler's
    own output goes to stderr, so stdout carries only replies."""
    import socket
    import traceback

    replies, sys.stdout = sys.stdout, sys.stderr
    with contextlib.suppress(ImportError):  # what every handler imports: pay for it once
        import boto3
        import pg8000.native  # noqa: F401

        boto3.setup_default_session()
    connect = socket.create_connection
    for line in sys.stdin:
        request = json.loads(line)
        results, error = [], None
        try:
            _fresh_container(request["env"])
            module = _load_handler(request["path"])
            for event in request["events"]:
                results.append(module.lambda_handler(event, None))
        except BaseException as exc:  # noqa: BLE001 - reported as the sequence's failure
            error = traceback.format_exception_only(type(exc), exc)[-1].strip()
        finally:
            socket.create_connection = connect
            _close_connections(sys.modules.get("handler"))
        replies.write(json.dumps({"results": results, "error": error}, default=str) + "\n")
        replies.flush()


def _close_connections(module) -> None:
    """A container that is not reused keeps no database connection open."""
    conn = getattr(module, "_connection", None)
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()

if __name__ == "__main__":
    if sys.argv[1] == WORKER_FLAG:
        _worker()
    else:
        _main(sys.argv[1])
