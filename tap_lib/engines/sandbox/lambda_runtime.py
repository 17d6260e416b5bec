"""A stand-in for the Lambda runtime: the emulator stores functions but cannot execute them, so
the sandbox runs the same handler code in a child process with the function's environment
variables and AWS_ENDPOINT_URL pointing at the emulator. The child process keeps the handler's
module-level caches and any os.environ changes away from the caller.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from ...errors import OperationFailed
from ...program.packaging import handler_source


def invoke(function: str, event: dict, *, endpoint: str, region: str,
           variables: dict[str, str] | None = None, timeout: float = 120) -> dict:
    """Run tap_lib/lambdas/<function>/handler.py's lambda_handler(event) and return its result."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(variables or {})
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION=region, AWS_REGION=region,
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    proc = subprocess.run([sys.executable, "-m", __name__, str(handler_source(function))],
                          input=json.dumps(event), capture_output=True, text=True, env=env,
                          timeout=timeout)
    if proc.returncode != 0:
        # The handler never puts secret values in its errors; the last line is its message.
        lines = (proc.stderr or "").strip().splitlines()
        raise OperationFailed(f"{function} handler failed on {event.get('Step', 'invoke')}: "
                              f"{lines[-1] if lines else 'exit ' + str(proc.returncode)}")
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}


def _main(path: str) -> None:
    spec = importlib.util.spec_from_file_location("handler", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["handler"] = module  # as the Lambda runtime imports it: `handler` at the root
    spec.loader.exec_module(module)
    result = module.lambda_handler(json.loads(sys.stdin.read()), None)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    _main(sys.argv[1])
