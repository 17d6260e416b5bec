"""verify's checks of the network and storage controls of issue 19, judged on the live stack as
each control defines it: S3.9 server access logging, S3.12 ACLs disabled, S3.15 Object Lock
(with the access-log bucket's own S3.5/S3.8/S3.13/S3.14/S3.17), EC2.2 default security group,
EC2.21 network ACLs, EC2.10 EC2 endpoint, and tap's own `tap:vpc-endpoints` (S3 and Secrets
Manager reached without the NAT). Pure functions of (declared, facts): the facts (network ACLs,
endpoints, both buckets' controls) come from facts.py's counted reader, one describe per kind.

What the emulator cannot show: an interface endpoint's private DNS is a recorded flag there
(moto runs no DNS, so no name resolves to the endpoint), and S3 delivers no access logs
(logging is configured, never exercised). The checks judge the configuration, and say so.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..controls import VPC_ENDPOINTS
from .checks import Check, Declared, apply_exception, check
from .facts import (BucketFacts, Facts, Shared, _as_tap_errors, _fetch_buckets,
                    _fetch_network)

Clients = Callable[[str], Any]
ADMIN_PORTS = (22, 3389)
ANYWHERE = ("0.0.0.0/0", "::/0")


# -- S3 ----------------------------------------------------------------------------------------
def _lock(b: BucketFacts) -> tuple[bool, str]:
    conf = b.object_lock or {}
    retention = (conf.get("Rule") or {}).get("DefaultRetention") or {}
    if conf.get("ObjectLockEnabled") != "Enabled":
        return False, "not enabled"
    if not retention:
        return True, "enabled, no default retention"
    span = f"{retention['Days']} days" if retention.get("Days") else \
        f"{retention.get('Years')} years"
    return True, f"{retention.get('Mode')}, {span}"


def bucket_control_checks(d: Declared, f: Facts) -> list[Check]:
    tx, logs = f.bucket, f.access_logs or BucketFacts()
    tx_name = d.outputs.get("s3_bucket_name")
    # None: the stack's outputs predate the access-log bucket (redeploy exports it)
    logs_name = d.outputs.get("s3_access_log_bucket_name")
    lt, ll = d.logical("transaction-logs"), d.logical("access-logs")
    bucket = d.settings.bucket
    want_lock = f"{bucket.object_lock_mode}, {bucket.object_lock_days} days"
    out = []
    target = (tx.logging or {}).get("TargetBucket")
    out.append(check("s3.access-logging", "S3.9", tx_name, f"logs to {logs_name}",
                     f"logs to {target}" if target else "no server access logging",
                     ok=bool(target) and target == logs_name and target != tx_name,
                     logical=lt))
    target = (logs.logging or {}).get("TargetBucket")
    out.append(check("s3.access-logging", "S3.9", logs_name, "server access logging on",
                     f"logs to {target}" if target else "no server access logging",
                     ok=bool(target) and target != logs_name, logical=ll))
    for b, name, logical in ((tx, tx_name, lt), (logs, logs_name, ll)):
        out.append(check("s3.acls-disabled", "S3.12", name, "BucketOwnerEnforced",
                         b.ownership or "ACLs enabled (no ownership controls)", logical=logical))
    enabled, actual = _lock(tx)
    out.append(check("s3.object-lock", "S3.15", tx_name, want_lock, actual,
                     ok=enabled and actual == want_lock, logical=lt))
    enabled, actual = _lock(logs)
    out.append(check("s3.object-lock", "S3.15", logs_name, "enabled", actual, ok=enabled,
                     logical=ll))
    return out + access_log_bucket_checks(logs, logs_name, ll)


def access_log_bucket_checks(b: BucketFacts, name: str | None, logical: str) -> list[Check]:
    """The access-log bucket judged by the controls the transaction-log bucket meets."""
    algorithms = [r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm")
                  for r in b.encryption or []]
    pab = b.public_access_block or {}
    flags = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    stmts = (b.policy or {}).get("Statement", [])
    tls = any(s.get("Effect") == "Deny" and str(((s.get("Condition") or {}).get("Bool") or {})
                                                .get("aws:SecureTransport")).lower() == "false"
              for s in (stmts if isinstance(stmts, list) else [stmts]))
    enabled_rules = [r for r in b.lifecycle or [] if r.get("Status") == "Enabled"]
    return [
        check("s3.encryption", "S3.17", name, "SSE-KMS",
              ", ".join(map(str, algorithms)) or "none",
              ok=any(a in ("aws:kms", "aws:kms:dsse") for a in algorithms), logical=logical),
        check("s3.encrypted", "", name, "encrypted at rest",
              ", ".join(map(str, algorithms)) or "none", ok=bool(algorithms), logical=logical),
        check("s3.public-access-block", "S3.8", name, "all four flags on",
              ", ".join(f"{k}={pab.get(k, False)}" for k in flags if not pab.get(k))
              or "all four flags on", logical=logical),
        check("s3.tls-only", "S3.5", name, "Deny aws:SecureTransport=false",
              "Deny aws:SecureTransport=false" if tls else "no TLS-only statement",
              logical=logical),
        check("s3.versioning", "S3.14", name, "Enabled", b.versioning, logical=logical),
        check("s3.lifecycle", "S3.13", name, "an enabled lifecycle rule",
              "an enabled lifecycle rule" if enabled_rules else "none", logical=logical),
    ]


# -- VPC -------------------------------------------------------------------------------------
def _admin_ports(entry: dict) -> list[int]:
    """EC2.21's reading of one inbound ACL entry (see preflight.network_controls)."""
    if entry.get("Egress") or entry.get("RuleAction") != "allow":
        return []
    if (entry.get("CidrBlock") or entry.get("Ipv6CidrBlock")) not in ANYWHERE:
        return []
    proto = str(entry.get("Protocol"))
    if proto == "-1":
        return list(ADMIN_PORTS)
    if proto not in ("6", "17"):
        return []
    ports = entry.get("PortRange") or {}
    return [p for p in ADMIN_PORTS if ports.get("From", 0) <= p <= ports.get("To", 65535)]


def _default_group(f: Facts) -> dict:
    return next((g for g in f.security_groups.values() if g.get("GroupName") == "default"), {})


def _lambda_groups(d: Declared, f: Facts) -> set[str]:
    """The Lambdas' security groups: the payment function's, and the stack's output."""
    conf = (f.functions.get(d.outputs.get("lambda_function_name")) or {}).get(
        "Configuration", {})
    return set((conf.get("VpcConfig") or {}).get("SecurityGroupIds") or []) | (
        {d.outputs["lambda_security_group_id"]} if d.outputs.get("lambda_security_group_id")
        else set())


def vpc_control_checks(d: Declared, f: Facts) -> list[Check]:
    vpc, logical, region = d.outputs.get("vpc_id"), d.logical("vpc"), d.settings.region
    sg = _default_group(f)
    rules = len(sg.get("IpPermissions") or []), len(sg.get("IpPermissionsEgress") or [])
    out = [check("ec2.default-sg-closed", "EC2.2", sg.get("GroupId") or vpc,
                 "no inbound, no outbound rules",
                 "missing" if not sg else f"{rules[0]} inbound, {rules[1]} outbound rule(s)"
                 if any(rules) else "no inbound, no outbound rules",
                 ok=bool(sg) and not any(rules), logical=d.logical("default-sg"))]
    for acl in f.network_acls:
        open_ = [f"rule {e['RuleNumber']}: {', '.join(map(str, _admin_ports(e)))}"
                 for e in acl.get("Entries", []) if _admin_ports(e)]
        out.append(check("ec2.nacl-admin-ports", "EC2.21", acl["NetworkAclId"],
                         "no inbound 0.0.0.0/0 or ::/0 to 22 or 3389",
                         "; ".join(open_) or "no inbound 0.0.0.0/0 or ::/0 to 22 or 3389",
                         logical=d.logical("default-nacl") if acl.get("IsDefault") else logical))
    ec2 = [e for e in f.endpoints if e.get("ServiceName") == f"com.amazonaws.{region}.ec2"
           and e.get("VpcEndpointType") == "Interface"]
    out.append(check("ec2.ec2-endpoint", "EC2.10", vpc, "an EC2 interface endpoint",
                     "an EC2 interface endpoint" if ec2 else "none", logical=logical))
    return out + endpoint_checks(d, f)


def endpoint_checks(d: Declared, f: Facts) -> list[Check]:
    vpc, logical, region = d.outputs.get("vpc_id"), d.logical("vpc"), d.settings.region
    private = set(d.ids("private_subnet_ids"))
    tables = {t["RouteTableId"] for t in f.route_tables for a in t.get("Associations", [])
              if a.get("SubnetId") in private}
    s3 = [e for e in f.endpoints if e.get("ServiceName") == f"com.amazonaws.{region}.s3"
          and e.get("VpcEndpointType", "Gateway") == "Gateway"]
    missing = tables - {t for e in s3 for t in e.get("RouteTableIds") or []}
    out = [check("vpc.s3-endpoint", VPC_ENDPOINTS, vpc,
                 f"S3 gateway endpoint on the {len(tables)} private route table(s)",
                 f"S3 gateway endpoint on the {len(tables)} private route table(s)"
                 if s3 and not missing else
                 f"{len(missing)} private route table(s) without it" if s3 else "none",
                 ok=bool(s3) and not missing, logical=logical)]
    sm = [e for e in f.endpoints
          if e.get("ServiceName") == f"com.amazonaws.{region}.secretsmanager"]
    want = ("interface endpoint in the private subnets, private DNS on (configuration only: "
            "the emulator resolves no names), 443 from the Lambdas")
    if not sm:
        return out + [check("vpc.secretsmanager-endpoint", VPC_ENDPOINTS, vpc, want, "none",
                            ok=False, logical=logical)]
    for e in sm:
        problems = []
        if not e.get("PrivateDnsEnabled"):
            problems.append("private DNS off")
        if set(e.get("SubnetIds") or []) != private:
            problems.append("not in exactly the private subnets")
        admitted = {p["GroupId"] for g in e.get("Groups") or []
                    for perm in (f.security_groups.get(g["GroupId"]) or {}).get(
                        "IpPermissions", [])
                    if perm.get("FromPort", 0) <= 443 <= perm.get("ToPort", 65535)
                    for p in perm.get("UserIdGroupPairs", [])}
        if not _lambda_groups(d, f) & admitted:
            problems.append("443 not admitted from the Lambdas' group")
        out.append(check("vpc.secretsmanager-endpoint", VPC_ENDPOINTS, e["VpcEndpointId"],
                         want, "; ".join(problems) or want, ok=not problems, logical=logical))
    return out


def network_facts(clients: Clients, outputs: dict[str, Any]) -> Facts:
    """The network and bucket facts alone, read as verify's reader reads them (a stack of only
    the network and storage parts, as tests/test_network_controls.py deploys)."""
    facts = Facts()
    with _as_tap_errors():
        _fetch_network(clients("ec2"), outputs.get("vpc_id", ""), facts, Shared())
        _fetch_buckets(clients("s3"), outputs, facts)
    return facts


def network_control_checks(declared: Declared, clients: Clients) -> list[Check]:
    """These checks alone on a stack's network and buckets (verify runs them in CHECKS, on the
    facts of its counted reader), the params file's policy exceptions applied."""
    facts = network_facts(clients, declared.outputs)
    return [apply_exception(declared.settings, c) for c in network_hardening_checks(declared, facts)]


def network_hardening_checks(d: Declared, f: Facts) -> list[Check]:
    """verify's check family (ops/verify.CHECKS)."""
    return bucket_control_checks(d, f) + vpc_control_checks(d, f)
