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

# One fetch per resource kind, whatever the number of checks. EC2 reads the two DNS attributes
# one per call (its API has no batch form); Lambda reads each of the stack's two functions.
EXPECTED_CALLS = Counter({
    "ec2.DescribeVpcs": 1, "ec2.DescribeVpcAttribute": 2, "ec2.DescribeFlowLogs": 1,
    "ec2.DescribeSubnets": 1, "ec2.DescribeNatGateways": 1, "ec2.DescribeAddresses": 1,
    "ec2.DescribeRouteTables": 1, "ec2.DescribeSecurityGroups": 1,
    "rds.DescribeDBClusters": 1, "rds.DescribeDBInstances": 1,
    "secretsmanager.DescribeSecret": 1, "secretsmanager.BatchGetSecretValue": 1,
    "lambda.GetFunction": 2,
    "s3.GetBucketVersioning": 1, "s3.GetBucketEncryption": 1, "s3.GetPublicAccessBlock": 1,
    "s3.GetBucketPolicy": 1, "s3.GetBucketLifecycleConfiguration": 1, "s3.GetBucketTagging": 1,
})


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
    assert report.passed == len(report.checks) >= 40
    assert set(report.checks.control) >= {"RDS.2", "RDS.27", "S3.5", "S3.8", "Lambda.5",
                                          "EC2.6", "SecretsManager.1"}


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
    assert report.aws_calls == sum(EXPECTED_CALLS.values()) == 21
    assert report.to_dict()["summary"] == {"passed": report.passed, "failed": 0,
                                           "aws_calls": 21}
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
                      "sg.db-ingress", "lambda.secret-ref", "lambda.no-password",
                      "secret.rotation",
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
