"""KMS asymmetric keys as tap signers: on AWS, IAM (``kms:Sign`` on the key) decides who may sign.

``TAP_SIGNING_KEY`` may name a KMS key by its ARN (``arn:aws:kms:REGION:ACCOUNT:key/ID``) or by
an alias ARN (``arn:aws:kms:REGION:ACCOUNT:alias/NAME``, resolved to its key when signing).
``params/approvers`` lists such a key for a principal on a line of its own, beside the OpenSSH
lines of the allowed_signers file::

    bob@example.com namespaces="tap" kms arn:aws:kms:eu-west-2:123456789012:key/1234abcd-...  bob

that is: principals (comma-separated), optionally ``namespaces="…"`` (which must include
``tap``; no other option is accepted), the word ``kms``, a key ARN, an optional comment. Only
key ARNs count there, never aliases: an alias can be moved to another key without a reviewed
change of the file. A line that does not fit this grammar lists nobody. ssh-keygen never sees
these lines (``signing.verify`` hands it the one matching OpenSSH line; run over the whole file,
as git does, it reports "invalid key" for them and goes on).

A KMS signature is armored text of its own, so plan, approval and seal files keep one string::

    -----BEGIN TAP KMS SIGNATURE-----
    base64 of {"algorithm", "key_arn", "namespace": "tap", "signature": base64}
    -----END TAP KMS SIGNATURE-----

KMS signs (``MessageType=RAW``) a short statement naming the namespace and the message's
SHA-256 (:func:`statement`), never the bare message, so a tap signature does not pass as the
key's signature of anything else, nor the other way round. It is judged by KMS itself:
``DescribeKey`` (the key must be an enabled SIGN_VERIFY key offering the algorithm: a disabled
key's signatures no longer count) and ``Verify``, in the key's region, with the verifier's
credentials. boto3 chooses the endpoint (``AWS_ENDPOINT_URL`` points it at the sandbox's
emulator). Whoever controls the verifying process's environment controls its verdict, as with
its code: judge records where the credentials and endpoint are yours.

Failures are tap errors naming ``TAP_SIGNING_KEY`` (when signing) and the key ARN:
``SignatureRefused`` (IAM or the key policy denies, the key is disabled or unknown, the
signature does not hold), ``UsageError`` (not a signing key, an ARN tap cannot use),
``TargetUnreachable`` (no endpoint, no credentials, KMS failing).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from typing import Any

from .errors import SignatureRefused, TapError, TargetUnreachable, UsageError
from .signer import KEY_ENV, NAMESPACE, Signer

ARMOR_BEGIN = "-----BEGIN TAP KMS SIGNATURE-----"
ARMOR_END = "-----END TAP KMS SIGNATURE-----"
FINGERPRINT_PREFIX = "KMS:"    # Signer.fingerprint of a KMS key: "KMS:" + its key ARN
KEYWORD = "kms"                # params/approvers: PRINCIPALS [namespaces="tap"] kms KEY_ARN

# Signing algorithms tap accepts, in the order it prefers them when a key offers several
# (ECC_NIST_P256 keys offer ECDSA_SHA_256; RSA keys offer every RSASSA_* of the list).
ALGORITHMS = ("ECDSA_SHA_256", "RSASSA_PSS_SHA_256", "RSASSA_PKCS1_V1_5_SHA_256",
              "ECDSA_SHA_384", "ECDSA_SHA_512", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
              "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512")
MAX_SIGNATURE_BYTES = 1024     # RSA_4096: 512 bytes; ECDSA P-521 DER: at most 139

_ARN_HEAD = (r"arn:(?P<partition>aws|aws-cn|aws-us-gov):kms:"
             r"(?P<region>[a-z]{2}(?:-[a-z]+)+-\d{1,2}):(?P<account>\d{12}):")
KEY_ARN = re.compile(_ARN_HEAD + r"key/(?P<id>mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-"
                                 r"[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
ALIAS_ARN = re.compile(_ARN_HEAD + r"alias/(?P<alias>[A-Za-z0-9/_-]{1,250})")
_OPTION = r'[A-Za-z-]+(?:="[^"]*")?'
_LINE = re.compile(rf"(?P<principals>[^\s#]\S*)(?:\s+(?P<options>{_OPTION}(?:,{_OPTION})*))?"
                   rf"\s+{KEYWORD}\s+(?P<arn>\S+)(?:\s.*)?")
_OPTIONS = re.compile(r'([A-Za-z-]+)(?:="([^"]*)")?')


@dataclass(frozen=True)
class KmsKey:
    """A KMS key named by TAP_SIGNING_KEY: a key ARN or an alias ARN, and its region."""
    arn: str
    region: str

    def __str__(self) -> str:
        return self.arn


def parse_key(text: object) -> KmsKey | None:
    """The KMS key `text` names (key or alias ARN), or None when it is no such ARN."""
    if not isinstance(text, str):
        return None
    match = KEY_ARN.fullmatch(text.strip()) or ALIAS_ARN.fullmatch(text.strip())
    return KmsKey(match.group(0), match.group("region")) if match else None


def fingerprint(key_arn: str) -> str:
    return FINGERPRINT_PREFIX + key_arn


# -- params/approvers ---------------------------------------------------------------------------
@dataclass(frozen=True)
class KmsApprover:
    principal: str
    key_arn: str
    line: str


def is_approver_line(line: str) -> bool:
    """Whether an approvers line is written in the KMS grammar (valid or not): the OpenSSH
    parser leaves it alone."""
    return bool(_LINE.fullmatch(line.strip()))


def parse_approvers(text: str) -> list[KmsApprover]:
    """The KMS lines of params/approvers, one entry per principal; lines with an alias or a
    malformed ARN, an unknown option, or a namespaces option without ``tap`` list nobody."""
    approvers = []
    for raw in text.splitlines():
        line = raw.strip()
        match = _LINE.fullmatch(line) if line and not line.startswith("#") else None
        if not match or not KEY_ARN.fullmatch(match.group("arn")):
            continue
        options = dict(_OPTIONS.findall(match.group("options") or ""))
        if set(options) - {"namespaces"} or (
                "namespaces" in options
                and NAMESPACE not in [n.strip() for n in options["namespaces"].split(",")]):
            continue
        for principal in match.group("principals").split(","):
            if principal:
                approvers.append(KmsApprover(principal, match.group("arn"), line))
    return approvers


# -- armor --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KmsSignature:
    key_arn: str
    algorithm: str
    signature: bytes


def statement(message: bytes) -> bytes:
    """What KMS signs for `message`: the namespace and the message's digest (domain-separated,
    and always within KMS's 4096-byte limit for RAW messages)."""
    return (f"tap-kms-signature\nnamespace {NAMESPACE}\n"
            f"sha256 {hashlib.sha256(message).hexdigest()}\n").encode()


def armor(key_arn: str, algorithm: str, signature: bytes) -> str:
    doc = json.dumps({"algorithm": algorithm, "key_arn": key_arn, "namespace": NAMESPACE,
                      "signature": base64.b64encode(signature).decode()},
                     sort_keys=True, separators=(",", ":"))
    body = base64.b64encode(doc.encode()).decode()
    return "\n".join([ARMOR_BEGIN, *(body[i:i + 76] for i in range(0, len(body), 76)),
                      ARMOR_END]) + "\n"


def is_armored(text: object) -> bool:
    return isinstance(text, str) and text.lstrip().startswith(ARMOR_BEGIN)


def unarmor(armored: object) -> KmsSignature:
    """The signature an armored text holds; ValueError for anything but a well-formed one."""
    if not isinstance(armored, str):
        raise ValueError("not text")
    lines = [ln.strip() for ln in armored.strip().splitlines()]
    if len(lines) < 3 or lines[0] != ARMOR_BEGIN or lines[-1] != ARMOR_END:
        raise ValueError("not an armored tap KMS signature")
    try:
        doc = json.loads(base64.b64decode("".join(lines[1:-1]), validate=True))
    except (binascii.Error, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"undecodable: {exc}") from None
    if not isinstance(doc, dict) or set(doc) != {"algorithm", "key_arn", "namespace",
                                                 "signature"}:
        raise ValueError("not a tap KMS signature document")
    if doc["namespace"] != NAMESPACE:
        raise ValueError("another namespace")
    if not isinstance(doc["key_arn"], str) or not KEY_ARN.fullmatch(doc["key_arn"]):
        raise ValueError("no key ARN")
    if doc["algorithm"] not in ALGORITHMS:
        raise ValueError("an algorithm tap does not accept")
    if not isinstance(doc["signature"], str):
        raise ValueError("no signature")
    try:
        signature = base64.b64decode(doc["signature"], validate=True)
    except binascii.Error:
        raise ValueError("undecodable signature") from None
    if not 0 < len(signature) <= MAX_SIGNATURE_BYTES:
        raise ValueError("a signature of impossible length")
    return KmsSignature(doc["key_arn"], doc["algorithm"], signature)


# -- KMS clients and their errors ---------------------------------------------------------------
# What changes which client is right: the region, where boto3 sends requests, whose credentials.
_CLIENT_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
               "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID",
               "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE",
               "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE", "AWS_EC2_METADATA_DISABLED",
               "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()

# KMS answers that mean "not these credentials" rather than "not this key".
_CREDENTIAL_CODES = {"UnrecognizedClientException", "InvalidClientTokenId",
                     "ExpiredTokenException", "InvalidSignatureException", "IncompleteSignature",
                     "MissingAuthenticationToken"}
_DENIED_CODES = {"AccessDeniedException", "AccessDenied"}
_STATE_CODES = {"DisabledException", "KMSInvalidStateException"}
_BUSY_CODES = {"ThrottlingException", "KMSInternalException", "DependencyTimeoutException",
               "InternalFailure", "ServiceUnavailable", "RequestTimeout"}


def client(region: str, subject: str) -> Any:
    """A KMS client in `region` (one per region, endpoint and credentials, made once)."""
    import boto3
    from botocore.config import Config

    key = hashlib.sha256(repr((region, *(os.environ.get(n) for n in _CLIENT_ENV))).encode())
    with _clients_lock:
        made = _clients.get(key.hexdigest())
        if made is None:
            try:
                made = boto3.session.Session(region_name=region).client(
                    "kms", config=Config(connect_timeout=5, read_timeout=20,
                                         retries={"max_attempts": 2, "mode": "standard"}))
            except ValueError as exc:  # botocore: an endpoint URL it cannot use
                raise UsageError(f"{subject}: cannot make a KMS client for {region} ({exc})",
                                 hint="check AWS_ENDPOINT_URL (a URL such as "
                                      "http://127.0.0.1:5599 for the sandbox)") from None
            except Exception as exc:  # noqa: BLE001 - a damaged profile or config file
                raise UsageError(f"{subject}: cannot make a KMS client for {region} "
                                 f"({type(exc).__name__}: {exc})",
                                 hint="check AWS_PROFILE and ~/.aws/config") from None
            _clients[key.hexdigest()] = made
        return made


def _failure(exc: Exception, kms: Any, *, action: str, arn: str, subject: str,
             signing: bool) -> TapError:
    """The tap error for a failed KMS call: names the subject (TAP_SIGNING_KEY=… or the
    record), the action and the key ARN; never a traceback."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    endpoint = getattr(getattr(kms, "meta", None), "endpoint_url", None) or "KMS"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, text = str(error.get("Code", "")), str(error.get("Message", "")).strip()
        said = f"{code}: {text}" if text else code
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _DENIED_CODES:
            return SignatureRefused(
                subject, f"AWS denies {action} on KMS key {arn} to these credentials ({said})",
                hint=f"IAM (or the key policy) decides who may use the key: ask for {action}"
                     " and kms:DescribeKey on it" + (", or sign with another key listed in "
                                                     "params/approvers" if signing else ""))
        if code in _STATE_CODES:
            return SignatureRefused(
                subject, f"KMS key {arn} cannot be used ({said})",
                hint="a disabled key or one pending deletion neither signs nor verifies; "
                     "enable it (kms:EnableKey, kms:CancelKeyDeletion) or use another key")
        if code == "NotFoundException":
            problem = f"KMS has no key {arn} in this account and region ({said})"
            return (UsageError(f"{subject}: {problem}", hint=f"check {KEY_ENV} and the AWS "
                                                             "account of these credentials")
                    if signing else SignatureRefused(subject, problem))
        if code in _CREDENTIAL_CODES:
            return TargetUnreachable(
                f"{subject}: KMS at {endpoint} does not accept these credentials for {action} "
                f"on {arn} ({said})",
                hint="configure AWS credentials (AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                     "AWS_SECRET_ACCESS_KEY)")
        if code in _BUSY_CODES or status >= 500:
            return TargetUnreachable(f"{subject}: KMS at {endpoint} failed {action} on {arn} "
                                     f"({said or status})", hint="try again later")
        problem = f"KMS refused {action} on key {arn} ({said})"
        return (UsageError(f"{subject}: {problem}", hint=f"{KEY_ENV} must name an asymmetric "
                                                         "SIGN_VERIFY key (ECC_NIST_P256 or "
                                                         "RSA)")
                if signing else SignatureRefused(subject, problem))
    if isinstance(exc, NoCredentialsError):
        return TargetUnreachable(f"{subject}: no AWS credentials to ask KMS for {action} on "
                                 f"{arn}", hint="configure AWS credentials (AWS_PROFILE or "
                                                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
    if isinstance(exc, BotoCoreError):
        return TargetUnreachable(f"{subject}: cannot reach KMS at {endpoint} for {action} on "
                                 f"{arn} ({type(exc).__name__}: {exc})",
                                 hint="check the network and AWS_ENDPOINT_URL (the sandbox: "
                                      "`tap sandbox start`)")
    return TargetUnreachable(f"{subject}: {action} on {arn} failed "
                             f"({type(exc).__name__}: {exc})")


def _call(kms: Any, operation: str, *, arn: str, subject: str, signing: bool,
          expected: tuple[str, ...] = (), **params: Any) -> Any:
    """One KMS call; tap errors for everything but the ClientError codes in `expected`."""
    from botocore.exceptions import BotoCoreError, ClientError

    method = "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
    try:
        return getattr(kms, method)(**params)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in expected:
            raise
        raise _failure(exc, kms, action=f"kms:{operation}", arn=arn, subject=subject,
                       signing=signing) from None
    except BotoCoreError as exc:
        raise _failure(exc, kms, action=f"kms:{operation}", arn=arn, subject=subject,
                       signing=signing) from None


def describe(kms: Any, arn: str, *, subject: str, signing: bool) -> dict[str, Any]:
    """The key's metadata, when it is an enabled asymmetric signing key with a key ARN."""
    meta = _call(kms, "DescribeKey", KeyId=arn, arn=arn, subject=subject,
                 signing=signing).get("KeyMetadata", {})
    key_arn = str(meta.get("Arn", ""))
    problem = None
    if not KEY_ARN.fullmatch(key_arn):
        problem = f"KMS describes {arn} as {key_arn!r}, not a key ARN"
    elif meta.get("KeyUsage") != "SIGN_VERIFY":
        problem = (f"KMS key {key_arn} is not a signing key (KeyUsage {meta.get('KeyUsage')}, "
                   f"KeySpec {meta.get('KeySpec', '?')}; tap needs SIGN_VERIFY)")
    if problem and signing:
        raise UsageError(f"{subject}: {problem}", hint="name an asymmetric key made with "
                                                       "--key-usage SIGN_VERIFY --key-spec "
                                                       "ECC_NIST_P256 (or RSA_2048 and up)")
    if problem:
        raise SignatureRefused(subject, problem)
    if meta.get("KeyState", "Enabled") != "Enabled":
        raise SignatureRefused(
            subject, f"KMS key {key_arn} is {meta.get('KeyState')}: "
                     + ("it cannot sign" if signing else "its signatures no longer count"),
            hint="enable the key (kms:EnableKey), or use another key listed in "
                 "params/approvers")
    return meta


def resolve(key: KmsKey) -> str:
    """The key ARN TAP_SIGNING_KEY names (an alias resolved by KMS)."""
    subject = f"{KEY_ENV}={key.arn}"
    return str(describe(client(key.region, subject), key.arn, subject=subject,
                        signing=True)["Arn"])


# -- signing and verifying ----------------------------------------------------------------------
def sign(message: bytes, key: KmsKey) -> str:
    """An armored tap KMS signature of `message` by `key` (kms:DescribeKey and kms:Sign)."""
    subject = f"{KEY_ENV}={key.arn}"
    kms = client(key.region, subject)
    meta = describe(kms, key.arn, subject=subject, signing=True)
    offered = meta.get("SigningAlgorithms") or []
    algorithm = next((a for a in ALGORITHMS if a in offered), None)
    if algorithm is None:
        raise UsageError(f"{subject}: KMS key {meta['Arn']} ({meta.get('KeySpec', '?')}) offers "
                         f"none of the signing algorithms tap accepts ({', '.join(offered)})",
                         hint="use an ECC_NIST_P256 (ECDSA_SHA_256) or RSA key")
    out = _call(kms, "Sign", KeyId=meta["Arn"], Message=statement(message), MessageType="RAW",
                SigningAlgorithm=algorithm, arn=meta["Arn"], subject=subject, signing=True)
    signature = out.get("Signature")
    if not isinstance(signature, bytes) or not 0 < len(signature) <= MAX_SIGNATURE_BYTES:
        raise TargetUnreachable(f"{subject}: KMS answered kms:Sign on {meta['Arn']} "
                                "without a usable signature")
    return armor(str(meta["Arn"]), algorithm, signature)


def verify(message: bytes, armored: object, approvers: str, *, what: str,
           principal: str | None = None) -> Signer:
    """The signer of `message`, if `armored` is a tap KMS signature that KMS confirms, by a
    key ARN params/approvers lists (as `principal`, when given); SignatureRefused otherwise."""
    try:
        sig = unarmor(armored)
    except ValueError:
        raise SignatureRefused(what, "the signature is missing or damaged") from None
    listed = [a for a in parse_approvers(approvers) if a.key_arn == sig.key_arn]
    if principal is not None:
        listed = [a for a in listed if a.principal == principal]
    if not listed:
        raise SignatureRefused(what, f"signed by KMS key {sig.key_arn}, which params/approvers "
                               f"does not list{f' as {principal}' if principal else ''}")
    region = KEY_ARN.fullmatch(sig.key_arn).group("region")  # type: ignore[union-attr]
    kms = client(region, what)
    meta = describe(kms, sig.key_arn, subject=what, signing=False)
    mismatch = SignatureRefused(what, f"the signature by {listed[0].principal} (KMS key "
                                      f"{sig.key_arn}) does not match what it signs (edited, "
                                      "or signed for something else)")
    if meta["Arn"] != sig.key_arn or sig.algorithm not in (meta.get("SigningAlgorithms") or []):
        raise mismatch
    from botocore.exceptions import ClientError

    try:
        out = _call(kms, "Verify", KeyId=sig.key_arn, Message=statement(message),
                    MessageType="RAW", Signature=sig.signature, SigningAlgorithm=sig.algorithm,
                    arn=sig.key_arn, subject=what, signing=False,
                    expected=("KMSInvalidSignatureException",))
    except ClientError:
        raise mismatch from None
    if out.get("SignatureValid") is not True or out.get("KeyId", sig.key_arn) != sig.key_arn:
        raise mismatch
    return Signer(listed[0].principal, fingerprint(sig.key_arn))


def own_signer(key: KmsKey, approvers: str) -> Signer:
    """Who the KMS key of TAP_SIGNING_KEY is in params/approvers; refused when not listed."""
    arn = resolve(key)
    for approver in parse_approvers(approvers):
        if approver.key_arn == arn:
            return Signer(approver.principal, fingerprint(arn))
    named = arn if arn == key.arn else f"{key.arn}, key {arn}"
    raise SignatureRefused(f"{KEY_ENV} ({named})", "this KMS key is not listed in "
                           "params/approvers", hint="add it there by a reviewed commit: "
                                                    f'PRINCIPAL namespaces="tap" kms {arn}')
