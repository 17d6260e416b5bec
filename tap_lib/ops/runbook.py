"""Run the runbook's notebooks with papermill and keep each executed notebook as an audit record.

A record is ``<root>/<env>/<UTC time>-<notebook>.ipynb`` (root: see ops/audit.py), never
overwritten, written once after the run - also when the run failed. Its ``metadata.tap`` says
who ran what against which stack, with which parameters, and how it ended.

Secrets never enter a record: a parameter whose name looks secret (password, secret, token,
passphrase, key) reaches papermill - and so the injected-parameters cell and papermill's metadata -
as ``"***"``. tap's notebooks take no secrets; credentials live in Secrets Manager.

Kernels are always this interpreter's ipykernel, whatever kernelspecs are installed, so a venv
never runs its notebooks on some other Python.
"""
from __future__ import annotations

import functools
import getpass
import itertools
import re
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .. import __version__
from ..engines.registry import check_target
from ..errors import ConfigError, UsageError
from ..project import notebooks_dir, project_dir
from . import audit
from .stack import settings_for

if TYPE_CHECKING:
    from nbformat import NotebookNode

NOTEBOOKS = ("preflight", "preview", "deploy", "verify", "inspect", "destroy", "audit")
ALL = ("preflight", "preview", "deploy", "verify", "inspect")
SUMMARY_MIME = "application/vnd.tap.summary+json"
SECRET_NAME = re.compile(r"password|secret|token|passphrase|key", re.IGNORECASE)
MASK = "***"


@dataclass
class RunRecord:
    """How one notebook run ended and where its executed notebook is."""

    notebook: str
    env: str
    stack: str
    target: str
    operator: str
    status: str                 # "succeeded" | "failed"
    path: str
    start: str
    end: str
    duration_s: float
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_notebooks(name_or_all: str, env: str, target: str | None = None,
                  parameters: dict[str, Any] | None = None,
                  progress: Callable[[str, RunRecord | None], None] | None = None
                  ) -> list[RunRecord]:
    """Run one notebook, or `all` in runbook order stopping at the first failure.

    Records go to the root TAP_OUTPUTS names (the kernels see the same root)."""
    names = ALL if name_or_all == "all" else (name_or_all,)
    if names[0] not in NOTEBOOKS:
        raise UsageError(f"unknown notebook {name_or_all!r}; "
                         f"allowed: {', '.join(NOTEBOOKS)}, all")
    for name in names:
        if not (notebooks_dir() / f"{name}.ipynb").is_file():
            raise ConfigError("notebook not found", file=str(notebooks_dir() / f"{name}.ipynb"))
    settings = settings_for(env)  # bad env: ConfigError before any kernel starts
    target = check_target(target)
    params = {key: _typed(value) for key, value in (parameters or {}).items()}
    params.update(env=env, target=target,
                  operator=str(params.get("operator") or getpass.getuser()))
    root = audit.records_root()
    records: list[RunRecord] = []
    for name in names:
        if progress:
            progress(name, None)
        record = _run_one(name, settings.stack_name, params, root)
        records.append(record)
        if progress:
            progress(name, record)
        if record.status != "succeeded":
            break
    return records


def scrub_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """Mask the value of every parameter whose name looks like it holds a secret."""
    return {k: (MASK if SECRET_NAME.search(k) else v) for k, v in parameters.items()}


def show_summary(title: str, figures: dict[str, Any]) -> None:
    """A notebook's closing cell: show the figures, and tag them so the record keeps them."""
    from IPython.display import display

    text = f"{title}: " + (", ".join(f"{k}={v}" for k, v in figures.items()) or "nothing")
    display({"text/plain": text, SUMMARY_MIME: figures}, raw=True)


# -------------------------------------------------------------------------------- internals

def _run_one(name: str, stack: str, params: dict[str, Any], root: str) -> RunRecord:
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = notebooks_dir() / f"{name}.ipynb"
    safe = scrub_parameters(params)
    started, t0 = _utc(), time.monotonic()
    error: str | None = None
    with tempfile.TemporaryDirectory(prefix="tap-run-") as tmp:
        scratch = Path(tmp) / f"{name}.ipynb"
        try:
            papermill.execute_notebook(
                str(source), str(scratch), parameters=safe, kernel_name="python3",
                kernel_manager_class=_this_interpreter_kernel_manager(),
                progress_bar=False, log_output=False, cwd=str(notebooks_dir()))
        except PapermillExecutionError as exc:
            error = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        except Exception as exc:  # noqa: BLE001 - kernel died, timeout...: still a record
            error = f"{type(exc).__name__}: {exc}"
        nb = nbformat.read(scratch if scratch.exists() else source, as_version=4)
    meta = {"notebook": name, "env": params["env"], "stack": stack, "target": params["target"],
            "operator": params["operator"], "commit": _git_commit(), "tap_version": __version__,
            "parameters": safe, "start": started, "end": _utc(),
            "duration_s": round(time.monotonic() - t0, 3),
            "status": "failed" if error else "succeeded", "summary": _summary(nb),
            "error": error}
    nb.metadata["tap"] = meta
    path = _store(nb, root, params["env"], name, started)
    audit.add_to_index(audit.index_row(meta, path), root)
    return RunRecord(name, meta["env"], stack, meta["target"], meta["operator"], meta["status"],
                     path, meta["start"], meta["end"], meta["duration_s"], meta["summary"],
                     error)


@functools.cache
def _this_interpreter_kernel_manager() -> type:
    """A kernel manager whose every kernel is ``sys.executable -m ipykernel_launcher``, talking
    over CurveZMQ-encrypted sockets where libzmq supports it (outputs can be sensitive)."""
    import zmq
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ThisInterpreterSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str):
            return self.kernel_spec_class(resource_dir=RESOURCES, **get_kernel_dict())

    class ThisInterpreterKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _default_specs(self) -> KernelSpecManager:
            return ThisInterpreterSpecs(data_dir=self.data_dir)

        @default("transport_encryption")
        def _default_encryption(self) -> str:
            return "auto" if zmq.has("curve") else "disabled"

    return ThisInterpreterKernelManager


def _store(nb: NotebookNode, root: str, env: str, name: str, started: str) -> str:
    """Write the record under a name no earlier record has (suffix -2, -3... on a clash)."""
    import nbformat

    stem = datetime.fromisoformat(started).strftime("%Y%m%dT%H%M%SZ") + f"-{name}"
    names = (f"{stem}{'' if n == 1 else f'-{n}'}.ipynb" for n in itertools.count(1))
    if audit.is_remote(root):
        from papermill.iorw import write_ipynb
        from papermill.s3 import S3

        folder = f"{root}/{env}"
        taken = set(S3().list(f"{folder}/{stem}"))
        path = next(p for p in (f"{folder}/{n}" for n in names) if p not in taken)
        nb.metadata.setdefault("papermill", {})["output_path"] = path
        write_ipynb(nb, path)
        return path
    folder = Path(root) / env
    folder.mkdir(parents=True, exist_ok=True)
    for file_name in names:
        path = folder / file_name
        nb.metadata.setdefault("papermill", {})["output_path"] = str(path)
        try:
            with open(path, "x", encoding="utf-8") as fh:  # "x": never overwrite
                nbformat.write(nb, fh)
            return str(path)
        except FileExistsError:
            continue
    raise AssertionError("unreachable: the names are endless")


def _typed(value: Any) -> Any:
    """Command-line values arrive as strings: integers and true/false become typed, like
    papermill's own -p; anything else (decimals such as '15.10' included) stays a string."""
    if not isinstance(value, str):
        return value
    if re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    return {"true": True, "false": False}.get(value.lower(), value)


def _summary(nb: NotebookNode) -> dict[str, Any]:
    """The figures of the last show_summary() output, or {} when the run never got there."""
    for cell in reversed(nb.cells):
        for output in reversed(cell.get("outputs", [])):
            figures = output.get("data", {}).get(SUMMARY_MIME)
            if isinstance(figures, dict):
                return dict(figures)
    return {}


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_dir(), text=True,
                             capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"



def _utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
