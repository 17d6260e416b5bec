"""`tap lab` in a real browser: headless Chromium drives JupyterLab on a deployed sandbox stack.

The operator's path of issue #20: `tap lab --env dev`, open preview, verify and deploy, Run All,
save; open destroy and save it without running. The records and the trail must then agree:
statuses from what ran (verify with a failing check is failed), the deploy record's summary is
its trail entry's, the preview record shows the plan of the deployed stack (not a reference
run's "create 50"), and the un-run save made no record.

Chromium is Debian's (`apt-get install chromium`, test-only; .ci/run installs it). It is driven
over the Chrome DevTools Protocol with websocket-client (a jupyter_server dependency): no
browser download, no new package. JupyterLab's own commands (the ones its menus run) do the
clicking: `--LabApp.expose_app_in_browser` (set through this test's JUPYTER_CONFIG_DIR only)
gives the page `window.jupyterapp`. Under CI a missing chromium fails; locally it skips.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tap_lib import trail
from tap_lib.localdb import free_port
from tap_lib.ops import audit

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]
TOKEN = "tap-browser-test"


@pytest.fixture(scope="module")
def chromium(ci_tool) -> str:
    ci_tool("chromium", 200)  # within this module's 300 s timeout
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        why = "no chromium on PATH: .ci/run installs it with `apt-get install -y chromium`"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return found


class DevTools:
    """The least of the Chrome DevTools Protocol this test needs: evaluate JavaScript in the
    page, awaiting its promise."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=240, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply["result"]

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"in the page: {result['exceptionDetails']}")
        return result["result"].get("value")


def _wait(what: str, probe, timeout_s: float, proc: subprocess.Popen | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = probe()
            if value:
                return value
        except OSError:
            pass
        if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def deployed(sandbox_home: Path) -> Iterator[dict[str, Any]]:
    """The dev stack deployed, then its database opened to the world behind tap's back: the
    verify notebook has a failing check to report."""
    from tap_lib.engines.registry import open_engine
    from tap_lib.ops import stack as stack_ops
    from tap_lib.ops.stack import settings_for

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAP_OPERATOR", "dana")
        mp.setenv("TAP_TARGET", "sandbox")
        for key in (trail.RECORD_ENV, trail.SESSION_ENV):
            mp.delenv(key, raising=False)
        stack_ops.deploy("dev", "sandbox")
        engine = open_engine(settings_for("dev"), "sandbox")
        out, c = engine.outputs(), engine.clients()
        cluster = c("rds").describe_db_clusters(DBClusterIdentifier=out["rds_cluster_id"])
        group = cluster["DBClusters"][0]["VpcSecurityGroups"][0]["VpcSecurityGroupId"]
        c("ec2").authorize_security_group_ingress(GroupId=group, IpPermissions=[{
            "IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
            "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        yield {"home": sandbox_home}


@pytest.fixture(scope="module")
def browser_session(deployed: dict[str, Any], chromium: str) -> Iterator[dict[str, Any]]:
    """`tap lab --env dev` driven by headless Chromium: preview, verify and deploy run and
    saved, destroy saved un-run; the lab stopped again. What the page reported."""
    port, home = free_port(), deployed["home"]
    config = Path(tempfile.mkdtemp(prefix="tap-lab-config-"))
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"LabApp": {"expose_app_in_browser": True}}), encoding="utf-8")
    env = {**os.environ, "JUPYTER_TOKEN": TOKEN, "JUPYTER_CONFIG_DIR": str(config),
           "TAP_OPERATOR": "dana", "TAP_TARGET": "sandbox"}
    for key in (trail.RECORD_ENV, trail.SESSION_ENV):
        env.pop(key, None)
    tap = subprocess.Popen([sys.executable, "-m", "tap_lib.cli", "lab", "--env", "dev",
                            "--port", str(port)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    profile = Path(tempfile.mkdtemp(prefix="tap-chromium-"))
    browser = None
    try:
        _wait("JupyterLab", lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api", timeout=2), 90, tap)
        browser = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--remote-allow-origins=*", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        active = profile / "DevToolsActivePort"
        cdp_port = _wait("Chromium's DevTools port", lambda: active.is_file() and
                         active.read_text().split("\n")[0], 30, browser)
        pages = _wait("a page", lambda: [t for t in json.load(urllib.request.urlopen(
            f"http://127.0.0.1:{cdp_port}/json", timeout=5)) if t["type"] == "page"], 30)
        page = DevTools(pages[0]["webSocketDebuggerUrl"])
        page.call("Emulation.setFocusEmulationEnabled", enabled=True)  # headless: no OS focus
        page.call("Page.navigate", url=f"http://127.0.0.1:{port}/lab?token={TOKEN}")
        _wait("JupyterLab in the page", lambda: page.js(
            "!!(window.jupyterapp && window.jupyterapp.shell)"), 60)
        page.js("window.jupyterapp.restored")
        t0 = time.monotonic()
        ran = {}
        for name in ("preview", "verify", "deploy"):
            t1 = time.monotonic()
            ran[name] = page.js(RUN_AND_SAVE % json.dumps(f"{name}.ipynb"))
            ran[name]["seconds"] = round(time.monotonic() - t1, 1)
        ran["destroy"] = page.js(SAVE_ONLY % json.dumps("destroy.ipynb"))
        ran["seconds"] = round(time.monotonic() - t0, 1)
    finally:
        if browser is not None:
            browser.terminate()
            browser.wait(timeout=30)
        tap.terminate()  # tap lab stops JupyterLab and its kernels on SIGTERM
        _, err = tap.communicate(timeout=60)
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(config, ignore_errors=True)
    root = str(home / "outputs")
    records = {nbformat.read(p, as_version=4).metadata["tap"]["notebook"]: p
               for p in sorted((Path(root) / "dev").glob("*-lab-*.ipynb"))}
    yield {"ran": ran, "records": records, "root": root, "log": err.decode()}


# Open a notebook as the file browser does, Run All as the Run menu does, save as Ctrl+S does;
# what the page shows afterwards.
RUN_AND_SAVE = """(async () => {
  const app = window.jupyterapp;
  const panel = await app.commands.execute('docmanager:open', {path: %s});
  await panel.context.ready;
  await panel.sessionContext.ready;
  app.shell.activateById(panel.id);
  while (app.shell.currentWidget !== panel) await new Promise(r => setTimeout(r, 100));
  await app.commands.execute('notebook:run-all-cells');
  await app.commands.execute('docmanager:save');
  const cells = panel.content.model.toJSON().cells.filter(c => c.cell_type === 'code');
  return {executed: cells.filter(c => c.execution_count !== null).length, code: cells.length,
          errors: cells.flatMap(c => c.outputs).filter(o => o.output_type === 'error')
                       .map(o => o.ename),
          kernel: panel.sessionContext.session.kernel.status};
})()"""
SAVE_ONLY = """(async () => {
  const app = window.jupyterapp;
  const panel = await app.commands.execute('docmanager:open', {path: %s});
  await panel.context.ready;
  app.shell.activateById(panel.id);
  while (app.shell.currentWidget !== panel) await new Promise(r => setTimeout(r, 100));
  await app.commands.execute('docmanager:save');
  return {saved: true};
})()"""


def test_lab_records_in_a_browser_match_what_ran_and_the_trail(browser_session) -> None:
    ran, records, root = browser_session["ran"], browser_session["records"], \
        browser_session["root"]
    print(f"browser: Run All + save of three notebooks took {ran['seconds']} s: {ran}; records: " + json.dumps({n: {k: m[k] for k in ("status", "summary",
          "error")} for n, m in ((n, nbformat.read(p, as_version=4).metadata["tap"])
                                 for n, p in records.items())}))
    assert ran["preview"]["executed"] == ran["preview"]["code"] and not ran["preview"]["errors"]
    assert ran["verify"]["errors"] == ["ChecksFailed"]  # the open database, seen in the page
    assert ran["deploy"]["executed"] == ran["deploy"]["code"] and not ran["deploy"]["errors"]
    # the un-run destroy save made no record; each notebook that ran made one
    assert sorted(records) == ["lab-deploy", "lab-preview", "lab-verify"], \
        browser_session["log"][-3000:]
    assert "destroy.ipynb saved as a draft, not a record" in browser_session["log"]
    meta = {name: nbformat.read(path, as_version=4).metadata["tap"]
            for name, path in records.items()}
    entries = trail.read(root)
    # status: what ran
    assert meta["lab-preview"]["status"] == "succeeded"
    assert meta["lab-verify"]["status"] == "failed"
    assert "ChecksFailed" in meta["lab-verify"]["error"]
    assert meta["lab-deploy"]["status"] == "succeeded"
    # the checks the open database fails, as the page showed them, counted in the summary
    failed_ids = meta["lab-verify"]["error"].split("failed on TapStackdev: ")[1].split(", ")
    assert "sg.db-ingress" in failed_ids
    assert meta["lab-verify"]["summary"]["failed"] == len(failed_ids)
    # the deploy record's summary is its trail entry's (one source)
    deploy = next(e for e in reversed(entries) if e["operation"] == "deploy"
                  and e["result"] == "succeeded")
    assert deploy["record"].endswith("deploy.ipynb") and deploy["operator"] == "dana"
    assert meta["lab-deploy"]["trail"] == [deploy["hash"]]
    assert meta["lab-deploy"]["summary"] == deploy["summary"]
    # the preview record shows this stack's plan: what the deploy then did, nothing to create
    assert meta["lab-preview"]["summary"] == deploy["summary"]
    assert not deploy["summary"].get("create") and deploy["summary"].get("same")
    # each record's trail entry says the same status
    kept = {e["notebook"]: e for e in entries if e["operation"] == "record"}
    assert {name: kept[name]["status"] for name in records} == \
        {name: m["status"] for name, m in meta.items()}
    assert {name: kept[name]["result"] for name in records} == \
        {"lab-preview": "succeeded", "lab-verify": "failed", "lab-deploy": "succeeded"}
    # what the record holds ran in this session: the preview's outputs are there
    saved = nbformat.read(records["lab-preview"], as_version=4)
    assert all(c.execution_count for c in saved.cells if c.cell_type == "code")
    assert audit.verify(root).ok
