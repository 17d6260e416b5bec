"""What a step is, decided without an emulator: a recorded resource and the program's inputs
give the op and the changed properties as Pulumi's step generator decides them (the replacement
table, ignore_changes, replace_on_changes, replacement_trigger); a reviewed plan's step is held
against the step now; side keys of replaced resources are named and settled. Pure functions:
tests/test_steps.py checks them against hand-written expectations, no server needed.
"""
from __future__ import annotations

from typing import Any

from pulumi.runtime import rpc

from ...errors import OperationFailed, TapError
from ..base import Step
from ..changes import describe, matches
from ..synth import Registration
from .handlers import Handler
from .state import ResourceRecord, changed_keys, normalize

# How a step names a replacement its replacement_trigger option forced (not an input).
REPLACEMENT_TRIGGER = "replacementTrigger"
# A replaced resource's old record, kept until it is deleted (`<urn>#replaced`, `.2`, ...).
REPLACED = "#replaced"


def base_urn(urn: str) -> str:
    """The resource a record stands for: a side key's own URN."""
    return urn.split(REPLACED, 1)[0]


def generation(urn: str) -> int:
    _, _, n = urn.partition(REPLACED)
    return int(n.lstrip(".") or 1)


def restorable(resources: dict[str, ResourceRecord]) -> dict[str, str]:
    """Side key -> URN for old copies whose replacement was never recorded as created (absent
    or pending): the newest generation is the resource again once that pending one settles."""
    out: dict[str, str] = {}
    for urn in sorted((u for u in resources if REPLACED in u), key=generation, reverse=True):
        base, current = base_urn(urn), resources.get(base_urn(urn))
        if (current is None or current.status == "pending-create") and base not in out.values():
            out[urn] = base
    return out


def same_step(planned: Step | None, step: Step) -> bool:
    """The step a reviewed plan holds: same op, same properties, the values reviewed."""
    return planned is not None and planned.op == step.op and \
        sorted(planned.diffs) == sorted(step.diffs) and matches(planned.changes, step.changes)


def said(step: Step | None) -> str:
    if step is None:
        return "nothing"
    shown = "; ".join(describe(c) for c in step.changes) or ", ".join(step.diffs)
    return f"{step.op} {shown}".strip()


def trigger_of(reg: Registration, apply: bool) -> Any:
    """The registration's replacement_trigger, normalized like inputs (secrets as digests).
    As Pulumi: unknowns are fine in a preview (they count as changed), an error in a deploy."""
    trigger = normalize(reg.replacement_trigger)
    if apply and has_unknown(trigger):
        raise OperationFailed(f"replacement trigger contains unknowns for {reg.urn}")
    return trigger


def has_unknown(value: Any) -> bool:
    if isinstance(value, dict):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(has_unknown(v) for v in value)
    return value == rpc.UNKNOWN


def diff(handler: Handler, reg: Registration, record: ResourceRecord, norm: dict,
          trigger: Any) -> tuple[str, list[str]]:
    """(op, changed inputs) for a recorded resource, as Pulumi's step generator decides it:
    the provider's rules (the replacement table) for the changed inputs, except those in
    ignore_changes (the stored value stands for them); replace_on_changes makes a change of
    the listed inputs ("*": any) a replace; a replacement_trigger that differs from the one
    recorded (an unknown always does, neither side unset) replaces, whatever the inputs, and
    shows as the pseudo-input REPLACEMENT_TRIGGER."""
    changed = [k for k in changed_keys(record.inputs, norm) if k not in reg.ignore_changes]
    op = handler.classify(changed) if changed else "same"
    if changed and ("*" in reg.replace_on_changes or any(
            k.split(".")[0].split("[")[0] == c for k in reg.replace_on_changes
            for c in changed)):
        op = "replace"
    old = record.replacement_trigger
    if trigger is not None and old is not None and (
            has_unknown(trigger) or has_unknown(old) or trigger != old):
        op, changed = "replace", sorted([*changed, REPLACEMENT_TRIGGER])
    return op, changed


def known_outputs(record: ResourceRecord, inputs: dict, norm: dict) -> dict:
    """Outputs for a resource deploy leaves alone. State holds them redacted (digests for
    secrets and archives), so inputs are handed back as the program gave them, except where
    the provider computed something else from an unchanged input (the stand-in's port).
    `norm` is `normalize(inputs)`, already computed for the diff (it hashes archives)."""
    merged = dict(inputs)
    for key, stored in record.outputs.items():
        if key not in inputs:
            merged[key] = stored
        elif norm[key] == record.inputs.get(key) and stored != record.inputs[key]:
            merged[key] = stored
    return merged


def ordered(steps: list[Step], syn) -> list[Step]:
    """Program order for declared resources, deletes last (as Pulumi displays them)."""
    order = {r.urn: i for i, r in enumerate(syn.registrations)} if syn else {}
    return sorted(steps, key=lambda s: (s.op == "delete", order.get(s.urn, 1 << 30)))


def nothing_to_apply(steps: list[Step], syn, state: Any, removed: list[Step]) -> bool:
    """Whether a deploy whose preview pass (nothing deleted before it) gave `steps` and
    `removed` (recorded, no longer declared) has nothing to do: every declared resource
    `same`, recorded as created with the replacement trigger it has now, nothing removed, and
    the stack's outputs as `state` records them. The apply pass would then call no handler
    and write nothing."""
    if removed or any(s.op != "same" for s in steps) or \
            normalize(syn.outputs) != state.outputs:
        return False
    records: dict[str, ResourceRecord] = state.resources
    for reg in syn.registrations:
        if not reg.custom or reg.is_provider:
            continue
        rec = records.get(reg.urn)
        try:
            if rec is None or rec.status != "created" or \
                    rec.replacement_trigger != trigger_of(reg, True):
                return False
        except TapError:  # unknowns in a trigger: the apply pass says so
            return False
    return True
