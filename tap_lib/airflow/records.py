"""Airflow's papermill runs become tap records: the two halves of `tap run` around a kernel that
someone else (Airflow's PapermillOperator) starts. Runs in tap's environment, called by
TapNotebookOperator (dags.py) as ``<tap python> -m tap_lib.airflow.records``, one process per
task, one JSON request per line on stdin and one answer line ({"ok", "answer"} or {"ok": false,
"exit_code", "error"}) on stdout:

- ``{"step": "begin", "notebook", "parameters"}``: the checks `tap run` makes before a kernel starts
  (environment file, target, each parameter typed as the notebook declares it, the records
  root), then the record's name is reserved (ops/runbook.reserve_record). Answers the parameters for
  papermill (typed, secrets masked), the variables the kernel needs (TAP_RECORD names the record
  in the trail entries of its mutations, TAP_OPERATOR) and what `finish` needs.
- ``{"step": "finish", "begun", "output", "duration_s", "error", "airflow"}``: the executed notebook becomes
  the record through ops/runbook.keep_record, the one writer of run records (metadata, store,
  trail, index): `tap audit` lists it like any other.

A refused `begin` (tap's message and exit code in the answer) reserves nothing.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from .. import trail
from ..engines.registry import check_target
from ..errors import ConfigError, TapError
from ..ops import audit, runbook
from ..project import notebook_names, notebooks_dir
from ..redaction import scrub_parameters

FLEET = runbook.FLEET   # one mapped task per stack (fleet_verify_dag)


def begin(notebook: str, parameters: dict[str, Any]) -> dict[str, Any]:
    if notebook not in notebook_names():
        raise ConfigError("not one of tap's notebooks", field="notebook", value=notebook,
                          allowed=", ".join(notebook_names()))
    given = dict(parameters or {})
    target = check_target(given.pop("target", None))
    operator = trail.check_operator(str(given["operator"]), "operator") \
        if given.get("operator") else trail.current_operator()
    if notebook == FLEET:
        from ..ops.fleet import resolve_stacks

        envs = given.get("envs") or []
        stacks = resolve_stacks(envs, given.get("suffixes") or [],
                                (given.get("fleet_file") or None) if not envs else None)
        envs_of = sorted({ref.env for ref, _ in stacks})
        env = envs_of[0] if len(envs_of) == 1 else FLEET
        stack = ",".join(s.stack_name for _, s in stacks)
        typed = runbook.check_parameters((notebook,), given, env=env, target=target)[notebook]
        params = {**typed, "target": target, "operator": operator}
    else:
        env = given.pop("env", None)
        if not isinstance(env, str) or not env:
            raise ConfigError("every runbook task names its environment", field="env",
                              value=env)
        stack = runbook.settings_for(env).stack_name
        typed = runbook.check_parameters((notebook,), given, env=env, target=target)[notebook]
        params = {**typed, "env": env, "target": target, "operator": operator}
    root = audit.records_root()
    runbook.check_records_root(root)
    started = runbook.utc_now()
    path = runbook.reserve_record(root, env, notebook, started)
    return {"notebook": notebook, "env": env, "stack": stack, "root": root, "path": path,
            "started": started, "parameters": scrub_parameters(params),
            "kernel_env": {trail.RECORD_ENV: path, "TAP_OPERATOR": operator}}


def finish(begun: dict[str, Any], output: str, duration_s: float, error: str | None,
           airflow: dict[str, Any] | None = None) -> dict[str, Any]:
    import nbformat

    source = notebooks_dir() / f"{begun['notebook']}.ipynb"
    # as `tap run`: papermill never wrote its output (no kernel): the notebook as committed
    nb = nbformat.read(output if Path(output).is_file() else source, as_version=4)
    record = runbook.keep_record(
        nb, name=begun["notebook"], env=begun["env"], stack=begun["stack"],
        params=begun["parameters"], root=begun["root"], path=begun["path"],
        started=begun["started"], duration_s=duration_s, error=error,
        extra={"airflow": airflow} if airflow else None)
    return record.to_dict()


def serve(lines: Iterable[str], answer: Callable[[str], None]) -> int:
    """One request per line, one answer per line, until the caller closes stdin: a task's
    `begin` and `finish` share one process (tap's imports load once, ~1-4 s on a busy host)."""
    code = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if request.get("step") == "begin":
                result = begin(request["notebook"], request.get("parameters") or {})
            elif request.get("step") == "finish":
                result = finish(request["begun"], request["output"], request["duration_s"],
                                request.get("error"), request.get("airflow"))
            else:
                raise ConfigError("unknown step", field="step", value=request.get("step"),
                                  allowed="begin, finish")
            reply: dict[str, Any] = {"ok": True, "answer": result}
        except TapError as exc:
            reply, code = {"ok": False, "exit_code": exc.exit_code, "error": str(exc)}, \
                exc.exit_code
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            reply, code = {"ok": False, "exit_code": 2, "error": f"bad request: "
                           f"{type(exc).__name__}: {exc}"}, 2
        answer(json.dumps(reply, default=str))
    return code


def main() -> int:
    def answer(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    return serve(sys.stdin, answer)


if __name__ == "__main__":
    sys.exit(main())
