"""No secret leaves Secrets Manager: after the whole runbook on the sandbox, no record, log or
state file holds the database passwords or any other secret value the emulator keeps.

Searched: every file under TAP_HOME (sandbox state and history, the emulator's server log, the
stand-in PostgreSQL's data directory and log) and the records directory, plus everything the
runs printed. Each secret is searched raw, JSON-escaped and HTML-escaped (records are JSON,
exports and table outputs HTML).
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from tap_lib.engines.sandbox import server
from tap_lib.ops import stack as stack_ops
from tap_lib.ops.runbook import ALL, run_notebooks
from tap_lib.project import outputs_dir

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]

SECRET_FIELD = re.compile(r"password|secret|token|passphrase|key", re.IGNORECASE)


def sandbox_secrets(region: str) -> dict[str, str]:
    """Every secret value the emulator holds, every version: {label: value}."""
    sm = server.client("secretsmanager", region)
    found: dict[str, str] = {}
    for page in sm.get_paginator("list_secrets").paginate(IncludePlannedDeletion=True):
        for secret in page["SecretList"]:
            versions = sm.list_secret_version_ids(SecretId=secret["ARN"],
                                                  IncludeDeprecated=True)["Versions"]
            for version in versions:
                raw = sm.get_secret_value(SecretId=secret["ARN"],
                                          VersionId=version["VersionId"])["SecretString"]
                label = f"{secret['Name']}@{'/'.join(version.get('VersionStages', []))}"
                found.update(secret_parts(label, raw))
    return found


def secret_parts(label: str, raw: str) -> dict[str, str]:
    """The whole secret string, and each field whose name says it is secret."""
    parts = {label: raw}
    try:
        data = json.loads(raw)
    except ValueError:
        return parts
    if isinstance(data, dict):
        parts.update({f"{label}.{key}": value for key, value in data.items()
                      if isinstance(value, str) and value and SECRET_FIELD.search(key)})
    return parts


def encodings(value: str) -> set[bytes]:
    return {form.encode() for form in (value, json.dumps(value)[1:-1], html.escape(value))}


def leaks(roots: list[Path], secrets: dict[str, str], printed: str = "") -> list[str]:
    """Where any secret occurs, by file and secret label (never the value itself)."""
    needles = {label: encodings(value) for label, value in secrets.items()}
    found = [f"printed output: {label}" for label, forms in needles.items()
             if any(form in printed.encode() for form in forms)]
    for root in roots:
        for path in sorted(root.rglob("*")):
            if not path.is_file():
                continue
            data = path.read_bytes()
            found += [f"{path}: {label}" for label, forms in needles.items()
                      if any(form in data for form in forms)]
    return found


def test_no_secret_in_records_logs_or_state(sandbox_home: Path,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    records = run_notebooks("all", env="dev")
    assert [(r.notebook, r.status) for r in records] == [(n, "succeeded") for n in ALL], \
        [r.error for r in records]

    settings = stack_ops.settings_for("dev")
    secrets = sandbox_secrets(settings.region)
    app_secret = stack_ops.outputs("dev")["db_secret_arn"]
    app_name = app_secret.split(":")[-1].rsplit("-", 1)[0]
    # the two database passwords are among what is searched
    assert any(label.startswith("rds!cluster-") and label.endswith("AWSCURRENT.password")
               for label in secrets)
    assert f"{app_name}@AWSCURRENT.password" in secrets

    postgres_logs = [p for p in sandbox_home.rglob("server.log") if "postgres" in p.parts]
    assert postgres_logs, "the stand-in PostgreSQL's log should be among the files searched"
    roots = [sandbox_home, outputs_dir()]
    assert leaks(roots, secrets, "".join(capfd.readouterr())) == []

    [destroyed] = run_notebooks("destroy", env="dev",
                                parameters={"confirm": settings.stack_name})
    assert destroyed.status == "succeeded", destroyed.error
    assert leaks(roots, secrets, "".join(capfd.readouterr())) == []
