"""Preflight rules for the network and storage controls of issue 19, keyed to Security Hub ids
(S3.9, S3.12, S3.15, EC2.2, EC2.10, EC2.21) and tap's own `tap:vpc-endpoints`. Each judges
the synthesized plan as the control defines it; verify (ops/hardening_network.py) judges the
live stack under the same ids."""
from __future__ import annotations

from ...controls import VPC_ENDPOINTS
from . import BUCKET, VPC, Context, Finding, _attached, error, rule
from .securityhub import _severity

OWNERSHIP = ("aws:s3/bucketOwnershipControls:BucketOwnershipControls",)
OBJECT_LOCK = ("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
               "aws:s3/bucketObjectLockConfigurationV2:BucketObjectLockConfigurationV2")
LOGGING = ("aws:s3/bucketLogging:BucketLogging", "aws:s3/bucketLoggingV2:BucketLoggingV2")
DEFAULT_SG = ("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",)
DEFAULT_NACL = ("aws:ec2/defaultNetworkAcl:DefaultNetworkAcl",)
NACL = ("aws:ec2/networkAcl:NetworkAcl",)
NACL_RULE = ("aws:ec2/networkAclRule:NetworkAclRule",)
ENDPOINT = ("aws:ec2/vpcEndpoint:VpcEndpoint",)
ROUTE_TABLE = ("aws:ec2/routeTable:RouteTable",)
ASSOCIATION = ("aws:ec2/routeTableAssociation:RouteTableAssociation",)
SUBNET = ("aws:ec2/subnet:Subnet",)
SG_INGRESS = ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",)
FUNCTION = ("aws:lambda/function:Function",)
ADMIN_PORTS = (22, 3389)
ANYWHERE = ("0.0.0.0/0", "::/0")
PROTOCOLS = {"tcp": "6", "udp": "17", "all": "-1"}


# -- S3 ----------------------------------------------------------------------------------------
@rule("TAP171", "S3.9 access-logging")
def s3_access_logging(ctx: Context) -> list[Finding]:
    """S3.9: without server access logs nobody can say who read or deleted a transaction log.
    The logs go to another bucket (a bucket logging into itself logs its own log writes)."""
    out = []
    for bucket in ctx.of(BUCKET):
        targets = [r.inputs.get("targetBucket") for r in _attached(ctx, bucket, LOGGING)]
        own = {bucket.id, bucket.inputs.get("bucket")}
        if not targets:
            out.append(_severity(ctx)(bucket.name, "bucket has no server access logging",
                                      "add aws.s3.BucketLogging(target_bucket=<access-log "
                                      "bucket>) (storage.build_access_log_bucket)"))
        elif all(t in own for t in targets):
            out.append(_severity(ctx)(bucket.name, "bucket logs into itself",
                                      "deliver its access logs to a separate bucket"))
    return out


@rule("TAP172", "S3.12 acls-disabled")
def s3_acls_disabled(ctx: Context) -> list[Finding]:
    """S3.12: with ACLs enabled an object ACL can grant access that the bucket policy does not
    show; BucketOwnerEnforced disables every ACL."""
    out = []
    for bucket in ctx.of(BUCKET):
        modes = [(c.inputs.get("rule") or {}).get("objectOwnership")
                 for c in _attached(ctx, bucket, OWNERSHIP)]
        if "BucketOwnerEnforced" not in modes:
            out.append(error(bucket.name, f"ACLs are enabled (object ownership "
                                          f"{', '.join(map(str, modes)) or 'not set'})",
                             "add aws.s3.BucketOwnershipControls with object_ownership="
                             "BucketOwnerEnforced"))
    return out


@rule("TAP173", "S3.15 object-lock")
def s3_object_lock(ctx: Context) -> list[Finding]:
    """S3.15: without Object Lock a compromised role can overwrite or delete the transaction
    logs that prove what happened. A protected stack (prod) locks in COMPLIANCE mode, which no
    principal can lift; GOVERNANCE elsewhere lets destroy empty the bucket."""
    out = []
    # S3 refuses a server access log target with a default retention: lock alone there.
    targets = {r.inputs.get("targetBucket") for r in ctx.of(LOGGING)}
    for bucket in ctx.of(BUCKET):
        log_target = bool({bucket.id, bucket.inputs.get("bucket")} & targets)
        confs = _attached(ctx, bucket, OBJECT_LOCK)
        enabled = bucket.inputs.get("objectLockEnabled") is True or any(
            c.inputs.get("objectLockEnabled", "Enabled") == "Enabled" for c in confs)
        retention = [((c.inputs.get("rule") or {}).get("defaultRetention") or {}) for c in confs]
        retention = [r for r in retention if r.get("mode")]
        if not enabled:
            out.append(_severity(ctx)(bucket.name, "Object Lock is not enabled",
                                      "set object_lock_enabled=True and add aws.s3."
                                      "BucketObjectLockConfiguration"))
        elif not retention and not log_target:
            out.append(_severity(ctx)(bucket.name, "Object Lock has no default retention",
                                      "add a default_retention rule (bucket.object_lock_mode/"
                                      f"object_lock_days in {ctx.params_file})"))
        elif retention and ctx.strict and not any(r["mode"] == "COMPLIANCE" for r in retention):
            out.append(error(bucket.name, f"protected stack locks in {retention[0]['mode']} "
                                          "mode, which a privileged principal can lift",
                             f"set bucket.object_lock_mode: COMPLIANCE in {ctx.params_file}"))
    return out


# -- VPC defaults --------------------------------------------------------------------------------
@rule("TAP174", "EC2.2 default-sg-closed")
def default_security_group(ctx: Context) -> list[Finding]:
    """EC2.2: AWS's default group admits everything from its own members and sends anywhere;
    anything launched without a group lands in it. Adopted with no rules, it admits nothing."""
    declared = {g.inputs.get("vpcId"): g for g in ctx.of(DEFAULT_SG)}
    out = []
    for vpc in ctx.of(VPC):
        group = declared.get(vpc.id)
        if group is None:
            out.append(error(vpc.name, "the VPC's default security group keeps AWS's rules",
                             "adopt it: aws.ec2.DefaultSecurityGroup(vpc_id=vpc.id, ingress=[], "
                             "egress=[])"))
        elif group.inputs.get("ingress") or group.inputs.get("egress"):
            out.append(error(group.name, "the default security group has rules",
                             "declare it with ingress=[] and egress=[]"))
    return out


def _protocol(value) -> str:
    text = str(value).lower()
    return PROTOCOLS.get(text, text)


def admits_admin_ports(entry: dict) -> list[int]:
    """EC2.21 as the control reads an ACL entry: an inbound allow from anywhere (IPv4 or IPv6)
    for TCP, UDP or all protocols whose ports include 22 or 3389 (rule order is not weighed:
    the control flags the allow itself)."""
    if str(entry.get("action", entry.get("ruleAction", ""))).lower() != "allow":
        return []
    source = entry.get("cidrBlock") or entry.get("ipv6CidrBlock")
    if source not in ANYWHERE:
        return []
    proto = _protocol(entry.get("protocol", "-1"))
    if proto == "-1":
        return list(ADMIN_PORTS)
    if proto not in ("6", "17"):
        return []
    low, high = int(entry.get("fromPort", 0) or 0), int(entry.get("toPort", 0) or 0)
    return [p for p in ADMIN_PORTS if low <= p <= high]


@rule("TAP175", "EC2.21 nacl-admin-ports")
def nacl_admin_ports(ctx: Context) -> list[Finding]:
    """EC2.21: the default network ACL allows all inbound traffic, SSH and RDP from the
    internet included; every subnet without its own ACL uses it."""
    out = []
    acls = ctx.of(DEFAULT_NACL)
    if len(acls) < len(ctx.of(VPC)):
        out += [error(v.name, "the VPC's default network ACL keeps AWS's allow-all rules",
                      "adopt it: aws.ec2.DefaultNetworkAcl(default_network_acl_id="
                      "vpc.default_network_acl_id, ingress=[...]) (network.NACL_INGRESS)")
                for v in ctx.of(VPC)]
    for acl in acls + ctx.of(NACL):
        for entry in acl.inputs.get("ingress") or []:
            ports = admits_admin_ports(entry)
            if ports:
                out.append(error(acl.name, f"rule {entry.get('ruleNo'):g} admits "
                                           f"{entry.get('cidrBlock') or entry.get('ipv6CidrBlock')}"
                                           f" to port(s) {', '.join(map(str, ports))}",
                                 "admit the VPC CIDR, and from anywhere only ports 1024-65535"))
    for r in ctx.of(NACL_RULE):
        ports = [] if r.inputs.get("egress") else admits_admin_ports(r.inputs)
        if ports:
            out.append(error(r.name, f"admits {r.inputs.get('cidrBlock')} to port(s) "
                                     f"{', '.join(map(str, ports))}",
                             "narrow the source or the port range"))
    return out


# -- endpoints -----------------------------------------------------------------------------------
def _service(endpoint, name: str, region: str) -> bool:
    return endpoint.inputs.get("serviceName") == f"com.amazonaws.{region}.{name}"


@rule("TAP176", "EC2.10 ec2-endpoint")
def ec2_endpoint(ctx: Context) -> list[Finding]:
    """EC2.10 as Security Hub defines it: an interface endpoint for the EC2 service in the
    VPC, so EC2 API calls from inside it never cross the internet."""
    out = []
    for vpc in ctx.of(VPC):
        found = [e for e in ctx.of(ENDPOINT) if e.inputs.get("vpcId") == vpc.id
                 and _service(e, "ec2", ctx.settings.region)]
        if not found:
            out.append(_severity(ctx)(vpc.name, "the VPC has no EC2 interface endpoint",
                                      f'add "ec2" to vpc.interface_endpoints in '
                                      f"{ctx.params_file}"))
    return out


def _private_route_tables(ctx: Context) -> set[str]:
    private = {s.id for s in ctx.of(SUBNET)
               if (s.inputs.get("tags") or {}).get("Tier") == "private"}
    return {a.inputs.get("routeTableId") for a in ctx.of(ASSOCIATION)
            if a.inputs.get("subnetId") in private}


@rule("TAP177", f"{VPC_ENDPOINTS} s3-secrets-endpoints")
def service_endpoints(ctx: Context) -> list[Finding]:
    """The Lambdas read the database secret and write transaction logs: through endpoints
    (S3 gateway on every private route table; Secrets Manager interface endpoint with private
    DNS, reachable on 443 from the Lambdas' group) that traffic never leaves AWS's network
    and keeps working when the NAT does not."""
    region, out = ctx.settings.region, []
    where = next((v.name for v in ctx.of(VPC)), "vpc")   # exceptions name the VPC
    tables = _private_route_tables(ctx)
    s3 = [e for e in ctx.of(ENDPOINT) if _service(e, "s3", region)
          and e.inputs.get("vpcEndpointType", "Gateway") == "Gateway"]
    covered = {t for e in s3 for t in e.inputs.get("routeTableIds") or []}
    if not s3 or tables - covered:
        out.append(_severity(ctx)(where, "private route tables without the S3 gateway "
                                                 f"endpoint: {len(tables - covered)}",
                                  "add aws.ec2.VpcEndpoint(vpc_endpoint_type='Gateway', "
                                  "route_table_ids=<private route tables>)"))
    sm = [e for e in ctx.of(ENDPOINT) if _service(e, "secretsmanager", region)]
    if not sm:
        return out + [_severity(ctx)(where, "no Secrets Manager interface endpoint: secret reads go "
                                     "through the NAT",
                                     f'add "secretsmanager" to vpc.interface_endpoints in '
                                     f"{ctx.params_file}")]
    lambda_groups = {g for f in ctx.of(FUNCTION)
                     for g in (f.inputs.get("vpcConfig") or {}).get("securityGroupIds") or []}
    for e in sm:
        if e.inputs.get("privateDnsEnabled") is not True:
            out.append(_severity(ctx)(e.name, "private DNS is off: the SDK's hostname still "
                                              "resolves to the public endpoint",
                                      "set private_dns_enabled=True"))
        groups = set(e.inputs.get("securityGroupIds") or [])
        admitted = {r.inputs.get("referencedSecurityGroupId") for r in ctx.of(SG_INGRESS)
                    if r.inputs.get("securityGroupId") in groups
                    and int(r.inputs.get("fromPort", 0) or 0) <= 443
                    <= int(r.inputs.get("toPort", 0) or 0)}
        if lambda_groups and not lambda_groups & admitted:
            out.append(_severity(ctx)(e.name, "the endpoint's security group does not admit "
                                              "443 from the Lambdas' group",
                                      "add an ingress rule for 443 referencing the Lambda "
                                      "security group"))
    return out
