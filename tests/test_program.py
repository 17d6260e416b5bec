"""The TapStack program under Pulumi's mock runtime: assertions on the synthesized resource graph.

Each environment is synthesized once per module (about 1 s the first time, 0.2 s after) and the
tests read the recorded registrations: types, inputs (camelCase), parents, dependencies, and the
placeholder ids/outputs the resolver answered.
"""
from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pytest
from pulumi.runtime import rpc

from tap_lib.config import Settings, load_settings
from tap_lib.engines.synth import (MOCK_ACCOUNT, PlaceholderResolver, Registration, Synthesis,
                                  synthesize)
from tap_lib.errors import DuplicateUrnError
from tap_lib.naming import RULES, PhysicalNames
from tap_lib.program.entry import define_stack
from tap_lib.project import project_name

ENVS = ("dev", "staging", "prod", "PR6329")

# Resource types.
PROVIDER = "pulumi:providers:aws"
COMPONENT = "tap:index:TapStack"
KMS_KEY = "aws:kms/key:Key"
KMS_ALIAS = "aws:kms/alias:Alias"
VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
IGW = "aws:ec2/internetGateway:InternetGateway"
EIP = "aws:ec2/eip:Eip"
NAT = "aws:ec2/natGateway:NatGateway"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
ROUTE = "aws:ec2/route:Route"
RTA = "aws:ec2/routeTableAssociation:RouteTableAssociation"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
SG = "aws:ec2/securityGroup:SecurityGroup"
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
DB_SUBNET_GROUP = "aws:rds/subnetGroup:SubnetGroup"
CLUSTER = "aws:rds/cluster:Cluster"
CLUSTER_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
SECRET = "aws:secretsmanager/secret:Secret"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
SECRET_ROTATION = "aws:secretsmanager/secretRotation:SecretRotation"
FUNCTION = "aws:lambda/function:Function"
PERMISSION = "aws:lambda/permission:Permission"
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
BUCKET_SSE = ("aws:s3/bucketServerSideEncryptionConfiguration:"
              "BucketServerSideEncryptionConfiguration")
BUCKET_PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
# Issue 19's hardening (S3.9/S3.12/S3.15, EC2.2/EC2.10/EC2.21, RDS.6/RDS.38, backup, DLQ, secret).
BUCKET_OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
BUCKET_OBJECT_LOCK = "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"
BUCKET_LOGGING = "aws:s3/bucketLogging:BucketLogging"
DEFAULT_SG = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
DEFAULT_NACL = "aws:ec2/defaultNetworkAcl:DefaultNetworkAcl"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
CLUSTER_PARAMS = "aws:rds/clusterParameterGroup:ClusterParameterGroup"
ROLE_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
QUEUE = "aws:sqs/queue:Queue"
SECRET_POLICY = "aws:secretsmanager/secretPolicy:SecretPolicy"
BACKUP_VAULT = "aws:backup/vault:Vault"
BACKUP_PLAN = "aws:backup/plan:Plan"
BACKUP_SELECTION = "aws:backup/selection:Selection"
BUCKET_NOTIFICATION = "aws:s3/bucketNotification:BucketNotification"
REPORT_PLAN = "aws:backup/reportPlan:ReportPlan"

# The whole stack of DESIGN.md: every one of these must be in every environment's plan.
EXPECTED_TYPES = (
    PROVIDER, COMPONENT, KMS_KEY, KMS_ALIAS, VPC, SUBNET, IGW, EIP, NAT, ROUTE_TABLE, ROUTE, RTA,
    FLOW_LOG, LOG_GROUP, ROLE, ROLE_POLICY, SG, SG_INGRESS, SG_EGRESS, DB_SUBNET_GROUP, CLUSTER,
    CLUSTER_INSTANCE, SECRET, SECRET_VERSION, SECRET_ROTATION, FUNCTION, PERMISSION, BUCKET,
    BUCKET_VERSIONING, BUCKET_SSE, BUCKET_PAB, BUCKET_POLICY, BUCKET_LIFECYCLE,
    BUCKET_OWNERSHIP, BUCKET_OBJECT_LOCK, BUCKET_LOGGING, DEFAULT_SG, DEFAULT_NACL, VPC_ENDPOINT,
    CLUSTER_PARAMS, ROLE_ATTACHMENT, QUEUE, SECRET_POLICY, BACKUP_VAULT, BACKUP_PLAN,
    BACKUP_SELECTION, BUCKET_NOTIFICATION, REPORT_PLAN,
)

# Outputs DESIGN.md ("Contracts other parts rely on") says the stack exports at least.
DESIGN_OUTPUTS = ("vpc_id", "public_subnet_ids", "private_subnet_ids", "nat_gateway_ids",
                  "rds_cluster_id", "rds_cluster_endpoint", "db_secret_arn",
                  "lambda_function_name", "lambda_function_arn", "s3_bucket_name", "region")

# (resource type, input holding its physical name, naming rule).
PHYSICAL_NAME_INPUTS = (
    (CLUSTER, "clusterIdentifier", "rds_cluster"),
    (CLUSTER_INSTANCE, "identifier", "rds_instance"),
    (DB_SUBNET_GROUP, "name", "db_subnet_group"),
    (BUCKET, "bucket", "s3_bucket"),
    (FUNCTION, "name", "lambda_function"),
    (ROLE, "name", "iam_role"),
    (SECRET, "name", "secret"),
    (LOG_GROUP, "name", "log_group"),
    (SG, "name", "security_group"),
    (KMS_ALIAS, "name", "kms_alias"),
    (CLUSTER_PARAMS, "name", "rds_parameter_group"),
    (QUEUE, "name", "sqs_queue"),
    (BACKUP_VAULT, "name", "backup_vault"),
    (BACKUP_PLAN, "name", "backup_plan"),
    (BACKUP_SELECTION, "name", "backup_selection"),
)


# -- synthesis cache ----------------------------------------------------------------------------

def load_for(key: str) -> Settings:
    """Settings of one test environment; "PR6329" is dev with ENVIRONMENT_SUFFIX=PR6329."""
    with pytest.MonkeyPatch.context() as mp:
        if key == "PR6329":
            mp.setenv("ENVIRONMENT_SUFFIX", "PR6329")
            return load_settings("dev")
        mp.delenv("ENVIRONMENT_SUFFIX", raising=False)
        return load_settings(key)


class Graph:
    """A synthesis plus lookups by type, name and id."""

    def __init__(self, settings: Settings, syn: Synthesis):
        self.settings, self.syn = settings, syn
        self.names = PhysicalNames.create(project_name(), settings.suffix, settings.region,
                                          MOCK_ACCOUNT, settings.db.instances,
                                          settings.db.engine_version.split(".")[0])

    def all(self, type_: str) -> list[Registration]:
        return self.syn.of_type(type_)

    def one(self, type_: str) -> Registration:
        found = self.all(type_)
        assert len(found) == 1, f"expected one {type_}, found {[r.name for r in found]}"
        return found[0]

    def by_id(self, type_: str) -> dict[str, Registration]:
        return {r.id: r for r in self.all(type_)}

    def subnets(self, tier: str) -> list[Registration]:
        return [r for r in self.all(SUBNET) if r.inputs["tags"]["Tier"] == tier]

    def bucket(self) -> Registration:
        """The transaction-log bucket: since issue 19 the stack also has an access-log bucket."""
        found = [r for r in self.all(BUCKET) if r.name.startswith("transaction-logs-")]
        assert len(found) == 1, f"no single transaction-logs bucket in {self.all(BUCKET)}"
        return found[0]

    def of_bucket(self, type_: str, bucket: Registration) -> Registration:
        """The one `type_` resource configuring `bucket`."""
        found = [r for r in self.all(type_) if r.inputs.get("bucket") == bucket.id]
        assert len(found) == 1, f"expected one {type_} on {bucket.name}, found {found}"
        return found[0]

    def function(self, physical_name: str) -> Registration:
        found = [r for r in self.all(FUNCTION) if r.inputs.get("name") == physical_name]
        assert len(found) == 1, f"no single Lambda named {physical_name!r}"
        return found[0]

    def component(self) -> Registration:
        return self.one(COMPONENT)


@pytest.fixture(scope="module")
def graphs():
    cache: dict[str, Graph] = {}

    def get(key: str) -> Graph:
        if key not in cache:
            settings = load_for(key)
            cache[key] = Graph(settings, synthesize(settings))
        return cache[key]

    return get


@pytest.fixture(params=ENVS)
def graph(request, graphs) -> Graph:
    return graphs(request.param)


# -- synthesis as a whole -----------------------------------------------------------------------

def test_every_environment_synthesizes_without_error(graph):
    syn = graph.syn
    assert syn.error is None, repr(syn.error)
    assert syn.duplicates == []
    assert syn.stack == graph.settings.stack_name
    assert len(syn.resources) >= 40


def test_pr_stack_from_environment_suffix(monkeypatch):
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "PR6329")
    settings = load_settings("dev")
    assert settings.suffix == "PR6329"
    syn = synthesize(settings)
    assert syn.error is None, repr(syn.error)
    assert syn.stack == "TapStackPR6329"
    assert all(r.urn.startswith("urn:pulumi:TapStackPR6329::TapStack::")
               for r in syn.registrations)
    (cluster,) = syn.of_type(CLUSTER)
    assert cluster.inputs["clusterIdentifier"] == "tapstack-payments-pr6329"


def test_zero_deprecation_warnings(graph):
    assert graph.syn.warnings == []


def test_whole_stack_is_in_the_plan(graph):
    s = graph.settings
    present = {r.type for r in graph.syn.registrations}
    missing = [t for t in EXPECTED_TYPES if t not in present]
    assert missing == []
    az = s.vpc.az_count
    interface = len(s.vpc.interface_endpoints)   # dev: none (a policy exception), else 2
    expected_counts = {
        PROVIDER: 1, COMPONENT: 1, VPC: 1, IGW: 1, SUBNET: 2 * az, EIP: s.nat_count,
        NAT: s.nat_count, ROUTE_TABLE: 1 + az, ROUTE: 1 + az, RTA: 2 * az,
        CLUSTER: 1, CLUSTER_INSTANCE: s.db.instances, DB_SUBNET_GROUP: 1, FUNCTION: 2,
        # roles: flow logs, payment, rotation + RDS enhanced monitoring and AWS Backup (issue 19);
        # inline policies: flow logs, payment, rotation + each function's DLQ send policy
        ROLE: 5, ROLE_POLICY: 5, LOG_GROUP: 3, SECRET: 1, SECRET_ROTATION: 1,
        # the interface endpoints get their own security group (admits 443 from the Lambdas)
        SG: 2 + (1 if interface else 0),
        PERMISSION: 1, FLOW_LOG: 1, KMS_KEY: 1, KMS_ALIAS: 1,
        # transaction logs + their server access-log target (S3.9): each bucket is configured
        # by its own versioning, SSE, public access block, policy, lifecycle and ownership
        BUCKET: 2, BUCKET_POLICY: 2, BUCKET_VERSIONING: 2, BUCKET_SSE: 2, BUCKET_PAB: 2,
        BUCKET_LIFECYCLE: 2, BUCKET_OWNERSHIP: 2,
        # only the transaction-log bucket has a default retention and logs its access
        BUCKET_OBJECT_LOCK: 1, BUCKET_LOGGING: 1,
        DEFAULT_SG: 1, DEFAULT_NACL: 1, VPC_ENDPOINT: 1 + interface,   # S3 gateway + interface
        CLUSTER_PARAMS: 1, QUEUE: 1, SECRET_POLICY: 1,
        # monitoring role: AmazonRDSEnhancedMonitoringRole; backup role: backup + restore
        ROLE_ATTACHMENT: 3,
        BACKUP_VAULT: 1, BACKUP_PLAN: 1, BACKUP_SELECTION: 1,
        # both buckets send their events to EventBridge; one job report plan
        BUCKET_NOTIFICATION: 2, REPORT_PLAN: 1,
    }
    counts = {t: len(graph.all(t)) for t in expected_counts}
    assert counts == expected_counts


def test_stack_is_instantiated_once_and_owns_every_resource(graph):
    component = graph.component()
    assert component.name == f"{project_name()}-{graph.settings.suffix}"
    provider = graph.one(PROVIDER)
    for reg in graph.syn.resources:
        assert reg.parent == component.urn, f"{reg.urn} is outside the TapStack component"
    assert len({r.urn for r in graph.syn.registrations}) == len(graph.syn.registrations)
    assert provider.parent != component.urn  # the provider is the stack's, passed in


# -- network ------------------------------------------------------------------------------------

def test_subnets_spread_one_per_az(graph):
    s = graph.settings
    vpc = graph.one(VPC)
    vpc_net = ipaddress.IPv4Network(vpc.inputs["cidrBlock"])
    assert vpc.inputs["cidrBlock"] == s.vpc.cidr
    assert vpc.inputs["enableDnsSupport"] is True and vpc.inputs["enableDnsHostnames"] is True
    all_cidrs = []
    for tier in ("public", "private"):
        subnets = graph.subnets(tier)
        azs = [sn.inputs["availabilityZone"] for sn in subnets]
        assert sorted(azs) == sorted(s.availability_zones)
        assert len(set(azs)) == len(azs) == s.vpc.az_count
        assert all(az.startswith(s.region) for az in azs)
        for sn in subnets:
            assert sn.inputs["vpcId"] == vpc.id
            assert sn.inputs["mapPublicIpOnLaunch"] is False
            net = ipaddress.IPv4Network(sn.inputs["cidrBlock"])
            assert net.subnet_of(vpc_net)
            all_cidrs.append(net)
    for i, a in enumerate(all_cidrs):
        for b in all_cidrs[i + 1:]:
            assert not a.overlaps(b), f"{a} overlaps {b}"


EXPECTED_NATS = {"dev": 1, "staging": 2, "prod": 3, "PR6329": 1}


def test_nat_and_eip_layout(graph, request):
    key = request.node.callspec.params["graph"]
    nats, eips = graph.all(NAT), graph.all(EIP)
    assert len(nats) == len(eips) == EXPECTED_NATS[key] == graph.settings.nat_count
    assert all(e.inputs.get("domain") == "vpc" for e in eips)
    assert all("vpc" not in e.inputs for e in eips)  # the argument pulumi-aws 7 removed
    public_ids = {sn.id for sn in graph.subnets("public")}
    eip_ids = {e.id for e in eips}
    nat_subnets = [n.inputs["subnetId"] for n in nats]
    assert set(nat_subnets) <= public_ids
    assert len(set(nat_subnets)) == len(nats), "two NAT gateways share a public subnet"
    allocations = [n.inputs["allocationId"] for n in nats]
    assert sorted(allocations) == sorted(eip_ids), "each NAT needs its own Elastic IP"


def _private_default_routes(graph: Graph) -> dict[str, Registration]:
    """private subnet id -> its route table's 0.0.0.0/0 route."""
    rt_of_subnet = {a.inputs["subnetId"]: a.inputs["routeTableId"] for a in graph.all(RTA)}
    default_routes = {r.inputs["routeTableId"]: r for r in graph.all(ROUTE)
                      if r.inputs.get("destinationCidrBlock") == "0.0.0.0/0"}
    return {sn.id: default_routes.get(rt_of_subnet.get(sn.id))
            for sn in graph.subnets("private")}


def test_private_route_tables_route_through_nat(graph):
    nat_ids = {n.id for n in graph.all(NAT)}
    routes = _private_default_routes(graph)
    assert len(routes) == graph.settings.vpc.az_count
    for subnet_id, route in routes.items():
        assert route is not None, f"private subnet {subnet_id} has no default route"
        assert route.inputs.get("natGatewayId") in nat_ids
        assert "gatewayId" not in route.inputs  # never straight to the internet gateway


def test_public_subnets_route_to_internet_gateway(graph):
    igw = graph.one(IGW)
    rt_of_subnet = {a.inputs["subnetId"]: a.inputs["routeTableId"] for a in graph.all(RTA)}
    default_routes = {r.inputs["routeTableId"]: r for r in graph.all(ROUTE)
                      if r.inputs.get("destinationCidrBlock") == "0.0.0.0/0"}
    for sn in graph.subnets("public"):
        assert default_routes[rt_of_subnet[sn.id]].inputs.get("gatewayId") == igw.id


@pytest.mark.parametrize("key", ["staging", "prod"])
def test_per_az_nat_keeps_egress_in_the_az(graphs, key):
    graph = graphs(key)
    az_of_subnet = {sn.id: sn.inputs["availabilityZone"] for sn in graph.all(SUBNET)}
    nat_az = {n.id: az_of_subnet[n.inputs["subnetId"]] for n in graph.all(NAT)}
    for subnet_id, route in _private_default_routes(graph).items():
        assert nat_az[route.inputs["natGatewayId"]] == az_of_subnet[subnet_id]


def test_flow_logs_capture_all_traffic(graph):
    flow = graph.one(FLOW_LOG)
    assert flow.inputs["vpcId"] == graph.one(VPC).id
    assert flow.inputs["trafficType"] == "ALL"
    log_group = [g for g in graph.all(LOG_GROUP) if g.inputs["name"] == graph.names.flow_log_group]
    assert len(log_group) == 1
    assert flow.inputs["logDestination"] == log_group[0].outputs["arn"]


# -- names --------------------------------------------------------------------------------------

def test_every_physical_name_is_valid_and_comes_from_naming(graph):
    found: list[str] = []
    for type_, key, kind in PHYSICAL_NAME_INPUTS:
        regs = graph.all(type_)
        assert regs, f"no {type_} registered"
        for reg in regs:
            name = reg.inputs.get(key)
            assert isinstance(name, str), f"{reg.urn} has no explicit {key} (auto-named)"
            assert RULES[kind].problems(name) == [], f"{reg.urn}: {name!r}"
            found.append(name)
    # The endpoints' security group exists only where interface endpoints are wanted (dev
    # excepts EC2.10 and has none); every other name of naming.py is used.
    expected = [name for field, _, name in graph.names.items()
                if field != "endpoint_security_group" or graph.settings.vpc.interface_endpoints]
    assert sorted(found) == sorted(expected)


def test_pr_stack_names_are_lowercase(graphs):
    graph = graphs("PR6329")
    for type_, key, _ in PHYSICAL_NAME_INPUTS:
        for reg in graph.all(type_):
            name = reg.inputs[key]
            assert name == name.lower(), name
            assert "pr6329" in name


def test_bucket_name_is_stable_across_syntheses(graphs):
    first = {b.name: b.inputs["bucket"] for b in graphs("dev").all(BUCKET)}
    assert len(first) == 2   # transaction logs and their access-log bucket
    again = synthesize(load_for("dev"))
    assert again.error is None
    assert {b.name: b.inputs["bucket"] for b in again.of_type(BUCKET)} == first


def test_bucket_name_differs_between_stacks(graphs):
    names = {(key, b.name): b.inputs["bucket"] for key in ENVS for b in graphs(key).all(BUCKET)}
    assert len(set(names.values())) == 2 * len(ENVS), names


# -- region -------------------------------------------------------------------------------------

def test_region_comes_from_the_environment_file(graph):
    s = graph.settings
    import yaml

    from tap_lib.project import params_dir

    file_region = yaml.safe_load((params_dir() / f"{s.environment}.yaml").read_text())["region"]
    provider = graph.one(PROVIDER)
    assert provider.inputs["region"] == s.region == file_region
    assert graph.syn.outputs["region"] == s.region
    for reg in graph.syn.resources:
        assert reg.provider.startswith(provider.urn + "::"), \
            f"{reg.urn} does not use the stack's explicit provider"


def test_ambient_region_is_ignored(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    settings = load_for("dev")
    syn = synthesize(settings)
    assert syn.error is None
    (provider,) = syn.of_type(PROVIDER)
    assert provider.inputs["region"] == "eu-west-2"
    assert syn.outputs["region"] == "eu-west-2"


# -- database -----------------------------------------------------------------------------------

def test_database_is_private_and_encrypted(graph):
    s = graph.settings
    cluster = graph.one(CLUSTER)
    key = graph.one(KMS_KEY)
    subnet_group = graph.one(DB_SUBNET_GROUP)
    db_sg = [g for g in graph.all(SG) if g.inputs["name"] == graph.names.db_security_group][0]
    assert cluster.inputs["engine"] == "aurora-postgresql"
    assert cluster.inputs["engineVersion"] == s.db.engine_version
    assert cluster.inputs["storageEncrypted"] is True
    assert cluster.inputs["kmsKeyId"] == key.outputs["arn"]
    assert cluster.inputs["manageMasterUserPassword"] is True
    assert "masterPassword" not in cluster.inputs
    assert cluster.inputs["dbSubnetGroupName"] == subnet_group.inputs["name"]
    assert cluster.inputs["vpcSecurityGroupIds"] == [db_sg.id]
    assert cluster.inputs["deletionProtection"] is s.db.deletion_protection
    assert cluster.inputs["backupRetentionPeriod"] == s.db.backup_retention_days
    private_ids = sorted(sn.id for sn in graph.subnets("private"))
    assert sorted(subnet_group.inputs["subnetIds"]) == private_ids
    instances = graph.all(CLUSTER_INSTANCE)
    assert len(instances) == s.db.instances
    for inst in instances:
        assert inst.inputs["publiclyAccessible"] is False
        assert inst.inputs["clusterIdentifier"] == cluster.id
        assert inst.inputs["dbSubnetGroupName"] == subnet_group.inputs["name"]
        assert inst.inputs["instanceClass"] == s.db.instance_class
    assert key.inputs["enableKeyRotation"] is True


def test_db_security_group_admits_only_the_lambda_security_group(graph):
    sgs = {g.inputs["name"]: g for g in graph.all(SG)}
    db_sg = sgs[graph.names.db_security_group]
    lambda_sg = sgs[graph.names.lambda_security_group]
    assert "ingress" not in db_sg.inputs  # no inline rules
    rules = [r for r in graph.syn.resources
             if r.inputs.get("securityGroupId") == db_sg.id and "ngress" in r.type]
    assert rules, "the DB security group admits nothing"
    port = graph.settings.db.port
    for rule in rules:
        assert rule.type == SG_INGRESS
        assert rule.inputs["referencedSecurityGroupId"] == lambda_sg.id
        assert not {"cidrIpv4", "cidrIpv6", "prefixListId"} & rule.inputs.keys()
        assert (rule.inputs["fromPort"], rule.inputs["toPort"]) == (port, port)
    # nothing else opens the DB security group either
    assert not [r for r in graph.syn.resources if r.type == SG_EGRESS
                and r.inputs.get("securityGroupId") == db_sg.id
                and "cidrIpv4" in r.inputs]


def test_engine_version_override_reaches_the_cluster():
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ENVIRONMENT_SUFFIX", raising=False)
        settings = load_settings("dev", ["db.engine_version=15.10"])
    syn = synthesize(settings)
    assert syn.error is None
    (cluster,) = syn.of_type(CLUSTER)
    assert cluster.inputs["engineVersion"] == "15.10"
    assert {i.inputs["engineVersion"] for i in syn.of_type(CLUSTER_INSTANCE)} == {"15.10"}


def test_prod_is_hardened(graphs):
    graph = graphs("prod")
    s = graph.settings
    cluster = graph.one(CLUSTER)
    assert cluster.inputs["deletionProtection"] is True
    assert cluster.inputs["backupRetentionPeriod"] >= 7
    assert cluster.inputs["skipFinalSnapshot"] is False
    final = cluster.inputs["finalSnapshotIdentifier"]
    assert RULES["rds_cluster"].problems(final[:63]) == [] and len(final) <= 255
    assert len(graph.all(CLUSTER_INSTANCE)) >= 2
    azs = {sn.inputs["availabilityZone"] for sn in graph.all(SUBNET)}
    assert len(azs) == 3 == s.vpc.az_count
    assert len(graph.all(NAT)) == 3


def test_dev_can_be_torn_down(graphs):
    cluster = graphs("dev").one(CLUSTER)
    assert cluster.inputs["deletionProtection"] is False
    assert cluster.inputs["skipFinalSnapshot"] is True


# -- secret rotation and functions ---------------------------------------------------------------

def test_rotation_uses_a_lambda_of_the_same_stack(graph):
    names = graph.names
    secret = graph.one(SECRET)
    rotation_fn = graph.function(names.rotation_function)
    rotation = graph.one(SECRET_ROTATION)
    permission = graph.one(PERMISSION)
    assert rotation.inputs["secretId"] == secret.id
    assert rotation.inputs["rotationLambdaArn"] == rotation_fn.outputs["arn"]
    assert rotation_fn.parent == rotation.parent == graph.component().urn
    assert rotation.inputs["rotationRules"]["automaticallyAfterDays"] == \
        graph.settings.secrets.rotation_days
    assert permission.inputs["principal"] == "secretsmanager.amazonaws.com"
    assert permission.inputs["action"] == "lambda:InvokeFunction"
    assert permission.inputs["function"] == rotation_fn.inputs["name"] == names.rotation_function
    assert permission.inputs["sourceArn"] == secret.outputs["arn"]
    # rotation is configured only once Secrets Manager may invoke the function
    assert permission.urn in rotation.dependencies
    assert rotation_fn.urn in rotation.dependencies


class _WithResourceIds(PlaceholderResolver):
    """Placeholders, plus the resource id AWS gives every new cluster."""

    def resource(self, reg: Registration):
        id_, outputs = super().resource(reg)
        if reg.type == CLUSTER:
            outputs["clusterResourceId"] = "cluster-TESTRESOURCEID"
        return id_, outputs


def test_rotation_runs_again_when_what_it_established_changes(graph):
    """The first rotation creates the app role in the cluster's database and names the user in
    the secret; a new cluster (its resource id changes with every replacement), database or
    user replaces the schedule, which rotates on creation. Delete before replace: the old
    schedule's delete (CancelRotateSecret, same secret) must not come after the new one."""
    rotation, s = graph.one(SECRET_ROTATION), graph.settings
    assert rotation.delete_before_replace is True
    assert rotation.inputs.get("rotateImmediately") in (None, True)   # provider default: true
    assert rotation.replacement_trigger == {   # preview: the cluster's id is not known yet
        "cluster": rpc.UNKNOWN, "database": s.db.database_name, "username": s.db.app_username}
    deployed = synthesize(s, _WithResourceIds(s.region), preview=False)
    trigger = next(r for r in deployed.registrations if r.type == SECRET_ROTATION
                   ).replacement_trigger
    assert trigger == {"cluster": "cluster-TESTRESOURCEID", "database": s.db.database_name,
                       "username": s.db.app_username}
    others = [r.name for r in graph.syn.registrations if r is not rotation and (
        r.replacement_trigger is not None or r.delete_before_replace is not None
        or r.replace_on_changes)]
    assert others == []


def test_functions_run_in_private_subnets(graph):
    private_ids = sorted(sn.id for sn in graph.subnets("private"))
    lambda_sg = [g for g in graph.all(SG) if g.inputs["name"] == graph.names.lambda_security_group]
    for fn in graph.all(FUNCTION):
        assert sorted(fn.inputs["vpcConfig"]["subnetIds"]) == private_ids
        assert fn.inputs["vpcConfig"]["securityGroupIds"] == [lambda_sg[0].id]
        assert fn.inputs["handler"] == "handler.lambda_handler"


def test_payment_function_gets_secret_and_bucket(graph):
    payment = graph.function(graph.names.payment_function)
    variables = payment.inputs["environment"]["variables"]
    assert variables["DB_SECRET_ARN"] == graph.one(SECRET).outputs["arn"]
    assert variables["BUCKET_NAME"] == graph.bucket().inputs["bucket"]
    assert payment.inputs["memorySize"] == graph.settings.function.memory_mb


def test_functions_read_the_connection_from_their_environment(graph):
    """Where the database is travels in the functions' environment (updated in place); the
    secret's first version is only initial: a change must never replace it (no password)."""
    cluster, s = graph.one(CLUSTER), graph.settings
    connection = {"DB_HOST": cluster.outputs["endpoint"], "DB_PORT": str(s.db.port),
                  "DB_NAME": s.db.database_name}
    for name in (graph.names.payment_function, graph.names.rotation_function):
        variables = graph.function(name).inputs["environment"]["variables"]
        assert {k: variables[k] for k in connection} == connection, name
    rotation_env = graph.function(graph.names.rotation_function).inputs["environment"][
        "variables"]
    assert rotation_env["DB_USERNAME"] == s.db.app_username
    assert rotation_env["MASTER_SECRET_ARN"] == \
        cluster.outputs["masterUserSecrets"][0]["secretArn"]
    initial = graph.one(SECRET_VERSION)
    assert initial.ignore_changes == ["secretString"]
    assert "password" not in initial.inputs["secretString"]


def test_transaction_log_bucket_is_private_versioned_and_encrypted(graph):
    bucket = graph.bucket()
    assert bucket.inputs["bucket"] == graph.names.s3_bucket
    of = lambda type_: graph.of_bucket(type_, bucket)  # noqa: E731
    for type_ in (BUCKET_VERSIONING, BUCKET_SSE, BUCKET_PAB, BUCKET_POLICY, BUCKET_LIFECYCLE,
                  BUCKET_OWNERSHIP, BUCKET_OBJECT_LOCK, BUCKET_LOGGING):
        assert of(type_).inputs["bucket"] == bucket.id, type_
    assert of(BUCKET_VERSIONING).inputs["versioningConfiguration"]["status"] == "Enabled"
    sse = of(BUCKET_SSE).inputs["rules"][0]["applyServerSideEncryptionByDefault"]
    assert sse == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": graph.one(KMS_KEY).outputs["arn"]}
    pab = of(BUCKET_PAB).inputs
    assert all(pab[k] is True for k in ("blockPublicAcls", "blockPublicPolicy",
                                        "ignorePublicAcls", "restrictPublicBuckets"))
    assert '"aws:SecureTransport": "false"' in of(BUCKET_POLICY).inputs["policy"]
    # issue 19: ACLs disabled (S3.12), Object Lock at creation (S3.15), access logged (S3.9)
    assert of(BUCKET_OWNERSHIP).inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    assert bucket.inputs["objectLockEnabled"] is True
    lock = of(BUCKET_OBJECT_LOCK).inputs
    assert lock["objectLockEnabled"] == "Enabled"
    assert lock["rule"]["defaultRetention"] == {"mode": graph.settings.bucket.object_lock_mode,
                                                "days": graph.settings.bucket.object_lock_days}
    logs = [b for b in graph.all(BUCKET) if b is not bucket]
    assert [b.inputs["bucket"] for b in logs] == [graph.names.s3_access_log_bucket]
    assert of(BUCKET_LOGGING).inputs["targetBucket"] == logs[0].id


def test_both_buckets_send_events_and_backup_jobs_are_reported_to_the_log_bucket(graph):
    """s3_bucket_event_notifications_enabled and backup_reportplans_exist are met, not
    excepted: each bucket's events go to EventBridge, and a job report plan named as verify
    looks for it (hardening_storage.report_plan_name) writes to the access-log bucket, whose
    policy lets AWS Backup's reports role put there, under the report prefix only."""
    from tap_lib.ops.hardening_storage import report_plan_name
    from tap_lib.program.storage import BACKUP_REPORT_PREFIX
    for bucket in graph.all(BUCKET):
        assert graph.of_bucket(BUCKET_NOTIFICATION, bucket).inputs["eventbridge"] is True
    plan = graph.one(REPORT_PLAN)
    assert plan.inputs["name"] == report_plan_name(graph.names.backup_plan)
    assert plan.inputs["reportSetting"]["reportTemplate"] == "BACKUP_JOB_REPORT"
    channel = plan.inputs["reportDeliveryChannel"]
    assert channel["s3BucketName"] == graph.names.s3_access_log_bucket
    assert channel["s3KeyPrefix"] == BACKUP_REPORT_PREFIX
    logs = next(b for b in graph.all(BUCKET) if b is not graph.bucket())
    policy = json.loads(graph.of_bucket(BUCKET_POLICY, logs).inputs["policy"])
    grant = next(st for st in policy["Statement"] if st.get("Sid") == "BackupReportsDelivery")
    assert grant["Principal"] == {"AWS": f"arn:aws:iam::{MOCK_ACCOUNT}:root"}
    assert grant["Resource"].endswith(f"/{BACKUP_REPORT_PREFIX}/*")
    assert grant["Condition"]["ArnLike"]["aws:PrincipalArn"].endswith(
        "/reports.backup.amazonaws.com/AWSServiceRoleForBackupReports")
    assert MOCK_ACCOUNT in grant["Condition"]["ArnLike"]["aws:PrincipalArn"]
    assert graph.settings.exception_for("s3_bucket_event_notifications_enabled", "all") is None
    assert graph.settings.exception_for("backup_reportplans_exist", "backup-plan") is None


# -- outputs ------------------------------------------------------------------------------------

def test_exports_every_design_output(graph):
    out = graph.syn.outputs
    missing = [k for k in DESIGN_OUTPUTS if k not in out]
    assert missing == []
    names = graph.names
    assert out["vpc_id"] == graph.one(VPC).id
    assert out["public_subnet_ids"] == [sn.id for sn in graph.subnets("public")]
    assert out["private_subnet_ids"] == [sn.id for sn in graph.subnets("private")]
    assert sorted(out["nat_gateway_ids"]) == sorted(n.id for n in graph.all(NAT))
    assert out["rds_cluster_id"] == names.rds_cluster
    assert out["rds_cluster_endpoint"] == graph.one(CLUSTER).outputs["endpoint"]
    assert out["db_secret_arn"] == graph.one(SECRET).outputs["arn"]
    assert out["lambda_function_name"] == names.payment_function
    assert out["lambda_function_arn"] == graph.function(names.payment_function).outputs["arn"]
    assert out["s3_bucket_name"] == names.s3_bucket == graph.bucket().inputs["bucket"]
    # issue 19: verify reads the access-log bucket and the Lambdas' group from the outputs
    assert out["s3_access_log_bucket_name"] == names.s3_access_log_bucket
    lambda_sg = [g for g in graph.all(SG) if g.inputs["name"] == names.lambda_security_group]
    assert out["lambda_security_group_id"] == lambda_sg[0].id
    assert out["region"] == graph.settings.region


# -- packaging ----------------------------------------------------------------------------------

@pytest.mark.parametrize("function", ["payment", "rotation"])
def test_function_code_is_a_packaged_archive(graphs, function):
    graph = graphs("dev")
    name = getattr(graph.names, f"{function}_function")
    code = graph.function(name).inputs["code"]
    assert isinstance(code, pulumi.AssetArchive)
    files = code.assets
    assert isinstance(files["handler.py"], pulumi.FileAsset)
    handler_path = Path(files["handler.py"].path)
    assert handler_path.parts[-3:] == ("lambdas", function, "handler.py")
    assert handler_path.is_file()
    assert "pg8000/__init__.py" in files
    assert any(k.startswith("pg8000/") and k != "pg8000/__init__.py" for k in files)
    assert not [k for k in files if "__pycache__" in k or k.endswith(".pyc")]
    for asset in files.values():
        assert Path(asset.path).is_file(), asset.path


@pytest.mark.parametrize("function", ["payment", "rotation"])
def test_handler_module_imports_cleanly(function):
    module = importlib.import_module(f"tap_lib.lambdas.{function}.handler")
    assert callable(module.lambda_handler)


def test_rotation_handler_implements_the_four_steps():
    module = importlib.import_module("tap_lib.lambdas.rotation.handler")
    source = Path(module.__file__).read_text()
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        assert f'"{step}"' in source, step
    for fn in ("create_secret", "set_secret", "test_secret", "finish_secret"):
        assert callable(getattr(module, fn))


RUNTIME_PROVIDED = ("boto3", "botocore", "jmespath", "s3transfer", "urllib3", "dateutil", "six")


@pytest.mark.parametrize("function", ["payment", "rotation"])
def test_archive_imports_with_only_the_lambda_runtime(graphs, function, tmp_path):
    """Unpack the archive and import `handler` the way Lambda does: archive root first on the
    path, then only what the python3.12 runtime provides (boto3 and its dependencies)."""
    graph = graphs("dev")
    code = graph.function(getattr(graph.names, f"{function}_function")).inputs["code"]
    root = tmp_path / "archive"
    for rel, asset in code.assets.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(Path(asset.path).read_bytes())
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    for module in RUNTIME_PROVIDED:
        origin = Path(importlib.util.find_spec(module).origin)
        src = origin.parent if origin.name == "__init__.py" else origin
        (runtime / src.name).symlink_to(src)
    script = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "import handler, pg8000\n"
        "assert callable(handler.lambda_handler)\n"
        "assert pg8000.__file__.startswith(sys.argv[1]), pg8000.__file__\n"
        "print('ok')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([sys.executable, "-S", "-c", script, str(root), str(runtime)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


# -- what synthesis catches ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def dev_settings() -> Settings:
    return load_for("dev")


def test_deprecated_class_is_reported(dev_settings):
    def program(settings):
        define_stack(settings)
        aws.s3.BucketV2("legacy-bucket", bucket="tap-legacy-bucket-x")

    syn = synthesize(dev_settings, program=program)
    assert syn.error is None
    assert any("BucketV2" in w and "deprecated" in w for w in syn.warnings), syn.warnings


def test_removed_eip_argument_is_an_error(dev_settings):
    def program(settings):
        aws.ec2.Eip("legacy-eip", vpc=True)

    syn = synthesize(dev_settings, program=program)
    assert isinstance(syn.error, TypeError)
    assert "vpc" in str(syn.error)


def test_stack_defined_twice_is_a_duplicate_urn(dev_settings):
    def program(settings):
        define_stack(settings)
        define_stack(settings)

    syn = synthesize(dev_settings, program=program)
    assert isinstance(syn.error, DuplicateUrnError)
    assert syn.error.urn in syn.duplicates
    assert syn.error.urn.startswith("urn:pulumi:TapStackdev::TapStack::")
    assert syn.error.urn in str(syn.error)


def test_synthesis_recovers_after_a_failed_program(dev_settings, graphs):
    """The mock runtime is global: a failed variant must not leak into the next run."""
    syn = synthesize(dev_settings)
    assert syn.error is None and syn.warnings == [] and syn.duplicates == []
    assert len(syn.registrations) == len(graphs("dev").syn.registrations)


def test_tap_stack_is_instantiated_in_one_place():
    """Only entry.define_stack constructs the TapStack; everything else calls define_stack."""
    import re

    package = Path(importlib.import_module("tap_lib").__file__).parent
    constructions = []
    for path in sorted(package.rglob("*.py")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"(?<![\w.])TapStack\(", line) and not line.lstrip().startswith("class "):
                constructions.append(f"{path.relative_to(package)}:{lineno}")
    assert len(constructions) == 1, constructions
    assert constructions[0].startswith("program/entry.py:")


# -- hardening judged by the controls (issue 19) -------------------------------------------------
def _key_arn(graph) -> str:
    return graph.one(KMS_KEY).outputs["arn"]


def test_cluster_exports_postgresql_log_and_uses_iam_auth(graph):
    """RDS.9/RDS.37 and RDS.10/RDS.12."""
    cluster = graph.one(CLUSTER)
    assert cluster.inputs["enabledCloudwatchLogsExports"] == ["postgresql"]
    assert cluster.inputs["iamDatabaseAuthenticationEnabled"] is True


def test_instances_name_their_zone_spread_over_the_environment(graph):
    """RDS.15: staging's two instances both landed in eu-west-2a when RDS chose."""
    zones = graph.settings.availability_zones
    placed = [i.inputs["availabilityZone"] for i in sorted(graph.all(CLUSTER_INSTANCE),
                                                            key=lambda r: r.name)]
    assert placed == [zones[i % len(zones)] for i in range(graph.settings.db.instances)]
    assert len(set(placed)) == min(len(placed), len(zones))


def test_log_groups_are_encrypted_with_the_stack_key(graph):
    groups = graph.all(LOG_GROUP)
    assert len(groups) == 3 and {g.inputs.get("kmsKeyId") for g in groups} == {_key_arn(graph)}


def test_key_policy_keeps_account_admin_and_lets_logs_use_the_key(graph):
    doc = json.loads(graph.one(KMS_KEY).inputs["policy"])
    admin, logs = doc["Statement"]
    assert admin["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert admin["Action"] == "kms:*"
    assert logs["Principal"] == {"Service": f"logs.{graph.settings.region}.amazonaws.com"}
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == (
        f"arn:aws:logs:{graph.settings.region}:123456789012:log-group:*")


def test_function_environments_are_encrypted_with_the_stack_key(graph):
    assert {f.inputs.get("kmsKeyArn") for f in graph.all(FUNCTION)} == {_key_arn(graph)}


def test_service_roles_trust_only_on_behalf_of_this_account(graph):
    """Cross-service confused deputy: every service trust names aws:SourceAccount."""
    for role in graph.all(ROLE):
        (stmt,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        assert stmt["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_the_secret_policy_admits_the_params_deployer_roles_and_the_caller():
    """A second deploying role must be named: the Deny covers PutResourcePolicy, so a role left
    out could not deploy the stack again after another role did."""
    roles = ("arn:aws:iam::123456789012:role/tap-deployer",
             "arn:aws:iam::123456789012:role/ops/break-glass")
    base = load_for("dev")
    named = base.model_copy(update={"secrets": base.secrets.model_copy(
        update={"deployer_roles": roles})})

    def exempt(settings: Settings) -> list[str]:
        doc = json.loads(Graph(settings, synthesize(settings)).one(SECRET_POLICY).inputs["policy"])
        (deny,) = doc["Statement"]
        assert deny["Effect"] == "Deny"
        return deny["Condition"]["StringNotEquals"]["aws:PrincipalArn"]

    without, with_roles = exempt(base), exempt(named)
    assert "arn:aws:iam::123456789012:root" in without          # the caller (the mock's identity)
    assert len(without) == 3                                   # payment, rotation, the caller
    assert sorted(with_roles) == sorted([*without, *roles])
