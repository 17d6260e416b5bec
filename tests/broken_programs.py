"""Broken variants of the TapStack program, one per preflight rule.

Each variant is the real program (`define_stack`) with one resource class swapped, one argument
changed or one resource left out while it runs - the way the seed's first version was broken -
so a rule is shown firing on the stack it guards, not on a toy.
"""
from __future__ import annotations

import json
import random
import string
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Callable
from unittest import mock

import pulumi_aws as aws

from tap_lib.config import Settings
from tap_lib.program.entry import define_stack

Program = Callable[[Settings], Any]


@dataclass(frozen=True)
class Change:
    """Replace pulumi_aws `<module>.<cls>` with factory(real_class) while the program runs.
    Namespaces are looked up at run time, inside synthesis, which records their import notices."""

    module: str  # "" for the top-level pulumi_aws namespace
    cls: str
    factory: Callable[[Any], Callable[..., Any]]


def variant(*changes: Change) -> Program:
    """define_stack with each change applied for the duration of the run."""
    def program(settings: Settings) -> Any:
        with ExitStack() as stack:
            for change in changes:
                module = getattr(aws, change.module) if change.module else aws
                real = getattr(module, change.cls)
                stack.enter_context(mock.patch.object(module, change.cls, change.factory(real)))
            return define_stack(settings)
    return program


def rewrite(module: str, cls: str, change: Callable[[str, dict], dict]) -> Change:
    """Build the resource as usual, with keyword arguments changed by change(name, kwargs)."""
    def factory(real: Any) -> Callable[..., Any]:
        return lambda resource_name, /, **kw: real(resource_name, **change(resource_name, kw))
    return Change(module, cls, factory)


def drop(module: str, cls: str) -> Change:
    """Leave the resource out of the plan (the program does not use the result)."""
    return Change(module, cls, lambda real: lambda resource_name, /, **kw: None)


def swap(module: str, cls: str, other: str) -> Change:
    """Build `module.other` wherever the program builds `module.cls`."""
    def factory(real: Any) -> Callable[..., Any]:
        replacement = getattr(getattr(aws, module), other)
        return lambda resource_name, /, **kw: replacement(resource_name, **kw)
    return Change(module, cls, factory)


def _suffix(name: str) -> str:
    return name.rsplit("-", 1)[-1]


def _without(kw: dict, *keys: str) -> dict:
    return {k: v for k, v in kw.items() if k not in keys}


# Seed 1: the pulumi-aws 6 spelling of an Elastic IP in a VPC.
EIP_VPC_TRUE = variant(rewrite("ec2", "Eip",
                               lambda n, kw: {**_without(kw, "domain"), "vpc": True}))

# Deprecated resources: the S3 *V2 classes pulumi-aws 7 keeps only as aliases.
BUCKET_V2 = variant(swap("s3", "Bucket", "BucketV2"),
                    swap("s3", "BucketVersioning", "BucketVersioningV2"))



def _bucket_with_acl(real: Any) -> Callable[..., Any]:
    """Bucket(acl=...) through BucketArgs, where pulumi-aws warns about the argument."""
    def make(resource_name: str, /, opts: Any = None, **kw: Any) -> Any:
        return real(resource_name, aws.s3.BucketArgs(**kw, acl="private"), opts=opts)
    return make


# A deprecated argument: ACLs belong to aws.s3.BucketAcl in pulumi-aws 7.
DEPRECATED_BUCKET_ACL = variant(Change("s3", "Bucket", _bucket_with_acl))


def instantiated_twice(settings: Settings) -> Any:
    """Seed 3: the stack was created in tap.py and again at the end of lib/tap_stack.py."""
    define_stack(settings)
    return define_stack(settings)


# Seed 4: identifiers written from the raw suffix (uppercase for PR6329), subnet group unnamed.
SEED_RDS_NAMES = variant(
    rewrite("rds", "Cluster",
            lambda n, kw: {**kw, "cluster_identifier": f"payment-cluster-{_suffix(n)}"}),
    rewrite("rds", "ClusterInstance",
            lambda n, kw: {**kw, "identifier": f"payment-instance-{n.split('-')[2]}-"
                                               f"{_suffix(n)}"}),
    rewrite("rds", "SubnetGroup", lambda n, kw: _without(kw, "name")))

# Seed 6: rotation wired to a function that does not exist.
PLACEHOLDER_ROTATION_ARN = variant(rewrite(
    "secretsmanager", "SecretRotation",
    lambda n, kw: {**kw, "rotation_lambda_arn":
                   "arn:aws:lambda:eu-west-2:123456789012:function:SecretsManagerRotation"}))

# Rotation function present, but Secrets Manager may not invoke it.
ROTATION_PERMISSION_WRONG_PRINCIPAL = variant(rewrite(
    "lambda_", "Permission", lambda n, kw: {**kw, "principal": "lambda.amazonaws.com"}))

# Seed 6's "fix": the SecretRotation commented out.
ROTATION_COMMENTED_OUT = variant(drop("secretsmanager", "SecretRotation"))

# Seed 7, and its patch: a random suffix on every run.
RANDOM_BUCKET_SUFFIX = variant(rewrite(
    "s3", "Bucket",
    lambda n, kw: {**kw, "bucket": f"payment-transaction-logs-{_suffix(n).lower()}-"
                                   + "".join(random.choices(string.ascii_lowercase
                                                            + string.digits, k=8))}))
SEED_BUCKET_NAME = variant(rewrite(
    "s3", "Bucket", lambda n, kw: {**kw, "bucket": f"payment-transaction-logs-{_suffix(n)}"}))
SHARED_BUCKET_NAME = variant(rewrite(
    "s3", "Bucket", lambda n, kw: {**kw, "bucket": "payment-transaction-logs"}))

# Seed 8: a region written into the program instead of taken from the environment file.
PROVIDER_IN_US_EAST_1 = variant(rewrite("", "Provider",
                                         lambda n, kw: {**kw, "region": "us-east-1"}))


def stray_resource(settings: Settings) -> Any:
    """A resource declared outside TapStack: it falls back to the default provider."""
    stack = define_stack(settings)
    aws.cloudwatch.LogGroup(f"stray-logs-{settings.suffix}", name=f"/stray/{settings.suffix}")
    return stack


def failing_program(settings: Settings) -> Any:
    raise RuntimeError("the program has a bug")


# Hardening regressions.
PUBLIC_DB_INSTANCE = variant(rewrite("rds", "ClusterInstance",
                                     lambda n, kw: {**kw, "publicly_accessible": True}))
UNENCRYPTED_CLUSTER = variant(rewrite(
    "rds", "Cluster", lambda n, kw: {**_without(kw, "kms_key_id"), "storage_encrypted": False}))
PUBLIC_BUCKET = variant(rewrite(
    "s3", "BucketPublicAccessBlock",
    lambda n, kw: {**kw, "block_public_policy": False, "restrict_public_buckets": False}))
NO_TLS_POLICY = variant(drop("s3", "BucketPolicy"))
VERSIONING_SUSPENDED = variant(rewrite(
    "s3", "BucketVersioning",
    lambda n, kw: {**kw, "versioning_configuration": {"status": "Suspended"}}))
SSE_S3_MANAGED = variant(rewrite(
    "s3", "BucketServerSideEncryptionConfiguration",
    lambda n, kw: {**kw, "rules": [{"apply_server_side_encryption_by_default":
                                    {"sse_algorithm": "AES256"}}]}))
SINGLE_AZ_LAMBDA = variant(rewrite(
    "lambda_", "Function",
    lambda n, kw: {**kw, "vpc_config": {**kw["vpc_config"],
                                        "subnet_ids": kw["vpc_config"]["subnet_ids"][:1]}}
    if n.startswith("payment-fn") else kw))
NO_FLOW_LOG = variant(drop("ec2", "FlowLog"))
ADMIN_POLICY = variant(rewrite(
    "iam", "RolePolicy",
    lambda n, kw: {**kw, "policy": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}]})}
    if n.startswith("payment-policy") else kw))

# Controls judged as they are defined (issue 19): each variant undoes one hardening property.
NO_LOG_EXPORTS = variant(rewrite(
    "rds", "Cluster", lambda n, kw: _without(kw, "enabled_cloudwatch_logs_exports")))
NO_IAM_AUTH = variant(rewrite(
    "rds", "Cluster", lambda n, kw: {**kw, "iam_database_authentication_enabled": False}))
UNMANAGED_MASTER_PASSWORD = variant(rewrite(
    "rds", "Cluster", lambda n, kw: {**_without(kw, "master_user_secret_kms_key_id"),
                                     "manage_master_user_password": False,
                                     "master_password": "set-by-the-program-1"}))
UNPLACED_INSTANCES = variant(rewrite(
    "rds", "ClusterInstance", lambda n, kw: _without(kw, "availability_zone")))
ONE_ZONE_INSTANCES = variant(rewrite(
    "rds", "ClusterInstance", lambda n, kw: {**kw, "availability_zone": "eu-west-2a"}))
UNENCRYPTED_LOG_GROUP = variant(rewrite(
    "cloudwatch", "LogGroup",
    lambda n, kw: _without(kw, "kms_key_id") if n.startswith("payment-logs") else kw))
LAMBDA_DEFAULT_KEY = variant(rewrite(
    "lambda_", "Function",
    lambda n, kw: _without(kw, "kms_key_arn") if n.startswith("payment-fn") else kw))
UNSCOPED_TRUST = variant(rewrite(
    "iam", "Role",
    lambda n, kw: {**kw, "assume_role_policy": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
         "Action": "sts:AssumeRole"}]})} if n.startswith("payment-role") else kw))


# Network and storage controls of issue 19 (rules TAP171-TAP177; first written as monkeypatches
# in tests/test_network_controls.py): each variant leaves out or undoes one control.
def _drop_named(module: str, cls: str, prefix: str) -> Change:
    """Leave out only the `cls` resources whose logical name starts with `prefix`."""
    def factory(real: Any) -> Callable[..., Any]:
        return lambda resource_name, /, **kw: (None if resource_name.startswith(prefix)
                                               else real(resource_name, **kw))
    return Change(module, cls, factory)


NO_ACCESS_LOGGING = variant(drop("s3", "BucketLogging"))                         # S3.9
ACLS_ENABLED = variant(drop("s3", "BucketOwnershipControls"))                    # S3.12
NO_OBJECT_LOCK = variant(                                                        # S3.15
    drop("s3", "BucketObjectLockConfiguration"),
    rewrite("s3", "Bucket", lambda n, kw: {**kw, "object_lock_enabled": False}))
DEFAULT_SG_NOT_ADOPTED = variant(drop("ec2", "DefaultSecurityGroup"))            # EC2.2
NACL_ADMITS_SSH = variant(rewrite(                                               # EC2.21
    "ec2", "DefaultNetworkAcl",
    lambda n, kw: {**kw, "ingress": [*kw["ingress"], {
        "rule_no": 90, "action": "allow", "protocol": "tcp", "from_port": 0, "to_port": 1023,
        "cidr_block": "0.0.0.0/0"}]}))
NO_EC2_ENDPOINT = variant(_drop_named("ec2", "VpcEndpoint", "ec2-endpoint"))     # EC2.10
NO_S3_GATEWAY_ENDPOINT = variant(_drop_named("ec2", "VpcEndpoint", "s3-endpoint"))
SECRETS_ENDPOINT_WITHOUT_PRIVATE_DNS = variant(rewrite(
    "ec2", "VpcEndpoint",
    lambda n, kw: {**kw, "private_dns_enabled": False}
    if n.startswith("secretsmanager-endpoint") else kw))

# Data-side controls of issue 19 (rules TAP108/109/123/124/143/161-163; first written in
# tests/test_data_controls.py).
MONITORING_ROLE_WITHOUT_POLICY = variant(drop("iam", "RolePolicyAttachment"))    # RDS.6
TLS_NOT_FORCED = variant(rewrite(                                                # RDS.38
    "rds", "ClusterParameterGroup", lambda n, kw: {**kw, "parameters": []}))
NO_DEAD_LETTER_QUEUE = variant(rewrite(
    "lambda_", "Function", lambda n, kw: _without(kw, "dead_letter_config")))
UNENCRYPTED_DLQ = variant(rewrite(                                               # SQS.1
    "sqs", "Queue", lambda n, kw: _without(kw, "kms_master_key_id")))
NO_SECRET_POLICY = variant(drop("secretsmanager", "SecretPolicy"))
CLUSTER_NOT_IN_BACKUP_PLAN = variant(drop("backup", "Selection"))
VAULT_DEFAULT_KEY = variant(rewrite(
    "backup", "Vault", lambda n, kw: _without(kw, "kms_key_arn")))
