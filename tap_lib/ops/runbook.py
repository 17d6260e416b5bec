"""Run the runbook's notebooks with papermill and keep each executed notebook as an audit record.

A record is ``<root>/<env>/<UTC time>-<notebook>.ipynb`` (root: see tap_lib/records), never
overwritten: its name is taken when the run starts (the kernel gets it as TAP_RECORD, so the
trail entries of the run's deploys name it), its content written once after the run - also
when the run failed - and chained into the audit trail (trail.py). Its ``metadata.tap`` says
who ran what against which stack, at which commit, with which parameters, and how it ended.

Parameters are data, never code: papermill writes each name into the injected cell verbatim,
so a run accepts only the names a notebook's ``parameters`` cell declares, each value converted
to the type of its declared default (``-p limit 5`` is the int 5, ``-p operator 123`` the text
'123'), and a file parameter (the audit notebook's ``export``) only inside the records root. All
of it is checked before any kernel starts.

Secrets never enter a record: a parameter whose name looks secret (password, secret, token,
passphrase, key) reaches papermill - and so the injected-parameters cell and papermill's metadata -
as ``"***"``. tap's notebooks take no secrets; credentials live in Secrets Manager.

Kernels are always this interpreter's ipykernel, whatever kernelspecs are installed, so a venv
never runs its notebooks on some other Python.
"""
from __future__ import annotations

import ast
import contextlib
import functools
import itertools
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .. import trail
from ..version import __version__
from ..redaction import MASK, label, scrub_parameters, shorten, shown  # noqa: F401
from ..engines.registry import check_target
from ..errors import ConfigError, RecordsUnwritable, UsageError
from ..project import notebook_names, notebooks_dir
from ..project import RUNBOOK as ALL

FLEET = "fleet"
from ..records.locked import put_locked, retention_days
from ..records.store import write_new
from . import audit
from .stack import settings_for

if TYPE_CHECKING:
    from nbformat import NotebookNode

SUMMARY_MIME = "application/vnd.tap.summary+json"
# Parameters run_notebooks sets from its own arguments: -p may only repeat the same value.
FROM_OPTIONS = {"env": "--env", "target": "--target"}
# Parameters that name an audit record: confined to the records root (ops/audit.py).
FILE_PARAMETERS = frozenset({"export"})
MAX_PARAMETER_CHARS = 1024


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
    if names[0] not in notebook_names():
        raise UsageError(f"unknown notebook {name_or_all!r}; "
                         f"allowed: {', '.join(notebook_names())}, all")
    for name in names:
        if not (notebooks_dir() / f"{name}.ipynb").is_file():
            raise ConfigError("notebook not found", file=str(notebooks_dir() / f"{name}.ipynb"))
    settings = settings_for(env)  # bad env: ConfigError before any kernel starts
    target = check_target(target)
    per_notebook = check_parameters(names, parameters or {}, env=env, target=target)
    given = (parameters or {}).get("operator")
    operator = trail.check_operator(str(given), "-p operator") if given else \
        trail.current_operator()
    root = audit.records_root()
    check_records_root(root)
    records: list[RunRecord] = []
    for name in names:
        if progress:
            progress(name, None)
        params = {**per_notebook[name], "env": env, "target": target, "operator": operator}
        if name == FLEET and "envs" not in per_notebook[name]:
            params["envs"] = [env]      # the fleet notebook takes a list; --env names one
        record = _run_one(name, settings.stack_name, params, root)
        records.append(record)
        if progress:
            progress(name, record)
        if record.status != "succeeded":
            break
    return records


def declared_parameters(name: str) -> dict[str, Any]:
    """The parameters a notebook's `parameters` cell declares (papermill reads the cell, no
    kernel), each with its default value, or None when the default is not a plain literal."""
    import papermill

    path = notebooks_dir() / f"{name}.ipynb"
    try:
        found = papermill.inspect_notebook(str(path))
    except Exception as exc:  # noqa: BLE001 - unreadable notebook JSON, nbformat errors...
        raise ConfigError(f"cannot read the notebook's parameters: {type(exc).__name__}",
                          file=str(path)) from None
    declared = {}
    for param, info in found.items():
        try:
            declared[param] = ast.literal_eval(info.get("default") or "None")
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            declared[param] = None
    return declared


def check_parameters(names: tuple[str, ...], parameters: dict[str, Any], *, env: str,
                     target: str) -> dict[str, dict[str, Any]]:
    """Each notebook's parameters, typed as it declares them. A run of several notebooks (`all`)
    gives each one only the parameters it declares. ConfigError for a name no notebook of the
    run declares, a value not of the declared type, or a file outside the records root."""
    declared = {name: declared_parameters(name) for name in names}
    for key in parameters:
        if not any(isinstance(key, str) and key in declared[name] for name in names):
            path = notebooks_dir() / f"{names[0]}.ipynb"
            allowed = dict.fromkeys(k for name in names for k in declared[name])
            raise ConfigError("the notebook declares no such parameter"
                              if len(names) == 1 else
                              f"none of the notebooks {', '.join(names)} declares this parameter",
                              file=str(path) if len(names) == 1 else str(notebooks_dir()),
                              field=f"-p {label(key, 80)}", allowed=", ".join(allowed) or "none")
    return {name: _typed_for(notebooks_dir() / f"{name}.ipynb", declared[name], parameters,
                             env=env, target=target) for name in names}


def _typed_for(path: Path, declared: dict[str, Any], parameters: dict[str, Any], *, env: str,
               target: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in parameters.items():
        if key not in declared:
            continue  # another notebook of the run declares it
        typed = _coerce(value, declared[key], key, path)
        if key in FROM_OPTIONS:
            if typed != {"env": env, "target": target}[key]:
                raise ConfigError(f"set with {FROM_OPTIONS[key]}, not -p", file=str(path),
                                  field=f"-p {key}", value=shown(typed, key))
            continue
        if key in FILE_PARAMETERS and typed:
            try:
                audit.confine_record(typed)
            except UsageError as exc:
                raise ConfigError(exc.message, file=str(path), field=f"-p {key}") from None
        params[key] = typed
    return params


# Called with (title, figures) by show_summary: a `tap lab` kernel logs them (tap_lib/lab.py).
SUMMARY_SHOWN: list[Callable[[str, dict[str, Any]], None]] = []


def show_summary(title: str, figures: dict[str, Any]) -> None:
    """A notebook's closing cell: show the figures, and tag them so the record keeps them."""
    from IPython.display import display

    text = f"{title}: " + (", ".join(f"{k}={v}" for k, v in figures.items()) or "nothing")
    display({"text/plain": text, SUMMARY_MIME: figures}, raw=True)
    for hook in list(SUMMARY_SHOWN):
        try:
            hook(title, figures)
        except Exception as exc:  # noqa: BLE001 - the figures are shown; the log is extra
            print(f"tap: {getattr(hook, '__qualname__', hook)} failed: {type(exc).__name__}",
                  file=sys.stderr)


# Status words and their colours in notebooks (text colour, background): green for good,
# red for bad, amber for what needs a look.
STATUS_COLOURS = {
    **dict.fromkeys(("pass", "passed", "succeeded", "ok", "saved", "same"),
                    ("#0b5d1e", "#d9f2df")),
    **dict.fromkeys(("fail", "failed", "error", "refused", "delete", "replace"),
                    ("#8a1111", "#f9dada")),
    **dict.fromkeys(("warn", "warning", "skipped", "skip", "drift", "update", "info"),
                    ("#7a4b00", "#fdf0d0")),
}


class StyledTable:
    """A table coloured by its status column in HTML (pandas Styler), and plain text anywhere
    else: text views and nbval compare the plain table, which has no object address in it."""

    def __init__(self, frame: Any, styler: Any):
        self.frame, self.styler = frame, styler

    def _repr_html_(self) -> str:
        return self.styler.to_html()

    def __repr__(self) -> str:
        return self.frame.to_string() if len(self.frame) else "(no rows)"


def styled(frame: Any, column: str = "status", name: str = "table") -> StyledTable:
    """`frame` with each cell of `column` coloured by its word (STATUS_COLOURS); a fixed
    `name` keeps the HTML ids the same on every run."""
    def colour(value: Any) -> str:
        fg_bg = STATUS_COLOURS.get(str(value).strip().lower())
        return f"color: {fg_bg[0]}; background-color: {fg_bg[1]}; font-weight: bold" \
            if fg_bg else ""

    styler = frame.style.set_uuid(name)
    if column in frame.columns:
        styler = styler.map(colour, subset=[column])
    return StyledTable(frame, styler)


def table_or_words(frame: Any, words: str) -> Any:
    """The table, or - when it has no rows - a sentence instead of an empty header."""
    if len(frame):
        return frame
    from IPython.display import Markdown

    return Markdown(f"_{words}_")


# -------------------------------------------------------------------------------- internals

def _run_one(name: str, stack: str, params: dict[str, Any], root: str) -> RunRecord:
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = notebooks_dir() / f"{name}.ipynb"
    safe = scrub_parameters(params)
    started, t0 = utc_now(), time.monotonic()
    error: str | None = None
    # The record's name is taken before the kernel starts, so the trail entries of the run's
    # mutations (engines/base -> trail) can name it: the kernel reads it from TAP_RECORD.
    path = reserve_record(root, params["env"], name, started)
    with tempfile.TemporaryDirectory(prefix="tap-run-") as tmp, _environ(
            {trail.RECORD_ENV: path, "TAP_OPERATOR": params["operator"]}):
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
    return keep_record(nb, name=name, env=params["env"], stack=stack, params=safe, root=root,
                       path=path, started=started, duration_s=time.monotonic() - t0,
                       error=error)


def keep_record(nb: NotebookNode, *, name: str, env: str, stack: str, params: dict[str, Any],
                root: str, path: str, started: str, duration_s: float, error: str | None,
                extra: dict[str, Any] | None = None) -> RunRecord:
    """An executed notebook becomes a record at its reserved `path`: ``metadata.tap`` (who, what,
    which commit, how it ended), then stored and chained (store_record). The one way a run's
    record is written, whoever ran the kernel (`tap run`, Airflow: tap_lib/airflow/records.py);
    `extra`: more metadata from that runner (Airflow's DAG run and task)."""
    commit, dirty = trail.git_state()
    meta = {"notebook": name, "env": env, "stack": stack, "target": params.get("target"),
            "operator": params["operator"], "commit": commit, "dirty": dirty,
            "tap_version": __version__, "parameters": scrub_parameters(params),
            "start": started, "end": utc_now(), "duration_s": round(duration_s, 3),
            "status": "failed" if error else "succeeded", "summary": _summary(nb),
            "error": error}
    meta.update((k, v) for k, v in (extra or {}).items() if k not in meta)  # adds, never replaces
    nb.metadata["tap"] = meta
    store_record(nb, root, path)
    return RunRecord(name, meta["env"], stack, meta["target"], meta["operator"], meta["status"],
                     path, meta["start"], meta["end"], meta["duration_s"], meta["summary"],
                     error)


def store_record(nb: NotebookNode, root: str, path: str) -> dict[str, Any]:
    """Write a record at its reserved `path`, chained: holding the trail's lock, the record
    embeds the chain head it follows (``metadata.tap.chain_prev``), then its entry holds the
    SHA-256 of its content; an S3 record is written under Object Lock (compliance mode,
    TAP_RECORDS_RETENTION_DAYS). Returns the record's trail entry."""
    import nbformat

    meta = nb.metadata["tap"]
    nb.metadata.setdefault("papermill", {})["output_path"] = path
    with trail.locked(root):
        meta["chain_prev"] = trail.head(root).hash
        content = nbformat.writes(nb).encode("utf-8")
        sha = trail.sha256_bytes(content)
        row = audit.index_row(meta, trail.relative_record(path, root), sha)
        extra: dict[str, Any] = {"index_sha256": audit.row_digest(row)}
        if audit.is_remote(path):
            extra["retain_until"] = put_locked(path, content)
        else:
            with trail.writing(path, "the run's record is not kept"), open(path, "r+b") as fh:
                if fh.read(1):  # our own reservation: still empty
                    raise RecordsUnwritable(path, "its reserved file was written by another "
                                                  "process", outcome="the run's record is not kept")
                fh.write(content)
        entry = trail.append(
            "record", stack=meta.get("stack", ""), target=meta.get("target"),
            result="succeeded" if meta.get("status") == "succeeded" else "failed",
            record=path, record_sha256=sha, operator=meta.get("operator"), root=root,
            extra={"notebook": meta.get("notebook"), "env": meta.get("env"),
                   "status": meta.get("status"), **extra})
    audit.add_to_index({**row, "entry": entry["hash"]}, root)
    return entry


def check_records_root(root: str) -> None:
    """Checked before a kernel starts, so no run ends with a record that cannot be stored: a
    local root must be a folder tap can create (RecordsUnwritable), an s3:// root a bucket
    with Object Lock enabled (stored immutably)."""
    if not audit.is_remote(root):
        with trail.writing(root):
            Path(root).mkdir(parents=True, exist_ok=True)
        return
    from botocore.exceptions import BotoCoreError, ClientError

    retention_days()
    bucket = root.removeprefix("s3://").split("/", 1)[0]
    try:
        conf = _s3().get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        enabled = conf.get("ObjectLockEnabled") == "Enabled"
    except ClientError:
        enabled = False
    except BotoCoreError as exc:
        raise ConfigError(f"cannot reach the records bucket: {type(exc).__name__}",
                          field="TAP_OUTPUTS", value=root) from None
    if not enabled:
        raise ConfigError(f"bucket {bucket} has no S3 Object Lock: records there could be "
                          "edited or deleted", field="TAP_OUTPUTS", value=root,
                          hint="create the records bucket with Object Lock enabled "
                               "(create-bucket --object-lock-enabled-for-bucket)")


def _s3():
    import boto3

    return boto3.client("s3")


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    """Variables the kernel inherits for one run (restored after)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


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


def reserve_record(root: str, env: str, name: str, started: str) -> str:
    """Take a record name no earlier record has (suffix -2, -3... on a clash): locally an empty
    file created exclusively, on S3 the first free key (the write itself is locked)."""
    stem = datetime.fromisoformat(started).strftime("%Y%m%dT%H%M%SZ") + f"-{name}"
    names = (f"{stem}{'' if n == 1 else f'-{n}'}.ipynb" for n in itertools.count(1))
    if audit.is_remote(root):
        from papermill.s3 import S3

        folder = f"{root}/{env}"
        taken = set(S3().list(f"{folder}/{stem}"))
        return next(p for p in (f"{folder}/{n}" for n in names) if p not in taken)
    return str(write_new(Path(root) / env, stem, ".ipynb", b""))


def _coerce(value: Any, default: Any, key: str, path: Path) -> Any:
    """`value` as the type of the declared default. Command-line values arrive as text: '5'
    becomes 5 for an int parameter, 'true'/'false' a bool for a bool one; a text parameter
    takes text only, one line of printable characters."""
    kind = type(default)
    if kind is type(None):
        kind = str  # `x = None`: text, or nothing

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"{why} (the notebook's default: {shorten(repr(default), 60)})",
                           file=str(path), field=f"-p {key}", value=shown(value, key))

    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        typed = value
    elif not isinstance(value, str):
        raise refuse(f"expected a {kind.__name__}")
    elif kind is bool:
        typed = {"true": True, "false": False}.get(value.strip().lower())
        if typed is None:
            raise refuse("expected true or false")
    elif kind is int:
        if not re.fullmatch(r"[+-]?[0-9]{1,18}", value.strip()):
            raise refuse("expected a whole number")
        typed = int(value)
    elif kind is float:
        if not re.fullmatch(r"[+-]?[0-9]{1,18}(\.[0-9]{1,18})?", value.strip()):
            raise refuse("expected a number")
        typed = float(value)
    else:
        raise refuse(f"a {kind.__name__} parameter cannot be set from text")
    if isinstance(typed, float) and not math.isfinite(typed):
        raise refuse("expected a finite number")
    if isinstance(typed, str):
        if len(typed) > MAX_PARAMETER_CHARS:
            raise refuse(f"longer than {MAX_PARAMETER_CHARS} characters")
        if not typed.isprintable():
            raise refuse("contains control characters or line breaks")
    return typed


def _summary(nb: NotebookNode) -> dict[str, Any]:
    """The figures of the last show_summary() output, or {} when the run never got there."""
    for cell in reversed(nb.cells):
        for output in reversed(cell.get("outputs", [])):
            figures = output.get("data", {}).get(SUMMARY_MIME)
            if isinstance(figures, dict):
                return dict(figures)
    return {}


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
