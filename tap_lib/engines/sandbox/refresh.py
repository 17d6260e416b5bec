"""The sandbox's refresh pass: each recorded resource read from the emulator; gone ones leave
the state, drifted properties are recorded as they are live, so the next preview shows the
repair. The engine (engine.py) runs it under the stack's lock."""
from __future__ import annotations

from typing import Any

from ..base import Step
from ..drift import differs, merge_live
from .resolver import Resolver
from .state import normalize


def read_back(engine: Any, resolver: Resolver) -> None:
    """One step per created record into `resolver` (its progress reports each)."""
    store = engine.store
    records = [r for r in store.state.resources.values() if r.status == "created"]
    resolver.total = len(records)
    for rec in records:
        live = engine.read_live(rec.urn)
        if live is None:
            step = Step(rec.urn, rec.type, rec.name, "delete")
            store.drop(rec.urn)
        else:
            live = normalize(live)
            drifted = {k: merge_live(rec.inputs[k], v) for k, v in live.items()
                       if k in rec.inputs and differs(rec.inputs[k], v)}
            step = Step(rec.urn, rec.type, rec.name, "update" if drifted else "same",
                        sorted(drifted))
            if drifted:
                rec.inputs = {**rec.inputs, **drifted}
                rec.outputs = {**rec.outputs, **drifted}
                store.put(rec)
        resolver.steps.append(step)
        resolver._event(step, "done")
