"""Sandbox resource handlers, one module per AWS service; importing this registers them all."""
from . import backup, ec2, iam, kms, lambda_, logs, rds, s3, secretsmanager, sqs  # noqa: F401
from . import network_acls, s3_controls, security_groups, vpc_endpoints  # noqa: F401
from .base import REGISTRY, Context, Handler

__all__ = ["REGISTRY", "Context", "Handler"]
