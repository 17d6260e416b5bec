"""Identity is a key: plan and approval signatures against params/approvers as committed, tried as
an insider with a shell would (hand-written approvals, a name typed for another, a copied
signature, an edited plan, an uncommitted approvers file), and fuzzed. No emulator needed: the
Authorization is what every engine checks below every path (tap_lib/authority)."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures_signing import git, make_signed_project
from tap_lib import signing
from tap_lib.authority import Authorization, approval_message, digest, require
from tap_lib.errors import ProtectedStack, SignatureRefused, UsageError

STACK = "TapStackprod"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    made = make_signed_project(tmp_path_factory.mktemp("signing"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAP_PROJECT_DIR", str(made.project))
        yield made


def signed(keys, author="alice", approvers=("bob",), operation="deploy", **extra):
    steps = [{"urn": "urn:x", "type": "t", "name": "n", "op": "update", "diffs": ["memorySize"]}]
    return keys.authorization(STACK, operation=operation, steps=steps, author=author,
                              approvers=approvers, **extra)


def test_author_and_a_second_key_authorize(keys):
    author, seconds = signed(keys).check(STACK, "deploy")
    assert author.principal == "alice@example.com"
    assert [s.principal for s in seconds] == ["bob@example.com"]
    assert author.fingerprint != seconds[0].fingerprint


def test_no_plan_at_all_is_a_protected_stack_refusal(keys):
    with pytest.raises(ProtectedStack, match="needs a reviewed plan signed by its author"):
        require(None, STACK, "deploy", what="a deploy")


def test_a_hand_written_approvals_file_proves_nothing(keys):
    good = signed(keys, approvers=())
    forged = Authorization(good.body, good.hash, good.signature,
                           ({"operator": "mallory-forged", "plan": good.hash,
                             "time": "2026-12-03T00:00:00+00:00"},), "plan.json")
    with pytest.raises(SignatureRefused, match="names no principal"):
        forged.check(STACK, "deploy")
    named = Authorization(good.body, good.hash, good.signature,
                          ({"principal": "bob@example.com", "plan": good.hash,
                            "time": "2026-12-03T00:00:00+00:00", "signature": "approved"},),
                          "plan.json")
    with pytest.raises(SignatureRefused, match="missing or damaged"):
        named.check(STACK, "deploy")


def test_a_key_outside_params_approvers_cannot_approve(keys):
    with pytest.raises(SignatureRefused, match="does not list as bob@example.com"):
        _mallory_as_bob(keys).check(STACK, "deploy")
    with pytest.raises(SignatureRefused, match="does not list"):
        signed(keys, author="mallory").check(STACK, "deploy")


def _mallory_as_bob(keys) -> Authorization:
    """mallory signs an approval claiming to be bob."""
    good = signed(keys, approvers=())
    when = "2026-12-03T00:00:00+00:00"
    sig = signing.sign(approval_message(good.hash, "bob@example.com", when),
                       keys.keys["mallory"])
    return Authorization(good.body, good.hash, good.signature,
                         ({"principal": "bob@example.com", "plan": good.hash, "time": when,
                           "signature": sig},), "plan.json")


def test_the_author_cannot_approve_under_another_name(keys):
    """Four eyes are two keys: alice's own approval, or her key listed again under another
    principal, is not a second approval."""
    with pytest.raises(SignatureRefused, match="needs the approval of a second key"):
        signed(keys, approvers=("alice",)).check(STACK, "deploy")
    with pytest.raises(SignatureRefused, match="needs the approval of a second key"):
        signed(keys, approvers=()).check(STACK, "deploy")


def test_signatures_do_not_move_between_plans_or_operations(keys):
    one, other = signed(keys), signed(keys, extra_field="another plan")
    moved = Authorization(other.body, other.hash, other.signature, one.approvals, "plan.json")
    with pytest.raises(SignatureRefused, match="not an approval of this plan"):
        moved.check(STACK, "deploy")
    relabelled = [{**a, "plan": other.hash} for a in one.approvals]
    with pytest.raises(SignatureRefused, match="does not match what it signs"):
        Authorization(other.body, other.hash, other.signature, tuple(relabelled),
                      "plan.json").check(STACK, "deploy")
    stolen = Authorization(other.body, other.hash, one.signature, other.approvals, "plan.json")
    with pytest.raises(SignatureRefused, match="does not match what it signs"):
        stolen.check(STACK, "deploy")
    with pytest.raises(ProtectedStack, match="authorizes deploy of TapStackprod, not destroy"):
        one.check(STACK, "destroy")
    with pytest.raises(ProtectedStack, match="not deploy of TapStackprodx"):
        one.check(STACK + "x", "deploy")


def test_an_edited_plan_body_is_refused(keys):
    good = signed(keys)
    body = {**good.body, "steps": []}
    with pytest.raises(SignatureRefused, match="does not match its hash"):
        Authorization(body, good.hash, good.signature, good.approvals).check(STACK, "deploy")
    rehashed = digest(body)  # hash recomputed by hand: the author never signed it
    with pytest.raises(SignatureRefused, match="author's signature.*does not match"):
        Authorization(body, rehashed, good.signature, good.approvals).check(STACK, "deploy")


def test_only_committed_code_and_approvers_count(keys):
    good = signed(keys)
    approvers = keys.project / "params" / "approvers"
    original = approvers.read_text()
    pub = (keys.keys["mallory"].with_suffix(".pub")).read_text().split()
    try:  # mallory adds herself without review: the tree is dirty, and the file is not HEAD's
        approvers.write_text(original + f'mallory@example.com namespaces="tap" {pub[0]} '
                                        f'{pub[1]}\n')
        with pytest.raises(SignatureRefused, match="uncommitted changes"):
            good.check(STACK, "deploy")
    finally:
        approvers.write_text(original)
    good.check(STACK, "deploy")
    (keys.project / "later.txt").write_text("a later commit\n")
    git(keys.project, "add", "later.txt")
    git(keys.project, "commit", "-qm", "later")
    with pytest.raises(SignatureRefused, match="not the plan commit"):
        good.check(STACK, "deploy")


def test_an_unsigned_plan_cannot_change_a_protected_stack(keys):
    good = signed(keys)
    unsigned = Authorization(good.body, good.hash, None, good.approvals)
    with pytest.raises(SignatureRefused, match="not signed by its author"):
        unsigned.check(STACK, "deploy")


def test_own_signer_and_missing_key_errors(keys, monkeypatch):
    monkeypatch.delenv(signing.KEY_ENV, raising=False)
    with pytest.raises(UsageError, match="TAP_SIGNING_KEY is not set"):
        signing.signing_key()
    monkeypatch.setenv(signing.KEY_ENV, str(keys.project / "no-such-key"))
    with pytest.raises(UsageError, match="no such key file"):
        signing.signing_key()
    monkeypatch.setenv(signing.KEY_ENV, str(keys.keys["carol"]))
    assert signing.own_signer(signing.approvers_now()).principal == "carol@example.com"
    monkeypatch.setenv(signing.KEY_ENV, str(keys.keys["mallory"]))
    with pytest.raises(SignatureRefused, match="not listed in params/approvers"):
        signing.own_signer(signing.approvers_now())


def _flip(armored: str, at: int) -> str:
    """One base64 character of the signature changed."""
    i = 40 + at % 60
    return armored[:i] + ("B" if armored[i] != "B" else "C") + armored[i + 1:]


junk = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=40),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


@settings(max_examples=60)
@given(approval=junk, cut=st.integers(min_value=0, max_value=400))
def test_fuzzed_approvals_are_never_accepted(keys, approval, cut):
    """Random JSON, truncated or foreign signatures: never a second approval."""
    good = signed(keys)
    real = dict(good.approvals[0])
    candidates = [approval,
                  {**real, "signature": real["signature"][:cut % (len(real["signature"]) - 1)]},
                  {**real, "signature": approval if not isinstance(approval, str) else
                   _flip(real["signature"], cut)},
                  {**real, "principal": approval}]
    for candidate in candidates:
        forged = Authorization(good.body, good.hash, good.signature, (candidate,), "plan.json")
        with pytest.raises((SignatureRefused, ProtectedStack)):
            forged.check(STACK, "deploy")


def test_plan_files_round_trip_as_json(keys):
    """What load_plan reads back (JSON) verifies the same as what was signed."""
    good = signed(keys)
    again = json.loads(json.dumps({"body": good.body, "approvals": list(good.approvals)}))
    Authorization(again["body"], good.hash, good.signature,
                  tuple(again["approvals"])).check(STACK, "deploy")


def test_in_process_ed25519_checks_agree_with_ssh_keygen(keys, monkeypatch):
    """signing verifies ed25519 in-process (seals over a long trail); ssh-keygen -Y verify is
    the reference: same verdict for a good signature, a tampered message, another namespace,
    an approvers line restricted to another namespace."""
    import subprocess as sp

    alice = keys.keys["alice"]
    good = signing.sign(b"tap-seal\n1\nabc\n", alice)
    git_ns = sp.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(alice), "-n", "git"],
                    input=b"tap-seal\n1\nabc\n", capture_output=True, check=True).stdout.decode()
    listed = signing.approvers_now()
    git_only = listed.replace('alice@example.com namespaces="tap"',
                              'alice@example.com namespaces="git"')
    cases = [(b"tap-seal\n1\nabc\n", good, listed), (b"tap-seal\n1\nabd\n", good, listed),
             (b"tap-seal\n1\nabc\n", git_ns, listed), (b"tap-seal\n1\nabc\n", good, git_only)]

    def verdicts() -> list[bool]:
        out = []
        for message, armored, approvers in cases:
            try:
                signing.verify(message, armored, approvers, what="case")
                out.append(True)
            except SignatureRefused:
                out.append(False)
        return out

    in_process = verdicts()
    monkeypatch.setattr(signing, "_verify_ed25519", lambda *args: None)   # ssh-keygen only
    assert in_process == verdicts() == [True, False, False, False]
