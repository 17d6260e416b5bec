"""`tap run` and `tap audit`: papermill records, their metadata, scrubbing, the audit index, S3.

Each test gets its own outputs directory; the module shares one sandbox emulator (conftest's
`sandbox_home`), stopped at the end.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import boto3
import nbformat
import pytest
import yaml

from tap_lib.engines.sandbox import server
from tap_lib.errors import ConfigError, UsageError
from tap_lib.ops import audit, runbook
from tap_lib.ops import stack as stack_ops
from tap_lib.ops.runbook import run_notebooks
from tap_lib.project import project_dir

pytestmark = [pytest.mark.sandbox]

RECORD_NAME = re.compile(r"^\d{8}T\d{6}Z-(\w+)(-\d+)?\.ipynb$")
SECRET = "hunter2-secret"


@pytest.fixture
def outputs(sandbox_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty records directory for one test."""
    out = tmp_path / "outputs"
    monkeypatch.setenv("TAP_OUTPUTS", str(out))
    monkeypatch.delenv("TAP_TARGET", raising=False)
    return out


def project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 declare: dict[str, str] | None = None) -> Path:
    """A copy of the project (TAP_PROJECT_DIR) whose notebooks' parameters cells also declare
    `declare` (name -> default source): tap's own notebooks take no secrets, so a test of
    secret scrubbing needs a notebook that declares one."""
    project = tmp_path / "project"
    for part in ("params", "notebooks"):
        shutil.copytree(project_dir() / part, project / part)
    shutil.copy(project_dir() / "Pulumi.yaml", project)
    for path in (project / "notebooks").glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if "parameters" in cell.metadata.get("tags", []):
                cell.source += "".join(f"\n{k} = {v}" for k, v in (declare or {}).items())
        nbformat.write(nb, path)
    monkeypatch.setenv("TAP_PROJECT_DIR", str(project))
    return project


def test_record_holds_metadata_summary_and_no_secret(outputs: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    project_copy(tmp_path, monkeypatch, {"db_password": '""'})
    [rec] = run_notebooks("preflight", env="dev",
                          parameters={"db_password": SECRET, "operator": "alice"})
    assert rec.status == "succeeded", rec.error
    path = Path(rec.path)
    assert path.parent == outputs / "dev" and RECORD_NAME.match(path.name)
    text = path.read_text()
    assert SECRET not in text

    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata["tap"]
    assert {k: meta[k] for k in ("env", "stack", "target", "operator", "notebook", "status")} == {
        "env": "dev", "stack": "TapStackdev", "target": "sandbox", "operator": "alice",
        "notebook": "preflight", "status": "succeeded"}
    assert meta["parameters"]["db_password"] == "***"
    assert nb.metadata["papermill"]["parameters"]["db_password"] == "***"
    assert nb.metadata["papermill"]["output_path"] == str(path)
    assert meta["tap_version"] and meta["commit"] and meta["start"] <= meta["end"]
    assert meta["summary"]["errors"] == 0
    assert set(meta["summary"]) == {"errors", "warnings", "rules_checked"}
    [injected] = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert 'db_password = "***"' in injected.source

    table = audit.audit_table("dev")
    assert table[["notebook", "operator", "status", "path"]].to_dict("records") == [
        {"notebook": "preflight", "operator": "alice", "status": "succeeded", "path": str(path)}]
    assert "errors=0" in table.summary[0]

    html = audit.export_html(path.stem)
    assert html == outputs / "dev" / audit.EXPORTS / path.with_suffix(".html").name
    assert "<html" in html.read_text()[:500].lower()
    assert SECRET not in html.read_text()


def test_failed_check_fails_the_run_leaves_a_record_and_stops_all(
        outputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = project_copy(tmp_path, monkeypatch)
    broken = yaml.safe_load((project / "params" / "dev.yaml").read_text())
    broken.update(environment="broken", suffix="broken")
    broken["db"]["engine_version"] = "15.99"  # valid syntax, but no such Aurora version
    (project / "params" / "broken.yaml").write_text(yaml.safe_dump(broken))

    records = run_notebooks("all", env="broken")
    assert [(r.notebook, r.status) for r in records] == [("preflight", "failed")]
    rec = records[0]
    assert "ChecksFailed" in rec.error and "preflight found 2 error(s)" in rec.error
    assert rec.summary["errors"] == 2
    meta = nbformat.read(rec.path, as_version=4).metadata["tap"]
    assert meta["status"] == "failed" and meta["error"] == rec.error
    assert meta["commit"] == "unknown"  # the copy is not a git repository
    assert audit.audit_table("broken").status.tolist() == ["failed"]


def test_failed_verify_check_fails_the_run(outputs: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "verifyfail")  # a stack of this test's own
    stack_ops.deploy("dev")
    try:
        bucket = stack_ops.outputs("dev")["s3_bucket_name"]
        server.client("s3", "eu-west-2").put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
        [rec] = run_notebooks("verify", env="dev")
        # `tap run fleet --env dev`: the fleet notebook over that one stack, -p envs implied
        [fleet] = run_notebooks("fleet", env="dev", parameters={"fail_on_failed": True})
    finally:
        stack_ops.destroy("dev", yes=True)
    assert rec.status == "failed" and rec.stack == "TapStackverifyfail"
    assert "ChecksFailed" in rec.error and "s3.versioning" in rec.error
    assert rec.summary["failed"] == 1
    assert (fleet.notebook, fleet.status) == ("fleet", "failed"), fleet.error
    assert "TapStackverifyfail" in fleet.error and "ChecksFailed" in fleet.error


def test_destroy_refuses_without_confirmation(outputs: Path) -> None:
    [rec] = run_notebooks("destroy", env="dev")
    assert rec.status == "failed"
    assert "UsageError" in rec.error and "confirm='TapStackdev'" in rec.error
    assert rec.summary == {}


def test_records_are_never_overwritten(outputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runbook, "utc_now", lambda: "2026-11-28T14:25:01+00:00")
    first = run_notebooks("audit", env="dev")[0]
    second = run_notebooks("audit", env="dev")[0]
    assert Path(first.path).name == "20261128T142501Z-audit.ipynb"
    assert Path(second.path).name == "20261128T142501Z-audit-2.ipynb"
    assert first.status == second.status == "succeeded"
    assert nbformat.read(first.path, as_version=4).metadata["tap"]["summary"] == {
        "records": 0, "failed": 0}
    assert second.summary == {"records": 1, "failed": 0}  # the audit saw the first record


def test_unknown_notebook_is_a_usage_error(outputs: Path) -> None:
    from tap_lib.errors import UsageError

    with pytest.raises(UsageError, match="allowed: preflight"):
        run_notebooks("nope", env="dev")
    assert not outputs.exists()


def test_audit_lists_10000_records_from_the_index(outputs: Path) -> None:
    """Listing reads only the index: none of these records exists as a file."""
    outputs.mkdir()
    notebooks = ["preflight", "preview", "deploy", "verify", "inspect"]
    with open(outputs / audit.INDEX_NAME, "w") as fh:
        for i in range(10_000):
            env = ("dev", "staging", "prod")[i % 3]
            fh.write(json.dumps({
                "time": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T00:00:{i % 60:02d}+00:00",
                "env": env, "notebook": notebooks[i % 5], "stack": f"TapStack{env}",
                "target": "sandbox", "operator": "ci", "status": "succeeded",
                "duration_s": 1.5, "summary": {"passed": 30}, "path": f"/nowhere/{i}.ipynb"})
                + "\n")
        fh.write('{"torn": ')  # a writer killed mid-line must not break listing
    table = audit.audit_table()
    assert len(table) == 10_000 and table.time.is_monotonic_increasing
    assert list(table.columns) == audit.COLUMNS
    dev = audit.audit_table("dev")
    assert len(dev) == 3334 and set(dev.env) == {"dev"}
    assert set(dev.summary) == {"passed=30"}


def test_missing_index_is_rebuilt_from_the_records(outputs: Path) -> None:
    for i, env in enumerate(("dev", "prod")):
        nb = nbformat.v4.new_notebook()
        nb.metadata["tap"] = {"start": f"2026-11-28T10:00:0{i}+00:00", "env": env,
                              "notebook": "verify", "status": "succeeded",
                              "summary": {"failed": 0}}
        (outputs / env).mkdir(parents=True)
        nbformat.write(nb, outputs / env / f"20261128T10000{i}Z-verify.ipynb")
    table = audit.audit_table()
    assert table.env.tolist() == ["dev", "prod"]
    assert (outputs / audit.INDEX_NAME).exists()


def test_records_go_to_s3(outputs: Path, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """papermill writes s3:// natively; the sandbox emulator is the S3 endpoint."""
    from papermill.s3 import S3

    project_copy(tmp_path, monkeypatch, {"api_token": '""'})
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint())
    monkeypatch.setattr(S3, "s3_session", (None, None, None))  # papermill caches its session
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="tap-records", ObjectLockEnabledForBucket=True)
    root = "s3://tap-records/runbook"
    monkeypatch.setenv("TAP_OUTPUTS", root)

    [rec] = run_notebooks("audit", env="dev", parameters={"api_token": SECRET})
    assert rec.status == "succeeded", rec.error
    assert rec.path.startswith(f"{root}/dev/") and RECORD_NAME.match(rec.path.rsplit("/")[-1])
    body = s3.get_object(Bucket="tap-records", Key=rec.path.removeprefix("s3://tap-records/"))[
        "Body"].read().decode()
    assert SECRET not in body
    assert json.loads(body)["metadata"]["tap"]["status"] == "succeeded"
    head = s3.head_object(Bucket="tap-records", Key=rec.path.removeprefix("s3://tap-records/"))
    assert head["ObjectLockMode"] == "COMPLIANCE"

    assert rec.summary == {"records": 0, "failed": 0}  # the kernel listed the S3 root too

    assert audit.audit_table().path.tolist() == [rec.path]
    audit.index_path(root).unlink()
    assert audit.rebuild_index() == audit.index_path(root)
    assert audit.audit_table().path.tolist() == [rec.path]
    assert not outputs.exists()  # nothing went to the local records directory


# -- parameters are data: declared names, declared types, records inside the root ----------------

def test_parameter_names_come_from_the_parameters_cell() -> None:
    assert set(runbook.declared_parameters("preflight")) == {"env", "target", "operator"}
    assert runbook.declared_parameters("audit") == {
        "env": "dev", "target": "sandbox", "operator": "", "limit": 30, "export": ""}


def test_code_in_a_parameter_name_is_refused_before_a_kernel_starts(
        outputs: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    name = f"__import__('os').system('touch {marker}');x"
    with pytest.raises(ConfigError) as info:
        run_notebooks("preflight", env="dev", parameters={name: "1"})
    msg = str(info.value)
    assert "preflight.ipynb" in msg and "declares no such parameter" in msg
    assert "allowed: env, target, operator" in msg
    assert info.value.exit_code == 2
    assert not marker.exists() and not outputs.exists()  # no kernel, no record


def test_run_all_checks_each_notebook(outputs: Path) -> None:
    with pytest.raises(ConfigError, match=r"'-p limit'.*none of the notebooks preflight, "
                                          r"preview, deploy, verify, inspect declares"):
        run_notebooks("all", env="dev", parameters={"limit": "5"})
    assert not outputs.exists()
    # a parameter reaches only the notebooks that declare it; each checks its type
    typed = runbook.check_parameters(runbook.ALL, {"confirm": "TapStackdev", "operator": "7"},
                                     env="dev", target="sandbox")
    assert typed["deploy"] == {"confirm": "TapStackdev", "operator": "7"}
    assert typed["preflight"] == {"operator": "7"}


@pytest.mark.parametrize("given,expected", [
    ({"limit": "5"}, {"limit": 5}),
    ({"limit": "-3"}, {"limit": -3}),
    ({"limit": 7}, {"limit": 7}),
    ({"operator": "123"}, {"operator": "123"}),   # text stays text: not the int 123
    ({"operator": "true"}, {"operator": "true"}),
    ({"operator": "Zoë O'Brien \"ops\""}, {"operator": "Zoë O'Brien \"ops\""}),
    ({"env": "dev", "target": "sandbox"}, {}),      # the same as --env/--target: nothing to add
])
def test_parameter_values_take_the_declared_type(given, expected) -> None:
    typed = runbook.check_parameters(("audit",), given, env="dev", target="sandbox")["audit"]
    assert typed == expected
    assert [type(v) for v in typed.values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize("name,value,why", [
    ("limit", "five", "whole number"),
    ("limit", "1.5", "whole number"),
    ("limit", "1e3", "whole number"),
    ("limit", "9" * 40, "whole number"),
    ("limit", True, "expected a int"),
    ("limit", "\u0661", "whole number"),            # an Arabic-Indic digit
    ("operator", 5, "expected a str"),
    ("operator", "a\nb", "line breaks"),
    ("operator", "a\x00b", "control characters"),
    ("operator", "\x1b[2J", "control characters"),
    ("operator", "x" * 5000, "longer than 1024"),
    ("env", "prod", "set with --env"),
    ("target", "aws", "set with --target"),
])
def test_values_of_another_type_are_refused(name, value, why) -> None:
    with pytest.raises(ConfigError) as info:
        runbook.check_parameters(("audit",), {name: value}, env="dev", target="sandbox")
    msg = str(info.value)
    assert why in msg and f"'-p {name}'" in msg and "audit.ipynb" in msg
    assert len(msg) < 1000


def test_a_secret_looking_parameter_value_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        runbook.check_parameters(("audit",), {"api_token": SECRET}, env="dev", target="sandbox")
    assert SECRET not in str(info.value) and "api_token" in str(info.value)


@pytest.mark.parametrize("record", [
    "../../../../etc/shadow", "/etc/passwd", "../outputs-elsewhere/dev/x.ipynb",
    "s3://someone-elses-bucket/dev/x.ipynb", "dev/../../../etc/passwd.ipynb", "",
])
def test_export_is_confined_to_the_records_root(outputs: Path, record: str) -> None:
    with pytest.raises(UsageError) as info:
        audit.export_html(record)
    assert info.value.exit_code == 2
    with pytest.raises(ConfigError, match="'-p export'"):
        runbook.check_parameters(("audit",), {"export": record or "\t"}, env="dev",
                                 target="sandbox")
    assert not outputs.exists()  # nothing exported, nothing read


def test_export_refuses_a_link_out_of_the_root_and_a_forged_index_row(
        outputs: Path, tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "private.ipynb"
    secret.parent.mkdir()
    nbformat.write(nbformat.v4.new_notebook(), secret)
    (outputs / "dev").mkdir(parents=True)
    link = outputs / "dev" / "20261128T000000Z-verify.ipynb"
    link.symlink_to(secret)
    with pytest.raises(UsageError, match="not an audit record under the records root"):
        audit.export_html(str(link))
    (outputs / audit.INDEX_NAME).write_text(json.dumps({"path": str(secret)}) + "\n")
    with pytest.raises(UsageError, match="not an audit record under the records root"):
        audit.export_html("private")
    assert not secret.with_suffix(".html").exists()
    assert list(outputs.rglob("*.html")) == []


def test_export_of_a_record_inside_the_root_still_works(outputs: Path) -> None:
    record = outputs / "dev" / "20261128T000000Z-verify.ipynb"
    record.parent.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), record)
    assert audit.export_html(str(record)) == (
        outputs / "dev" / audit.EXPORTS / record.with_suffix(".html").name)
    assert runbook.check_parameters(("audit",), {"export": str(record)}, env="dev",
                                    target="sandbox")["audit"] == {"export": str(record)}
