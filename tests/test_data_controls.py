"""The data side's controls (issue 19): enhanced monitoring (RDS.6), TLS enforced by the
cluster's parameter group (RDS.38), AWS Backup over the cluster, the functions' dead-letter
queue (and SQS.1 on it), the application secret's resource policy. Preflight judges the
synthesized program, verify the live (emulated) stack, both under the same control ids; a
hand-broken resource fails verify with its control id."""
from __future__ import annotations

import json

import pytest

from tap_lib.config import load_settings
from tap_lib.engines.synth import synthesize
from tap_lib.errors import ConfigError
from tap_lib.ops.preflight import run_preflight
from tap_lib.ops.preflight.data_controls import (judge_plan_rules, judge_secret_policy,
                                                 judge_tls)
from tap_lib.program.policies import deployer_principal, secret_policy

from helpers import make_engine

MINE = ("TAP108", "TAP109", "TAP123", "TAP124", "TAP143", "TAP161", "TAP162", "TAP163")
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/tapstack-payment-prod"


def _mine(report):
    f = report.findings
    return f[f["rule"].str.split().str[0].isin(MINE)]


# -- preflight on the synthesized program ----------------------------------------------------
def test_prod_program_meets_every_data_control():
    assert _mine(run_preflight(load_settings("prod"))).empty


def test_dev_differences_are_excepted_never_passed():
    """dev turns monitoring off and keeps backups 7 days: both are findings its policy
    exceptions cover (excepted), not silently absent."""
    f = _mine(run_preflight(load_settings("dev")))
    assert set(zip(f["rule"].str.split().str[0], f["severity"])) == {
        ("TAP108", "excepted"), ("TAP163", "excepted")}


@pytest.mark.parametrize("override, rule", [
    ("db.monitoring_interval_s=0", "TAP108"),
    ("backup.retention_days=7", "TAP163"),
])
def test_prod_without_the_control_is_an_error(override, rule):
    f = _mine(run_preflight(load_settings("prod", [override])))
    assert set(f["rule"].str.split().str[0]) == {rule}   # one per instance for TAP108
    assert set(f["severity"]) == {"error"}


def _broken(rule_id, resource, program):
    import broken_programs as bp   # tests/broken_programs.py: the program with one change

    return pytest.param(rule_id, resource, program(bp), id=f"{rule_id}-{resource}")


@pytest.mark.parametrize("rule_id, resource, program", [
    _broken("TAP109", "aurora-cluster-prod", lambda bp: bp.variant(bp.rewrite(
        "rds", "ClusterParameterGroup", lambda n, kw: {**kw, "parameters": []}))),
    _broken("TAP123", "payment-fn-prod", lambda bp: bp.variant(bp.rewrite(
        "lambda_", "Function", lambda n, kw: bp._without(kw, "dead_letter_config")))),
    _broken("TAP124", "payment-dlq-prod", lambda bp: bp.variant(bp.rewrite(
        "sqs", "Queue", lambda n, kw: bp._without(kw, "kms_master_key_id")))),
    _broken("TAP143", "db-app-credentials-prod", lambda bp: bp.variant(
        bp.drop("secretsmanager", "SecretPolicy"))),
    _broken("TAP161", "aurora-cluster-prod", lambda bp: bp.variant(bp.drop("backup",
                                                                           "Selection"))),
    _broken("TAP162", "backup-vault-prod", lambda bp: bp.variant(bp.rewrite(
        "backup", "Vault", lambda n, kw: bp._without(kw, "kms_key_arn")))),
    _broken("TAP108", "rds-monitoring-role-prod", lambda bp: bp.variant(
        bp.drop("iam", "RolePolicyAttachment"))),
])
def test_each_rule_catches_its_broken_program(rule_id, resource, program):
    """One change to the real program (tests/broken_programs.py) and the rule names it."""
    f = _mine(run_preflight(load_settings("prod"), program=program))
    hits = f[(f["rule"].str.split().str[0] == rule_id) & (f["resource"] == resource)]
    assert list(hits["severity"]) and set(hits["severity"]) == {"error"}, f.to_string()


def test_parameter_group_family_follows_the_engine_version():
    s = load_settings("prod", ["db.engine_version=16.4"])
    group, = synthesize(s).of_type("aws:rds/clusterParameterGroup:ClusterParameterGroup")
    assert group.inputs["family"] == "aurora-postgresql16"
    assert {"name": "rds.force_ssl", "value": "1", "applyMethod": "pending-reboot"} in \
        group.inputs["parameters"]


def test_monitoring_role_is_scoped_to_the_account():
    syn = synthesize(load_settings("prod"))
    role = next(r for r in syn.of_type("aws:iam/role:Role") if "rds-monitoring" in r.name)
    stmt, = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert stmt["Principal"] == {"Service": "monitoring.rds.amazonaws.com"}
    assert stmt["Condition"]["StringEquals"]["aws:SourceAccount"]
    instances = syn.of_type("aws:rds/clusterInstance:ClusterInstance")
    assert len({i.inputs["availabilityZone"] for i in instances}) == 3   # item 5: spread


def test_tls_judgement():
    assert judge_tls("aurora-postgresql15", "15.6", "1") is None
    assert "default parameter group" in judge_tls(None, "15.6", None)
    assert "aurora-postgresql16" in judge_tls("aurora-postgresql15", "16.4", "1")
    assert "not 1" in judge_tls("aurora-postgresql15", "15.6", "0")


def test_plan_judgement():
    assert judge_plan_rules([{"schedule": "cron(0 3 * * ? *)", "delete_after": 35}]) is None
    assert judge_plan_rules([{"schedule": "cron(0 3 * * ? *)", "delete_after": None}]) is None
    assert "no daily rule" in judge_plan_rules(
        [{"schedule": "cron(0 3 ? * SUN *)", "delete_after": 35}])
    assert "7 days" in judge_plan_rules([{"schedule": "cron(0 3 * * ? *)", "delete_after": 7}])


def _deny(principals, **extra_condition):
    doc = json.loads(secret_policy("arn:aws:secretsmanager:x", principals))
    doc["Statement"][0]["Condition"].update(extra_condition)
    return doc


def test_secret_policy_judgement():
    assert judge_secret_policy(json.loads(secret_policy("s", [ROLE])), ACCOUNT) is None
    assert judge_secret_policy(None, ACCOUNT) == "no resource policy"
    assert "outside the account" in judge_secret_policy(
        _deny([ROLE, "arn:aws:iam::999999999999:role/x"]), ACCOUNT)
    assert "outside the account" in judge_secret_policy(
        _deny([f"arn:aws:iam::{ACCOUNT}:role/*"]), ACCOUNT)
    # Prowler accepts no other condition operator beside the principal list
    assert "no Deny" in judge_secret_policy(
        _deny([ROLE], Bool={"aws:SecureTransport": "false"}), ACCOUNT)
    allow_all = {"Statement": [*_deny([ROLE])["Statement"],
                               {"Effect": "Allow", "Principal": "*", "Action": "*"}]}
    assert "Allow" in judge_secret_policy(allow_all, ACCOUNT)
    assert "does not use" in judge_secret_policy(_deny([ROLE]), ACCOUNT, allowed=set())


def test_deployer_principal_turns_a_session_into_its_role():
    assert deployer_principal(f"arn:aws:sts::{ACCOUNT}:assumed-role/Deployer/ci-123") == \
        f"arn:aws:iam::{ACCOUNT}:role/Deployer"
    assert deployer_principal(ROLE) == ROLE


@pytest.mark.parametrize("override, field", [
    ("db.monitoring_interval_s=7", "db.monitoring_interval_s"),
    ("backup.retention_days=0", "backup.retention_days"),
])
def test_bad_settings_are_refused_naming_the_field(override, field):
    with pytest.raises(ConfigError) as err:
        load_settings("prod", [override])
    assert field in str(err.value)


# -- verify on the sandbox --------------------------------------------------------------------
PROD = "TapStackprod"


@pytest.fixture(scope="module")
def prod(sandbox_home, signers, tmp_path_factory):
    from tap_lib.ops import stack as stack_ops

    plans_dir = tmp_path_factory.mktemp("prod-plans")
    stack_ops.deploy("prod", plan=signers.approved("prod", plans_dir / "create.json"),
                     confirm=PROD)
    yield make_engine(env="prod")


def _verify():
    from tap_lib.ops.verify import verify

    return verify("prod", live=False)


def _rows(report, control):
    c = report.checks
    return c[c["control"] == control]


DATA_CONTROLS = ("RDS.6", "RDS.38", "SQS.1", "backup_vaults_encrypted",
                 "tap:backup-plan-retention", "rds_cluster_protected_by_backup_plan",
                 "awslambda_function_no_dead_letter_queue",
                 "secretsmanager_has_restrictive_resource_policy", "RDS.15", "RDS.11")


def test_prod_passes_the_data_controls_and_names_what_the_sandbox_cannot_show(prod):
    report = _verify()
    print(report.to_dict()["summary"], report.checks[report.checks["status"] != "pass"]
          .to_string())                                   # shown with -s: the whole picture
    c = report.checks[report.checks["control"].isin(DATA_CONTROLS)]
    assert set(c["control"]) == set(DATA_CONTROLS)
    assert not (c["status"] == "fail").any(), c[c["status"] == "fail"].to_string()
    # emulator gaps read `unverified` with a note, never pass
    gaps = c[c["status"] == "unverified"]
    assert set(gaps["id"]) <= {"backup.cluster-protected", "lambda.dead-letter-queue",
                               "rds.monitoring-role"}
    assert any("not verifiable on the sandbox" in n for n in report.notes)
    spread = c[c["id"] == "rds.zone-spread"]
    assert list(spread["status"]) == ["pass"]        # item 5: three instances, three zones


@pytest.mark.parametrize("control, break_it, mend_it", [
    ("RDS.6",
     lambda c, o: c("rds").modify_db_instance(DBInstanceIdentifier=o["rds_cluster_id"] + "-2",
                                              MonitoringInterval=0, ApplyImmediately=True),
     lambda c, o, r: c("rds").modify_db_instance(
         DBInstanceIdentifier=o["rds_cluster_id"] + "-2", MonitoringInterval=60,
         MonitoringRoleArn=r, ApplyImmediately=True)),
    ("secretsmanager_has_restrictive_resource_policy",
     lambda c, o: c("secretsmanager").delete_resource_policy(SecretId=o["db_secret_arn"]),
     None),
    ("RDS.38",
     lambda c, o: c("rds").modify_db_cluster_parameter_group(
         DBClusterParameterGroupName=c("rds").describe_db_clusters(
             DBClusterIdentifier=o["rds_cluster_id"])["DBClusters"][0]["DBClusterParameterGroup"],
         Parameters=[{"ParameterName": "rds.force_ssl", "ParameterValue": "0",
                      "ApplyMethod": "pending-reboot"}]),
     None),
])
def test_a_hand_broken_resource_fails_verify_with_its_control(prod, control, break_it, mend_it):
    clients, outputs = prod.clients(), prod.outputs()
    role = clients("rds").describe_db_instances(
        DBInstanceIdentifier=outputs["rds_cluster_id"] + "-2")["DBInstances"][0].get(
        "MonitoringRoleArn")
    break_it(clients, outputs)
    rows = _rows(_verify(), control)
    assert "fail" in set(rows["status"]), rows.to_string()
    if mend_it:
        mend_it(clients, outputs, role)
        assert "fail" not in set(_rows(_verify(), control)["status"])
