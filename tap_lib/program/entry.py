"""The one place the TapStack is instantiated, for every engine and for the Pulumi CLI."""
from __future__ import annotations

import pulumi
import pulumi_aws as aws

from ..config import Settings
from ..project import project_name
from .tap_stack import TapStack, TapStackArgs

OUTPUT_NAMES = ("vpc_id", "public_subnet_ids", "private_subnet_ids", "nat_gateway_ids",
                "rds_cluster_id", "rds_cluster_endpoint", "rds_cluster_port", "db_secret_arn",
                "lambda_function_name", "lambda_function_arn", "rotation_function_name",
                "s3_bucket_name", "s3_access_log_bucket_name", "lambda_security_group_id",
                "kms_key_arn", "region")


# The services the stack's resources and invokes call: each is sent to an endpoint override.
ENDPOINT_SERVICES = ("backup", "cloudwatch", "cloudwatchlogs", "ec2", "iam", "kms", "lambda",
                     "rds", "s3", "secretsmanager", "sqs", "sts")


def define_stack(settings: Settings, endpoint: str | None = None) -> TapStack:
    """Declare the stack. The region is set on an explicit provider from the environment file,
    so an ambient AWS_REGION or a stale `aws:region` cannot send resources elsewhere.

    `endpoint`: an AWS-compatible endpoint (the sandbox's emulator) instead of AWS, so the real
    Pulumi engine can run against what the sandbox engine uses (tests/test_conformance.py)."""
    provider = aws.Provider(f"aws-{settings.region}", region=settings.region,
                            **(_endpoint_args(endpoint) if endpoint else {}))
    account = aws.get_caller_identity(opts=pulumi.InvokeOptions(provider=provider)).account_id
    stack = TapStack(f"{project_name()}-{settings.suffix}",
                     TapStackArgs(settings, settings.physical_names(account), account),
                     pulumi.ResourceOptions(providers={"aws": provider}))
    for key in OUTPUT_NAMES:
        pulumi.export(key, stack.outputs[key])
    return stack


def _endpoint_args(endpoint: str) -> dict:
    """Every service at `endpoint`, and none of the checks only AWS can answer."""
    return {"endpoints": [{service: endpoint for service in ENDPOINT_SERVICES}],
            "skip_credentials_validation": True, "skip_requesting_account_id": True,
            "skip_metadata_api_check": True, "skip_region_validation": True,
            "s3_use_path_style": True}
