"""tap's DAGs. Copy (or link) this file into Airflow's DAGs folder.

Set TAP_PROJECT_DIR to the tap checkout (default: the checkout this file sits in), TAP_PYTHON to
tap's interpreter (default: <checkout>/.venv/bin/python), TAP_OUTPUTS to the records root
(a directory or s3://bucket/prefix), and TAP_TARGET (sandbox or aws). The `tap` kernelspec must
be installed where Airflow's papermill finds it: `<tap python> -m tap_lib.airflow.kernel`.
"""
import os
import sys
from pathlib import Path

PROJECT = os.environ.get("TAP_PROJECT_DIR") or str(Path(__file__).resolve().parents[1])
if PROJECT not in sys.path:
    sys.path.insert(0, PROJECT)

from tap_lib.airflow.dags import fleet_verify_dag, runbook_dag  # noqa: E402

TARGET = os.environ.get("TAP_TARGET", "sandbox")

for env in ("dev", "staging"):
    globals()[f"tap_runbook_{env}"] = runbook_dag(env, target=TARGET, project_dir=PROJECT)

tap_fleet_verify = fleet_verify_dag(
    target=TARGET, project_dir=PROJECT,
    envs=[e for e in os.environ.get("TAP_FLEET_ENVS", "").split(",") if e],
    suffixes=[s for s in os.environ.get("TAP_FLEET_SUFFIXES", "").split(",") if s])
