"""What a `tap lab` session ran, and the records its saves become.

Why: a saved notebook is only evidence of what ran if something ran. The session's kernels load
tap_lib.lab as an IPython extension, which keeps a run log per session notebook
(``<session>/.tap-runs/<notebook>.json``): every cell executed (its last outcome), the
parameters it ran with, the trail entry of each deploy/destroy/refresh it made and the figures
it showed (show_summary). JupyterLab's post-save hook (in the server) reads that log:

- nothing ran since the last record (or ever): the save is a **draft**: the session folder
  keeps it, nothing is recorded (autosaves and Ctrl+S before Run All make no evidence);
- it ran with another env/target than the session's: a draft too (not this stack's evidence);
- otherwise a record: ``failed`` when a cell's last run raised, a mutation did not succeed or
  the figures count failures, else ``succeeded`` (`tap run`'s words). Its summary is the trail
  entry's of the last mutation (one source), else the figures the kernel showed.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import trail
from .version import __version__

RUNS_DIR = ".tap-runs"          # beside the session notebooks: hidden from JupyterLab's browser
MAX_ERROR_CHARS = 300


def runs_file(notebook: Path) -> Path:
    return notebook.parent / RUNS_DIR / f"{notebook.name}.json"


@contextmanager
def run_log(notebook: Path) -> Iterator[dict[str, Any]]:
    """The notebook's run log, locked (kernel and server both write it), saved on exit."""
    from filelock import FileLock

    path = runs_file(notebook)
    path.parent.mkdir(exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=30):
        try:
            log = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            log = {}
        except (OSError, ValueError):  # what ran before is lost: said at the next save
            log = {"damaged": True}
        log.setdefault("seq", 0)
        log.setdefault("recorded", 0)
        log.setdefault("cells", {})
        log.setdefault("mutations", [])
        yield log
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(log, indent=1), encoding="utf-8")
        os.replace(tmp, path)


def session_notebook() -> Path | None:
    """The session notebook this kernel runs (JupyterLab names it), or None (`tap run` sets
    TAP_RECORD: its runner keeps its own record)."""
    if os.environ.get(trail.RECORD_ENV) or not os.environ.get(trail.SESSION_ENV):
        return None
    record = trail.current_record()
    return Path(record) if record and Path(record).is_file() else None


# ------------------------------------------------------------------------- kernel side

def cell_ran(result: Any, namespace: dict[str, Any]) -> None:
    """IPython's post_run_cell: the cell's outcome and the parameters it ran with."""
    notebook = session_notebook()
    info = getattr(result, "info", None)
    if notebook is None or getattr(info, "silent", False) or \
            not (getattr(info, "raw_cell", "") or "").strip():
        return
    exc = getattr(result, "error_before_exec", None) or getattr(result, "error_in_exec", None)
    error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS] if exc is not None else None
    cell = getattr(info, "cell_id", None) or f"count-{getattr(result, 'execution_count', 0)}"
    with run_log(notebook) as log:
        log.pop("damaged", None)  # a fresh start: runs from here on are known
        if log["seq"] == log["recorded"]:  # the first run since the last record
            log["started"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        log["seq"] += 1
        log["cells"][cell] = {"seq": log["seq"], "error": error}
        for name in ("env", "target"):
            if isinstance(namespace.get(name), str):
                log[name] = namespace[name]


def summary_shown(title: str, figures: dict[str, Any]) -> None:
    """show_summary ran in this kernel: the figures as the kernel computed them."""
    notebook = session_notebook()
    if notebook is not None:
        with run_log(notebook) as log:
            log["shown"] = {"seq": log["seq"] + 1, "title": title,
                            "figures": json.loads(json.dumps(figures, default=str))}


def mutation_ran(operation: str) -> None:
    """trail's after-mutation hook: remember the outcome entry the mutation just appended."""
    notebook = session_notebook()
    if notebook is None:
        return
    root = trail.records_root()
    mine = trail.relative_record(str(notebook), root)
    entry = next((e for e in reversed(trail.read(root)) if e.get("operation") == operation
                  and e.get("result") != "started" and e.get("record") == mine), None)
    if entry is not None:
        with run_log(notebook) as log:
            log["mutations"].append({"seq": log["seq"] + 1, "operation": operation,
                                     "hash": entry["hash"], "entry": entry["seq"]})


# ------------------------------------------------------------------------- server side

def trail_entry(hash_: str, root: str) -> dict[str, Any] | None:
    return next((e for e in trail.read(root) if e.get("hash") == hash_), None)


def judge(log: dict[str, Any], nb: Any, root: str) -> dict[str, Any]:
    """Status, summary, error and the trail entries of what ran since the last record."""
    from .ops.runbook import _summary

    since = log["recorded"]
    errors = [c["error"] for c in sorted(log["cells"].values(), key=lambda c: c["seq"])
              if c.get("error")]
    saved_errors = [f"{o.get('ename')}: {o.get('evalue')}" for c in nb.cells
                    for o in c.get("outputs", []) if o.get("output_type") == "error"]
    entries = [trail_entry(m["hash"], root) for m in log["mutations"] if m["seq"] > since]
    missing = [m["hash"][:12] for m in log["mutations"]
               if m["seq"] > since and trail_entry(m["hash"], root) is None]
    entries = [e for e in entries if e is not None]
    if entries:
        summary = dict(entries[-1].get("summary") or {})
    elif log.get("shown"):
        summary = dict(log["shown"]["figures"])
    else:
        summary = _summary(nb)
    problems = [*errors, *(e for e in saved_errors if e not in errors),
                *(f"{e['operation']} {e['result']}" + (f" ({e['error']})" if e.get("error")
                                                       else "")
                  for e in entries if e.get("result") != "succeeded"),
                *(f"trail entry {h} not found" for h in missing)]
    failed_count = summary.get("failed")
    if isinstance(failed_count, (int, float)) and failed_count > 0 and not problems:
        problems.append(f"failed={failed_count}")
    return {"status": "failed" if problems else "succeeded", "summary": summary,
            "error": "; ".join(problems)[:MAX_ERROR_CHARS] if problems else None,
            "trail": [e["hash"] for e in entries]}


def draft(path: Path, why: str) -> None:
    """Say so in JupyterLab's log: the save stays in the session folder only."""
    print(f"tap lab: {path.name} saved as a draft, not a record: {why}", file=sys.stderr,
          flush=True)


def record_save(path: Path, info: dict[str, Any]) -> str | None:
    """A saved session notebook as a record when it ran in this session against the session's
    stack since its last record; None (a draft) otherwise."""
    import nbformat

    from .ops import audit
    from .ops.runbook import reserve_record, store_record

    with run_log(path) as log:
        if log.pop("damaged", False):
            draft(path, f"its run log {runs_file(path)} was unreadable, so what ran before "
                  "is unknown; run the notebook again and save")
            return None
        if log["seq"] == 0:
            draft(path, "none of its cells ran in this session")
            return None
        if log["seq"] <= log["recorded"]:
            draft(path, "nothing ran since its last record")
            return None
        ran_with = {k: log.get(k) for k in ("env", "target") if log.get(k) is not None}
        wrong = {k: v for k, v in ran_with.items() if info.get(k) and v != info.get(k)}
        if wrong:
            draft(path, "it ran with " + ", ".join(f"{k}={v}" for k, v in wrong.items())
                  + f", not this session's stack {info.get('stack')}")
            return None
        nb = nbformat.read(path, as_version=4)
        root = audit.records_root()
        verdict = judge(log, nb, root)
        env = str(info.get("env") or "unknown")
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        started = str(log.get("started") or now)
        duration = (datetime.fromisoformat(now) - datetime.fromisoformat(started)).total_seconds()
        commit, dirty = trail.git_state()
        nb.metadata.pop("papermill", None)
        nb.metadata["tap"] = {
            "notebook": f"lab-{path.stem}", "env": env, "stack": info.get("stack", ""),
            "target": info.get("target", ""), "operator": trail.current_operator(),
            "commit": commit, "dirty": dirty, "tap_version": __version__, "parameters": {},
            "start": started, "end": now, "duration_s": max(duration, 0.0),
            "status": verdict["status"], "summary": verdict["summary"],
            "error": verdict["error"], "session": str(path), "reason": "ran in session",
            "runs": [log["recorded"] + 1, log["seq"]], "trail": verdict["trail"]}
        record = reserve_record(root, env, f"lab-{path.stem}", now)
        store_record(nb, root, record)
        log["recorded"] = log["seq"]
    return record
