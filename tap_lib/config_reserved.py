"""Stack names that protected environment files reserve.

A params file with `protected: true` owns its stack name: no other file, suffix or override may
produce it, or `ENVIRONMENT_SUFFIX=prod tap deploy --env dev` would create (or change) an
unprotected TapStackprod. Names are compared as naming.py sees them: physical names lowercase
the suffix, so TapStackProd would own prod's resources and is prod's too.

Every params/*.yaml file (not the fleet file) is read, but only again once its size, mtime or
inode changes. A file that cannot be read stops every load: it might be the protected one
(appending a duplicate `protected: false` to prod.yaml must not free prod's name).
"""
from __future__ import annotations

import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import project
from .errors import ConfigError
from .naming import suffix_key


@dataclass(frozen=True)
class Claim:
    """A protected file's stack name: `suffix` as the file writes it, `key` as names see it."""

    file: Path
    identity: tuple[int, int]       # (st_dev, st_ino): a symlink or hard link is the same file
    suffix: str
    key: str


@dataclass(frozen=True)
class _Scanned:
    signature: tuple[int, int, int, int]
    claim: Claim | None
    error: ConfigError | None


_cache: dict[Path, _Scanned] = {}
_lock = threading.Lock()
# A file changed this recently may change again within the file system's timestamp
# granularity without its signature changing (git's "racy clean"): it is read every time.
RACY_NS = 2_000_000_000
MAX_CACHED = 256            # files remembered; more (many directories) starts afresh


def claims(directory: Path) -> list[Claim]:
    """Every protected file's claim in `directory`. Raises the ConfigError of the first file
    that cannot be read (whether it is protected cannot be known)."""
    found = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == project.FLEET_FILE:
            continue
        try:
            st = path.stat()
        except OSError:  # removed while listing, or a dangling link: no environment
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        signature = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
        with _lock:
            scanned = _cache.get(path)
        if scanned is None or scanned.signature != signature:
            scanned = _scan(path, signature)
            if time.time_ns() - st.st_mtime_ns > RACY_NS:
                with _lock:
                    if len(_cache) >= MAX_CACHED:
                        _cache.clear()
                    _cache[path] = scanned
        if scanned.error is not None:
            raise scanned.error
        if scanned.claim is not None:
            found.append(scanned.claim)
    return found


def _scan(path: Path, signature: tuple[int, int, int, int]) -> _Scanned:
    from .config_yaml import read_settings_file

    try:
        data = read_settings_file(path)
    except ConfigError as exc:
        return _Scanned(signature, None, exc)
    protected, suffix = data.get("protected"), data.get("suffix")
    # Fail closed: anything but an explicit false (or none) reserves, and so does a suffix the
    # file itself could not load with (`suffix: 123`, ' prod').
    if protected in (None, False) or isinstance(suffix, bool) or \
            not isinstance(suffix, (str, int)) or not str(suffix).strip():
        return _Scanned(signature, None, None)
    text = str(suffix).strip()
    return _Scanned(signature, Claim(path, (signature[3], signature[2]), text,
                                     suffix_key(text)), None)


def check(suffix: str, path: Path, source: str, *, origin: str, directory: Path) -> None:
    """Raise ConfigError when the stack `suffix` names is reserved by a protected file other
    than `path` (the file being loaded, shown as `source`), or by `path` itself under another
    spelling. `origin` says what produced the suffix: "file", "environment" or "override"."""
    try:
        claimed = claims(directory)
    except ConfigError as exc:
        raise ConfigError(f"cannot tell which stack names protected files reserve: {exc}",
                          file=source, hint=f"fix {exc.file} or move it out of "
                          f"{_shown_path(directory)}/: every environment file there is read "
                          "to know which stack names are protected") from None
    own, key = _identity(path), suffix_key(suffix)
    for claim in claimed:
        if claim.key != key or (claim.identity == own and claim.suffix == suffix):
            continue
        stack, reserved = project.stack_name(suffix), project.stack_name(claim.suffix)
        owner = _shown_path(claim.file)
        same = "" if reserved == stack else (
            f"; {stack} differs only in case, and physical AWS names are lowercased, so it "
            f"would own {reserved}'s resources")
        allowed = _allowed(claimed)
        if claim.identity == own:
            message = f"{source} is protected and reserves {reserved}{same}"
            fix = f"use the file's own suffix {claim.suffix!r}"
            allowed = f"{claim.suffix} exactly, or {allowed}"
        else:
            message = (f"{reserved} is reserved by {owner} (protected: true); {source} may "
                       f"not produce it{same}")
            fix = (f"choose a suffix no protected file uses (e.g. pr1234); to operate "
                   f"{reserved} itself use --env {claim.file.stem}")
        if origin == "environment":
            where, hint = (f"environment variable ENVIRONMENT_SUFFIX (loading {source})",
                           f"unset ENVIRONMENT_SUFFIX, or {fix}")
        elif origin == "override":
            where, hint = f"{source} (--set suffix)", f"drop --set suffix, or {fix}"
        elif any(c.identity == own for c in claimed):
            where, hint = source, (f"two protected files cannot own one stack: change "
                                   f"'suffix' in {source} or in {owner}")
        else:
            where, hint = source, f"change 'suffix' in {source}: {fix}"
        raise ConfigError(message, file=where, field="suffix", value=suffix,
                          allowed=allowed, hint=hint)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _allowed(claimed: list[Claim]) -> str:
    taken = sorted({c.suffix for c in claimed})
    return f"a suffix other than {', '.join(taken)} in any case (protected files reserve them)"


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(project.project_dir()))
    except (ValueError, OSError):
        return str(path)


def clear_cache() -> None:
    """Forget what was read (tests; a long-lived process needs no call: a changed file is
    read again)."""
    with _lock:
        _cache.clear()
