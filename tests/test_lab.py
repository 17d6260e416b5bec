"""`tap lab`: session copies of the notebooks, saved sessions kept as records, and mutations
run in a session kernel (as JupyterLab runs them: nbclient, JPY_SESSION_NAME) naming their
session notebook. A real jupyter server is started once to save through its REST API.
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
from tap_lib.ops.runbook import NOTEBOOKS
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
    assert sorted(p.stem for p in folder.glob("*.ipynb")) == sorted(NOTEBOOKS)
    params = parameters_of(folder / "deploy.ipynb")
    assert 'env = "staging"' in params and 'target = "sandbox"' in params
    assert "# environment file params/<env>.yaml" in params  # comments kept
    assert 'confirm = ""' in params
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


def test_the_save_hook_keeps_each_save_as_a_chained_record(home: Path) -> None:
    folder = lab.create_session("dev")
    nb_path = folder / "preview.ipynb"
    lab.post_save(model={"type": "notebook"}, os_path=str(nb_path), contents_manager=None)
    lab.post_save(model={"type": "notebook"}, os_path=str(nb_path), contents_manager=None)
    lab.post_save(model={"type": "file"}, os_path=str(folder / lab.SESSION_FILE))
    records = sorted((home / "outputs" / "dev").glob("*.ipynb"))
    assert len(records) == 2 and all("-lab-preview" in p.name for p in records)
    meta = nbformat.read(records[0], as_version=4).metadata["tap"]
    assert meta["status"] == "saved" and meta["session"] == str(nb_path)
    assert meta["operator"] == "carol" and meta["stack"] == "TapStackdev"
    chained = [e for e in trail.read() if e["operation"] == "record"]
    root = trail.records_root()
    assert sorted(trail.record_location(e["record"], root) for e in chained) == \
        [str(p) for p in records]
    assert audit.verify().ok
    assert audit.audit_table("dev").status.tolist() == ["saved", "saved"]


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
    kept = [e for e in trail.read() if e["operation"] == "record"]
    assert kept and kept[0]["prev"] == deploy["hash"]
    meta = nbformat.read(trail.record_location(kept[0]["record"], trail.records_root()),
                         as_version=4).metadata["tap"]
    assert meta["reason"] == "deploy ran" and meta["session"] == str(path)
    assert audit.verify().ok


def test_a_real_jupyter_server_save_becomes_a_record(home: Path) -> None:
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
        server.wait(timeout=30)
    [record] = (home / "outputs" / "dev").glob("*-lab-verify.ipynb")
    saved = nbformat.read(record, as_version=4)
    assert saved.cells[-1].source == "checked by carol"
    assert saved.metadata["tap"]["session"] == str(folder / "verify.ipynb")
    assert audit.verify().ok


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
