"""Named corrections to moto, installed in the emulator process only (emulator.py installs them
before moto's server starts). Each module reproduces one service's documented AWS behaviour
where moto 5.2 differs (its docstring names it); tap's own code never imports these.
"""
from __future__ import annotations

import importlib

PATCHES = ("http_keepalive", "s3_transport", "s3_logging", "s3_notifications", "ec2", "rds",
           "backup", "lambda_invoke", "secrets_rotation")


def install_all(endpoint: str) -> None:
    """Install every patch; `endpoint` is this emulator's own URL (what functions call).
    Imported here, not at package import: lambda_containers runs without moto."""
    for name in PATCHES:
        importlib.import_module(f"{__name__}.{name}").install(endpoint)
