"""KMS asymmetric keys as tap signers (TAP_SIGNING_KEY=arn:aws:kms:…), on the sandbox's KMS:
keys listed by ARN in params/approvers beside OpenSSH keys, sign/verify round trips (ECDSA and
RSA), refusals (a key not listed, a listed key claimed for another principal, a tampered message,
one key twice for four eyes), Authorizations mixing OpenSSH and KMS keys, audit seals and
`tap approve` with a KMS key, and every failure of KMS itself (IAM denies, a disabled or unknown
key, no endpoint, no credentials) as a typed tap error naming TAP_SIGNING_KEY and the key ARN. Answers moto does not give (AccessDenied on Sign
itself, DisabledException on Verify, throttling) are played by botocore's Stubber."""
from __future__ import annotations

import base64
import json
import subprocess
import time
from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import Stubber
from fixtures_signing import git, make_signed_project
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tap_lib import signing, signing_kms
from tap_lib.authority import Authorization, approval_message, digest, plan_message
from tap_lib.errors import SignatureRefused, TargetUnreachable, UsageError

pytestmark = pytest.mark.sandbox

REGION = "eu-west-2"
STACK = "TapStackprod"
FENCE = "http://127.0.0.1:9"      # nothing here may reach beyond this machine (DESIGN.md)
MESSAGE = b"tap-plan\nsha256:0123\n"


def _raised_cleanly(exc: BaseException) -> None:
    """A tap error, never a botocore traceback chained under it."""
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
    assert "Traceback" not in str(exc) and "botocore" not in str(exc)


@pytest.fixture(scope="module")
def kms(sandbox_home):
    """The sandbox's KMS, with the AWS environment a signer on it has."""
    from tap_lib.engines.sandbox import server

    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"AWS_ENDPOINT_URL": server.endpoint(), "AWS_ACCESS_KEY_ID": "testing",
                            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
                            "AWS_EC2_METADATA_DISABLED": "true",
                            "HTTP_PROXY": FENCE, "HTTPS_PROXY": FENCE, "http_proxy": FENCE,
                            "https_proxy": FENCE, "NO_PROXY": "127.0.0.1,localhost",
                            "no_proxy": "127.0.0.1,localhost"}.items():
            mp.setenv(name, value)
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_KMS",
                     signing.KEY_ENV):
            mp.delenv(name, raising=False)
        yield boto3.client("kms", region_name=REGION)


def _key(kms, spec: str, **extra) -> str:
    return kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec=spec, **extra)["KeyMetadata"]["Arn"]


@pytest.fixture(scope="module")
def keys(kms, tmp_path_factory):
    """A signed project (alice, bob, carol: OpenSSH) whose committed params/approvers also lists
    KMS keys: dave (P-256, also reached by an alias), erin (RSA), frank (dave's key again),
    grace (P-256) and henry (a key whose policy denies everything); ivan, judy and kate are
    written in ways that list nobody. mallory's KMS key is listed nowhere."""
    arns = {"dave": _key(kms, "ECC_NIST_P256"), "erin": _key(kms, "RSA_2048"),
            "grace": _key(kms, "ECC_NIST_P256"), "ivan": _key(kms, "ECC_NIST_P256"),
            "mallory": _key(kms, "ECC_NIST_P256"),
            "henry": _key(kms, "ECC_NIST_P256", Policy=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*",
                                                        "Action": "kms:*", "Resource": "*"}]}))}
    kms.create_alias(AliasName="alias/tap-dave", TargetKeyId=arns["dave"])
    account = arns["dave"].split(":")[4]
    alias = f"arn:aws:kms:{REGION}:{account}:alias/tap-dave"
    made = make_signed_project(tmp_path_factory.mktemp("kms-signing"))
    approvers = made.project / "params" / "approvers"
    approvers.write_text(approvers.read_text() + "\n".join([
        "# KMS keys (IAM decides who may kms:Sign)",
        f"dave@example.com namespaces=\"tap\" kms {arns['dave']} dave's KMS key",
        f"erin@example.com kms {arns['erin']}",
        f"frank@example.com namespaces=\"tap\" kms {arns['dave']}",
        f"grace@example.com,grace@example.org namespaces=\"tap\" kms {arns['grace']}",
        f"henry@example.com namespaces=\"tap\" kms {arns['henry']}",
        f"ivan@example.com namespaces=\"git\" kms {arns['ivan']}",
        f"judy@example.com namespaces=\"tap\" kms {alias}",
        f"kate@example.com cert-authority kms {arns['ivan']}"]) + "\n")
    git(made.project, "add", "params/approvers")
    git(made.project, "commit", "-qm", "KMS approvers")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAP_PROJECT_DIR", str(made.project))
        yield SimpleNamespace(project=made.project, ssh=made.keys, arn=arns, alias=alias,
                              kms=kms, approvers=approvers.read_text(),
                              holds={**arns, "frank": arns["dave"]})


def head(project) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True,
                          text=True, check=True).stdout.strip()


def _signing_key(keys, name: str):
    """An OpenSSH key file for alice, bob, carol; the KMS key ARN the others hold."""
    return keys.ssh[name] if name in keys.ssh else keys.holds[name]


def signed(keys, author: str, approvers: tuple[str, ...]) -> Authorization:
    body = {"stack": STACK, "operation": "deploy", "commit": head(keys.project),
            "steps": [{"urn": "urn:x", "type": "t", "name": "n", "op": "update",
                       "diffs": ["memorySize"]}]}
    plan_hash = digest(body)
    approvals = []
    for name in approvers:
        principal, when = f"{name}@example.com", "2026-12-03T12:00:00+00:00"
        approvals.append({"principal": principal, "plan": plan_hash, "time": when,
                          "signature": signing.sign(approval_message(plan_hash, principal, when),
                                                    _signing_key(keys, name))})
    return Authorization(body, plan_hash, signing.sign(plan_message(plan_hash),
                                                       _signing_key(keys, author)),
                         tuple(approvals), "plan.json")


# -- the approvers file --------------------------------------------------------------------------
def test_kms_lines_list_key_arns_and_leave_the_openssh_lines_alone(keys):
    kms_listed = {(a.principal, a.key_arn) for a in signing_kms.parse_approvers(keys.approvers)}
    assert kms_listed == {("dave@example.com", keys.arn["dave"]),
                          ("erin@example.com", keys.arn["erin"]),
                          ("frank@example.com", keys.arn["dave"]),
                          ("grace@example.com", keys.arn["grace"]),
                          ("grace@example.org", keys.arn["grace"]),
                          ("henry@example.com", keys.arn["henry"])}
    # another namespace, an alias, an unknown option: nobody
    assert [s.principal for s in signing.parse_approvers(keys.approvers)] == [
        "alice@example.com", "bob@example.com", "carol@example.com"]


def test_ssh_keygen_reads_the_whole_file_past_the_kms_lines(keys):
    """git (gpg.ssh.allowedSignersFile) or an auditor may hand params/approvers to ssh-keygen
    as it is: the KMS lines are reported and skipped, the OpenSSH ones still count."""
    sig = keys.project.parent / "alice.sig"
    sig.write_text(signing.sign(MESSAGE, keys.ssh["alice"]))
    out = subprocess.run(["ssh-keygen", "-Y", "verify", "-f",
                          str(keys.project / "params" / "approvers"), "-I", "alice@example.com",
                          "-n", "tap", "-s", str(sig)], input=MESSAGE, capture_output=True,
                         check=False)
    assert out.returncode == 0, out.stderr


# -- signing and verifying -----------------------------------------------------------------------
@pytest.mark.parametrize("name, algorithm", [("dave", "ECDSA_SHA_256"),
                                             ("erin", "RSASSA_PSS_SHA_256")])
def test_sign_and_verify_round_trip(keys, name, algorithm):
    armored = signing.sign(MESSAGE, keys.arn[name])
    assert armored.startswith(signing_kms.ARMOR_BEGIN + "\n")
    assert armored.rstrip().endswith(signing_kms.ARMOR_END)
    sig = signing_kms.unarmor(armored)
    assert (sig.key_arn, sig.algorithm) == (keys.arn[name], algorithm)
    signer = signing.verify(MESSAGE, armored, keys.approvers, what="x",
                            principal=f"{name}@example.com")
    assert signer == signing.Signer(f"{name}@example.com", "KMS:" + keys.arn[name])


def test_rsa_pkcs1_signatures_verify_too(keys):
    """A signature KMS made with RSASSA_PKCS1_V1_5_SHA_256 (by another tool, or a later tap)."""
    out = keys.kms.sign(KeyId=keys.arn["erin"], Message=signing_kms.statement(MESSAGE),
                        MessageType="RAW", SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256")
    armored = signing_kms.armor(keys.arn["erin"], "RSASSA_PKCS1_V1_5_SHA_256", out["Signature"])
    assert signing.verify(MESSAGE, armored, keys.approvers, what="x").principal == \
        "erin@example.com"


def test_kms_signs_a_namespaced_digest_not_the_bare_message(keys):
    """A signature the key made over the bare message elsewhere is not a tap signature."""
    out = keys.kms.sign(KeyId=keys.arn["dave"], Message=MESSAGE, MessageType="RAW",
                        SigningAlgorithm="ECDSA_SHA_256")
    armored = signing_kms.armor(keys.arn["dave"], "ECDSA_SHA_256", out["Signature"])
    with pytest.raises(SignatureRefused, match="does not match what it signs"):
        signing.verify(MESSAGE, armored, keys.approvers, what="x")


def test_an_alias_signs_as_its_key(keys, monkeypatch):
    monkeypatch.setenv(signing.KEY_ENV, keys.alias)
    assert signing.signing_key() == signing_kms.KmsKey(keys.alias, REGION)
    armored = signing.sign(MESSAGE)
    assert signing_kms.unarmor(armored).key_arn == keys.arn["dave"]
    me = signing.own_signer(keys.approvers)
    assert me == signing.Signer("dave@example.com", "KMS:" + keys.arn["dave"])
    assert signing.verify(MESSAGE, armored, keys.approvers, what="x") == me


def test_own_signer_of_kms_keys(keys, monkeypatch):
    monkeypatch.setenv(signing.KEY_ENV, keys.arn["erin"])
    assert signing.own_signer(keys.approvers).principal == "erin@example.com"
    monkeypatch.setenv(signing.KEY_ENV, keys.arn["mallory"])
    with pytest.raises(SignatureRefused, match="this KMS key is not listed in params/approvers"):
        signing.own_signer(keys.approvers)
    with pytest.raises(UsageError, match="a KMS key has no OpenSSH public key"):
        signing.public_key_blob()


def test_a_kms_key_not_listed_is_refused(keys):
    for name in ("mallory", "ivan"):  # ivan: listed for namespace git only
        armored = signing.sign(MESSAGE, keys.arn[name])
        with pytest.raises(SignatureRefused,
                           match=f"signed by KMS key {keys.arn[name]}, which params/approvers "
                                 "does not list"):
            signing.verify(MESSAGE, armored, keys.approvers, what="x")


def test_a_listed_key_claimed_for_another_principal_is_refused(keys):
    armored = signing.sign(MESSAGE, keys.arn["erin"])
    with pytest.raises(SignatureRefused, match="does not list as dave@example.com"):
        signing.verify(MESSAGE, armored, keys.approvers, what="x", principal="dave@example.com")
    # erin's signature relabelled as dave's key: KMS judges it against dave's key
    sig = signing_kms.unarmor(armored)
    relabelled = signing_kms.armor(keys.arn["dave"], sig.algorithm, sig.signature)
    with pytest.raises(SignatureRefused, match="does not match what it signs"):
        signing.verify(MESSAGE, relabelled, keys.approvers, what="x")
    relabelled = signing_kms.armor(keys.arn["grace"], "ECDSA_SHA_256",
                                   signing_kms.unarmor(signing.sign(MESSAGE, keys.arn["dave"]))
                                   .signature)
    with pytest.raises(SignatureRefused, match="does not match what it signs"):
        signing.verify(MESSAGE, relabelled, keys.approvers, what="x")


def test_a_tampered_message_is_refused(keys):
    armored = signing.sign(MESSAGE, keys.arn["dave"])
    with pytest.raises(SignatureRefused, match="dave@example.com .* does not match what it "
                                               "signs"):
        signing.verify(MESSAGE + b"x", armored, keys.approvers, what="plan.json")


# -- four eyes across OpenSSH and KMS keys -------------------------------------------------------
def test_an_ssh_author_and_a_kms_approver_authorize(keys):
    author, seconds = signed(keys, "alice", ("dave",)).check(STACK, "deploy")
    assert author.principal == "alice@example.com" and author.fingerprint.startswith("SHA256:")
    assert seconds == [signing.Signer("dave@example.com", "KMS:" + keys.arn["dave"])]
    author, seconds = signed(keys, "erin", ("bob",)).check(STACK, "deploy")
    assert (author.principal, [s.principal for s in seconds]) == ("erin@example.com",
                                                                  ["bob@example.com"])


def test_one_kms_key_cannot_be_author_and_approver(keys):
    """dave's own approval, or dave's key listed again as frank, is not a second key."""
    for approver in ("dave", "frank"):
        with pytest.raises(SignatureRefused, match="needs the approval of a second key"):
            signed(keys, "dave", (approver,)).check(STACK, "deploy")
    signed(keys, "dave", ("frank", "erin")).check(STACK, "deploy")


def test_a_kms_approval_under_another_principal_is_refused(keys):
    good = signed(keys, "alice", ())
    when = "2026-12-03T00:00:00+00:00"
    forged = {"principal": "dave@example.com", "plan": good.hash, "time": when,
              "signature": signing.sign(approval_message(good.hash, "dave@example.com", when),
                                        keys.arn["erin"])}
    with pytest.raises(SignatureRefused, match="does not list as dave@example.com"):
        Authorization(good.body, good.hash, good.signature, (forged,),
                      "plan.json").check(STACK, "deploy")


def test_the_audit_trail_is_sealed_with_a_kms_key(keys, monkeypatch, tmp_path):
    """With TAP_SIGNING_KEY a KMS ARN every appended entry is sealed by KMS, and the seals are
    judged like OpenSSH ones (records/seals.py, which `tap audit verify` runs)."""
    from tap_lib import trail
    from tap_lib.records import seals

    monkeypatch.setenv("TAP_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("TAP_OPERATOR", "dave")
    for name in ("TAP_TARGET", trail.RECORD_ENV, trail.SESSION_ENV):
        monkeypatch.delenv(name, raising=False)
    for signer in ("dave", "mallory"):
        monkeypatch.setenv(signing.KEY_ENV, keys.arn[signer])
        trail.append("deploy", stack="TapStackdev", target="sandbox",
                     env_file="params/dev.yaml", summary={"same": 1})
    seal_lines = (tmp_path / "outputs" / trail.SEALS_NAME).read_text().splitlines()
    assert all(signing_kms.is_armored(json.loads(x)["signature"]) for x in seal_lines)
    judged = seals.check(trail.records_root(), trail.read(), keys.approvers)
    assert {who for _, _, who in judged.spans} == {"dave@example.com"}
    assert [p.kind for p in judged.problems] == ["forged"]
    assert keys.arn["mallory"] in str(judged.problems[0])


def test_tap_approve_with_a_kms_key(keys, monkeypatch, tmp_path, capsys):
    """The CLI path: alice saves a plan (OpenSSH key), `tap approve` with a KMS key in
    TAP_SIGNING_KEY approves it as dave; an unlisted KMS key exits 2, an unreachable KMS 3."""
    from tap_lib import cli
    from tap_lib.ops import plans

    monkeypatch.setenv(signing.KEY_ENV, str(keys.ssh["alice"]))
    monkeypatch.setenv("TAP_OPERATOR", "alice")
    path = plans.save_plan(plans.make_plan("dev", "sandbox"), tmp_path / "plan.json")
    monkeypatch.setenv("TAP_OPERATOR", "dave")
    monkeypatch.setenv(signing.KEY_ENV, keys.arn["mallory"])
    assert cli.main(["approve", str(path)]) == 2
    assert "this KMS key is not listed in params/approvers" in capsys.readouterr().err
    monkeypatch.setenv(signing.KEY_ENV, keys.arn["dave"])
    with monkeypatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", FENCE)
        assert cli.main(["approve", str(path)]) == 3
        assert f"cannot reach KMS at {FENCE}" in capsys.readouterr().err
    assert cli.main(["approve", str(path)]) == 0
    approved = plans.load_plan(path)
    assert plans.approved_by(approved) == ["dave@example.com"]
    assert signing_kms.is_armored(approved.approvals[0]["signature"])


# -- KMS failures are tap errors -----------------------------------------------------------------
def test_a_disabled_key_neither_signs_nor_verifies(keys, monkeypatch):
    before = signing.sign(MESSAGE, keys.arn["grace"])
    key_id = keys.arn["grace"].rsplit("/", 1)[1]  # moto's DisableKey takes no ARN
    keys.kms.disable_key(KeyId=key_id)
    try:
        monkeypatch.setenv(signing.KEY_ENV, keys.arn["grace"])
        with pytest.raises(SignatureRefused) as refused:
            signing.sign(MESSAGE)
        assert f"TAP_SIGNING_KEY={keys.arn['grace']}: KMS key {keys.arn['grace']} is " \
               "Disabled: it cannot sign" in str(refused.value)
        _raised_cleanly(refused.value)
        with pytest.raises(SignatureRefused, match="is Disabled: its signatures no longer"):
            signing.verify(MESSAGE, before, keys.approvers, what="seal line 3")
    finally:
        keys.kms.enable_key(KeyId=key_id)
    assert signing.verify(MESSAGE, before, keys.approvers, what="x").principal == \
        "grace@example.com"


def test_a_key_policy_that_denies_is_a_refusal(keys, monkeypatch):
    monkeypatch.setenv(signing.KEY_ENV, keys.arn["henry"])
    with pytest.raises(SignatureRefused) as refused:
        signing.sign(MESSAGE)
    text = str(refused.value)
    assert f"TAP_SIGNING_KEY={keys.arn['henry']}: AWS denies kms:DescribeKey on KMS key " \
           f"{keys.arn['henry']}" in text and "AccessDeniedException" in text
    _raised_cleanly(refused.value)


def test_keys_tap_cannot_sign_with(keys, monkeypatch):
    account = keys.arn["dave"].split(":")[4]
    missing = f"arn:aws:kms:{REGION}:{account}:key/00000000-0000-4000-8000-000000000000"
    monkeypatch.setenv(signing.KEY_ENV, missing)
    with pytest.raises(UsageError, match=f"TAP_SIGNING_KEY={missing}: KMS has no key"):
        signing.sign(MESSAGE)
    symmetric = keys.kms.create_key(KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["Arn"]
    monkeypatch.setenv(signing.KEY_ENV, symmetric)
    with pytest.raises(UsageError, match=r"is not a signing key \(KeyUsage ENCRYPT_DECRYPT"):
        signing.sign(MESSAGE)
    for bad in ("arn:aws:kms:eu-west-2:123:key/nope", "arn:aws:s3:::bucket"):
        monkeypatch.setenv(signing.KEY_ENV, bad)
        with pytest.raises(UsageError, match="not a KMS key ARN tap can sign with"):
            signing.signing_key()


def test_an_unreachable_endpoint_names_the_key_and_the_endpoint(keys, monkeypatch):
    armored = signing.sign(MESSAGE, keys.arn["dave"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", FENCE)
    monkeypatch.setenv(signing.KEY_ENV, keys.arn["dave"])
    started = time.monotonic()
    with pytest.raises(TargetUnreachable) as unreachable:
        signing.sign(MESSAGE)
    assert time.monotonic() - started < 20
    assert f"TAP_SIGNING_KEY={keys.arn['dave']}: cannot reach KMS at {FENCE}" in \
        str(unreachable.value)
    _raised_cleanly(unreachable.value)
    with pytest.raises(TargetUnreachable, match=f"plan.json: cannot reach KMS at {FENCE}"):
        signing.verify(MESSAGE, armored, keys.approvers, what="plan.json")


def test_no_credentials_is_unreachable_not_a_traceback(keys, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv(signing.KEY_ENV, keys.arn["dave"])
    with pytest.raises(TargetUnreachable, match=f"TAP_SIGNING_KEY={keys.arn['dave']}: no AWS "
                                                "credentials"):
        signing.sign(MESSAGE)


def _stubbed(monkeypatch, keys) -> Stubber:
    """A KMS client whose answers the test gives (AWS behaviours moto does not have)."""
    client = boto3.client("kms", region_name=REGION)
    stub = Stubber(client)
    monkeypatch.setattr(signing_kms, "client", lambda region, subject: client)
    stub.activate()
    return stub


def _described(arn: str) -> dict:
    return {"KeyMetadata": {"KeyId": arn.rsplit("/", 1)[1], "Arn": arn, "KeyState": "Enabled",
                            "KeyUsage": "SIGN_VERIFY", "KeySpec": "ECC_NIST_P256",
                            "SigningAlgorithms": ["ECDSA_SHA_256"]}}


def test_aws_answers_moto_does_not_give(keys, monkeypatch):
    """IAM denying kms:Sign itself, Verify on a disabled key, throttling, and a Verify that
    answers KMSInvalidSignatureException: each a tap error naming the key."""
    armored = signing.sign(MESSAGE, keys.arn["dave"])
    arn = keys.arn["dave"]
    stub = _stubbed(monkeypatch, keys)
    stub.add_response("describe_key", _described(arn))
    stub.add_client_error("sign", "AccessDeniedException", "User: arn:aws:iam::1:user/x is not "
                          "authorized to perform: kms:Sign", 400)
    with pytest.raises(SignatureRefused) as refused:
        signing.sign(MESSAGE, arn)
    assert f"TAP_SIGNING_KEY={arn}: AWS denies kms:Sign on KMS key {arn}" in str(refused.value)
    _raised_cleanly(refused.value)
    stub.add_response("describe_key", _described(arn))
    stub.add_client_error("verify", "DisabledException", f"{arn} is disabled.", 400)
    with pytest.raises(SignatureRefused, match=f"KMS key {arn} cannot be used "
                                               r"\(DisabledException"):
        signing.verify(MESSAGE, armored, keys.approvers, what="x")
    stub.add_response("describe_key", _described(arn))
    stub.add_client_error("verify", "KMSInvalidSignatureException", "", 400)
    with pytest.raises(SignatureRefused, match="does not match what it signs"):
        signing.verify(MESSAGE, armored, keys.approvers, what="x")
    stub.add_client_error("describe_key", "ThrottlingException", "Rate exceeded", 400)
    with pytest.raises(TargetUnreachable, match=f"failed kms:DescribeKey on {arn}"):
        signing.verify(MESSAGE, armored, keys.approvers, what="x")
    stub.assert_no_pending_responses()


# -- fuzzing ------------------------------------------------------------------------------------
def _document(armored: str) -> dict:
    lines = armored.strip().splitlines()
    return json.loads(base64.b64decode("".join(lines[1:-1])))


def _rearmor(doc: dict) -> str:
    body = base64.b64encode(json.dumps(doc).encode()).decode()
    return f"{signing_kms.ARMOR_BEGIN}\n{body}\n{signing_kms.ARMOR_END}\n"


junk = st.none() | st.booleans() | st.integers() | st.text(max_size=30) | \
    st.lists(st.integers(), max_size=3)


@pytest.fixture(scope="module")
def good(keys):
    return signing.sign(MESSAGE, keys.arn["dave"])


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(at=st.integers(min_value=0, max_value=10_000), byte=st.integers(1, 255),
       field=st.sampled_from(["algorithm", "key_arn", "namespace", "signature", "extra"]),
       value=junk, noise=st.text(max_size=60))
def test_damaged_kms_signatures_never_verify(keys, good, at, byte, field, value, noise):
    """One character or byte changed, a cut, a field replaced or added, noise inside the
    armor: refused (never a crash, never a traceback), unless it decodes to the same
    signature."""
    lines = good.splitlines()
    body = "".join(lines[1:-1])
    i = at % len(body)
    flipped = body[:i] + ("A" if body[i] != "A" else "B") + body[i + 1:]
    doc = _document(good)
    raw = bytearray(base64.b64decode(doc["signature"]))
    raw[at % len(raw)] ^= byte
    candidates = [
        f"{lines[0]}\n{flipped}\n{lines[-1]}\n",
        good[:at % len(good)],
        _rearmor({**doc, "signature": base64.b64encode(bytes(raw)).decode()}),
        _rearmor({**doc, field: value}),
        f"{lines[0]}\n{noise}\n{lines[-1]}\n",
        f"{lines[0]}\n{body}{noise}\n{lines[-1]}\n",
    ]
    original = signing_kms.unarmor(good)
    for candidate in candidates:
        try:
            same = signing_kms.unarmor(candidate) == original
        except ValueError:
            same = False
        if same:  # non-canonical base64 padding bits decode to the same signature
            continue
        with pytest.raises(SignatureRefused):
            signing.verify(MESSAGE, candidate, keys.approvers, what="x")
    assert signing.verify(MESSAGE, good, keys.approvers, what="x").principal == \
        "dave@example.com"
