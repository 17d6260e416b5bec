"""VPC endpoints (EC2.10): gateway endpoints on route tables, interface endpoints in subnets, each
with its policy (trust boundaries: PolicyDocument, kept by moto and read back).

The emulator keeps an endpoint's private DNS flag but resolves no names through it (moto runs
no DNS), so whether a Lambda really reaches a service through the endpoint is not proven here:
verify checks the endpoint's configuration, and says so."""
from __future__ import annotations

import json

from .base import (
    Handler,
    by_urn_filter,
    first_adoptable,
    handler,
    ignore_missing,
    tag_spec,
)

# Input -> (CreateVpcEndpoint parameter, ModifyVpcEndpoint add/remove parameter stem)
LISTS = {"routeTableIds": ("RouteTableIds", "RouteTableIds"),
         "subnetIds": ("SubnetIds", "SubnetIds"),
         "securityGroupIds": ("SecurityGroupIds", "SecurityGroupIds")}


def _live(ctx, id_: str) -> dict | None:
    # by id, not by the vpc-endpoint-id filter: moto answers that filter with an HTTP 500
    found = (ignore_missing(ctx.client("ec2").describe_vpc_endpoints, VpcEndpointIds=[id_])
             or {}).get("VpcEndpoints", [])
    found = [e for e in found if e.get("State", "").lower() != "deleted"]
    return found[0] if found else None


def _same_document(live, declared) -> bool:
    try:
        return json.loads(live or "null") == json.loads(declared or "null")
    except (TypeError, ValueError):
        return False


@handler
class VpcEndpoint(Handler):
    type = "aws:ec2/vpcEndpoint:VpcEndpoint"
    applies = frozenset({"routeTableIds", "subnetIds", "securityGroupIds", "policy",
                         "privateDnsEnabled"})
    state_only = frozenset({"autoAccept"})
    tagger = "ec2"

    def create(self, ctx, inputs):
        kind = inputs.get("vpcEndpointType", "Gateway")
        kwargs = {param: list(inputs[key]) for key, (param, _) in LISTS.items()
                  if inputs.get(key)}
        if kind == "Interface":
            kwargs["PrivateDnsEnabled"] = bool(inputs.get("privateDnsEnabled", False))
        if inputs.get("policy"):
            kwargs["PolicyDocument"] = inputs["policy"]
        ep = ctx.client("ec2").create_vpc_endpoint(
            VpcId=inputs["vpcId"], ServiceName=inputs["serviceName"], VpcEndpointType=kind,
            TagSpecifications=tag_spec("vpc-endpoint", inputs, ctx), **kwargs)["VpcEndpoint"]
        eid = ep["VpcEndpointId"]
        return eid, {**inputs, "id": eid, "vpcEndpointType": kind,
                     "privateDnsEnabled": ep.get("PrivateDnsEnabled", False),
                     "arn": f"arn:aws:ec2:{ctx.region}:{ctx.account}:vpc-endpoint/{eid}"}

    def modify(self, ctx, id_, old, new, changed):
        kwargs = {}
        for key in changed & set(LISTS):
            before, after = set(old.get(key) or []), set(new.get(key) or [])
            stem = LISTS[key][1]
            if after - before:
                kwargs[f"Add{stem}"] = sorted(after - before)
            if before - after:
                kwargs[f"Remove{stem}"] = sorted(before - after)
        if "privateDnsEnabled" in changed:
            # In place for an interface endpoint (the table replaces a gateway's: CustomizeDiff).
            # moto accepts the parameter and keeps the old flag: read() then shows the drift.
            kwargs["PrivateDnsEnabled"] = bool(new.get("privateDnsEnabled"))
        if "policy" in changed:
            # no policy: AWS's default (full access), as an endpoint created without one has
            if new.get("policy"):
                kwargs["PolicyDocument"] = new["policy"]
            else:
                kwargs["ResetPolicy"] = True
        if kwargs:
            ctx.client("ec2").modify_vpc_endpoint(VpcEndpointId=id_, **kwargs)

    def read(self, ctx, id_, inputs):
        ep = _live(ctx, id_)
        if ep is None:
            return None
        out = {"vpcId": ep["VpcId"], "serviceName": ep["ServiceName"],
                "vpcEndpointType": ep.get("VpcEndpointType"),
                "routeTableIds": sorted(ep.get("RouteTableIds") or []),
                "subnetIds": sorted(ep.get("SubnetIds") or []),
                "securityGroupIds": sorted(g["GroupId"] for g in ep.get("Groups") or []),
                "privateDnsEnabled": ep.get("PrivateDnsEnabled", False)}
        if inputs.get("policy"):
            # the declared text where the live document means the same (AWS reformats it), so
            # only a changed policy reads as drift
            out["policy"] = (inputs["policy"] if _same_document(ep.get("PolicyDocument"),
                                                               inputs["policy"])
                             else ep.get("PolicyDocument"))
        return out

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("ec2").delete_vpc_endpoints, VpcEndpointIds=[id_])

    def find(self, ctx, inputs, exclude=frozenset()):
        found = [e for e in ctx.client("ec2").describe_vpc_endpoints(
            Filters=by_urn_filter(ctx))["VpcEndpoints"]
            if e.get("State", "").lower() != "deleted"]
        return first_adoptable(ctx, found, "VpcEndpointId", exclude)
