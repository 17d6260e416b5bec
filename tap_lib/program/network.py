"""VPC, subnets over the environment's AZs, internet and NAT gateways, routes, flow logs; the
VPC's default security group and network ACL locked down (EC2.2, EC2.21); VPC endpoints so the
Lambdas reach S3 and Secrets Manager without the NAT (EC2.10)."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from ..config import Settings
from ..naming import PhysicalNames
from .policies import assume_role_policy, endpoint_policy, policy_document


@dataclass
class Network:
    vpc: aws.ec2.Vpc
    public_subnets: list[aws.ec2.Subnet]
    private_subnets: list[aws.ec2.Subnet]
    nat_gateways: list[aws.ec2.NatGateway]
    private_route_tables: list[aws.ec2.RouteTable]
    account: str = ""      # endpoint policies admit this account's principals only

# EC2.21: the default network ACL (every subnet's, as the stack creates no other) admits the
# VPC itself, and from anywhere only the ephemeral ports replies come back on (through the NAT
# and the internet gateway), with 3389 (RDP, inside that range) cut out: never 22 or 3389.
# Outbound stays open (the security groups decide).
NACL_INGRESS = (
    {"rule_no": 100, "action": "allow", "protocol": "-1", "from_port": 0, "to_port": 0,
     "cidr_block": None},                                   # None: the VPC's CIDR
    *({"rule_no": rule, "action": "allow", "protocol": proto, "from_port": low,
       "to_port": high, "cidr_block": "0.0.0.0/0"}
      for rule, proto, low, high in ((200, "tcp", 1024, 3388), (201, "tcp", 3390, 65535),
                                     (210, "udp", 1024, 3388), (211, "udp", 3390, 65535))),
)
NACL_EGRESS = (
    {"rule_no": 100, "action": "allow", "protocol": "-1", "from_port": 0, "to_port": 0,
     "cidr_block": "0.0.0.0/0"},
)



def build_network(s: Settings, names: PhysicalNames, kms_key: aws.kms.Key, account: str,
                  opts: pulumi.ResourceOptions) -> Network:
    tags = s.all_tags()
    sfx = s.suffix
    vpc = aws.ec2.Vpc(f"vpc-{sfx}", cidr_block=s.vpc.cidr, enable_dns_support=True,
                      enable_dns_hostnames=True, tags={**tags, "Name": f"tap-vpc-{sfx}"}, opts=opts)
    vpc_opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[vpc]))
    igw = aws.ec2.InternetGateway(f"igw-{sfx}", vpc_id=vpc.id,
                                  tags={**tags, "Name": f"tap-igw-{sfx}"}, opts=opts)
    public_cidrs, private_cidrs = s.subnet_cidrs()
    public, private = [], []
    for i, az in enumerate(s.availability_zones):
        public.append(aws.ec2.Subnet(
            f"public-subnet-{i}-{sfx}", vpc_id=vpc.id, cidr_block=public_cidrs[i],
            availability_zone=az, map_public_ip_on_launch=False,
            tags={**tags, "Name": f"tap-public-{az}-{sfx}", "Tier": "public"}, opts=opts))
        private.append(aws.ec2.Subnet(
            f"private-subnet-{i}-{sfx}", vpc_id=vpc.id, cidr_block=private_cidrs[i],
            availability_zone=az, map_public_ip_on_launch=False,
            tags={**tags, "Name": f"tap-private-{az}-{sfx}", "Tier": "private"}, opts=opts))

    public_rt = aws.ec2.RouteTable(f"public-rt-{sfx}", vpc_id=vpc.id,
                                   tags={**tags, "Name": f"tap-public-rt-{sfx}"}, opts=opts)
    aws.ec2.Route(f"public-default-route-{sfx}", route_table_id=public_rt.id,
                  destination_cidr_block="0.0.0.0/0", gateway_id=igw.id, opts=opts)
    for i, subnet in enumerate(public):
        aws.ec2.RouteTableAssociation(f"public-rta-{i}-{sfx}", subnet_id=subnet.id,
                                      route_table_id=public_rt.id, opts=opts)

    nats = []
    for i in range(s.nat_count):
        eip = aws.ec2.Eip(f"nat-eip-{i}-{sfx}", domain="vpc",
                          tags={**tags, "Name": f"tap-nat-eip-{i}-{sfx}"}, opts=vpc_opts)
        nats.append(aws.ec2.NatGateway(
            f"nat-{i}-{sfx}", allocation_id=eip.id, subnet_id=public[i].id,
            tags={**tags, "Name": f"tap-nat-{i}-{sfx}"},
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[igw]))))
    private_rts = []
    for i, subnet in enumerate(private):
        rt = aws.ec2.RouteTable(f"private-rt-{i}-{sfx}", vpc_id=vpc.id,
                                tags={**tags, "Name": f"tap-private-rt-{i}-{sfx}"}, opts=opts)
        aws.ec2.Route(f"private-nat-route-{i}-{sfx}", route_table_id=rt.id,
                      destination_cidr_block="0.0.0.0/0",
                      nat_gateway_id=nats[i % len(nats)].id, opts=opts)
        aws.ec2.RouteTableAssociation(f"private-rta-{i}-{sfx}", subnet_id=subnet.id,
                                      route_table_id=rt.id, opts=opts)
        private_rts.append(rt)

    log_group = aws.cloudwatch.LogGroup(
        f"flow-logs-{sfx}", name=names.flow_log_group,
        retention_in_days=s.vpc.flow_logs_retention_days, kms_key_id=kms_key.arn, tags=tags,
        opts=opts)
    role = aws.iam.Role(f"flow-logs-role-{sfx}", name=names.flow_logs_role,
                        assume_role_policy=assume_role_policy("vpc-flow-logs.amazonaws.com",
                                                              account),
                        tags=tags, opts=opts)
    aws.iam.RolePolicy(f"flow-logs-policy-{sfx}", role=role.id, policy=log_group.arn.apply(
        lambda arn: policy_document(
            (["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
             [arn, f"{arn}:*"]))), opts=opts)
    aws.ec2.FlowLog(f"flow-log-{sfx}", vpc_id=vpc.id, traffic_type="ALL",
                    log_destination_type="cloud-watch-logs", log_destination=log_group.arn,
                    iam_role_arn=role.arn, tags=tags, opts=opts)
    _lock_down_defaults(s, vpc, opts)
    return Network(vpc, public, private, nats, private_rts, account)


def _lock_down_defaults(s: Settings, vpc: aws.ec2.Vpc, opts: pulumi.ResourceOptions) -> None:
    """EC2.2: the default security group (what anything launched without a group gets) admits
    nothing in or out; adopting it with no rules revokes AWS's default ones. EC2.21: the default
    network ACL gets explicit rules (NACL_INGRESS/NACL_EGRESS) in place of allow-all."""
    tags = s.all_tags()
    aws.ec2.DefaultSecurityGroup(f"default-sg-{s.suffix}", vpc_id=vpc.id, ingress=[], egress=[],
                                 tags={**tags, "Name": f"tap-default-sg-{s.suffix}"}, opts=opts)

    def rules(entries, cidr):
        return [{**{k: v for k, v in e.items() if k != "cidr_block"},
                 "cidr_block": e["cidr_block"] or cidr} for e in entries]

    aws.ec2.DefaultNetworkAcl(
        f"default-nacl-{s.suffix}", default_network_acl_id=vpc.default_network_acl_id,
        ingress=rules(NACL_INGRESS, s.vpc.cidr), egress=rules(NACL_EGRESS, s.vpc.cidr),
        tags={**tags, "Name": f"tap-default-nacl-{s.suffix}"}, opts=opts)


def build_endpoints(s: Settings, names: PhysicalNames, net: Network,
                    lambda_sg: aws.ec2.SecurityGroup, opts: pulumi.ResourceOptions) -> None:
    """The S3 gateway endpoint on the private route tables (free), and the environment's
    interface endpoints (vpc.interface_endpoints) in the private subnets with private DNS, so
    the SDK's default hostnames resolve to them: only the Lambdas' group may reach them. Each
    endpoint's policy admits only the account's principals (trust boundaries)."""
    tags, sfx = s.all_tags(), s.suffix
    policy = endpoint_policy(net.account)
    aws.ec2.VpcEndpoint(
        f"s3-endpoint-{sfx}", vpc_id=net.vpc.id, service_name=f"com.amazonaws.{s.region}.s3",
        vpc_endpoint_type="Gateway", route_table_ids=[rt.id for rt in net.private_route_tables],
        policy=policy, tags={**tags, "Name": f"tap-s3-endpoint-{sfx}"}, opts=opts)
    if not s.vpc.interface_endpoints:
        return
    sg = aws.ec2.SecurityGroup(
        f"endpoints-sg-{sfx}", name=names.endpoint_security_group, vpc_id=net.vpc.id,
        description="Interface endpoints: HTTPS from the Lambdas only", tags=tags, opts=opts)
    aws.vpc.SecurityGroupIngressRule(
        f"endpoints-from-lambda-{sfx}", security_group_id=sg.id,
        referenced_security_group_id=lambda_sg.id, ip_protocol="tcp", from_port=443,
        to_port=443, description="HTTPS from the Lambdas", opts=opts)
    for service in s.vpc.interface_endpoints:
        aws.ec2.VpcEndpoint(
            f"{service}-endpoint-{sfx}", vpc_id=net.vpc.id,
            service_name=f"com.amazonaws.{s.region}.{service}", vpc_endpoint_type="Interface",
            subnet_ids=[sn.id for sn in net.private_subnets], security_group_ids=[sg.id],
            private_dns_enabled=True, policy=policy,
            tags={**tags, "Name": f"tap-{service}-endpoint-{sfx}"},
            opts=opts)
