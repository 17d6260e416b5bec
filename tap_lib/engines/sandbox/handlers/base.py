"""The one shape every sandbox resource handler has.

A handler maps one Pulumi resource type onto the emulator's API:
    create(ctx, inputs) -> (id, outputs)
    read(ctx, id, inputs) -> live outputs, or None when the resource is gone
    modify(ctx, id, old_outputs, new_inputs, changed) -> outputs it learned  (the `applies` set)
    delete(ctx, id, inputs, outputs)
    find(ctx, inputs, exclude) -> id or None   a resource a killed deploy created but never
                                        recorded (never one of `exclude`, the ids state holds,
                                        and only one `adoptable` says is ctx's: its URN tag)
Whether a change updates in place or replaces comes from replacements.json, generated from
terraform-provider-aws by scripts/gen_replacements.py (ForceNew / RequiresReplace -> replace), as
the real provider decides. `update` is the same for every type: tags through the service's
tagging API (`tagger`), state-only inputs recorded, the rest handed to `modify`; it returns the
complete outputs, so an update never drops what create recorded (an `arn`).
A type whose id is a physical name from its inputs sets `id_input` and `tags`, and gets `find`.
`unique` names the inputs no two live resources of the type may share (a physical name): a
replacement that keeps them all cannot exist beside the old resource, so it is replaced
delete-before-replace (engine); any other replacement is created before the old one is deleted.
Adding a type = one small subclass with `type` set, registered with @handler, plus its entry in
RESOURCES of the generator.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from botocore.exceptions import ClientError

from ....errors import UnknownProperty

URN_TAG = "tap:urn"
TAG_PROPS = frozenset({"tags", "tagsAll"})
REPLACEMENTS = Path(__file__).resolve().parents[1] / "replacements.json"


@functools.cache
def replacement_table() -> dict:
    """The provider's replace/update rules per type (read once)."""
    return json.loads(REPLACEMENTS.read_text())["types"]


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
    # Updatable inputs `modify` sends to the emulator (tags are the base class's job).
    applies: ClassVar[frozenset[str]] = frozenset()
    # Updatable inputs that steer only the provider (deletion behaviour, never sent to AWS on an
    # update): an update records them in state and calls nothing.
    state_only: ClassVar[frozenset[str]] = frozenset()
    # How the type's tags change in place: a key of TAGGERS, or None when it has no tags.
    tagger: ClassVar[str | None] = None
    # The input holding the physical name that is also the resource's id, if there is one.
    id_input: ClassVar[str | None] = None
    # Inputs that together name the resource physically (see the module docstring); None: the
    # id input, else `name` when the resource has one.
    unique: ClassVar[tuple[str, ...] | None] = None

    def create(self, ctx: Context, inputs: dict) -> tuple[str, dict]:
        raise NotImplementedError

    def read(self, ctx: Context, id_: str, inputs: dict) -> dict | None:
        return dict(inputs)

    def update(self, ctx: Context, id_: str, old: dict, new: dict) -> dict:
        """Apply an in-place change; `old` is the recorded outputs, `new` the inputs. Returns the
        complete outputs: what was recorded, the new inputs, and what `modify` learned."""
        changed = set(ctx.changed) or {k for k in set(old) | set(new) if old.get(k) != new.get(k)}
        if changed & TAG_PROPS:
            if self.tagger is None:
                raise NotImplementedError(f"{self.type} has no tagging API")
            TAGGERS[self.tagger](ctx, id_, old, *tag_changes(old, new))
        rest = changed - TAG_PROPS - self.state_only
        learned: dict = {}
        if rest:
            missing = sorted(rest - self.applies)
            if missing:
                raise NotImplementedError(f"{self.type}: cannot change {missing} in place")
            learned = self.modify(ctx, id_, old, new, rest) or {}
        removed = {k: None for k in changed if k not in new}
        return {**old, **removed, **new, "id": id_, **learned}  # modify may assign a new id

    def modify(self, ctx: Context, id_: str, old: dict, new: dict, changed: set[str]) -> dict:
        raise NotImplementedError

    def delete(self, ctx: Context, id_: str, inputs: dict, outputs: dict) -> None:
        raise NotImplementedError

    def find(self, ctx: Context, inputs: dict, exclude: frozenset = frozenset()) -> str | None:
        if self.id_input is None:
            return None
        name = inputs[self.id_input]
        if name in exclude or self.read(ctx, name, inputs) is None:
            return None
        return name if adoptable(ctx, self.tags(ctx, name), untagged=True) else None

    def tags(self, ctx: Context, id_: str) -> Any:
        """The live resource's tags in its service's shape, for `find` by name to check whose
        it is (None when it has none or is gone)."""
        raise NotImplementedError(f"{self.type}: find by name needs the resource's tags")

    def collides(self, old: dict, new: dict) -> bool:
        """Would a replacement with inputs `new` clash with the live resource made from `old`
        (same physical name)? Then it must be deleted before its replacement is created."""
        keys = self.unique if self.unique is not None else (
            (self.id_input,) if self.id_input else ("name",) if "name" in old else ())
        return bool(keys) and all(old.get(k) == new.get(k) for k in keys)

    def rules(self) -> dict:
        try:
            return replacement_table()[self.type]
        except KeyError:
            raise UnknownProperty(self.type, ["(type not in the table)"]) from None

    def classify(self, changed: list[str]) -> str:
        """'replace' if any changed input is ForceNew for the provider (or may be: conditional
        and nested ForceNew count as replace), else 'update'. An input the table does not know
        is an error, not a guess: the preview is the operator's promise."""
        rules = self.rules()
        replacing = (set(rules["force_new"]) | set(rules["force_new_conditional"])
                     | set(rules["force_new_nested"]))
        unknown = sorted(c for c in changed if c not in replacing and c not in rules["updatable"])
        if unknown:
            raise UnknownProperty(self.type, unknown)
        return "replace" if any(c in replacing for c in changed) else "update"


REGISTRY: dict[str, Handler] = {}


def handler(cls: type[Handler]) -> type[Handler]:
    REGISTRY[cls.type] = cls()
    return cls


def tag_changes(old: dict, new: dict) -> tuple[dict[str, str], list[str]]:
    """Tags to set (new or changed values) and keys to remove; the URN tag is never touched."""
    before, after = old.get("tags") or {}, new.get("tags") or {}
    put = {k: str(v) for k, v in after.items() if k != URN_TAG and before.get(k) != v}
    return put, sorted(k for k in before if k not in after and k != URN_TAG)


def _pairs(tags: dict, key: str = "Key", value: str = "Value") -> list[dict]:
    return [{key: k, value: v} for k, v in tags.items()]


def _ec2_tags(ctx, id_, old, put, remove):
    ec2 = ctx.client("ec2")
    if put:
        ec2.create_tags(Resources=[id_], Tags=_pairs(put))
    if remove:
        ec2.delete_tags(Resources=[id_], Tags=[{"Key": k} for k in remove])


def _rds_tags(ctx, id_, old, put, remove):
    rds = ctx.client("rds")
    if put:
        rds.add_tags_to_resource(ResourceName=old["arn"], Tags=_pairs(put))
    if remove:
        rds.remove_tags_from_resource(ResourceName=old["arn"], TagKeys=remove)


def _lambda_tags(ctx, id_, old, put, remove):
    lam = ctx.client("lambda")
    if put:
        lam.tag_resource(Resource=old["arn"], Tags=put)
    if remove:
        lam.untag_resource(Resource=old["arn"], TagKeys=remove)


def _secretsmanager_tags(ctx, id_, old, put, remove):
    sm = ctx.client("secretsmanager")
    if put:
        sm.tag_resource(SecretId=id_, Tags=_pairs(put))
    if remove:
        sm.untag_resource(SecretId=id_, TagKeys=remove)


def _kms_tags(ctx, id_, old, put, remove):
    kms = ctx.client("kms")
    if put:
        kms.tag_resource(KeyId=id_, Tags=_pairs(put, "TagKey", "TagValue"))
    if remove:
        kms.untag_resource(KeyId=id_, TagKeys=remove)


def _iam_role_tags(ctx, id_, old, put, remove):
    iam = ctx.client("iam")
    if put:
        iam.tag_role(RoleName=id_, Tags=_pairs(put))
    if remove:
        iam.untag_role(RoleName=id_, TagKeys=remove)


def _logs_tags(ctx, id_, old, put, remove):
    logs = ctx.client("logs")
    arn = f"arn:aws:logs:{ctx.region}:{ctx.account}:log-group:{id_}"
    if put:
        logs.tag_resource(resourceArn=arn, tags=put)
    if remove:
        logs.untag_resource(resourceArn=arn, tagKeys=remove)


def _s3_tags(ctx, id_, old, put, remove):
    # S3 replaces the whole tag set: write the new one (the URN tag included).
    tags = {k: v for k, v in (old.get("tags") or {}).items() if k not in remove}
    ctx.client("s3").put_bucket_tagging(
        Bucket=id_, Tagging={"TagSet": ctx.tag_list({**tags, **put})})


# Each service's own way to change tags in place: (ctx, id, old outputs, put, remove).
TAGGERS: dict[str, Callable[..., None]] = {
    "ec2": _ec2_tags, "rds": _rds_tags, "lambda": _lambda_tags,
    "secretsmanager": _secretsmanager_tags, "kms": _kms_tags, "iam_role": _iam_role_tags,
    "logs": _logs_tags, "s3": _s3_tags,
}


def tag_spec(resource_type: str, inputs: dict, ctx: Context) -> list[dict]:
    return [{"ResourceType": resource_type, "Tags": ctx.tag_list(inputs.get("tags"))}]


def by_urn_filter(ctx: Context) -> list[dict]:
    """Asks the server for ctx's resources; what it answers is checked with `adoptable`."""
    return [{"Name": f"tag:{URN_TAG}", "Values": [ctx.urn]}]


def urn_of(tags: Any) -> str | None:
    """The URN tag's value in any service's shape (a dict, Key/Value or TagKey/TagValue
    pairs); None when there is none."""
    if isinstance(tags, dict):
        return tags.get(URN_TAG)
    for tag in tags or ():
        if tag.get("Key", tag.get("TagKey")) == URN_TAG:
            return tag.get("Value", tag.get("TagValue"))
    return None


def stack_of(urn: str) -> str:
    """The part of a URN that names its stack and project: `urn:pulumi:<stack>::<project>`."""
    return "::".join(urn.split("::", 2)[:2])


def adoptable(ctx: Context, tags: Any, *, untagged: bool = False, parent: bool = False) -> bool:
    """May a lookup (`find`) return a resource with these tags as ctx's? Checked on the client,
    whatever filters the server honoured (moto ignores `tag:` on DescribeNatGateways, and a
    recovery that adopted another stack's gateway deleted it): only if its URN tag is ctx's
    URN. `parent`: the tags of the tagged parent of an untagged kind (a route's table), which
    must name a URN of ctx's stack. `untagged`: one found by its own physical name and not
    tagged yet (a create killed before tagging) counts; one tagged for another never does."""
    urn = urn_of(tags)
    if urn is None:
        return untagged
    return stack_of(urn) == stack_of(ctx.urn) if parent else urn == ctx.urn


def first_adoptable(ctx: Context, items: list[dict], key: str,
                    exclude: frozenset = frozenset()) -> str | None:
    """The first listed item (with its `Tags`) that is ctx's and that state does not already
    hold (a replaced resource's old copy carries the same URN tag as its replacement)."""
    return next((i[key] for i in items
                 if i[key] not in exclude and adoptable(ctx, i.get("Tags"))), None)


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
