"""VPC, subnets, gateways, routes, Elastic IPs, flow logs (security groups: security_groups.py,
the default network ACL: network_acls.py, endpoints: vpc_endpoints.py).

Every `find` returns only what `adoptable` says is the resource's own (its URN tag, or for a
route, association or rule its table's or group's stack), whatever filters EC2 honoured."""
from __future__ import annotations

from ....naming import short_hash
from .base import (
    Handler,
    adoptable,
    by_urn_filter,
    first_adoptable,
    handler,
    ignore_missing,
    tag_spec,
)


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
                              "arn": f"arn:aws:ec2:{ctx.region}:{ctx.account}:vpc/{vpc['VpcId']}",
                              **self._defaults(ec2, vpc["VpcId"])}

    @staticmethod
    def _defaults(ec2, vpc_id) -> dict:
        """What AWS creates with a VPC: its default security group and network ACL, and main
        route table (the provider's computed defaultSecurityGroupId and friends)."""
        by_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
        groups = ec2.describe_security_groups(Filters=by_vpc + [
            {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
        acls = ec2.describe_network_acls(Filters=by_vpc + [
            {"Name": "default", "Values": ["true"]}])["NetworkAcls"]
        tables = ec2.describe_route_tables(Filters=by_vpc + [
            {"Name": "association.main", "Values": ["true"]}])["RouteTables"]
        return {"defaultSecurityGroupId": groups[0]["GroupId"] if groups else None,
                "defaultNetworkAclId": acls[0]["NetworkAclId"] if acls else None,
                "mainRouteTableId": tables[0]["RouteTableId"] if tables else None}

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
                "enableDnsHostnames": attr("enableDnsHostnames")["EnableDnsHostnames"]["Value"],
                **self._defaults(ec2, id_)}

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
