"""Comparing what a resource should be with what it is: one rule for inspect's drift table and
the sandbox's refresh. Only properties both sides know are compared (a live read returns fewer
properties than the program declares), except string maps named in EXACT_MAPS, where a key
added behind tap's back is drift too (a password copied into a function's variables)."""
from __future__ import annotations

import json
from typing import Any, Iterator

DIGEST_KEYS = ("secret", "archive", "file")
EXACT_MAPS = ("variables",)


def opaque(value: Any) -> bool:
    """Digests of secrets and archives, and redacted secrets: never compared or shown."""
    if isinstance(value, dict) and len(value) == 1:
        key, inner = next(iter(value.items()))
        return key in DIGEST_KEYS and str(inner).startswith("sha256:")
    return value == "[secret]"


def plain(value: Any) -> Any:
    """One comparable form: JSON documents parsed, 3.0 read as 3, lists of scalars sorted."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        return sorted((plain(v) for v in value), key=str)
    return value


def compare(declared: Any, live: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(property, declared, live) for each difference among the properties both sides know."""
    if opaque(declared) or opaque(live):
        return
    declared, live = plain(declared), plain(live)
    if isinstance(declared, dict) and isinstance(live, dict):
        exact = path.rsplit(".", 1)[-1] in EXACT_MAPS
        for key in sorted(declared.keys() | live.keys() if exact else declared.keys() & live.keys()):
            yield from compare(declared.get(key), live.get(key), f"{path}.{key}" if path else key)
    elif isinstance(declared, list) and isinstance(live, list) and len(declared) == len(live):
        if declared != live:
            for i, (d, v) in enumerate(zip(declared, live)):
                yield from compare(d, v, f"{path}[{i}]")
    elif declared != live:
        yield path, declared, live


def differs(declared: Any, live: Any) -> bool:
    return next(compare(declared, live), None) is not None


def merge_live(declared: Any, live: Any) -> Any:
    """`declared` with every property the live read knows replaced by its live value."""
    if isinstance(declared, dict) and isinstance(live, dict) and not opaque(declared):
        return {**declared, **{k: merge_live(declared.get(k), v) for k, v in live.items()}}
    return live
