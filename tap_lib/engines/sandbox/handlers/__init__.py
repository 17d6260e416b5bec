"""Sandbox resource handlers, one module per AWS service; importing this registers them all."""
from . import ec2, iam, kms, lambda_, logs, rds, s3, secretsmanager  # noqa: F401
from .base import REGISTRY, Context, Handler

__all__ = ["REGISTRY", "Context", "Handler"]
