"""What every engine returns, so that nothing above the engines knows which one ran."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

import pandas as pd

OPS = ("create", "update", "replace", "delete", "same")

# How Pulumi marks a secret in properties and state: {SIG_KEY: SECRET_SIG, "value" | ...}.
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


@dataclass
class Step:
    urn: str
    type: str
    name: str
    op: str
    diffs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Plan:
    """The steps of a preview, or the steps an operation took."""

    stack: str
    target: str
    steps: list[Step]
    operation: str = "preview"

    @property
    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(OPS, 0)
        for step in self.steps:
            counts[step.op] = counts.get(step.op, 0) + 1
        return counts

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.op != "same"]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([s.to_dict() for s in self.steps],
                            columns=["urn", "type", "name", "op", "diffs"])

    def changes_frame(self) -> pd.DataFrame:
        """The steps that change something, readable and in a stable order (resources finish
        in any order)."""
        steps = self.to_frame()
        steps["type"] = steps["type"].str.split(":").str[-1]
        steps["diffs"] = steps["diffs"].map(", ".join)
        changed = steps[steps.op != "same"].sort_values(["op", "type", "name"])
        return changed[["op", "type", "name", "diffs"]].reset_index(drop=True)

    def to_dict(self) -> dict:
        return {"stack": self.stack, "target": self.target, "operation": self.operation,
                "steps": [s.to_dict() for s in self.steps], "summary": self.summary}


@dataclass
class Result(Plan):
    """A finished deploy or destroy."""

    outputs: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    status: str = "succeeded"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "outputs": self.outputs,
                "duration_s": round(self.duration_s, 3), "status": self.status,
                "notes": self.notes}


@dataclass
class ResourceState:
    """One resource as the engine's state knows it (for inventories and drift)."""

    urn: str
    type: str
    name: str
    id: str
    status: str
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepEvent:
    """Progress of one resource during deploy/destroy."""

    step: Step
    phase: str          # "start" | "done" | "failed"
    index: int          # 1-based count of finished steps when phase != "start"
    total: int | None   # total steps when known
    elapsed_s: float
    error: str | None = None


ProgressCallback = Callable[[StepEvent], None]


@dataclass
class HistoryEntry:
    time: str
    operation: str
    result: str
    duration_s: float
    create: int = 0
    update: int = 0
    replace: int = 0
    delete: int = 0
    same: int = 0

    @classmethod
    def from_plan(cls, plan: Plan, operation: str, result: str, started: float) -> "HistoryEntry":
        return cls(time=utc_now(), operation=operation, result=result,
                   duration_s=round(time.monotonic() - started, 3), **plan.summary)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Engine(Protocol):
    """Both engines implement this; operations and notebooks only use this surface."""

    name: str
    stack: str

    def preview(self) -> Plan: ...
    def up(self, progress: ProgressCallback | None = None) -> Result: ...
    def destroy(self, progress: ProgressCallback | None = None) -> Result: ...
    def outputs(self) -> dict[str, Any]: ...
    def resources(self) -> list[ResourceState]: ...
    def history(self) -> list[HistoryEntry]: ...
