"""VPC, subnets over the environment's AZs, internet and NAT gateways, routes, flow logs."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from ..config import Settings
from ..naming import PhysicalNames
from .policies import assume_role_policy, policy_document


@dataclass
class Network:
    vpc: aws.ec2.Vpc
    public_subnets: list[aws.ec2.Subnet]
    private_subnets: list[aws.ec2.Subnet]
    nat_gateways: list[aws.ec2.NatGateway]




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
    for i, subnet in enumerate(private):
        rt = aws.ec2.RouteTable(f"private-rt-{i}-{sfx}", vpc_id=vpc.id,
                                tags={**tags, "Name": f"tap-private-rt-{i}-{sfx}"}, opts=opts)
        aws.ec2.Route(f"private-nat-route-{i}-{sfx}", route_table_id=rt.id,
                      destination_cidr_block="0.0.0.0/0",
                      nat_gateway_id=nats[i % len(nats)].id, opts=opts)
        aws.ec2.RouteTableAssociation(f"private-rta-{i}-{sfx}", subnet_id=subnet.id,
                                      route_table_id=rt.id, opts=opts)

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
    return Network(vpc, public, private, nats)
