"""The sandbox answers like AWS for any client (issue 21): every call below is plain boto3 or
psycopg against the emulator's endpoint, as an operator's script would make it; tap is used
only to deploy the stack the module shares and, for `tap db connect`, the one documented step.

The expected shapes are the AWS API Reference's (Lambda Invoke, Secrets Manager RotateSecret,
RDS DescribeDBClusters/DescribeDBInstances/DescribeDBEngineVersions, EC2 DescribeNatGateways),
not values read back from tap's code.
"""
from __future__ import annotations

import base64
import io
import ipaddress
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import uuid
import zipfile
from datetime import datetime, timezone

import boto3
import psycopg
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tap_lib.ops.stack import deploy, destroy, outputs

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]

ENV, TARGET = "dev", "sandbox"
CATALOG = os.path.join(os.path.dirname(__file__), "..", "tap_lib", "data", "engine_versions.json")


@pytest.fixture(scope="module")
def stack(sandbox_home):
    """dev deployed once on the module's own emulator; its outputs (names and ARNs only)."""
    deploy(ENV, TARGET)
    yield outputs(ENV, TARGET)
    destroy(ENV, TARGET, yes=True)


@pytest.fixture(scope="module")
def aws(stack):
    """A user's boto3: the sandbox endpoint and the stack's region, nothing of tap's."""
    region = stack["region"]
    session = boto3.session.Session(aws_access_key_id="testing",
                                    aws_secret_access_key="testing", region_name=region)
    endpoint = f"http://127.0.0.1:{os.environ['TAP_SANDBOX_PORT']}"
    config = Config(retries={"total_max_attempts": 1}, read_timeout=120)
    return lambda service: session.client(service, endpoint_url=endpoint, config=config)


def _secret(aws, arn: str, stage: str = "AWSCURRENT") -> dict:
    return json.loads(aws("secretsmanager").get_secret_value(
        SecretId=arn, VersionStage=stage)["SecretString"])


def _stages(aws, arn: str) -> dict[str, list[str]]:
    return aws("secretsmanager").describe_secret(SecretId=arn)["VersionIdsToStages"]


def _payment() -> dict:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return {"payment_id": f"seed-{stamp}", "amount": "12.50", "currency": "GBP",
            "merchant_id": "m-1", "metadata": {"source": "test_aws_clients"}}


# -- 1. Lambda Invoke runs the function --------------------------------------------------------
def test_the_seeds_idiom_invoke_the_payment_function_and_read_its_result(aws, stack) -> None:
    """As the seed's integration tests do: boto3 invoke, read the Payload, check the record."""
    response = aws("lambda").invoke(FunctionName=stack["lambda_function_name"],
                                    Payload=json.dumps(_payment()).encode())
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    result = json.loads(response["Payload"].read())
    assert result["statusCode"] == 200, result
    body = json.loads(result["body"])
    bucket, _, key = body["log_object"].removeprefix("s3://").partition("/")
    logged = json.loads(aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    assert logged["payment_id"] == body["payment_id"]


@pytest.fixture(scope="module")
def probe(aws, stack):
    """A function of the user's own (plain CreateFunction) that reports what Lambda gave it."""
    code = '''
import json, os, time, boto3
def handler(event, context):
    print("x" * 3000)
    print("marker-" + event.get("mark", ""))
    if event.get("fail"):
        raise KeyError("no such thing")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("put"):
        boto3.client("s3").put_object(Bucket=event["put"], Key="probe", Body=b"ran")
    return {"env": os.environ.get("GREETING"),
            "memory": os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
            "caller": boto3.client("sts").get_caller_identity()["Arn"],
            "remaining_ms": context.get_remaining_time_in_millis()}
'''
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("probe.py", code)
    role = aws("iam").create_role(RoleName="probe-role", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]
    }))["Role"]["Arn"]
    aws("lambda").create_function(FunctionName="probe", Runtime="python3.11", Role=role,
                                  Handler="probe.handler", Code={"ZipFile": archive.getvalue()},
                                  Timeout=2, MemorySize=320,
                                  Environment={"Variables": {"GREETING": "hello"}})
    return "probe"


def test_invoke_runs_with_the_functions_environment_role_and_memory(aws, probe) -> None:
    response = aws("lambda").invoke(FunctionName=probe, Payload=b"{}", LogType="Tail")
    result = json.loads(response["Payload"].read())
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    assert result["env"] == "hello" and result["memory"] == "320"
    assert re.fullmatch(r"arn:aws:sts::\d{12}:assumed-role/probe-role/probe", result["caller"])
    assert 0 < result["remaining_ms"] <= 2000
    tail = base64.b64decode(response["LogResult"])
    assert len(tail) <= 4096                                   # the last 4 KB only
    assert tail.decode().splitlines()[-1].startswith("REPORT RequestId: ")
    assert "Memory Size: 320 MB" in tail.decode()
    assert "LogResult" not in aws("lambda").invoke(FunctionName=probe, Payload=b"{}")


def test_an_exception_is_an_unhandled_function_error(aws, probe) -> None:
    response = aws("lambda").invoke(FunctionName=probe, Payload=b'{"fail": true}')
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    error = json.loads(response["Payload"].read())
    assert error["errorType"] == "KeyError" and "no such thing" in error["errorMessage"]
    assert isinstance(error["stackTrace"], list)


def test_a_timeout_says_task_timed_out_and_the_next_call_gets_a_fresh_environment(
        aws, probe) -> None:
    response = aws("lambda").invoke(FunctionName=probe, Payload=b'{"sleep": 10}')
    assert response["FunctionError"] == "Unhandled"
    assert "Task timed out after 2.00 seconds" in json.loads(
        response["Payload"].read())["errorMessage"]
    again = aws("lambda").invoke(FunctionName=probe, Payload=b"{}", LogType="Tail")
    assert "FunctionError" not in again
    assert "Init Duration" in base64.b64decode(again["LogResult"]).decode()   # a cold start


def test_a_warm_environment_serves_the_next_invocation(aws, probe) -> None:
    """As Lambda reuses an execution environment: no Init phase on the second call."""
    aws("lambda").invoke(FunctionName=probe, Payload=b"{}")
    warm = aws("lambda").invoke(FunctionName=probe, Payload=b"{}", LogType="Tail")
    assert "Init Duration" not in base64.b64decode(warm["LogResult"]).decode()


def test_a_handler_that_does_not_exist_is_an_import_error(aws, probe) -> None:
    lam = aws("lambda")
    role = lam.get_function_configuration(FunctionName=probe)["Role"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("other.py", "def handler(event, context):\n    return 1\n")
    lam.create_function(FunctionName="misnamed", Runtime="python3.11", Role=role,
                        Handler="missing.handler", Code={"ZipFile": archive.getvalue()})
    response = lam.invoke(FunctionName="misnamed", Payload=b"{}")
    assert response["FunctionError"] == "Unhandled"
    error = json.loads(response["Payload"].read())
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert "missing" in error["errorMessage"]


def test_an_event_invocation_answers_202_and_runs_in_the_background(aws, probe, stack) -> None:
    bucket = stack["s3_bucket_name"]
    aws("s3").delete_object(Bucket=bucket, Key="probe")
    response = aws("lambda").invoke(FunctionName=probe, InvocationType="Event",
                                    Payload=json.dumps({"put": bucket}).encode())
    assert response["StatusCode"] == 202
    waiter = aws("s3").get_waiter("object_exists")
    waiter.wait(Bucket=bucket, Key="probe", WaiterConfig={"Delay": 1, "MaxAttempts": 30})


def test_every_run_logs_to_the_functions_log_group(aws, probe) -> None:
    mark = uuid.uuid4().hex
    aws("lambda").invoke(FunctionName=probe, Payload=json.dumps({"mark": mark}).encode())
    events = aws("logs").filter_log_events(logGroupName=f"/aws/lambda/{probe}",
                                           filterPattern=f"marker-{mark}")["events"]
    assert [e["message"] for e in events] == [f"marker-{mark}"]


# -- 2. Rotation through the API ---------------------------------------------------------------
def _login(secret: dict, stack_hosts) -> str:
    host, port = stack_hosts(secret["host"], int(secret["port"]))
    with psycopg.connect(host=host, port=port, user=secret["username"],
                         password=secret["password"], dbname=secret["dbname"],
                         connect_timeout=10) as conn:
        return conn.execute("SELECT current_user").fetchone()[0]


@pytest.fixture(scope="module")
def local_address(stack):
    """Where the secret's endpoint name leads on this machine: the step `tap db connect`
    documents (the sandbox has no DNS for AWS's names)."""
    from tap_lib.engines.registry import open_engine
    from tap_lib.ops.stack import settings_for

    return open_engine(settings_for(ENV), TARGET).db_address


def test_rotate_secret_runs_the_four_steps_and_moves_the_stages(aws, stack,
                                                                local_address) -> None:
    arn = stack["db_secret_arn"]
    sm = aws("secretsmanager")
    before = sm.describe_secret(SecretId=arn)
    old_version = next(v for v, s in before["VersionIdsToStages"].items() if "AWSCURRENT" in s)
    old_password = _secret(aws, arn)["password"]
    sm.rotate_secret(SecretId=arn)                       # no ARN: the configured function
    after = sm.describe_secret(SecretId=arn)
    assert after["RotationLambdaARN"] == before["RotationLambdaARN"]
    assert after["RotationEnabled"] is True
    stages = after["VersionIdsToStages"]
    new_version = next(v for v, s in stages.items() if "AWSCURRENT" in s)
    assert new_version != old_version
    assert "AWSPREVIOUS" in stages[old_version]
    assert all(stages.values())              # only labelled versions are listed, as AWS does
    assert not any("AWSPENDING" in s for s in stages.values())
    current = _secret(aws, arn)
    assert current["password"] != old_password
    plain = sm.get_secret_value(SecretId=arn)           # no stage: AWSCURRENT, as on AWS
    assert plain["VersionId"] == new_version and json.loads(plain["SecretString"]) == current
    assert _login(current, local_address) == current["username"]
    response = aws("lambda").invoke(FunctionName=stack["lambda_function_name"],
                                    Payload=json.dumps(_payment()).encode())
    assert json.loads(response["Payload"].read())["statusCode"] == 200


def test_a_failed_step_keeps_awscurrent_and_clearing_awspending_recovers(aws, stack,
                                                                          local_address) -> None:
    arn, sm, lam = stack["db_secret_arn"], aws("secretsmanager"), aws("lambda")
    rotation = sm.describe_secret(SecretId=arn)["RotationLambdaARN"]
    variables = lam.get_function_configuration(FunctionName=rotation)["Environment"]["Variables"]
    current_version = next(v for v, s in _stages(aws, arn).items() if "AWSCURRENT" in s)
    current = _secret(aws, arn)
    lam.update_function_configuration(FunctionName=rotation, Environment={
        # createSecret writes these facts into the new version; setSecret cannot connect there
        "Variables": {**variables, "DB_HOST": "127.0.0.1", "DB_PORT": "1"}})
    token = str(uuid.uuid4())
    try:
        sm.rotate_secret(SecretId=arn, ClientRequestToken=token)
        stages = _stages(aws, arn)
        assert "AWSCURRENT" in stages[current_version]     # AWSCURRENT did not move
        assert stages[token] == ["AWSPENDING"]
        assert _secret(aws, arn) == current
        assert _login(current, local_address) == current["username"]
        assert sm.describe_secret(SecretId=arn)["RotationLambdaARN"] == rotation
        with pytest.raises(ClientError, match="previous rotation isn't complete"):
            sm.rotate_secret(SecretId=arn, ClientRequestToken=str(uuid.uuid4()))
    finally:
        lam.update_function_configuration(FunctionName=rotation,
                                          Environment={"Variables": variables})
    # A retry reuses the AWSPENDING version, which holds the bad facts: it fails the same way.
    sm.rotate_secret(SecretId=arn, ClientRequestToken=token)
    assert _stages(aws, arn)[token] == ["AWSPENDING"]
    # The operator's recovery on AWS too: drop the unfinished version's label, rotate anew.
    sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSPENDING",
                                   RemoveFromVersionId=token)
    sm.rotate_secret(SecretId=arn)
    stages = _stages(aws, arn)
    assert "AWSPREVIOUS" in stages[current_version] and token not in stages
    assert _login(_secret(aws, arn), local_address) == current["username"]


def test_rotate_secret_without_any_function_is_refused(aws) -> None:
    sm = aws("secretsmanager")
    arn = sm.create_secret(Name=f"plain-{uuid.uuid4().hex[:8]}", SecretString="{}")["ARN"]
    with pytest.raises(ClientError, match="No Lambda rotation function"):
        sm.rotate_secret(SecretId=arn)
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == "{}"


def test_rotating_an_rds_managed_secret_sets_a_new_password_for_the_same_user(
        aws, bare_cluster) -> None:
    """RDS rotates its own secret without a function: never an empty AWSCURRENT."""
    arn, sm = bare_cluster["MasterUserSecret"]["SecretArn"], aws("secretsmanager")
    before = _secret(aws, arn)
    old_version = next(v for v, s in _stages(aws, arn).items() if "AWSCURRENT" in s)
    sm.rotate_secret(SecretId=arn)
    after = _secret(aws, arn)
    assert after["username"] == before["username"] == "someoneelse"
    assert after["password"] and after["password"] != before["password"]
    assert _stages(aws, arn)[old_version] == ["AWSPREVIOUS"]
    assert _secret(aws, arn, "AWSPREVIOUS") == before
    assert json.loads(sm.get_secret_value(SecretId=arn)["SecretString"]) == after


# -- 3. Answers shaped like AWS ----------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(aws, stack) -> dict:
    return aws("rds").describe_db_clusters(
        DBClusterIdentifier=stack["rds_cluster_id"])["DBClusters"][0]


@pytest.fixture(scope="module")
def bare_cluster(aws, cluster) -> dict:
    """A second cluster made the way a user's script would, with no parameter group."""
    rds = aws("rds")
    made = rds.create_db_cluster(DBClusterIdentifier="user-made", Engine="aurora-postgresql",
                                 EngineVersion=cluster["EngineVersion"],
                                 MasterUsername="someoneelse", ManageMasterUserPassword=True)
    yield made["DBCluster"]
    rds.delete_db_cluster(DBClusterIdentifier="user-made", SkipFinalSnapshot=True)


def test_the_rds_managed_secret_holds_the_master_username_and_its_own_password(
        aws, cluster, bare_cluster) -> None:
    mine = _secret(aws, cluster["MasterUserSecret"]["SecretArn"])
    other = _secret(aws, bare_cluster["MasterUserSecret"]["SecretArn"])
    assert set(mine) == {"username", "password"}
    assert mine["username"] == cluster["MasterUsername"]
    assert other["username"] == "someoneelse"
    assert mine["password"] != other["password"]
    assert len(mine["password"]) >= 16 and not set('/@" ') & set(mine["password"])
    assert re.match(r"rds!cluster-", aws("secretsmanager").describe_secret(
        SecretId=cluster["MasterUserSecret"]["SecretArn"])["Name"])


def test_instance_endpoints_share_the_clusters_hash(aws, cluster) -> None:
    region = cluster["DBClusterArn"].split(":")[3]
    match = re.fullmatch(rf"{cluster['DBClusterIdentifier']}\.cluster-([a-z0-9]{{12}})\."
                         rf"{region}\.rds\.amazonaws\.com", cluster["Endpoint"])
    assert match, cluster["Endpoint"]
    instances = aws("rds").describe_db_instances(Filters=[
        {"Name": "db-cluster-id", "Values": [cluster["DBClusterIdentifier"]]}])["DBInstances"]
    assert instances
    for instance in instances:
        assert instance["Endpoint"]["Address"] == (f"{instance['DBInstanceIdentifier']}."
                                                   f"{match[1]}.{region}.rds.amazonaws.com")


def test_a_clusters_defaults_are_auroras(cluster, bare_cluster) -> None:
    major = bare_cluster["EngineVersion"].split(".")[0]
    assert bare_cluster["DBClusterParameterGroup"] == f"default.aurora-postgresql{major}"
    assert bare_cluster["StorageType"] == "aurora"
    assert cluster["StorageType"] == "aurora"
    assert "aurora8.0" not in cluster["DBClusterParameterGroup"]


def test_describe_db_engine_versions_answers_from_the_catalog(aws, cluster) -> None:
    region = cluster["DBClusterArn"].split(":")[3]
    with open(CATALOG) as fh:
        offered = json.load(fh)["engines"]["aurora-postgresql"][region]
    pages = aws("rds").get_paginator("describe_db_engine_versions").paginate(
        Engine="aurora-postgresql")
    versions = [v for page in pages for v in page["DBEngineVersions"]]
    assert sorted(v["EngineVersion"] for v in versions) == sorted(offered)
    for v in versions:
        assert v["Engine"] == "aurora-postgresql"
        assert v["DBParameterGroupFamily"] == f"aurora-postgresql{v['EngineVersion'].split('.')[0]}"
    assert aws("rds").describe_db_engine_versions(Engine="no-such-engine")["DBEngineVersions"] == []


def test_nat_gateways_sit_in_their_subnets_and_honour_tag_filters(aws, stack) -> None:
    ec2 = aws("ec2")
    gateways = ec2.describe_nat_gateways(Filters=[
        {"Name": "vpc-id", "Values": [stack["vpc_id"]]}])["NatGateways"]
    assert gateways
    for gateway in gateways:
        subnet = ec2.describe_subnets(SubnetIds=[gateway["SubnetId"]])["Subnets"][0]
        for address in gateway["NatGatewayAddresses"]:
            assert ipaddress.ip_address(address["PrivateIp"]) in ipaddress.ip_network(
                subnet["CidrBlock"])
    name = next(t["Value"] for t in gateways[0]["Tags"] if t["Key"] == "Name")
    tagged = ec2.describe_nat_gateways(Filters=[{"Name": "tag:Name", "Values": [name]}])
    assert [g["NatGatewayId"] for g in tagged["NatGateways"]] == [gateways[0]["NatGatewayId"]]
    assert ec2.describe_nat_gateways(Filters=[
        {"Name": "tag:Name", "Values": ["no-such-gateway"]}])["NatGateways"] == []


def test_a_functions_vpc_is_its_subnets_vpc(aws, stack) -> None:
    config = aws("lambda").get_function_configuration(
        FunctionName=stack["lambda_function_name"])["VpcConfig"]
    subnets = aws("ec2").describe_subnets(SubnetIds=config["SubnetIds"])["Subnets"]
    assert {s["VpcId"] for s in subnets} == {config["VpcId"]} == {stack["vpc_id"]}


def test_network_acls_filter_by_id(aws, stack) -> None:
    ec2 = aws("ec2")
    acl = ec2.describe_network_acls(Filters=[
        {"Name": "vpc-id", "Values": [stack["vpc_id"]]}])["NetworkAcls"][0]
    found = ec2.describe_network_acls(Filters=[
        {"Name": "network-acl-id", "Values": [acl["NetworkAclId"]]}])["NetworkAcls"]
    assert [a["NetworkAclId"] for a in found] == [acl["NetworkAclId"]]


# -- 4. An operator reaches the database -------------------------------------------------------
def test_db_connect_gives_psycopg_and_psql_what_they_need_and_no_password(
        aws, stack, sandbox_home) -> None:
    from tap_lib.ops.dbconnect import db_connect

    found = db_connect(ENV, TARGET)
    secret = _secret(aws, stack["db_secret_arn"])
    shown = json.dumps(found.to_dict())
    assert secret["password"] not in shown
    assert found.user == secret["username"] and found.dbname == secret["dbname"]
    assert found.endpoint == secret["host"]
    assert found.sslmode == "verify-full" and os.path.exists(found.sslrootcert)
    assert stat.S_IMODE(os.stat(found.passfile).st_mode) == 0o600
    with psycopg.connect(found.conninfo(), connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == secret["username"]
    if shutil.which("psql"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        out = subprocess.run([*shlex.split(found.psql_command()), "-tAc",
                              "SELECT current_database()"], capture_output=True, text=True,
                             env=env, timeout=30, check=False)
        assert out.stdout.strip() == secret["dbname"], out.stderr


def test_db_connect_master_uses_the_rds_managed_secret(aws, cluster) -> None:
    from tap_lib.ops.dbconnect import db_connect

    found = db_connect(ENV, TARGET, secret="master")
    assert found.user == cluster["MasterUsername"]
    with psycopg.connect(found.conninfo(), connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == cluster["MasterUsername"]


def test_rotating_the_clusters_master_secret_takes_effect_on_its_database_at_once(
        aws, cluster) -> None:
    """As on RDS: after the master secret rotates, the new password logs in and the old one
    does not, with no deploy in between."""
    from tap_lib.ops.dbconnect import db_connect

    arn = cluster["MasterUserSecret"]["SecretArn"]
    old = db_connect(ENV, TARGET, secret="master")
    aws("secretsmanager").rotate_secret(SecretId=arn)
    new = db_connect(ENV, TARGET, secret="master")
    assert new.user == cluster["MasterUsername"]
    with psycopg.connect(new.conninfo(), connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == cluster["MasterUsername"]
    password = _secret(aws, arn, "AWSPREVIOUS")["password"]
    assert password != _secret(aws, arn)["password"]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(old.conninfo(), password=password, connect_timeout=10).close()


def test_db_connect_refuses_an_unknown_secret_and_keeps_other_pgpass_lines(stack) -> None:
    from tap_lib.errors import ConfigError
    from tap_lib.ops.dbconnect import db_connect, pgpass_path

    pgpass_path().parent.mkdir(parents=True, exist_ok=True)
    with open(pgpass_path(), "a") as fh:
        fh.write("elsewhere:5432:db:someone:kept\n")
    with pytest.raises(ConfigError, match="secret.*allowed: app, master"):
        db_connect(ENV, TARGET, secret="root")
    found = db_connect(ENV, TARGET)
    lines = pgpass_path().read_text().splitlines()
    assert "elsewhere:5432:db:someone:kept" in lines
    assert sum(line.startswith(f"{found.host}:{found.port}:{found.dbname}:{found.user}:")
               for line in lines) == 1


# -- the seams the patches use -----------------------------------------------------------------
MOTO_SEAMS = [
    ("moto.awslambda.models", "LambdaFunction.invoke"),
    ("moto.awslambda.models", "LambdaFunction.vpc_config"),
    ("moto.awslambda.models", "LambdaFunction.save_logs"),
    ("moto.secretsmanager.models", "SecretsManagerBackend.rotate_secret"),
    ("moto.secretsmanager.models", "SecretsManagerBackend._is_valid_identifier"),
    ("moto.secretsmanager.models", "SecretsManagerBackend._client_request_token_validator"),
    ("moto.secretsmanager.models", "FakeSecret.remove_version_stages_from_old_versions"),
    ("moto.secretsmanager.models", "FakeSecret._form_version_ids_to_stages"),
    ("moto.secretsmanager.models", "FakeSecret.set_default_version_id"),
    ("moto.secretsmanager.models", "SecretsManagerBackend.update_secret_version_stage"),
    ("moto.rds.models", "MasterUserSecret._generate_secret_string"),
    ("moto.rds.models", "DBInstance.address"),
    ("moto.rds.responses", "RDSResponse"),
    ("moto.ec2.models.nat_gateways", "random_private_ip"),
    ("moto.ec2.models.nat_gateways", "NatGatewayBackend.describe_nat_gateways"),
    ("moto.ec2.models.network_acls", "NetworkAcl.get_filter_value"),
    ("moto.s3.models", "FakeBucket._log_permissions_enabled_policy"),
    ("moto.sts.models", "STSBackend.assume_role"),
    ("moto.backup.models", "BackupBackend.create_backup_plan"),
    ("moto.server", "MotoRequestHandler"),
    ("moto.backends", "list_of_moto_modules"),
    ("moto.backends", "get_backend"),
    ("moto.s3.models", "S3Backend.log_incoming_request"),
    ("werkzeug.serving", "DechunkedInput"),
    ("werkzeug.wsgi", "LimitedStream"),
]


@pytest.mark.parametrize("module, attribute", MOTO_SEAMS, ids=[a for _, a in MOTO_SEAMS])
def test_the_moto_internals_the_patches_replace_are_still_there(module, attribute) -> None:
    """tap_lib/engines/sandbox/patches/ replaces these; a moto upgrade that drops one must
    fail here, not in an operator's script."""
    import importlib

    target = importlib.import_module(module)
    for part in attribute.split("."):
        assert hasattr(target, part), f"moto no longer has {module}.{attribute}"
        target = getattr(target, part)


def test_pgpass_lines_escape_colons_and_backslashes_as_libpq_reads_them(
        sandbox_home) -> None:
    """PostgreSQL's pgpass format: fields separated by ':', with '\\:' and '\\\\' escapes."""
    from tap_lib.ops.dbconnect import store_password

    path = store_password("db.example", 5432, "payments", "app", "pa:ss\\word")
    assert "db.example:5432:payments:app:pa\\:ss\\\\word" in path.read_text().splitlines()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
