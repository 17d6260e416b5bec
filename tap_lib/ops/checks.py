"""What a verify check is: one row judged from the declared stack and the live facts.

Shared by verify.py (configuration and drift) and hardening.py (controls judged as Security
Hub or Prowler define them), so each family stays a pure function of (declared, facts).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..config import Settings
from ..controls import controls_of

MISSING = "(missing)"


@dataclass(frozen=True)
class Check:
    id: str
    control: str
    resource: str
    expected: str
    actual: str
    status: str
    logical: str = ""     # the program's name for the resource, which policy exceptions use


def text(value: Any) -> str:
    """One display form for expected/actual, so equal values compare equal as text."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(map(str, value)) or "(none)"
    return str(value)


def check(id_: str, control: str, resource: str | None, expected: Any, actual: Any,
          ok: bool | None = None, logical: str = "") -> Check:
    """A check passes when expected and actual read the same, unless `ok` decides."""
    exp, act = text(expected), text(actual)
    passed = exp == act if ok is None else ok
    return Check(id_, control, resource or MISSING, exp, act, "pass" if passed else "fail",
                 logical)


@dataclass(frozen=True)
class Declared:
    """What the environment file and the stack's outputs say should be live."""

    settings: Settings
    outputs: dict[str, Any]

    def ids(self, key: str) -> list[str]:
        return list(self.outputs.get(key) or [])

    def logical(self, base: str) -> str:
        """The program's logical name for one of its resources (tap_lib/program)."""
        return f"{base}-{self.settings.suffix}"


def apply_exception(settings: Settings, c: Check) -> Check:
    """A failed control check that a valid policy exception of the environment file covers
    reads `excepted` (never pass); exceptions name the program's logical resources."""
    if c.status != "fail" or not c.logical:
        return c
    for control in controls_of(c.control):
        if settings.exception_for(control, c.logical) is not None:
            return replace(c, status="excepted")
    return c
