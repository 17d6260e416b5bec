"""Security groups, their rules, and the VPC's default security group (EC2.2).

Every `find` returns only what `adoptable` says is the resource's own (see ec2.py)."""
from __future__ import annotations

from ....aws import ip_permission
from .base import Handler, adoptable, first_adoptable, handler, ignore_missing, tag_spec
from .ec2 import _in_stack


@handler
class SecurityGroup(Handler):
    type = "aws:ec2/securityGroup:SecurityGroup"
    unique = ("name", "vpcId")        # group names are unique within a VPC
    tagger = "ec2"

    def create(self, ctx, inputs):
        ec2 = ctx.client("ec2")
        sg = ec2.create_security_group(GroupName=inputs["name"], VpcId=inputs["vpcId"],
                                       Description=inputs.get("description", "Managed by tap"),
                                       TagSpecifications=tag_spec("security-group", inputs, ctx))
        gid = sg["GroupId"]
        # Like the AWS provider: drop the implicit allow-all egress; rules are explicit resources.
        ec2.revoke_security_group_egress(GroupId=gid, IpPermissions=[
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        return gid, {**inputs, "id": gid,
                     "arn": f"arn:aws:ec2:{ctx.region}:{ctx.account}:security-group/{gid}"}

    def read(self, ctx, id_, inputs):
        found = ctx.client("ec2").describe_security_groups(
            Filters=[{"Name": "group-id", "Values": [id_]}])["SecurityGroups"]
        return {"name": found[0]["GroupName"], "vpcId": found[0]["VpcId"]} if found else None

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("ec2").delete_security_group, GroupId=id_)

    def find(self, ctx, inputs, exclude=frozenset()):
        return first_adoptable(ctx, ctx.client("ec2").describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [inputs["name"]]},
                     {"Name": "vpc-id", "Values": [inputs["vpcId"]]}])["SecurityGroups"],
            "GroupId", exclude)


def _peers(perm: dict) -> set[str]:
    """The sources (or destinations) an IpPermission names: groups and CIDRs."""
    return ({g["GroupId"] for g in perm.get("UserIdGroupPairs", [])}
            | {r["CidrIp"] for r in perm.get("IpRanges", [])}
            | {r["CidrIpv6"] for r in perm.get("Ipv6Ranges", [])})


class _SecurityGroupRule(Handler):
    direction: str
    applies = frozenset({"cidrIpv4", "cidrIpv6", "description", "fromPort", "toPort",
                         "ipProtocol", "prefixListId", "referencedSecurityGroupId"})
    tagger = "ec2"
    # The same permission twice in one group is InvalidPermission.Duplicate.
    unique = ("securityGroupId", "ipProtocol", "fromPort", "toPort", "cidrIpv4", "cidrIpv6",
              "prefixListId", "referencedSecurityGroupId")

    def modify(self, ctx, id_, old, new, changed):
        """ModifySecurityGroupRules on the rule's id, as the provider's update does."""
        rule = {"IpProtocol": str(new["ipProtocol"]),
                "FromPort": int(new.get("fromPort", -1)), "ToPort": int(new.get("toPort", -1))}
        for prop, key in (("cidrIpv4", "CidrIpv4"), ("cidrIpv6", "CidrIpv6"),
                          ("prefixListId", "PrefixListId"),
                          ("referencedSecurityGroupId", "ReferencedGroupId"),
                          ("description", "Description")):
            if new.get(prop) is not None:
                rule[key] = new[prop]
        ctx.client("ec2").modify_security_group_rules(
            GroupId=new["securityGroupId"],
            SecurityGroupRules=[{"SecurityGroupRuleId": id_, "SecurityGroupRule": rule}])

    def _call(self, ctx, verb: str, inputs: dict):
        method = getattr(ctx.client("ec2"), f"{verb}_security_group_{self.direction}")
        return method(GroupId=inputs["securityGroupId"], IpPermissions=[ip_permission(inputs)])

    def create(self, ctx, inputs):
        out = self._call(ctx, "authorize", inputs)
        rules = out.get("SecurityGroupRules") or [{}]
        rid = rules[0].get("SecurityGroupRuleId") or f"sgr-{ctx.name}"
        return rid, {**inputs, "id": rid, "securityGroupRuleId": rid}

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(self._call, ctx, "revoke", inputs,
                       codes=("InvalidPermission.NotFound",))

    @staticmethod
    def _group(ctx, inputs: dict) -> dict | None:
        groups = ctx.client("ec2").describe_security_groups(Filters=[
            {"Name": "group-id", "Values": [inputs["securityGroupId"]]}])["SecurityGroups"]
        return groups[0] if groups else None

    def read(self, ctx, id_, inputs):
        return self._rule(self._group(ctx, inputs), inputs)

    def _rule(self, group: dict | None, inputs: dict) -> dict | None:
        key = "IpPermissions" if self.direction == "ingress" else "IpPermissionsEgress"
        want = ip_permission(inputs)
        for perm in (group or {}).get(key, []):
            same_ports = (perm.get("IpProtocol"), perm.get("FromPort"), perm.get("ToPort")) == \
                (want["IpProtocol"], want.get("FromPort"), want.get("ToPort"))
            if same_ports and _peers(want) <= _peers(perm):
                return dict(inputs)
        return None

    def find(self, ctx, inputs, exclude=frozenset()):
        group = self._group(ctx, inputs)              # delete revokes by inputs
        return "adopted" if _in_stack(ctx, group) and self._rule(group, inputs) else None


@handler
class SecurityGroupIngressRule(_SecurityGroupRule):
    type = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
    direction = "ingress"


@handler
class SecurityGroupEgressRule(_SecurityGroupRule):
    type = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
    direction = "egress"


def _inline(perm: dict) -> dict:
    """An IpPermission in the shape of the provider's inline ingress/egress blocks."""
    return {"protocol": perm.get("IpProtocol"), "fromPort": perm.get("FromPort", 0),
            "toPort": perm.get("ToPort", 0),
            "cidrBlocks": sorted(r["CidrIp"] for r in perm.get("IpRanges", [])),
            "securityGroups": sorted(g["GroupId"] for g in perm.get("UserIdGroupPairs", []))}


def _permission(rule: dict) -> dict:
    """An inline ingress/egress block as an IpPermission."""
    perm = {"IpProtocol": str(rule.get("protocol", "-1"))}
    if perm["IpProtocol"] != "-1":
        perm.update(FromPort=int(rule.get("fromPort", 0)), ToPort=int(rule.get("toPort", 0)))
    if rule.get("cidrBlocks"):
        perm["IpRanges"] = [{"CidrIp": c} for c in rule["cidrBlocks"]]
    if rule.get("securityGroups"):
        perm["UserIdGroupPairs"] = [{"GroupId": g} for g in rule["securityGroups"]]
    return perm


@handler
class DefaultSecurityGroup(Handler):
    """The VPC's default group (EC2.2), adopted as the provider does: never created or deleted,
    its rules replaced by the declared ones (none: it admits nothing in or out)."""

    type = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
    applies = frozenset({"ingress", "egress"})
    state_only = frozenset({"revokeRulesOnDelete"})
    tagger = "ec2"

    @staticmethod
    def _group(ctx, vpc_id: str) -> dict | None:
        found = ctx.client("ec2").describe_security_groups(Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
        return found[0] if found else None

    def _converge(self, ctx, group: dict, inputs: dict) -> None:
        ec2, gid = ctx.client("ec2"), group["GroupId"]
        for key, verb in (("IpPermissions", "ingress"), ("IpPermissionsEgress", "egress")):
            if group.get(key):
                getattr(ec2, f"revoke_security_group_{verb}")(GroupId=gid,
                                                                IpPermissions=group[key])
            want = [_permission(r) for r in inputs.get(verb) or []]
            if want:
                getattr(ec2, f"authorize_security_group_{verb}")(GroupId=gid, IpPermissions=want)

    def create(self, ctx, inputs):
        group = self._group(ctx, inputs["vpcId"])
        if group is None:
            raise RuntimeError(f"VPC {inputs['vpcId']} has no default security group")
        ctx.client("ec2").create_tags(Resources=[group["GroupId"]],
                                      Tags=ctx.tag_list(inputs.get("tags")))
        self._converge(ctx, group, inputs)
        gid = group["GroupId"]
        return gid, {**inputs, "id": gid, "name": "default",
                     "arn": f"arn:aws:ec2:{ctx.region}:{ctx.account}:security-group/{gid}"}

    def modify(self, ctx, id_, old, new, changed):
        self._converge(ctx, self._group(ctx, new["vpcId"]), new)

    def read(self, ctx, id_, inputs):
        found = ctx.client("ec2").describe_security_groups(
            Filters=[{"Name": "group-id", "Values": [id_]}])["SecurityGroups"]
        if not found:
            return None
        return {"vpcId": found[0]["VpcId"],
                "ingress": [_inline(p) for p in found[0].get("IpPermissions", [])],
                "egress": [_inline(p) for p in found[0].get("IpPermissionsEgress", [])]}

    def delete(self, ctx, id_, inputs, outputs):
        """As the provider: the group stays with its VPC (it goes when the VPC goes)."""

    def find(self, ctx, inputs, exclude=frozenset()):
        group = self._group(ctx, inputs["vpcId"])
        if group is None or group["GroupId"] in exclude:
            return None
        return group["GroupId"] if adoptable(ctx, group.get("Tags"), untagged=True) else None
