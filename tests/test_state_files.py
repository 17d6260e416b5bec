"""tap's own files cannot lie: damaged state, history, lock and emulator runtime files give a
typed error naming the file and the fix (exit 3); a dead lock holder never blocks; a deploy
without state never duplicates a live stack; reads during a mutation say so.

Everything runs against real parts: the moto emulator (sandbox_home), real subprocesses holding
the lock and killed with SIGKILL, the CLI in-process through `tap_lib.cli.main`.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tap_lib import cli
from tap_lib.config import load_settings
from tap_lib.engines.base import HistoryEntry
from tap_lib.engines.sandbox import server
from tap_lib.engines.sandbox.discovery import find_stack_resources
from tap_lib.engines.sandbox.engine import SandboxEngine
from tap_lib.engines.sandbox.state import (STATE_VERSION, OperationLock, StateStore,
                                           reading_check, stack_dir)
from tap_lib.errors import StackLocked, StateCorrupt
from tap_lib.localdb import free_port

from helpers import live_counts, region_clients, tap

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[1]
SUFFIX = "files"                     # the one deployed stack the lost-state cases share
STACK = f"TapStack{SUFFIX}"


def assert_clean_error(code: int, err: str, *needles: str, exit_code: int = 3) -> None:
    assert code == exit_code, err
    assert "Traceback" not in err and "hint:" in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def live(region: str) -> dict[str, int]:
    """The shared stack's VPCs, subnets, EIPs, NAT gateways and secrets the emulator holds."""
    return live_counts(region_clients(region), "vpcs", "subnets", "eips", "nats", "secrets",
                       stack=STACK)


@pytest.fixture(scope="module")
def deployed(sandbox_home):
    """The dev stack deployed once (about 8 s) for every lost-state case."""
    assert cli.main(["deploy", "--env", "dev", "--set", f"suffix={SUFFIX}", "--yes"]) == 0
    return load_settings("dev", [f"suffix={SUFFIX}"])


# ----------------------------------------------------------------------------- state.json
GOOD_RECORD = {"urn": "urn:pulumi:X::TapStack::aws:s3/bucket:Bucket::b", "type":
               "aws:s3/bucket:Bucket", "name": "b", "id": "b", "inputs": {}, "outputs": {},
               "dependencies": []}
CORRUPT = {
    "empty": ("", "is empty"),
    "whitespace": ("  \n", "is empty"),
    "garbage": ("\x00garbage{{", "not valid JSON"),
    "truncated": ('{"version": 1, "stack": "TapStackcorrupt", "resour', "not valid JSON"),
    "not-utf8": (b"\xff\xfe{}", "not UTF-8"),
    "array": ("[1, 2]", "JSON array, not an object"),
    "no-version": ('{"stack": "TapStackcorrupt"}', "'version'"),
    "stack-wrong-type": ('{"version": 1, "stack": 5}', "field 'stack'"),
    "resources-wrong-type": ('{"version": 1, "stack": "TapStackcorrupt", "resources": {}}',
                             "field 'resources' must be a list"),
    "record-missing-field": (json.dumps({"version": 1, "stack": "TapStackcorrupt",
                                         "resources": [{"urn": "u"}]}),
                             "'resources[0].type' is missing"),
    "record-wrong-type": (json.dumps({"version": 1, "stack": "TapStackcorrupt", "resources": [
        {**GOOD_RECORD, "inputs": "x"}]}), "'resources[0].inputs'"),
    "record-bad-status": (json.dumps({"version": 1, "stack": "TapStackcorrupt", "resources": [
        {**GOOD_RECORD, "status": "exploded"}]}), "resources[0].status"),
    "other-stack": ('{"version": 1, "stack": "TapStackprod"}', "belongs to stack 'TapStackprod'"),
    "deep": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "huge-version": (json.dumps({"version": "9" * 1_000_000}), "'version' must be"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_state_is_a_named_error_with_a_fix(sandbox_home, case):
    content, problem = CORRUPT[case]
    path = stack_dir("TapStackcorrupt") / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, _, err = tap("outputs", "--env", "dev", "--set", "suffix=corrupt")
    assert_clean_error(code, err, str(path), problem, "tap sandbox reset")
    assert len(err) < 3000
    with pytest.raises(StateCorrupt) as info:
        StateStore("TapStackcorrupt")
    assert info.value.exit_code == 3 and info.value.file == str(path)


def test_state_models_cover_every_field_and_ignore_later_ones(sandbox_home):
    """The pydantic models that validate the files name exactly the fields tap keeps (a field
    added to a record but not to its model would be dropped on load), and a key written by a
    later tap of the same version is ignored, not an error."""
    from dataclasses import fields

    from tap_lib.engines.sandbox.state import ResourceRecord, StackState
    from tap_lib.engines.sandbox.state_models import (HistoryLineModel, ResourceRecordModel,
                                                      StateFileModel)
    for cls, model in [(ResourceRecord, ResourceRecordModel), (StackState, StateFileModel),
                       (HistoryEntry, HistoryLineModel)]:
        assert {f.name for f in fields(cls)} == set(model.model_fields), cls
    path = stack_dir("TapStacklater") / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "stack": "TapStacklater", "new_field": [1],
                                "resources": [{**GOOD_RECORD, "new_field": 2}]}))
    state = StateStore("TapStacklater").state
    assert list(state.resources) == [GOOD_RECORD["urn"]]
    assert state.resources[GOOD_RECORD["urn"]].inputs == {}


def test_newer_state_version_is_refused_not_rewritten(sandbox_home):
    path = stack_dir("TapStackfuture") / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"version": STATE_VERSION + 1, "stack": "TapStackfuture"})
    path.write_text(text)
    for command in (["outputs"], ["deploy", "--yes"]):
        code, _, err = tap(*command, "--env", "dev", "--set", "suffix=future")
        assert_clean_error(code, err, str(path), "newer tap",
                           f"state version {STATE_VERSION + 1}", "upgrade tap")
    assert path.read_text() == text          # refused, not overwritten


def test_corrupt_state_blocks_deploy_and_backup_restores_it(deployed):
    path = stack_dir(STACK) / "state.json"
    bak = path.with_name("state.json.bak")
    good = path.read_text()
    assert json.loads(bak.read_text())["version"] == STATE_VERSION  # kept on every save
    before = live(deployed.region)
    path.write_text(good[: len(good) // 2])                          # torn
    code, _, err = tap("deploy", "--env", "dev", "--set", f"suffix={SUFFIX}", "--yes")
    assert_clean_error(code, err, str(path), "not valid JSON", f"cp {bak} {path}")
    assert live(deployed.region) == before                    # nothing created
    shutil.copy(bak, path)                                           # the hint's fix
    code, _, err = tap("deploy", "--env", "dev", "--set", f"suffix={SUFFIX}", "--yes")
    assert code == 0, err
    assert live(deployed.region) == before                    # converged, no duplicate
    code, out, err = tap("outputs", "--env", "dev", "--set", f"suffix={SUFFIX}", "--json")
    assert code == 0, err
    assert json.loads(out)["vpc_id"].startswith("vpc-")


# --------------------------------------------------------------------------- history.jsonl
def test_corrupt_history_names_the_line(sandbox_home):
    store = StateStore("TapStackhist")
    entry = HistoryEntry(time="2026-01-01T00:00:00+00:00", operation="deploy",
                         result="succeeded", duration_s=1.5, create=3)
    store.append_history(entry)
    with store.history_path.open("a") as fh:
        fh.write('{"time": "2026-01-01T00:01:00+00:00", "operat')  # torn by a kill
    store.append_history(entry)                                     # still its own line
    lines = store.history_path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2]) == json.loads(lines[0])
    with pytest.raises(StateCorrupt) as info:
        store.history()
    assert info.value.file == str(store.history_path) and "line 2" in str(info.value)
    assert "delete line 2" in info.value.hint and info.value.exit_code == 3

    for bad, problem in [('["x"]', "JSON array"), ('{"time": 5}', "field 'time'"),
                         ('{"time": "t"}', "'operation' is missing")]:
        store.history_path.write_text(bad + "\n")
        with pytest.raises(StateCorrupt, match=problem):
            store.history()
    store.history_path.write_bytes(b"\xff\xfe")
    with pytest.raises(StateCorrupt, match="not UTF-8"):
        store.history()


# ---------------------------------------------------------------------------------- locks
def _holder(stack: str, operation: str = "deploy") -> subprocess.Popen:
    """A real second process that takes the stack's lock and keeps it until killed."""
    code = ("import sys, time\n"
            "from tap_lib.engines.sandbox.state import OperationLock\n"
            f"OperationLock({stack!r}, {operation!r}).__enter__()\n"
            "print('held', flush=True)\n"
            "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    return proc


@pytest.mark.parametrize("content", [b"", b"garbage", b"\xff\x00", b'{"pid": 1}',
                                     b'{"pid": "x", "operation": 5}', b"[]"])
def test_garbage_lock_files_never_block(sandbox_home, content):
    stack = "TapStackgarbage"
    lock = OperationLock(stack, "deploy")
    lock.path.parent.mkdir(parents=True, exist_ok=True)
    lock.info_path.write_bytes(content)     # e.g. left by a crash, or by an older tap
    lock.path.write_bytes(content)
    began = time.monotonic()
    with OperationLock(stack, "deploy") as held:
        assert json.loads(held.info_path.read_text())["pid"] == os.getpid()
    assert time.monotonic() - began < 1.0
    assert not lock.info_path.exists()
    reading_check(stack)                    # a free stack reads fine


def test_live_holder_refuses_second_operator_and_kill_9_frees_it(sandbox_home):
    stack = "TapStackheld"
    holder = _holder(stack)
    try:
        with pytest.raises(StackLocked) as info:
            with OperationLock(stack, "destroy"):
                pass
        assert f"stack {stack} is locked: deploy by pid {holder.pid} since" in str(info.value)
        assert "ends with it, even if it is killed" in info.value.hint

        # reads say the stack is mid-operation instead of showing a half-applied state
        for command in ("outputs", "preview"):
            code, out, err = tap(command, "--env", "dev", "--set", "suffix=held")
            assert_clean_error(code, err, f"pid {holder.pid}", "mid-deploy", "half-applied",
                               "retry", exit_code=StackLocked.exit_code)
            assert "vpc" not in out.lower()

        # garbage in the holder's info file: still refused, holder found in the kernel's table
        (stack_dir(stack) / "lock.json").write_text("garbage")
        with pytest.raises(StackLocked, match=f"held by pid {holder.pid}"):
            with OperationLock(stack, "deploy"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    assert (stack_dir(stack) / "lock.json").exists()  # stale info left by the killed holder
    began = time.monotonic()
    with OperationLock(stack, "deploy"):
        reading_check(stack)                           # this process's own reads pass
    assert time.monotonic() - began < 1.0
    reading_check(stack)


# ------------------------------------------------------------------------- lost state.json
def test_deploy_without_state_refuses_and_never_duplicates(deployed):
    path = stack_dir(STACK) / "state.json"
    bak = path.with_name("state.json.bak")
    before = live(deployed.region)
    assert before == {"vpcs": 1, "subnets": 4, "eips": 1, "nats": 1, "secrets": 1}
    kept = path.read_text()
    path.unlink()
    for _ in range(2):  # a refused deploy must not spoil the backup for the next attempt
        code, out, err = tap("deploy", "--env", "dev", "--set", f"suffix={SUFFIX}",
                             "--yes")
        assert_clean_error(code, err, f"stack {STACK} has no state", "1 Vpc", "4 Subnet",
                           "1 NatGateway", "tap sandbox reset", f"cp {bak} {path}")
        assert live(deployed.region) == before
    # preview does not promise "create everything": it says deploy refuses, and why
    code, out, err = tap("preview", "--env", "dev", "--set", f"suffix={SUFFIX}")
    assert_clean_error(code, err, f"stack {STACK} has no state", "a deploy would duplicate "
                       "them and is refused", f"cp {bak} {path}")
    assert "create" not in out
    assert json.loads(bak.read_text())["resources"]

    # the search is complete: every resource type the stack tags is found
    found = find_stack_resources(STACK, SandboxEngine(deployed).clients())
    recorded = {r["urn"] for r in json.loads(kept)["resources"]}
    assert {f.urn for f in found} <= recorded
    assert {f.type for f in found} >= {
        "aws:ec2/vpc:Vpc", "aws:ec2/eip:Eip", "aws:iam/role:Role", "aws:kms/key:Key",
        "aws:rds/subnetGroup:SubnetGroup", "aws:rds/cluster:Cluster", "aws:s3/bucket:Bucket",
        "aws:lambda/function:Function", "aws:secretsmanager/secret:Secret"}

    shutil.copy(bak, path)                              # the hint's recovery
    assert tap("deploy", "--env", "dev", "--set", f"suffix={SUFFIX}", "--yes")[0] == 0
    assert live(deployed.region) == before


def test_redeploy_after_destroy_is_not_refused(deployed):
    """What AWS keeps after a delete (NAT 'deleted', KMS key pending deletion, snapshots) is
    not a live resource: a destroyed stack deploys again."""
    args = ("--env", "dev", "--set", f"suffix={SUFFIX}", "--yes")
    code, _, err = tap("destroy", *args)
    assert code == 0, err
    assert live(deployed.region) == {"vpcs": 0, "subnets": 0, "eips": 0, "nats": 0,
                                     "secrets": 0}
    code, _, err = tap("deploy", *args)
    assert code == 0, err
    assert live(deployed.region)["vpcs"] == 1   # and the shared stack is back for any later case


# ----------------------------------------------------------------------------- server.json
@pytest.fixture
def own_emulator(tmp_path, monkeypatch):
    """An emulator of its own (these tests stop it), in its own TAP_HOME and port."""
    monkeypatch.setenv("TAP_HOME", str(tmp_path / "home"))
    port = free_port()
    monkeypatch.setenv("TAP_SANDBOX_PORT", str(port))
    yield server.start()
    monkeypatch.setenv("TAP_HOME", str(tmp_path / "home"))
    server.stop()


def _wait_dead(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False


def _runtime_file() -> Path:
    return Path(os.environ["TAP_HOME"]) / "sandbox" / "server.json"


@pytest.mark.parametrize("damage", ["", "garbage\x00", "[]", '{"pid": 0, "port": 1}',
                                    '{"pid": -1, "port": 5, "started_at": "x"}', "wrong-pid"])
def test_damaged_server_json_never_orphans_the_emulator(own_emulator, damage):
    pid, port = own_emulator.pid, own_emulator.port
    if damage == "wrong-pid":  # valid, but naming another process (this one): not killed
        damage = json.dumps({"pid": os.getpid(), "port": port,
                             "started_at": "2026-01-01T00:00:00+00:00"})
    _runtime_file().write_text(damage)

    code, _, err = tap("sandbox", "status")
    assert_clean_error(code, err, str(_runtime_file()), f"still runs (pid {pid} on port {port})",
                       "tap sandbox stop")
    assert _runtime_file().exists() or damage.startswith('{"pid": ' + str(os.getpid()))

    code, out, err = tap("sandbox", "stop")
    assert code == 0, err
    assert "stopped" in out
    assert _wait_dead(pid)
    assert not server._port_in_use(port) and not server._ping(port)
    assert not _runtime_file().exists()


def test_start_adopts_its_emulator_when_server_json_is_damaged(own_emulator):
    _runtime_file().write_text("{torn")
    code, out, err = tap("sandbox", "start")
    assert code == 0, err
    assert f"pid {own_emulator.pid}" in out                   # the same server, not a second
    assert json.loads(_runtime_file().read_text())["pid"] == own_emulator.pid
    assert server.status().running


def test_stop_says_so_when_it_cannot_find_the_emulator(own_emulator, tmp_path,
                                                       monkeypatch):
    """Another home's emulator on this port: stop cannot tell which process it is, and says
    so (exit 3 naming the file) instead of reporting 'stopped'."""
    monkeypatch.setenv("TAP_HOME", str(tmp_path / "other-home"))
    _runtime_file().parent.mkdir(parents=True)
    _runtime_file().write_text("garbage")
    code, _, err = tap("sandbox", "stop")
    assert_clean_error(code, err, str(_runtime_file()), f"moto still answers on port "
                                                        f"{own_emulator.port}",
                       "was not stopped")
    assert server._ping(own_emulator.port)
