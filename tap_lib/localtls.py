"""A private certificate authority for local servers (the sandbox's stand-in PostgreSQL, tests).

Aurora serves TLS under a CA that clients verify (sslmode=verify-full); the stand-in does the
same under a CA of its own, so a client that skips verification, or verifies against the wrong
CA, fails here as it would on AWS. The CA's key stays in its directory (0600) and signs one
server certificate per stand-in, whose SANs are the names clients connect to.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from filelock import FileLock

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CA_YEARS = 10
SERVER_DAYS = 825
# Names a local client may use besides the ones a caller gives.
LOCAL_NAMES = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class ServerTls:
    """A server certificate and its private key, PEM."""

    cert_pem: bytes
    key_pem: bytes


class CertificateAuthority:
    """The CA kept in `directory` (created on first use)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    @property
    def cert_file(self) -> Path:
        """What clients trust (their sslrootcert)."""
        return self.directory / CA_CERT

    def ensure(self) -> CertificateAuthority:
        """Create the CA unless it exists; safe against a concurrent creator and a kill."""
        if self.cert_file.is_file() and (self.directory / CA_KEY).is_file():
            return self
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with FileLock(str(self.directory / ".lock")):
            if self.cert_file.is_file() and (self.directory / CA_KEY).is_file():
                return self
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tap sandbox"),
                              x509.NameAttribute(NameOID.COMMON_NAME,
                                                 f"tap sandbox CA {os.urandom(4).hex()}")])
            now = _now()
            cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                    .public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(minutes=5))
                    .not_valid_after(now + datetime.timedelta(days=365 * CA_YEARS))
                    .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                    .add_extension(x509.KeyUsage(
                        digital_signature=False, content_commitment=False,
                        key_encipherment=False, data_encipherment=False, key_agreement=False,
                        key_cert_sign=True, crl_sign=True, encipher_only=False,
                        decipher_only=False), critical=True)
                    .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                   critical=False)
                    .sign(key, hashes.SHA256()))
            # key first: a certificate without its key is "not there yet" (checked above)
            write_private(self.directory / CA_KEY, _key_pem(key))
            _write_atomic(self.cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return self

    def issue_server(self, names: list[str] | tuple[str, ...]) -> ServerTls:
        """A server certificate for `names` plus localhost and 127.0.0.1 (a new key each)."""
        self.ensure()
        ca_key = serialization.load_pem_private_key((self.directory / CA_KEY).read_bytes(),
                                                    password=None)
        ca_cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        wanted = list(dict.fromkeys([*[n for n in names if n], *LOCAL_NAMES]))
        sans: list[x509.GeneralName] = []
        for name in wanted:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (x509.CertificateBuilder()
                # the names are in the SANs (clients check those); a CN holds at most 64
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                            wanted[0][:64])]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    ca_cert.public_key()), critical=False)  # type: ignore[arg-type]
                .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
        return ServerTls(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def server_names(cert_pem: bytes) -> set[str]:
    """The DNS names and IP addresses a server certificate covers."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {*san.get_values_for_type(x509.DNSName),
            *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))}


def write_private(path: Path, data: bytes, owner: tuple[int, int] | None = None) -> None:
    """Write a key: mode 0600 from the first byte, whole or not at all."""
    _write_atomic(path, data, 0o600, owner)


def _write_atomic(path: Path, data: bytes, mode: int,
                  owner: tuple[int, int] | None = None) -> None:
    fd, work = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(work, path)
    except BaseException:
        Path(work).unlink(missing_ok=True)
        raise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
