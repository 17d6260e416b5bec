"""A deploy initialises the database stand-in's data directory while preflight runs (issue #23:
initdb is most of a first start and runs on the other core), and a deploy preflight refuses
leaves none of it behind."""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from tap_lib.engines.sandbox import standin
from tap_lib.engines.sandbox.state import stack_dir
from tap_lib.localdb import BOOTSTRAP_FILE, LocalPostgres, LocalPostgresError
from tap_lib.ops import stack as stack_ops

from helpers import live_counts, make_engine, tap


def _data_dir(suffix: str) -> Path:
    engine = make_engine(suffix=suffix)
    cluster = engine.settings.physical_names("123456789012").rds_cluster
    return stack_dir(engine.stack) / "postgres" / cluster


def _preparer(data_dir: Path) -> threading.Thread | None:
    return next((t for t in threading.enumerate()
                 if t.name == f"tap-standin-{data_dir.name}"), None)


@pytest.fixture
def at_gate(monkeypatch):
    """Runs `seen[...] = probe()` when preflight starts, then preflight as usual."""
    seen: dict = {}
    real = stack_ops.gate

    def gate(*args, **kwargs):
        seen.update(seen.pop("probe")())
        return real(*args, **kwargs)

    monkeypatch.setattr(stack_ops, "gate", gate)
    return seen


def test_a_deploy_starts_its_stand_in_in_the_directory_prepared_during_preflight(
        sandbox_home, at_gate):
    data_dir = _data_dir("prep")

    def probe():
        thread = _preparer(data_dir)
        running = thread is not None
        if thread is not None:
            thread.join()
        secret = (data_dir / BOOTSTRAP_FILE).read_bytes()
        return {"running": running, "inode": (data_dir / BOOTSTRAP_FILE).stat().st_ino,
                "digest": hashlib.sha256(secret).hexdigest()}

    at_gate["probe"] = probe
    out = tap("deploy", "--env", "dev", "--yes", "--set", "suffix=prep")
    assert out.returncode == 0, out.stderr
    assert at_gate["running"], "initdb was not under way when preflight started"
    assert LocalPostgres(data_dir).is_running()
    kept = data_dir / BOOTSTRAP_FILE   # the server runs in the prepared directory, not another
    assert (kept.stat().st_ino, hashlib.sha256(kept.read_bytes()).hexdigest()) == (
        at_gate["inode"], at_gate["digest"])
    destroyed = tap("destroy", "--env", "dev", "--yes", "--set", "suffix=prep")
    assert destroyed.returncode == 0, destroyed.stderr
    assert not (stack_dir(make_engine(suffix="prep").stack) / "postgres").exists()


def test_a_deploy_preflight_refuses_leaves_no_data_directory(sandbox_home, at_gate):
    data_dir = _data_dir("prepno")
    at_gate["probe"] = lambda: {"thread": _preparer(data_dir)}
    out = tap("deploy", "--env", "dev", "--yes", "--set", "suffix=prepno",
              "--set", "db.engine_version=99.9")
    assert out.returncode == 1 and "TAP005" in out.stderr
    assert at_gate["thread"] is not None, "nothing was prepared: the test shows nothing"
    assert not at_gate["thread"].is_alive()
    assert sorted(p.name for p in data_dir.parent.iterdir() if not p.name.endswith(".lock")) == []


def test_a_refused_deploy_leaves_a_server_another_deploy_started_there(sandbox_home, at_gate):
    data_dir = _data_dir("preptaken")
    server = LocalPostgres(data_dir)

    def taken_meanwhile():
        _preparer(data_dir).join()
        server.start_bootstrapped()       # another operator's deploy got there first
        return {}

    at_gate["probe"] = taken_meanwhile
    try:
        out = tap("deploy", "--env", "dev", "--yes", "--set", "suffix=preptaken",
                  "--set", "db.engine_version=99.9")
        assert out.returncode == 1 and "TAP005" in out.stderr
        assert server.is_running() and server.initialized
    finally:
        server.remove()


def test_two_preparations_at_once_initialise_once(sandbox_home, monkeypatch):
    calls = []
    real = LocalPostgres._initdb
    monkeypatch.setattr(LocalPostgres, "_initdb",
                        lambda self, *a, **k: (calls.append(self.data_dir), real(self, *a, **k)))
    stack, cluster = "TapStackpreptwo", "tapstack-payments-preptwo"
    both = threading.Barrier(2)

    def deploy_prepares():
        both.wait()
        with standin.preparing(stack, cluster):
            pass

    workers = [threading.Thread(target=deploy_prepares) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for thread in [t for t in threading.enumerate() if t.name == f"tap-standin-{cluster}"]:
        thread.join()
    data_dir = stack_dir(stack) / "postgres" / cluster
    assert len(calls) == 1 and LocalPostgres(data_dir).bootstrapped
    standin.forget_all(stack)             # beside the data directory: its init lock file
    assert not (stack_dir(stack) / "postgres").exists()


def test_a_failed_preparation_is_quiet_and_leaves_nothing(sandbox_home, monkeypatch):
    found = threading.Event()

    def broken(self):
        found.wait(10)
        raise LocalPostgresError("initdb failed: no space left on device")

    monkeypatch.setattr(LocalPostgres, "initialize_bootstrapped", broken)
    raised = []
    monkeypatch.setattr(threading, "excepthook", raised.append)
    stack, cluster = "TapStackprepfail", "tapstack-payments-prepfail"
    with standin.preparing(stack, cluster):
        thread = next(t for t in threading.enumerate() if t.name == f"tap-standin-{cluster}")
        found.set()
    thread.join()
    assert raised == []
    assert not LocalPostgres(stack_dir(stack) / "postgres" / cluster).initialized


def test_a_file_written_where_the_stand_in_goes_is_named_and_destroy_clears_it(sandbox_home):
    """Someone with a shell wrote a file where the stand-in's data directory goes."""
    data_dir = _data_dir("prepfile")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    data_dir.write_text("not a data directory")
    out = tap("deploy", "--env", "dev", "--yes", "--set", "suffix=prepfile")
    assert out.returncode == 3, out.stderr
    assert f"{data_dir}: is a file, not a PostgreSQL data directory" in out.stderr
    assert "Traceback" not in out.stderr
    # the cluster's create failed half-way (no id recorded): destroy still settles everything
    destroyed = tap("destroy", "--env", "dev", "--yes", "--set", "suffix=prepfile")
    assert destroyed.returncode == 0, destroyed.stderr
    assert not data_dir.exists()
    engine = make_engine(suffix="prepfile")
    assert live_counts(engine, "clusters", "vpcs", stack=engine.stack) == {"clusters": 0,
                                                                            "vpcs": 0}


def test_an_rds_rotation_syncs_the_stand_ins_of_that_secret_only(sandbox_home, monkeypatch):
    """The emulator's rotation of an RDS-managed secret syncs the stand-ins whose master it is;
    another stack's, and a master file damaged by hand, are left alone (no error)."""
    synced = []
    monkeypatch.setattr(standin, "sync_master",
                        lambda ctx, stack, cluster: synced.append((stack, cluster)))
    root = stack_dir("TapStackrota").parent
    for stack, cluster, text in (("TapStackrota", "c1", '{"secret_arn": "arn:one"}'),
                                 ("TapStackrotb", "c2", '{"secret_arn": "arn:two"}'),
                                 ("TapStackrotc", "c3", '{"secret_arn": "arn:o')):
        (root / stack / "postgres-master").mkdir(parents=True)
        (root / stack / "postgres-master" / f"{cluster}.json").write_text(text)
    standin.sync_masters_of("arn:one", lambda service: None)
    assert synced == [("TapStackrota", "c1")]
