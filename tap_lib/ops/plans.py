"""Reviewed plans: a preview saved with everything it was computed from, approved by a second
operator, and applied exactly as reviewed (PCI DSS 6.5: changes reviewed before they are applied).

Identity is a key (tap_lib/signing, tap_lib/authority): the author signs the plan's hash when
saving it, an approver signs hash + principal + time, both with keys listed in params/approvers.
A protected stack's plan needs the author's and a *different key's* valid signatures, read from
params/approvers as committed at the plan's commit; `TAP_OPERATOR` is only a display name.

A saved plan holds the steps, the settings, the environment file, the commit (and whether the
tree was dirty), a fingerprint of the stack's state, its author and time, and the SHA-256 of all
of that. `deploy --plan` refuses, before anything changes, a plan that was edited, made at another
commit, against other state or settings, or is older than TAP_PLAN_MAX_AGE_HOURS; the engine then
stops at any step that differs from the plan (the aws target hands Pulumi its own update plan).
Protected stacks deploy only from a plan approved by someone other than its author. Approvals
live beside the plan (FILE.approvals.json), outside what the hash covers.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import authority, signing, trail
from ..authority import Authorization, approval_message, digest, plan_message  # noqa: F401
from ..engines.base import Engine, Plan
from ..engines.registry import check_target, open_engine
from ..errors import PlanRefused, SignatureRefused, TapError
from .gating import preview, settings_for, skip_map

KIND, VERSION = "tap-plan", 2
PLAN_MIME = "application/vnd.tap.plan+json"   # how a preview notebook's record carries its plan
MAX_AGE_ENV, DEFAULT_MAX_AGE_H = "TAP_PLAN_MAX_AGE_HOURS", 24.0


@dataclass
class ReviewedPlan:
    body: dict[str, Any]                      # everything the hash covers
    hash: str
    source: str = ""                          # the file it was read from
    approvals: list[dict[str, str]] = field(default_factory=list)
    signature: str | None = None              # the author's, over plan_message(hash)

    @property
    def stack(self) -> str:
        return self.body["stack"]

    @property
    def author(self) -> str:
        return self.body["author"]

    @property
    def operation(self) -> str:
        return self.body.get("operation", "deploy")

    @property
    def plan(self) -> Plan:
        return Plan.from_body(self.body)

    @property
    def authorization(self) -> Authorization:
        return Authorization(self.body, self.hash, self.signature, tuple(self.approvals),
                             self.source or "plan")

    def to_json(self) -> dict[str, Any]:
        return {**self.body, "hash": self.hash, "signature": self.signature}


def state_fingerprint(engine: Engine) -> str:
    """What the plan was computed against: every resource's id, status and outputs."""
    resources = sorted((r.urn, r.type, r.id, r.status, r.outputs) for r in engine.resources())
    blob = json.dumps([resources, engine.outputs()], sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


# -- making and reading plans -------------------------------------------------------------------
def make_plan(env: str, target: str | None = None, overrides=(), *, skip_rules=(),
              reason: str | None = None, artifact: Path | None = None,
              destroy: bool = False, refresh: bool = False, engine: Engine | None = None
              ) -> ReviewedPlan:
    """Preview (gated by preflight) and capture everything the plan depends on; signed by its
    author when TAP_SIGNING_KEY is set (a protected stack deploys only signed plans). `engine`:
    one already open on the stack (a `Stack` handle's), else one is opened."""
    target = check_target(target)
    settings = engine.settings if engine is not None else settings_for(env, overrides)
    if engine is None:
        engine = open_engine(settings, target, tuple(overrides))
    fingerprint = state_fingerprint(engine)
    if destroy:
        plan = engine.preview_destroy()
    elif refresh:  # reads every resource into the state; changes none: no steps to review
        plan = Plan(engine.stack, target, [], operation="refresh")
    else:
        plan = preview(env, target, overrides, skip_rules=skip_rules, reason=reason,
                       artifact=artifact, engine=engine)
    commit, dirty = trail.git_state()
    operation = "destroy" if destroy else "refresh" if refresh else "deploy"
    body = {"kind": KIND, "version": VERSION, "operation": operation,
            "stack": plan.stack, "target": target,
            "env": env, "env_file": settings.source, "overrides": list(overrides),
            "settings": settings.public_dict(), "commit": commit, "dirty": dirty,
            "state": fingerprint, "author": trail.current_operator(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "created_epoch": time.time(), "skipped_rules": dict(skip_map(
                skip_rules, reason)), "summary": plan.summary, "cost": plan.cost,
            "steps": [s.to_dict() for s in plan.steps], "artifact": plan.artifact}
    if plan.artifact:
        body["artifact_sha256"] = hashlib.sha256(Path(plan.artifact).read_bytes()).hexdigest()
    plan_hash = digest(body)
    signature = signing.sign(plan_message(plan_hash)) if signing.has_signing_key() else None
    return ReviewedPlan(body, plan_hash, signature=signature)


def save_plan(reviewed: ReviewedPlan, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(reviewed.to_json(), indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)
    reviewed.source = str(path)
    return path


def load_plan(path: str | Path) -> ReviewedPlan:
    """A saved plan file, or a preview notebook's record carrying one (local or in an s3://
    records root); its hash is checked."""
    source = str(path)
    try:
        data = json.loads(_read(source))
    except FileNotFoundError:
        raise PlanRefused(source, "no such plan file", hint="give the file `tap preview "
                          "--save-plan FILE` wrote, or a preview record") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanRefused(source, f"not a readable plan ({type(exc).__name__})") from None
    if source.endswith(".ipynb"):
        data = _plan_in_record(data, source)
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise PlanRefused(source, "not a tap plan")
    if data.get("version") != VERSION:
        raise PlanRefused(source, f"plan version {data.get('version')!r}; this tap reads "
                                  f"version {VERSION}")
    body = {k: v for k, v in data.items() if k not in ("hash", "signature")}
    if data.get("hash") != digest(body):
        raise PlanRefused(source, "the plan was changed after it was saved (its SHA-256 does "
                                  "not match its content)")
    signature = data.get("signature")
    return ReviewedPlan(body, data["hash"], source, _approvals(source),
                        signature if isinstance(signature, str) else None)


def _plan_in_record(notebook: Any, source: str) -> Any:
    for cell in (notebook or {}).get("cells", []):
        for output in cell.get("outputs", []):
            found = output.get("data", {}).get(PLAN_MIME)
            if found:
                return found
    raise PlanRefused(source, "this record holds no saved plan (only preview records do)")


def display_plan(reviewed: ReviewedPlan) -> None:
    """A preview notebook keeps its plan in its record: `tap deploy --plan RECORD` reads it."""
    from IPython.display import display

    display({"text/plain": f"plan {reviewed.hash} for {reviewed.stack} by {reviewed.author} "
                           f"at commit {reviewed.body['commit'][:12]}",
             PLAN_MIME: reviewed.to_json()}, raw=True)


def _read(source: str) -> str:
    """A plan file or record's text; FileNotFoundError when there is none (also on S3)."""
    if not trail.is_remote(source):
        return Path(source).read_text(encoding="utf-8")
    from botocore.exceptions import ClientError

    from .audit import read_bytes
    try:
        return read_bytes(source).decode("utf-8")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NoSuchBucket"):
            raise FileNotFoundError(source) from None
        raise OSError(exc.response.get("Error", {}).get("Code", "S3 error")) from None


# -- approving ---------------------------------------------------------------------------------
def _approvals_path(source: str) -> str:
    return source + ".approvals.json"


def _approvals(source: str) -> list[dict[str, str]]:
    path = _approvals_path(source)
    try:
        data = json.loads(_read(path))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise PlanRefused(path, "the approvals file is damaged") from None
    if not isinstance(data, list):
        raise PlanRefused(path, "the approvals file is damaged (not a list)")
    return data


def _add_approval(source: str, entry: dict[str, str]) -> list[dict[str, str]]:
    """Append one approval, re-reading the file first: two approvers at once both count.

    Locally the read-append-write runs under a lock beside the file and replaces it atomically;
    in an s3:// records root it is a new locked version of the object (two approvals racing
    within one round trip there can still lose one; the loser sees it missing and re-runs)."""
    path = _approvals_path(source)
    if trail.is_remote(source):
        from ..records.locked import put_locked

        approvals = _merged(_approvals(source), entry)
        put_locked(path, json.dumps(approvals, indent=1).encode())
        return approvals
    from filelock import FileLock

    with FileLock(path + ".lock", timeout=60):
        approvals = _merged(_approvals(source), entry)
        tmp = Path(path + ".tmp")
        tmp.write_text(json.dumps(approvals, indent=1))
        os.replace(tmp, path)
    return approvals


def _merged(approvals: list[dict[str, str]], entry: dict[str, str]) -> list[dict[str, str]]:
    if any(a.get("principal") == entry["principal"] for a in approvals):
        return approvals
    return [*approvals, entry]


def approve(path: str | Path) -> ReviewedPlan:
    """Four eyes: a principal of params/approvers whose key is not the author's signs the plan
    as saved (its hash). TAP_OPERATOR plays no part."""
    reviewed = load_plan(path)
    approvers = signing.approvers_now()
    me = signing.own_signer(approvers)
    author = reviewed.authorization.author(approvers)
    if me.fingerprint == author.fingerprint:
        raise PlanRefused(reviewed.source, f"{me} signed this plan as its author and cannot "
                                           "approve it too (same key)",
                          hint="another principal of params/approvers runs `tap approve` with "
                               "their own TAP_SIGNING_KEY")
    reviewed.authorization.approvers(approvers)  # refuse to add to damaged approvals
    if any(a.get("principal") == me.principal for a in reviewed.approvals):
        return reviewed
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    entry = {"principal": me.principal, "plan": reviewed.hash, "time": when,
             "operator": trail.current_operator(),
             "signature": signing.sign(approval_message(reviewed.hash, me.principal, when))}
    reviewed.approvals = _add_approval(reviewed.source, entry)
    trail.append(operation="approve", stack=reviewed.stack, target=reviewed.body["target"],
                 env_file=reviewed.body["env_file"], plan_hash=reviewed.hash,
                 record=reviewed.source, result="succeeded",
                 notes=[f"approved by {me}, authored by {author}"])
    return reviewed


def approved_by(reviewed: ReviewedPlan) -> list[str]:
    """The principals whose valid approvals count (a key other than the author's); [] when the
    plan or any approval does not verify."""
    approvers = signing.approvers_now()
    try:
        author = reviewed.authorization.author(approvers)
        return sorted({s.principal for s in reviewed.authorization.approvers(approvers)
                       if s.fingerprint != author.fingerprint})
    except TapError:
        return []


# -- applying ----------------------------------------------------------------------------------
def check_applicable(reviewed: ReviewedPlan, engine: Engine, env: str, target: str,
                     overrides: tuple[str, ...]) -> None:
    """Refuse, before anything changes, a plan that no longer describes what would happen."""
    body, src = reviewed.body, reviewed.source
    if (body["stack"], body["target"]) != (engine.stack, target):
        raise PlanRefused(src, f"the plan is for {body['stack']} on {body['target']}, not "
                               f"{engine.stack} on {target}")
    if body["env_file"] != engine.settings.source or list(overrides) != body["overrides"]:
        raise PlanRefused(src, f"the plan was made from {body['env_file']} with "
                               f"{body['overrides'] or 'no'} overrides; deploy --plan uses "
                               "exactly those (leave out --set)")
    age_h = (time.time() - float(body["created_epoch"])) / 3600
    limit = float(os.environ.get(MAX_AGE_ENV) or DEFAULT_MAX_AGE_H)
    if age_h > limit:
        raise PlanRefused(src, f"the plan is {age_h:.1f} h old; plans older than {limit:g} h "
                               f"are refused ({MAX_AGE_ENV})")
    commit, _ = trail.git_state()
    if commit != body["commit"]:
        raise PlanRefused(src, f"the plan was made at commit {body['commit'][:12]}, the code "
                               f"is now at {commit[:12]}")
    changed = _changed_settings(body["settings"], engine.settings.public_dict())
    if changed:
        raise PlanRefused(src, "the settings changed after the plan: " + "; ".join(changed))
    if state_fingerprint(engine) != body["state"]:
        raise PlanRefused(src, "the stack changed after the plan was made (another deploy, "
                               "refresh or destroy ran); its steps may no longer hold")
    if body.get("artifact") and hashlib.sha256(
            Path(body["artifact"]).read_bytes()).hexdigest() != body.get("artifact_sha256"):
        raise PlanRefused(src, f"the target's own plan {body['artifact']} was changed")
    if engine.is_protected():
        try:
            authority.require(reviewed.authorization, engine.stack, reviewed.operation,
                              what=reviewed.operation)
        except SignatureRefused as exc:
            raise PlanRefused(src, f"{engine.stack} is protected: {exc.problem}",
                              hint=exc.hint) from None


def _changed_settings(before: Any, now: Any, path: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(now, dict):
        return [c for k in sorted(before.keys() | now.keys())
                for c in _changed_settings(before.get(k), now.get(k),
                                           f"{path}.{k}" if path else k)]
    return [] if before == now else [f"{path} {before!r} -> {now!r}"]
