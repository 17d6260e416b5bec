"""IAM policy documents, written once so every role is built the same way."""
from __future__ import annotations

import json

# Lambda needs these to attach to a VPC; AWS does not support resource-level scoping for them.
VPC_ENI_ACTIONS = ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces",
                   "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
                   "ec2:UnassignPrivateIpAddresses"]


def assume_role_policy(service: str, account: str) -> str:
    """Trust for one AWS service, only on behalf of this account: aws:SourceAccount stops the
    cross-service confused deputy (another account's resource making the service act as us)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": account}}}]})


def key_policy(account: str, region: str) -> str:
    """The stack key's policy: the account administers it (AWS's default statement, without
    which the key is locked out), and CloudWatch Logs may use it for this account's log groups
    only (an encrypted log group cannot be created without it)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountAdministers", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "kms:*",
         "Resource": "*"},
        {"Sid": "CloudWatchLogsEncrypts", "Effect": "Allow",
         "Principal": {"Service": f"logs.{region}.amazonaws.com"},
         "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                    "kms:Describe*"],
         "Resource": "*",
         "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                   f"arn:aws:logs:{region}:{account}:log-group:*"}}}]})


def endpoint_policy(account: str) -> str:
    """A VPC endpoint's policy: any action, by this account's principals only (without one the
    endpoint carries any account's requests: credentials stolen elsewhere exfiltrate through
    it). aws:PrincipalAccount is the trust boundary Prowler's
    vpc_endpoint_connections_trust_boundaries accepts."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "OnlyThisAccount", "Effect": "Allow", "Principal": "*", "Action": "*",
        "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalAccount": account}}}]})


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


def deployer_principal(arn: str) -> str:
    """The deploying identity as aws:PrincipalArn sees it: an assumed-role session
    (arn:aws:sts::A:assumed-role/R/session) is the role arn:aws:iam::A:role/R."""
    parts = arn.split(":")
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        role = parts[5].split("/")[1]
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{role}"
    return arn


def secret_policy(secret_arn: str, principals: list[str]) -> str:
    """Deny every Secrets Manager action on the secret to every principal not listed (the
    shape Prowler's secretsmanager_has_restrictive_resource_policy accepts: Principal *,
    secretsmanager:*, StringNotEquals aws:PrincipalArn and nothing else)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyAllButTheStack", "Effect": "Deny", "Principal": "*",
        "Action": "secretsmanager:*", "Resource": "*",
        "Condition": {"StringNotEquals": {"aws:PrincipalArn": sorted(set(principals))}}}]})
