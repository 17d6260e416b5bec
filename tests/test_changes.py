"""Plan values (engines/changes): what a reviewer reads and what a reviewed plan binds. Pure
functions, no emulator; the sandbox tests (test_plans) apply them end to end."""
from __future__ import annotations

from pulumi.runtime import rpc

from tap_lib.engines.changes import (SECRET, UNKNOWN, describe, matches, property_changes,
                                     shown)


def test_scalar_and_nested_changes_name_the_property_and_both_values():
    old = {"memorySize": 256, "tags": {"Owner": "a", "Env": "dev"}, "timeout": 30}
    new = {"memorySize": 384, "tags": {"Owner": "b", "Env": "dev", "Cost": "x"}, "timeout": 30}
    changes = property_changes(old, new, ["memorySize", "tags"])
    assert [describe(c) for c in changes] == [
        "memorySize: 256 → 384", 'tags.Cost: (none) → "x"', 'tags.Owner: "a" → "b"']


def test_secrets_and_code_never_show_their_content():
    old = {"environment": {"variables": {"DB_PASS": {"secret": "sha256:aaaa"}}},
           "code": {"archive": "sha256:" + "1" * 32}}
    new = {"environment": {"variables": {"DB_PASS": {"secret": "sha256:bbbb"}}},
           "code": {"archive": "sha256:" + "2" * 32}}
    changes = property_changes(old, new, ["code", "environment"])
    text = " ".join(describe(c) for c in changes)
    assert "sha256:aaaa" not in text and "sha256:bbbb" not in text
    assert f"environment.variables.DB_PASS: {SECRET} → {SECRET}" in text
    assert "code: code sha256:111111111111 → code sha256:222222222222" in text


def test_a_reviewed_value_binds_and_unknowns_match_what_they_became():
    planned = property_changes({"memorySize": 256}, {"memorySize": 384}, ["memorySize"])
    assert matches(planned, property_changes({"memorySize": 256}, {"memorySize": 384},
                                             ["memorySize"]))
    assert not matches(planned, property_changes({"memorySize": 640}, {"memorySize": 384},
                                                 ["memorySize"]))
    assert not matches(planned, property_changes({"memorySize": 256}, {"memorySize": 512},
                                                 ["memorySize"]))
    assert not matches(planned, [])
    later = property_changes({"subnetId": "subnet-1"}, {"subnetId": rpc.UNKNOWN}, ["subnetId"])
    assert later[0]["new"] == UNKNOWN
    assert matches(later, property_changes({"subnetId": "subnet-1"}, {"subnetId": "subnet-2"},
                                           ["subnetId"]))
    assert shown({"a": [rpc.UNKNOWN]}) == UNKNOWN
