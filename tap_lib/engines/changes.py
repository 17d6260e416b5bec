"""Old and new values of a step's changed properties, so a reviewer approves values, not names
(`memorySize: 256 → 384`), and a reviewed plan binds them: applying it stops at a property whose
value is no longer the one reviewed. Pure functions over normalized inputs (engines/sandbox/state
.normalize): secrets are digests there and show as ``[secret]``; code archives by digest.
"""
from __future__ import annotations

import json
from typing import Any

from pulumi.runtime import rpc

SECRET = "[secret]"
UNKNOWN = "(known after deploy)"
MISSING = "(none)"


def shown(value: Any) -> Any:
    """A value as a plan may hold and print it (never a secret, never a placeholder id)."""
    if _has(value, lambda v: isinstance(v, dict) and set(v) == {"secret"}):
        return SECRET
    if _has(value, lambda v: v == rpc.UNKNOWN):
        return UNKNOWN
    if isinstance(value, dict) and set(value) in ({"archive"}, {"file"}):
        return f"code {next(iter(value.values()))[:19]}"
    return value


def _has(value: Any, test) -> bool:
    if test(value):
        return True
    if isinstance(value, dict):
        return any(_has(v, test) for v in value.values())
    if isinstance(value, list):
        return any(_has(v, test) for v in value)
    return False


def property_changes(old: dict, new: dict, keys: list[str]) -> list[dict[str, Any]]:
    """[{"property", "old", "new"}] for each changed input in `keys`, descending into
    mappings so that one changed tag is one line, not the whole tag set."""
    out: list[dict[str, Any]] = []
    for key in keys:
        if key in old or key in new:
            _walk(key, old.get(key, MISSING), new.get(key, MISSING), out)
    return out


def _walk(path: str, old: Any, new: Any, out: list[dict[str, Any]]) -> None:
    if isinstance(old, dict) and isinstance(new, dict) and not (
            _leaf(old) or _leaf(new)):
        for key in sorted(set(old) | set(new)):
            if old.get(key, MISSING) != new.get(key, MISSING):
                _walk(f"{path}.{key}", old.get(key, MISSING), new.get(key, MISSING), out)
        return
    out.append({"property": path, "old": shown(old), "new": shown(new)})


def _leaf(value: dict) -> bool:
    """A secret or an archive: shown whole (as a marker), never descended into."""
    return set(value) in ({"secret"}, {"archive"}, {"file"})


def matches(planned: list[dict[str, Any]], now: list[dict[str, Any]]) -> bool:
    """Whether the values now are the ones reviewed; a value the plan did not know yet
    (known after deploy) matches whatever it became."""
    if len(planned) != len(now):
        return False
    for was, is_ in zip(sorted(planned, key=_key), sorted(now, key=_key)):
        if was["property"] != is_["property"] or was["old"] != is_["old"]:
            return False
        if was["new"] != UNKNOWN and was["new"] != is_["new"]:
            return False
    return True


def _key(change: dict[str, Any]) -> str:
    return change["property"]


def describe(change: dict[str, Any]) -> str:
    """`memorySize: 256 → 384`, values whole (a reviewer needs all of a policy)."""
    return f"{change['property']}: {_text(change['old'])} → {_text(change['new'])}"


def _text(value: Any) -> str:
    if isinstance(value, str) and (value in (SECRET, UNKNOWN, MISSING)
                                   or value.startswith("code sha256:")):
        return value
    return json.dumps(value, sort_keys=True, default=str)
