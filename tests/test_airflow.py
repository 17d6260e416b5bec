"""Airflow really runs tap's DAGs: in its own virtualenv (.venv-airflow, installed by .ci/run
with the `airflow` extra), as users run it. The DAG files must import without errors, and the
fleet-verify DAG runs once end to end (`dag.test()`) against a throwaway sandbox stack, its
tasks executing the fleet notebook on the `tap` kernelspec; its records must exist.

Under CI the airflow venv must be there (a missing one fails, never skips); locally, the test
skips with the reason. TAP_AIRFLOW_PYTHON points at another Airflow interpreter."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tap_lib.project import project_dir

VENV_PYTHON = project_dir() / ".venv-airflow" / "bin" / "python"


@pytest.fixture(scope="module")
def airflow_python() -> str:
    python = Path(os.environ.get("TAP_AIRFLOW_PYTHON") or VENV_PYTHON)
    if not python.exists():
        why = (f"no Airflow virtualenv at {python}: .ci/run creates it with "
               "`python3 -m venv .venv-airflow && .venv-airflow/bin/pip install '.[airflow]'`")
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return str(python)


@pytest.fixture(scope="module")
def airflow_env(airflow_python, tmp_path_factory) -> dict[str, str]:
    """An Airflow home with a migrated SQLite database, the repo's dags/ folder, and the `tap`
    kernelspec (this interpreter) where Airflow's papermill finds it."""
    from tap_lib.airflow.kernel import install

    home = tmp_path_factory.mktemp("airflow-home")
    jupyter = home / "jupyter"
    install(directory=jupyter / "kernels", python=sys.executable)
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(project_dir() / "dags"),
           "JUPYTER_PATH": str(jupyter), "TAP_PYTHON": sys.executable}
    out = subprocess.run([airflow_python, "-m", "airflow", "db", "migrate"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return env


DAGBAG = """
import json, sys
from airflow.models import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print("RESULT " + json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()},
                              "dags": sorted(bag.dag_ids),
                              "tasks": {d: sorted(bag.get_dag(d).task_ids) for d in bag.dag_ids}}))
"""

TEST_RUN = """
import sys
from airflow.models import DagBag
dag = DagBag(dag_folder=sys.argv[1]).get_dag("tap_fleet_verify")
run = dag.test()
print("RESULT " + str(run.state))
"""


def result(out: subprocess.CompletedProcess) -> str:
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return lines[-1].removeprefix("RESULT ")


def test_dags_import_without_errors(airflow_python, airflow_env):
    out = subprocess.run([airflow_python, "-c", DAGBAG, str(project_dir() / "dags")],
                         env=airflow_env, capture_output=True, text=True, timeout=300)
    bag = json.loads(result(out))
    assert bag["errors"] == {}
    assert {"tap_fleet_verify", "tap_runbook_dev", "tap_runbook_staging"} <= set(bag["dags"])
    assert bag["tasks"]["tap_runbook_dev"] == sorted(
        ["preflight", "preview", "deploy", "verify", "inspect"])
    assert bag["tasks"]["tap_fleet_verify"] == ["list_stacks", "verify"]


@pytest.mark.sandbox
def test_fleet_verify_dag_runs_end_to_end(airflow_python, airflow_env, sandbox_home):
    from tap_lib.ops.stack import deploy

    deploy("dev", "sandbox", ("suffix=af1",), yes=True)   # the throwaway stack
    records = sandbox_home / "airflow-records"
    env = {**airflow_env, "TAP_HOME": os.environ["TAP_HOME"],
           "TAP_SANDBOX_PORT": os.environ["TAP_SANDBOX_PORT"], "TAP_OUTPUTS": str(records),
           "TAP_FLEET_ENVS": "dev", "TAP_FLEET_SUFFIXES": "af1,af2"}
    env.pop("ENVIRONMENT_SUFFIX", None)
    out = subprocess.run([airflow_python, "-c", TEST_RUN, str(project_dir() / "dags")],
                         env=env, capture_output=True, text=True, timeout=900)
    # af2 is not deployed: its mapped task fails, and with it the run
    assert result(out).endswith("failed"), out.stdout[-3000:]
    made = sorted(p.name for p in (records / "dev").glob("*-fleet-dev-*.ipynb"))
    assert any("-fleet-dev-af1-" in n for n in made) and any("-fleet-dev-af2-" in n for n in made)
    import nbformat

    af1 = nbformat.read(next((records / "dev").glob("*-fleet-dev-af1-*.ipynb")), as_version=4)
    texts = [o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
             for c in af1.cells for o in c.get("outputs", [])]
    assert any("fleet verify: stacks=1, failed=0, not_verified=0, exit_code=0" in t
               for t in texts), texts
