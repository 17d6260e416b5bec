"""The VPC's default network ACL (EC2.21), adopted as the provider does: its entries replaced
by the declared ingress and egress rules, never created or deleted."""
from __future__ import annotations

from ....errors import OperationFailed
from .base import Handler, adoptable, handler

# The deny-all entries every ACL ends with; AWS allows no change to them.
CATCH_ALL = (32767, 32768)
PROTOCOLS = {"tcp": "6", "udp": "17", "icmp": "1", "all": "-1"}


def protocol_number(value) -> str:
    text = str(value).lower()
    return PROTOCOLS.get(text, text)


def _inline(entry: dict, declared: dict) -> dict:
    """An entry in the inline block's shape; its protocol spelled as declared ("tcp") when
    that is the number EC2 reports ("6"), as the provider's read does."""
    ports = entry.get("PortRange") or {}
    said = declared.get(entry["RuleNumber"], {}).get("protocol")
    proto = said if said is not None and protocol_number(said) == entry["Protocol"] \
        else entry["Protocol"]
    return {"ruleNo": entry["RuleNumber"], "action": entry["RuleAction"],
            "protocol": proto, "fromPort": ports.get("From", 0),
            "toPort": ports.get("To", 0), "cidrBlock": entry.get("CidrBlock")}


@handler
class DefaultNetworkAcl(Handler):
    type = "aws:ec2/defaultNetworkAcl:DefaultNetworkAcl"
    applies = frozenset({"ingress", "egress", "subnetIds"})
    tagger = "ec2"

    @staticmethod
    def _acl(ctx, id_: str) -> dict | None:
        found = ctx.client("ec2").describe_network_acls(
            Filters=[{"Name": "network-acl-id", "Values": [id_]}])["NetworkAcls"]
        return found[0] if found else None

    def _converge(self, ctx, id_: str, inputs: dict) -> None:
        """Every entry but the catch-all deleted, then the declared ones created (as the
        provider's create does; its update diffs, with the same end state)."""
        ec2 = ctx.client("ec2")
        for entry in (self._acl(ctx, id_) or {}).get("Entries", []):
            if entry["RuleNumber"] not in CATCH_ALL:
                ec2.delete_network_acl_entry(NetworkAclId=id_, RuleNumber=entry["RuleNumber"],
                                             Egress=entry["Egress"])
        for direction, egress in (("ingress", False), ("egress", True)):
            for rule in inputs.get(direction) or []:
                proto = protocol_number(rule["protocol"])
                kwargs = {} if proto == "-1" else {"PortRange": {
                    "From": int(rule.get("fromPort", 0)), "To": int(rule.get("toPort", 0))}}
                ec2.create_network_acl_entry(
                    NetworkAclId=id_, RuleNumber=int(rule["ruleNo"]), Protocol=proto,
                    RuleAction=rule["action"], Egress=egress, CidrBlock=rule["cidrBlock"],
                    **kwargs)

    def create(self, ctx, inputs):
        id_ = inputs.get("defaultNetworkAclId")
        if not isinstance(id_, str) or not id_.startswith("acl-"):
            # A VPC this sandbox recorded before it kept the VPC's computed defaults answers
            # without them; refresh reads declared inputs only, so it cannot fill them in.
            raise OperationFailed(
                "the VPC's recorded outputs have no defaultNetworkAclId (the VPC was deployed "
                "before the sandbox recorded it)",
                hint="recreate the sandbox stack (tap destroy, then tap deploy)")
        acl = self._acl(ctx, id_)
        if acl is None or not acl.get("IsDefault"):
            raise RuntimeError(f"{id_} is not a default network ACL "
                               "(use aws.ec2.NetworkAcl for others)")
        ctx.client("ec2").create_tags(Resources=[id_], Tags=ctx.tag_list(inputs.get("tags")))
        self._converge(ctx, id_, inputs)
        return id_, {**inputs, "id": id_, "vpcId": acl["VpcId"],
                     "arn": f"arn:aws:ec2:{ctx.region}:{ctx.account}:network-acl/{id_}"}

    def modify(self, ctx, id_, old, new, changed):
        self._converge(ctx, id_, new)

    def read(self, ctx, id_, inputs):
        acl = self._acl(ctx, id_)
        if acl is None:
            return None
        entries = [e for e in acl.get("Entries", []) if e["RuleNumber"] not in CATCH_ALL]
        said = {d: {int(r["ruleNo"]): r for r in inputs.get(d) or []} for d in ("ingress",
                                                                                "egress")}
        return {"defaultNetworkAclId": id_, "vpcId": acl["VpcId"],
                "ingress": [_inline(e, said["ingress"]) for e in entries if not e["Egress"]],
                "egress": [_inline(e, said["egress"]) for e in entries if e["Egress"]]}

    def delete(self, ctx, id_, inputs, outputs):
        """As the provider: the ACL stays with its VPC, its entries as they are."""

    def find(self, ctx, inputs, exclude=frozenset()):
        id_ = inputs.get("defaultNetworkAclId")
        acl = self._acl(ctx, id_) if id_ and id_ not in exclude else None
        if acl is None:
            return None
        return id_ if adoptable(ctx, acl.get("Tags"), untagged=True) else None
