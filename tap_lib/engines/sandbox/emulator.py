"""The sandbox's emulator process: moto's server, with tap's named corrections installed.

Each correction is a module of `patches/` that reproduces one documented AWS behaviour where
moto differs (its docstring names it); this module only installs them and starts the server.
The functions Lambda Invoke runs call back into this same server, so the patches learn its
address from the command line (`-H HOST -p PORT`, as server.py starts it).
"""
from __future__ import annotations

import argparse
import gc
import logging
import sys

from .patches import install_all
from .patches.s3_transport import _is_action_permitted  # noqa: F401 - tests/test_internals.py


def _endpoint(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    known, _ = parser.parse_known_args(argv)
    host = "127.0.0.1" if known.host in ("0.0.0.0", "") else known.host
    return f"http://{host}:{known.port}"


# The services tap's handlers, checks and functions call (moto loads a service's modules on its
# first request).
SERVICES = ("backup", "ec2", "events", "iam", "kms", "lambda", "logs", "rds",
            "resourcegroupstaggingapi", "s3", "secretsmanager", "sqs", "ssm", "sts")


def main(argv: list[str]) -> None:
    install_all(_endpoint(argv))
    from moto.backends import get_backend
    from moto.server import main as moto_main

    for service in SERVICES:
        get_backend(service)
    # Loaded once for the server's life: kept out of every later full collection (a deploy
    # spent ~0.5 s of the emulator's CPU walking them again).
    gc.freeze()
    # The log keeps warnings and errors; werkzeug's line per request grew it without bound and
    # cost ~6% of a request's CPU.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
