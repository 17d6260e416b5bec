"""What the sandbox models, declared in one place; a program that goes beyond it fails loudly.

The sandbox is a rehearsal target, not a second IaC engine: it applies the resource types its
handlers know (handlers.REGISTRY, one module per service) and honours the resource options its
step rules implement (steps.py). An option it does not model would otherwise be ignored in
silence — a `protect=True` that protects nothing here, an `aliases` that recreates instead of
renaming, an `import_` that creates a second copy — and the rehearsal would not be one.
"""
from __future__ import annotations

from ...errors import UnsupportedResource
from ..synth import Registration
from .handlers import REGISTRY, Handler

# Options every resource may carry that the sandbox honours: the tree and ordering (parent,
# depends_on, provider/providers) and the replacement rules of steps.py.
MODELED_OPTIONS = ("parent", "depends_on", "provider", "providers", "ignore_changes",
                   "delete_before_replace", "replace_on_changes", "replacement_trigger")


def modeled_types() -> list[str]:
    return sorted(REGISTRY)


def handler_of(type_: str, urn: str) -> Handler:
    """The handler of a type (a recorded resource's, to read or delete it)."""
    handler = REGISTRY.get(type_)
    if handler is None:
        raise UnsupportedResource(type_, urn)
    return handler


def handler_for(reg: Registration) -> Handler:
    """The handler for what the program registered, refusing an option the sandbox ignores."""
    handler = handler_of(reg.type, reg.urn)
    if reg.options:
        raise UnsupportedResource(reg.type, reg.urn, options=reg.options)
    return handler
