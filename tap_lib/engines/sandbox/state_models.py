"""Where a stack's files live and what shape they have: pydantic models for the state file,
its resource records and history lines, and the lock's holder note.

Validation is strict (a JSON string is not a number, a boolean is not an integer) and every
failure becomes a `StateCorrupt` naming the file and the field (`resources[0].type`), so a
damaged file never turns into a KeyError or TypeError later. Keys a model does not know are
ignored: a field a later tap added within the same version.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, StrictInt, ValidationError

from ...errors import StateCorrupt
from ...project import tap_home

STATE_VERSION = 1       # bump when the file's shape changes; a newer file is refused on load
RECORD_STATUSES = ("created", "pending-create", "pending-delete")


def stack_dir(stack: str) -> Path:
    return tap_home() / "sandbox" / "stacks" / stack


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class ResourceRecordModel(_Strict):
    urn: str
    type: str
    name: str
    id: str | None
    inputs: dict
    outputs: dict
    dependencies: list
    parent: str = ""
    status: Literal["created", "pending-create", "pending-delete"] = "created"
    replacement_trigger: Any = None


class StateFileModel(_Strict):
    """state.json; `version` is checked first, by `check_version`, for its own messages."""

    stack: str
    region: str = ""
    boot_id: str | None = None
    resources: list = []
    outputs: dict = {}
    origin: str = ""
    protected: bool = False


class HistoryLineModel(_Strict):
    """One line of history.jsonl (the fields of engines.base.HistoryEntry)."""

    time: str
    operation: str
    result: str
    duration_s: float
    create: int = 0
    update: int = 0
    replace: int = 0
    delete: int = 0
    same: int = 0


class LockInfoModel(BaseModel):
    """lock.json: only names the holder for messages, so it is read leniently."""

    model_config = ConfigDict(extra="ignore")
    pid: StrictInt
    operation: Any = "?"
    since: Any = "?"


_EXPECTED = {"string_type": "a string", "int_type": "an integer", "float_type": "a number",
             "bool_type": "a boolean", "dict_type": "an object", "list_type": "a list",
             "model_type": "an object"}


def short(value: Any) -> str:
    """A value from a damaged file, quoted and cut short: messages stay small."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def validated(model: type[_Strict], raw: Any, bad: Callable[[str], StateCorrupt],
              prefix: str = "") -> Any:
    """The model of a parsed JSON value, or the StateCorrupt `bad` makes of its first error."""
    if not isinstance(raw, dict):
        where = f"{prefix[:-1]} must be an object, got" if prefix else "holds"
        raise bad(f"{where} a JSON {json_type(raw)}" + ("" if prefix else ", not an object"))
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise bad(describe(exc.errors()[0], prefix)) from None


def describe(error: dict, prefix: str = "") -> str:
    """One pydantic error as tap says it: field path, what it must be, what it is."""
    path = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}"
                            for p in error["loc"]).lstrip(".")
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        return f"field '{path}' is missing"
    if kind == "literal_error":
        allowed = ", ".join(error.get("ctx", {}).get("expected", "").replace("'", "").split(" or "))
        return f"field '{path}' is {short(value)}; allowed: {allowed}"
    if kind in _EXPECTED:
        return f"field '{path}' must be {_EXPECTED[kind]}, got a JSON {json_type(value)}"
    return f"field '{path}' {error['msg'].lower()}, got {short(value)}"


def check_version(data: dict, file: Path | str, bad: Callable[[str], StateCorrupt]) -> int:
    """The state version: a positive integer this tap can read; a newer one is refused."""
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad(f"field 'version' must be a positive integer, got {short(version)}")
    if version > STATE_VERSION:
        raise StateCorrupt(
            file, f"was written by a newer tap (state version {version}; this tap reads "
                  f"version {STATE_VERSION} and older)",
            hint="upgrade tap to operate this stack; leave the file as it is")
    return version
