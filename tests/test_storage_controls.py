"""The storage side's remaining controls (issue 19), judged as Prowler 5.46 judges them: the
database's instances, cluster and snapshots (RDS.1/3/4/5/8/13/16/18/23/24/25 and Prowler's
rds_* checks), the buckets (S3.3/6/7/20 and s3_*), the secrets and the queue not public,
secrets in use, AWS Backup's plan, vault and report plan. Preflight judges the synthesized
program and verify the live facts with the same table of judgements; an excepted finding is
never a pass."""
from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import pytest

from tap_lib.config import load_settings
from tap_lib.ops.checks import Declared
from tap_lib.ops.facts import BucketFacts, Facts
from tap_lib.ops.hardening_storage import StorageFacts, report_plan_name, storage_checks
from tap_lib.ops.preflight import run_preflight
from tap_lib.ops.preflight.rds_controls import (
    ClusterView,
    InstanceView,
    judge_certificate,
    judge_cluster_port,
    judge_extended_support,
    judge_instance_multi_az,
    judge_snapshots_public,
)
from tap_lib.ops.preflight.storage_controls import (
    BucketView,
    judge_cross_account,
    judge_not_public,
    judge_public_access,
    judge_public_list,
    judge_public_write,
    judge_replication,
    judge_secret_used,
)

ACCOUNT = "123456789012"
OTHER = "210987654321"
NOW = dt.datetime(2026, 12, 3, tzinfo=dt.timezone.utc)
CLOSED = {"blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True,
          "restrictPublicBuckets": True}
OPEN = {k: False for k in CLOSED}
PUBLIC_PUT = {"Sid": "Anyone", "Effect": "Allow", "Principal": "*", "Action": "s3:PutObject",
              "Resource": "arn:aws:s3:::b/*"}


def _mine(report):
    f = report.findings
    return f[f["rule"].str.match(r"TAP4\d\d")]


def bucket(**kw) -> BucketView:
    base = dict(name="b", logical="b-prod", account=ACCOUNT, region="eu-west-2",
                public_access_block=CLOSED, statements=[], grants=[], versioning="Enabled",
                mfa_delete=None, encryption=["aws:kms"], notifications=[], replication=[])
    return BucketView(**{**base, **kw})


# -- the judgements, on plain views ------------------------------------------------------------
def test_public_write_is_judged_past_the_block_only():
    """S3.3 as Prowler: a public PutObject statement fails only where the public access block
    does not restrict public buckets; an ACL write grant only where ACLs are not ignored."""
    assert judge_public_write(bucket(statements=[PUBLIC_PUT])) is None
    assert "lets anyone write" in judge_public_write(bucket(public_access_block=OPEN,
                                                            statements=[PUBLIC_PUT]))
    read_only = {**PUBLIC_PUT, "Action": "s3:GetObject"}
    assert judge_public_write(bucket(public_access_block=OPEN, statements=[read_only])) is None
    assert judge_public_access(bucket(public_access_block=OPEN, statements=[read_only]))
    grant = [("http://acs.amazonaws.com/groups/global/AllUsers", "READ")]
    assert judge_public_list(bucket(public_access_block=OPEN, grants=grant)) == \
        "ACL grants AllUsers READ"
    assert judge_public_list(bucket(grants=grant)) is None


def test_a_condition_on_the_account_makes_star_not_public():
    scoped = {**PUBLIC_PUT, "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}
    foreign = {**PUBLIC_PUT, "Condition": {"StringEquals": {"aws:SourceAccount": OTHER}}}
    assert judge_not_public([scoped], ACCOUNT) is None
    assert judge_not_public([foreign], ACCOUNT) == "statement Anyone allows everyone"
    assert judge_not_public(None, ACCOUNT) is None          # no policy: not public


def test_cross_account_principals():
    """S3.6/S3.7 (Prowler's s3_bucket_cross_account_access): another account's principal
    fails, this account's and a service's do not."""
    def allow(principal):
        return {"Effect": "Allow", "Principal": principal, "Action": "s3:GetObject"}
    assert judge_cross_account(bucket(statements=[allow({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}),
                                                  allow({"Service": "logging.s3.amazonaws.com"})
                                                  ])) is None
    assert OTHER in judge_cross_account(bucket(statements=[allow({"AWS": OTHER})]))
    assert "*" in judge_cross_account(bucket(statements=[allow("*")]))


def test_replication_must_leave_the_region():
    same = [{"status": "Enabled", "destination": "arn:aws:s3:::c", "region": "eu-west-2"}]
    other = [{"status": "Enabled", "destination": "arn:aws:s3:::c", "region": "eu-west-1"}]
    assert judge_replication(bucket()) == "no replication rule"
    assert judge_replication(bucket(replication=same)) == "replicates within its own region"
    assert judge_replication(bucket(replication=other)) is None
    assert judge_replication(bucket(replication=other, versioning="Suspended"))


def test_secret_use_and_certificates_and_ports():
    assert judge_secret_used(None, NOW) == "never accessed"
    assert judge_secret_used(NOW - dt.timedelta(days=91), NOW) == "last accessed 91 days ago"
    assert judge_secret_used(NOW - dt.timedelta(days=3), NOW) is None
    view = InstanceView("i", "i", "aurora-postgresql", ["a", "b"], None, "vpc-1", 5432,
                        "tapadmin", True, True, "15.6", ["15.6"], ca="rds-ca-2019")
    assert judge_certificate(view, NOW) == "CA rds-ca-2019 expired"
    assert judge_certificate(InstanceView(**{**view.__dict__, "ca": "rds-ca-rsa2048-g1"}),
                             NOW) is None
    unknown = InstanceView(**{**view.__dict__, "ca": "rds-ca-default"})
    assert judge_certificate(unknown, NOW).startswith("certificate details not reported")
    assert judge_instance_multi_az(view) is None
    assert "1 zone" in judge_instance_multi_az(InstanceView(**{**view.__dict__,
                                                               "zones": ["a"]}))
    assert judge_extended_support(InstanceView(**{
        **view.__dict__, "lifecycle": "open-source-rds-extended-support"}))
    cluster = ClusterView("c", "c", "aurora-postgresql", 5432, "tapadmin", True,
                          [{"id": "s1", "encrypted": True, "public": True}])
    assert judge_cluster_port(cluster) == "port 5432 is aurora-postgresql's default"
    assert judge_cluster_port(ClusterView(**{**cluster.__dict__, "port": 6432})) is None
    assert judge_snapshots_public(cluster) == "public snapshot(s): s1"


# -- preflight on the synthesized program --------------------------------------------------------
def test_prod_meets_every_control_or_excepts_it_in_its_file():
    """prod: no error; what it does not meet is excepted by params/prod.yaml, named there."""
    settings = load_settings("prod")
    f = _mine(run_preflight(settings))
    assert set(f["severity"]) == {"excepted"}, f.to_string()
    excepted = {e.control for e in settings.exceptions}
    assert {c for r in f["rule"] for c in r.split()[1].split("/")} <= excepted


def test_dev_differs_on_zones_and_deletion_protection_as_excepted():
    f = _mine(run_preflight(load_settings("dev")))
    rules = set(f["rule"].str.split().str[0])
    assert {"TAP432", "TAP433"} <= rules             # RDS.5 and RDS.8: one instance, no DP
    assert set(f["severity"]) == {"excepted"}


def test_a_non_default_port_meets_the_port_controls():
    f = _mine(run_preflight(load_settings("prod", ["db.port=6432"])))
    assert not f["rule"].str.match(r"TAP43[6]|TAP441").any(), f.to_string()


def _broken(rule_id, resource, program):
    import broken_programs as bp  # tests/broken_programs.py: the program with one change

    return pytest.param(rule_id, resource, program(bp), id=f"{rule_id}-{resource}")


def _with_statement(statement):
    def change(name, kw):
        if not name.startswith("transaction-logs-policy"):
            return kw
        return {**kw, "policy": kw["policy"].apply(lambda p: json.dumps(
            {**json.loads(p), "Statement": json.loads(p)["Statement"] + [statement]}))}
    return change


@pytest.mark.parametrize("rule_id, resource, program", [
    _broken("TAP401", "transaction-logs-prod", lambda bp: bp.variant(
        bp.rewrite("s3", "BucketPolicy", _with_statement(PUBLIC_PUT)),
        bp.rewrite("s3", "BucketPublicAccessBlock",
                   lambda n, kw: {**kw, "restrict_public_buckets": False}))),
    _broken("TAP404", "transaction-logs-prod", lambda bp: bp.variant(
        bp.rewrite("s3", "BucketPolicy", _with_statement(
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"},
             "Action": "s3:GetObject", "Resource": "*"})))),
    _broken("TAP407", "access-logs-prod", lambda bp: bp.variant(bp.rewrite(
        "s3", "BucketServerSideEncryptionConfiguration",
        lambda n, kw: {**kw, "rules": []} if n.startswith("access-logs") else kw))),
    _broken("TAP431", "aurora-instance-0-prod", lambda bp: bp.UNENCRYPTED_CLUSTER),
    _broken("TAP445", "aurora-cluster-prod", lambda bp: bp.UNENCRYPTED_CLUSTER),
    _broken("TAP434", "aurora-instance-1-prod", lambda bp: bp.variant(bp.rewrite(
        "rds", "ClusterInstance", lambda n, kw: {**kw, "auto_minor_version_upgrade": False}))),
    _broken("TAP442", "aurora-cluster-prod", lambda bp: bp.variant(bp.rewrite(
        "rds", "Cluster", lambda n, kw: {**kw, "copy_tags_to_snapshot": False}))),
    _broken("TAP447", "aurora-cluster-prod", lambda bp: bp.variant(bp.rewrite(
        "rds", "Cluster", lambda n, kw: {**kw, "auto_minor_version_upgrade": False}))),
    _broken("TAP443", "aurora-cluster-prod", lambda bp: bp.variant(bp.rewrite(
        "rds", "Cluster", lambda n, kw: {**kw, "master_username": "postgres"}))),
    _broken("TAP437", "aurora-instance-2-prod", lambda bp: bp.variant(bp.rewrite(
        "rds", "Cluster", lambda n, kw: {**kw, "master_username": "admin"}))),
    _broken("TAP439", "aurora-instance-0-prod", lambda bp: bp.variant(bp.rewrite(
        "rds", "Cluster", lambda n, kw: bp._without(kw, "engine_lifecycle_support")))),
    _broken("TAP440", "aurora-instance-0-prod", lambda bp: bp.variant(bp.rewrite(
        "rds", "ClusterInstance", lambda n, kw: {**kw, "ca_cert_identifier": "rds-ca-2019"}))),
    _broken("TAP413", "payment-dlq-prod", lambda bp: bp.variant(bp.rewrite(
        "sqs", "Queue", lambda n, kw: {**kw, "policy": json.dumps({"Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "sqs:*", "Resource": "*"}]})}))),
])
def test_each_rule_catches_its_broken_program(rule_id, resource, program):
    """One change to the real program (tests/broken_programs.py) and the rule names it."""
    f = _mine(run_preflight(load_settings("prod"), program=program))
    hits = f[(f["rule"].str.split().str[0] == rule_id) & (f["resource"] == resource)]
    assert list(hits["severity"]) and set(hits["severity"]) == {"error"}, f.to_string()


# -- verify on live facts ------------------------------------------------------------------------
def _declared(env="prod"):
    outputs = {"s3_bucket_name": "tx", "s3_access_log_bucket_name": "logs",
               "rds_cluster_id": "c", "kms_key_arn": f"arn:aws:kms:eu-west-2:{ACCOUNT}:key/k"}
    return Declared(load_settings(env), outputs)


def _facts(*, on_sandbox=False, secret_policy=None, last_accessed=NOW, report_plans=None,
           d=None):
    tx = BucketFacts(versioning="Enabled", encryption=[
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}],
        public_access_block={k[:1].upper() + k[1:]: v for k, v in CLOSED.items()},
        policy={"Statement": []})
    cluster = {"DBClusterIdentifier": "c", "Engine": "aurora-postgresql", "Port": 5432,
               "MasterUsername": "tapadmin", "CopyTagsToSnapshot": True,
               "DeletionProtection": True, "EngineVersion": "15.6"}
    instances = [{"DBInstanceIdentifier": f"c-{n}", "AvailabilityZone": z,
                  "AutoMinorVersionUpgrade": True, "DBSubnetGroup": {"VpcId": "vpc-1"},
                  "Endpoint": {"Port": 5432}, "StorageEncrypted": True,
                  "CACertificateIdentifier": "rds-ca-default"}
                 for n, z in ((1, "eu-west-2a"), (2, "eu-west-2b"))]
    secret = {"Name": "app", "LastAccessedDate": last_accessed}
    backup_plan = (d or _declared()).settings.physical_names(ACCOUNT).backup_plan
    data = SimpleNamespace(
        account=ACCOUNT, on_sandbox=on_sandbox, secret_policy=secret_policy,
        parameter_group={"DBParameterGroupFamily": "aurora-postgresql15"}, force_ssl="1",
        master_secret_policy=None, queue={"QueueArn": "q"}, queue_arn="q",
        plan={"BackupPlanName": backup_plan}, vault={"BackupVaultName": "v"},
        storage=StorageFacts(
            buckets={n: {"mfa_delete": "Disabled", "grants": [], "notifications": [],
                         "replication": []} for n in ("tx", "logs")},
            snapshots=[{"id": "snap", "encrypted": True, "public": False}],
            offered=["15.6"], report_plans=report_plans if report_plans is not None else
            [{"ReportPlanName": report_plan_name(backup_plan)}]))
    return Facts(cluster=cluster, instances=instances, secret=secret, bucket=tx,
                 access_logs=tx, data=data)


def _rows(checks):
    return {(c.id, c.resource): c for c in checks}


def test_verify_judges_live_facts_with_the_same_table():
    rows = _rows(storage_checks(_declared(), _facts()))
    assert rows[("rds.instance-multi-az", "c-1")].status == "pass"
    assert rows[("rds.instance-port", "c-2")].status == "fail"
    assert rows[("rds.cluster-port", "c")].actual == "port 5432 is aurora-postgresql's default"
    assert rows[("s3.mfa-delete", "tx")].status == "fail"
    assert rows[("s3.public-write", "logs")].status == "pass"
    assert rows[("secret.used", "app")].status == "pass"
    assert rows[("backup.report-plan", report_plan_name(
        _declared().settings.physical_names(ACCOUNT).backup_plan))].status == "pass"
    # AWS reports no certificate details for an unknown CA: a failure there, not a pass
    assert rows[("rds.certificate", "c-1")].status == "fail"
    assert all(c.control for c in rows.values())


def test_what_the_emulator_cannot_report_is_unverified_on_the_sandbox():
    rows = _rows(storage_checks(_declared(), _facts(on_sandbox=True, last_accessed=None)))
    assert rows[("secret.used", "app")].status == "unverified"
    assert rows[("rds.certificate", "c-1")].status == "unverified"
    off_sandbox = _rows(storage_checks(_declared(), _facts(last_accessed=None)))
    assert off_sandbox[("secret.used", "app")].actual == "never accessed"


def test_without_a_plan_there_is_no_plan_and_no_report_plan_to_judge():
    """backup_plans_exist fails; Prowler judges report plans only where a plan exists."""
    facts = _facts()
    facts.data.plan = None
    rows = [c for c in storage_checks(_declared(), facts) if c.id.startswith("backup.")]
    assert [(c.id, c.status) for c in rows] == [("backup.plan-exists", "fail"),
                                                ("backup.vault-exists", "pass")]


def test_a_public_secret_policy_and_a_missing_report_plan_fail():
    policy = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
                             "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
    rows = _rows(storage_checks(_declared(), _facts(secret_policy=policy, report_plans=[])))
    assert rows[("secret.not-public", "app")].status == "fail"
    report = next(c for c in rows.values() if c.id == "backup.report-plan")
    assert (report.status, report.actual) == ("fail", "no AWS Backup report plan")


def test_mfa_delete_is_read_once_with_versioning_and_asked_only_for_an_unread_bucket():
    """facts._fetch_bucket keeps MFADelete beside the versioning status (BucketFacts.mfa_delete),
    so verify's storage checks ask S3 for versioning again only for a bucket facts did not
    read."""
    from botocore.exceptions import ClientError

    from tap_lib.ops.facts import _fetch_bucket
    from tap_lib.ops.hardening_storage import _bucket_extra

    calls: list[str] = []

    class S3:
        def __getattr__(self, op):
            def call(**kw):
                calls.append(op)
                if op == "get_bucket_versioning":
                    return {"Status": "Enabled", "MFADelete": "Enabled"}
                if op in ("get_bucket_acl", "get_bucket_notification_configuration"):
                    return {}
                raise ClientError({"Error": {"Code": "NoSuchThing"}}, op)
            return call

    s3 = S3()
    read = _fetch_bucket(s3, "b", BucketFacts())
    assert (read.versioning, read.mfa_delete) == ("Enabled", "Enabled")
    calls.clear()
    assert _bucket_extra(s3, "b", read)["mfa_delete"] == "Enabled"
    assert "get_bucket_versioning" not in calls
    assert _bucket_extra(s3, "b", BucketFacts(mfa_delete=None))["mfa_delete"] is None
    calls.clear()
    assert _bucket_extra(s3, "other", None)["mfa_delete"] == "Enabled"
    assert calls.count("get_bucket_versioning") == 1
