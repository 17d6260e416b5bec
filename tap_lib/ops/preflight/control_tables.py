"""Control tables: one row per control that preflight (from the program) and verify (live)
both judge with the same function. Buckets (storage_controls) and the database (rds_controls)
are tables of these rows; `table_rule` registers a row as a preflight rule."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import Context, Finding, error, rule, warning
from .securityhub import _severity


class Unknown(str):
    """A judgement that could not be made (the facts were not reported): a warning in
    preflight, `unverified` on the sandbox, never a pass and never the stack's failure."""


@dataclass(frozen=True)
class TableControl:
    """One row of a control table: the preflight rule and the verify check share its
    judgement."""
    rule: str
    controls: str
    name: str
    check: str          # verify's check id
    expected: str
    judge: Callable
    fix: str
    hardening: bool     # a hardening ask (warning off prod), not a must (always an error)
    per: str = "bucket"  # what it judges: "bucket", or the database's "instance" | "cluster"


def table_rule(spec: TableControl, subjects: Callable[[Context], Iterable[Any]],
               prefix: str) -> None:
    """Register `spec` as the preflight rule judging each of `subjects(ctx)` (views with a
    `name`): a failure is an error (a hardening ask: by the stack's strictness), an Unknown a
    warning."""
    def check(ctx: Context) -> list[Finding]:
        level = _severity(ctx) if spec.hardening else error
        return [(warning if isinstance(problem, Unknown) else level)(v.name, problem, spec.fix)
                for v in subjects(ctx) if (problem := spec.judge(v))]
    check.__doc__, check.__module__ = spec.judge.__doc__, spec.judge.__module__  # its table's
    check.__name__ = f"{prefix}_{spec.name.replace('-', '_')}"
    rule(spec.rule, f"{spec.controls} {spec.name}")(check)
