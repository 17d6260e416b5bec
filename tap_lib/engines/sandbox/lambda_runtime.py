"""A stand-in for the Lambda runtime: the emulator stores functions but cannot execute them, so
the sandbox runs the same handler code in a child process with the function's environment
variables and AWS_ENDPOINT_URL pointing at the emulator. The child process keeps the handler's
module-level caches and any os.environ changes away from the caller. Connections to the Aurora
endpoint names (the host a function reads from its secret) reach the cluster's local stand-in:
the child resolves those names itself, as a VPC's DNS would.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from ...errors import OperationFailed
from ...program.packaging import handler_source


HOSTS_VARIABLE = "TAP_SANDBOX_HOSTS"


def invoke(function: str, event: dict, *, endpoint: str, region: str,
           variables: dict[str, str] | None = None, timeout: float = 120,
           hosts: dict[str, str] | None = None) -> dict:
    """Run tap_lib/lambdas/<function>/handler.py's lambda_handler(event) and return its result."""
    return invoke_sequence(function, [event], endpoint=endpoint, region=region,
                           variables=variables, timeout=timeout, hosts=hosts)[0]


def invoke_sequence(function: str, events: list[dict], *, endpoint: str, region: str,
                    variables: dict[str, str] | None = None, timeout: float = 120,
                    hosts: dict[str, str] | None = None) -> list[dict]:
    """Several invocations in order in one warm runtime (as Lambda reuses a warm container);
    stops at the first failure. `hosts` maps endpoint names to "127.0.0.1:PORT"."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(variables or {})
    env[HOSTS_VARIABLE] = json.dumps(hosts or {})
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION=region, AWS_REGION=region,
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    proc = subprocess.run([sys.executable, "-m", __name__, str(handler_source(function))],
                          input=json.dumps(events), capture_output=True, text=True, env=env,
                          timeout=timeout)
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0:
        # The handler never puts secret values in its errors; the last line is its message.
        failed = events[len(results)] if len(results) < len(events) else events[-1]
        lines = (proc.stderr or "").strip().splitlines()
        raise OperationFailed(f"{function} handler failed on {failed.get('Step', 'invoke')}: "
                              f"{lines[-1] if lines else 'exit ' + str(proc.returncode)}")
    return [r["result"] for r in results]


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


def _main(path: str) -> None:
    import socket

    socket.create_connection = resolving(json.loads(os.environ.get(HOSTS_VARIABLE) or "{}"))
    spec = importlib.util.spec_from_file_location("handler", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["handler"] = module  # as the Lambda runtime imports it: `handler` at the root
    spec.loader.exec_module(module)
    for event in json.loads(sys.stdin.read()):
        result = module.lambda_handler(event, None)
        print(json.dumps({"result": result}, default=str), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1])
