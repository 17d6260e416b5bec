"""`tap lab`: JupyterLab on working copies of the runbook; what ran in a session kept as records.

Why copies: the committed notebooks carry reference outputs nbval compares, so saving one from
JupyterLab would break the suite. `tap lab --env E` copies them into a session folder
(``<TAP_HOME>/sessions/<UTC stamp>-<env>/``, parameters cell set to env=E) and starts JupyterLab
there; the committed notebooks are never opened for writing. The copies start **without
outputs**: a reference output from another run (a plan creating 50 resources, "42 passed")
would read as this stack's state.

Why records: a session changes stacks like `tap run` does, so it leaves the same evidence.
The session's kernels load this module as an IPython extension (the session's IPYTHONDIR),
which logs what each notebook ran (tap_lib/lab_records.py); JupyterLab calls `post_save` after
every save (``ContentsManager.post_save_hook``), which makes the saved notebook a record
(``<root>/<env>/<stamp>-lab-<name>.ipynb``, never overwritten, chained into the audit trail)
only when it ran in this session against the session's stack since its last record - else the
save is a draft, kept in the session folder only. A deploy, destroy or refresh run from a
session kernel appends its trail entry naming the session notebook (jupyter_server sets
JPY_SESSION_NAME in the kernels it starts); the record's summary is that entry's.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import lab_records, trail
from .project import notebook_names, notebooks_dir, tap_home

SESSION_FILE = "session.json"
IPYTHON_DIR = ".ipython"          # in the session folder: its kernels' IPython configuration
LAB_FILE = "lab.json"             # in the session folder while its JupyterLab runs: its pid
HOOK = "tap_lib.lab.post_save"
SESSION_KEY = "tap_session"


def sessions_dir() -> Path:
    return tap_home() / "sessions"


def create_session(env: str, target: str | None = None) -> Path:
    """Copy every runbook notebook into a new session folder, parameters set to `env` and
    `target`. The environment file is validated first (ConfigError names it)."""
    import nbformat

    from .engines.registry import check_target
    from .ops.stack import settings_for

    settings = settings_for(env)
    target = check_target(target)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = _new_folder(sessions_dir(), f"{stamp}-{env}")
    info = {"env": env, "target": target, "stack": settings.stack_name,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "commit": trail.git_state()[0], "operator": trail.current_operator()}
    (folder / SESSION_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    profile = folder / IPYTHON_DIR / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_kernel_config.py").write_text(
        f"c.IPKernelApp.extensions = [{__name__!r}]\n", encoding="utf-8")
    for name in notebook_names():
        source = notebooks_dir() / f"{name}.ipynb"
        with open(source, encoding="utf-8") as fh:  # read-only: never written back
            nb = nbformat.read(fh, as_version=4)
        for cell in nb.cells:
            if "parameters" in cell.metadata.get("tags", []):
                cell.source = set_parameters(cell.source, {"env": env, "target": target})
        strip_outputs(nb)
        nb.metadata[SESSION_KEY] = {**info, "source": f"notebooks/{name}.ipynb"}
        with open(folder / f"{name}.ipynb", "x", encoding="utf-8") as fh:
            nbformat.write(nb, fh)
    return folder


def strip_outputs(nb: Any) -> None:
    """No output, execution count or run metadata from the committed reference run: what a
    session notebook shows is what ran in the session."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)


def set_parameters(source: str, values: dict[str, str]) -> str:
    """`name = <default>  # comment` lines of a parameters cell with new values, comments kept."""
    lines = []
    for line in source.splitlines():
        match = re.match(r"^(\w+)(\s*=\s*)(\"[^\"]*\"|'[^']*'|[^#]*?)(\s*#.*)?$", line)
        if match and match.group(1) in values:
            line = (f"{match.group(1)}{match.group(2)}{json.dumps(values[match.group(1)])}"
                    f"{match.group(4) or ''}")
        lines.append(line)
    return "\n".join(lines) + ("\n" if source.endswith("\n") else "")


def lab_command(folder: Path, port: int | None = None) -> list[str]:
    """JupyterLab on the session folder only, with the records hook, on this interpreter."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={folder}", "--no-browser",
           f"--ContentsManager.post_save_hook={HOOK}"]
    if port:
        cmd.append(f"--ServerApp.port={port}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers run as root; Jupyter refuses without it
    return cmd


def start_lab(env: str, target: str | None = None, port: int | None = None) -> int:
    """Create a session and run JupyterLab on it until it is stopped (Ctrl+C, SIGTERM or
    SIGHUP to tap, or `tap lab stop`); its exit code. Stopping tap stops JupyterLab and every
    kernel it started."""
    import signal

    folder = create_session(env, target)
    print(f"session {folder}\n  notebooks start without outputs; a save after running cells "
          f"is recorded under {trail.records_root()} (`tap audit`), a save of a notebook "
          "that did not run is a draft in the session folder only; stop with Ctrl+C or "
          "`tap lab stop`", flush=True)
    child_env = {k: v for k, v in os.environ.items() if k != trail.RECORD_ENV}
    child_env["IPYTHONDIR"] = str(folder / IPYTHON_DIR)
    child = subprocess.Popen(lab_command(folder, port), env=child_env)
    info = folder / LAB_FILE
    info.write_text(json.dumps({"pid": child.pid, "tap_pid": os.getpid()}), encoding="utf-8")
    handlers = {sig: signal.signal(sig, lambda *_: stop_process(child.pid))
                for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return child.wait()
    except KeyboardInterrupt:
        stop_process(child.pid)
        return 130
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        info.unlink(missing_ok=True)


def stop_process(pid: int, timeout_s: float = 20) -> bool:
    """Stop JupyterLab and everything it started (kernels run in process sessions of their
    own, so a signal to JupyterLab's group alone would leave them): terminate the whole tree,
    kill what is left after `timeout_s`. False when no such process runs."""
    import psutil

    try:
        proc = psutil.Process(pid)
        family = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    for member in family:
        try:
            member.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=timeout_s)
    for member in alive:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    return True


def stop_labs() -> list[Path]:
    """`tap lab stop`: every JupyterLab `tap lab` runs for this TAP_HOME, and its kernels; the
    session folders they served."""
    import psutil

    stopped = []
    for info in sorted(sessions_dir().glob(f"*/{LAB_FILE}")):
        try:
            pid = int(json.loads(info.read_text(encoding="utf-8"))["pid"])
            cmdline = psutil.Process(pid).cmdline()
        except (OSError, ValueError, KeyError, TypeError, psutil.Error):
            cmdline = []
        # only the JupyterLab of that session: a pid the system reused is left alone
        if any("jupyterlab" in part for part in cmdline) and \
                f"--ServerApp.root_dir={info.parent}" in cmdline and stop_process(pid):
            stopped.append(info.parent)
        info.unlink(missing_ok=True)
    return stopped


def load_ipython_extension(ipython: Any) -> None:
    """A session kernel (its IPYTHONDIR names this module): log what each cell ran, the
    figures shown and the trail entry of each mutation (lab_records)."""
    attach()
    ipython.events.register("post_run_cell",
                            lambda result: lab_records.cell_ran(result, ipython.user_ns))


def attach() -> None:
    from .ops import runbook

    if lab_records.mutation_ran not in trail.AFTER_MUTATION:
        trail.AFTER_MUTATION.append(lab_records.mutation_ran)
    if lab_records.summary_shown not in runbook.SUMMARY_SHOWN:
        runbook.SUMMARY_SHOWN.append(lab_records.summary_shown)


def post_save(model: dict[str, Any] | None = None, os_path: str | None = None,
              contents_manager: Any = None, **_: Any) -> str | None:
    """JupyterLab's post-save hook: a saved session notebook that ran becomes an audit record
    (its path), one that did not is a draft (None)."""
    if not os_path or not str(os_path).endswith(".ipynb"):
        return None
    if model is not None and model.get("type") not in (None, "notebook"):
        return None
    path = Path(os_path)
    return lab_records.record_save(path, session_info(path))


def session_info(path: Path) -> dict[str, Any]:
    """The session a notebook belongs to, from its session.json (not the notebook's metadata,
    which an edit could change; a notebook the operator created has none)."""
    for folder in (path.parent, *path.parents):
        try:
            return json.loads((folder / SESSION_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return {}


def _new_folder(parent: Path, name: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        folder = parent / (name if n == 1 else f"{name}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"no free session folder for {name} under {parent}")
