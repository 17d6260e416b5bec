"""EC2 answers as the EC2 API Reference has them.

- DescribeNatGateways honours `tag:KEY`, `tag-key` and `tag-value` filters (moto 5.2 ignores
  them and lists every gateway); tap's handlers check tags themselves anyway.
- A NAT gateway's private IPv4 address is one of its subnet's addresses (CreateNatGateway:
  "If you don't provide an address, a private IPv4 address will be automatically assigned"
  from the subnet); moto picks a random 10.x address that may lie outside the VPC.
- DescribeNetworkAcls accepts the `network-acl-id` filter (moto 5.2: HTTP 500).
"""
from __future__ import annotations


def _honour_nat_gateway_tag_filters() -> None:
    from moto.ec2.models.nat_gateways import NatGatewayBackend
    from moto.ec2.utils import is_tag_filter, tag_filter_matches

    describe = NatGatewayBackend.describe_nat_gateways

    def describe_nat_gateways(self, filters, nat_gateway_ids):
        wanted = {k: v for k, v in (filters or {}).items() if is_tag_filter(k)}
        return [gateway for gateway in describe(self, filters, nat_gateway_ids)
                if all(tag_filter_matches(gateway, k, v) for k, v in wanted.items())]

    NatGatewayBackend.describe_nat_gateways = describe_nat_gateways


def _nat_address_inside_its_subnet() -> None:
    """moto's NatGateway draws a random 10.x address and hands it to a new network interface;
    without one the interface draws from its subnet's CIDR, as AWS does."""
    from moto.ec2.models import nat_gateways

    nat_gateways.random_private_ip = lambda *args, **kwargs: None
    original_init = nat_gateways.NatGateway.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.private_ip = self._eni.private_ip_address

    nat_gateways.NatGateway.__init__ = __init__


def _network_acl_id_filter() -> None:
    from moto.ec2.models.network_acls import NetworkAcl

    get_filter_value = NetworkAcl.get_filter_value

    def filter_value(self, filter_name, method_name=None):
        if filter_name == "network-acl-id":
            return self.id
        return get_filter_value(self, filter_name, method_name)

    NetworkAcl.get_filter_value = filter_value


def install(endpoint: str) -> None:
    _honour_nat_gateway_tag_filters()
    _network_acl_id_filter()
    _nat_address_inside_its_subnet()
