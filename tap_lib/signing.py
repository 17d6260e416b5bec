"""Who signed something: OpenSSH signatures (`ssh-keygen -Y`, the way git signs commits), or
KMS asymmetric keys on AWS (``signing_kms``: IAM decides who may call ``kms:Sign``), judged
against ``params/approvers``, an allowed_signers file committed and reviewed like code.

Identity is the key, never a name: two principals are the same signer when their keys are the
same, whatever the approvers file calls them, and ``TAP_OPERATOR`` is only a display name.
``TAP_SIGNING_KEY`` names the private key (or its ``.pub`` file when the private half is in
ssh-agent: ssh-keygen asks the agent then), or a KMS key ARN or alias ARN
(``arn:aws:kms:REGION:ACCOUNT:key/ID``), listed in params/approvers on a line of its own
(``bob@example.com namespaces="tap" kms arn:aws:kms:…:key/…``). Namespace ``tap`` keeps a tap
signature from passing as a git or file signature and back. A KMS key's fingerprint is
``KMS:`` + its key ARN, so two principals listing one ARN are one signer.
"""
from __future__ import annotations

import base64
import hashlib
import os
import shlex
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import signing_kms
from .errors import SignatureRefused, UsageError
from .project import params_dir, project_dir
# Shared with signing_kms, below both (callers have long asked signing for them).
from .signer import KEY_ENV, NAMESPACE, Signer
from .signing_kms import KmsKey

APPROVERS_FILE = "approvers"            # params/approvers
_KEY_TYPES = ("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-")


# -- keys and signing ---------------------------------------------------------------------------
def signing_key() -> Path | KmsKey:
    """The operator's key from TAP_SIGNING_KEY: an OpenSSH key file, or a KMS key (key or alias
    ARN); a clear error when it is unset or unreadable."""
    raw = os.environ.get(KEY_ENV, "").strip()
    if not raw:
        raise UsageError(f"{KEY_ENV} is not set: signing needs an OpenSSH key or a KMS key",
                         hint=f"export {KEY_ENV}=~/.ssh/id_ed25519 (a key listed in "
                              f"params/approvers; with ssh-agent, its .pub file), or on AWS "
                              f"{KEY_ENV}=arn:aws:kms:REGION:ACCOUNT:key/ID")
    kms_key = signing_kms.parse_key(raw)
    if kms_key is not None:
        return kms_key
    if raw.startswith("arn:"):
        raise UsageError(f"{KEY_ENV}={raw}: not a KMS key ARN tap can sign with",
                         hint="arn:aws:kms:REGION:ACCOUNT:key/KEY-ID, or "
                              "arn:aws:kms:REGION:ACCOUNT:alias/NAME")
    path = Path(raw).expanduser()
    if not path.is_file():
        raise UsageError(f"{KEY_ENV}={raw}: no such key file",
                         hint="name an OpenSSH private key, or its .pub with ssh-agent")
    return path


def has_signing_key() -> bool:
    return bool(os.environ.get(KEY_ENV, "").strip())


def _as_key(key: Path | KmsKey | str | None) -> Path | KmsKey:
    if key is None:
        return signing_key()
    if isinstance(key, str):
        return signing_kms.parse_key(key) or Path(key)
    return key


def sign(message: bytes, key: Path | KmsKey | str | None = None) -> str:
    """An armored signature of `message` (namespace tap): SSH by an OpenSSH key, or a tap KMS
    signature by a KMS key (`key`, by default TAP_SIGNING_KEY)."""
    key = _as_key(key)
    if not isinstance(key, Path):
        return signing_kms.sign(message, key)
    try:
        out = subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", NAMESPACE],
                             input=message, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise UsageError("ssh-keygen not found: signing needs the OpenSSH client",
                         hint="install openssh-client") from None
    if out.returncode != 0:
        problem = out.stderr.decode(errors="replace").strip().splitlines()
        raise UsageError(f"{KEY_ENV}={key}: ssh-keygen could not sign "
                         f"({problem[-1] if problem else 'no reason given'})",
                         hint="use an unencrypted key, or load it into ssh-agent and name "
                              "its .pub file")
    return out.stdout.decode()


# -- reading signatures and the approvers file --------------------------------------------------
def _read_string(blob: bytes, at: int) -> tuple[bytes, int]:
    if at + 4 > len(blob):
        raise ValueError("truncated")
    (size,) = struct.unpack(">I", blob[at:at + 4])
    end = at + 4 + size
    if end > len(blob):
        raise ValueError("truncated")
    return blob[at + 4:end], end


def fingerprint(key_blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(key_blob).digest()).decode().rstrip("=")


def signature_key(armored: str) -> bytes:
    """The public key blob a signature says it was made with (checked by ssh-keygen later)."""
    if not isinstance(armored, str):
        raise ValueError("not text")
    lines = [ln.strip() for ln in armored.strip().splitlines()]
    if len(lines) < 3 or lines[0] != "-----BEGIN SSH SIGNATURE-----" \
            or lines[-1] != "-----END SSH SIGNATURE-----":
        raise ValueError("not an armored SSH signature")
    blob = base64.b64decode("".join(lines[1:-1]), validate=True)
    if not blob.startswith(b"SSHSIG"):
        raise ValueError("not an SSHSIG blob")
    key, _ = _read_string(blob, 6 + 4)
    return key


@dataclass(frozen=True)
class AllowedSigner:
    principal: str
    key_blob: bytes
    line: str
    options: tuple[str, ...] = ()


def parse_approvers(text: str) -> list[AllowedSigner]:
    """The OpenSSH lines of an allowed_signers file (principals [options] keytype key
    [comment]); KMS lines (principals [options] kms ARN) are signing_kms.parse_approvers'."""
    signers = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or signing_kms.is_approver_line(line):
            continue
        try:
            tokens = shlex.split(line)
        except ValueError:
            continue
        for i, token in enumerate(tokens[1:], start=1):
            if token.startswith(_KEY_TYPES) and i + 1 < len(tokens):
                try:
                    blob = base64.b64decode(tokens[i + 1], validate=True)
                except ValueError:
                    break
                for principal in tokens[0].split(","):
                    signers.append(AllowedSigner(principal, blob, line, tuple(tokens[1:i])))
                break
    return signers


def approvers_path() -> Path:
    return params_dir() / APPROVERS_FILE


def approvers_at(commit: str) -> str:
    """params/approvers as committed at `commit` (what was reviewed), not as on disk now."""
    rel = approvers_path().relative_to(project_dir()).as_posix()
    out = subprocess.run(["git", "show", f"{commit}:{rel}"], cwd=project_dir(),
                         capture_output=True, timeout=30)
    if out.returncode != 0:
        raise SignatureRefused(rel, f"no {rel} committed at {commit[:12]}",
                               hint="commit params/approvers (reviewed like code) listing "
                                    "who may author and approve")
    return out.stdout.decode("utf-8", errors="replace")


def approvers_now() -> str:
    try:
        return approvers_path().read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def verify(message: bytes, armored: object, approvers: str, *, what: str,
           principal: str | None = None) -> Signer:
    """The signer of `message`, if `armored` is a valid tap signature by a key listed in
    `approvers` (and, when given, listed as `principal`); SignatureRefused otherwise.
    A tap KMS signature is judged by KMS (signing_kms.verify): TargetUnreachable when it
    cannot be asked."""
    if signing_kms.is_armored(armored):
        return signing_kms.verify(message, armored, approvers, what=what, principal=principal)
    try:
        blob = signature_key(armored)  # type: ignore[arg-type]
    except (ValueError, TypeError, base64.binascii.Error):
        raise SignatureRefused(what, "the signature is missing or damaged") from None
    listed = [s for s in parse_approvers(approvers) if s.key_blob == blob]
    if principal is not None:
        listed = [s for s in listed if s.principal == principal]
    if not listed:
        raise SignatureRefused(what, f"signed by key {fingerprint(blob)}, which params/approvers "
                               f"does not list{f' as {principal}' if principal else ''}")
    signer = listed[0]
    judged = _verify_ed25519(message, str(armored), signer)
    if judged is not None:
        if not judged:
            raise SignatureRefused(what, f"the signature by {signer.principal} does not match "
                                         "what it signs (edited, or signed for something else)")
        return Signer(signer.principal, fingerprint(blob))
    with tempfile.TemporaryDirectory(prefix="tap-sig-") as tmp:
        allowed, sig = Path(tmp, "allowed"), Path(tmp, "sig")
        allowed.write_text(signer.line + "\n", encoding="utf-8")
        sig.write_text(str(armored), encoding="utf-8")
        out = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I",
                              signer.principal, "-n", NAMESPACE, "-s", str(sig)],
                             input=message, capture_output=True, timeout=60)
    if out.returncode != 0:
        raise SignatureRefused(what, f"the signature by {signer.principal} does not match "
                                     "what it signs (edited, or signed for something else)")
    return Signer(signer.principal, fingerprint(blob))


def public_key_blob(key: Path | KmsKey | str | None = None) -> bytes:
    """The public half of TAP_SIGNING_KEY (its .pub beside it, or derived by ssh-keygen)."""
    key = _as_key(key)
    if not isinstance(key, Path):
        raise UsageError(f"{KEY_ENV}={key}: a KMS key has no OpenSSH public key",
                         hint="KMS keys are listed in params/approvers by their ARN")
    pub = key if key.suffix == ".pub" else key.with_name(key.name + ".pub")
    if pub.is_file():
        text = pub.read_text(encoding="utf-8", errors="replace")
    else:
        out = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True,
                             timeout=60, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise UsageError(f"{KEY_ENV}={key}: not an OpenSSH key ssh-keygen can read")
        text = out.stdout.decode()
    try:
        return base64.b64decode(text.split()[1], validate=True)
    except (IndexError, ValueError):
        raise UsageError(f"{KEY_ENV}={key}: its public key is unreadable") from None


def own_signer(approvers: str) -> Signer:
    """Who TAP_SIGNING_KEY is in params/approvers; refused when it is not listed."""
    key = signing_key()
    if not isinstance(key, Path):
        return signing_kms.own_signer(key, approvers)
    blob = public_key_blob(key)
    for signer in parse_approvers(approvers):
        if signer.key_blob == blob:
            return Signer(signer.principal, fingerprint(blob))
    raise SignatureRefused(f"{KEY_ENV} ({fingerprint(blob)})", "this key is not listed in "
                           "params/approvers", hint="add it there by a reviewed commit")


def _verify_ed25519(message: bytes, armored: str, signer: AllowedSigner) -> bool | None:
    """What `ssh-keygen -Y verify` would say, in-process, for the common case: an ed25519 key
    whose approvers line has no option but `namespaces` (no patterns). None: anything else,
    left to ssh-keygen. A seal check over a long trail runs thousands of these (~0.1 ms each
    instead of a ~5 ms process)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    namespaces = None
    for option in signer.options:
        name, _, value = option.partition("=")
        if name.lower() != "namespaces" or any(c in value for c in "*?!"):
            return None
        namespaces = value.split(",")
    if namespaces is not None and NAMESPACE not in namespaces:
        return False
    try:
        kind, at = _read_string(signer.key_blob, 0)
        if kind != b"ssh-ed25519":
            return None
        raw_key, _ = _read_string(signer.key_blob, at)
        lines = [ln.strip() for ln in armored.strip().splitlines()]
        blob = base64.b64decode("".join(lines[1:-1]), validate=True)
        (version,) = struct.unpack(">I", blob[6:10])
        _, at = _read_string(blob, 10)                      # the public key (matched already)
        namespace, at = _read_string(blob, at)
        reserved, at = _read_string(blob, at)
        hash_alg, at = _read_string(blob, at)
        sig, _ = _read_string(blob, at)
        sig_kind, at = _read_string(sig, 0)
        raw_sig, _ = _read_string(sig, at)
    except (ValueError, struct.error):
        return False
    if version != 1 or namespace != NAMESPACE.encode() or sig_kind != b"ssh-ed25519" or \
            hash_alg not in (b"sha256", b"sha512"):
        return False
    digest = hashlib.new(hash_alg.decode(), message).digest()
    signed = b"SSHSIG" + b"".join(struct.pack(">I", len(part)) + part
                                  for part in (namespace, reserved, hash_alg, digest))
    try:
        Ed25519PublicKey.from_public_bytes(raw_key).verify(raw_sig, signed)
    except (InvalidSignature, ValueError):
        return False
    return True
