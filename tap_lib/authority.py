"""What lets a protected stack change: a reviewed plan signed by its author and approved, with a
*different key*, by a second principal of ``params/approvers`` as committed at the plan's commit.

It sits below the engines so that every path that mutates (``Engine.up/destroy``, repair, the
sandbox's reset) checks the same thing itself: an Authorization is re-verified from its signed
bytes wherever it is used, so an object built by hand, a file written by hand or a name typed
into ``TAP_OPERATOR`` proves nothing.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from . import signing
from .errors import ProtectedStack, SignatureRefused
from .signing import Signer

OPERATIONS = ("deploy", "destroy", "refresh")


def digest(body: dict[str, Any]) -> str:
    """The plan's hash: SHA-256 of its canonical JSON."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def plan_message(plan_hash: str) -> bytes:
    return f"tap-plan\n{plan_hash}\n".encode()


def approval_message(plan_hash: str, principal: str, time: str) -> bytes:
    return f"tap-approval\n{plan_hash}\n{principal}\n{time}\n".encode()


@dataclass(frozen=True)
class Authorization:
    """A saved plan's signed material: the body its hash covers, the author's signature and
    the approvals. `check` says who signed, or refuses."""

    body: dict[str, Any]
    hash: str
    signature: str | None
    approvals: tuple[dict[str, Any], ...] = ()
    source: str = "plan"

    @property
    def operation(self) -> str:
        return self.body.get("operation", "deploy")

    def author(self, approvers: str) -> Signer:
        if not self.signature:
            raise SignatureRefused(
                self.source, "the plan is not signed by its author (a protected stack needs "
                             "its author's signature and a second key's approval)",
                hint="save it with TAP_SIGNING_KEY set (a DAG's preview: the worker's key), "
                     f"then another principal of params/approvers runs `tap approve "
                     f"{self.source}`")
        return signing.verify(plan_message(self.hash), self.signature, approvers,
                              what=f"{self.source} (author's signature)")

    def approvers(self, approvers: str) -> list[Signer]:
        """Every approval's signer; a damaged or forged approval is refused, not skipped."""
        signers = []
        for i, approval in enumerate(self.approvals, start=1):
            what = f"{self.source}.approvals.json (approval {i})"
            if not isinstance(approval, dict) or approval.get("plan") != self.hash:
                raise SignatureRefused(what, "not an approval of this plan")
            principal, time = approval.get("principal"), approval.get("time")
            if not isinstance(principal, str) or not isinstance(time, str):
                raise SignatureRefused(what, "the approval names no principal or time")
            signers.append(signing.verify(approval_message(self.hash, principal, time),
                                          approval.get("signature"), approvers, what=what,
                                          principal=principal))
        return signers

    def check(self, stack: str, operation: str) -> tuple[Signer, list[Signer]]:
        """(author, second-key approvers) when this authorizes `operation` on `stack`."""
        if digest(self.body) != self.hash:
            raise SignatureRefused(self.source, "the plan's content does not match its hash")
        if self.body.get("stack") != stack or self.operation != operation:
            raise ProtectedStack(stack, f"the plan authorizes {self.operation} of "
                                        f"{self.body.get('stack')}, not {operation} of {stack}",
                                 None, hint="make and approve a plan for this operation")
        from .provenance import git_state

        commit, dirty = git_state()
        if dirty is not False or commit != self.body.get("commit"):
            raise SignatureRefused(
                self.source, "protected stacks change only from committed code: the working "
                f"tree {'has uncommitted changes' if dirty else 'is not the plan commit'} "
                f"(plan at {str(self.body.get('commit'))[:12]}, now {commit[:12]})",
                hint="commit (params/approvers included, reviewed like code), then make the "
                     "plan again")
        approvers = signing.approvers_at(commit)
        if approvers != signing.approvers_now():
            raise SignatureRefused("params/approvers", "differs from the committed file")
        author = self.author(approvers)
        seconds = [s for s in self.approvers(approvers) if s.fingerprint != author.fingerprint]
        if not seconds:
            raise SignatureRefused(
                self.source, f"needs the approval of a second key; only its author "
                             f"{author} signed it",
                hint=f"another principal of params/approvers runs `tap approve "
                     f"{self.source}` with their own TAP_SIGNING_KEY")
        return author, seconds


def require(authorization: Authorization | None, stack: str, operation: str, *,
            what: str, env: str = "ENV") -> tuple[Signer, list[Signer]]:
    """The guard every mutation of a protected stack passes: a verified, approved plan."""
    if authorization is None:
        raise ProtectedStack(
            stack, f"{what} needs a reviewed plan signed by its author and approved by a "
                   "second key of params/approvers", None,
            hint=f"tap preview --env {env}"
                 f"{' --' + operation if operation in ('destroy', 'refresh') else ''} "
                 "--save-plan FILE; a second principal of params/approvers: tap approve FILE; "
                 f"then tap {operation} --env {env} --plan FILE"
                 + (f" --yes --confirm {stack}" if operation == "destroy" else ""))
    if not isinstance(authorization, Authorization):
        raise ProtectedStack(stack, f"{what}: not a tap plan authorization", None)
    return authorization.check(stack, operation)
