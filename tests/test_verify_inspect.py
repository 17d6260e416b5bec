"""verify and inspect against a real sandbox deploy: a clean stack passes with a fixed number of
AWS calls and shows no drift; drift injected behind tap's back is caught by both."""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass

import pytest

from fixtures_drift import inject_drift
from tap_lib.engines.registry import open_engine
from tap_lib.ops import verify as verify_module
from tap_lib.errors import OperationFailed
from tap_lib.ops.inspect import Inspection, inspect_stack
from tap_lib.ops.stack import deploy, destroy, settings_for
from tap_lib.ops.verify import VerifyReport, verify

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]

ENV, TARGET = "dev", "sandbox"
RETENTION = "cloudwatch_log_group_retention_policy_specific_days_enabled"

# One fetch per resource kind, whatever the number of checks. EC2 reads the two DNS attributes
# one per call (its API has no batch form); Lambda reads each of the stack's two functions;
# Secrets Manager describes the app secret and the RDS-managed master secret; each log group
# and service role the functions and flow log use is read once (3 of each).
# Issue 19 adds kinds, not per-check calls: the VPC's network ACLs and endpoints (EC2.21,
# EC2.10); each S3 read once per bucket, now two (the transaction logs and their access-log
# target), plus ownership, Object Lock and logging (S3.12, S3.15, S3.9); the data side's
# resources, found by name: the monitoring role, its policies and (sandbox only: is AWS's
# managed policy loaded?) the policy (RDS.6), the cluster's parameter group and its parameters
# (RDS.38), the backup vault, plans, the plan and its selections, the DLQ (SQS.1) and the
# app secret's resource policy.
S3_PER_BUCKET = ("GetBucketVersioning", "GetBucketEncryption", "GetPublicAccessBlock",
                 "GetBucketPolicy", "GetBucketLifecycleConfiguration", "GetBucketTagging",
                 "GetBucketOwnershipControls", "GetObjectLockConfiguration", "GetBucketLogging")
EXPECTED_CALLS = Counter({
    "ec2.DescribeVpcs": 1, "ec2.DescribeVpcAttribute": 2, "ec2.DescribeFlowLogs": 1,
    "ec2.DescribeSubnets": 1, "ec2.DescribeNatGateways": 1, "ec2.DescribeAddresses": 1,
    "ec2.DescribeRouteTables": 1, "ec2.DescribeSecurityGroups": 1,
    "ec2.DescribeNetworkAcls": 1, "ec2.DescribeVpcEndpoints": 1,
    "rds.DescribeDBClusters": 1, "rds.DescribeDBInstances": 1,
    "secretsmanager.DescribeSecret": 2, "secretsmanager.BatchGetSecretValue": 1,
    "lambda.GetFunction": 2, "logs.DescribeLogGroups": 3, "iam.GetRole": 3 + 1 + 1,
    **{f"s3.{op}": 2 for op in S3_PER_BUCKET},
    "iam.ListAttachedRolePolicies": 1, "iam.GetPolicy": 1,
    "rds.DescribeDBClusterParameterGroups": 1, "rds.DescribeDBClusterParameters": 1,
    "backup.ListBackupVaults": 1, "backup.ListBackupPlans": 1, "backup.GetBackupPlan": 1,
    "backup.ListBackupSelections": 1, "sqs.GetQueueUrl": 1, "sqs.GetQueueAttributes": 1,
    "secretsmanager.GetResourcePolicy": 2,     # the app secret's and the master secret's
    # issue 19, every control Prowler evaluates: the compute side (network interfaces for
    # EC2.22, the key's rotation and policy, each function's resource policy, the trails, log
    # groups' resource policies and recent events, the roles' inline policies) ...
    "ec2.DescribeNetworkInterfaces": 1, "kms.DescribeKey": 1, "kms.GetKeyRotationStatus": 1,
    "kms.GetKeyPolicy": 1, "lambda.GetPolicy": 2, "cloudtrail.DescribeTrails": 1,
    "logs.DescribeResourcePolicies": 1, "logs.FilterLogEvents": 3,
    "iam.ListRolePolicies": 5, "iam.GetRolePolicy": 5,
    # ... and the storage side (ACLs, notifications, replication per bucket; snapshots, the
    # engine versions offered, report plans)
    **{f"s3.{op}": 2 for op in ("GetBucketAcl", "GetBucketNotificationConfiguration",
                                "GetBucketReplication")},
    "rds.DescribeDBClusterSnapshots": 1, "rds.DescribeDBSnapshots": 1,
    "rds.DescribeDBEngineVersions": 1, "backup.ListReportPlans": 1,
})
# What the emulator cannot show (moto 5.2 drops a function's DeadLetterConfig and has no AWS
# Backup selections): `unverified`, named in the notes, never counted as passed.
# Nor certificate details, nor when a secret was last read.
UNVERIFIED = sorted([("backup.cluster-protected", "rds_cluster_protected_by_backup_plan"),
                     ("lambda.dead-letter-queue", "awslambda_function_no_dead_letter_queue"),
                     ("lambda.dead-letter-queue", "awslambda_function_no_dead_letter_queue"),
                     ("rds.certificate", "rds_instance_certificate_expiration"),
                     ("secret.used", "secretsmanager_secret_unused"),
                     ("secret.master.used", "secretsmanager_secret_unused")])


@pytest.fixture(scope="module")
def stack(sandbox_home):
    """dev deployed once on the module's own emulator (conftest's sandbox_home stops it)."""
    deploy(ENV, TARGET)
    engine = open_engine(settings_for(ENV), TARGET)
    yield engine
    destroy(ENV, TARGET, yes=True)


# -- a clean stack (these run before the drift fixture below changes the stack) -------------
def test_clean_stack_passes_every_check(stack):
    report = verify(ENV, TARGET)
    failed = report.checks[report.checks.status == "fail"]
    assert failed.empty, failed.to_string()
    assert report.passed + report.excepted + report.unverified == len(report.checks) >= 40
    assert set(report.checks.status) == {"pass", "excepted", "unverified"}
    assert set(report.checks.control) >= {"RDS.2", "RDS.27", "S3.5", "S3.8", "Lambda.5",
                                          "EC2.6", "SecretsManager.1", "SecretsManager.4",
                                          "RDS.7", "RDS.11", "RDS.12", "RDS.37",
                                          "cloudwatch_log_group_kms_encryption_enabled",
                                          "iam_role_cross_service_confused_deputy_prevention",
                                          "tap:lambda-env-cmk",
                                          # issue 19's network, storage and data controls
                                          "S3.9", "S3.12", "S3.15", "EC2.2", "EC2.21",
                                          "RDS.38", "SQS.1", "backup_vaults_encrypted",
                                          "secretsmanager_has_restrictive_resource_policy"}
    # What params/dev.yaml excepts, and nothing else: never counted as passed.
    rows = report.checks[report.checks.status == "excepted"]
    assert sorted(zip(rows.id, rows.control)) == sorted(
        [("logs.retention", RETENTION)] * 3 + [("rds.backups", "RDS.11"),
                                               ("rds.deletion-protection", "RDS.7"),
                                               # the access-log bucket (as in every env)
                                               ("s3.access-logging", "S3.9"),
                                               ("s3.encryption", "S3.17"),
                                               # dev: no interface endpoints, no monitoring,
                                               # 7 days of AWS Backup
                                               ("ec2.ec2-endpoint", "EC2.10"),
                                               ("vpc.secretsmanager-endpoint",
                                                "tap:vpc-endpoints"),
                                               ("rds.enhanced-monitoring", "RDS.6"),
                                               ("backup.plan", "tap:backup-plan-retention"),
                                               # the master secret RDS owns has no policy
                                               ("secret.master-resource-policy",
                                                "secretsmanager_has_restrictive_resource_policy"),
                                               # dev: one instance, no deletion protection;
                                               # every env: the default port, no MFA delete
                                               # (root only), one region
                                               ("rds.instance-multi-az", "RDS.5"),
                                               ("rds.instance-deletion-protection", "RDS.8"),
                                               ("rds.instance-port", "RDS.23"),
                                               ("rds.cluster-port",
                                                "rds_cluster_non_default_port"),
                                               # the account's trail, outside the stack
                                               *[("lambda.cloudtrail", "awslambda_function_"
                                                  "invoke_api_operations_cloudtrail_logging_"
                                                  "enabled")] * 2,
                                               *[("s3.mfa-delete", "S3.20"),
                                                 ("s3.cross-region-replication",
                                                  "s3_bucket_cross_region_replication")] * 2,
                                               ]), \
        rows.to_string()
    gaps = report.checks[report.checks.status == "unverified"]
    assert sorted(zip(gaps.id, gaps.control)) == UNVERIFIED, gaps.to_string()
    assert any(n.startswith("not verifiable on the sandbox") and "lambda.dead-letter-queue" in n
               and "backup.cluster-protected" in n for n in report.notes)


def test_outputs_are_shaped_as_aws_reports_them(stack):
    """Code written against AWS runs unchanged on the sandbox: the endpoint is the cluster's
    AWS name (what describe_db_clusters says), the port the declared one; the local stand-in
    hides behind that name for tap's own connections only."""
    out = stack.outputs()
    cluster = stack.clients()("rds").describe_db_clusters(
        DBClusterIdentifier=out["rds_cluster_id"])["DBClusters"][0]
    assert out["rds_cluster_endpoint"] == cluster["Endpoint"]
    assert re.fullmatch(rf"{out['rds_cluster_id']}\.cluster-[a-z0-9]+\.eu-west-2\."
                        r"rds\.amazonaws\.com", out["rds_cluster_endpoint"])
    assert out["rds_cluster_port"] == cluster["Port"] == settings_for(ENV).db.port
    secret = json.loads(stack.clients()("secretsmanager").get_secret_value(
        SecretId=out["db_secret_arn"])["SecretString"])
    assert (secret["host"], int(secret["port"])) == (out["rds_cluster_endpoint"], 5432)
    host, port = stack.db_address(secret["host"], int(secret["port"]))
    assert host == "127.0.0.1" and port != 5432       # where the stand-in really listens


def test_aws_calls_grow_with_kinds_not_checks(stack, monkeypatch):
    report = verify(ENV, TARGET)
    assert Counter(report.calls) == EXPECTED_CALLS
    assert report.aws_calls == sum(EXPECTED_CALLS.values()) == 87
    assert report.to_dict()["summary"] == {"passed": report.passed, "failed": 0,
                                           "excepted": report.excepted,
                                           "unverified": len(UNVERIFIED), "aws_calls": 87}
    assert any("cannot execute Lambdas" in note for note in report.notes)

    live = report.checks[report.checks.id.isin(["db.login", "payment.synthetic"])]
    assert list(live.status) == ["pass", "pass"]
    assert live.actual.iloc[0] == "login ok as tap_app"
    monkeypatch.setattr(verify_module, "CHECKS", verify_module.CHECKS * 2)
    doubled = verify(ENV, TARGET)
    assert len(doubled.checks) == 2 * (len(report.checks) - len(live)) + len(live)
    assert doubled.aws_calls == report.aws_calls


def test_clean_stack_shows_no_drift(stack):
    result = inspect_stack(ENV, TARGET)
    assert result.drift.empty, result.drift.to_string()
    assert len(result.inventory) == len(stack.resources())
    assert set(result.inventory.status) == {"created"}
    assert result.history.operation.iloc[-1] == "deploy"
    assert result.outputs["vpc_id"].startswith("vpc-")
    png = result.topology_path
    assert png.stat().st_size > 20_000 and png.with_suffix(".svg").is_file()
    json.dumps(result.to_dict())


def test_undeployed_stack_is_an_operation_failure(stack):
    with pytest.raises(OperationFailed) as info:
        verify(ENV, TARGET, ["suffix=never"])
    assert info.value.exit_code == 3 and "tap deploy --env dev" in info.value.hint


# -- drift injected out of band ------------------------------------------------------------
@dataclass
class Drifted:
    report: VerifyReport
    inspection: Inspection
    password: str


@pytest.fixture(scope="module")
def drifted(stack) -> Drifted:
    """The five drifts of the issue, plus the database password copied into a variable whose
    name does not give it away; then one verify and one inspect."""
    password = inject_drift(stack)
    return Drifted(verify(ENV, TARGET), inspect_stack(ENV, TARGET), password)


# drift -> (failing check id, text in its actual, drift resource, drift property, live value)
DRIFTS = {
    "versioning suspended": ("s3.versioning", "Suspended", "transaction-logs-versioning-dev",
                             "versioningConfiguration.status", "Suspended"),
    "public access block removed": ("s3.public-access-block", "none",
                                    "transaction-logs-pab-dev", "blockPublicAcls", "false"),
    "security group open": ("sg.no-world-ingress", "tcp 5432 from 0.0.0.0/0", "db-sg-dev",
                            "ingress from 0.0.0.0/0", "tcp 5432 from 0.0.0.0/0"),
    "lambda variable changed": ("lambda.secret-ref", "secret:someone-else", "payment-fn-dev",
                                "environment.variables.DB_SECRET_ARN", "secret:someone-else"),
    "rotation disabled": ("secret.rotation", "disabled", "db-app-credentials-dev",
                          "rotationEnabled", "false"),
}


@pytest.mark.parametrize("drift", DRIFTS)
def test_drift_caught_by_verify_and_inspect(drifted, drift):
    check_id, actual, resource, prop, live = DRIFTS[drift]
    checks = drifted.report.checks
    failing = checks[(checks.id == check_id) & (checks.status == "fail")]
    assert failing.actual.str.contains(actual, regex=False).any(), checks.to_string()
    rows = drifted.inspection.drift
    row = rows[(rows.resource == resource) & (rows.property == prop)]
    assert row.live.str.contains(live, regex=False).any(), rows.to_string()


def test_only_the_injected_drift_fails(drifted):
    failed = set(drifted.report.checks.query("status == 'fail'").id)
    assert failed == {"s3.versioning", "s3.public-access-block", "sg.no-world-ingress",
                      # the 0.0.0.0/0 rule on 5432 also fails the internet-ingress controls
                      "sg.internet",
                      "sg.db-ingress", "lambda.secret-ref", "lambda.no-password",
                      "secret.rotation",
                      # rotation off: SecretsManager.4 (rotated within 90 days) fails with it
                      "secret.rotated-recently",
                      # the handler is pointed at a secret ARN that does not exist
                      "payment.synthetic"}
    assert drifted.report.aws_calls == sum(EXPECTED_CALLS.values())


def test_password_in_a_variable_is_caught_and_never_shown(drifted):
    checks = drifted.report.checks
    leak = checks[(checks.id == "lambda.no-password") & (checks.status == "fail")]
    assert list(leak.actual) == ["password in DB_CONN"]
    rows = drifted.inspection.drift
    assert list(rows[rows.property == "environment.variables.DB_CONN"].live) == ["***"]
    for data in (drifted.report.to_dict(), drifted.inspection.to_dict()):
        assert drifted.password not in json.dumps(data)


# -- controls judged as defined, on hand-made facts (no stack needed) --------------------------
def _judge(env: str, facts, **outputs):
    from tap_lib.ops.checks import Declared
    from tap_lib.ops.verify import run_checks

    base = {"rds_cluster_id": f"tapstack-payments-{env}", "kms_key_arn": "arn:key",
            "lambda_function_name": "pay", "rotation_function_name": "rot"}
    checks = run_checks(Declared(settings_for(env), {**base, **outputs}), facts)
    return {r["id"] if r["id"] not in ("logs.kms", "logs.retention", "lambda.env-cmk",
                                       "iam.trust-scoped") else f"{r['id']} {r['resource']}":
            r for r in checks.to_dict("records")}


def _facts(deletion_protection=False, backups=1, zones=("eu-west-2a",), iam=True,
           exports=("postgresql",), master=None):
    from datetime import datetime, timezone

    from tap_lib.ops.facts import Facts

    now = datetime.now(timezone.utc)
    return Facts(
        cluster={"DeletionProtection": deletion_protection, "BackupRetentionPeriod": backups,
                 "IAMDatabaseAuthenticationEnabled": iam,
                 "EnabledCloudwatchLogsExports": list(exports)},
        instances=[{"DBInstanceIdentifier": f"i{n}", "AvailabilityZone": z}
                   for n, z in enumerate(zones)],
        secret={"Name": "app", "RotationEnabled": True,
                "RotationRules": {"AutomaticallyAfterDays": 30}, "LastRotatedDate": now},
        master_secret=master if master is not None else {
            "Name": "rds!cluster-1", "RotationEnabled": True,
            "RotationRules": {"AutomaticallyAfterDays": 7}, "CreatedDate": now},
        functions={"pay": {"Configuration": {"KMSKeyArn": "arn:key", "Role": "arn:r/pay-role"}},
                   "rot": {"Configuration": {"Role": "arn:r/rot-role"}}},
        log_groups={"/aws/lambda/pay": {"kmsKeyId": "arn:key", "retentionInDays": 14}},
        roles={"pay-role": {"AssumeRolePolicyDocument": {"Statement": [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}}}]}},
               "rot-role": {"AssumeRolePolicyDocument": {"Statement": [{
                   "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}]}}})


def test_rds7_fails_on_prod_facts_and_is_excepted_on_dev_never_passed():
    """Today's verify passed dev's RDS.7 as "expected false = actual false"."""
    dev = _judge("dev", _facts())
    assert (dev["rds.deletion-protection"]["control"], dev["rds.deletion-protection"]["status"]
            ) == ("RDS.7", "excepted")
    prod = _judge("prod", _facts(deletion_protection=False, backups=14,
                                 zones=("eu-west-2a", "eu-west-2b", "eu-west-2c")))
    assert prod["rds.deletion-protection"]["status"] == "fail"


def test_rds11_needs_seven_days_or_the_declared_more():
    assert _judge("dev", _facts(backups=1))["rds.backups"]["status"] == "excepted"
    assert _judge("prod", _facts(backups=7))["rds.backups"]["status"] == "fail"   # declares 14
    assert _judge("prod", _facts(backups=14))["rds.backups"]["status"] == "pass"


def test_master_secret_is_judged_for_rotation():
    ok = _judge("prod", _facts(backups=14))
    assert ok["secret.master-rotation"]["status"] == "pass"
    assert ok["secret.master-rotated-recently"]["control"] == "SecretsManager.4"
    off = _judge("prod", _facts(master={"Name": "rds!cluster-1", "RotationEnabled": False}))
    assert off["secret.master-rotation"]["status"] == "fail"
    assert off["secret.master-rotated-recently"]["actual"] == "rotation disabled"
    from tap_lib.ops.facts import Facts
    gone = _judge("prod", Facts(cluster={}))
    assert gone["secret.master-managed"]["status"] == "fail"


def test_zone_spread_is_checked_where_there_is_more_than_one_instance():
    assert "rds.zone-spread" not in _judge("dev", _facts())
    same = _judge("staging", _facts(zones=("eu-west-2a", "eu-west-2a")))
    assert (same["rds.zone-spread"]["control"], same["rds.zone-spread"]["status"]) == (
        "RDS.15", "fail")
    spread = _judge("staging", _facts(zones=("eu-west-2a", "eu-west-2b")))
    assert spread["rds.zone-spread"]["status"] == "pass"


def test_log_exports_iam_auth_keys_and_trust_are_judged():
    bad = _judge("prod", _facts(iam=False, exports=()))
    assert bad["rds.log-exports"]["status"] == bad["rds.iam-auth"]["status"] == "fail"
    assert bad["lambda.env-cmk pay"]["status"] == "pass"
    assert bad["lambda.env-cmk rot"]["actual"] == "Lambda's own key"
    assert bad["lambda.env-cmk rot"]["status"] == "fail"
    assert bad["logs.retention /aws/lambda/pay"]["status"] == "fail"       # prod: no exception
    assert bad["logs.kms /aws/lambda/pay"]["status"] == "pass"
    assert bad["iam.trust-scoped pay-role"]["status"] == "pass"
    assert bad["iam.trust-scoped rot-role"]["actual"] == "unscoped: lambda.amazonaws.com"
    dev = _judge("dev", _facts())
    assert dev["logs.retention /aws/lambda/pay"]["status"] == "excepted"
