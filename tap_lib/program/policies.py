"""IAM policy documents, written once so every role is built the same way."""
from __future__ import annotations

import json

# Lambda needs these to attach to a VPC; AWS does not support resource-level scoping for them.
VPC_ENI_ACTIONS = ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces",
                   "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
                   "ec2:UnassignPrivateIpAddresses"]


def assume_role_policy(service: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})


def policy_document(*statements: tuple[list[str], list[str]]) -> str:
    """Allow-statements from (actions, resources) pairs."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": actions, "Resource": resources}
        for actions, resources in statements]})


def tls_only_bucket_policy(bucket_arn: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})
