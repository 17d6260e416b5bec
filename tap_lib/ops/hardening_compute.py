"""verify's checks of the network, compute and identity controls Prowler evaluates (issue 19),
judged on the live stack with the judgements preflight uses (preflight/vpc_controls.py,
preflight/compute_controls.py), so an id means the same before and after deploy:
security groups (one row per control of controls_compute's table, over all the stack's groups),
EC2.22 unused groups, EC2.12 Elastic IPs, EC2.15 and the subnets' zones and tiers, network ACLs,
endpoint policies; Lambda.1-3, CloudTrail data events, secrets in variables, layers; KMS.3-5,
the key's state and region; log groups' secrets and resource policies; the roles' inline
policies and trust.

The facts verify's shared reader does not have are read here (`read`), one call per kind (per
function, role or log group where AWS has no batch call), counted with the stack's own calls.
Where the emulator cannot answer a call the check reads `unverified` with the reason, never pass.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .. import controls_compute as cc
from .checks import Check, Declared, check
from .facts import Facts, _optional, digest
from .hardening_data import UNVERIFIED
from .preflight.compute_controls import (
    policy_problems,
    public_statements,
    secret_variables,
    trail_records_lambda,
    unpinned_trust,
)
from .preflight.vpc_controls import (
    SG_CONTROLS,
    endpoint_zone_problem,
    group_problem,
    nacl_open_all,
    untrusted_principals,
)

LOG_EVENTS = 500          # recent events read per log group for the secrets check
SECRET_IN_TEXT = re.compile(
    r"AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|[\"']?pass(word|wd)?[\"']?\s*[:=]\s*[\"'][^\"'\s]{4,}[\"']", re.IGNORECASE)
TOKEN = re.compile(r"[^\s\"',;{}()\[\]]+")


@dataclass
class ComputeFacts:
    account: str = ""
    interfaces: list[dict] = field(default_factory=list)
    key: dict | None = None              # KeyMetadata
    key_rotation: bool | None = None
    key_policy: Any = None
    function_policies: dict[str, Any] = field(default_factory=dict)   # None: no policy
    trails: list[tuple[dict, list[dict]]] | None = None   # None: CloudTrail did not answer
    trails_error: str = ""
    log_policies: list[Any] | None = None
    log_events: dict[str, list[str]] = field(default_factory=dict)
    inline: dict[str, dict[str, Any]] = field(default_factory=dict)   # role -> name -> doc
    trusts: dict[str, Any] = field(default_factory=dict)               # role -> document


def _doc(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _error(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "error")
    return type(exc).__name__


def read(clients: Callable[[str], Any], d: Declared, facts: Facts) -> ComputeFacts:
    """The facts these checks need beyond verify's shared reading."""
    key_arn = str(d.outputs.get("kms_key_arn") or "")
    out = ComputeFacts(account=(key_arn + "::::::").split(":")[4])
    ec2 = clients("ec2")
    out.interfaces = ec2.describe_network_interfaces(Filters=[
        {"Name": "vpc-id", "Values": [d.outputs.get("vpc_id", "")]}])["NetworkInterfaces"]
    if key_arn:
        kms = clients("kms")
        out.key = (_optional(kms.describe_key, KeyId=key_arn) or {}).get("KeyMetadata")
        if out.key and out.key.get("KeyState") == "Enabled":
            out.key_rotation = kms.get_key_rotation_status(KeyId=key_arn).get(
                "KeyRotationEnabled")
            out.key_policy = _doc(kms.get_key_policy(KeyId=key_arn, PolicyName="default")
                                  .get("Policy"))
    lam = clients("lambda")
    for name, fn in facts.functions.items():
        if fn:
            out.function_policies[name] = _doc((_optional(lam.get_policy, FunctionName=name)
                                                or {}).get("Policy"))
    try:
        trail = clients("cloudtrail")
        out.trails = [(t, _selectors(trail, t)) for t in
                      trail.describe_trails(includeShadowTrails=True).get("trailList", [])]
    except (ClientError, BotoCoreError) as exc:
        out.trails, out.trails_error = None, _error(exc)
    logs = clients("logs")
    try:
        out.log_policies = [_doc(p.get("policyDocument")) for p in
                            logs.describe_resource_policies().get("resourcePolicies", [])]
    except (ClientError, BotoCoreError):
        out.log_policies = None
    for group, found in facts.log_groups.items():
        if found:
            events = _optional(logs.filter_log_events, logGroupName=group, limit=LOG_EVENTS) or {}
            out.log_events[group] = [e.get("message", "") for e in events.get("events", [])]
    iam = clients("iam")
    names = d.settings.physical_names(out.account)
    for role in dict.fromkeys((names.payment_role, names.rotation_role, names.flow_logs_role,
                               names.monitoring_role, names.backup_role)):
        data = facts.data if role == names.monitoring_role else None   # read by hardening_data
        found = (facts.roles.get(role) if role in facts.roles else
                 getattr(data, "monitoring_role", None) or
                 (_optional(iam.get_role, RoleName=role) or {}).get("Role"))
        if not found:
            continue
        out.trusts[role] = _doc(found.get("AssumeRolePolicyDocument"))
        out.inline[role] = {p: _doc(iam.get_role_policy(RoleName=role, PolicyName=p)
                                    .get("PolicyDocument"))
                            for p in iam.list_role_policies(RoleName=role)["PolicyNames"]}
    return out


def _selectors(client: Any, trail: dict) -> list[dict]:
    reply = client.get_event_selectors(TrailName=trail.get("TrailARN") or trail["Name"])
    return (reply.get("EventSelectors") or []) + (reply.get("AdvancedEventSelectors") or [])


# -- network ------------------------------------------------------------------------------------
def _stack_groups(f: Facts) -> list[dict]:
    """The stack's own groups (the default group is EC2.2's subject; Prowler judges it too)."""
    return list(f.security_groups.values())


def security_group_checks(d: Declared, f: Facts, c: ComputeFacts) -> list[Check]:
    """One row per control over all the VPC's groups: the offending groups, or none."""
    vpc, logical, out = d.outputs.get("vpc_id"), d.logical("vpc"), []
    groups = _stack_groups(f)
    for control in SG_CONTROLS:
        bad = [f"{g.get('GroupName')}: {p}" for g in groups
               for p in [group_problem(control, g)] if p]
        out.append(check("sg.internet", control, vpc,
                         f"none of the {len(groups)} group(s)", bad or
                         f"none of the {len(groups)} group(s)", ok=not bad, logical=logical))
    used = {g["GroupId"] for i in c.interfaces for g in i.get("Groups") or []}
    used |= {g for fn in f.functions.values() if fn for g in
             (fn["Configuration"].get("VpcConfig") or {}).get("SecurityGroupIds") or []}
    used |= {g["VpcSecurityGroupId"] for g in (f.cluster or {}).get("VpcSecurityGroups") or []}
    used |= {g["GroupId"] for e in f.endpoints for g in e.get("Groups") or []}
    used |= {p["GroupId"] for g in groups for perm in (g.get("IpPermissions") or []) + (
        g.get("IpPermissionsEgress") or []) for p in perm.get("UserIdGroupPairs") or []}
    unused = [g["GroupName"] for g in groups
              if g.get("GroupName") != "default" and g["GroupId"] not in used]
    out.append(check("sg.in-use", cc.SG_UNUSED, vpc, "every group used", unused or
                     "every group used", ok=not unused, logical=logical))
    return out


def address_checks(d: Declared, f: Facts) -> list[Check]:
    """EC2.12 on the stack's Elastic IPs (tagged with its Stack, or its NAT gateways')."""
    stack = d.settings.all_tags()["Stack"]
    nat = {a.get("AllocationId") for n in f.nat_gateways
           for a in n.get("NatGatewayAddresses") or []}
    mine = [a for a in f.addresses.values() if a.get("AllocationId") in nat or any(
        t.get("Key") == "Stack" and t.get("Value") == stack for t in a.get("Tags") or [])]
    loose = [a.get("PublicIp") or a.get("AllocationId") for a in mine
             if not a.get("AssociationId")]
    return [check("eip.in-use", cc.EIP_UNASSIGNED, d.outputs.get("vpc_id"),
                  f"all {len(mine)} associated", loose or f"all {len(mine)} associated",
                  ok=not loose, logical=d.logical("vpc"))]


def _public_subnets(f: Facts) -> set[str]:
    main = next((t for t in f.route_tables if any(a.get("Main") for a in
                                                   t.get("Associations") or [])), {})
    out = set()
    for sid in f.subnets:
        table = next((t for t in f.route_tables if any(
            a.get("SubnetId") == sid for a in t.get("Associations") or [])), main)
        if any(str(r.get("GatewayId") or "").startswith("igw-") for r in
               table.get("Routes") or []):
            out.add(sid)
    return out


def subnet_checks(d: Declared, f: Facts) -> list[Check]:
    vpc, logical = d.outputs.get("vpc_id"), d.logical("vpc")
    mapping = sorted(s["SubnetId"] for s in f.subnets.values() if s.get("MapPublicIpOnLaunch"))
    zones = sorted({s["AvailabilityZone"] for s in f.subnets.values()})
    public = _public_subnets(f)
    tiers = f"{len(public)} public, {len(set(f.subnets) - public)} private"
    return [
        check("subnets.no-public-ip", cc.SUBNET_PUBLIC_IP, vpc, "no subnet maps public IPs",
              mapping or "no subnet maps public IPs", ok=not mapping, logical=logical),
        check("subnets.zones", cc.SUBNETS_AZ, vpc, "subnets in >= 2 zones",
              f"subnets in {len(zones)} zone(s)", ok=len(zones) >= 2, logical=logical),
        check("subnets.tiers", cc.SUBNETS_TIERS, vpc, "public and private subnets", tiers,
              ok=bool(public) and bool(set(f.subnets) - public), logical=logical),
    ]


def acl_and_endpoint_checks(d: Declared, f: Facts, c: ComputeFacts) -> list[Check]:
    out = []
    for acl in f.network_acls:
        open_ = nacl_open_all(acl.get("Entries") or [])
        out.append(check("nacl.any-port", cc.NACL_ANY_PORT, acl["NetworkAclId"],
                         "internet traffic not admitted on every port",
                         "all traffic from the internet admitted" if open_ else
                         "internet traffic not admitted on every port",
                         logical=d.logical("default-nacl") if acl.get("IsDefault")
                         else d.logical("vpc")))
    for e in f.endpoints:
        if "com.amazonaws.vpce." in e.get("ServiceName", ""):
            continue
        bad = untrusted_principals(_doc(e.get("PolicyDocument")), c.account)
        service = e.get("ServiceName", "").rsplit(".", 1)[-1]
        out.append(check("vpc.endpoint-policy", cc.ENDPOINT_TRUST, e["VpcEndpointId"],
                         f"principals of {c.account} only",
                         f"admits {', '.join(sorted(set(bad)))}" if bad else
                         f"principals of {c.account} only", ok=not bad,
                         logical=d.logical(f"{service}-endpoint")))
        if str(e.get("VpcEndpointType", "")).lower() == "interface":
            zones = endpoint_zone_problem(e.get("VpcEndpointType"), e.get("SubnetIds") or [])
            out.append(check("vpc.endpoint-multi-az", cc.ENDPOINT_MULTI_AZ, e["VpcEndpointId"],
                             "subnets in more than one zone",
                             zones or "subnets in more than one zone",
                             ok=zones is None, logical=d.logical(f"{service}-endpoint")))
    return out


# -- functions ----------------------------------------------------------------------------------
def function_control_checks(d: Declared, f: Facts, c: ComputeFacts) -> list[Check]:
    out = []
    for name, fn in f.functions.items():
        if not fn:
            continue
        conf, logical = fn["Configuration"], _function_logical(d, name)
        arn = conf.get("FunctionArn", "")
        public = public_statements(c.function_policies.get(name), c.account)
        out.append(check("lambda.not-public", cc.LAMBDA_PUBLIC, name, "no public statement",
                         public and f"public statement(s) {', '.join(public)}" or
                         "no public statement", logical=logical))
        runtime = conf.get("Runtime")
        out.append(check("lambda.runtime", cc.LAMBDA_RUNTIME, name, "a supported runtime",
                         runtime, ok=runtime not in cc.OBSOLETE_RUNTIMES, logical=logical))
        vpc_id = (conf.get("VpcConfig") or {}).get("VpcId") or (
            (conf.get("VpcConfig") or {}).get("SubnetIds") and d.outputs.get("vpc_id"))
        out.append(check("lambda.in-vpc", cc.LAMBDA_VPC, name, "in a VPC",
                         "in a VPC" if vpc_id else "not in a VPC", logical=logical))
        secrets = secret_variables((conf.get("Environment") or {}).get("Variables") or {})
        out.append(check("lambda.no-secrets", cc.LAMBDA_SECRETS, name, "no credential in "
                         "variables", secrets and f"credential in {', '.join(secrets)}" or
                         "no credential in variables", logical=logical))
        foreign = [layer.get("Arn", "") for layer in conf.get("Layers") or []
                   if (layer.get("Arn", "").split(":") + [""] * 5)[4] != c.account]
        out.append(check("lambda.layers", cc.LAMBDA_LAYERS, name, "no other account's layer",
                         foreign or "no other account's layer", ok=not foreign,
                         logical=logical))
        out.append(_trail_check(name, arn, c, logical))
    return out


def _function_logical(d: Declared, name: str) -> str:
    return d.logical("rotation-fn" if name == d.outputs.get("rotation_function_name")
                     else "payment-fn")


def _trail_check(name: str, arn: str, c: ComputeFacts, logical: str) -> Check:
    want = "a trail records its Lambda data events"
    if c.trails is None:
        return Check("lambda.cloudtrail", cc.LAMBDA_TRAIL, name, want,
                     f"CloudTrail did not answer ({c.trails_error})", UNVERIFIED, logical)
    recorded = [t.get("Name") for t, sel in c.trails if trail_records_lambda(sel, arn)]
    return check("lambda.cloudtrail", cc.LAMBDA_TRAIL, name, want,
                 f"recorded by {', '.join(recorded)}" if recorded else
                 f"no trail records it ({len(c.trails)} trail(s))", ok=bool(recorded),
                 logical=logical)


# -- keys, logs, roles --------------------------------------------------------------------------
def key_checks(d: Declared, c: ComputeFacts) -> list[Check]:
    key, arn, logical = c.key or {}, d.outputs.get("kms_key_arn"), d.logical("kms-key")
    state = key.get("KeyState") or "(missing)"
    out = [check("kms.not-deleted", cc.KMS_NOT_DELETED, arn, "not pending deletion", state,
                 ok=bool(key) and state != "PendingDeletion", logical=logical),
           # Prowler's reading: a key on its way out is not "unused"; KMS.3 judges that
           check("kms.enabled", cc.KMS_USED, arn, "Enabled", state,
                 ok=state in ("Enabled", "PendingDeletion"), logical=logical),
           check("kms.single-region", cc.KMS_MULTI_REGION, arn, "single-Region",
                 "multi-Region" if key.get("MultiRegion") else "single-Region" if key
                 else "(missing)", logical=logical)]
    if state == "Enabled":
        public = public_statements(c.key_policy, c.account)
        out += [check("kms.rotation", cc.KMS_ROTATION, arn, True, c.key_rotation,
                      logical=logical),
                check("kms.not-public", cc.KMS_PUBLIC, arn, "no public statement",
                      public and f"public statement(s) {', '.join(public)}" or
                      "no public statement", logical=logical)]
    return out


def log_checks(d: Declared, f: Facts, c: ComputeFacts) -> list[Check]:
    out = []
    public_arns = [r for p in c.log_policies or [] if public_statements(p, c.account)
                   for s in (p or {}).get("Statement", []) for r in
                   (s.get("Resource") if isinstance(s.get("Resource"), list)
                    else [s.get("Resource")])]
    for group, found in f.log_groups.items():
        if not found:
            continue
        arn = found.get("arn", "").removesuffix(":*")
        logical = d.logical("flow-logs") if "flow" in group else d.logical(
            "rotation-logs" if "rotation" in group else "payment-logs")
        if c.log_policies is None:
            out.append(Check("logs.not-public", cc.LOG_PUBLIC, group, "no public resource "
                             "policy", "DescribeResourcePolicies did not answer", UNVERIFIED,
                             logical))
        else:
            public = any(r == "*" or (arn and arn in str(r)) for r in public_arns)
            out.append(check("logs.not-public", cc.LOG_PUBLIC, group, "no public resource "
                             "policy", "a public resource policy covers it" if public else
                             "no public resource policy", logical=logical))
        leaks = secret_events(c.log_events.get(group, []), f.secret_digests)
        out.append(check("logs.no-secrets", cc.LOG_SECRETS, group,
                         f"no secret in the last {LOG_EVENTS} events",
                         f"{leaks} event(s) hold a secret" if leaks else
                         f"no secret in the last {LOG_EVENTS} events", ok=not leaks,
                         logical=logical))
    return out


def secret_events(messages: list[str], digests: frozenset[str] | None) -> int:
    """Events holding a credential: a known key format, a password assignment, or the database
    password itself (recognised by digest, so the value is never held here)."""
    return sum(1 for m in messages if SECRET_IN_TEXT.search(m) or (
        digests and any(digest(t) in digests for t in TOKEN.findall(m))))


def role_checks(d: Declared, c: ComputeFacts) -> list[Check]:
    out = []
    for role, policies in c.inline.items():
        problems: dict[str, list[str]] = {}
        for name, doc in policies.items():
            for control, why in policy_problems(doc).items():
                problems.setdefault(control, []).append(f"{name}: {why}")
        for control in (cc.IAM_PRIVESC, cc.IAM_CLOUDTRAIL, cc.IAM_KMS, cc.IAM_MARKETPLACE):
            bad = problems.get(control, [])
            out.append(check("iam.inline", control, role, f"none of {len(policies)} inline "
                             "policies", bad or f"none of {len(policies)} inline policies",
                             ok=not bad, logical=_role_logical(d, role)))
        services = unpinned_trust(c.trusts.get(role))
        out.append(check("iam.trust-account", cc.TRUST_ACCOUNT, role, "conditions pin the "
                         "account", services and f"{', '.join(services)} unpinned" or
                         "conditions pin the account", logical=_role_logical(d, role)))
    return out


def _role_logical(d: Declared, role: str) -> str:
    stem = role.removeprefix("tapstack-").rsplit(f"-{d.settings.suffix}", 1)[0]
    return d.logical({"payment": "payment-role", "db-rotation": "rotation-role",
                      "flow-logs": "flow-logs-role", "rds-monitoring": "rds-monitoring-role",
                      "backup": "backup-role"}.get(stem, stem))


def compute_hardening_checks(d: Declared, f: Facts) -> list[Check]:
    """verify's check family (ops/verify.CHECKS); its facts are read in verify.judge."""
    c = f.compute
    if c is None:       # judged without verify's reading (hand-made facts): the network only
        c = ComputeFacts(account=(str(d.outputs.get("kms_key_arn") or "") + "::::::")
                         .split(":")[4])
        return (security_group_checks(d, f, c) + address_checks(d, f) + subnet_checks(d, f)
                + acl_and_endpoint_checks(d, f, c))
    return (security_group_checks(d, f, c) + address_checks(d, f) + subnet_checks(d, f)
            + acl_and_endpoint_checks(d, f, c) + function_control_checks(d, f, c)
            + key_checks(d, c) + log_checks(d, f, c) + role_checks(d, c))
