"""The network, compute and identity controls Prowler evaluates (controls_compute.TABLE): the
judgements on AWS's shapes, preflight on the shipped programs and on weakened ones, and verify
on a live (emulated) dev stack broken by hand, each failing under its control id."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tap_lib import controls_compute as cc
from tap_lib.config import load_settings
from tap_lib.controls import CONTROLS, controls_of
from tap_lib.ops import preflight as pf
from tap_lib.ops.preflight import compute_controls as comp
from tap_lib.ops.preflight import vpc_controls as vpc
from tap_lib.program import functions, network

from helpers import make_engine

ACCOUNT = "123456789012"
OTHER = "210987654321"


def world(port_low: int, port_high: int | None = None, proto: str = "tcp",
          cidr: str = "0.0.0.0/0") -> dict:
    return {"IpProtocol": proto, "FromPort": port_low, "ToPort": port_high or port_low,
            "IpRanges": [{"CidrIp": cidr}] if ":" not in cidr else [],
            "Ipv6Ranges": [{"CidrIpv6": cidr}] if ":" in cidr else []}


def group(*ingress: dict, name: str = "g", egress: tuple = ()) -> dict:
    return {"GroupName": name, "IpPermissions": list(ingress),
            "IpPermissionsEgress": list(egress)}


# -- judgements ------------------------------------------------------------------------------
def test_every_control_is_in_the_table_and_keyed_by_rule_labels():
    assert {c for c, _, _ in cc.TABLE} <= set(CONTROLS)
    labelled = {c for r in pf.RULES for c in controls_of(r.label)}
    verify_only = {cc.KMS_NOT_DELETED, cc.LOG_SECRETS}     # live states: no plan decides them
    assert {c for c, _, _ in cc.TABLE} - verify_only <= labelled


@pytest.mark.parametrize("control,check,ports", cc.SG_PORT_CONTROLS)
def test_each_port_control_fails_on_each_of_its_ports_from_the_internet(control, check, ports):
    for port in ports:
        for cidr in ("0.0.0.0/0", "::/0"):
            assert vpc.group_problem(control, group(world(port, cidr=cidr)))
        assert not vpc.group_problem(control, group(world(port, cidr="10.0.0.0/16")))
        assert vpc.group_problem(control, group(world(1, 65535)))       # a range covering it
    assert not vpc.group_problem(control, group(world(ports[0], proto="udp")))


def test_whole_group_controls_read_the_rule_as_prowler_does():
    everything = group({"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]})
    one_port = group(world(443))
    assert vpc.group_problem(cc.SG_ALL_PORTS, everything)
    assert not vpc.group_problem(cc.SG_ALL_PORTS, one_port)
    assert vpc.group_problem(cc.SG_ANY_PORT, one_port)
    assert not vpc.group_problem(cc.SG_ANY_PORT, group(world(443, cidr="10.0.0.0/8")))
    assert vpc.group_problem(cc.SG_FROM_IP, group(world(443, cidr="8.8.8.8/32")))
    assert not vpc.group_problem(cc.SG_FROM_IP, group(world(443, cidr="192.168.0.0/16")))
    assert vpc.group_problem(cc.SG_WIDE_OPEN, group(egress=(world(443, cidr="8.0.0.0/8"),)))
    assert not vpc.group_problem(cc.SG_WIDE_OPEN, group(world(443, cidr="8.8.8.0/24")))
    assert vpc.group_problem(cc.SG_LAUNCH_WIZARD, group(name="launch-wizard-1"))
    many = group(*(world(p, cidr="10.0.0.0/8") for p in range(cc.MAX_SG_RULES + 1)))
    assert vpc.group_problem(cc.SG_MANY_RULES, many)
    assert not vpc.group_problem(cc.SG_MANY_RULES, group(world(1, cidr="10.0.0.0/8")))
    with pytest.raises(KeyError):
        vpc.group_problem("EC2.99", one_port)


def test_a_network_acl_is_open_when_its_first_word_on_the_internet_is_allow():
    def entry(n, action, cidr="0.0.0.0/0", proto="-1"):
        return {"RuleNumber": n, "RuleAction": action, "Protocol": proto, "Egress": False,
                "CidrBlock": cidr}
    assert vpc.nacl_open_all([entry(100, "allow"), entry(32767, "deny")])
    assert not vpc.nacl_open_all([entry(90, "deny"), entry(100, "allow")])
    assert not vpc.nacl_open_all([entry(100, "allow", "10.0.0.0/16"), entry(200, "allow",
                                                                             proto="6")])
    assert vpc.nacl_open_all([{**entry(100, "allow"), "CidrBlock": None,
                               "Ipv6CidrBlock": "::/0"}])


def test_endpoint_policies_admit_only_the_account():
    from tap_lib.program.policies import endpoint_policy

    assert vpc.untrusted_principals(None, ACCOUNT) == ["*"]      # AWS's default policy
    assert vpc.untrusted_principals(json.loads(endpoint_policy(ACCOUNT)), ACCOUNT) == []
    assert vpc.untrusted_principals(json.loads(endpoint_policy(OTHER)), ACCOUNT) == ["*"]
    other = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"},
                            "Action": "*", "Resource": "*"}]}
    assert vpc.untrusted_principals(other, ACCOUNT) == [f"arn:aws:iam::{OTHER}:root"]
    mine = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "*"}]}
    assert vpc.untrusted_principals(mine, ACCOUNT) == []


def test_inline_policies_are_judged_by_what_they_grant():
    def doc(actions, resource="*", effect="Allow"):
        return {"Statement": [{"Effect": effect, "Action": actions, "Resource": resource}]}
    assert cc.IAM_PRIVESC in comp.policy_problems(doc(["iam:PassRole", "lambda:CreateFunction",
                                                       "lambda:InvokeFunction"]))
    assert cc.IAM_PRIVESC in comp.policy_problems(doc("iam:*", "arn:aws:iam::1:role/x"))
    assert cc.IAM_PRIVESC not in comp.policy_problems(doc(["iam:GetRole", "lambda:Invoke*"]))
    assert cc.IAM_KMS in comp.policy_problems(doc("kms:*"))
    assert cc.IAM_KMS in comp.policy_problems(doc("*"))
    assert cc.IAM_KMS not in comp.policy_problems(doc("kms:*", "arn:aws:kms:r:1:key/k"))
    assert cc.IAM_KMS not in comp.policy_problems(doc(["kms:Decrypt", "kms:Generate*"]))
    assert cc.IAM_CLOUDTRAIL in comp.policy_problems(doc("cloudtrail:*"))
    assert cc.IAM_MARKETPLACE in comp.policy_problems(doc("aws-marketplace:Sub*"))
    denied = {"Statement": doc("*")["Statement"] + doc("kms:*", effect="Deny")["Statement"]}
    assert cc.IAM_KMS not in comp.policy_problems(denied)
    not_action = {"Statement": [{"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}]}
    assert cc.IAM_KMS in comp.policy_problems(not_action)


def test_service_trust_must_pin_an_account_when_it_has_a_condition():
    def trust(condition):
        s = {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
             "Action": "sts:AssumeRole"}
        return {"Statement": [{**s, "Condition": condition} if condition else s]}
    from tap_lib.program.policies import assume_role_policy

    assert comp.unpinned_trust(json.loads(assume_role_policy("x.amazonaws.com", ACCOUNT))) == []
    assert comp.unpinned_trust(trust({"StringLike": {"aws:SourceAccount": "1234*"}})) == [
        "lambda.amazonaws.com"]
    assert comp.unpinned_trust(trust({"Bool": {"aws:SecureTransport": "true"}}))
    assert comp.unpinned_trust(trust({"ArnLike": {"aws:SourceArn": "arn:aws:s3:::b"}}))
    assert not comp.unpinned_trust(trust({"ArnLike": {
        "aws:SourceArn": f"arn:aws:lambda:r:{ACCOUNT}:function:f"}}))
    assert comp.unpinned_trust(trust(None)) == []     # the confused-deputy control's case


def test_public_statements_secrets_and_trails():
    public = {"Statement": [{"Sid": "Open", "Effect": "Allow", "Principal": {"AWS": "*"},
                             "Action": "kms:Decrypt"}]}
    assert comp.public_statements(public, ACCOUNT) == ["Open"]
    public["Statement"][0]["Condition"] = {"StringEquals": {"kms:CallerAccount": ACCOUNT}}
    assert comp.public_statements(public, ACCOUNT) == []
    assert comp.secret_variables({"DB_SECRET_ARN": f"arn:aws:secretsmanager:r:{ACCOUNT}:s",
                                  "DB_USERNAME": "app", "KEY": "AKIAABCDEFGHIJKLMNOP",
                                  "DB_PASSWORD": "hunter2!"}) == ["DB_PASSWORD", "KEY"]
    fn = f"arn:aws:lambda:eu-west-2:{ACCOUNT}:function:f"
    assert comp.trail_records_lambda([{"DataResources": [
        {"Type": "AWS::Lambda::Function", "Values": ["arn:aws:lambda"]}]}], fn)
    assert comp.trail_records_lambda([{"FieldSelectors": [
        {"Field": "resources.type", "Equals": ["AWS::Lambda::Function"]}]}], fn)
    assert not comp.trail_records_lambda([{"DataResources": [
        {"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}], fn)
    assert not comp.trail_records_lambda([], fn)


def test_the_escalation_paths_are_prowlers(ci_tool):
    """The vendored table (tap_lib/privesc_paths.py) is the installed Prowler's."""
    ci_tool("prowler")           # .ci/run builds it while the tests run
    python = Path(__file__).resolve().parents[1] / ".venv-prowler" / "bin" / "python"
    if not python.exists():      # as test_security_audit: CI has it, so there it fails
        why = f"no Prowler virtualenv at {python} (.ci/run creates it)"
        pytest.fail(why) if os.environ.get("CI") else pytest.skip(why)
    code = ("import json; from prowler.providers.aws.services.iam.lib.privilege_escalation "
            "import privilege_escalation_policies_combination as c; "
            "print(json.dumps({k: sorted(v) for k, v in c.items()}))")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120,
                         check=True)
    from tap_lib.privesc_paths import PATHS

    assert {k: list(v) for k, v in PATHS.items()} == json.loads(out.stdout)


# -- preflight -------------------------------------------------------------------------------
def _mine(report):
    mine = {c for c, _, _ in cc.TABLE}
    return [f for f in report.rows if set(controls_of(f.rule)) & mine]


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_shipped_programs_pass_except_the_account_trail(env):
    found = _mine(pf.run_preflight(load_settings(env)))
    assert found, "the functions' CloudTrail finding is expected (excepted)"
    assert {(f.severity, controls_of(f.rule)[0]) for f in found} == {
        ("excepted", cc.LAMBDA_TRAIL)}


def test_an_expired_or_missing_trail_exception_fails_prod():
    s = load_settings("prod")
    bare = s.model_copy(update={"exceptions": type(s.exceptions)(
        e for e in s.exceptions if e.control != cc.LAMBDA_TRAIL)})
    found = _mine(pf.run_preflight(bare))
    assert {f.severity for f in found} == {"error"}
    assert {controls_of(f.rule)[0] for f in found} == {cc.LAMBDA_TRAIL}


def test_a_weakened_program_fails_under_each_control(monkeypatch):
    open_policy = json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*",
                                             "Action": "*", "Resource": "*"}]})
    monkeypatch.setattr(network, "endpoint_policy", lambda account: open_policy)
    monkeypatch.setattr(functions, "RUNTIME", "python3.8")
    real_doc = functions.policy_document

    def escalating(*statements):
        return real_doc(*statements, (["iam:PassRole", "lambda:CreateFunction",
                                       "lambda:InvokeFunction"], ["*"]), (["kms:*"], ["*"]))
    monkeypatch.setattr(functions, "policy_document", escalating)
    real_subnet = network.aws.ec2.Subnet
    monkeypatch.setattr(network.aws.ec2, "Subnet", lambda name, **kw: real_subnet(
        name, **{**kw, "map_public_ip_on_launch": True}))
    monkeypatch.setattr(network, "NACL_INGRESS", (
        {"rule_no": 50, "action": "allow", "protocol": "-1", "from_port": 0, "to_port": 0,
         "cidr_block": "0.0.0.0/0"}, *network.NACL_INGRESS))
    real_route = network.aws.ec2.Route

    def no_igw_route(logical, **kw):      # no subnet is public any more
        if kw.get("gateway_id") is None:
            return real_route(logical, **kw)
        network.aws.cloudwatch.LogResourcePolicy("open-logs", policy_name="open",
                                                 policy_document=json.dumps({"Statement": [{
                                                     "Effect": "Allow", "Principal": "*",
                                                     "Action": "logs:*", "Resource": "*"}]}))
    monkeypatch.setattr(network.aws.ec2, "Route", no_igw_route)
    failed = {c for f in pf.run_preflight(load_settings("dev")).rows
              if f.severity in ("error", "warning") for c in controls_of(f.rule)}
    assert {cc.ENDPOINT_TRUST, cc.LAMBDA_RUNTIME, cc.IAM_PRIVESC, cc.IAM_KMS,
            cc.SUBNET_PUBLIC_IP, cc.NACL_ANY_PORT, cc.SUBNETS_TIERS, cc.LOG_PUBLIC} <= failed
    assert not {cc.IAM_CLOUDTRAIL, cc.IAM_MARKETPLACE, "EC2.13", cc.LAMBDA_VPC} & failed


def test_an_open_stray_group_and_address_fail_every_group_control(monkeypatch):
    """A group as careless as it gets (all traffic from anywhere, a public /8, one public
    host, too many rules, the wizard's name) fails each security-group control, and EC2.22
    because nothing uses it; an Elastic IP beside the NAT's fails EC2.12."""
    from tap_lib.program import database

    real_group, real_eip = database.aws.ec2.SecurityGroup, network.aws.ec2.Eip

    def with_stray(logical, **kw):
        if logical.startswith("db-sg-"):
            real_group(f"stray-{logical}", name="launch-wizard-1", vpc_id=kw["vpc_id"], ingress=[
                {"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]},
                {"protocol": "tcp", "from_port": 1, "to_port": 65535,
                 "cidr_blocks": ["8.0.0.0/8", "8.8.8.8/32"]},
                *({"protocol": "tcp", "from_port": p, "to_port": p, "cidr_blocks": ["10.0.0.0/8"]}
                  for p in range(1000, 1000 + cc.MAX_SG_RULES))], opts=kw.get("opts"))
        return real_group(logical, **kw)

    def with_spare(logical, **kw):
        real_eip(f"spare-{logical}", **kw)
        return real_eip(logical, **kw)
    monkeypatch.setattr(database.aws.ec2, "SecurityGroup", with_stray)
    monkeypatch.setattr(network.aws.ec2, "Eip", with_spare)
    rows = pf.run_preflight(load_settings("dev")).rows
    failed = {(c, f.resource) for f in rows if f.severity in ("error", "warning")
              for c in controls_of(f.rule)}
    stray = "stray-db-sg-dev"
    assert {(c, stray) for c in vpc.SG_CONTROLS} | {(cc.SG_UNUSED, stray)} <= failed
    assert (cc.EIP_UNASSIGNED, "spare-nat-eip-0-dev") in failed
    assert not {r for c, r in failed if c in vpc.SG_CONTROLS} - {stray}   # the stack's pass


def test_careless_functions_keys_and_trust_fail_under_their_controls(monkeypatch):
    from tap_lib.program import tap_stack

    public = json.dumps({"Statement": [{"Sid": "Everyone", "Effect": "Allow",
                                        "Principal": {"AWS": "*"}, "Action": "kms:*",
                                        "Resource": "*"}]})
    monkeypatch.setattr(tap_stack, "key_policy", lambda account, region: public)
    real_key, real_fn, real_perm = (tap_stack.aws.kms.Key, functions.aws.lambda_.Function,
                                    functions.aws.lambda_.Permission)
    monkeypatch.setattr(tap_stack.aws.kms, "Key", lambda logical, **kw: real_key(logical, **{
        **kw, "enable_key_rotation": False, "multi_region": True, "is_enabled": False}))

    def careless_fn(logical, **kw):
        env = {**kw["environment"]["variables"], "API_TOKEN": "literal-token-value!"}
        return real_fn(logical, **{**kw, "environment": {"variables": env}, "vpc_config": None,
                                   "layers": [f"arn:aws:lambda:eu-west-2:{OTHER}:layer:x:1"]})
    monkeypatch.setattr(functions.aws.lambda_, "Function", careless_fn)
    monkeypatch.setattr(functions.aws.lambda_, "Permission", lambda logical, **kw: real_perm(
        logical, **{**kw, "principal": "*", "source_arn": None}))
    monkeypatch.setattr(functions, "assume_role_policy", lambda service, account: json.dumps({
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service},
                       "Action": "sts:AssumeRole",
                       "Condition": {"StringLike": {"aws:SourceAccount": "1*"}}}]}))
    failed = {c for f in pf.run_preflight(load_settings("dev")).rows
              if f.severity in ("error", "warning") for c in controls_of(f.rule)}
    assert {cc.LAMBDA_PUBLIC, cc.LAMBDA_VPC, cc.LAMBDA_SECRETS, cc.LAMBDA_LAYERS,
            cc.KMS_ROTATION, cc.KMS_PUBLIC, cc.KMS_USED, cc.KMS_MULTI_REGION,
            cc.TRUST_ACCOUNT} <= failed


# -- verify on a live (emulated) stack -------------------------------------------------------
SUFFIX = "ccdev"
PUBLIC = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Sid": "Everyone", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "*",
    "Resource": "*"}]})


@pytest.fixture(scope="module")
def live(sandbox_home):
    eng = make_engine(suffix=SUFFIX)
    eng.up()
    return eng


def _verify():
    from tap_lib.ops.verify import verify

    report = verify("dev", "sandbox", (f"suffix={SUFFIX}",), live=False)
    mine = {c for c, _, _ in cc.TABLE}
    return report.checks[report.checks.control.isin(mine)]


@pytest.mark.sandbox
def test_the_deployed_stack_passes_every_control_but_the_excepted_trail(live):
    rows = _verify()
    # dev has no interface endpoints (a policy exception): nothing to judge for their zones,
    # as Prowler judges none there either
    assert set(rows.control) == {c for c, _, _ in cc.TABLE} - {cc.ENDPOINT_MULTI_AZ}
    off = rows[rows.status != "pass"]
    assert set(off.control) == {cc.LAMBDA_TRAIL} and set(off.status) == {"excepted"}


@pytest.mark.sandbox
def test_a_hand_broken_stack_fails_under_each_control(live):
    """Breaks one resource per control through the API, then verify names each control;
    a trail recording Lambda data events turns the trail control to pass."""
    out, c = live.outputs(), live.clients()
    ec2, lam, iam, logs, kms = (c(s) for s in ("ec2", "lambda", "iam", "logs", "kms"))
    account = out["kms_key_arn"].split(":")[4]
    sg = lam.get_function_configuration(FunctionName=out["lambda_function_name"])[
        "VpcConfig"]["SecurityGroupIds"][0]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[world(22)])
    ec2.create_security_group(GroupName="nobody-uses-me", Description="x", VpcId=out["vpc_id"])
    ec2.allocate_address(Domain="vpc", TagSpecifications=[{
        "ResourceType": "elastic-ip", "Tags": [{"Key": "Stack", "Value": f"TapStack{SUFFIX}"}]}])
    ec2.modify_subnet_attribute(SubnetId=out["private_subnet_ids"][0],
                                MapPublicIpOnLaunch={"Value": True})
    acl = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [out["vpc_id"]]}])[
        "NetworkAcls"][0]["NetworkAclId"]
    ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=50, Protocol="-1",
                                 RuleAction="allow", Egress=False, CidrBlock="0.0.0.0/0")
    endpoint = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [
        out["vpc_id"]]}])["VpcEndpoints"][0]["VpcEndpointId"]
    ec2.modify_vpc_endpoint(VpcEndpointId=endpoint, PolicyDocument=PUBLIC)
    lam.add_permission(FunctionName=out["lambda_function_name"], StatementId="anyone",
                       Action="lambda:InvokeFunction", Principal="*")
    conf = lam.get_function_configuration(FunctionName=out["lambda_function_name"])
    lam.update_function_configuration(FunctionName=out["lambda_function_name"], Environment={
        "Variables": {**conf["Environment"]["Variables"], "API_TOKEN": "s3cr3t-Literal!"}})
    role = conf["Role"].rsplit("/", 1)[-1]
    iam.put_role_policy(RoleName=role, PolicyName="escalate", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
            "iam:PassRole", "lambda:CreateFunction", "lambda:InvokeFunction", "kms:*",
            "cloudtrail:*", "aws-marketplace:Subscribe"]}]}))
    iam.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringLike": {"aws:SourceAccount": "1*"}}}]}))
    kms.put_key_policy(KeyId=out["kms_key_arn"], PolicyName="default", Policy=PUBLIC)
    kms.disable_key_rotation(KeyId=out["kms_key_arn"])
    group = f"/aws/lambda/{out['lambda_function_name']}"
    logs.create_log_stream(logGroupName=group, logStreamName="leak")
    logs.put_log_events(logGroupName=group, logStreamName="leak", logEvents=[
        {"timestamp": int(__import__("time").time() * 1000),
         "message": 'connecting with {"password": "hunter2-leaked"}'}])
    logs.put_resource_policy(policyName="open", policyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
                                                "Action": "logs:GetLogEvents",
                                                "Resource": "*"}]}))
    c("s3").create_bucket(Bucket=f"trail-{SUFFIX}", CreateBucketConfiguration={
        "LocationConstraint": live.settings.region})
    trail = c("cloudtrail")
    trail.create_trail(Name="account-trail", S3BucketName=f"trail-{SUFFIX}")
    trail.put_event_selectors(TrailName="account-trail", EventSelectors=[{
        "ReadWriteType": "All", "DataResources": [
            {"Type": "AWS::Lambda::Function", "Values": ["arn:aws:lambda"]}]}])

    rows = _verify()
    failed = set(rows[rows.status == "fail"].control)
    assert {"EC2.13", cc.SG_ANY_PORT, cc.SG_UNUSED, cc.EIP_UNASSIGNED, cc.SUBNET_PUBLIC_IP,
            cc.NACL_ANY_PORT, cc.ENDPOINT_TRUST, cc.LAMBDA_PUBLIC, cc.LAMBDA_SECRETS,
            cc.IAM_PRIVESC, cc.IAM_KMS, cc.IAM_CLOUDTRAIL, cc.IAM_MARKETPLACE,
            cc.TRUST_ACCOUNT, cc.KMS_PUBLIC, cc.KMS_ROTATION, cc.LOG_SECRETS,
            cc.LOG_PUBLIC} <= failed
    assert not {"EC2.14", cc.SG_ALL_PORTS, cc.LAMBDA_RUNTIME, cc.LAMBDA_VPC,
                cc.KMS_NOT_DELETED} & failed
    assert set(rows[rows.control == cc.LAMBDA_TRAIL].status) == {"pass"}
    assert "hunter2-leaked" not in rows.to_json()        # a leak is counted, never shown
    assert account in rows[rows.control == cc.ENDPOINT_TRUST].expected.str.cat()



def test_a_key_scheduled_for_deletion_fails_kms3_and_still_counts_as_used():
    """Prowler's reading of KMS.3 and kms_cmk_are_used (the emulator answers
    ScheduleKeyDeletion with a server error, so on hand-made facts)."""
    from tap_lib.ops.checks import Declared
    from tap_lib.ops.hardening_compute import ComputeFacts, key_checks

    d = Declared(load_settings("dev"), {"kms_key_arn": f"arn:aws:kms:eu-west-2:{ACCOUNT}:key/k"})
    for state, kms3, used in (("PendingDeletion", "fail", "pass"), ("Disabled", "pass", "fail"),
                              ("Enabled", "pass", "pass")):
        rows = {c.control: c.status for c in key_checks(d, ComputeFacts(
            account=ACCOUNT, key={"KeyState": state}, key_rotation=True, key_policy={}))}
        assert (rows[cc.KMS_NOT_DELETED], rows[cc.KMS_USED]) == (kms3, used), state
        assert (cc.KMS_ROTATION in rows) == (state == "Enabled")   # judged on enabled keys
    assert {c.status for c in key_checks(d, ComputeFacts(account=ACCOUNT))} == {"fail"}


def test_subnets_in_one_zone_or_one_tier_fail_on_hand_made_facts():
    """Settings refuse az_count < 2, so the zone and tier judgements are shown on facts."""
    from tap_lib.ops.checks import Declared
    from tap_lib.ops.facts import Facts
    from tap_lib.ops.hardening_compute import subnet_checks

    d = Declared(load_settings("dev"), {"vpc_id": "vpc-1"})
    subnets = {s: {"SubnetId": s, "AvailabilityZone": "eu-west-2a",
                   "MapPublicIpOnLaunch": s == "s-pub"} for s in ("s-pub", "s-priv")}
    tables = [{"Associations": [{"SubnetId": "s-pub"}],
               "Routes": [{"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": "igw-1"}]},
              {"Associations": [{"Main": True}], "Routes": []}]
    rows = {c.control: c for c in subnet_checks(d, Facts(subnets=subnets, route_tables=tables))}
    assert rows[cc.SUBNETS_AZ].status == "fail" and "1 zone" in rows[cc.SUBNETS_AZ].actual
    assert rows[cc.SUBNETS_TIERS].status == "pass"          # s-priv falls to the main table
    assert rows[cc.SUBNET_PUBLIC_IP].status == "fail" and "s-pub" in rows[
        cc.SUBNET_PUBLIC_IP].actual
    rows = {c.control: c for c in subnet_checks(d, Facts(subnets=subnets,
                                                         route_tables=tables[1:]))}
    assert rows[cc.SUBNETS_TIERS].status == "fail"


def test_an_interface_endpoint_needs_subnets_in_more_than_one_zone():
    """vpc_endpoint_multi_az_enabled as Prowler reads it: Interface endpoints only, more than
    one subnet; preflight judges the program, verify the live endpoints, with one judgement."""
    from tap_lib.ops.checks import Declared
    from tap_lib.ops.facts import Facts
    from tap_lib.ops.hardening_compute import ComputeFacts, acl_and_endpoint_checks

    assert vpc.endpoint_zone_problem("Interface", ["s-a", "s-b"]) is None
    assert vpc.endpoint_zone_problem("Gateway", []) is None
    assert "1 subnet" in vpc.endpoint_zone_problem("Interface", ["s-a"])
    assert vpc.endpoint_zone_problem("interface", []) is not None
    d = Declared(load_settings("prod"), {})
    endpoints = [{"VpcEndpointId": f"vpce-{n}", "VpcEndpointType": "Interface",
                  "ServiceName": "com.amazonaws.eu-west-2.secretsmanager",
                  "SubnetIds": [f"s-{i}" for i in range(n)], "PolicyDocument": "{}"}
                 for n in (1, 3)] + [{"VpcEndpointId": "vpce-gw", "VpcEndpointType": "Gateway",
                                      "ServiceName": "com.amazonaws.eu-west-2.s3"}]
    rows = {c.resource: c.status for c in acl_and_endpoint_checks(
        d, Facts(endpoints=endpoints), ComputeFacts(account=ACCOUNT))
        if c.control == cc.ENDPOINT_MULTI_AZ}
    assert rows == {"vpce-1": "fail", "vpce-3": "pass"}      # the gateway is not judged


def test_an_interface_endpoint_in_one_subnet_fails_prod_preflight(monkeypatch):
    real = network.aws.ec2.VpcEndpoint

    def one_subnet(logical, **kw):
        if kw.get("vpc_endpoint_type") == "Interface":
            kw["subnet_ids"] = kw["subnet_ids"][:1]
        return real(logical, **kw)
    monkeypatch.setattr(network.aws.ec2, "VpcEndpoint", one_subnet)
    report = pf.run_preflight(load_settings("prod"))
    found = [f for f in report.rows if cc.ENDPOINT_MULTI_AZ in controls_of(f.rule)]
    assert found and {f.severity for f in found} == {"error"}
    assert all("1 subnet" in f.message for f in found)
