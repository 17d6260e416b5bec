"""The resolver: answers each resource the program registers, during preview (compare with the
stack's state, placeholders for what is new) and during deploy (apply through the type's handler,
record the result, then answer), checking a reviewed plan's steps as it reaches them and
reporting progress. The engine (engine.py) runs the program against it.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from ...errors import OperationFailed, PlanMismatch, ProtectedStack, TapError
from ..base import Plan, ProgressCallback, Step, StepEvent
from ..changes import property_changes
from ..synth import (MOCK_ACCOUNT, PlaceholderResolver, Registration, replays, share_key,
                     take_shared)
from .handlers import Handler
from .scope import handler_for
from .state import ResourceRecord, keep_secret, normalize, normalize_reveal
from .steps import (REPLACEMENT_TRIGGER, diff, known_outputs, restorable, same_step, said,
                    trigger_of)


class Resolver:
    """Answers registrations during preview (apply=False) or deploy (apply=True)."""

    def __init__(self, engine: Any, apply: bool,  # the SandboxEngine (engine.py) it answers for
                 progress: ProgressCallback | None = None, confirmed: bool = True,
                 plan: Plan | None = None):
        self.engine, self.apply, self.progress = engine, apply, progress
        self.confirmed = confirmed     # False: a replace on this (protected) stack is refused
        # A reviewed plan: every step must be the one it says, or the deploy stops there.
        self.expected = None if plan is None else {s.urn: s for s in plan.steps}
        self.placeholder = PlaceholderResolver(engine.settings.region, MOCK_ACCOUNT)
        self.steps: list[Step] = []
        # Replacements deleted before this pass (delete-before-replace): urn -> planned step.
        self.rebuilt: dict[str, Step] = {}
        # Side keys this pass moved old records to; deleted at the end, part of their replace.
        self.superseded: list[str] = []
        # Replacements that keep a physical name (preview: they need delete-before-replace).
        self.colliding: set[str] = set()
        self.failure: BaseException | None = None
        self.notes: list[str] = []
        self.started = time.monotonic()
        self.finished = 0
        self._lock = threading.Lock()
        # Handler calls still running: the runtime gives up on the first failed registration
        # while its siblings run on in executor threads; the operation waits for them
        # (`drain`) so none writes state or creates a resource after it has returned.
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        previous = engine.store.state.resources
        # Steps this pass will go through: a reviewed plan's; else the stack's size, a guess
        # a changed program can outgrow (then _event shows no total rather than [51/1]).
        self.total = len(plan.steps) if plan is not None else (len(previous) or None)
        # Preview shows what deploy will do after settling an interrupted replace: the old
        # copy of a replacement never recorded as created is the resource again.
        self.restored = {} if apply else {
            base: previous[side] for side, base in restorable(previous).items()}

    # -- Resolver protocol -------------------------------------------------------------
    def invoke(self, token: str, args: dict) -> dict:
        return self.placeholder.invoke(token, args)

    def resource(self, reg: Registration) -> tuple[str, dict]:
        if reg.is_provider:  # a provider is configuration: answered as preflight's run was
            return self.placeholder.resource(reg)
        with self._lock:
            if self.apply and self.failure is not None:   # as Pulumi: no new step after one failed
                raise OperationFailed(f"{reg.urn}: not applied, an earlier step failed")
            self._in_flight += 1
        try:
            return self._resource(reg)
        except BaseException as exc:
            with self._lock:
                if self.failure is None:
                    self.failure = with_urn(exc, reg.urn)
            raise
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def drain(self, timeout_s: float = 900) -> None:
        """Wait until no handler call of this pass is running."""
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout_s)

    # -- internals ---------------------------------------------------------------------
    def _resource(self, reg: Registration) -> tuple[str, dict]:
        handler = handler_for(reg)
        store = self.engine.store
        norm = normalize(reg.inputs)
        record = self.restored.get(reg.urn) or store.state.resources.get(reg.urn)
        rebuilt = self.rebuilt.get(reg.urn)
        trigger = trigger_of(reg, self.apply)
        values: list[dict] = []
        if record is None or record.status != "created":
            op, changed = ("replace", list(rebuilt.diffs)) if rebuilt else ("create", [])
            if rebuilt:
                values = list(rebuilt.changes)
        else:
            op, changed = diff(handler, reg, record, norm, trigger)
            values = property_changes(record.inputs, norm, changed)
        step = Step(reg.urn, reg.type, reg.name, op, changed, changes=values)
        with self._lock:
            self.steps.append(step)
            if op == "replace" and record is not None and (
                    handler.collides(record.inputs, norm) if reg.delete_before_replace is None
                    else reg.delete_before_replace):
                self.colliding.add(reg.urn)
        if not self.apply:
            if op in ("create", "replace"):   # a replaced resource's outputs are new ones
                return self.placeholder.resource(reg)
            return record.id, known_outputs(record, reg.inputs, norm)
        if op == "same":
            if record.replacement_trigger != trigger:   # set or cleared: recorded, as Pulumi
                store.put(dataclasses.replace(record, replacement_trigger=trigger))
            self._event(step, "done")
            return record.id, known_outputs(record, reg.inputs, norm)
        self.check_planned(step)
        if op == "replace" and not self.confirmed:
            raise ProtectedStack(self.engine.stack, f"this deploy would replace {reg.name}",
                                 None)
        self._event(step, "start")
        try:
            id_, outputs = self._apply(reg, handler, record, step, norm)
        except Exception as exc:
            self._event(step, "failed", f"{type(exc).__name__}: {exc}")
            raise
        self._event(step, "done")
        return id_, outputs

    def _apply(self, reg: Registration, handler: Handler, record: ResourceRecord | None,
               step: Step, norm: dict) -> tuple[str, dict]:
        store = self.engine.store
        ctx = self.engine.context(reg.urn, reg.name,
                                  [d for d in step.diffs if d != REPLACEMENT_TRIGGER])
        trigger = trigger_of(reg, self.apply)
        inputs = normalize_reveal(reg.inputs)
        op = step.op
        if op == "update":
            # An update returns what changed; everything else the resource had stays (its arn).
            outputs = {**record.outputs,
                       **handler.update(ctx, record.id, record.outputs, inputs)}
            # An in-place update can give the resource a new id (ReplaceRouteTableAssociation).
            id_ = outputs.get("id") or record.id
        else:
            put = [ResourceRecord(reg.urn, reg.type, reg.name, None, norm, {},
                                  reg.dependencies, reg.parent, status="pending-create",
                                  replacement_trigger=trigger)]
            if op == "replace" and reg.urn not in self.rebuilt:
                if reg.urn in self.colliding:   # not foreseen by the preview: delete first
                    self.engine.delete_record(record)
                else:                           # create before delete: the old one aside
                    side = self.engine.side_key(reg.urn)
                    put.append(dataclasses.replace(record, urn=side))
                    with self._lock:
                        self.superseded.append(side)
            store.change(put=put)
            id_, outputs = handler.create(ctx, inputs)
        with self._lock:
            self.notes.extend(n for n in ctx.notes if n not in self.notes)
        outputs = keep_secret(outputs, reg.inputs)
        store.put(ResourceRecord(reg.urn, reg.type, reg.name, id_, norm, normalize(outputs),
                                 reg.dependencies, reg.parent, replacement_trigger=trigger))
        return id_, outputs

    def check_planned(self, step: Step) -> None:
        if self.expected is None or not self.apply:
            return
        planned = self.expected.get(step.urn)
        if not same_step(planned, step):
            raise PlanMismatch(self.engine.stack, step.name, said(planned), said(step))

    def _event(self, step: Step, phase: str, error: str | None = None) -> None:
        if self.progress is None:
            return
        with self._lock:
            if phase != "start":
                self.finished += 1
            total = self.total if self.total and self.finished <= self.total else None
            self.progress(StepEvent(step, phase, self.finished, total,
                                    time.monotonic() - self.started, error))


def with_urn(exc: BaseException, urn: str) -> BaseException:
    if isinstance(exc, TapError):
        return exc
    return OperationFailed(f"{urn}: {type(exc).__name__}: {exc}")


def replayed_preview(engine: Any) -> tuple[Resolver | None, Any]:
    """(resolver, synthesis) from the run preflight made for this command (synth.share), when
    the engine's preview resolver gives every answer the placeholders gave (a stack with
    nothing recorded yet): the plan a run of its own would give, without the run. Else
    (None, None)."""
    resolver = Resolver(engine, apply=False)
    shared = take_shared(share_key(engine.settings, engine.program, resolver.placeholder))
    if shared is None:
        return None, None
    try:
        same = replays(shared, resolver) and resolver.failure is None
    except Exception:  # noqa: BLE001 - a run of its own reports it properly
        same = False
    return (resolver, shared) if same else (None, None)
