"""The audit trail (tap_lib/trail.py) and `tap audit verify` (ops/audit.verify).

Mutations run on a real sandbox emulator (conftest's `sandbox_home`); tampering is done to real
trail and record files, the way someone with write access to the records would do it, and
`tap audit verify` must name each change. The S3 test uses the emulator's S3 (moto), whose
Object Lock keeps a locked version from being deleted.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import boto3
import pytest
from fixtures_audit import chain_of, entries, fake_record, fresh_outputs, run_verify

from tap_lib import trail
from tap_lib.cli import main
from tap_lib.engines.sandbox import server
from tap_lib.errors import ConfigError, ProtectedStack
from tap_lib.ops import audit, runbook
from tap_lib.ops import stack as stack_ops

HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return fresh_outputs(tmp_path, monkeypatch)


# -- every mutation leaves an entry -------------------------------------------------------------

@pytest.mark.sandbox
def test_cli_and_library_deploys_and_destroys_each_leave_an_entry(
        sandbox_home: Path, outputs: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "trailcli")
    assert main(["deploy", "--env", "dev", "--yes"]) == 0
    [started, cli] = entries(operation="deploy")   # write-ahead: the start, then the outcome
    assert started["result"] == "started" and cli["started"] == started["hash"]
    assert cli["result"] == "succeeded" and cli["error"] is None
    assert (cli["stack"], cli["target"], cli["env_file"]) == ("TapStacktrailcli", "sandbox",
                                                               "params/dev.yaml")
    assert cli["operator"] == "alice" and cli["summary"]["create"] > 40
    assert re.match(r"^[0-9a-f]{40}$", cli["commit"]) and isinstance(cli["dirty"], bool)
    assert cli["record"] is None and started["prev"] == trail.GENESIS and cli["seq"] == 1

    # a library call, skipping a rule on purpose: the reason is in the entry
    result = stack_ops.deploy("dev", yes=True, skip_rules=("TAP201",), reason="budget approved")
    lib = entries(operation="deploy")[-1]
    assert lib["seq"] == 3 and entries(seq=2)[0]["prev"] == cli["hash"]
    assert lib["summary"] == result.summary and lib["summary"]["same"] > 40
    assert "preflight rule TAP201 skipped: budget approved" in lib["notes"]

    from tap_lib.ops.inspect import inspect_stack

    pictures = [inspect_stack("dev").topology_path for _ in range(2)]
    assert pictures[0] != pictures[1] and all(p.is_file() for p in pictures)
    assert pictures[0].parent == outputs / "dev" / audit.PICTURES

    stack_ops.refresh("dev")
    stack_ops.destroy("dev", yes=True)
    assert [(e["operation"], e["result"]) for e in trail.read()] == [
        (op, result) for op in ("deploy", "deploy", "refresh", "destroy")
        for result in ("started", "succeeded")]
    assert entries(operation="destroy")[-1]["summary"]["delete"] > 40

    code, out = run_verify(capsys)
    assert code == 0 and "intact: 8 entries, 0 records" in out
    assert main(["audit"]) == 0
    assert f"chain head: #7 {trail.head().hash}" in capsys.readouterr().out


@pytest.mark.sandbox
def test_a_refused_protected_destroy_leaves_a_refused_entry(sandbox_home: Path,
                                                            outputs: Path) -> None:
    with pytest.raises(ProtectedStack):
        stack_ops.destroy("prod", yes=True)
    [started, entry] = trail.read()
    assert started["result"] == "started" and entry["started"] == started["hash"]
    assert (entry["operation"], entry["result"], entry["error"]) == (
        "destroy", "refused", "ProtectedStack")
    assert entry["stack"] == "TapStackprod" and entry["env_file"] == "params/prod.yaml"
    assert entry["summary"] == {}


@pytest.mark.sandbox
def test_a_tap_run_deploy_names_its_record(sandbox_home: Path, outputs: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "trailrun")
    try:
        [rec] = runbook.run_notebooks("deploy", env="dev", parameters={"operator": "bob"})
    finally:
        stack_ops.destroy("dev", yes=True)
    assert rec.status == "succeeded", rec.error
    started, deploy, record = trail.read()[:3]
    name = f"dev/{Path(rec.path).name}"  # relative to the records root
    assert started["record"] == deploy["record"] == name
    assert trail.record_location(name, str(outputs)) == rec.path
    assert deploy["operation"] == "deploy"
    assert deploy["operator"] == "bob"  # the kernel ran as the run's operator
    assert record["operation"] == "record" and record["record"] == name
    assert record["prev"] == deploy["hash"]
    raw = Path(rec.path).read_bytes()
    assert record["record_sha256"] == trail.sha256_bytes(raw)
    meta = json.loads(raw)["metadata"]["tap"]
    assert meta["chain_prev"] == deploy["hash"] and isinstance(meta["dirty"], bool)
    [row] = [json.loads(x) for x in audit.index_path(str(outputs)).read_text().splitlines()]
    assert (row["sha256"], row["entry"], row["path"]) == (record["record_sha256"],
                                                           record["hash"], name)
    code, out = run_verify(capsys)
    assert code == 0, out


def test_a_failing_mutation_leaves_a_failed_entry(outputs: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine whose apply breaks part-way: the entry says failed, with the error class."""
    from tap_lib.engines.sandbox.engine import SandboxEngine
    from tap_lib.errors import OperationFailed

    def broken_up(self, progress, **kwargs):
        raise OperationFailed("the emulator went away half-way (test)")

    monkeypatch.setattr(SandboxEngine, "_up", broken_up)
    monkeypatch.setattr(SandboxEngine, "stack_meta", lambda self: None)
    engine = SandboxEngine(stack_ops.settings_for("dev"))
    with pytest.raises(OperationFailed):
        engine.up()
    [started, entry] = trail.read()
    assert (entry["operation"], entry["result"], entry["error"]) == (
        "deploy", "failed", "OperationFailed")
    assert started["result"] == "started" and entry["started"] == started["hash"]


# -- tamper evidence ------------------------------------------------------------------------------

def test_an_untouched_chain_verifies(outputs: Path, capsys: pytest.CaptureFixture) -> None:
    lines, paths = chain_of(outputs)
    code, out = run_verify(capsys)
    assert code == 0 and "intact: 12 entries, 6 records" in out
    assert main(["audit", "verify", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["head"]["hash"] == json.loads(lines[-1])["hash"]


@pytest.mark.parametrize("tamper,kind,named", [
    ("edit", "edited", "entry 4"),
    ("delete", "deleted", "entry 4"),
    ("swap", "reordered", "entry 5"),
    ("insert", "inserted", "entry 4"),
    ("rehash", "edited", "entry 4"),
])
def test_each_change_to_the_trail_is_named(outputs: Path, capsys: pytest.CaptureFixture,
                                           tamper: str, kind: str, named: str) -> None:
    lines, _ = chain_of(outputs)
    entry = json.loads(lines[4])
    if tamper == "edit":          # a field changed, hash left as it was
        entry["result"] = "failed"
        lines[4] = json.dumps(entry) + "\n"
    elif tamper == "delete":
        del lines[4]
    elif tamper == "swap":
        lines[4], lines[5] = lines[5], lines[4]
    elif tamper == "insert":      # a well-formed entry that claims to follow entry 3
        entry["operator"] = "mallory"
        entry["hash"] = trail.entry_hash(entry)
        lines.insert(5, json.dumps(entry) + "\n")
    elif tamper == "rehash":      # edited and its own hash recomputed
        entry["summary"] = {"same": 99}
        entry["hash"] = trail.entry_hash(entry)
        lines[4] = json.dumps(entry) + "\n"
    trail.trail_path().write_text("".join(lines))
    code, out = run_verify(capsys)
    assert code == 1
    problems = [line for line in out.splitlines() if not line.startswith("audit chain")]
    assert any(p.startswith(kind) and named in p for p in problems), out
    assert "BROKEN" in out


def test_each_change_to_the_records_is_named(outputs: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    _, paths = chain_of(outputs)
    edited, deleted, a, b = Path(paths[1]), Path(paths[2]), Path(paths[3]), Path(paths[4])
    edited.write_text(edited.read_text().replace('"passed": 1', '"passed": 100'))
    deleted.unlink()
    swap = tmp_path / "swap"
    shutil.move(a, swap)
    shutil.move(b, a)
    shutil.move(swap, b)
    inserted = outputs / "dev" / "20261128T235959Z-deploy.ipynb"
    shutil.copy(paths[0], inserted)
    # exports and pictures beside the records are not records
    (outputs / "dev" / audit.EXPORTS).mkdir()
    (outputs / "dev" / audit.EXPORTS / "x.ipynb").write_text("{}")

    code, out = run_verify(capsys)
    assert code == 1
    found = {(line.split()[0], line.split()[2].rstrip(":")) for line in out.splitlines()
             if line.split()[1:2] == ["record"]}
    assert found == {("edited", f"dev/{edited.name}"), ("deleted", f"dev/{deleted.name}"),
                     ("reordered", f"dev/{a.name}"), ("reordered", f"dev/{b.name}"),
                     ("inserted", f"dev/{inserted.name}")}, out


def test_deleting_the_newest_entries_shows_against_a_written_down_head(
        outputs: Path, capsys: pytest.CaptureFixture) -> None:
    chain_of(outputs, 2)
    kept = trail.trail_path().read_text()
    trail.append("deploy", stack="TapStackdev")
    trail.append("destroy", stack="TapStackdev")
    written_down = trail.head().hash
    trail.trail_path().write_text(kept)  # the two newest entries removed
    assert run_verify(capsys)[0] == 0  # the chain alone cannot tell
    code, out = run_verify(capsys, "--head", written_down)
    assert code == 1 and f"deleted    entry {written_down[:16]}" in out


def test_deleting_a_records_entry_shows_by_its_record(outputs: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    lines, paths = chain_of(outputs, 2)
    trail.trail_path().write_text("".join(lines[:-1]))  # the newest entry: the last record's
    code, out = run_verify(capsys)
    assert code == 1 and f"inserted   record dev/{Path(paths[-1]).name}" in out


def test_a_torn_last_line_is_named_and_the_next_entry_still_chains(outputs: Path) -> None:
    trail.append("deploy", stack="TapStackdev")
    with open(trail.trail_path(), "a") as fh:
        fh.write('{"seq": 1, "torn')
    entry = trail.append("destroy", stack="TapStackdev")
    assert entry["seq"] == 1 and entry["prev"] == trail.read()[0]["hash"]
    report = audit.verify()
    assert [(p.kind, p.what) for p in report.problems] == [("unreadable", "trail line 2")]


def test_concurrent_appenders_keep_one_chain(outputs: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from multiprocessing import get_context

    with get_context("spawn").Pool(3) as pool:
        pool.map(_append_many, [(str(outputs), i) for i in range(3)])
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda i: trail.append("refresh", stack=f"s{i}"), range(20)))
    got = trail.read()
    assert len(got) == 50 and [e["seq"] for e in got] == list(range(50))
    assert audit.verify().ok


def _append_many(args: tuple[str, int]) -> None:
    import os

    os.environ["TAP_OUTPUTS"] = args[0]
    for _ in range(10):
        trail.append("deploy", stack=f"proc{args[1]}")


def test_an_unknown_operation_or_result_is_refused(outputs: Path) -> None:
    with pytest.raises(ValueError, match="allowed: deploy, destroy, refresh, approve"):
        trail.append("rm -rf", stack="x")
    with pytest.raises(ValueError, match="allowed: started, succeeded, failed, refused"):
        trail.append("approve", stack="x", result="maybe")
    assert not trail.trail_path().exists()


def test_an_approval_through_the_public_api(outputs: Path) -> None:
    with trail.context(plan_hash="ab" * 32, notes=["four eyes"]):
        entry = trail.append("approve", stack="TapStackprod", target="aws",
                             env_file="params/prod.yaml", record="/plans/p.json",
                             notes=["approved by bob"], operator="bob")
    assert entry["plan_hash"] == "ab" * 32 and entry["notes"] == ["four eyes", "approved by bob"]
    assert entry["record"] == "/plans/p.json" and entry["hash"] == trail.entry_hash(entry)
    assert trail.append("deploy", stack="x")["plan_hash"] is None  # the context is over


def test_no_git_gives_unknown_commit_and_no_dirty_flag(outputs: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAP_PROJECT_DIR", str(tmp_path))  # not a repository
    assert trail.git_state() == ("unknown", None)
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    assert trail.git_state() == ("unknown", None)


# -- S3 records under Object Lock ----------------------------------------------------------------

@pytest.mark.sandbox
def test_s3_records_are_locked_and_verified(sandbox_home: Path, outputs: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint())
    monkeypatch.setenv("TAP_RECORDS_RETENTION_DAYS", "30")
    from papermill.s3 import S3

    monkeypatch.setattr(S3, "s3_session", (None, None, None))  # papermill caches its session
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="tap-plain-records")
    monkeypatch.setenv("TAP_OUTPUTS", "s3://tap-plain-records/r")
    with pytest.raises(ConfigError, match="no S3 Object Lock"):
        runbook.run_notebooks("audit", env="dev")

    s3.create_bucket(Bucket="tap-locked-records", ObjectLockEnabledForBucket=True)
    root = "s3://tap-locked-records/runbook"
    monkeypatch.setenv("TAP_OUTPUTS", root)
    paths = [fake_record(root, "dev", "verify", i) for i in range(4)]  # type: ignore[arg-type]
    got = s3.get_object(Bucket="tap-locked-records", Key=paths[0].split("/", 3)[3])
    assert got["ObjectLockMode"] == "COMPLIANCE"
    days = (got["ObjectLockRetainUntilDate"] - got["LastModified"]).days
    assert 29 <= days <= 30
    assert run_verify(capsys)[0] == 0

    key = [p.split("/", 3)[3] for p in paths]
    s3.put_object(Bucket="tap-locked-records", Key=key[1], Body=b"{}")  # a new version
    s3.delete_object(Bucket="tap-locked-records", Key=key[2])           # a delete marker
    s3.put_object(Bucket="tap-locked-records", Key="runbook/dev/20261129T000000Z-x.ipynb",
                  Body=b"{}")
    with pytest.raises(Exception, match="AccessDenied"):  # the locked version stays
        versions = s3.list_object_versions(Bucket="tap-locked-records", Prefix=key[2])
        locked = [v for v in versions["Versions"] if v["Key"] == key[2]][0]
        s3.delete_object(Bucket="tap-locked-records", Key=key[2], VersionId=locked["VersionId"])
    code, out = run_verify(capsys)
    assert code == 1
    assert f"edited     record {key[1].removeprefix('runbook/')}" in out
    assert f"deleted    record {key[2].removeprefix('runbook/')}" in out
    assert "inserted   record dev/20261129T000000Z-x.ipynb" in out
    assert "unlocked   record dev/20261129T000000Z-x.ipynb" not in out  # not chained: inserted
    assert f"unlocked   record {key[1].removeprefix('runbook/')}" in out  # the new version


def test_retention_days_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAP_RECORDS_RETENTION_DAYS", raising=False)
    assert runbook.retention_days() == 365
    for bad in ("0", "-1", "ten", "1e3"):
        monkeypatch.setenv("TAP_RECORDS_RETENTION_DAYS", bad)
        with pytest.raises(ConfigError, match="TAP_RECORDS_RETENTION_DAYS"):
            runbook.retention_days()


# -- exports and pictures --------------------------------------------------------------------

def test_export_is_self_contained_with_the_audit_header(outputs: Path) -> None:
    from bs4 import BeautifulSoup

    path = fake_record(outputs, "dev", "deploy", 7)
    html_path = audit.export_html(Path(path).stem)
    assert html_path == outputs / "dev" / audit.EXPORTS / (Path(path).stem + ".html")
    soup = BeautifulSoup(html_path.read_text(), "html.parser")
    remote = [str(tag)[:120] for tag in soup.find_all(["script", "link", "img", "iframe"])
              if re.match(r"\s*(https?:)?//", tag.get("src") or tag.get("href") or "")]
    assert remote == []
    assert not re.search(r"(url\(|@import)\s*['\"]?(https?:)?//", html_path.read_text())
    assert "cdnjs" not in html_path.read_text() and "MathJax.Hub" not in html_path.read_text()
    assert soup.title.string.startswith("TapStackdev · deploy")
    header = soup.find("header", class_="tap-audit").get_text(" ")
    entry = entries(operation="record")[0]
    for value in ("TapStackdev", "succeeded", "alice", "2026-11-28T10:00:07+00:00",
                  entry["record_sha256"], entry["hash"]):
        assert value in header
    # exported again: a second file, the first kept
    again = audit.export_html(path)
    assert again.name == Path(path).stem + "-2.html" and html_path.exists()
    # exports are not records
    assert audit.audit_table().path.tolist() == [path]
    assert audit.verify().ok


def test_pictures_are_kept_per_run(outputs: Path) -> None:
    first = audit.picture_path("dev", "topology")
    second = audit.picture_path("dev", "topology")
    assert first != second and first.parent == second.parent == outputs / "dev" / audit.PICTURES
    assert re.match(r"^\d{8}T\d{6}Z-topology(-2)?\.png$", second.name)


def test_audit_table_fits_100_columns_status_first_unless_wide(
        outputs: Path, capsys: pytest.CaptureFixture) -> None:
    for i in range(3):
        fake_record(outputs, "dev", "verify-with-a-long-notebook-name", i, status="failed")
    assert main(["audit"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = lines[1:-1]
    assert table[0].split()[0] == "status" and all(len(line) <= 100 for line in table)
    assert main(["audit", "--wide"]) == 0
    wide = capsys.readouterr().out
    assert any(len(line) > 100 for line in wide.splitlines())
    assert all(path in wide for path in audit.audit_table().path)  # nothing cut
