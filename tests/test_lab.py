"""`tap lab`: session copies of the notebooks (without reference outputs), saves kept as records
only when the notebook ran in the session (status and summary from what ran), and mutations
run in a session kernel (as JupyterLab runs them: nbclient, JPY_SESSION_NAME) naming their
session notebook. Cells run in a real in-process IPython shell with the session's extension
loaded; a real jupyter server is started once to save through its REST API.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from tap_lib import lab, trail
from tap_lib.localdb import free_port
from tap_lib.ops import audit
from tap_lib.ops import stack as stack_ops
from tap_lib.project import notebook_names
from tap_lib.project import notebooks_dir


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TAP_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("TAP_OPERATOR", "carol")
    for key in (trail.RECORD_ENV, trail.SESSION_ENV, "TAP_TARGET"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TAP_HOME", str(tmp_path / "home"))
    return tmp_path


def committed_digests() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in notebooks_dir().glob("*.ipynb")}


def parameters_of(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))


def test_a_session_is_a_copy_with_the_env_set(home: Path) -> None:
    before = committed_digests()
    folder = lab.create_session("staging")
    assert folder.parent == lab.sessions_dir() and folder.name.endswith("-staging")
    assert sorted(p.stem for p in folder.glob("*.ipynb")) == sorted(notebook_names())
    params = parameters_of(folder / "deploy.ipynb")
    assert 'env = "staging"' in params and 'target = "sandbox"' in params
    assert "# environment file params/<env>.yaml" in params  # comments kept
    assert 'confirm = ""' in params
    committed = nbformat.read(notebooks_dir() / "preview.ipynb", as_version=4)
    assert any(c.get("outputs") for c in committed.cells)  # the reference run's outputs...
    for name in notebook_names():  # ...never reach a session copy
        copy = nbformat.read(folder / f"{name}.ipynb", as_version=4)
        assert all(not c.get("outputs") and c.get("execution_count") is None
                   for c in copy.cells if c.cell_type == "code"), name
    info = json.loads((folder / lab.SESSION_FILE).read_text())
    assert info["stack"] == "TapStackstaging" and info["operator"] == "carol"
    assert committed_digests() == before
    assert lab.create_session("staging") != folder  # a new session never reuses a folder


def test_a_bad_env_is_refused_before_anything_is_copied(home: Path) -> None:
    from tap_lib.errors import ConfigError

    with pytest.raises(ConfigError, match="nope"):
        lab.create_session("nope")
    assert not lab.sessions_dir().exists() or not any(lab.sessions_dir().iterdir())


def test_the_lab_command_opens_the_session_only_with_the_hook(home: Path) -> None:
    folder = lab.create_session("dev")
    cmd = lab.lab_command(folder, port=8999)
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={folder}" in cmd and "--no-browser" in cmd
    assert f"--ContentsManager.post_save_hook={lab.HOOK}" in cmd
    assert not any(str(notebooks_dir()) in part for part in cmd)


@pytest.fixture
def shell(home: Path, monkeypatch: pytest.MonkeyPatch):
    """A real IPython shell in this process, as a session kernel is: the extension loaded,
    JPY_SESSION_NAME naming the session's verify notebook (as jupyter_server sets it)."""
    from IPython.core.interactiveshell import InteractiveShell

    from tap_lib.ops import runbook

    folder = lab.create_session("dev")
    monkeypatch.setenv(trail.SESSION_ENV, str(folder / "verify.ipynb"))
    monkeypatch.setattr(trail, "AFTER_MUTATION", [])
    monkeypatch.setattr(runbook, "SUMMARY_SHOWN", [])
    ipython = InteractiveShell.instance()
    monkeypatch.setattr(ipython.events, "callbacks",
                        {k: list(v) for k, v in ipython.events.callbacks.items()})
    lab.load_ipython_extension(ipython)
    ipython.run_cell('env = "dev"\ntarget = "sandbox"', store_history=True)
    return ipython, folder / "verify.ipynb"


def save(path: Path) -> str | None:
    return lab.post_save(model={"type": "notebook"}, os_path=str(path), contents_manager=None)


def lab_records(home: Path) -> list[Path]:
    return sorted((home / "outputs" / "dev").glob("*-lab-*.ipynb"))


def test_a_save_before_any_run_is_a_draft_not_a_record(home: Path, capfd) -> None:
    folder = lab.create_session("dev")
    assert save(folder / "deploy.ipynb") is None
    assert "deploy.ipynb saved as a draft, not a record" in capfd.readouterr().err
    assert save(folder / lab.SESSION_FILE) is None  # not a notebook
    assert lab_records(home) == []
    assert not [e for e in trail.read() if e["operation"] == "record"]


def test_a_save_after_a_run_is_a_record_of_what_ran(shell, home: Path) -> None:
    ipython, path = shell
    ipython.run_cell('from tap_lib.ops.runbook import show_summary\n'
                     'show_summary("verify", {"passed": 7, "failed": 0})', store_history=True)
    record = save(path)
    assert record and lab_records(home) == [Path(record)]
    meta = nbformat.read(record, as_version=4).metadata["tap"]
    assert meta["status"] == "succeeded" and meta["error"] is None
    assert meta["summary"] == {"passed": 7, "failed": 0}  # as the kernel computed them
    assert meta["session"] == str(path) and meta["stack"] == "TapStackdev"
    assert meta["notebook"] == "lab-verify" and meta["operator"] == "carol"
    assert save(path) is None  # an autosave with nothing new: no second record
    ipython.run_cell("1 + 1", store_history=True)
    assert save(path) and len(lab_records(home)) == 2  # ran again: a new record
    chained = [e for e in trail.read() if e["operation"] == "record"]
    assert [e["result"] for e in chained] == ["succeeded", "succeeded"]
    assert audit.verify().ok
    assert audit.audit_table("dev").status.tolist() == ["succeeded", "succeeded"]


def test_a_failing_cell_or_failed_checks_make_a_failed_record(shell, home: Path) -> None:
    ipython, path = shell
    ipython.run_cell('from tap_lib.ops.runbook import show_summary\n'
                     'show_summary("verify", {"passed": 4, "failed": 3})', store_history=True)
    meta = nbformat.read(save(path), as_version=4).metadata["tap"]
    assert meta["status"] == "failed" and meta["error"] == "failed=3"
    ipython.run_cell('raise RuntimeError("no such stack")', store_history=True)
    meta = nbformat.read(save(path), as_version=4).metadata["tap"]
    assert meta["status"] == "failed" and "RuntimeError: no such stack" in meta["error"]
    results = [e["result"] for e in trail.read() if e["operation"] == "record"]
    assert results == ["failed", "failed"]
    table = audit.audit_table("dev")
    assert len(table[table.status != "succeeded"]) == 2  # the audit notebook's count


def test_a_run_against_another_env_is_not_this_sessions_record(shell, home: Path,
                                                               capfd) -> None:
    ipython, path = shell
    ipython.run_cell('env = "staging"', store_history=True)
    assert save(path) is None
    assert "ran with env=staging, not this session's stack TapStackdev" in capfd.readouterr().err
    assert lab_records(home) == []


def test_a_damaged_run_log_makes_a_draft_until_the_notebook_runs_again(shell, home: Path,
                                                                       capfd) -> None:
    from tap_lib.lab_records import runs_file

    ipython, path = shell
    runs_file(path).write_text("{not json", encoding="utf-8")
    assert save(path) is None
    assert "was unreadable, so what ran before is unknown" in capfd.readouterr().err
    assert lab_records(home) == []
    ipython.run_cell('env = "dev"', store_history=True)
    assert save(path) and len(lab_records(home)) == 1


def test_lab_drafts_of_older_sessions_are_not_counted_as_failed_runs(home: Path) -> None:
    """Lab saves kept before a record needed a run have status "saved": the audit notebook
    counts `status != "succeeded"` as failed, so they are drafts, not runs."""
    from tap_lib.ops.runbook import keep_record, reserve_record, utc_now

    root = trail.records_root()
    nb = nbformat.v4.new_notebook()
    for name in ("deploy", "lab-preview"):
        keep_record(nb, name=name, env="dev", stack="TapStackdev",
                    params={"operator": "carol", "target": "sandbox"}, root=root,
                    path=reserve_record(root, "dev", name, utc_now()), started=utc_now(),
                    duration_s=1.0, error=None)
    legacy = nbformat.read(audit.audit_table("dev").path[1], as_version=4)
    legacy.metadata["tap"]["status"] = "saved"  # as tap lab wrote them before
    from tap_lib.ops.runbook import store_record

    store_record(legacy, root, reserve_record(root, "dev", "lab-verify", utc_now()))
    table = audit.audit_table("dev")
    assert len(table) == 2 and len(table[table.status != "succeeded"]) == 0
    assert audit.audit_table("dev", drafts=True).status.tolist().count("saved") == 1


@pytest.mark.sandbox
def test_a_deploy_in_a_session_kernel_names_its_notebook(sandbox_home: Path, home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """nbclient runs the session notebook as JupyterLab does: a kernel whose environment
    jupyter_server gave JPY_SESSION_NAME (sessionmanager.get_kernel_env)."""
    from nbclient import NotebookClient

    monkeypatch.setenv("TAP_HOME", str(sandbox_home))  # the module's emulator
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "labkernel")
    folder = lab.create_session("dev")
    path = folder / "deploy.ipynb"
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(folder)}})
    try:
        client.execute(env={**os.environ, trail.SESSION_ENV: str(path),   # as `tap lab` does
                            "IPYTHONDIR": str(folder / lab.IPYTHON_DIR)})
    finally:
        stack_ops.destroy("dev", yes=True)
    deploy = next(e for e in trail.read()
                  if e["operation"] == "deploy" and e["result"] != "started")
    assert deploy["result"] == "succeeded" and deploy["record"] == str(path)
    assert deploy["stack"] == "TapStacklabkernel" and deploy["operator"] == "carol"
    assert not [e for e in trail.read() if e["operation"] == "record"]  # not saved yet
    nbformat.write(nb, path)  # the operator saves: JupyterLab writes, then calls the hook
    record = save(path)
    meta = nbformat.read(record, as_version=4).metadata["tap"]
    assert meta["status"] == "succeeded" and meta["session"] == str(path)
    assert meta["summary"] == deploy["summary"] and meta["trail"] == [deploy["hash"]]
    assert audit.verify().ok


def test_a_real_jupyter_server_save_of_an_unrun_notebook_is_a_draft(home: Path) -> None:
    folder = lab.create_session("dev")
    port, token = free_port(), "tap-test-token"
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", f"--ServerApp.port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}", "--no-browser",
         *(["--allow-root"] if os.geteuid() == 0 else []),
         "--ServerApp.ip=127.0.0.1", f"--ContentsManager.post_save_hook={lab.HOOK}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/api"
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(f"{base}/status", headers=headers),
                                       timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError(server.stderr.read().decode()[-2000:]) from None
                time.sleep(0.3)
        nb = nbformat.read(folder / "verify.ipynb", as_version=4)
        nb.cells.append(nbformat.v4.new_markdown_cell("checked by carol"))
        body = json.dumps({"type": "notebook", "format": "json", "content": nb}).encode()
        req = urllib.request.Request(f"{base}/contents/verify.ipynb", data=body,
                                     headers=headers, method="PUT")
        assert urllib.request.urlopen(req, timeout=30).status == 200
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert nbformat.read(folder / "verify.ipynb", as_version=4).cells[-1].source == \
        "checked by carol"  # saved in the session folder...
    assert "verify.ipynb saved as a draft, not a record" in err.decode()
    assert lab_records(home) == []  # ...and not a record: nothing ran


def _running_lab(port: int) -> tuple[subprocess.Popen, list]:
    """`tap lab` as an operator starts it, once its JupyterLab answers, with a kernel running
    (started through JupyterLab's API, as opening a notebook does); its process tree."""
    import psutil

    tap = subprocess.Popen([sys.executable, "-m", "tap_lib.cli", "lab", "--env", "dev",
                            "--port", str(port)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           env={**os.environ, "JUPYTER_TOKEN": "tap-test-token"})
    headers = {"Authorization": "token tap-test-token", "Content-Type": "application/json"}
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or tap.poll() is not None:
                tap.kill()
                raise AssertionError(tap.stderr.read().decode()[-2000:]) from None
            time.sleep(0.3)
    started = urllib.request.Request(f"http://127.0.0.1:{port}/api/kernels", data=b"{}",
                                     headers=headers, method="POST")
    assert urllib.request.urlopen(started, timeout=60).status == 201
    family = [tap.pid] + [p.pid for p in psutil.Process(tap.pid).children(recursive=True)]
    assert any("ipykernel" in " ".join(psutil.Process(p).cmdline()) for p in family), family
    return tap, family


def _all_gone(pids: list[int]) -> bool:
    import psutil

    alive = [p for p in pids if psutil.pid_exists(p) and
             psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    return not alive


def test_sigterm_to_tap_lab_stops_jupyterlab_and_its_kernels(home: Path) -> None:
    """Issue #20: `kill -TERM` of tap lab left JupyterLab and its kernels running."""
    tap, family = _running_lab(free_port())
    tap.terminate()
    tap.wait(timeout=60)
    time.sleep(0.5)
    assert _all_gone(family), family
    assert list((home / "home" / "sessions").glob("*/session.json"))
    assert not list((home / "home" / "sessions").glob(f"*/{lab.LAB_FILE}"))


def test_tap_lab_stop_stops_a_lab_started_elsewhere(home: Path, capsys) -> None:
    from tap_lib import cli

    tap, family = _running_lab(free_port())
    try:
        assert cli.main(["lab", "stop"]) == 0
        assert "stopped JupyterLab and its kernels for session" in capsys.readouterr().out
        tap.wait(timeout=60)
        assert _all_gone(family[1:]), family
    finally:
        tap.kill()
    assert cli.main(["lab", "stop"]) == 0 and "no tap lab running" in capsys.readouterr().out
    assert cli.main(["lab"]) == 2 and "--env" in capsys.readouterr().err
