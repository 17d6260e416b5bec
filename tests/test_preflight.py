"""Preflight: every rule fires on its broken variant, and the shipped environments are clean.

Broken variants are the real program with one thing changed (tests/broken_programs.py), a broken
Pulumi.yaml, or an environment file override - the seed's nine failures and the hardening
regressions tap must catch before anything is deployed.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import broken_programs as bp
from tap_lib.config import Settings, load_settings
from tap_lib.ops.preflight import RULES, PreflightReport, run_preflight


def settings(env: str = "dev", *overrides: str) -> Settings:
    return load_settings(env, overrides, use_environ=False)


@functools.cache
def preflight(env: str = "dev", *overrides: str, program: Any = None,
              **options: Any) -> PreflightReport:
    """Preflight of an environment file (plus overrides), shared by every test that asks for the
    same run: synthesis dominates the module's run time."""
    return run_preflight(settings(env, *overrides), program=program, **options)


def rows(report: PreflightReport, rule_id: str) -> list[dict[str, Any]]:
    return [r for r in report.findings.to_dict("records") if r["rule"].split()[0] == rule_id]


def fired(report: PreflightReport, rule_id: str, resource: str, severity: str = "error") -> dict:
    """The finding of `rule_id` on `resource`; fails with the whole table otherwise."""
    for row in rows(report, rule_id):
        if row["resource"] == resource and row["severity"] == severity:
            return row
    raise AssertionError(f"{rule_id} did not report {severity} on {resource!r}:\n"
                         f"{report.findings.to_string()}")


@dataclass(frozen=True)
class Case:
    """A broken variant and the finding it must produce."""

    id: str
    rule: str
    resource: str
    program: Any = None
    env: str = "dev"
    overrides: tuple[str, ...] = ()
    severity: str = "error"
    options: dict = field(default_factory=dict)

    def report(self) -> PreflightReport:
        return preflight(self.env, *self.overrides, program=self.program, **self.options)


CASES = [
    Case("seed1-eip-vpc-true", "TAP001", "nat-eip-0-dev", bp.EIP_VPC_TRUE),
    Case("deprecated-bucket-v2", "TAP001", "transaction-logs-dev", bp.BUCKET_V2),
    Case("deprecated-bucket-argument", "TAP001", "transaction-logs-dev", bp.DEPRECATED_BUCKET_ACL),
    Case("seed3-instantiated-twice", "TAP003", "aws-eu-west-2", bp.instantiated_twice),
    Case("seed4-uppercase-cluster-id", "TAP004", "aurora-cluster-PR6329", bp.SEED_RDS_NAMES,
         overrides=("suffix=PR6329",)),
    Case("seed4-unnamed-subnet-group", "TAP004", "db-subnet-group-PR6329", bp.SEED_RDS_NAMES,
         overrides=("suffix=PR6329",)),
    Case("seed5-engine-15.3", "TAP005", "aurora-cluster-dev",
         overrides=("db.engine_version=15.3",)),
    Case("seed6-placeholder-rotation-arn", "TAP006", "db-app-credentials-rotation-dev",
         bp.PLACEHOLDER_ROTATION_ARN),
    Case("rotation-not-invokable", "TAP006", "rotation-fn-dev",
         bp.ROTATION_PERMISSION_WRONG_PRINCIPAL),
    Case("seed7-random-bucket-suffix", "TAP007", "transaction-logs-dev", bp.RANDOM_BUCKET_SUFFIX),
    Case("seed7-uppercase-bucket", "TAP007", "transaction-logs-PR6329", bp.SEED_BUCKET_NAME,
         overrides=("suffix=PR6329",)),
    Case("bucket-shared-by-stacks", "TAP007", "transaction-logs-dev", bp.SHARED_BUCKET_NAME),
    Case("seed8-provider-region", "TAP008", "aws-eu-west-2", bp.PROVIDER_IN_US_EAST_1),
    Case("seed8-target-region", "TAP008", "target", overrides=("region=eu-west-1",),
         options={"region_of_target": "eu-west-2"}),
    Case("default-provider", "TAP008", "stray-logs-dev", bp.stray_resource),
    Case("program-bug", "TAP000", "program", bp.failing_program),
    Case("public-db-instance", "TAP101", "aurora-instance-0-dev", bp.PUBLIC_DB_INSTANCE),
    Case("unencrypted-cluster", "TAP102", "aurora-cluster-dev", bp.UNENCRYPTED_CLUSTER),
    Case("prod-without-deletion-protection", "TAP103", "aurora-cluster-prod", env="prod",
         overrides=("db.deletion_protection=false",)),
    Case("prod-short-backups", "TAP104", "aurora-cluster-prod", env="prod",
         overrides=("db.backup_retention_days=3",)),
    Case("public-bucket", "TAP111", "transaction-logs-dev", bp.PUBLIC_BUCKET),
    Case("no-tls-policy", "TAP112", "transaction-logs-dev", bp.NO_TLS_POLICY),
    Case("versioning-suspended", "TAP113", "transaction-logs-dev", bp.VERSIONING_SUSPENDED),
    Case("sse-s3-managed", "TAP114", "transaction-logs-dev", bp.SSE_S3_MANAGED),
    Case("single-az-lambda", "TAP121", "payment-fn-dev", bp.SINGLE_AZ_LAMBDA),
    Case("no-flow-log", "TAP131", "vpc-dev", bp.NO_FLOW_LOG),
    Case("seed6-rotation-commented-out", "TAP141", "db-app-credentials-dev",
         bp.ROTATION_COMMENTED_OUT),
    Case("admin-policy", "TAP151", "payment-policy-dev", bp.ADMIN_POLICY),
    Case("dev-without-deletion-protection", "TAP103", "aurora-cluster-dev",
         severity="excepted"),
    Case("prod-without-log-exports", "TAP105", "aurora-cluster-prod", bp.NO_LOG_EXPORTS,
         env="prod"),
    Case("prod-without-iam-auth", "TAP106", "aurora-cluster-prod", bp.NO_IAM_AUTH, env="prod"),
    Case("prod-instances-without-zone", "TAP107", "aurora-cluster-prod", bp.UNPLACED_INSTANCES,
         env="prod"),
    Case("prod-instances-in-one-zone", "TAP107", "aurora-cluster-prod", bp.ONE_ZONE_INSTANCES,
         env="prod"),
    Case("dev-single-instance-excepted", "TAP107", "aurora-cluster-dev", severity="excepted"),
    Case("prod-master-password-unmanaged", "TAP141", "aurora-cluster-prod",
         bp.UNMANAGED_MASTER_PASSWORD, env="prod"),
    Case("prod-master-password-unmanaged-4", "TAP142", "aurora-cluster-prod",
         bp.UNMANAGED_MASTER_PASSWORD, env="prod"),
    Case("prod-rotation-every-120-days", "TAP142", "db-app-credentials-rotation-prod",
         env="prod", overrides=("secrets.rotation_days=120",)),
    Case("prod-log-group-unencrypted", "TAP132", "payment-logs-prod", bp.UNENCRYPTED_LOG_GROUP,
         env="prod"),
    Case("prod-short-log-retention", "TAP133", "payment-logs-prod", env="prod",
         overrides=("lambda.log_retention_days=30",)),
    Case("dev-short-log-retention-excepted", "TAP133", "flow-logs-dev", severity="excepted"),
    Case("prod-lambda-env-default-key", "TAP122", "payment-fn-prod", bp.LAMBDA_DEFAULT_KEY,
         env="prod"),
    Case("prod-unscoped-trust", "TAP152", "payment-role-prod", bp.UNSCOPED_TRUST, env="prod"),
    Case("dev-unscoped-trust-warns", "TAP152", "payment-role-dev", bp.UNSCOPED_TRUST,
         severity="warning"),
    Case("dev-rotation-disabled", "TAP141", "db-app-credentials-dev",
         overrides=("secrets.rotation_enabled=false",), severity="warning"),
    Case("over-budget", "TAP201", "stack", overrides=("budget_monthly_usd=10",)),
    # issue 19, network and storage (broken variants from tests/test_network_controls.py)
    Case("prod-transaction-logs-not-logged", "TAP171", "transaction-logs-prod",
         bp.NO_ACCESS_LOGGING, env="prod"),
    Case("dev-log-target-not-logged-excepted", "TAP171", "access-logs-dev",
         severity="excepted"),
    Case("prod-acls-enabled", "TAP172", "transaction-logs-prod", bp.ACLS_ENABLED, env="prod"),
    Case("prod-no-object-lock", "TAP173", "transaction-logs-prod", bp.NO_OBJECT_LOCK,
         env="prod"),
    Case("prod-governance-lock", "TAP173", "transaction-logs-prod", env="prod",
         overrides=("bucket.object_lock_mode=GOVERNANCE",)),
    Case("prod-default-sg-not-adopted", "TAP174", "vpc-prod", bp.DEFAULT_SG_NOT_ADOPTED,
         env="prod"),
    Case("prod-nacl-admits-ssh", "TAP175", "default-nacl-prod", bp.NACL_ADMITS_SSH,
         env="prod"),
    Case("prod-no-ec2-endpoint", "TAP176", "vpc-prod", bp.NO_EC2_ENDPOINT, env="prod"),
    Case("dev-no-interface-endpoints-excepted", "TAP176", "vpc-dev", severity="excepted"),
    Case("prod-no-s3-gateway-endpoint", "TAP177", "vpc-prod", bp.NO_S3_GATEWAY_ENDPOINT,
         env="prod"),
    Case("prod-secrets-endpoint-public-dns", "TAP177", "secretsmanager-endpoint-prod",
         bp.SECRETS_ENDPOINT_WITHOUT_PRIVATE_DNS, env="prod"),
    Case("dev-no-secrets-endpoint-excepted", "TAP177", "vpc-dev", severity="excepted"),
    # issue 19, data side (broken variants from tests/test_data_controls.py)
    Case("prod-monitoring-off", "TAP108", "aurora-instance-0-prod", env="prod",
         overrides=("db.monitoring_interval_s=0",)),
    Case("prod-monitoring-role-without-policy", "TAP108", "rds-monitoring-role-prod",
         bp.MONITORING_ROLE_WITHOUT_POLICY, env="prod"),
    Case("dev-monitoring-off-excepted", "TAP108", "aurora-instance-0-dev", severity="excepted"),
    Case("prod-tls-not-forced", "TAP109", "aurora-cluster-prod", bp.TLS_NOT_FORCED,
         env="prod"),
    Case("prod-no-dead-letter-queue", "TAP123", "payment-fn-prod", bp.NO_DEAD_LETTER_QUEUE,
         env="prod"),
    Case("prod-unencrypted-dlq", "TAP124", "payment-dlq-prod", bp.UNENCRYPTED_DLQ, env="prod"),
    Case("prod-no-secret-policy", "TAP143", "db-app-credentials-prod", bp.NO_SECRET_POLICY,
         env="prod"),
    Case("prod-cluster-not-in-backup-plan", "TAP161", "aurora-cluster-prod",
         bp.CLUSTER_NOT_IN_BACKUP_PLAN, env="prod"),
    Case("prod-vault-default-key", "TAP162", "backup-vault-prod", bp.VAULT_DEFAULT_KEY,
         env="prod"),
    Case("prod-backups-kept-7-days", "TAP163", "backup-plan-prod", env="prod",
         overrides=("backup.retention_days=7",)),
    Case("dev-backups-kept-7-days-excepted", "TAP163", "backup-plan-dev", severity="excepted"),
]
BY_ID = {c.id: c for c in CASES}


def report_of(case_id: str) -> PreflightReport:
    return BY_ID[case_id].report()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule_fires_on_its_broken_variant(case: Case):
    report = case.report()
    fired(report, case.rule, case.resource, case.severity)
    assert report.ok == (case.severity != "error")
    if case.severity == "excepted":      # an exception never turns a finding into a pass
        assert "policy exception in params/" in fired(report, case.rule, case.resource,
                                                      "excepted")["fix"]


def test_every_rule_has_a_broken_variant():
    project_rule = {"TAP002",  # needs a file: test_wrong_project_name_in_pulumi_yaml
                    "TAP190"}  # needs exceptions: test_policy_exception_* below
    # The control tables' rules (issue 19) are broken in their own test modules
    # (test_compute_controls.py, test_storage_controls.py): a weakened program per control, or,
    # where the program cannot declare the broken thing (ACLs, replicas, snapshots), the
    # judgement on hand-made resources.
    tables = {r.id for r in RULES if r.check.__module__.rsplit(".", 1)[-1] in (
        "compute_controls", "vpc_controls", "storage_controls", "rds_controls")}
    assert {c.rule for c in CASES} | project_rule | tables == {r.id for r in RULES}


def test_rules_are_registered_once_with_a_reason():
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    assert all(r.prevents for r in RULES)


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_shipped_environments_have_no_errors(env: str):
    report = preflight(env)
    assert report.ok, report.findings.to_string()
    assert report.to_dict()["summary"]["rules_checked"] == len(RULES)


def test_ad_hoc_pr_stack_is_clean(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "PR6329")
    report = run_preflight(load_settings("dev"))
    assert report.ok, report.findings.to_string()
    assert report.stack == "TapStackPR6329"


# -- what the findings say -----------------------------------------------------------------
def test_removed_argument_is_a_finding_with_replacement_and_location():
    report = report_of("seed1-eip-vpc-true")
    row = fired(report, "TAP001", "nat-eip-0-dev")
    assert 'domain="vpc"' in row["fix"]
    assert "Eip(vpc=...)" in row["message"] and "broken_programs.py" in row["message"]
    skipped = fired(report, "TAP000", "program", "info")
    assert "TAP101" in skipped["message"]
    assert report.to_dict()["summary"]["rules_checked"] < len(RULES)


def test_deprecated_resources_name_their_replacement():
    report = report_of("deprecated-bucket-v2")
    assert "aws.s3.Bucket" in fired(report, "TAP001", "transaction-logs-dev")["fix"]
    versioning = fired(report, "TAP001", "transaction-logs-versioning-dev")
    assert "BucketVersioning" in versioning["fix"]
    assert not rows(report, "TAP113")  # the V2 resources still count as versioning
    acl = fired(report_of("deprecated-bucket-argument"), "TAP001", "transaction-logs-dev")
    assert "acl is deprecated" in acl["message"] and acl["fix"] == "use s3.BucketAcl"


def test_duplicate_urn_names_the_urn():
    row = fired(report_of("seed3-instantiated-twice"), "TAP003", "aws-eu-west-2")
    assert "urn:pulumi:TapStackdev::TapStack::" in row["message"]
    assert "once" in row["fix"]


def test_invalid_names_are_reported_per_resource():
    report = report_of("seed4-uppercase-cluster-id")
    names = {r["resource"]: r["message"] for r in rows(report, "TAP004")}
    assert "must be lowercase" in names["aurora-cluster-PR6329"]
    assert "must be lowercase" in names["aurora-instance-0-PR6329"]
    assert "no explicit name" in names["db-subnet-group-PR6329"]


def test_engine_version_lists_offered_versions():
    row = fired(report_of("seed5-engine-15.3"), "TAP005", "aurora-cluster-dev")
    assert "15.3 is not offered in eu-west-2" in row["message"]
    assert "15.6, 15.7, 15.8, 15.10, 15.12, 15.13" in row["message"]
    assert "as of" in row["message"]
    assert "15.6" in row["fix"]
    fired(report_of("seed5-engine-15.3"), "TAP005", "aurora-instance-0-dev")


def test_engine_version_on_aws_asks_the_given_source():
    asked = []

    def offered(region: str, engine: str) -> tuple[list[str], str]:
        asked.append((region, engine))
        return ["15.10"], "stub"

    report = run_preflight(settings("dev"), target="aws", engine_versions=offered,
                           region_of_target="eu-west-2")
    assert asked == [("eu-west-2", "aurora-postgresql")]
    assert "offered: 15.10 (source: stub)" in fired(report, "TAP005", "aurora-cluster-dev")[
        "message"]


def test_region_missing_from_catalog_is_a_warning_not_a_pass():
    report = preflight("dev", "region=ap-south-1")
    fired(report, "TAP005", "db.engine_version", "warning")


def test_aws_target_region_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    report = run_preflight(settings("dev"), target="aws",
                           engine_versions=lambda r, e: (["15.6"], "stub"))
    assert "'us-east-1'" in fired(report, "TAP008", "target")["message"]


def test_wrong_project_name_in_pulumi_yaml(tmp_path: Path):
    broken = tmp_path / "Pulumi.yaml"
    broken.write_text("name: pulumi-infra\nruntime:\n  name: python\n")
    report = preflight("dev", project_file=broken)
    row = fired(report, "TAP002", str(broken))
    assert "'pulumi-infra'" in row["message"] and "TapStackdev" in row["message"]
    assert "name: TapStack" in row["fix"]


def test_missing_pulumi_yaml_is_a_finding(tmp_path: Path):
    report = preflight("dev", project_file=tmp_path / "Pulumi.yaml")
    assert "cannot read" in fired(report, "TAP002", str(tmp_path / "Pulumi.yaml"))["message"]


def test_bucket_stability_messages():
    changing = fired(report_of("seed7-random-bucket-suffix"), "TAP007", "transaction-logs-dev")
    assert "changes between runs" in changing["message"]
    shared = fired(report_of("bucket-shared-by-stacks"), "TAP007", "transaction-logs-dev")
    assert "same for stack" in shared["message"]
    upper = fired(report_of("seed7-uppercase-bucket"), "TAP007", "transaction-logs-PR6329")
    assert "must be lowercase" in upper["message"]


def test_json_shape():
    data = report_of("public-bucket").to_dict()
    assert set(data["summary"]) >= {"error", "warning", "info", "rules_checked"}
    assert data["summary"]["error"] == report_of("public-bucket").errors >= 1
    finding = data["findings"][0]
    assert set(finding) == {"rule", "severity", "resource", "message", "fix"}
    assert finding["severity"] == "error"  # errors sort first


# -- controls judged as defined, and policy exceptions (issue 19) ----------------------------
def with_exceptions(env: str, *entries: dict, keep_shipped: bool = False) -> Settings:
    """The environment file's settings with `exceptions` replaced by these entries (added to
    the file's own with keep_shipped)."""
    from tap_lib.config import PolicyException

    base = {"owner": "payments-platform", "reason": "a reason a reviewer can judge, long enough",
            "expires": "2099-12-31"}
    shipped = list(settings(env).exceptions) if keep_shipped else []
    return settings(env).model_copy(update={"exceptions": shipped + [
        PolicyException.model_validate({**base, **e}) for e in entries]})


def without_exceptions(env: str, *controls: str) -> Settings:
    """The environment file's settings less its exceptions for `controls`."""
    s = settings(env)
    return s.model_copy(update={"exceptions": [e for e in s.exceptions
                                               if e.control not in controls]})


def test_rds7_and_rds11_fail_as_the_controls_define_them_without_an_exception():
    """Not "matches the params file": dev declares no deletion protection and 1 backup day,
    which the controls fail; without its exceptions for them dev reports them (never info or
    pass). dev's other exceptions (issue 19's dev differences) stay, so nothing else moves."""
    report = run_preflight(without_exceptions("dev", "RDS.7", "RDS.11"))
    assert fired(report, "TAP103", "aurora-cluster-dev", "warning")
    assert "RDS.11 needs >= 7" in fired(report, "TAP104", "aurora-cluster-dev", "warning")[
        "message"]
    assert not [r for r in rows(report, "TAP103") + rows(report, "TAP104")
                if r["severity"] in ("excepted", "info")]
    assert report.excepted == preflight("dev").excepted - 2 and report.ok


def test_staging_exceptions_cover_rds7_and_rds11():
    report = preflight("staging")
    for rule_id in ("TAP103", "TAP104"):
        fix = fired(report, rule_id, "aurora-cluster-staging", "excepted")["fix"]
        assert "params/staging.yaml" in fix and "owner payments-platform" in fix
    assert report.to_dict()["summary"]["excepted"] == report.excepted >= 2


def test_prod_carries_only_justified_exceptions_and_each_is_load_bearing():
    """Issue 19: each prod exception excepts findings of its own control on the resources it
    names (S3.9 and S3.17 on the access-log bucket alone), and without the exceptions the same
    findings are errors: the exceptions are needed, not decoration. The master secret's policy
    is judged by verify only (the program declares no policy on the secret RDS owns)."""
    prod = settings("prod")
    report = preflight("prod")
    assert report.warnings == 0 and report.ok, report.findings.to_string()
    excepted = [(r["rule"].split()[0], r["rule"].split()[1], r["resource"])
                for r in report.findings.to_dict("records") if r["severity"] == "excepted"]
    assert report.excepted == len(excepted) > 0
    for rule, control, resource in excepted:
        assert prod.exception_for(control, resource) is not None, (rule, control, resource)
    assert {e.control for e in prod.exceptions} - {c for _, c, _ in excepted} == {
        "secretsmanager_has_restrictive_resource_policy"}
    pairs = {(rule, resource) for rule, _, resource in excepted}
    assert {("TAP114", "access-logs-prod"), ("TAP171", "access-logs-prod")} <= pairs
    assert not {("TAP114", "transaction-logs-prod"), ("TAP171", "transaction-logs-prod")} & pairs
    bare = run_preflight(with_exceptions("prod"))
    for rule, _, resource in excepted:
        fired(bare, rule, resource)
    assert bare.errors == len(excepted) and bare.excepted == 0


def test_an_expired_exception_is_an_error_and_excepts_nothing():
    report = run_preflight(with_exceptions(
        "dev", {"control": "RDS.7", "resource": "aurora-cluster", "expires": "2020-01-31"}))
    row = fired(report, "TAP190", "aurora-cluster")
    assert "expired on 2020-01-31" in row["message"] and "RDS.7" in row["message"]
    fired(report, "TAP103", "aurora-cluster-dev", "warning")     # not excepted
    assert not report.ok


def test_an_exception_naming_an_unknown_control_is_an_error():
    report = run_preflight(with_exceptions(
        "dev", {"control": "RDS.77", "resource": "aurora-cluster"}))
    row = fired(report, "TAP190", "aurora-cluster")
    assert "unknown control 'RDS.77'" in row["message"] and "did you mean" in row["message"]
    assert "RDS.7" in row["fix"] and not report.ok


def test_an_exception_naming_no_declared_resource_is_a_warning():
    report = run_preflight(with_exceptions(
        "dev", {"control": "RDS.7", "resource": "aurora-clustr"}))
    assert "excepts nothing" in fired(report, "TAP190", "aurora-clustr", "warning")["message"]
    fired(report, "TAP103", "aurora-cluster-dev", "warning")


def test_an_exception_for_all_covers_every_resource_of_its_control_only():
    # prod's own (access-log) exceptions kept: this case adds one on top of them
    report = run_preflight(with_exceptions(
        "prod", {"control": "tap:lambda-env-cmk", "resource": "all"}, keep_shipped=True),
        program=bp.LAMBDA_DEFAULT_KEY)
    fired(report, "TAP122", "payment-fn-prod", "excepted")
    assert report.ok
    other = run_preflight(with_exceptions(
        "prod", {"control": "RDS.7", "resource": "all"}, keep_shipped=True),
        program=bp.LAMBDA_DEFAULT_KEY)
    fired(other, "TAP122", "payment-fn-prod", "error")


def test_an_exception_follows_an_ad_hoc_suffix(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "pr6329")
    report = run_preflight(load_settings("dev"))
    fired(report, "TAP103", "aurora-cluster-pr6329", "excepted")
    assert report.ok
