"""The one shape every sandbox resource handler has.

A handler maps one Pulumi resource type onto the emulator's API:
    create(ctx, inputs) -> (id, outputs)
    read(ctx, id, inputs) -> live outputs, or None when the resource is gone
    update(ctx, id, old_inputs, new_inputs) -> outputs     (only for `updatable` properties)
    delete(ctx, id, inputs, outputs)
    find(ctx, inputs) -> id or None     adopt a resource a killed deploy created but never recorded
Properties not listed in `updatable` force a replacement, as with the real provider. A type
whose id is a physical name from its inputs sets `id_input` and gets `find` for free.
Adding a type = one small subclass with `type` set, registered with @handler.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from botocore.exceptions import ClientError

URN_TAG = "tap:urn"


@dataclass
class Context:
    """What a handler needs: clients on the emulator, where it is, which resource."""

    region: str
    account: str
    urn: str
    name: str
    clients: Any                       # callable(service) -> boto3 client
    changed: list[str] = field(default_factory=list)   # properties an update changes
    notes: list[str] = field(default_factory=list)

    def client(self, service: str):
        return self.clients(service)

    def tag_list(self, extra: dict | None = None) -> list[dict]:
        tags = {**(extra or {}), URN_TAG: self.urn}
        return [{"Key": k, "Value": str(v)} for k, v in tags.items()]


class Handler:
    type: ClassVar[str]
    updatable: ClassVar[frozenset[str]] = frozenset()
    # Inputs that only exist in Pulumi (not sent to AWS) and never force a replacement.
    ignored: ClassVar[frozenset[str]] = frozenset({"tags", "tagsAll", "region"})
    # The input holding the physical name that is also the resource's id, if there is one.
    id_input: ClassVar[str | None] = None

    def create(self, ctx: Context, inputs: dict) -> tuple[str, dict]:
        raise NotImplementedError

    def read(self, ctx: Context, id_: str, inputs: dict) -> dict | None:
        return dict(inputs)

    def update(self, ctx: Context, id_: str, old: dict, new: dict) -> dict:
        raise NotImplementedError

    def delete(self, ctx: Context, id_: str, inputs: dict, outputs: dict) -> None:
        raise NotImplementedError

    def find(self, ctx: Context, inputs: dict) -> str | None:
        if self.id_input is None:
            return None
        name = inputs[self.id_input]
        return name if self.read(ctx, name, inputs) is not None else None

    def classify(self, changed: list[str]) -> str:
        """'update' if every changed property can change in place, else 'replace'."""
        relevant = [c for c in changed if c not in self.ignored]
        if not relevant:
            return "update"
        return "update" if all(c in self.updatable for c in relevant) else "replace"


REGISTRY: dict[str, Handler] = {}


def handler(cls: type[Handler]) -> type[Handler]:
    REGISTRY[cls.type] = cls()
    return cls


def tag_spec(resource_type: str, inputs: dict, ctx: Context) -> list[dict]:
    return [{"ResourceType": resource_type, "Tags": ctx.tag_list(inputs.get("tags"))}]


def by_urn_filter(ctx: Context) -> list[dict]:
    return [{"Name": f"tag:{URN_TAG}", "Values": [ctx.urn]}]


def is_missing(exc: ClientError, codes: tuple[str, ...] = ()) -> bool:
    """The error says the resource is not there (each service spells it its own way)."""
    code = exc.response.get("Error", {}).get("Code", "")
    return "NotFound" in code or "NoSuch" in code or code in codes


def ignore_missing(call, *args, codes: tuple[str, ...] = (), **kwargs) -> Any:
    """The call's result, or None when the resource is not there: reads report it as gone,
    deletes are idempotent."""
    try:
        return call(*args, **kwargs)
    except ClientError as exc:
        if is_missing(exc, codes):
            return None
        raise
