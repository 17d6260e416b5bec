"""What `tap audit` lists and what `tap audit verify` holds it to, beyond the trail itself: the
index (each row pinned by its record's entry), records named relative to the root (a copy of the
root verifies), `tap audit trail`, and mutations that never ended.

Tampering is done by hand to real files, as someone with a shell would do it.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from fixtures_audit import chain_of, fresh_outputs, run_verify

from tap_lib import trail
from tap_lib.cli import main
from tap_lib.ops import audit, runbook


@pytest.fixture
def outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return fresh_outputs(tmp_path, monkeypatch)


# -- the index is covered by the chain ---------------------------------------------------------

def index_lines(outputs: Path) -> list[dict]:
    return [json.loads(x) for x in audit.index_path(str(outputs)).read_text().splitlines()]


def write_index(outputs: Path, rows: list[dict]) -> None:
    audit.index_path(str(outputs)).write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("field,value", [
    ("status", "failed"), ("operator", "mallory"), ("summary", {"passed": 99}),
    ("time", "2026-01-01T00:00:00+00:00"), ("notebook", "deploy"), ("sha256", "0" * 64),
    ("entry", "f" * 64),
])
def test_an_index_row_edited_by_hand_is_named(outputs: Path, capsys: pytest.CaptureFixture,
                                              field: str, value: object) -> None:
    """`tap audit` lists the index: a row saying another status, operator or summary than its
    record's chained entry is an edit (before: the index was not checked at all)."""
    chain_of(outputs, 3)
    rows = index_lines(outputs)
    rows[1][field] = value
    write_index(outputs, rows)
    code, out = run_verify(capsys)
    assert code == 1 and "edited     index line 2: record dev/" in out, out


def test_index_rows_deleted_added_or_doubled_are_named(outputs: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    _, paths = chain_of(outputs, 3)
    rows = index_lines(outputs)
    hidden = rows.pop(0)                                         # a failed run hidden
    rows.append({**rows[0]})                                     # listed twice
    rows.append({**rows[0], "path": "dev/20261128T235959Z-deploy.ipynb"})  # never chained
    write_index(outputs, rows)
    code, out = run_verify(capsys)
    assert code == 1
    assert f"deleted    index row of record {hidden['path']}" in out, out
    assert "inserted   index line 3: lists" in out and "which it lists twice" in out
    assert "inserted   index line 4: lists 'dev/20261128T235959Z-deploy.ipynb'" in out
    # a lost index is rebuilt from the records, and the rebuilt one is what the chain says
    audit.index_path(str(outputs)).unlink()
    audit.rebuild_index()
    assert run_verify(capsys)[0] == 0
    assert audit.audit_table().path.tolist() == paths


# -- records are named relative to the root ----------------------------------------------------

def test_a_byte_identical_copy_of_the_records_root_verifies(
        outputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """Archived, restored elsewhere, handed to an auditor: the copy verifies on its own (before,
    entries named absolute paths: the copy's records were 'inserted', the originals 'deleted')."""
    import subprocess

    _, paths = chain_of(outputs, 3)
    copy = tmp_path / "archive" / "outputs-2026"
    copy.parent.mkdir()
    subprocess.run(["cp", "-a", str(outputs), str(copy)], check=True)
    shutil.rmtree(outputs)                      # nothing may still read the original
    monkeypatch.setenv("TAP_OUTPUTS", str(copy))
    code, out = run_verify(capsys)
    assert code == 0 and "intact: 6 entries, 3 records" in out, out
    assert audit.audit_table().path.tolist() == [str(copy / "dev" / Path(p).name)
                                                 for p in paths]
    assert audit.export_html(Path(paths[0]).stem).is_file()


def test_entries_naming_records_by_absolute_path_still_verify(
        outputs: Path, capsys: pytest.CaptureFixture) -> None:
    """A trail written before records were named relative to the root: absolute paths in its
    entries and index rows, no index digest. It verifies where its records are."""
    for i in range(3):  # stored as tap stored records before: record, then its entry
        nb = nbformat.v4.new_notebook()
        meta = {"notebook": "verify", "env": "dev", "stack": "TapStackdev", "status": "succeeded",
                "operator": "alice", "start": f"2026-11-28T10:00:0{i}+00:00"}
        nb.metadata["tap"] = {**meta, "chain_prev": trail.head().hash}
        path = Path(runbook.reserve_record(str(outputs), "dev", "verify", meta["start"]))
        path.write_bytes(raw := nbformat.writes(nb).encode())
        last = trail.head()
        entry = {"seq": last.seq + 1, "prev": last.hash, "operation": "record",
                 "result": "succeeded", "operator": "alice", "stack": "TapStackdev",
                 "record": str(path), "record_sha256": trail.sha256_bytes(raw),
                 "notebook": "verify", "env": "dev", "status": "succeeded"}
        entry["hash"] = trail.entry_hash(entry)
        with open(trail.trail_path(), "a") as fh:
            fh.write(json.dumps(entry) + "\n")
        with open(audit.index_path(str(outputs)), "a") as fh:
            fh.write(json.dumps(audit.index_row(meta, str(path), entry["record_sha256"],
                                                entry["hash"])) + "\n")
    code, out = run_verify(capsys)
    assert code == 0 and "intact: 3 entries, 3 records" in out, out
    rows = index_lines(outputs)
    rows[0]["operator"] = "mallory"     # the fields an old entry holds still pin its row
    write_index(outputs, rows)
    code, out = run_verify(capsys)
    assert code == 1 and "edited     index line 1" in out and "operator" in out, out


# -- listing the trail -------------------------------------------------------------------------

def test_audit_trail_lists_entries_and_escapes_what_a_shell_wrote(
        outputs: Path, capsys: pytest.CaptureFixture) -> None:
    _, paths = chain_of(outputs, 2)
    entry = {"seq": 4, "prev": trail.head().hash, "operation": "deploy", "result": "succeeded",
             "operator": "\x1b[2J\x1b[Hroot", "stack": "TapStackdev\nforged line"}
    entry["hash"] = trail.entry_hash(entry)   # forged by hand, past current_operator's check
    with open(trail.trail_path(), "a") as fh:
        fh.write(json.dumps(entry) + "\n")
    assert main(["audit", "trail", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["seq"], r["operation"], r["status"], r["sealed"]) for r in rows] == [
        (0, "deploy", "succeeded", False), (1, "record", "succeeded", False),
        (2, "deploy", "succeeded", False), (3, "record", "succeeded", False),
        (4, "deploy", "succeeded", False)]
    assert {"operation", "stack", "operator", "status", "time", "seq", "sealed"} <= set(rows[0])
    assert rows[1]["record"] == paths[0]
    assert rows[4]["operator"] == "\\x1b[2J\\x1b[Hroot" and "\n" not in rows[4]["stack"]
    assert main(["audit", "trail"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "trail entries:" in out and "TapStackdev\\nforged" in out
    assert out.splitlines()[1].split()[:3] == ["status", "seq", "time"]


def test_a_mutation_that_started_and_never_ended_is_interrupted_not_tampering(
        outputs: Path, capsys: pytest.CaptureFixture) -> None:
    """A deploy killed half-way leaves its "started" entry and no outcome: the chain is
    intact, and verify says which mutation never ended."""
    trail.append("deploy", stack="TapStackdev", result="started")
    trail.append("refresh", stack="TapStackdev", result="started")
    trail.append("refresh", stack="TapStackdev", extra={"started": trail.head().hash})
    code, out = run_verify(capsys)
    assert code == 0 and "intact: 3 entries" in out
    assert "warning: 1 mutation(s) started and never ended (killed, or still running): " \
           "entries #0" in out
    assert main(["audit", "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["interrupted"] == [0]
