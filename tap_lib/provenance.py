"""Who ran a mutation, for which record, at which commit: what every trail entry, plan and
record says of where it came from. `TAP_OPERATOR` is a display name only (identity is a
signature: tap_lib/signing), checked because terminals and records show it.
"""
from __future__ import annotations

import getpass
import os
import subprocess
from pathlib import Path

from .errors import ConfigError
from .project import project_dir

MAX_OPERATOR_CHARS = 128
# Set by `tap run` for its kernel: the record the run's mutations belong to.
RECORD_ENV = "TAP_RECORD"
# Set by jupyter_server in every kernel it starts for a notebook (sessionmanager.get_kernel_env).
SESSION_ENV = "JPY_SESSION_NAME"

def current_operator() -> str:
    """Who the trail says ran it: TAP_OPERATOR, else the login name. A display name only
    (identity is TAP_SIGNING_KEY), but shown on terminals and in records: checked."""
    given = os.environ.get("TAP_OPERATOR")
    if given:
        return check_operator(given, "TAP_OPERATOR")
    return check_operator(getpass.getuser(), "login name (LOGNAME, USER)")


def check_operator(name: str, source: str) -> str:
    """`name` if it is 1 to 128 printable characters (no line breaks, no escape codes that
    would rewrite a terminal showing the trail); ConfigError naming `source` otherwise."""
    if isinstance(name, str) and name.strip() and len(name) <= MAX_OPERATOR_CHARS \
            and name.isprintable():
        return name
    shown = name if not isinstance(name, str) or len(name) <= 60 else name[:60] + "…"
    raise ConfigError(f"an operator's name is 1 to {MAX_OPERATOR_CHARS} printable characters, "
                      "without line breaks or control codes", field=source, value=shown,
                      hint="TAP_OPERATOR is only a display name: who you are is your "
                           "TAP_SIGNING_KEY")


def current_record() -> str | None:
    """The record a mutation belongs to: the output notebook of `tap run`, or the session
    notebook JupyterLab runs (jupyter_server names it in the kernel's environment)."""
    record = os.environ.get(RECORD_ENV)
    if record:
        return record
    session = os.environ.get(SESSION_ENV, "")
    if session.endswith(".ipynb"):
        path = Path(session)
        if not path.is_absolute() and (Path.cwd() / path.name).is_file():
            path = Path.cwd() / path.name  # kernels run in the notebook's folder
        return str(path)
    return None


def git_state() -> tuple[str, bool | None]:
    """(commit, dirty) of the project in one `git status` call; ("unknown", None) without git.
    Dirty means `git status --porcelain` lists anything."""
    try:
        out = subprocess.run(["git", "status", "--porcelain=v2", "--branch"],
                             cwd=project_dir(), text=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    if out.returncode != 0:
        return "unknown", None
    commit, dirty = "unknown", False
    for line in out.stdout.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split()[-1]
            commit = oid if oid != "(initial)" else "unknown"
        elif not line.startswith("#"):
            dirty = True
    return commit, dirty
