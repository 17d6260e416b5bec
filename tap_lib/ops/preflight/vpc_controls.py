"""Preflight rules for the VPC controls Prowler evaluates (issue 19): security groups open to the
internet (one table, controls_compute.SG_PORT_CONTROLS, one rule per row), unused groups and
Elastic IPs (EC2.22, EC2.12), subnets (EC2.15, zones, tiers), network ACLs open on every port and
VPC endpoint policies (trust boundaries) and interface endpoints' zones.

The judgements take AWS's shapes (IpPermissions, NetworkAcl entries, a policy document), so
verify (ops/hardening_compute.py) applies the same functions to what AWS returns; here the
program's declarations are put into those shapes first (`program_groups`).
"""
from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from typing import Any

from ... import controls_compute as cc
from . import SUBNET, VPC, Context, Finding, _statements, error, rule
from .securityhub import _severity

SECURITY_GROUP = ("aws:ec2/securityGroup:SecurityGroup",)
INGRESS_RULE = ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",)
EGRESS_RULE = ("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",)
GROUP_RULE = ("aws:ec2/securityGroupRule:SecurityGroupRule",)
EIP = ("aws:ec2/eip:Eip",)
NAT = ("aws:ec2/natGateway:NatGateway",)
ENDPOINT = ("aws:ec2/vpcEndpoint:VpcEndpoint",)
FUNCTION = ("aws:lambda/function:Function",)
CLUSTER = ("aws:rds/cluster:Cluster",)
DEFAULT_NACL = ("aws:ec2/defaultNetworkAcl:DefaultNetworkAcl",)
NACL = ("aws:ec2/networkAcl:NetworkAcl",)
ROUTE = ("aws:ec2/route:Route",)
ROUTE_TABLE = ("aws:ec2/routeTable:RouteTable",)
ASSOCIATION = ("aws:ec2/routeTableAssociation:RouteTableAssociation",)
WORLD = ("0.0.0.0/0", "::/0")
PROTOCOLS = {"6": "tcp", "17": "udp", "all": "-1", "-1": "-1"}


# -- judgements on AWS's shapes (shared with verify) -------------------------------------------
def _protocol(value: Any) -> str:
    text = str(value).lower()
    return PROTOCOLS.get(text, text)


def _public(cidr: str, any_address: bool) -> bool:
    if cidr in WORLD:
        return True
    try:
        return not any_address and ipaddress.ip_network(cidr, strict=False).is_global
    except ValueError:
        return False


def _sources(perm: dict) -> list[str]:
    return [r.get("CidrIp", "") for r in perm.get("IpRanges") or []] + [
        r.get("CidrIpv6", "") for r in perm.get("Ipv6Ranges") or []]


def opens(perm: dict, protocol: str, ports: Iterable[int] = (), *, any_address: bool = True,
          all_ports: bool = False) -> bool:
    """Prowler's check_security_group: does this ingress permission admit the internet
    (0.0.0.0/0 or ::/0; with any_address False, any public address) on one of `ports` for
    `protocol` ('-1': any); all_ports: a permission over all 65536 ports counts too."""
    ports = list(ports)
    proto = _protocol(perm.get("IpProtocol", "-1"))
    public = [c for c in _sources(perm) if _public(c, any_address)]
    if not public:
        return False
    if proto == "-1":
        return True
    if protocol != "-1" and proto != protocol:
        return False
    low, high = perm.get("FromPort"), perm.get("ToPort")
    if low is None or int(low) == -1:
        return False
    span = range(int(low), int(high if high is not None else low) + 1)
    if any(p in span for p in ports):
        return True
    return len(span) == 65536 or (all_ports and not ports)


def port_findings(group: dict, ports: tuple[int, ...]) -> list[str]:
    """The ports of `ports` the group's ingress opens to the internet over TCP."""
    return [str(p) for p in ports if any(opens(perm, "tcp", [p])
                                         for perm in group.get("IpPermissions") or [])]


def _from_specific_ip(perm: dict) -> bool:
    specific = any(c not in WORLD for c in _sources(perm))
    return specific and opens({**perm, "IpRanges": [r for r in perm.get("IpRanges") or []
                                                    if r.get("CidrIp") not in WORLD],
                               "Ipv6Ranges": [r for r in perm.get("Ipv6Ranges") or []
                                              if r.get("CidrIpv6") not in WORLD]},
                              "-1", any_address=False, all_ports=True)


def _wide_open(perms: list[dict]) -> list[str]:
    out = []
    for perm in perms:
        for r in perm.get("IpRanges") or []:
            try:
                net = ipaddress.ip_network(r.get("CidrIp", ""), strict=False)
            except ValueError:
                continue
            if net.is_global and 0 < net.prefixlen < cc.WIDE_OPEN_PREFIX:
                out.append(str(net))
    return out


def group_problem(control: str, group: dict) -> str:
    """What makes `group` (AWS's SecurityGroup shape) fail `control`; '' when it passes."""
    ingress = group.get("IpPermissions") or []
    if control in {c for c, _, _ in cc.SG_PORT_CONTROLS}:
        ports = next(p for c, _, p in cc.SG_PORT_CONTROLS if c == control)
        found = port_findings(group, ports)
        return f"TCP {', '.join(found)} open to the internet" if found else ""
    if control == cc.SG_ALL_PORTS:
        return "all traffic from the internet" if any(
            _protocol(p.get("IpProtocol")) == "-1" and any(c in WORLD for c in _sources(p))
            for p in ingress) else ""
    if control == cc.SG_ANY_PORT:
        return "a port range open to the internet" if any(
            opens(p, "-1", any_address=True, all_ports=True) for p in ingress) else ""
    if control == cc.SG_FROM_IP:
        return "a port open to a specific public address" if any(
            _from_specific_ip(p) for p in ingress) else ""
    if control == cc.SG_WIDE_OPEN:
        wide = _wide_open(ingress + (group.get("IpPermissionsEgress") or []))
        return f"wide public range(s) {', '.join(wide)}" if wide else ""
    if control == cc.SG_LAUNCH_WIZARD:
        return "made by the launch wizard" if "launch-wizard" in group.get("GroupName", "") \
            else ""
    if control == cc.SG_MANY_RULES:
        counts = len(ingress), len(group.get("IpPermissionsEgress") or [])
        return f"{counts[0]} inbound, {counts[1]} outbound rules" if max(
            counts) > cc.MAX_SG_RULES else ""
    raise KeyError(control)


SG_CONTROLS: tuple[str, ...] = (*(c for c, _, _ in cc.SG_PORT_CONTROLS), cc.SG_ALL_PORTS,
                                cc.SG_ANY_PORT, cc.SG_FROM_IP, cc.SG_WIDE_OPEN,
                                cc.SG_LAUNCH_WIZARD, cc.SG_MANY_RULES)


def nacl_open_all(entries: list[dict]) -> bool:
    """Prowler's check_network_acl for all traffic: in rule order, the first inbound entry from
    0.0.0.0/0 (or ::/0) for all protocols decides (deny: closed, allow: open)."""
    for family, key in (("::/0", "Ipv6CidrBlock"), ("0.0.0.0/0", "CidrBlock")):
        inbound = sorted((e for e in entries if not e.get("Egress") and e.get(key) == family),
                         key=lambda e: e.get("RuleNumber", 0))
        for e in inbound:
            if _protocol(e.get("Protocol")) == "-1":
                if e.get("RuleAction") == "deny":
                    break
                return True
    return False


RESTRICTIVE_KEYS = {"aws:sourceaccount", "aws:sourceowner", "aws:sourcearn",
                    "aws:principalaccount", "aws:principalarn", "aws:principalorgid",
                    "aws:resourceaccount", "aws:sourcevpc", "aws:sourcevpce",
                    "kms:calleraccount", "s3:resourceaccount"}
RESTRICTIVE_OPERATORS = ("StringEquals", "StringLike", "ArnLike", "ArnEquals")


def restricts_to_account(condition: Any, account: str) -> bool:
    """A condition that confines the caller (or source) to `account`: an equality or ARN match
    on an account-bearing key whose every value names the account."""
    if not isinstance(condition, dict):
        return False
    for op in RESTRICTIVE_OPERATORS:
        for key, values in (condition.get(op) or {}).items():
            values = values if isinstance(values, list) else [values]
            if key.lower() in RESTRICTIVE_KEYS and values and all(
                    account in str(v) for v in values):
                return True
    return False


def _principals(statement: dict) -> list[str]:
    p = statement.get("Principal")
    if p == "*":
        return ["*"]
    if isinstance(p, dict) and "AWS" in p:
        return p["AWS"] if isinstance(p["AWS"], list) else [p["AWS"]]
    return []     # service or federated principals


def untrusted_principals(policy: Any, account: str) -> list[str]:
    """vpc_endpoint_connections_trust_boundaries: the Allow statements' principals that are
    everyone or another account, without a condition confining them to `account`. No policy
    at all is AWS's default: full access for everyone."""
    stmts = _statements(policy) if policy else [{"Effect": "Allow", "Principal": "*"}]
    out = []
    for s in stmts:
        if s.get("Effect") != "Allow":
            continue
        for principal in _principals(s):
            owner = principal if principal.isdigit() else (principal.split(":") + [""] * 5)[4]
            if (principal == "*" or owner != account) and not restricts_to_account(
                    s.get("Condition"), account):
                out.append(principal)
    return out


def policy_text(policy: Any) -> Any:
    return json.loads(policy) if isinstance(policy, str) and policy.strip() else policy


# -- the program's groups in AWS's shape --------------------------------------------------------
def _perm(proto: Any, low: Any, high: Any, v4: Iterable[str] = (), v6: Iterable[str] = (),
          groups: Iterable[str] = ()) -> dict:
    perm: dict[str, Any] = {"IpProtocol": _protocol(proto), "IpRanges": [
        {"CidrIp": c} for c in v4 if c], "Ipv6Ranges": [{"CidrIpv6": c} for c in v6 if c],
        "UserIdGroupPairs": [{"GroupId": g} for g in groups if g]}
    if perm["IpProtocol"] != "-1":
        perm["FromPort"], perm["ToPort"] = int(low or 0), int(high or 0)
    return perm


def program_groups(ctx: Context) -> dict[str, dict]:
    """The program's security groups (by resource id) with their rules as IpPermissions,
    whether declared inline or as separate rule resources."""
    groups: dict[str, dict] = {}
    for g in ctx.of(SECURITY_GROUP):
        groups[g.id] = {"GroupName": g.inputs.get("name") or g.name, "logical": g.name,
                        "IpPermissions": [], "IpPermissionsEgress": []}
        for direction, key in (("ingress", "IpPermissions"), ("egress", "IpPermissionsEgress")):
            for r in g.inputs.get(direction) or []:
                groups[g.id][key].append(_perm(
                    r.get("protocol"), r.get("fromPort"), r.get("toPort"),
                    r.get("cidrBlocks") or [], r.get("ipv6CidrBlocks") or [],
                    r.get("securityGroups") or []))
    for types, key in ((INGRESS_RULE, "IpPermissions"), (EGRESS_RULE, "IpPermissionsEgress")):
        for r in ctx.of(types):
            i = r.inputs
            if i.get("securityGroupId") in groups:
                groups[i["securityGroupId"]][key].append(_perm(
                    i.get("ipProtocol"), i.get("fromPort"), i.get("toPort"),
                    [i.get("cidrIpv4")], [i.get("cidrIpv6")],
                    [i.get("referencedSecurityGroupId")]))
    for r in ctx.of(GROUP_RULE):
        i = r.inputs
        if i.get("securityGroupId") in groups:
            key = "IpPermissions" if i.get("type") == "ingress" else "IpPermissionsEgress"
            groups[i["securityGroupId"]][key].append(_perm(
                i.get("protocol"), i.get("fromPort"), i.get("toPort"), i.get("cidrBlocks") or [],
                i.get("ipv6CidrBlocks") or [], [i.get("sourceSecurityGroupId")]))
    return groups


def _sg_rule(control: str) -> None:
    def check(ctx: Context) -> list[Finding]:
        out = []
        for g in program_groups(ctx).values():
            problem = group_problem(control, g)
            if problem:
                out.append(error(g["logical"], problem, "admit the sources that need the port "
                                                        "(a security group, the VPC CIDR)"))
        return out
    check.__doc__ = (f"{control}: a security group the internet reaches (on the ports, or in the "
                     "way, the control names) exposes whatever the group guards.")
    rule(f"TAP3{SG_CONTROLS.index(control):02d}", f"{control} security-group")(check)


for _control in SG_CONTROLS:
    _sg_rule(_control)


# -- groups, addresses, subnets, ACLs, endpoints --------------------------------------------------
def _refs(values: Any) -> set:
    if isinstance(values, dict):
        return {x for v in values.values() for x in _refs(v)}
    if isinstance(values, (list, tuple)):
        return {x for v in values for x in _refs(v)}
    return {values} if isinstance(values, str) else set()


@rule("TAP330", f"{cc.SG_UNUSED} sg-in-use")
def security_groups_used(ctx: Context) -> list[Finding]:
    """EC2.22: a group nothing uses is an unreviewed door waiting for the next resource that
    lands in it. Used: named by a function, the cluster, an endpoint, or another group's rule."""
    users = set()
    for types, key in ((FUNCTION, "vpcConfig"), (CLUSTER, "vpcSecurityGroupIds"),
                       (ENDPOINT, "securityGroupIds")):
        users |= {x for r in ctx.of(types) for x in _refs(r.inputs.get(key))}
    for types in (INGRESS_RULE, EGRESS_RULE, GROUP_RULE):
        users |= {r.inputs.get(k) for r in ctx.of(types)
                  for k in ("referencedSecurityGroupId", "sourceSecurityGroupId")}
    users |= {x for g in ctx.of(SECURITY_GROUP) for d in ("ingress", "egress")
              for r in g.inputs.get(d) or [] for x in r.get("securityGroups") or []}
    return [_severity(ctx)(g.name, "no function, cluster, endpoint or rule uses this group",
                           "remove it, or attach it where it is meant to be")
            for g in ctx.of(SECURITY_GROUP) if g.id not in users]


@rule("TAP331", f"{cc.EIP_UNASSIGNED} eip-in-use")
def elastic_ips_used(ctx: Context) -> list[Finding]:
    """EC2.12: an Elastic IP attached to nothing is a public address paid for and unaccounted."""
    used = {n.inputs.get("allocationId") for n in ctx.of(NAT)}
    return [_severity(ctx)(e.name, "no NAT gateway, instance or interface uses this address",
                           "release it, or associate it")
            for e in ctx.of(EIP) if e.id not in used and not (
                e.inputs.get("instance") or e.inputs.get("networkInterface"))]


@rule("TAP332", f"{cc.SUBNET_PUBLIC_IP} subnet-no-public-ip")
def subnets_no_public_ip(ctx: Context) -> list[Finding]:
    """EC2.15: a subnet that maps public addresses gives anything launched in it an internet
    address, whatever its group says."""
    return [error(s.name, "assigns public IPv4 addresses on launch",
                  "set map_public_ip_on_launch=False")
            for s in ctx.of(SUBNET) if s.inputs.get("mapPublicIpOnLaunch") is True]


def _public_subnets(ctx: Context) -> set[str]:
    igw_tables = {r.inputs.get("routeTableId") for r in ctx.of(ROUTE)
                  if "igw" in str(r.inputs.get("gatewayId") or "")}
    igw_tables |= {t.id for t in ctx.of(ROUTE_TABLE) if any(
        "igw" in str(r.get("gatewayId") or "") for r in t.inputs.get("routes") or [])}
    return {a.inputs.get("subnetId") for a in ctx.of(ASSOCIATION)
            if a.inputs.get("routeTableId") in igw_tables}


@rule("TAP333", f"{cc.SUBNETS_AZ} subnets-in-zones")
def subnets_in_zones(ctx: Context) -> list[Finding]:
    """vpc_subnet_different_az: subnets in one zone go down with it."""
    out = []
    for vpc in ctx.of(VPC):
        zones = {s.inputs.get("availabilityZone") for s in ctx.of(SUBNET)
                 if s.inputs.get("vpcId") == vpc.id}
        if len(zones) < 2:
            out.append(_severity(ctx)(vpc.name, f"subnets in {len(zones)} zone(s)",
                                      f"set vpc.az_count >= 2 in {ctx.params_file}"))
    return out


@rule("TAP334", f"{cc.SUBNETS_TIERS} subnet-tiers")
def subnet_tiers(ctx: Context) -> list[Finding]:
    """vpc_subnet_separate_private_public: the database and functions belong in subnets with
    no route to the internet gateway, apart from the public ones the NAT needs."""
    public, out = _public_subnets(ctx), []
    for vpc in ctx.of(VPC):
        subnets = {s.id for s in ctx.of(SUBNET) if s.inputs.get("vpcId") == vpc.id}
        if not (subnets & public and subnets - public):
            out.append(error(vpc.name, f"{len(subnets & public)} public and "
                                       f"{len(subnets - public)} private subnet(s)",
                             "keep public (internet gateway) and private subnets apart"))
    return out


@rule("TAP335", f"{cc.NACL_ANY_PORT} nacl-any-port")
def nacl_any_port(ctx: Context) -> list[Finding]:
    """ec2_networkacl_allow_ingress_any_port: an ACL whose first word on internet traffic is
    'allow everything' is no filter at all."""
    out = []
    for acl in ctx.of(DEFAULT_NACL) + ctx.of(NACL):
        entries = [{"Egress": False, "RuleNumber": e.get("ruleNo", 0),
                    "RuleAction": str(e.get("action", "")).lower(),
                    "Protocol": str(e.get("protocol", "-1")),
                    "CidrBlock": e.get("cidrBlock"), "Ipv6CidrBlock": e.get("ipv6CidrBlock")}
                   for e in acl.inputs.get("ingress") or []]
        if nacl_open_all(entries):
            out.append(error(acl.name, "admits all traffic from the internet",
                             "admit the VPC CIDR, and from anywhere only the ports replies use"))
    return out


@rule("TAP336", f"{cc.ENDPOINT_TRUST} endpoint-policy")
def endpoint_trust(ctx: Context) -> list[Finding]:
    """vpc_endpoint_connections_trust_boundaries: without a policy an endpoint carries any
    principal's requests (stolen credentials of another account exfiltrate through it); the
    policy confines it to this account's principals (aws:PrincipalAccount)."""
    account = _account(ctx)
    out = []
    for e in ctx.of(ENDPOINT):
        if "com.amazonaws.vpce." in str(e.inputs.get("serviceName")):
            continue
        bad = untrusted_principals(policy_text(e.inputs.get("policy")), account)
        if bad:
            out.append(_severity(ctx)(
                e.name, "no endpoint policy (AWS's default admits everyone)"
                if not e.inputs.get("policy") else
                f"policy admits {', '.join(sorted(set(bad)))} beyond account {account}",
                "set policy=<Allow * with aws:PrincipalAccount = the account> "
                "(network.endpoint_policy)"))
    return out


def endpoint_zone_problem(endpoint_type: str | None, subnets: list) -> str | None:
    """vpc_endpoint_multi_az_enabled as Prowler judges it: an Interface endpoint needs more
    than one subnet (the stack puts one per zone); gateway endpoints have no subnets."""
    if str(endpoint_type or "").lower() != "interface" or len(subnets) > 1:
        return None
    return f"interface endpoint in {len(subnets)} subnet(s): one zone's outage cuts it off"


@rule("TAP337", f"{cc.ENDPOINT_MULTI_AZ} endpoint-multi-az")
def endpoint_multi_az(ctx: Context) -> list[Finding]:
    """vpc_endpoint_multi_az_enabled: an interface endpoint answers only in the zones of its
    subnets; with one, the Lambdas of every other zone lose the service with that zone."""
    out = []
    for e in ctx.of(ENDPOINT):
        problem = endpoint_zone_problem(e.inputs.get("vpcEndpointType"),
                                        list(e.inputs.get("subnetIds") or []))
        if problem:
            out.append(_severity(ctx)(e.name, problem,
                                      "give the endpoint the private subnet of every zone "
                                      "(network.build_endpoints)"))
    return out


def _account(ctx: Context) -> str:
    """The account the program was synthesized for: its resources' ARNs name it."""
    for r in ctx.synthesis.registrations:
        arn = str((r.outputs or {}).get("arn") or "")
        if arn.count(":") >= 5 and arn.split(":")[4].isdigit():
            return arn.split(":")[4]
    return ""
