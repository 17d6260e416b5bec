"""What Pulumi returns, in tap's words: engine events as Steps and progress, exported state as
ResourceStates, update summaries as HistoryEntries, outputs with secrets masked.

Why its own module: the pulumi engine (pulumi_engine.py) only chooses the backend, writes the
stack config and runs the CLI; this translation is pure (it needs the SDK's types, never the
CLI), so it is checked without a Pulumi CLI, and it keeps the Plan/Result a preview or deploy
returns the same shape as the sandbox engine's. Loaded only with the pulumi engine.
"""
from __future__ import annotations

import dataclasses
import re
import threading
import time
from datetime import timezone
from typing import Any

from pulumi import automation as auto
from pulumi.automation.events import OpType

from .base import (OPS, HistoryEntry, ProgressCallback, ResourceState, Step, StepEvent,
                   is_secret)
from .changes import property_changes

SECRET = "[secret]"

# Pulumi's step ops folded into tap's five. The parts of a replacement (create-replacement,
# delete-replaced, ...) all become `replace`; reads change nothing in the cloud; an import or
# discard adds a resource to, or removes it from, the stack.
OP_MAP: dict[str, str] = {
    OpType.CREATE.value: "create",
    OpType.IMPORT.value: "create",
    OpType.UPDATE.value: "update",
    OpType.DELETE.value: "delete",
    OpType.DISCARD.value: "delete",
    OpType.SAME.value: "same",
    OpType.READ.value: "same",
    OpType.REFRESH.value: "same",
    OpType.REPLACE.value: "replace",
    OpType.CREATE_REPLACEMENT.value: "replace",
    OpType.DELETE_REPLACED.value: "replace",
    OpType.READ_REPLACEMENT.value: "replace",
    OpType.DISCARD_REPLACED.value: "replace",
    OpType.IMPORT_REPLACEMENT.value: "replace",
    OpType.REMOVE_PENDING_REPLACE.value: "replace",
}
# When several events concern one URN, the strongest op describes the resource.
_OP_RANK = {"same": 0, "update": 1, "create": 2, "delete": 2, "replace": 3}
_PENDING_STATUS = {"creating": "pending-create", "updating": "pending-update",
                   "deleting": "pending-delete", "reading": "pending-read",
                   "importing": "pending-import"}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# ---- translation of what Pulumi returns --------------------------------------------------------

def translate_event(event: auto.EngineEvent) -> tuple[str, Step] | None:
    """One engine event as (phase, Step), phase being start, done or failed; None for events that
    are not about a cloud resource (diagnostics, summaries, the stack root, components,
    providers), so that plans count the same resources as the sandbox engine's."""
    for phase, payload in (("start", event.resource_pre_event),
                           ("done", event.res_outputs_event),
                           ("failed", event.res_op_failed_event)):
        if payload is not None:
            break
    else:
        return None
    meta = payload.metadata
    state = meta.new or meta.old
    if state is None or not state.custom or meta.type.startswith("pulumi:providers:"):
        return None
    op = OP_MAP[meta.op.value]
    diffs = list(meta.diffs or dict.fromkeys(_top_level(p) for p in meta.detailed_diff or {}))
    if meta.op == OpType.REFRESH and phase == "done":
        op, diffs = _refresh_outcome(meta)
    values = []
    if op in ("update", "replace") and meta.old is not None and meta.new is not None:
        # the event log masks secrets itself ("[secret]"); values as Pulumi shows them
        values = property_changes(dict(meta.old.inputs or {}), dict(meta.new.inputs or {}),
                                  diffs)
    return phase, Step(urn=meta.urn, type=meta.type, name=urn_name(meta.urn), op=op, diffs=diffs,
                       changes=values)


def urn_name(urn: str) -> str:
    """urn:pulumi:STACK::PROJECT::TYPE::NAME -> NAME (which may itself contain '::')."""
    parts = urn.split("::", 3)
    return parts[3] if len(parts) == 4 else urn


def _top_level(path: str) -> str:
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def _refresh_outcome(meta: auto.StepEventMetadata) -> tuple[str, list[str]]:
    """A refresh reports drift only by its before/after states: gone, changed or the same."""
    if meta.new is None:
        return "delete", []
    old = dict((meta.old.outputs if meta.old else None) or {})
    new = dict(meta.new.outputs or {})
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return ("update", changed) if changed else ("same", [])


def redact(value: Any) -> Any:
    """State as Pulumi serializes it, with every secret (plaintext or ciphertext) replaced."""
    if isinstance(value, dict):
        if is_secret(value):
            return SECRET
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def plain_outputs(outputs: auto.OutputMap) -> dict[str, Any]:
    return {k: SECRET if v.secret else v.value for k, v in outputs.items()}


def resource_states(deployment: auto.Deployment) -> list[ResourceState]:
    """Cloud resources in an exported state, including ones an interrupted update left pending;
    the stack root, components and providers are bookkeeping, not inventory."""
    data = deployment.deployment or {}
    found: dict[str, ResourceState] = {}
    records = [(res, "pending-delete" if res.get("delete") else "created")
               for res in data.get("resources") or []]
    records += [(op.get("resource") or {}, _PENDING_STATUS.get(op.get("type", ""), "pending"))
                for op in data.get("pending_operations") or []]
    for res, status in records:
        type_ = res.get("type", "")
        if not res.get("custom") or type_.startswith("pulumi:providers:"):
            continue
        urn = res["urn"]
        found[urn] = ResourceState(urn=urn, type=type_, name=urn_name(urn), id=res.get("id", ""),
                                   status=status, outputs=redact(res.get("outputs") or {}))
    return list(found.values())


def history_entry(summary: auto.UpdateSummary) -> HistoryEntry:
    """Counts are Pulumi's own, so they include the stack root and component resources."""
    start = summary.start_time.replace(tzinfo=timezone.utc)
    end = summary.end_time.replace(tzinfo=timezone.utc) if summary.end_time else None
    counts = dict.fromkeys(OPS, 0)
    for op, n in (summary.resource_changes or {}).items():
        if op in OP_MAP:
            counts[OP_MAP[op]] += n
    return HistoryEntry(time=start.isoformat(timespec="seconds"),
                        operation=HISTORY_VOCABULARY.get(summary.kind, summary.kind),
                        result=summary.result,
                        duration_s=(end - start).total_seconds() if end else 0.0, **counts)


# Pulumi's names for operations in the words every tap target uses (base.HISTORY_OPERATIONS).
HISTORY_VOCABULARY = {"update": "deploy", "destroy": "destroy", "refresh": "refresh"}


# ---- progress ----------------------------------------------------------------------------------

class StepTracker:
    """The `on_event` callback of one operation: one Step per URN, plus start/done/failed
    progress. A replacement arrives as several events for one URN (create-replacement, replace,
    delete-replaced); they fold into one `replace` step with one start and one done."""

    def __init__(self, progress: ProgressCallback | None = None):
        self.errors: list[str] = []
        self._progress = progress
        self._steps: dict[str, Step] = {}
        self._finished: set[str] = set()
        self._error_by_urn: dict[str, str] = {}
        self._lock = threading.Lock()
        self._started = time.monotonic()

    @property
    def steps(self) -> list[Step]:
        return list(self._steps.values())

    def __call__(self, event: auto.EngineEvent) -> None:
        diag, translated = event.diagnostic_event, translate_event(event)
        with self._lock:
            if diag is not None and diag.severity == "error":
                message = ANSI.sub("", diag.message).strip()
                self.errors.append(message)
                if diag.urn:
                    self._error_by_urn[diag.urn] = message
            notice = self._record(*translated) if translated is not None else None
        if notice is not None and self._progress is not None:
            self._progress(notice)

    def _record(self, phase: str, step: Step) -> StepEvent | None:
        known = self._steps.setdefault(step.urn, step)
        first = known is step
        if not first:
            if _OP_RANK[step.op] > _OP_RANK[known.op]:
                known.op = step.op
            known.diffs = known.diffs + [d for d in step.diffs if d not in known.diffs]
        elapsed = time.monotonic() - self._started
        snapshot = dataclasses.replace(known)
        if phase == "start":
            return StepEvent(snapshot, phase, len(self._finished), None, elapsed) if first else None
        if phase == "done" and step.urn in self._finished:
            return None
        self._finished.add(step.urn)
        error = self._error_by_urn.get(step.urn, "failed") if phase == "failed" else None
        return StepEvent(snapshot, phase, len(self._finished), None, elapsed, error)
