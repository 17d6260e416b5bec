"""DAG factory: tap's runbook and a nightly fleet verify as Airflow DAGs of papermill tasks.

Airflow lives in its own virtualenv (`pip install 'tap-runbook[airflow]'` there, or the two
packages the extra names); each task is a `PapermillOperator` running one of tap's committed
notebooks on the `tap` kernelspec (tap_lib/airflow/kernel.py), so the notebook runs on tap's
Python, and writes the executed notebook into the records root (`TAP_OUTPUTS`: a directory or
`s3://bucket/prefix`) as `<root>/<env>/<UTC time>-<notebook>-<stack>.ipynb`.

- `runbook_dag(env)`: preflight -> preview -> deploy -> verify -> inspect, one stack.
- `fleet_verify_dag()`: lists the fleet's stacks at run time (`tap fleet list --json`, from tap's
  environment) and maps the fleet notebook over them (`.expand`), one task per stack; a failed
  control fails that task and so the run.

This module imports Airflow and nothing of tap beyond the standard library, so it loads in
Airflow's environment; anything needing tap runs in tap's (the kernel, `tap_python`).
"""
from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from airflow.providers.papermill.operators.papermill import PapermillOperator

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.decorators import task

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
    """A PapermillOperator for one of tap's notebooks: input is the committed notebook, output
    a new record under the records root (the time of the run and the try in its name, so a
    retry never overwrites a record), kernel the `tap` kernelspec."""

    def __init__(self, *, notebook: str, records: str | None = None,
                 project_dir: str | None = None, kernel_name: str = KERNEL_NAME, **kwargs):
        project = Path(project_dir) if project_dir else PROJECT_DIR
        kwargs.setdefault("input_nb", str(project / "notebooks" / f"{notebook}.ipynb"))
        kwargs.setdefault("output_nb", "(chosen at run time)")
        super().__init__(kernel_name=kernel_name, **kwargs)
        self.notebook = notebook
        self.records = records or records_root(project)

    def execute(self, context: Any):
        params = dict(self.parameters or {})
        env = params.get("env") or (params.get("envs") or ["fleet"])[0]
        suffix = params.get("suffix") or "-".join(params.get("suffixes") or [])
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        name = "-".join(p for p in (stamp, self.notebook, env, suffix) if p)
        try_number = getattr(context.get("ti"), "try_number", 1)
        folder = f"{self.records.rstrip('/')}/{env}"
        if "://" not in folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
        self.output_nb = f"{folder}/{name}-try{try_number}.ipynb"
        self.log.info("record: %s", self.output_nb)
        return super().execute(context)


def runbook_dag(env: str, *, dag_id: str | None = None, target: str = "sandbox",
                schedule: Any = None, project_dir: str | None = None,
                records: str | None = None, operator: str = "airflow",
                confirm: str = "", preview_parameters: dict | None = None,
                **dag_kwargs: Any) -> DAG:
    """preflight -> preview -> deploy -> verify -> inspect of one environment.

    `confirm`: the stack name, which a protected stack (prod) needs for an unattended deploy.
    `preview_parameters`: extra parameters of the preview notebook (where saving the plan for the
    deploy is switched on, once the preview notebook offers it)."""
    common = {"env": env, "target": target, "operator": operator}
    per_notebook = {"preview": {**common, **(preview_parameters or {})},
                    "deploy": {**common, **({"confirm": confirm} if confirm else {})}}
    with DAG(dag_id or f"tap_runbook_{env}", schedule=schedule, start_date=START,
             catchup=False, tags=["tap", env], **dag_kwargs) as dag:
        previous = None
        for notebook in RUNBOOK:
            step = TapNotebookOperator(task_id=notebook, notebook=notebook,
                                       parameters=per_notebook.get(notebook, common),
                                       records=records, project_dir=project_dir)
            if previous is not None:
                previous >> step
            previous = step
    return dag


def fleet_verify_dag(*, dag_id: str = "tap_fleet_verify", target: str = "sandbox",
                     envs: Iterable[str] = (), suffixes: Iterable[str] = (),
                     fleet_file: str | None = None, schedule: Any = "15 2 * * *",
                     project_dir: str | None = None, records: str | None = None,
                     python: str | None = None, **dag_kwargs: Any) -> DAG:
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
                     "target": target, "fail_on_failed": True}
                    for s in json.loads(out.stdout)]

        TapNotebookOperator.partial(
            task_id="verify", notebook="fleet", records=records, project_dir=project_dir,
            retries=0,  # a failed control is the signal, not a transient error
        ).expand(parameters=list_stacks())
    return dag
