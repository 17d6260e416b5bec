"""Airflow really runs tap's DAGs: in its own virtualenv (.venv-airflow, installed by .ci/run
with the `airflow` extra), as users run it. The DAG files must import without errors, and the
fleet-verify DAG runs once end to end (`dag.test()`) against a throwaway sandbox stack, its
tasks executing the fleet notebook on the `tap` kernelspec. Every record an Airflow task leaves
is a tap record (metadata, index, trail; the chain verifies). The runbook DAG's deploy applies
the plan its preview saved, and a protected stack's (prod) without an approval fails at deploy
with nothing changed.

Under CI the airflow venv must be there (a missing one fails, never skips); locally, the test
skips with the reason. TAP_AIRFLOW_PYTHON points at another Airflow interpreter."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tap_lib.project import project_dir

VENV_PYTHON = project_dir() / ".venv-airflow" / "bin" / "python"


@pytest.fixture(scope="module")
def airflow_python(ci_tool) -> str:
    ci_tool("airflow")
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
                              "tasks": {d: sorted(bag.get_dag(d).task_ids) for d in bag.dag_ids},
                              "deploy_plan": bag.get_dag("tap_runbook_dev").get_task("deploy")
                                             .parameters["plan"]}))
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
    assert bag["deploy_plan"] == "{{ ti.xcom_pull(task_ids='preview') }}"


CLOSED_RECORDS = """
import json, sys
sys.path.insert(0, {project!r})
from tap_lib.airflow.dags import _TapRecords
from tap_lib.errors import OperationFailed

with _TapRecords(sys.executable, {project!r}, {{}}, "preview") as records:
    pass                                    # the record process has ended, its pipes closed
try:
    records.ask({{"step": "begin"}})
except OperationFailed as exc:
    print("RESULT " + json.dumps([type(exc).__name__, str(exc)]))
"""


def test_asking_a_closed_record_process_is_a_typed_error(airflow_python):
    """In Airflow's interpreter: a task asking tap's record process after it ended gets tap's
    OperationFailed naming the task, not an AssertionError (gone under `python -O`)."""
    code = CLOSED_RECORDS.format(project=str(project_dir()))
    out = subprocess.run([airflow_python, "-c", code], capture_output=True, text=True,
                         timeout=300)
    kind, said = json.loads(result(out))
    assert kind == "OperationFailed" and "for the preview task has no open pipe" in said, said
    assert "hint: ask only inside" in said


def tap_records(root: Path) -> dict[str, nbformat.NotebookNode]:
    """Every record under `root`, by path."""
    return {str(p): nbformat.read(p, as_version=4) for p in sorted(root.glob("*/*.ipynb"))}


def assert_first_class(records: dict[str, nbformat.NotebookNode], root: Path) -> None:
    """Each record carries tap's metadata, is in tap's index (what `tap audit` lists) and
    chained in the trail with the SHA-256 of its content, and the whole chain verifies."""
    from tap_lib import trail
    from tap_lib.ops import audit

    entries = {trail.record_location(e["record"], str(root)): e for e in trail.read(str(root))
               if e["operation"] == "record"}
    listed = set(audit.audit_table(output_dir=str(root))["path"])
    for path, nb in records.items():
        meta = nb.metadata["tap"]
        # the checkout's commit when the record was stored (others may commit meanwhile)
        assert re.fullmatch("[0-9a-f]{40}", meta["commit"]) and meta["operator"] == "airflow"
        assert entries[path]["commit"] == meta["commit"] and isinstance(meta["dirty"], bool)
        assert meta["status"] in ("succeeded", "failed") and meta["start"] and meta["end"]
        assert meta["airflow"]["run_id"] and meta["airflow"]["task_id"], meta
        assert meta["chain_prev"] and meta["parameters"]["target"] == "sandbox"
        assert path in listed, path
        assert entries[path]["record_sha256"] == trail.sha256_bytes(Path(path).read_bytes())
    assert audit.verify(str(root)).ok


def outputs_text(nb) -> list[str]:
    return [o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
            for c in nb.cells for o in c.get("outputs", [])]


RUNBOOK_DAGS = """
import sys
sys.path.insert(0, {project!r})
from tap_lib.airflow.dags import runbook_dag

dev = runbook_dag("dev", suffix="af3")      # throwaway stacks: ENVIRONMENT_SUFFIX
prod = runbook_dag("prod", suffix="af4")    # protected: params/prod.yaml
"""

DAG_RUNS = """
import json, sys
from airflow.models import DagBag
bag = DagBag(dag_folder=sys.argv[1])
runs = {}
# In the runbook DAGs preflight, verify and inspect are marked done without running (CI time):
# those tests are about the preview -> deploy hand-over; the fleet DAG runs whole.
for dag_id, skip in (("tap_fleet_verify", None),
                     ("tap_runbook_devaf3", "^(preflight|verify|inspect)$"),
                     ("tap_runbook_prodaf4", "^preflight$")):
    run = bag.get_dag(dag_id).test(mark_success_pattern=skip)
    runs[dag_id] = {"state": str(run.state),
                    "tasks": {f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0
                              else ti.task_id: str(ti.state) for ti in run.get_task_instances()}}
print("RESULT " + json.dumps(runs))
"""


@pytest.fixture(scope="module")
def dag_runs(airflow_python, airflow_env, sandbox_home, tmp_path_factory):
    """One Airflow process (its start costs ~10-20 s) runs, once each: the shipped fleet-verify
    DAG over dev-af1 (deployed here) and dev-af2 (not deployed), and the runbook DAGs of a
    throwaway dev stack and a throwaway prod stack (protected), as a user's own DAG file
    declares them. All records go to one records root."""
    from tap_lib.ops.stack import deploy

    deploy("dev", "sandbox", ("suffix=af1",), yes=True)   # the fleet's throwaway stack
    dags = tmp_path_factory.mktemp("dags")
    (dags / "tap_dags.py").symlink_to(project_dir() / "dags" / "tap_dags.py")
    (dags / "runbook_dags.py").write_text(RUNBOOK_DAGS.format(project=str(project_dir())))
    records = sandbox_home / "airflow-records"
    env = {**airflow_env, "TAP_HOME": os.environ["TAP_HOME"],
           "TAP_SANDBOX_PORT": os.environ["TAP_SANDBOX_PORT"], "TAP_OUTPUTS": str(records),
           "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
           "TAP_FLEET_ENVS": "dev", "TAP_FLEET_SUFFIXES": "af1,af2"}
    env.pop("ENVIRONMENT_SUFFIX", None)
    out = subprocess.run([airflow_python, "-c", DAG_RUNS, str(dags)], env=env,
                         capture_output=True, text=True, timeout=1200)
    return json.loads(result(out)), records


@pytest.mark.sandbox
def test_fleet_verify_dag_runs_end_to_end(dag_runs):
    runs, records = dag_runs
    run = runs["tap_fleet_verify"]
    # af2 is not deployed: its mapped task fails, and with it the run
    assert run["state"].endswith("failed"), run
    assert run["tasks"]["list_stacks"] == "success", run
    made = {p: nb for p, nb in tap_records(records).items()
            if nb.metadata["tap"]["notebook"] == "fleet"}
    by_stack = {nb.metadata["tap"]["stack"]: (path, nb) for path, nb in made.items()}
    assert sorted(by_stack) == ["TapStackaf1", "TapStackaf2"], sorted(by_stack)
    assert_first_class(made, records)
    af1_path, af1 = by_stack["TapStackaf1"]
    assert af1.metadata["tap"]["status"] == "succeeded"
    assert af1.metadata["tap"]["parameters"]["suffixes"] == ["af1"]
    assert by_stack["TapStackaf2"][1].metadata["tap"]["status"] == "failed"
    assert any("fleet verify: stacks=1, failed=0, not_verified=0, exit_code=0" in t
               for t in outputs_text(af1)), outputs_text(af1)
    from tap_lib import trail

    # the kernel's own trail entry (fleet verify, per stack) names the record it belongs to
    verified = [e for e in trail.read(str(records)) if e["operation"] == "verify"]
    assert {e["stack"]: trail.record_location(e["record"], str(records))
            for e in verified}["TapStackaf1"] == af1_path


def runbook_records(records: Path, stack: str) -> dict[str, tuple[str, nbformat.NotebookNode]]:
    return {nb.metadata["tap"]["notebook"]: (path, nb) for path, nb in tap_records(records).items()
            if nb.metadata["tap"]["stack"] == stack}


@pytest.mark.sandbox
def test_runbook_dag_deploys_the_plan_its_preview_saved(dag_runs):
    from tap_lib import trail
    from tap_lib.ops import plans

    runs, records = dag_runs
    run = runs["tap_runbook_devaf3"]
    assert run["state"].endswith("success") and run["tasks"]["deploy"] == "success", run
    made = runbook_records(records, "TapStackaf3")
    assert sorted(made) == ["deploy", "preview"], sorted(made)
    assert_first_class({p: nb for p, nb in made.values()}, records)
    preview_path, deploy_path = made["preview"][0], made["deploy"][0]
    deploy_meta = made["deploy"][1].metadata["tap"]
    assert deploy_meta["parameters"]["plan"] == preview_path    # handed over through XCom
    assert deploy_meta["airflow"]["dag_id"] == "tap_runbook_devaf3"
    reviewed = plans.load_plan(preview_path)
    assert reviewed.stack == "TapStackaf3" and reviewed.author == "airflow"
    assert reviewed.body["summary"]["create"] > 0
    deployed = [e for e in trail.read(str(records)) if e["operation"] == "deploy"
                and e["stack"] == "TapStackaf3" and e["result"] != "started"]
    assert len(deployed) == 1, deployed
    # the engine applied exactly the reviewed plan: its hash, its steps' counts
    assert deployed[0]["result"] == "succeeded"
    assert trail.record_location(deployed[0]["record"], str(records)) == deploy_path
    assert deployed[0]["plan_hash"] == reviewed.hash
    assert deployed[0]["summary"]["create"] == reviewed.body["summary"]["create"]
    assert any(f"applied reviewed plan {reviewed.hash}" in n for n in deployed[0]["notes"])


@pytest.mark.sandbox
def test_prod_runbook_dag_without_approval_fails_at_deploy_changing_nothing(dag_runs):
    from tap_lib import trail
    from tap_lib.engines.registry import open_engine
    from tap_lib.ops import plans
    from tap_lib.ops.stack import settings_for

    runs, records = dag_runs
    run = runs["tap_runbook_prodaf4"]
    assert run["state"].endswith("failed"), run
    assert run["tasks"]["preview"] == "success" and run["tasks"]["deploy"] == "failed", run
    assert run["tasks"]["verify"] == run["tasks"]["inspect"] == "upstream_failed", run
    made = runbook_records(records, "TapStackaf4")
    assert sorted(made) == ["deploy", "preview"], sorted(made)
    assert_first_class({p: nb for p, nb in made.values()}, records)
    preview_path, deploy_path = made["preview"][0], made["deploy"][0]
    deploy_meta = made["deploy"][1].metadata["tap"]
    assert deploy_meta["status"] == "failed" and deploy_meta["parameters"]["plan"] == preview_path
    # the record says why and what to do
    assert "PlanRefused" in deploy_meta["error"] and "approval" in deploy_meta["error"]
    assert f"tap approve {preview_path}" in deploy_meta["error"]
    reviewed = plans.load_plan(preview_path)
    assert plans.approved_by(reviewed) == []
    refused = [e for e in trail.read(str(records)) if e["operation"] == "deploy"
               and e["stack"] == "TapStackaf4" and e["result"] != "started"]
    assert [(e["result"], e["error"], e["plan_hash"],
             trail.record_location(e["record"], str(records))) for e in refused] == [
        ("refused", "PlanRefused", reviewed.hash, deploy_path)]
    engine = open_engine(settings_for("prod", ("suffix=af4",)), "sandbox", ("suffix=af4",))
    assert engine.resources() == [] and engine.is_protected()
