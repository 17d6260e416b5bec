"""Network and storage controls of issue 19 (S3.9, S3.12, S3.15, EC2.2, EC2.10, EC2.21 and
tap:vpc-endpoints): preflight judges the synthesized plan, verify the live (emulated) stack, and
a hand-broken resource fails under its control id.

The deployed stack here is the network and storage part of the TapStack (the program's own
build_network / build_endpoints / build_access_log_bucket / build_bucket) with a stand-in for
the Lambda security group: the database and functions are another module's subject and keep
this module to a few seconds."""
from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pytest
from botocore.exceptions import ClientError

from tap_lib.config import load_settings
from tap_lib.engines.sandbox.engine import SandboxEngine
from tap_lib.engines.sandbox.handlers import REGISTRY
from tap_lib.ops import preflight as pf
from tap_lib.ops.checks import Declared
from tap_lib.ops.hardening_network import network_control_checks
from tap_lib.program import network, storage

pytestmark = [pytest.mark.sandbox]


def network_and_storage(settings):
    """The TapStack's network and storage, as define_stack declares them."""
    provider = aws.Provider(f"aws-{settings.region}", region=settings.region)
    opts = pulumi.ResourceOptions(providers={"aws": provider})
    account = aws.get_caller_identity(opts=pulumi.InvokeOptions(provider=provider)).account_id
    names = settings.physical_names(account)
    key = aws.kms.Key(f"kms-key-{settings.suffix}", opts=opts)
    net = network.build_network(settings, names, key, account, opts)
    lambda_sg = aws.ec2.SecurityGroup(f"lambda-sg-{settings.suffix}",
                                      name=names.lambda_security_group, vpc_id=net.vpc.id,
                                      opts=opts)
    network.build_endpoints(settings, names, net, lambda_sg, opts)
    logs = storage.build_access_log_bucket(settings, names, opts)
    bucket = storage.build_bucket(settings, names, key, logs, account, opts)
    for key_, value in (("vpc_id", net.vpc.id),
                        ("private_subnet_ids", [s.id for s in net.private_subnets]),
                        ("s3_bucket_name", bucket.bucket),
                        ("s3_access_log_bucket_name", logs.bucket),
                        ("lambda_security_group_id", lambda_sg.id),
                        ("region", settings.region)):
        pulumi.export(key_, value)


# prod's bucket settings on staging's file: a protected stack deploys only signed plans
# (test_guards' subject); the network and storage controls are the same.
PROD_LIKE = ("bucket.object_lock_mode=COMPLIANCE", "bucket.object_lock_days=365")


def deploy(env: str, suffix: str, *overrides: str):
    settings = load_settings(env, [f"suffix={suffix}", *overrides])
    eng = SandboxEngine(settings, program=network_and_storage)
    eng.up()
    return eng, settings


@pytest.fixture(scope="module")
def stacks(sandbox_home):
    """dev (no interface endpoints, GOVERNANCE lock) and a prod-like stack (endpoints,
    COMPLIANCE lock)."""
    return {"dev": deploy("dev", "ncdev"), "prod": deploy("staging", "ncprod", *PROD_LIKE)}


def rows(eng, settings):
    checks = network_control_checks(Declared(settings, eng.outputs()), eng.clients())
    return {(c.id, c.resource): c for c in checks}


def by_control(checks, control):
    return [c for c in checks.values() if c.control == control]


# -- verify on the live stack -------------------------------------------------------------------
def test_prod_passes_every_network_and_storage_control_except_justified_ones(stacks):
    eng, settings = stacks["prod"]
    checks = rows(eng, settings)
    failed = [c for c in checks.values() if c.status == "fail"]
    assert failed == []
    excepted = {(c.control, c.logical) for c in checks.values() if c.status == "excepted"}
    # the access-log bucket alone, for the three reasons its params file states
    assert excepted == {("S3.9", "access-logs-ncprod"), ("S3.17", "access-logs-ncprod")}
    for control in ("S3.9", "S3.12", "S3.15", "EC2.2", "EC2.10", "EC2.21", "tap:vpc-endpoints"):
        assert any(c.status == "pass" for c in by_control(checks, control)), control
    lock = checks[("s3.object-lock", eng.outputs()["s3_bucket_name"])]
    assert lock.actual == "COMPLIANCE, 365 days"


def test_dev_differs_only_where_its_file_says(stacks):
    eng, settings = stacks["dev"]
    checks = rows(eng, settings)
    assert [c for c in checks.values() if c.status == "fail"] == []
    excepted = {c.control for c in checks.values() if c.status == "excepted"}
    assert {"EC2.10", "tap:vpc-endpoints"} <= excepted
    s3_endpoint = checks[("vpc.s3-endpoint", eng.outputs()["vpc_id"])]
    assert s3_endpoint.status == "pass"          # the free gateway endpoint is there in dev too


def test_the_live_defaults_are_really_locked_down(stacks):
    """What the handlers did on the emulator, read back with plain describes."""
    eng, _ = stacks["prod"]
    ec2, vpc = eng.clients()("ec2"), eng.outputs()["vpc_id"]
    group = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}])
    assert group["SecurityGroups"][0]["IpPermissions"] == []
    assert group["SecurityGroups"][0]["IpPermissionsEgress"] == []
    acl = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                             {"Name": "default", "Values": ["true"]}])
    inbound = [e for e in acl["NetworkAcls"][0]["Entries"] if not e["Egress"]]
    assert {e["RuleNumber"] for e in inbound} == {100, 200, 201, 210, 211, 32767}
    s3 = eng.clients()("s3")
    name = eng.outputs()["s3_bucket_name"]
    assert s3.get_bucket_logging(Bucket=name)["LoggingEnabled"]["TargetBucket"] == \
        eng.outputs()["s3_access_log_bucket_name"]
    # S3 refuses any ACL once BucketOwnerEnforced is set; moto records the setting but still
    # accepts ACLs, so the emulator shows the configuration, not its effect.
    rules = s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]


@pytest.mark.parametrize("breakage, check_id, control", [
    ("sg-ingress", "ec2.default-sg-closed", "EC2.2"),
    ("nacl-ssh", "ec2.nacl-admin-ports", "EC2.21"),
    ("logging-off", "s3.access-logging", "S3.9"),
    ("ownership", "s3.acls-disabled", "S3.12"),
    ("endpoint-gone", "ec2.ec2-endpoint", "EC2.10"),
])
def test_a_hand_broken_resource_fails_under_its_control(stacks, breakage, check_id, control):
    eng, settings = stacks["prod"]
    out, c = eng.outputs(), eng.clients()
    ec2, s3 = c("ec2"), c("s3")
    undo = _break(breakage, ec2, s3, out)
    try:
        failed = [x for x in rows(eng, settings).values() if x.status == "fail"]
        assert [(x.id, x.control) for x in failed] == [(check_id, control)]
    finally:
        undo()
    assert all(x.status != "fail" for x in rows(eng, settings).values())


def _break(breakage, ec2, s3, out):
    vpc, bucket = out["vpc_id"], out["s3_bucket_name"]
    if breakage == "sg-ingress":
        gid = ec2.describe_security_groups(Filters=[
            {"Name": "vpc-id", "Values": [vpc]},
            {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"][0]["GroupId"]
        perm = [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                 "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=perm)
        return lambda: ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=perm)
    if breakage == "nacl-ssh":
        acl = ec2.describe_network_acls(Filters=[
            {"Name": "vpc-id", "Values": [vpc]},
            {"Name": "default", "Values": ["true"]}])["NetworkAcls"][0]["NetworkAclId"]
        ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=50, Protocol="6",
                                     RuleAction="allow", Egress=False, CidrBlock="0.0.0.0/0",
                                     PortRange={"From": 22, "To": 22})
        return lambda: ec2.delete_network_acl_entry(NetworkAclId=acl, RuleNumber=50,
                                                    Egress=False)
    if breakage == "logging-off":
        before = s3.get_bucket_logging(Bucket=bucket)["LoggingEnabled"]
        s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={})
        return lambda: s3.put_bucket_logging(Bucket=bucket,
                                             BucketLoggingStatus={"LoggingEnabled": before})
    if breakage == "ownership":
        s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
            "Rules": [{"ObjectOwnership": "ObjectWriter"}]})
        return lambda: s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
            "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    if breakage == "endpoint-gone":
        eps = [e for e in ec2.describe_vpc_endpoints(Filters=[
            {"Name": "vpc-id", "Values": [vpc]}])["VpcEndpoints"]
            if e["ServiceName"].endswith(".ec2") and e.get("State", "").lower() != "deleted"]
        ec2.delete_vpc_endpoints(VpcEndpointIds=[eps[0]["VpcEndpointId"]])

        def undo():
            # the emulator only marks a deleted endpoint; a new one stands in for it
            ec2.create_vpc_endpoint(VpcId=vpc, ServiceName=eps[0]["ServiceName"],
                                    VpcEndpointType="Interface",
                                    SubnetIds=eps[0]["SubnetIds"],
                                    SecurityGroupIds=[g["GroupId"] for g in eps[0]["Groups"]],
                                    PrivateDnsEnabled=True)
        return undo
    raise AssertionError(breakage)


def test_governance_lock_lets_dev_destroy_and_compliance_keeps_prod_logs(stacks):
    """dev's destroy empties its locked bucket (force_destroy bypasses GOVERNANCE, as the
    provider does); a COMPLIANCE-locked object cannot be deleted by anyone."""
    eng, _ = stacks["prod"]
    s3, name = eng.clients()("s3"), eng.outputs()["s3_bucket_name"]
    version = s3.put_object(Bucket=name, Key="tx/1.json", Body=b"{}")["VersionId"]
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=name, Key="tx/1.json", VersionId=version,
                         BypassGovernanceRetention=True)
    dev = deploy("dev", "ncgone")[0]
    dev_s3, dev_bucket = dev.clients()("s3"), dev.outputs()["s3_bucket_name"]
    dev_s3.put_object(Bucket=dev_bucket, Key="tx/1.json", Body=b"{}")
    dev.destroy()
    assert dev_bucket not in {b["Name"] for b in dev_s3.list_buckets()["Buckets"]}


# -- preflight on the plan ----------------------------------------------------------------------
def _plan(env: str, *overrides: str):
    report = pf.run_preflight(load_settings(env, list(overrides)))
    return report.findings


def test_preflight_passes_the_shipped_environments_with_only_their_exceptions():
    for env in ("dev", "prod"):
        df = _plan(env)
        mine = df[df.rule.str.startswith("TAP17")]
        assert set(mine.severity) <= {"excepted"}, mine.to_dict("records")
    prod = _plan("prod")
    excepted = prod[prod.severity == "excepted"]
    # every excepted finding names the prod exception covering it (other modules add theirs)
    covering = set(excepted.fix.str.extract(r"\(([^,]+), owner")[0])
    assert covering and covering <= {e.control for e in load_settings("prod").exceptions}
    assert not excepted.fix.str.extract(r"\(([^,]+), owner")[0].isna().any()
    assert set(excepted[excepted.rule.str.startswith("TAP17")].resource) == {"access-logs-prod"}


@pytest.mark.parametrize("program, rule, resource", [
    ("no_default_sg", "TAP174 EC2.2 default-sg-closed", "vpc-prod"),
    ("nacl_ssh", "TAP175 EC2.21 nacl-admin-ports", "default-nacl-prod"),
    ("no_logging", "TAP171 S3.9 access-logging", "transaction-logs-prod"),
    ("acls_on", "TAP172 S3.12 acls-disabled", "transaction-logs-prod"),
    ("no_lock", "TAP173 S3.15 object-lock", "transaction-logs-prod"),
])
def test_preflight_flags_a_program_without_the_control(monkeypatch, program, rule, resource):
    """Each rule fails the program that leaves its control out (an error on prod)."""
    _weaken(monkeypatch, program)
    df = _plan("prod")
    hit = df[(df.rule == rule) & (df.resource == resource)]
    assert list(hit.severity) == ["error"], df[df.rule == rule].to_dict("records")


def _weaken(monkeypatch, program):
    if program == "no_default_sg":
        monkeypatch.setattr(network.aws.ec2, "DefaultSecurityGroup", lambda *a, **k: None)
    elif program == "nacl_ssh":
        monkeypatch.setattr(network, "NACL_INGRESS", network.NACL_INGRESS + (
            {"rule_no": 90, "action": "allow", "protocol": "tcp", "from_port": 0,
             "to_port": 1023, "cidr_block": "0.0.0.0/0"},))
    elif program == "no_logging":
        monkeypatch.setattr(storage.aws.s3, "BucketLogging", lambda *a, **k: None)
    elif program == "acls_on":
        monkeypatch.setattr(storage.aws.s3, "BucketOwnershipControls", lambda *a, **k: None)
    elif program == "no_lock":
        real = storage.aws.s3.Bucket
        monkeypatch.setattr(storage.aws.s3, "BucketObjectLockConfiguration",
                            lambda *a, **k: None)
        monkeypatch.setattr(storage.aws.s3, "Bucket", lambda *a, **k: real(
            *a, **{**k, "object_lock_enabled": False}))


def test_dev_without_interface_endpoints_is_flagged_unless_excepted():
    settings = load_settings("dev")
    df = pf.run_preflight(settings.model_copy(update={"exceptions": type(settings.exceptions)()})
                          ).findings
    mine = df[df.rule.str.startswith("TAP17")]
    flagged = set(zip(mine[mine.severity == "warning"].rule, mine.resource))
    assert ("TAP176 EC2.10 ec2-endpoint", "vpc-dev") in flagged
    assert ("TAP177 tap:vpc-endpoints s3-secrets-endpoints", "vpc-dev") in flagged


def test_governance_in_prod_is_an_error():
    df = _plan("prod", "bucket.object_lock_mode=GOVERNANCE")
    hit = df[(df.rule == "TAP173 S3.15 object-lock") & (df.severity == "error")]
    assert list(hit.resource) == ["transaction-logs-prod"]


@pytest.mark.parametrize("key, value, words", [
    ("bucket.object_lock_mode", "FOREVER", ["bucket.object_lock_mode", "COMPLIANCE"]),
    ("bucket.object_lock_days", "0", ["bucket.object_lock_days"]),
])
def test_bad_settings_name_the_file_and_field(key, value, words):
    from tap_lib.errors import TapError
    with pytest.raises(TapError) as err:
        load_settings("dev", [f"{key}={value}"])
    text = str(err.value) + str(getattr(err.value, "hint", ""))
    assert "params/dev.yaml" in text
    for w in words:
        assert w in text


def test_an_unknown_interface_endpoint_names_the_allowed_services(tmp_path):
    from tap_lib.errors import TapError
    from tap_lib.project import params_dir
    text = (params_dir() / "dev.yaml").read_text().replace(
        "interface_endpoints: []", "interface_endpoints: [sqs]")
    (tmp_path / "dev.yaml").write_text(text)
    with pytest.raises(TapError) as err:
        load_settings("dev", directory=tmp_path)
    message = str(err.value) + str(getattr(err.value, "hint", ""))
    assert "vpc.interface_endpoints" in message and "secretsmanager" in message


# -- handlers and the replacement table ---------------------------------------------------------
def test_new_types_have_handlers_and_provider_rules():
    for t in ("aws:s3/bucketOwnershipControls:BucketOwnershipControls",
              "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
              "aws:s3/bucketLogging:BucketLogging",
              "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
              "aws:ec2/defaultNetworkAcl:DefaultNetworkAcl",
              "aws:ec2/vpcEndpoint:VpcEndpoint"):
        assert REGISTRY[t].rules()["sources"], t
    endpoint = REGISTRY["aws:ec2/vpcEndpoint:VpcEndpoint"]
    assert endpoint.classify(["subnetIds"]) == "update"
    assert endpoint.classify(["serviceName"]) == "replace"
    lock = REGISTRY["aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"]
    assert lock.classify(["rule"]) == "update"


def test_access_log_policy_grants_only_log_delivery_for_this_account():
    doc = json.loads(storage.access_log_bucket_policy("arn:aws:s3:::logs", "arn:aws:s3:::tx",
                                                      "123456789012"))
    allow = [s for s in doc["Statement"] if s["Effect"] == "Allow"]
    assert allow[0]["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert allow[0]["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"
    assert any(s["Effect"] == "Deny" for s in doc["Statement"])


def test_the_emulators_object_lock_refusal_is_reported_as_such(stacks):
    """moto refuses Object Lock configuration on a bucket holding objects (AWS accepts it): the
    handler says it is the emulator and what to do, instead of a bare InvalidBucket."""
    from tap_lib.errors import OperationFailed
    eng, _ = stacks["dev"]
    s3, name = eng.clients()("s3"), eng.outputs()["s3_access_log_bucket_name"]
    s3.put_object(Bucket=name, Key="transaction-logs/probe", Body=b"x")
    handler = REGISTRY["aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"]
    ctx = eng.context("urn:pulumi:TapStackncdev::TapStack::probe", "probe")
    with pytest.raises(OperationFailed, match="emulator.*moto.*holds objects") as err:
        handler.create(ctx, {"bucket": name, "objectLockEnabled": "Enabled", "rule": {
            "defaultRetention": {"mode": "GOVERNANCE", "days": 1}}})
    assert "destroy" in err.value.hint
    lock = s3.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"]
    assert "Rule" not in lock                          # nothing half-applied


def test_a_vpc_recorded_without_its_defaults_is_refused_with_a_way_out(stacks):
    from tap_lib.errors import OperationFailed
    eng, _ = stacks["dev"]
    handler = REGISTRY["aws:ec2/defaultNetworkAcl:DefaultNetworkAcl"]
    ctx = eng.context("urn:pulumi:TapStackncdev::TapStack::probe", "probe")
    with pytest.raises(OperationFailed, match="defaultNetworkAclId"):
        handler.create(ctx, {"defaultNetworkAclId": None, "ingress": [], "egress": []})


def test_live_reads_of_the_new_types_answer_and_a_gone_endpoint_reads_as_gone(stacks):
    """inspect's drift table reads every recorded resource back (read_live)."""
    eng, _ = stacks["prod"]
    mine = [r for r in eng.resources() if r.type in (
        "aws:ec2/vpcEndpoint:VpcEndpoint", "aws:ec2/defaultNetworkAcl:DefaultNetworkAcl",
        "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "aws:s3/bucketLogging:BucketLogging",
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")]
    # every type reads back (the hand-broken EC2 endpoint above was replaced by a stand-in,
    # so its recorded copy may read as gone: that is the point of the last assertion)
    assert {r.type for r in mine if eng.read_live(r.urn) is not None} == {r.type for r in mine}
    assert len({r.type for r in mine}) == 6
    ctx = eng.context("urn:pulumi:TapStackncprod::TapStack::probe", "probe")
    assert REGISTRY["aws:ec2/vpcEndpoint:VpcEndpoint"].read(ctx, "vpce-0000000000000000", {}) \
        is None
