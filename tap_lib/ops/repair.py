"""Repair: converge a drifted stack back to its environment file, showing before and after.

verify (before) -> refresh (state learns what is live) -> preview (the repair plan) -> deploy ->
revoke ingress nobody declared -> verify (after), all on one engine (each step once opened its
own: six per repair); each step's own guards (preflight, origin, locks, the trail) still run.
A rule added to a stack's security group behind tap's back belongs to no resource of the
program, so no engine's refresh or deploy removes it (Pulumi would not either): repair revokes
it explicitly and lists what it revoked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..engines.base import Engine, Plan, ProgressCallback, Result
from ..errors import ProtectedStack
from . import stack as stack_ops
from .gating import engine_for
from .verify import VerifyReport, verify

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
RULE_TYPES = ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
              "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")


@dataclass
class RepairResult:
    stack: str
    before: VerifyReport
    refreshed: Result
    plan: Plan
    applied: Result | None
    revoked: list[dict[str, str]]
    after: VerifyReport
    notes: list[str] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        return self.after.failed == 0

    def comparison(self) -> pd.DataFrame:
        """Each check that failed before, and its status after: one row per check, control
        and resource (a security group's rule fails several controls at once)."""
        keys = ["id", "control", "resource"]
        after = {tuple(k): (a, s) for *k, a, s in
                 self.after.checks[keys + ["actual", "status"]].itertuples(index=False)}
        failed = self.before.checks[self.before.checks.status == "fail"]
        rows = [{"check": cid, "control": control, "resource": res, "before": actual,
                 "after": after.get((cid, control, res), ("", ""))[0],
                 "status": after.get((cid, control, res), ("", ""))[1]}
                for cid, control, res, actual in
                failed[keys + ["actual"]].itertuples(index=False)]
        return pd.DataFrame(rows, columns=["check", "control", "resource", "before", "after",
                                           "status"])

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "converged": self.converged,
                "before": self.before.to_dict()["summary"],
                "refresh": self.refreshed.to_dict()["summary"],
                "plan": self.plan.to_dict(), "revoked": self.revoked,
                "after": self.after.to_dict()["summary"], "notes": self.notes,
                "comparison": self.comparison().to_dict("records")}


def undeclared_ingress(engine: Engine) -> list[dict[str, str]]:
    """Ingress rules on the stack's security groups that no declared rule resource owns."""
    resources = engine.resources()
    groups = [r.id for r in resources if r.type == SECURITY_GROUP and r.id]
    owned = {r.id for r in resources if r.type in RULE_TYPES}
    if not groups:
        return []
    rules = engine.clients()("ec2").describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": groups}])["SecurityGroupRules"]
    return [{"group": r["GroupId"], "rule": r["SecurityGroupRuleId"],
             "what": f"{r.get('IpProtocol')} {r.get('FromPort')}-{r.get('ToPort')} from "
                     f"{r.get('CidrIpv4') or r.get('CidrIpv6') or r.get('ReferencedGroupInfo', {}).get('GroupId')}"}
            for r in rules if not r.get("IsEgress") and r["SecurityGroupRuleId"] not in owned]


def repair(env: str, target: str | None = None, overrides=(), *,
           progress: ProgressCallback | None = None, yes: bool = False,
           confirm: str | None = None, engine: Engine | None = None) -> RepairResult:
    """Converge every drift verify finds. A protected stack is refused before anything runs:
    its changes (revoking rules included) go only through an approved plan. `engine`: one
    already open on the stack (a `Stack` handle's), else one is opened; every step uses it."""
    engine = engine_for(env, target, overrides, engine)
    if engine.is_protected():
        raise ProtectedStack(
            engine.stack, "repair changes it outside a reviewed plan (deploy, rule revokes)",
            confirm, hint=f"tap refresh --env {env}; tap preview --env {env} --save-plan FILE; "
                          "a second principal: tap approve FILE; tap deploy --env "
                          f"{env} --plan FILE")
    before = verify(env, target, overrides, engine=engine)
    refreshed = engine.refresh(confirm=confirm)
    plan = stack_ops.preview(env, target, overrides, engine=engine)
    applied = None
    if plan.changes:
        applied = stack_ops.deploy(env, target, overrides, progress, yes=yes, confirm=confirm,
                                   engine=engine)
    revoked = undeclared_ingress(engine)
    ec2 = engine.clients()("ec2")
    for rule in revoked:
        ec2.revoke_security_group_ingress(GroupId=rule["group"],
                                          SecurityGroupRuleIds=[rule["rule"]])
    after = verify(env, target, overrides, engine=engine)
    return RepairResult(engine.stack, before, refreshed, plan, applied, revoked, after)
