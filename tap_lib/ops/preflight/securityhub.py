"""Preflight rules for hardening, keyed to AWS Security Hub controls: each control id keeps the
meaning it has in verify (the deployed stack is checked against the same id)."""
from __future__ import annotations

from . import (BUCKET, BUCKET_POLICY, CLUSTER, DB_INSTANCE, FLOW_LOG, FUNCTION, IAM_POLICY,
               PUBLIC_ACCESS_BLOCK, ROTATION, SECRET, SSE, SUBNET, VERSIONING, VPC, Context,
               Finding, _as_list, _attached, _denies_plain_http, _statements, error,
               rule, warning)
from ...controls import MIN_BACKUP_DAYS, SECRETS_MAX_ROTATION_DAYS


def _severity(ctx: Context):
    """Hardening a control asks for: an error on a protected stack (prod), else a warning (an
    environment that differs on purpose says so with a policy exception)."""
    return error if ctx.strict else warning


# -- rules: hardening, keyed to AWS Security Hub controls ------------------------------------
@rule("TAP101", "RDS.2 not-public")
def rds_not_public(ctx: Context) -> list[Finding]:
    """RDS.2: a publicly accessible database instance exposes the payment data to the internet."""
    return [error(i.name, "database instance is publicly accessible",
                  "set publicly_accessible=False")
            for i in ctx.of(DB_INSTANCE) if i.inputs.get("publiclyAccessible") is True]


@rule("TAP102", "RDS.27 storage-encrypted")
def rds_encrypted(ctx: Context) -> list[Finding]:
    """RDS.27: an unencrypted cluster cannot be encrypted later without a snapshot restore."""
    return [error(c.name, "cluster storage is not encrypted",
                  "set storage_encrypted=True with kms_key_id=<stack key>.arn")
            for c in ctx.of(CLUSTER) if c.inputs.get("storageEncrypted") is not True]


@rule("TAP103", "RDS.7 deletion-protection")
def rds_deletion_protection(ctx: Context) -> list[Finding]:
    """RDS.7: without deletion protection one mistaken destroy drops the database. Judged as
    the control means it (protection on), not as "matches the environment file"; an environment
    that deliberately goes without says so as a policy exception."""
    return [_severity(ctx)(c.name, "cluster has no deletion protection",
                           f"set db.deletion_protection: true in {ctx.params_file}")
            for c in ctx.of(CLUSTER) if c.inputs.get("deletionProtection") is not True]


@rule("TAP104", "RDS.11 backups")
def rds_backups(ctx: Context) -> list[Finding]:
    """RDS.11: automated backups kept at least 7 days (the control's default), so a mistake
    found after a long weekend can still be restored."""
    out = []
    for c in ctx.of(CLUSTER):
        days = c.inputs.get("backupRetentionPeriod", 1)  # AWS default: 1 day
        if days < MIN_BACKUP_DAYS:
            out.append(_severity(ctx)(
                c.name, f"backup retention is {days:g} day(s); RDS.11 needs >= {MIN_BACKUP_DAYS}",
                f"set db.backup_retention_days >= {MIN_BACKUP_DAYS} in {ctx.params_file}"))
    return out


@rule("TAP105", "RDS.9/RDS.37 log-exports")
def rds_log_exports(ctx: Context) -> list[Finding]:
    """RDS.9/RDS.37: without the postgresql log in CloudWatch Logs, failed logins and errors
    vanish with the instance that wrote them."""
    out = []
    for c in ctx.of(CLUSTER):
        exported = c.inputs.get("enabledCloudwatchLogsExports") or []
        if "postgresql" not in exported:
            out.append(_severity(ctx)(c.name, f"cluster exports {exported or 'no logs'} to "
                                              "CloudWatch Logs, not the postgresql log",
                                      'set enabled_cloudwatch_logs_exports=["postgresql"]'))
    return out


@rule("TAP106", "RDS.10/RDS.12 iam-auth")
def rds_iam_auth(ctx: Context) -> list[Finding]:
    """RDS.10/RDS.12: IAM database authentication lets access be granted and revoked with IAM
    instead of long-lived database passwords (Aurora instances take the cluster's setting)."""
    return [_severity(ctx)(c.name, "IAM database authentication is off",
                           "set iam_database_authentication_enabled=True")
            for c in ctx.of(CLUSTER) if c.inputs.get("iamDatabaseAuthenticationEnabled") is not True]


@rule("TAP107", "RDS.15 multi-az")
def rds_multi_az(ctx: Context) -> list[Finding]:
    """RDS.15: instances left to RDS's choice of zone can all land in one (staging's two did),
    so one zone's failure stops the database; each instance names its zone, spread over the
    environment's. A single instance has no zone to fail over to."""
    out = []
    for c in ctx.of(CLUSTER):
        members = [i for i in ctx.of(DB_INSTANCE)
                   if i.inputs.get("clusterIdentifier") in (c.id, c.inputs.get("clusterIdentifier"))]
        unplaced = [i.name for i in members if not i.inputs.get("availabilityZone")]
        zones = {i.inputs.get("availabilityZone") for i in members} - {None}
        want = min(len(members), len(ctx.settings.availability_zones))
        if unplaced:
            out.append(_severity(ctx)(c.name, f"instances {', '.join(unplaced)} name no zone: "
                                              "RDS may put them all in one",
                                      "set availability_zone per instance over the zones"))
        elif len(members) == 1:
            out.append(_severity(ctx)(c.name, "one instance: no zone to fail over to",
                                      f"set db.instances >= 2 in {ctx.params_file}"))
        elif len(zones) < want:
            out.append(_severity(ctx)(c.name, f"{len(members)} instances in {len(zones)} zone(s) "
                                              f"({', '.join(sorted(zones))}); needs {want}",
                                      "spread availability_zone over the environment's zones"))
    return out


@rule("TAP111", "S3.1/S3.8 public-access-block")
def s3_public_access_block(ctx: Context) -> list[Finding]:
    """S3.1/S3.8: without all four public access block flags a policy or ACL can expose the
    transaction logs."""
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    fix = "add aws.s3.BucketPublicAccessBlock with all four flags True"
    out = []
    for bucket in ctx.of(BUCKET):
        blocks = _attached(ctx, bucket, PUBLIC_ACCESS_BLOCK)
        if not blocks:
            out.append(error(bucket.name, "bucket has no public access block", fix))
        for block in blocks:
            off = [f for f in flags if block.inputs.get(f) is not True]
            if off:
                out.append(error(bucket.name, f"public access block leaves {', '.join(off)} off",
                                 fix))
    return out


@rule("TAP112", "S3.5 tls-only")
def s3_tls_only(ctx: Context) -> list[Finding]:
    """S3.5: without a Deny on aws:SecureTransport=false, clients may send logs in clear text."""
    out = []
    for bucket in ctx.of(BUCKET):
        stmts = [s for p in _attached(ctx, bucket, BUCKET_POLICY)
                 for s in _statements(p.inputs.get("policy"))]
        if not any(_denies_plain_http(s) for s in stmts):
            out.append(error(bucket.name, "no bucket policy denies requests without TLS",
                             "attach policies.tls_only_bucket_policy(bucket.arn)"))
    return out


@rule("TAP113", "S3.14 versioning")
def s3_versioning(ctx: Context) -> list[Finding]:
    """S3.14: without versioning an overwrite or delete loses transaction logs for good."""
    out = []
    for bucket in ctx.of(BUCKET):
        states = [v.inputs.get("versioningConfiguration", {}).get("status")
                  for v in _attached(ctx, bucket, VERSIONING)]
        if "Enabled" not in states:
            out.append(error(bucket.name, f"versioning is not Enabled (got {states or 'none'})",
                             "add aws.s3.BucketVersioning with status Enabled"))
    return out


@rule("TAP114", "S3.17 sse-kms")
def s3_sse_kms(ctx: Context) -> list[Finding]:
    """S3.17: logs must be encrypted with the stack's KMS key, not only S3-managed keys."""
    out = []
    for bucket in ctx.of(BUCKET):
        algorithms = [(r.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
                      for c in _attached(ctx, bucket, SSE) for r in c.inputs.get("rules", [])]
        if not any(a in ("aws:kms", "aws:kms:dsse") for a in algorithms):
            out.append(error(bucket.name, f"default encryption is not SSE-KMS "
                                          f"(got {algorithms or 'none'})",
                             "add BucketServerSideEncryptionConfiguration with aws:kms"))
    return out


@rule("TAP121", "Lambda.5 multi-az")
def lambda_multi_az(ctx: Context) -> list[Finding]:
    """Lambda.5: a VPC function in one AZ stops taking payments when that AZ fails."""
    azs_of = {s.id: s.inputs.get("availabilityZone") for s in ctx.of(SUBNET)}
    out = []
    for fn in ctx.of(FUNCTION):
        subnets = (fn.inputs.get("vpcConfig") or {}).get("subnetIds") or []
        if not subnets:
            out.append(error(fn.name, "function is not attached to the VPC",
                             "set vpc_config with the private subnets"))
            continue
        unknown = [s for s in subnets if s not in azs_of]
        if unknown:
            out.append(warning(fn.name, f"subnets {unknown} are not declared by this stack; "
                                        "their AZs are unknown"))
        azs = sorted({azs_of[s] for s in subnets if s in azs_of})
        if len(azs) < 2 and not unknown:
            out.append(error(fn.name, f"function subnets span {len(azs)} AZ ({', '.join(azs)}); "
                                      "needs >= 2",
                             "pass every private subnet in vpc_config.subnet_ids"))
    return out


@rule("TAP131", "EC2.6 flow-logs")
def vpc_flow_logs(ctx: Context) -> list[Finding]:
    """EC2.6: without VPC flow logs there is no record of who talked to the database."""
    logged = {f.inputs.get("vpcId") for f in ctx.of(FLOW_LOG)}
    return [error(v.name, "VPC has no flow log", "add aws.ec2.FlowLog(vpc_id=vpc.id, "
                                                 "traffic_type='ALL')")
            for v in ctx.of(VPC) if v.id not in logged]


@rule("TAP141", "SecretsManager.1 rotation")
def secret_rotation(ctx: Context) -> list[Finding]:
    """SecretsManager.1, and seed 6's "fix": rotation was commented out, leaving the database
    password unrotated while the environment file still asked for rotation. The master
    password counts too: RDS rotates it only when it manages it."""
    rotated = {r.inputs.get("secretId") for r in ctx.of(ROTATION)}
    wanted = ctx.settings.secrets.rotation_enabled
    out = []
    for secret in ctx.of(SECRET):
        if rotated & {secret.id, secret.outputs.get("arn")}:
            continue
        if wanted:
            out.append(error(secret.name, f"{ctx.params_file} enables rotation but the plan has "
                                          "no SecretRotation for this secret",
                             "declare aws.secretsmanager.SecretRotation with the stack's "
                             "rotation Lambda"))
        else:
            out.append((error if ctx.strict else warning)(
                secret.name, f"rotation is disabled in {ctx.params_file}",
                f"set secrets.rotation_enabled: true in {ctx.params_file}"))
    return out + _unmanaged_masters(ctx, "SecretsManager.1")


def _unmanaged_masters(ctx: Context, control: str) -> list[Finding]:
    """A cluster whose master password tap sets itself: RDS neither stores it in a secret it
    rotates (the `rds!cluster-...` secret, every 7 days) nor rotates it at all."""
    return [_severity(ctx)(c.name, f"{control}: the master password is not managed by RDS, so "
                                   "no secret holds it and nothing rotates it",
                           "set manage_master_user_password=True (no master_password)")
            for c in ctx.of(CLUSTER) if c.inputs.get("manageMasterUserPassword") is not True]


@rule("TAP142", "SecretsManager.4 rotation-period")
def secret_rotation_period(ctx: Context) -> list[Finding]:
    """SecretsManager.4: a secret not rotated within 90 days is a long-lived credential; covers
    the application secret's schedule and the RDS-managed master secret."""
    out = []
    for r in ctx.of(ROTATION):
        days = (r.inputs.get("rotationRules") or {}).get("automaticallyAfterDays")
        if days is not None and days > SECRETS_MAX_ROTATION_DAYS:
            out.append(_severity(ctx)(
                r.name, f"rotation every {days:g} days; SecretsManager.4 needs <= "
                        f"{SECRETS_MAX_ROTATION_DAYS}",
                f"set secrets.rotation_days <= {SECRETS_MAX_ROTATION_DAYS} in {ctx.params_file}"))
    return out + _unmanaged_masters(ctx, "SecretsManager.4")


@rule("TAP151", "IAM.1 no-admin")
def iam_no_admin(ctx: Context) -> list[Finding]:
    """IAM.1: a statement allowing every action on every resource turns a Lambda bug into an
    account takeover."""
    out = []
    for policy in ctx.of(IAM_POLICY):
        for s in _statements(policy.inputs.get("policy")):
            if s.get("Effect") == "Allow" and {"*", "*:*"} & set(_as_list(s.get("Action"))) \
                    and "*" in _as_list(s.get("Resource")):
                out.append(error(policy.name, 'a statement allows Action "*" on Resource "*"',
                                 "list the actions and resources the function needs "
                                 "(tap_lib/program/policies.policy_document)"))
    return out
