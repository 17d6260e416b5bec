"""Seals: with TAP_SIGNING_KEY, every entry tap appends is signed (seals.jsonl), and `tap audit
verify` judges each seal against params/approvers and the chain.

The attacks are those of someone with a shell and no approved key: rewrite the whole chain with
every hash, record and index row recomputed; append an entry; edit, move or re-sign a seal;
delete the newest entries. The project is a throwaway folder (TAP_PROJECT_DIR) whose
params/approvers lists alice and bob; mallory has a key of her own, listed nowhere.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from fixtures_audit import chain_of, dev_engine, fresh_outputs, run_verify, spy_on_apply
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tap_lib import trail
from tap_lib.cli import main
from tap_lib.errors import UsageError
from tap_lib.ops import audit
from tap_lib.records import seals

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("seals")
    project = root / "project"
    project.mkdir()
    shutil.copy(REPO / "Pulumi.yaml", project)
    shutil.copytree(REPO / "params", project / "params")
    keys, lines = {}, []
    for name in ("alice", "bob", "mallory"):
        keys[name] = root / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                        str(keys[name])], check=True, capture_output=True)
        if name != "mallory":
            kind, blob = (root / f"{name}.pub").read_text().split()[:2]
            lines.append(f'{name}@example.com namespaces="tap" {kind} {blob}')
    (project / "params" / "approvers").write_text("\n".join(lines) + "\n")
    return SimpleNamespace(dir=project, keys=keys, approvers="\n".join(lines) + "\n")


@pytest.fixture
def outputs(project: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh records root in the throwaway project, alice's key in TAP_SIGNING_KEY."""
    monkeypatch.setenv("TAP_PROJECT_DIR", str(project.dir))
    monkeypatch.setenv("TAP_SIGNING_KEY", str(project.keys["alice"]))
    return fresh_outputs(tmp_path, monkeypatch)


def seal_lines(outputs: Path) -> list[dict]:
    path = outputs / trail.SEALS_NAME
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def lines_of(outputs: Path) -> list[dict]:
    return [json.loads(x) for x in trail.trail_path().read_text().splitlines()]


def problems_of(capsys: pytest.CaptureFixture) -> tuple[int, list[str], str]:
    code, out = run_verify(capsys)
    problems = [x for x in out.splitlines()
                if not x.startswith(("audit chain", "warning:"))]
    return code, problems, out


# -- every entry sealed --------------------------------------------------------------------------

def test_every_entry_appended_with_a_key_is_sealed(outputs: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    chain_of(outputs, 3)
    assert [(s["first"], s["seq"]) for s in seal_lines(outputs)] == [(i, i) for i in range(6)]
    assert [s["hash"] for s in seal_lines(outputs)] == [e["hash"] for e in lines_of(outputs)]
    code, out = run_verify(capsys)
    assert code == 0 and "6 seal(s)" in out and "warning" not in out, out
    assert main(["audit", "trail", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["sealed"], r["sealed_by"]) for r in rows} == {(True, "alice@example.com")}


def test_a_mutation_seals_its_start_before_the_first_change(
        outputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    applied = spy_on_apply(monkeypatch)
    dev_engine().up()
    [seen] = applied
    started, done = lines_of(outputs)
    assert [e["hash"] for e in seen] == [started["hash"]]
    assert [s["hash"] for s in seal_lines(outputs)] == [started["hash"], done["hash"]]


def test_a_key_that_cannot_sign_refuses_before_the_first_change(
        outputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    applied = spy_on_apply(monkeypatch)
    broken = tmp_path / "id_broken"
    broken.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n")
    monkeypatch.setenv("TAP_SIGNING_KEY", str(broken))
    with pytest.raises(UsageError, match="could not sign"):
        dev_engine().up()
    assert applied == [] and seal_lines(outputs) == []
    assert [(e["result"], e["error"]) for e in lines_of(outputs)] == [
        ("started", None), ("refused", "UsageError")]


# -- attacks without a key -----------------------------------------------------------------------

def forge(outputs: Path, seq: int, **changes) -> None:
    """Rewrite entry `seq` with `changes` as a careful attacker without a key would: every later
    entry rehashed, each later record's embedded head and SHA-256 recomputed, each record
    entry's index digest and the index rows recomputed. Nothing but a seal can tell."""
    root = str(outputs)
    rows = {r["path"]: r for r in map(json.loads, audit.index_path(root).read_text().splitlines())}
    forged, prev = [], trail.GENESIS
    for e in lines_of(outputs):
        if e["seq"] >= seq:
            e.pop("hash")
            e.update(changes if e["seq"] == seq else {})
            e["prev"] = prev
            if e["operation"] == "record":
                path = Path(trail.record_location(e["record"], root))
                nb = nbformat.read(path, as_version=4)
                nb.metadata["tap"]["chain_prev"] = prev
                path.write_bytes(raw := nbformat.writes(nb).encode())
                row = rows[e["record"]]
                row["sha256"] = e["record_sha256"] = trail.sha256_bytes(raw)
                e["index_sha256"] = audit.row_digest(row)
            e["hash"] = trail.entry_hash(e)
            if e["operation"] == "record":
                rows[e["record"]]["entry"] = e["hash"]
        forged.append(e)
        prev = e["hash"]
    trail.trail_path().write_text("".join(json.dumps(e) + "\n" for e in forged))
    audit.index_path(root).write_text("".join(json.dumps(r) + "\n" for r in rows.values()))


def test_a_fully_recomputed_forged_chain_fails_once_sealed(
        outputs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Before seals this forgery passed `tap audit verify`: the chain, the records and the
    index agree with each other. The seals made when the entries were written do not."""
    chain_of(outputs, 3)
    monkeypatch.delenv("TAP_SIGNING_KEY")                 # the attacker has no key
    forge(outputs, 2, operator="mallory")
    code, problems, out = problems_of(capsys)
    assert code == 1, out
    assert problems == [f"edited     entry {q}: sealed by alice@example.com as "
                        f"{seal_lines(outputs)[q]['hash'][:16]}…, the trail holds "
                        f"{lines_of(outputs)[q]['hash'][:16]}…: rewritten after it was sealed"
                        for q in range(2, 6)], out


def test_an_appended_forged_entry_is_named_unsealed_even_against_a_written_down_head(
        outputs: Path, project: SimpleNamespace, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """Before seals, an entry appended with a correct hash passed verify, even with --head."""
    chain_of(outputs, 1)
    written_down = trail.head().hash
    monkeypatch.delenv("TAP_SIGNING_KEY")
    forged = {"seq": 2, "prev": written_down, "operation": "approve", "result": "succeeded",
              "operator": "bob", "stack": "TapStackprod", "plan_hash": "ab" * 32}
    forged["hash"] = trail.entry_hash(forged)
    with open(trail.trail_path(), "a") as fh:
        fh.write(json.dumps(forged) + "\n")
    code, out = run_verify(capsys, "--head", written_down)
    assert code == 0 and "warning: 1 entries unsealed (#2)" in out, out
    assert main(["audit", "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unsealed"] == [2]
    code, out = run_verify(capsys, "--require-seals")
    assert code == 1 and "unsealed   entries #2: no seal" in out, out
    # alice's next entry is sealed: her seal vouches for her entry, not for the forged one
    monkeypatch.setenv("TAP_SIGNING_KEY", str(project.keys["alice"]))
    trail.append("refresh", stack="TapStackdev")
    code, out = run_verify(capsys)
    assert code == 0 and "warning: 1 entries unsealed (#2)" in out, out


def test_deleting_sealed_newest_entries_is_named(outputs: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    """Before seals, only a head written down elsewhere showed this."""
    chain_of(outputs, 2)
    kept = trail.trail_path().read_text().splitlines(keepends=True)[:2]
    trail.trail_path().write_text("".join(kept))
    max((outputs / "dev").glob("*.ipynb")).unlink()            # the newest record
    audit.index_path(str(outputs)).unlink()
    code, problems, out = problems_of(capsys)
    assert code == 1 and problems == [
        "deleted    entry 2: sealed by alice@example.com (seal line 3), no longer in the trail",
        "deleted    entry 3: sealed by alice@example.com (seal line 4), no longer in the trail",
    ], out


def sign_as(key: Path, message: bytes, namespace: str = "tap") -> str:
    return subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", namespace],
                          input=message, capture_output=True, check=True).stdout.decode()


@pytest.mark.parametrize("tamper", ["hash", "seq", "first", "mallory", "namespace", "plan"])
def test_a_seal_edited_moved_or_signed_by_another_key_is_named(
        outputs: Path, project: SimpleNamespace, capsys: pytest.CaptureFixture,
        tamper: str) -> None:
    chain_of(outputs, 2)
    sealed = seal_lines(outputs)
    entries = lines_of(outputs)
    seal = sealed[1]
    if tamper == "hash":        # re-pointed at another entry's hash
        seal["hash"] = entries[2]["hash"]
    elif tamper == "seq":       # moved to vouch for a later entry
        seal["seq"] = 3
    elif tamper == "first":     # stretched to vouch for more entries
        seal["first"] = 0
    else:
        message = trail.seal_message(1, 1, seal["hash"])
        seal["signature"] = {
            "mallory": lambda: sign_as(project.keys["mallory"], message),
            "namespace": lambda: sign_as(project.keys["alice"], message, "git"),
            "plan": lambda: sign_as(project.keys["alice"], f"tap-plan\n{seal['hash']}\n"
                                    .encode()),
        }[tamper]()
    sealed[1] = seal
    (outputs / trail.SEALS_NAME).write_text("".join(json.dumps(s) + "\n" for s in sealed))
    code, problems, out = problems_of(capsys)
    assert code == 1 and len(problems) == 1 and problems[0].startswith(
        "forged     seal line 2: for entry"), out
    assert "params/approvers does not list" in out if tamper == "mallory" else \
        "does not match what it signs" in out


def test_tap_audit_seal_vouches_for_the_verified_chain(
        outputs: Path, project: SimpleNamespace, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("TAP_SIGNING_KEY")
    chain_of(outputs, 2)                                    # written without a key
    assert main(["audit", "seal"]) == 2
    assert "TAP_SIGNING_KEY is not set" in capsys.readouterr().err
    code, out = run_verify(capsys)
    assert code == 0 and "warning: 4 entries unsealed (#0…#3)" in out
    monkeypatch.setenv("TAP_SIGNING_KEY", str(project.keys["bob"]))
    assert main(["audit", "seal"]) == 0
    assert f"sealed entries #0…#3 (head {trail.head().hash})" in capsys.readouterr().out
    code, out = run_verify(capsys)
    assert code == 0 and "warning" not in out and "1 seal(s)" in out, out
    assert main(["audit", "trail", "--json"]) == 0
    assert {r["sealed_by"] for r in json.loads(capsys.readouterr().out)} == {"bob@example.com"}
    # a broken chain is not sealed: that would vouch for the break
    lines = trail.trail_path().read_text().splitlines(keepends=True)
    trail.trail_path().write_text("".join(lines[:1] + lines[2:]))
    before = (outputs / trail.SEALS_NAME).read_text()
    assert main(["audit", "seal"]) == 1
    assert "does not verify" in capsys.readouterr().err
    assert (outputs / trail.SEALS_NAME).read_text() == before


# -- nothing but a real signature verifies -------------------------------------------------------

_fuzz: dict[str, tuple] = {}
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=5), max_leaves=12)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_truncated_or_foreign_seals_never_verify(outputs: Path, project: SimpleNamespace,
                                                        data: st.DataObject) -> None:
    if not trail.trail_path().exists():        # one chain and its seals for every example
        chain_of(outputs, 2)
        entries, real = lines_of(outputs), seal_lines(outputs)
        alice, mallory = project.keys["alice"], project.keys["mallory"]
        good = trail.seal_message(1, 1, entries[1]["hash"])
        _fuzz[str(outputs)] = entries, real, [  # signatures that prove nothing here
            sign_as(mallory, good), sign_as(alice, good, "git"),
            sign_as(alice, trail.seal_message(0, 1, "0" * 64)),
            sign_as(alice, f"tap-plan\n{entries[1]['hash']}\n".encode()),
            real[0]["signature"][:-40] + "-----END SSH SIGNATURE-----\n"]
    entries, real, foreign = _fuzz[str(outputs)]
    hashes = [e["hash"] for e in entries]
    line = json.dumps(real[1])
    lines = data.draw(st.lists(st.one_of(
        JSON.map(json.dumps),
        st.integers(0, len(line) - 1).map(lambda k: line[:k]),
        st.fixed_dictionaries({
            "first": st.integers(-1, 5), "seq": st.integers(-1, 5),
            "hash": st.sampled_from(hashes) | st.text("0123456789abcdef", min_size=64,
                                                        max_size=64),
            "time": st.text(max_size=10),
            "signature": st.sampled_from(foreign) | st.text(max_size=40)}
        ).map(json.dumps),
    ).filter(lambda x: x.strip() and "\n" not in x and "\r" not in x), min_size=1,
        max_size=3))
    (outputs / trail.SEALS_NAME).write_text("".join(x + "\n" for x in lines))
    judged = seals.check(str(outputs), entries, project.approvers)
    assert judged.spans == [] and len(judged.problems) == len(lines), (lines, judged.problems)
    assert seals.unsealed(entries, judged) == [e["seq"] for e in entries]


def test_an_approvers_file_edited_on_disk_is_said(project: SimpleNamespace, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    """Seals are judged by params/approvers on disk. Someone who adds a key there can seal what
    they forge; verify says the file is not the committed one (only a review catches the key)."""
    repo = tmp_path / "repo"
    shutil.copytree(project.dir, repo)
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "approvers"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                       cwd=repo, check=True, capture_output=True)
    monkeypatch.setenv("TAP_PROJECT_DIR", str(repo))
    monkeypatch.setenv("TAP_SIGNING_KEY", str(project.keys["mallory"]))
    fresh_outputs(tmp_path, monkeypatch)
    kind, blob = Path(f"{project.keys['mallory']}.pub").read_text().split()[:2]
    with open(repo / "params" / "approvers", "a") as fh:
        fh.write(f'mallory@example.com namespaces="tap" {kind} {blob}\n')
    trail.append("approve", stack="TapStackprod")
    code, out = run_verify(capsys)
    assert "warning: params/approvers differs from the committed one" in out, out
    (repo / "params" / "approvers").write_text(project.approvers)   # as committed
    code, out = run_verify(capsys)
    assert code == 1 and "forged     seal line 1" in out and "warning: params" not in out, out
