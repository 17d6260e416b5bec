"""The state file's group commit (issue #23): concurrent steps share whole-file writes, yet no
change returns before a save holding it has replaced state.json, a failed save raises in every
caller whose change it carried, and a process killed mid-deploy keeps every record whose call
returned.

No emulator: StateStore on its own, under a TAP_HOME in tmp_path; the kill case in a real
subprocess killed with SIGKILL.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tap_lib.engines.sandbox.state import ResourceRecord, StateStore

REPO = Path(__file__).resolve().parents[1]
N = 40


def record(i: int, stack: str = "dev") -> ResourceRecord:
    """About 1.5 KB in the file, the shape of a deployed subnet."""
    tags = {f"tag{k}": f"value-{k}-" + "x" * 20 for k in range(6)}
    inputs = {"vpcId": "vpc-0123456789abcdef0", "cidrBlock": f"10.0.{i % 250}.0/24",
              "availabilityZone": "eu-west-1a", "tags": tags}
    return ResourceRecord(
        f"urn:pulumi:{stack}::tap::aws:ec2/subnet:Subnet::subnet-{i}", "aws:ec2/subnet:Subnet",
        f"subnet-{i}", f"subnet-{i:017x}", inputs,
        {**inputs, "arn": f"arn:aws:ec2:eu-west-1:000000000000:subnet/subnet-{i:017x}"},
        ["urn:pulumi:dev::tap::aws:ec2/vpc:Vpc::vpc"])


def on_disk(path: Path) -> set[str]:
    return {r["urn"] for r in json.loads(path.read_text())["resources"]}


@pytest.fixture
def store(tmp_path, monkeypatch) -> StateStore:
    monkeypatch.setenv("TAP_HOME", str(tmp_path / "home"))
    return StateStore("TapStackcommit")


class Replaces:
    """os.replace wrapped: counts the replacements of state.json; `hold` blocks the first one
    until `release`; `fail` makes the given (1-based) one raise ENOSPC instead."""

    def __init__(self, monkeypatch, path: Path, hold: bool = False, fail: int | None = None):
        self.path, self.count, self.fail = str(path), 0, fail
        self.holding, self.release = threading.Event(), threading.Event()
        self.hold = hold
        real = os.replace

        def replace(src, dst, *args, **kwargs):
            if str(dst) != self.path:
                return real(src, dst, *args, **kwargs)
            self.count += 1
            if self.hold and self.count == 1:
                self.holding.set()
                assert self.release.wait(30), "never released"
            if self.count == self.fail:
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
            return real(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)


def wait_until(check, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def run_puts(store: StateStore, indexes, outcomes: dict, returned: list) -> list[threading.Thread]:
    """One thread per record; each records its outcome and, on return, whether the file held
    its record at that moment."""
    def one(i: int) -> None:
        try:
            store.put(record(i))
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcomes[i] = exc
            return
        returned.append(i)
        outcomes[i] = record(i).urn in on_disk(store.path)

    threads = [threading.Thread(target=one, args=(i,)) for i in indexes]
    for t in threads:
        t.start()
    return threads


def test_concurrent_puts_share_writes_and_each_returns_saved(store, monkeypatch):
    writes = Replaces(monkeypatch, store.path)
    outcomes: dict = {}
    barrier = threading.Barrier(N)

    def one(i: int) -> None:
        barrier.wait()
        store.put(record(i))
        outcomes[i] = record(i).urn in on_disk(store.path)  # read the moment it returned

    threads = [threading.Thread(target=one, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert outcomes == {i: True for i in range(N)}
    assert on_disk(store.path) == {record(i).urn for i in range(N)}
    assert 1 <= writes.count < N, writes.count
    assert StateStore("TapStackcommit").state.resources.keys() == store.state.resources.keys()


def test_changes_made_during_a_write_go_in_the_next_one_and_wait_for_it(store, monkeypatch):
    writes = Replaces(monkeypatch, store.path, hold=True)
    outcomes: dict = {}
    returned: list = []
    first = run_puts(store, [0], outcomes, returned)
    assert writes.holding.wait(30)              # the first save is being written
    rest = run_puts(store, range(1, N), outcomes, returned)
    wait_until(lambda: len(store.state.resources) == N, "every change made")
    time.sleep(0.2)
    assert returned == []                       # none returns before a save holds its change
    writes.release.set()
    for t in first + rest:
        t.join(60)
    assert outcomes == {i: True for i in range(N)}
    assert writes.count <= 2, writes.count      # the held save, then one for all the others
    assert on_disk(store.path) == {record(i).urn for i in range(N)}


def test_a_failed_save_raises_in_every_caller_it_carried(store, monkeypatch):
    writes = Replaces(monkeypatch, store.path, hold=True, fail=2)
    outcomes: dict = {}
    returned: list = []
    first = run_puts(store, [0], outcomes, returned)
    assert writes.holding.wait(30)
    carried = run_puts(store, range(1, 11), outcomes, returned)
    wait_until(lambda: len(store.state.resources) == 11, "every change made")
    writes.release.set()
    for t in first + carried:
        t.join(60)
    assert outcomes[0] is True
    for i in range(1, 11):                      # all in the second save, which failed
        assert isinstance(outcomes[i], OSError) and outcomes[i].errno == errno.ENOSPC, \
            (i, outcomes[i])
    assert writes.count == 2
    assert on_disk(store.path) == {record(0).urn}
    assert [p.name for p in store.dir.iterdir() if ".tmp" in p.name] == []
    # A later change is not taken as saved by that failure: it writes, and carries the rest.
    store.put(record(11))
    assert writes.count == 3
    assert on_disk(store.path) == {record(i).urn for i in range(12)}


def test_a_failed_temp_write_raises_and_leaves_the_file(store, monkeypatch):
    store.put(record(0))
    real = Path.write_text

    def full(self, *args, **kwargs):
        if ".tmp" in self.name:
            real(self, "{partial", encoding="utf-8")
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError, match="No space left"):
        store.put(record(1))
    assert on_disk(store.path) == {record(0).urn}
    assert [p.name for p in store.dir.iterdir() if ".tmp" in p.name] == []
    monkeypatch.setattr(Path, "write_text", real)
    store.save()
    assert on_disk(store.path) == {record(0).urn, record(1).urn}


def test_save_writes_fields_set_while_another_save_is_in_flight(store, monkeypatch):
    writes = Replaces(monkeypatch, store.path, hold=True)
    outcomes: dict = {}
    first = run_puts(store, [0], outcomes, [])
    assert writes.holding.wait(30)              # that save's text is already serialized
    store.state.origin = "environments/dev.yaml"
    saver = threading.Thread(target=store.save)
    saver.start()
    saver.join(0.2)
    assert saver.is_alive()                     # waits for the write in flight, then its own
    writes.release.set()
    for t in [*first, saver]:
        t.join(60)
    assert not saver.is_alive() and writes.count == 2
    assert json.loads(store.path.read_text())["origin"] == "environments/dev.yaml"


def test_an_empty_state_never_replaces_a_backup_that_knew_the_stack(store):
    store.put(record(0))
    store.put(record(1))
    store.change(drop=[record(0).urn, record(1).urn])   # the file before this one had both
    bak = store.path.with_name("state.json.bak")
    assert on_disk(store.path) == set() and on_disk(bak) == {record(0).urn, record(1).urn}
    store.state.origin = "environments/dev.yaml"
    store.save()                                        # the file it replaces had none
    assert on_disk(bak) == {record(0).urn, record(1).urn}
    reopened = StateStore("TapStackcommit")             # what is on disk, read again
    reopened.save()
    assert on_disk(bak) == {record(0).urn, record(1).urn}


CHILD = textwrap.dedent("""
    import sys, threading
    from concurrent.futures import ThreadPoolExecutor
    sys.path.insert(0, sys.argv[1])
    sys.path.insert(0, sys.argv[2])
    from test_state_commit import record
    from tap_lib.engines.sandbox.state import StateStore
    store = StateStore("TapStackkilled")
    said = threading.Lock()
    def one(i):
        store.put(record(i))
        with said:                       # printed only once put has returned
            sys.stdout.write(record(i).urn + "\\n")
            sys.stdout.flush()
    with ThreadPoolExecutor(32) as ex:
        list(ex.map(one, range(5000)))
""")


def test_kill_9_mid_deploy_keeps_every_record_whose_put_returned(tmp_path, monkeypatch):
    monkeypatch.setenv("TAP_HOME", str(tmp_path / "home"))
    env = dict(os.environ)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(REPO), str(REPO / "tests")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        seen = [child.stdout.readline() for _ in range(60)]
        assert all(seen), child.stderr.read()
    finally:
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
    returned = {line.strip() for line in seen + rest.splitlines(keepends=True)
                if line.endswith("\n")}
    assert child.returncode == -signal.SIGKILL and len(returned) < 5000  # killed mid-way
    state = StateStore("TapStackkilled").state          # loads: the file is whole
    assert returned <= state.resources.keys(), sorted(returned - state.resources.keys())[:5]
