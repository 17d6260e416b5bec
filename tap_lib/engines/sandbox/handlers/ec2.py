"""VPC, subnets, gateways, routes, Elastic IPs, security groups and their rules, flow logs.

Every `find` returns only what `adoptable` says is the resource's own (its URN tag, or for a
route, association or rule its table's or group's stack), whatever filters EC2 honoured."""
from __future__ import annotations

from ....aws import ip_permission
from ....naming import short_hash
from .base import (Handler, adoptable, by_urn_filter, first_adoptable, handler, ignore_missing,
                   tag_spec)


def _table(ctx, table_id: str) -> dict | None:
    found = ctx.client("ec2").describe_route_tables(
        Filters=[{"Name": "route-table-id", "Values": [table_id]}])["RouteTables"]
    return found[0] if found else None


def _in_stack(ctx, parent: dict | None) -> bool:
    """An untagged kind is adopted only inside a parent (table, group) of ctx's stack."""
    return parent is not None and adoptable(ctx, parent.get("Tags"), untagged=True, parent=True)


@handler
class Vpc(Handler):
    type = "aws:ec2/vpc:Vpc"
    applies = frozenset({"enableDnsSupport", "enableDnsHostnames"})
    tagger = "ec2"

    def create(self, ctx, inputs):
        ec2 = ctx.client("ec2")
        vpc = ec2.create_vpc(CidrBlock=inputs["cidrBlock"],
                             TagSpecifications=tag_spec("vpc", inputs, ctx))["Vpc"]
        self._attributes(ec2, vpc["VpcId"], inputs)
        return vpc["VpcId"], {**inputs, "id": vpc["VpcId"],
                              "arn": f"arn:aws:ec2:{ctx.region}:{ctx.account}:vpc/{vpc['VpcId']}"}

    @staticmethod
    def _attributes(ec2, vpc_id, inputs):
        ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsSupport={
            "Value": bool(inputs.get("enableDnsSupport", True))})
        ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={
            "Value": bool(inputs.get("enableDnsHostnames", False))})

    def read(self, ctx, id_, inputs):
        ec2 = ctx.client("ec2")
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [id_]}])["Vpcs"]
        if not vpcs:
            return None
        attr = lambda name: ec2.describe_vpc_attribute(VpcId=id_, Attribute=name)  # noqa: E731
        return {"cidrBlock": vpcs[0]["CidrBlock"],
                "enableDnsSupport": attr("enableDnsSupport")["EnableDnsSupport"]["Value"],
                "enableDnsHostnames": attr("enableDnsHostnames")["EnableDnsHostnames"]["Value"]}

    def modify(self, ctx, id_, old, new, changed):
        self._attributes(ctx.client("ec2"), id_, new)

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("ec2").delete_vpc, VpcId=id_)

    def find(self, ctx, inputs, exclude=frozenset()):
        return first_adoptable(ctx, ctx.client("ec2").describe_vpcs(
            Filters=by_urn_filter(ctx))["Vpcs"], "VpcId", exclude)


@handler
class InternetGateway(Handler):
    type = "aws:ec2/internetGateway:InternetGateway"
    applies = frozenset({"vpcId"})
    tagger = "ec2"

    def create(self, ctx, inputs):
        ec2 = ctx.client("ec2")
        igw = ec2.create_internet_gateway(
            TagSpecifications=tag_spec("internet-gateway", inputs, ctx))["InternetGateway"]
        ec2.attach_internet_gateway(InternetGatewayId=igw["InternetGatewayId"],
                                    VpcId=inputs["vpcId"])
        return igw["InternetGatewayId"], {**inputs, "id": igw["InternetGatewayId"]}

    def modify(self, ctx, id_, old, new, changed):
        # As the provider does: detach from the old VPC, attach to the new one, same gateway.
        # From the attachments the gateway has now, not the recorded ones: a move whose answer
        # was lost already happened.
        ec2 = ctx.client("ec2")
        attached = self._attached(ec2, id_)
        for vpc in attached - {new.get("vpcId")}:
            ignore_missing(ec2.detach_internet_gateway, InternetGatewayId=id_, VpcId=vpc,
                           codes=("Gateway.NotAttached",))
        if new.get("vpcId") and new["vpcId"] not in attached:
            ec2.attach_internet_gateway(InternetGatewayId=id_, VpcId=new["vpcId"])

    @staticmethod
    def _attached(ec2, id_) -> set[str]:
        found = ec2.describe_internet_gateways(
            Filters=[{"Name": "internet-gateway-id", "Values": [id_]}])["InternetGateways"]
        return {a["VpcId"] for g in found for a in g.get("Attachments", [])}

    def delete(self, ctx, id_, inputs, outputs):
        ec2 = ctx.client("ec2")
        for vpc in self._attached(ec2, id_):   # where it is now (a lost move happened)
            ignore_missing(ec2.detach_internet_gateway, InternetGatewayId=id_, VpcId=vpc,
                           codes=("Gateway.NotAttached",))
        ignore_missing(ec2.delete_internet_gateway, InternetGatewayId=id_)

    def read(self, ctx, id_, inputs):
        found = ctx.client("ec2").describe_internet_gateways(
            Filters=[{"Name": "internet-gateway-id", "Values": [id_]}])["InternetGateways"]
        if not found:
            return None
        attachments = found[0].get("Attachments") or []
        return {"vpcId": attachments[0]["VpcId"] if attachments else None}

    def find(self, ctx, inputs, exclude=frozenset()):
        return first_adoptable(ctx, ctx.client("ec2").describe_internet_gateways(
            Filters=by_urn_filter(ctx))["InternetGateways"], "InternetGatewayId", exclude)


@handler
class Subnet(Handler):
    type = "aws:ec2/subnet:Subnet"
    applies = frozenset({"mapPublicIpOnLaunch"})
    unique = ("vpcId", "cidrBlock")   # a CIDR is taken once per VPC
    tagger = "ec2"

    def create(self, ctx, inputs):
        ec2 = ctx.client("ec2")
        sn = ec2.create_subnet(VpcId=inputs["vpcId"], CidrBlock=inputs["cidrBlock"],
                               AvailabilityZone=inputs["availabilityZone"],
                               TagSpecifications=tag_spec("subnet", inputs, ctx))["Subnet"]
        self.modify(ctx, sn["SubnetId"], {}, inputs, {"mapPublicIpOnLaunch"})
        return sn["SubnetId"], {**inputs, "id": sn["SubnetId"], "arn": sn.get("SubnetArn", "")}

    def modify(self, ctx, id_, old, new, changed):
        ctx.client("ec2").modify_subnet_attribute(SubnetId=id_, MapPublicIpOnLaunch={
            "Value": bool(new.get("mapPublicIpOnLaunch", False))})

    def read(self, ctx, id_, inputs):
        found = ctx.client("ec2").describe_subnets(
            Filters=[{"Name": "subnet-id", "Values": [id_]}])["Subnets"]
        if not found:
            return None
        sn = found[0]
        return {"vpcId": sn["VpcId"], "cidrBlock": sn["CidrBlock"],
                "availabilityZone": sn["AvailabilityZone"],
                "mapPublicIpOnLaunch": sn["MapPublicIpOnLaunch"]}

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("ec2").delete_subnet, SubnetId=id_)

    def find(self, ctx, inputs, exclude=frozenset()):
        return first_adoptable(ctx, ctx.client("ec2").describe_subnets(
            Filters=by_urn_filter(ctx))["Subnets"], "SubnetId", exclude)


@handler
class RouteTable(Handler):
    type = "aws:ec2/routeTable:RouteTable"
    tagger = "ec2"

    def create(self, ctx, inputs):
        rt = ctx.client("ec2").create_route_table(
            VpcId=inputs["vpcId"], TagSpecifications=tag_spec("route-table", inputs, ctx))
        rid = rt["RouteTable"]["RouteTableId"]
        return rid, {**inputs, "id": rid}

    def read(self, ctx, id_, inputs):
        found = ctx.client("ec2").describe_route_tables(
            Filters=[{"Name": "route-table-id", "Values": [id_]}])["RouteTables"]
        return {"vpcId": found[0]["VpcId"]} if found else None

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("ec2").delete_route_table, RouteTableId=id_)

    def find(self, ctx, inputs, exclude=frozenset()):
        return first_adoptable(ctx, ctx.client("ec2").describe_route_tables(
            Filters=by_urn_filter(ctx))["RouteTables"], "RouteTableId", exclude)


@handler
class Route(Handler):
    type = "aws:ec2/route:Route"
    unique = ("routeTableId", "destinationCidrBlock")
    applies = frozenset({"natGatewayId", "gatewayId"})

    @staticmethod
    def _target(inputs: dict) -> dict:
        if inputs.get("natGatewayId"):
            return {"NatGatewayId": inputs["natGatewayId"]}
        return {"GatewayId": inputs["gatewayId"]}

    def modify(self, ctx, id_, old, new, changed):
        # A new target for the same destination: ReplaceRoute, as the provider's update does.
        ctx.client("ec2").replace_route(RouteTableId=new["routeTableId"],
                                        DestinationCidrBlock=new["destinationCidrBlock"],
                                        **self._target(new))

    def create(self, ctx, inputs):
        ctx.client("ec2").create_route(RouteTableId=inputs["routeTableId"],
                                       DestinationCidrBlock=inputs["destinationCidrBlock"],
                                       **self._target(inputs))
        rid = f"r-{inputs['routeTableId']}-{short_hash(inputs['destinationCidrBlock'])}"
        return rid, {**inputs, "id": rid}

    def read(self, ctx, id_, inputs):
        return self._route(_table(ctx, inputs["routeTableId"]), inputs)

    @staticmethod
    def _route(table: dict | None, inputs: dict) -> dict | None:
        for route in (table or {}).get("Routes", []):
            if route.get("DestinationCidrBlock") == inputs["destinationCidrBlock"]:
                return {"routeTableId": inputs["routeTableId"],
                        "destinationCidrBlock": route["DestinationCidrBlock"],
                        **({"natGatewayId": route["NatGatewayId"]} if route.get("NatGatewayId")
                           else {"gatewayId": route.get("GatewayId")})}
        return None

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("ec2").delete_route, RouteTableId=inputs["routeTableId"],
                       DestinationCidrBlock=inputs["destinationCidrBlock"])

    def find(self, ctx, inputs, exclude=frozenset()):
        table = _table(ctx, inputs["routeTableId"])
        return "adopted" if _in_stack(ctx, table) and self._route(table, inputs) else None


@handler
class RouteTableAssociation(Handler):
    type = "aws:ec2/routeTableAssociation:RouteTableAssociation"
    unique = ("subnetId",)            # a subnet has one route table
    applies = frozenset({"routeTableId"})

    def modify(self, ctx, id_, old, new, changed):
        # ReplaceRouteTableAssociation moves the subnet to the new table under a new
        # association id, which becomes the resource's id (the provider does the same).
        out = ctx.client("ec2").replace_route_table_association(
            AssociationId=id_, RouteTableId=new["routeTableId"])
        return {"id": out["NewAssociationId"]}

    def create(self, ctx, inputs):
        assoc = ctx.client("ec2").associate_route_table(RouteTableId=inputs["routeTableId"],
                                                        SubnetId=inputs["subnetId"])
        return assoc["AssociationId"], {**inputs, "id": assoc["AssociationId"]}

    def read(self, ctx, id_, inputs):
        found = ctx.client("ec2").describe_route_tables(
            Filters=[{"Name": "association.route-table-association-id", "Values": [id_]}])
        return dict(inputs) if found["RouteTables"] else None

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("ec2").disassociate_route_table, AssociationId=id_)

    def find(self, ctx, inputs, exclude=frozenset()):
        table = _table(ctx, inputs["routeTableId"])
        for assoc in (table.get("Associations", []) if _in_stack(ctx, table) else []):
            if assoc.get("SubnetId") == inputs["subnetId"] and \
                    assoc["RouteTableAssociationId"] not in exclude:
                return assoc["RouteTableAssociationId"]
        return None


@handler
class Eip(Handler):
    type = "aws:ec2/eip:Eip"
    tagger = "ec2"

    def create(self, ctx, inputs):
        addr = ctx.client("ec2").allocate_address(
            Domain=inputs.get("domain", "vpc"),
            TagSpecifications=tag_spec("elastic-ip", inputs, ctx))
        return addr["AllocationId"], {**inputs, "id": addr["AllocationId"],
                                      "allocationId": addr["AllocationId"],
                                      "publicIp": addr["PublicIp"]}

    def read(self, ctx, id_, inputs):
        found = ctx.client("ec2").describe_addresses(
            Filters=[{"Name": "allocation-id", "Values": [id_]}])["Addresses"]
        return {"domain": found[0]["Domain"], "publicIp": found[0]["PublicIp"]} if found else None

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("ec2").release_address, AllocationId=id_,
                       codes=("InvalidAllocationID.NotFound",))

    def find(self, ctx, inputs, exclude=frozenset()):
        return first_adoptable(ctx, ctx.client("ec2").describe_addresses(
            Filters=by_urn_filter(ctx))["Addresses"], "AllocationId", exclude)


@handler
class NatGateway(Handler):
    type = "aws:ec2/natGateway:NatGateway"
    unique = ("allocationId",)        # an Elastic IP serves one gateway at a time
    tagger = "ec2"

    def create(self, ctx, inputs):
        nat = ctx.client("ec2").create_nat_gateway(
            AllocationId=inputs["allocationId"], SubnetId=inputs["subnetId"],
            TagSpecifications=tag_spec("natgateway", inputs, ctx))["NatGateway"]
        return nat["NatGatewayId"], {**inputs, "id": nat["NatGatewayId"]}

    def read(self, ctx, id_, inputs):
        found = [n for n in ctx.client("ec2").describe_nat_gateways(
            NatGatewayIds=[id_]).get("NatGateways", []) if n["State"] != "deleted"]
        if not found:
            return None
        return {"subnetId": found[0]["SubnetId"],
                "allocationId": found[0]["NatGatewayAddresses"][0]["AllocationId"]}

    def delete(self, ctx, id_, inputs, outputs):
        ec2 = ctx.client("ec2")
        ignore_missing(ec2.delete_nat_gateway, NatGatewayId=id_)
        # AWS frees the Elastic IP once the gateway is deleted; moto keeps it associated.
        for addr in ec2.describe_addresses(Filters=[{"Name": "allocation-id", "Values": [
                inputs["allocationId"]]}])["Addresses"]:
            if addr.get("AssociationId"):
                ignore_missing(ec2.disassociate_address, AssociationId=addr["AssociationId"],
                               codes=("InvalidAssociationID.NotFound",))

    def find(self, ctx, inputs, exclude=frozenset()):
        found = [n for n in ctx.client("ec2").describe_nat_gateways(
            Filter=by_urn_filter(ctx))["NatGateways"] if n["State"] != "deleted"]
        return first_adoptable(ctx, found, "NatGatewayId", exclude)


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


@handler
class FlowLog(Handler):
    type = "aws:ec2/flowLog:FlowLog"
    unique = ("vpcId", "logDestination", "trafficType")   # else FlowLogAlreadyExists
    tagger = "ec2"

    def create(self, ctx, inputs):
        out = ctx.client("ec2").create_flow_logs(
            ResourceIds=[inputs["vpcId"]], ResourceType="VPC",
            TrafficType=inputs.get("trafficType", "ALL"),
            LogDestinationType=inputs.get("logDestinationType", "cloud-watch-logs"),
            LogDestination=inputs["logDestination"],
            DeliverLogsPermissionArn=inputs.get("iamRoleArn"),
            TagSpecifications=tag_spec("vpc-flow-log", inputs, ctx))
        if out.get("Unsuccessful"):
            raise RuntimeError(f"flow log not created: {out['Unsuccessful']}")
        fid = out["FlowLogIds"][0]
        return fid, {**inputs, "id": fid}

    def read(self, ctx, id_, inputs):
        found = ctx.client("ec2").describe_flow_logs(
            Filters=[{"Name": "flow-log-id", "Values": [id_]}])["FlowLogs"]
        return {"vpcId": found[0]["ResourceId"], "trafficType": found[0]["TrafficType"]} \
            if found else None

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("ec2").delete_flow_logs, FlowLogIds=[id_])

    def find(self, ctx, inputs, exclude=frozenset()):
        return first_adoptable(ctx, ctx.client("ec2").describe_flow_logs(
            Filters=[{"Name": "resource-id", "Values": [inputs["vpcId"]]}])["FlowLogs"],
            "FlowLogId", exclude)
