"""What AWS itself enforces on the settings, whatever the environment: tag rules, the regions
botocore knows and each region's zones. config.py validates environment files against these."""
from __future__ import annotations

import functools
import json
import unicodedata
from pathlib import Path
from typing import Any

from . import project

# AWS tag rules (the same for every service the stack uses): key 1-128 and value 0-256
# characters of Unicode letters, digits, separators (spaces) and _ . : / = + - @; no aws:
# prefix on keys or values; at most 50 tags on a resource.
TAG_KEY_MAX, TAG_VALUE_MAX, TAGS_PER_RESOURCE = 128, 256, 50
TAG_SYMBOLS = frozenset("_.:/=+-@")
# Tags tap writes itself beside the user's, and which the user may therefore not set: the four
# of Settings.all_tags(), Name and Tier (tap_lib/program/network.py puts them on network
# resources) and the sandbox's URN tag (engines/sandbox/handlers/base.py URN_TAG).
# tests/test_hostile_input.py checks this list against a synthesized stack.
TAP_TAG_KEYS = ("Project", "Environment", "Stack", "ManagedBy", "Name", "Tier", "tap:urn")


@functools.lru_cache(maxsize=1)
def aws_regions() -> tuple[str, ...]:
    """Commercial regions known to the installed botocore (no network call): its endpoints
    file read directly, the regions boto3's get_available_regions("ec2") lists (a test holds
    them equal) without building a boto3 session on every command (0.6 s)."""
    import importlib.util

    spec = importlib.util.find_spec("botocore")
    path = Path(spec.origin).parent / "data" / "endpoints.json"
    partition = next(p for p in json.loads(path.read_text())["partitions"]
                     if p["partition"] == "aws")
    return tuple(sorted(region for region, endpoint in
                        partition["services"]["ec2"]["endpoints"].items()
                        if not endpoint.get("deprecated") and "fips" not in region))


def tag_problem(key: str, value: str) -> str | None:
    """What AWS would refuse about one tag, or None."""
    if not 1 <= len(key) <= TAG_KEY_MAX:
        return f"tag key is {len(key)} characters; AWS allows 1 to {TAG_KEY_MAX}"
    if len(value) > TAG_VALUE_MAX:
        return f"tag value is {len(value)} characters; AWS allows at most {TAG_VALUE_MAX}"
    for what, text in (("key", key), ("value", value)):
        bad = next((c for c in text if not _tag_char(c)), None)
        if bad is not None:
            return (f"tag {what} contains {_char_name(bad)}; AWS allows letters, digits, spaces "
                    f"and {' '.join(sorted(TAG_SYMBOLS))}")
        if text[:4].lower() == "aws:":
            return f"tag {what} starts with 'aws:', which AWS reserves for itself"
    if key in TAP_TAG_KEYS:
        return f"tag key {key!r} is one tap sets itself; reserved: {', '.join(TAP_TAG_KEYS)}"
    return None


def _tag_char(c: str) -> bool:
    # AWS's pattern: ^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$
    return c in TAG_SYMBOLS or unicodedata.category(c)[0] in "LZN"


def _char_name(c: str) -> str:
    return f"{c!r} (U+{ord(c):04X} {unicodedata.name(c, unicodedata.category(c))})"


ZONES_FILE = "tap_lib/data/regions.json"


@functools.lru_cache(maxsize=1)
def _zone_table() -> dict[str, Any]:
    return json.loads((project.PACKAGE_DIR / "data" / "regions.json").read_text())


def region_zones(region: str) -> list[str] | None:
    """The zone letters of a region from the shipped table, or None when it does not list it."""
    return _zone_table()["zones"].get(region)
