"""Find a stack's live resources in the emulator by their `tap:urn` tags, with no state at all.

Every resource tap creates carries its URN in the `tap:urn` tag (handlers/base.py), and a URN
names its stack (`urn:pulumi:<stack>::<project>::<parent$type>::<name>`). A deploy that has no
state asks here first: anything found means the state was lost, and creating the stack again
would duplicate it.

The Resource Groups Tagging API answers for most types in one paginated call; moto's leaves out
Elastic IPs, IAM roles and DB subnet groups, which are listed per service. Whatever the server
filtered, each resource's own URN tag decides (read with the handlers' `urn_of`). What AWS keeps
for a while after a delete (a NAT gateway in state 'deleted', a KMS key pending deletion, a
secret scheduled for deletion) is not live and is left out.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from botocore.exceptions import BotoCoreError, ClientError

from ...errors import OperationFailed, OrphanedResources
from .handlers.base import URN_TAG, urn_of

Clients = Callable[[str], Any]   # clients(service) -> boto3 client (aws.Clients)

_GONE_NAT_STATES = ("deleted", "deleting", "failed")
_GONE_KEY_STATES = ("PendingDeletion", "PendingReplicaDeletion")


@dataclass(frozen=True)
class Found:
    urn: str
    type: str   # the Pulumi type, read from the URN (e.g. aws:ec2/vpc:Vpc)
    ref: str    # the resource's ARN, or its id where the API gives no ARN (Elastic IPs)


def urn_prefix(stack: str) -> str:
    return f"urn:pulumi:{stack}::"


def urn_type(urn: str) -> str:
    parts = urn.split("::")
    return parts[2].rsplit("$", 1)[-1] if len(parts) >= 4 else "?"


def find_stack_resources(stack: str, clients: Clients) -> list[Found]:
    """Every live resource in the emulator tagged with one of `stack`'s URNs."""
    prefix = urn_prefix(stack)
    found: dict[str, Found] = {}

    def add(ref: str, tags: Iterable[dict]) -> None:
        urn = urn_of(tags) or ""
        if urn.startswith(prefix):
            found.setdefault(ref, Found(urn, urn_type(urn), ref))

    try:
        tagging = clients("resourcegroupstaggingapi")
        for page in tagging.get_paginator("get_resources").paginate(
                TagFilters=[{"Key": URN_TAG}]):
            for item in page.get("ResourceTagMappingList", []):
                add(item["ResourceARN"], item.get("Tags", []))
        _add_untracked(clients, add)
        live = _live(clients, list(found))
        return [f for f in found.values() if f.ref in live]
    except (BotoCoreError, ClientError) as exc:
        raise OperationFailed(
            f"could not search the emulator for stack {stack}'s resources: {exc}",
            hint="check `tap sandbox status`; nothing was changed") from None


def counts_by_type(found: Iterable[Found]) -> dict[str, int]:
    """Resources per Pulumi type (one per URN: a resource may own a tagged helper)."""
    return dict(Counter(urn_type(urn) for urn in {f.urn for f in found}))


def refuse_orphans(stack: str, clients: Clients, *, env: str, state_file: Path) -> None:
    """Called by a deploy whose state has no resources: refuse if the stack is live anyway."""
    found = find_stack_resources(stack, clients)
    if not found:
        return
    bak = state_file.with_name(state_file.name + ".bak")
    restore = f"restore tap's state with `cp {bak} {state_file}`, or " if bak.exists() else ""
    raise OrphanedResources(
        stack, {t.rsplit(":", 1)[-1]: n for t, n in counts_by_type(found).items()},
        hint=f"tap's state for it ({state_file}) is missing or empty: {restore}delete them "
             "(and every other sandbox stack) with `tap sandbox reset`; tap never adopts "
             "resources it has no record of (their data could belong to another deploy)")


def _add_untracked(clients: Clients, add: Callable[[str, Iterable[dict]], None]) -> None:
    """The types moto's tagging API does not list."""
    ec2 = clients("ec2")
    for address in ec2.describe_addresses(
            Filters=[{"Name": "tag-key", "Values": [URN_TAG]}])["Addresses"]:
        add(address.get("AllocationId") or address.get("PublicIp", "?"), address.get("Tags", []))
    iam = clients("iam")
    for page in iam.get_paginator("list_roles").paginate():
        for role in page["Roles"]:
            add(role["Arn"], iam.list_role_tags(RoleName=role["RoleName"]).get("Tags", []))
    rds = clients("rds")
    for page in rds.get_paginator("describe_db_subnet_groups").paginate():
        for group in page["DBSubnetGroups"]:
            arn = group["DBSubnetGroupArn"]
            add(arn, rds.list_tags_for_resource(ResourceName=arn).get("TagList", []))


def _live(clients: Clients, refs: list[str]) -> set[str]:
    """The refs whose resource is live: one listing for all NAT gateways and one for all
    secrets (a sandbox that deployed and destroyed often keeps many gone ones), a describe per
    KMS key (its state is not listed)."""
    nats = {ref.rsplit("/", 1)[-1]: ref for ref in refs if ":natgateway/" in ref}
    secrets = {ref for ref in refs if ref.startswith("arn:aws:secretsmanager:")}
    # a snapshot copies its cluster's tags; it is not a resource of the stack
    snapshots = {ref for ref in refs if ref.startswith("arn:aws:rds:") and "snapshot:" in ref}
    live = set(refs) - secrets - set(nats.values()) - snapshots
    if nats:
        pages = clients("ec2").get_paginator("describe_nat_gateways").paginate(
            Filter=[{"Name": "nat-gateway-id", "Values": sorted(nats)}])
        live |= {nats[g["NatGatewayId"]] for page in pages for g in page["NatGateways"]
                 if g["State"] not in _GONE_NAT_STATES and g["NatGatewayId"] in nats}
    if secrets:   # ListSecrets leaves out those scheduled for deletion
        pages = clients("secretsmanager").get_paginator("list_secrets").paginate()
        live |= {s["ARN"] for page in pages for s in page["SecretList"]} & secrets
    for ref in [r for r in live if r.startswith("arn:aws:kms:") and ":key/" in r]:
        if clients("kms").describe_key(KeyId=ref)["KeyMetadata"].get(
                "KeyState") in _GONE_KEY_STATES:
            live.discard(ref)
    return live
