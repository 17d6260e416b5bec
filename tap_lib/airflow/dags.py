"""DAG factory: tap's runbook and a nightly fleet verify as Airflow DAGs of papermill tasks.

Airflow lives in its own virtualenv (`pip install 'tap-runbook[airflow]'` there, or the two
packages the extra names); each task is a `PapermillOperator` running one of tap's committed
notebooks on the `tap` kernelspec (tap_lib/airflow/kernel.py), so the notebook runs on tap's
Python, and its executed notebook becomes a tap record as `tap run`'s do - same metadata, same
trail entry and index line, in the records root (`TAP_OUTPUTS`: a directory or
`s3://bucket/prefix`) as `<root>/<env>/<UTC time>-<notebook>.ipynb` - written by tap's one
record writer (ops/runbook.keep_record through records.py, in tap's environment).

- `runbook_dag(env)`: preflight -> preview -> deploy -> verify -> inspect, one stack; deploy
  applies the plan the preview's record holds (and a protected stack's needs an approval).
- `fleet_verify_dag()`: lists the fleet's stacks at run time (`tap fleet list --json`, from tap's
  environment) and maps the fleet notebook over them (`.expand`), one task per stack; a failed
  control fails that task and so the run.

This module imports Airflow and nothing of tap beyond the standard library and tap's errors
(errors.py, itself standard library only), so it loads in Airflow's environment; anything
needing tap runs in tap's (the kernel, `tap_python`: the fleet's list and records.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from airflow.providers.papermill.operators.papermill import NoteBook, PapermillOperator

try:  # Airflow 3
    from airflow.sdk.exceptions import AirflowException
except ImportError:  # Airflow 2.x
    from airflow.exceptions import AirflowException

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.decorators import task

from ..errors import OperationFailed
from .kernel import KERNEL_NAME

PROJECT_DIR = Path(__file__).resolve().parents[2]
RUNBOOK = ("preflight", "preview", "deploy", "verify", "inspect")
START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def tap_python(project_dir: Path | None = None) -> str:
    """tap's own interpreter: TAP_PYTHON, else the project's .venv."""
    return os.environ.get("TAP_PYTHON") or str((project_dir or PROJECT_DIR) / ".venv" / "bin"
                                               / "python")


def records_root(project_dir: Path | None = None) -> str:
    """Where records go: TAP_OUTPUTS (a directory or s3:// URL), else <project>/outputs."""
    return os.environ.get("TAP_OUTPUTS") or str((project_dir or PROJECT_DIR) / "outputs")


class TapNotebookOperator(PapermillOperator):
    """A PapermillOperator for one of tap's notebooks whose output is a first-class tap record.

    Airflow's papermill runs the committed notebook on the `tap` kernelspec, exactly as
    PapermillOperator does (templated parameters, kernel_name, log_output); around it, tap's own
    record path (tap_lib/airflow/records.py, in tap's environment) first checks the parameters
    as `tap run` does and reserves the record, then stores the executed notebook - also when
    it failed - with tap's metadata, chained in the trail and listed by `tap audit`. The kernel
    gets TAP_RECORD (the trail entries of its mutations name the record), TAP_OPERATOR,
    TAP_OUTPUTS and `environment` (e.g. ENVIRONMENT_SUFFIX). The record's path is the task's
    return value (XCom): the runbook's deploy task takes the preview's record as its plan."""

    def __init__(self, *, notebook: str, records: str | None = None,
                 project_dir: str | None = None, kernel_name: str = KERNEL_NAME,
                 python: str | None = None, environment: dict[str, str] | None = None,
                 **kwargs):
        project = Path(project_dir) if project_dir else PROJECT_DIR
        kwargs.setdefault("input_nb", str(project / "notebooks" / f"{notebook}.ipynb"))
        kwargs.setdefault("output_nb", "(a scratch file; the record is stored by tap)")
        super().__init__(kernel_name=kernel_name, **kwargs)
        self.notebook = notebook
        self.records = records or records_root(project)
        self.project = str(project)
        self.python = python
        self.environment = dict(environment or {})

    def execute(self, context: Any) -> str:
        from papermill.exceptions import PapermillExecutionError

        variables = {**self.environment, "TAP_OUTPUTS": self.records}
        with _TapRecords(self.python or tap_python(Path(self.project)), self.project,
                         variables, self.notebook) as tap:
            begun = tap.ask({"step": "begin", "notebook": self.notebook,
                             "parameters": dict(self.parameters or {})})
            self.parameters = begun["parameters"]   # typed and masked by tap, as `tap run` does
            if isinstance(self.input_nb, NoteBook):     # a second execute: new parameters
                self.input_nb = self.input_nb.url
            failure: BaseException | None = None
            error = None
            with tempfile.TemporaryDirectory(prefix="tap-airflow-") as tmp, _environ(
                    {**variables, **begun["kernel_env"]}):
                scratch = self.output_nb = str(Path(tmp) / f"{self.notebook}.ipynb")
                t0 = time.monotonic()
                try:
                    super().execute(context)
                except PapermillExecutionError as exc:
                    failure, error = exc, f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
                except Exception as exc:  # noqa: BLE001 - kernel died...: still a record
                    failure, error = exc, f"{type(exc).__name__}: {exc}"
                ti = context.get("ti")
                record = tap.ask({
                    "step": "finish", "begun": begun, "output": scratch, "error": error,
                    "duration_s": time.monotonic() - t0,
                    "airflow": {k: getattr(ti, k, None) for k in (
                        "dag_id", "run_id", "task_id", "map_index", "try_number")}})
        self.log.info("record: %s (%s)", record["path"], record["status"])
        if failure is not None:
            raise failure
        return record["path"]


class _TapRecords:
    """tap's record path for one task (records.py), in tap's interpreter: one process answers
    the task's `begin` and `finish`, one JSON line each."""

    def __init__(self, python: str, project: str, variables: dict[str, str], notebook: str):
        self.notebook = notebook
        self.stderr = tempfile.TemporaryFile(mode="w+")   # a file: a pipe could fill and block
        self.proc = subprocess.Popen(
            [python, "-m", "tap_lib.airflow.records"], cwd=project, text=True, bufsize=1,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
            env={**os.environ, **variables})

    def __enter__(self) -> "_TapRecords":
        return self

    def ask(self, request: dict) -> dict:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        if stdin is None or stdout is None or stdin.closed:
            raise OperationFailed(f"tap's record process for the {self.notebook} task has no "
                                  "open pipe to ask it through (it was closed, or never made)",
                                  hint="ask only inside `with _TapRecords(...)`, before it exits")
        stdin.write(json.dumps(request, default=str) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            self.proc.wait(timeout=60)
            self.stderr.seek(0)
            stderr = self.stderr.read()
            raise AirflowException(f"tap's record process for the {self.notebook} task ended "
                                   f"(exit {self.proc.returncode}): {stderr.strip()[-2000:]}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise AirflowException(f"tap refused the {self.notebook} task ({request['step']}, "
                                   f"exit {reply['exit_code']}): {reply['error']}")
        return reply["answer"]

    def __exit__(self, *exc_info: Any) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.stderr.close()


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    """Variables the kernel inherits for one task (restored after)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


PREVIEW_RECORD = "{{ ti.xcom_pull(task_ids='preview') }}"


def runbook_dag(env: str, *, dag_id: str | None = None, target: str = "sandbox",
                suffix: str = "", schedule: Any = None, project_dir: str | None = None,
                records: str | None = None, operator: str = "airflow", confirm: str = "",
                python: str | None = None, **dag_kwargs: Any) -> DAG:
    """preflight -> preview -> deploy -> verify -> inspect of one environment's stack (`suffix`:
    an ad-hoc stack, ENVIRONMENT_SUFFIX for every task).

    The deploy task deploys exactly the plan the preview task saved: its `plan` parameter is
    the preview's record (XCom), so stack_ops.deploy checks it as `tap deploy --plan` does
    (commit, settings, state, age) and a protected stack (prod) needs the approval of an
    operator other than its author (`operator`): without one the deploy task fails, nothing
    changed. Approve the record the log names (`tap approve RECORD`), then clear the deploy
    task: its retry deploys the approved plan. `confirm`: the stack name, which a protected
    stack needs when the plan deletes or replaces anything."""
    common = {"env": env, "target": target, "operator": operator}
    per_notebook = {"deploy": {**common, "plan": PREVIEW_RECORD,
                               **({"confirm": confirm} if confirm else {})}}
    environment = {"ENVIRONMENT_SUFFIX": suffix} if suffix else {}
    with DAG(dag_id or f"tap_runbook_{env}{suffix}", schedule=schedule, start_date=START,
             catchup=False, tags=["tap", env], **dag_kwargs) as dag:
        previous = None
        for notebook in RUNBOOK:
            step = TapNotebookOperator(task_id=notebook, notebook=notebook,
                                       parameters=per_notebook.get(notebook, common),
                                       records=records, project_dir=project_dir,
                                       python=python, environment=environment)
            if previous is not None:
                previous >> step
            previous = step
    return dag


def fleet_verify_dag(*, dag_id: str = "tap_fleet_verify", target: str = "sandbox",
                     envs: Iterable[str] = (), suffixes: Iterable[str] = (),
                     fleet_file: str | None = None, schedule: Any = "15 2 * * *",
                     project_dir: str | None = None, records: str | None = None,
                     python: str | None = None, operator: str = "airflow",
                     **dag_kwargs: Any) -> DAG:
    """Nightly verify of every stack of the fleet (the fleet file, or envs x suffixes), one
    mapped task per stack running the fleet notebook; a failed control fails the run."""
    envs, suffixes = list(envs), list(suffixes)
    project = Path(project_dir) if project_dir else PROJECT_DIR

    with DAG(dag_id, schedule=schedule, start_date=START, catchup=False, tags=["tap", "fleet"],
             **dag_kwargs) as dag:

        @task(retries=0)
        def list_stacks() -> list[dict]:
            """The fleet's stacks, resolved and validated by tap itself (at run time, so a new
            entry in the fleet file is picked up by the next run)."""
            argv = [python or tap_python(project), "-m", "tap_lib.cli", "fleet", "list",
                    "--json", *(a for e in envs for a in ("--env", e)),
                    *(a for s in suffixes for a in ("--suffix", s))]
            if not envs:
                argv += ["--fleet", fleet_file or ""]
            out = subprocess.run(argv, cwd=project, capture_output=True, text=True,
                                 timeout=300)
            if out.returncode != 0:
                raise RuntimeError(f"tap fleet list failed ({out.returncode}): "
                                   f"{out.stderr.strip()[-2000:]}")
            return [{"envs": [s["env"]], "suffixes": [s["suffix"]] if s["suffix"] else [],
                     "target": target, "fail_on_failed": True, "operator": operator}
                    for s in json.loads(out.stdout)]

        TapNotebookOperator.partial(
            task_id="verify", notebook="fleet", records=records, project_dir=project_dir,
            python=python, retries=0,  # a failed control is the signal, not a transient error
        ).expand(parameters=list_stacks())
    return dag
