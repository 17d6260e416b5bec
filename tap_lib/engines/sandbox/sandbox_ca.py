"""The sandbox's certificate authority: one per tap home, signing each stand-in PostgreSQL's
server certificate; clients of the stand-ins (the functions' runtime, tap's own checks) trust
only it, as clients of Aurora trust only the RDS CA bundle."""
from __future__ import annotations

from pathlib import Path

from ...localtls import CertificateAuthority
from ...project import tap_home

# The function environment variable naming the CA file the handlers verify the database with.
CA_VARIABLE = "DB_CA_FILE"


def authority() -> CertificateAuthority:
    return CertificateAuthority(tap_home() / "sandbox" / "ca")


def ca_file() -> Path:
    """The CA certificate (created on first use)."""
    return authority().ensure().cert_file
