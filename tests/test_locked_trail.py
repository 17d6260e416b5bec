"""An s3:// records root keeps the trail and the seals locally and locks a copy of every line in
the bucket as it is appended (records/locked.py); `tap audit verify` holds the local files to it.

The bucket is the sandbox emulator's S3 (moto), with Object Lock. The attacks are those of
someone with a shell and no key: rewrite the local trail whole (every hash recomputed), delete
its newest entries or seals, and - for the write path - an upload that fails. Before the copy,
each of them passed `tap audit verify` (or the mutation ran with nothing locked).
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import ClientError
from fixtures_audit import chain_of, dev_engine, run_verify, spy_on_apply

from tap_lib import object_lock, trail
from tap_lib.cli import main
from tap_lib.engines.sandbox import server
from tap_lib.errors import LockedCopyUnwritable, RecordsUnwritable
from tap_lib.records import locked

pytestmark = [pytest.mark.sandbox]

_buckets = itertools.count(1)


@pytest.fixture
def root(sandbox_home: Path, signers, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A fresh Object Lock bucket on the emulator as the records root (TAP_OUTPUTS), no key."""
    from papermill.s3 import S3

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint())
    monkeypatch.setenv("TAP_RECORDS_RETENTION_DAYS", "30")
    monkeypatch.setenv("TAP_OPERATOR", "alice")
    for key in ("TAP_TARGET", "TAP_SIGNING_KEY", trail.RECORD_ENV, trail.SESSION_ENV):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(S3, "s3_session", (None, None, None))  # papermill caches its session
    s3 = boto3.client("s3")
    bucket = f"tap-locked-trail-{next(_buckets)}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    url = f"s3://{bucket}/records"
    monkeypatch.setenv("TAP_OUTPUTS", url)
    return SimpleNamespace(url=url, bucket=bucket, s3=s3, signers=signers)


def objects(root: SimpleNamespace, folder: str) -> dict[str, bytes]:
    """name -> body of every object in <prefix>/<folder>/."""
    listed = root.s3.list_objects_v2(Bucket=root.bucket, Prefix=f"records/{folder}/")
    return {o["Key"].rsplit("/", 1)[-1]: root.s3.get_object(Bucket=root.bucket, Key=o["Key"])[
        "Body"].read() for o in listed.get("Contents", [])}


def local_lines(name: str = trail.TRAIL_NAME) -> list[bytes]:
    path = trail.trail_path().with_name(name)
    return path.read_bytes().splitlines() if path.exists() else []


def problems_of(capsys: pytest.CaptureFixture, *extra: str) -> tuple[int, list[str], str]:
    code, out = run_verify(capsys, *extra)
    return code, [x for x in out.splitlines()
                  if not x.startswith(("audit chain", "warning:"))], out


# -- every line locked as it is appended ---------------------------------------------------------

def test_every_entry_and_seal_is_locked_as_it_is_appended(
        root: SimpleNamespace, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    root.signers.use(monkeypatch, "alice")
    chain_of(root.url, 2)                       # type: ignore[arg-type] - mutations and records
    lines = local_lines()
    entries = [json.loads(x) for x in lines]
    assert objects(root, "_trail") == {f"{e['seq']:010d}-{e['hash']}.json": line
                                       for e, line in zip(entries, lines)}
    seals = local_lines(trail.SEALS_NAME)
    assert len(seals) == 4 and objects(root, "_seals") == {
        f"{json.loads(s)['seq']:010d}-{trail.sha256_bytes(s)}.json": s for s in seals}
    for name in [*objects(root, "_trail")][:1] + [*objects(root, "_seals")][:1]:
        folder = "_trail" if name in objects(root, "_trail") else "_seals"
        head = root.s3.head_object(Bucket=root.bucket, Key=f"records/{folder}/{name}")
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert 29 <= (head["ObjectLockRetainUntilDate"] - head["LastModified"]).days <= 30
    code, out = run_verify(capsys)
    assert code == 0 and "warning" not in out, out
    assert "(its Object Lock copy holds 4 entries, 4 seals)" in out
    assert main(["audit", "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["locked"] == {"entries": 4, "seals": 4}
    with monkeypatch.context() as kms:     # ETags that are no MD5 (SSE-KMS): every object read
        kms.setattr(locked, "_same", lambda obj, raw: False)
        assert run_verify(capsys)[0] == 0
    assert main(["audit", "seal"]) == 0    # sealing the head again: locked too (maybe the
    capsys.readouterr()                    # same line within a second: the same object)
    assert len(local_lines(trail.SEALS_NAME)) == 5
    assert set(objects(root, "_seals")) == {
        f"{json.loads(s)['seq']:010d}-{trail.sha256_bytes(s)}.json"
        for s in local_lines(trail.SEALS_NAME)}
    assert run_verify(capsys)[0] == 0
    # never overwritten: a second write of a key is refused, unless it is the same bytes
    url = locked.entry_url(root.url, 0, entries[0]["hash"])
    locked.put_line(url, lines[0])                                  # a retry that had landed
    with pytest.raises(LockedCopyUnwritable, match="an object already has this key"):
        locked.put_line(url, lines[0].replace(b"alice", b"mallo"))
    assert objects(root, "_trail")[url.rsplit("/", 1)[-1]] == lines[0]


# -- attacks on the local files ------------------------------------------------------------------

def rewrite_from(seq: int, **changes) -> None:
    """Rewrite local entry `seq` with `changes` and rehash it and every later entry, each line
    as tap writes it: the chain is consistent again, as far as the local files can tell."""
    out, prev = [], trail.GENESIS
    for e in map(json.loads, local_lines()):
        if e["seq"] >= seq:
            e.pop("hash")
            e.update(changes if e["seq"] == seq else {})
            e["prev"] = prev
            e["hash"] = trail.entry_hash(e)
        body = trail.canonical({k: v for k, v in e.items() if k != "hash"})
        out.append(body[:-1] + f',"hash":"{e["hash"]}"}}\n'.encode())
        prev = e["hash"]
    trail.trail_path().write_bytes(b"".join(out))


def test_a_fully_recomputed_local_trail_is_named_against_its_locked_copy(
        root: SimpleNamespace, capsys: pytest.CaptureFixture) -> None:
    """No key, no seals: before the copy this rewrite verified (the chain agrees with itself).
    Even locking the forged lines too leaves the originals in the bucket."""
    for i in range(4):
        trail.append("deploy", stack="TapStackprod", target="aws", summary={"update": i})
    originals = objects(root, "_trail")
    rewrite_from(1, operator="mallory")
    forged = [json.loads(x) for x in local_lines()]
    expected = [f"edited     entry {q}: the locked copy holds another entry {q} "
                f"({root.url}/_trail/{name}): rewritten, its hash recomputed"
                for q, name in enumerate(sorted(originals)) if q >= 1]
    code, problems, out = problems_of(capsys)
    assert code == 1 and problems == expected, out
    for e, line in zip(forged, local_lines()):   # the attacker locks the forged lines too
        if e["seq"] >= 1:
            locked.put_line(locked.entry_url(root.url, e["seq"], e["hash"]), line)
    code, problems, out = problems_of(capsys)
    assert code == 1 and problems == [
        f"edited     entry {q}: the locked copy also holds another entry {q} "
        f"({root.url}/_trail/{name}), not in the local trail: rewritten, its hash recomputed"
        for q, name in enumerate(sorted(originals)) if q >= 1], out


def test_an_entry_edited_in_place_is_named_against_its_locked_copy(
        root: SimpleNamespace, capsys: pytest.CaptureFixture) -> None:
    """Its hash left as it was: the chain check names it, and so does its locked twin."""
    for i in range(2):
        trail.append("refresh", stack="TapStackdev", summary={"same": i})
    lines = local_lines()
    lines[0] = lines[0].replace(b'"same":0', b'"same":7')
    trail.trail_path().write_bytes(b"".join(x + b"\n" for x in lines))
    code, problems, out = problems_of(capsys)
    assert code == 1 and problems[-1].startswith(
        f"edited     entry 0: differs from its locked copy {root.url}/_trail/0000000000-"), out


def test_a_later_version_put_over_a_locked_entry_is_named(
        root: SimpleNamespace, capsys: pytest.CaptureFixture) -> None:
    """The locked version stays; a new version over it (what a PUT without If-None-Match makes
    in a versioned bucket) is what a reader gets, and it is not what the trail says."""
    for i in range(2):
        trail.append("refresh", stack="TapStackdev", summary={"same": i})
    name = sorted(objects(root, "_trail"))[1]
    root.s3.put_object(Bucket=root.bucket, Key=f"records/_trail/{name}",
                       Body=local_lines()[1].replace(b'"same":1', b'"same":9'))
    code, problems, out = problems_of(capsys)
    assert code == 1 and problems == [
        f"edited     entry 1: differs from its locked copy {root.url}/_trail/{name} (the line, "
        "or a later version of the object, was changed)"], out


def test_deleting_the_newest_local_entries_and_seals_is_named(
        root: SimpleNamespace, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """Before the copy, deleting the newest entries showed only against a head written down
    elsewhere, and deleting seals only as entries unsealed."""
    for i in range(4):
        trail.append("deploy", stack="TapStackdev", summary={"same": i})
    names = sorted(objects(root, "_trail"))
    trail.trail_path().write_bytes(b"".join(x + b"\n" for x in local_lines()[:2]))
    code, problems, out = problems_of(capsys)
    assert code == 1 and problems == [
        f"deleted    entry {q}: in the locked copy ({root.url}/_trail/{names[q]}), not in the "
        "local trail" for q in (2, 3)], out

    root.signers.use(monkeypatch, "alice")
    monkeypatch.setenv("TAP_OUTPUTS", root.url + "/sealed")   # a fresh trail, sealed
    for i in range(3):
        trail.append("deploy", stack="TapStackdev", summary={"same": i})
    seals = local_lines(trail.SEALS_NAME)
    trail.trail_path().with_name(trail.SEALS_NAME).write_bytes(seals[0] + b"\n")
    code, problems, out = problems_of(capsys)
    assert code == 1 and [p.split(" (")[0] for p in problems] == [
        "deleted    seal of entry 1: in the locked copy", "deleted    seal of entry 2: in the "
        "locked copy"], out


def test_a_trail_begun_before_the_copy_is_pinned_by_the_first_locked_entry(
        root: SimpleNamespace, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """Entries written before tap kept a copy have no twin: the first locked entry's `prev`
    pins them, so rewriting them shows there."""
    with monkeypatch.context() as before_the_copy:
        before_the_copy.setattr(trail, "_entry_copy", lambda root, entry: None)
        for i in range(2):
            trail.append("deploy", stack="TapStackdev", summary={"same": i})
    code, out = run_verify(capsys)
    assert code == 0 and "warning: 2 entries (#0…#1) predate the Object Lock copy of the " \
        "trail: the next entry locked will pin them" in out, out
    trail.append("deploy", stack="TapStackdev", summary={"same": 2})
    code, out = run_verify(capsys)
    assert code == 0 and "2 entries (#0…#1) predate the Object Lock copy of the trail: " \
        "pinned by the locked entry #2's prev" in out, out
    [name] = objects(root, "_trail")
    rewrite_from(0, operator="mallory")
    code, problems, out = problems_of(capsys)
    assert code == 1 and problems == [
        f"edited     entry 2: the locked copy holds another entry 2 ({root.url}/_trail/{name}): "
        "rewritten, its hash recomputed"], out


# -- the write path: no copy, no change ----------------------------------------------------------

def deny_puts(monkeypatch: pytest.MonkeyPatch, folder: str) -> None:
    """The bucket refuses every write into <prefix>/<folder>/ (as an IAM deny would)."""
    def refusing(workers=None):
        client = boto3.client("s3")             # its own: object_lock.s3's clients are shared

        def deny(params, **kwargs):
            if f"/{folder}/" in params["Key"]:
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}},
                                  "PutObject")

        client.meta.events.register("provide-client-params.s3.PutObject", deny)
        return client

    monkeypatch.setattr(object_lock, "s3", refusing)


def test_a_start_that_cannot_be_locked_changes_nothing(
        root: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the copy, the deploy ran with nothing locked."""
    applied = spy_on_apply(monkeypatch)
    trail.append("refresh", stack="TapStackdev")
    before, copy = trail.trail_path().read_bytes(), objects(root, "_trail")
    deny_puts(monkeypatch, "_trail")
    with pytest.raises(LockedCopyUnwritable) as info:
        dev_engine().up()
    assert applied == [] and isinstance(info.value, RecordsUnwritable)
    assert trail.trail_path().read_bytes() == before and objects(root, "_trail") == copy
    message = str(info.value)
    assert info.value.exit_code == 2 and "AccessDenied: Access Denied" in message
    assert f"{root.url}/_trail/0000000001-" in message and f"(TAP_OUTPUTS={root.url})" in message
    assert "nothing was changed" in message and "s3:PutObject" in message


def test_a_seal_that_cannot_be_locked_refuses_before_the_first_change(
        root: SimpleNamespace, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    applied = spy_on_apply(monkeypatch)
    root.signers.use(monkeypatch, "alice")
    deny_puts(monkeypatch, "_seals")
    with pytest.raises(LockedCopyUnwritable, match="AccessDenied"):
        dev_engine().up()
    assert applied == [] and local_lines(trail.SEALS_NAME) == []
    assert [(e["result"], e["error"]) for e in map(json.loads, local_lines())] == [
        ("started", None), ("refused", "LockedCopyUnwritable")]
    assert len(objects(root, "_trail")) == 2 and objects(root, "_seals") == {}
    code, out = run_verify(capsys)
    assert code == 0 and "warning: 2 entries unsealed" in out, out


def test_a_bucket_without_object_lock_takes_no_entry(root: SimpleNamespace,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root.s3.create_bucket(Bucket=f"{root.bucket}-plain")
    monkeypatch.setenv("TAP_OUTPUTS", f"s3://{root.bucket}-plain/records")
    with pytest.raises(LockedCopyUnwritable, match=f"s3://{root.bucket}-plain/records/_trail/"):
        trail.append("deploy", stack="TapStackdev")
    assert local_lines() == [] and trail.head().seq == -1
