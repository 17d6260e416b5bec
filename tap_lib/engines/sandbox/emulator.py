"""The sandbox's emulator process: moto's server, with two corrections.

moto evaluates bucket policies but ignores their Condition blocks, so the stack's TLS-only
policy (Deny s3:* when aws:SecureTransport is false) would deny every request. The sandbox
endpoint stands in for AWS's HTTPS endpoint, so requests are treated as TLS: a statement that
applies only to insecure transport does not apply. Every other statement is evaluated by moto
unchanged.

moto 5.2 ignores tag filters on DescribeNatGateways and lists every gateway; AWS honours them
(`_honour_nat_gateway_tag_filters`). tap's handlers check tags themselves anyway.
"""
from __future__ import annotations

import sys

from moto.iam import access_control

_evaluate = access_control.IAMPolicyStatement.is_action_permitted


def _insecure_transport_only(statement: dict) -> bool:
    value = ((statement.get("Condition") or {}).get("Bool") or {}).get("aws:SecureTransport")
    return value is not None and str(value).lower() == "false"


def _is_action_permitted(self, action, resource="*", principal=None,
                         incoming_condition_values=None):
    if _insecure_transport_only(self._statement):
        return access_control.PermissionResult.NEUTRAL
    return _evaluate(self, action, resource, principal, incoming_condition_values)


def _honour_nat_gateway_tag_filters() -> None:
    """`tag:KEY`, `tag-key` and `tag-value` filters on DescribeNatGateways, as AWS has them."""
    from moto.ec2.models.nat_gateways import NatGatewayBackend
    from moto.ec2.utils import is_tag_filter, tag_filter_matches

    describe = NatGatewayBackend.describe_nat_gateways

    def describe_nat_gateways(self, filters, nat_gateway_ids):
        wanted = {k: v for k, v in (filters or {}).items() if is_tag_filter(k)}
        return [gateway for gateway in describe(self, filters, nat_gateway_ids)
                if all(tag_filter_matches(gateway, k, v) for k, v in wanted.items())]

    NatGatewayBackend.describe_nat_gateways = describe_nat_gateways


def main(argv: list[str]) -> None:
    access_control.IAMPolicyStatement.is_action_permitted = _is_action_permitted
    _honour_nat_gateway_tag_filters()
    from moto.server import main as moto_main

    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
