"""What both kinds of signing key share: who a signer is, the namespace of tap signatures, and
the variable naming the operator's key.

Why its own module: signing.py (OpenSSH, and the front that dispatches by key) uses
signing_kms.py (KMS keys), and both answer with a Signer; with these names here, below both,
imports run one way (signing -> signing_kms -> signer). signing.py re-exports them.
"""
from __future__ import annotations

from dataclasses import dataclass

NAMESPACE = "tap"               # keeps a tap signature from passing as a git or file signature
KEY_ENV = "TAP_SIGNING_KEY"     # the operator's key: an OpenSSH key file, or a KMS key ARN


@dataclass(frozen=True)
class Signer:
    principal: str          # as params/approvers names the key
    fingerprint: str        # SHA256:… of the public key, or KMS:<key ARN>: what "the same
                            # signer" means

    def __str__(self) -> str:
        return f"{self.principal} ({self.fingerprint})"
