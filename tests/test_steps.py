"""Step decisions without an emulator (engines/sandbox/steps.py), against an oracle that is not
the code's own table: hand-written expectations of what AWS (terraform-provider-aws ForceNew,
as its documentation states each argument) does for key changes of this stack, and Pulumi's
documented replacement options. test_change_matrix derives its cases from replacements.json;
this module does not read it."""
from __future__ import annotations

import pytest
from pulumi.runtime import rpc

from tap_lib.engines.base import Step
from tap_lib.engines.sandbox.handlers import REGISTRY
from tap_lib.engines.sandbox.state import ResourceRecord
from tap_lib.engines.sandbox.steps import (REPLACEMENT_TRIGGER, base_urn, diff, restorable,
                                           same_step, trigger_of)
from tap_lib.engines.synth import Registration

# (resource type, changed input, what AWS does), as the provider documents each argument
# ("Changing this forces a new resource" or not).
EXPECTED = [
    ("aws:lambda/function:Function", "memorySize", "update"),
    ("aws:lambda/function:Function", "timeout", "update"),
    ("aws:lambda/function:Function", "name", "replace"),
    ("aws:lambda/function:Function", "kmsKeyArn", "update"),
    ("aws:rds/cluster:Cluster", "engineVersion", "update"),
    ("aws:rds/cluster:Cluster", "databaseName", "replace"),
    ("aws:rds/cluster:Cluster", "masterUsername", "replace"),
    ("aws:rds/cluster:Cluster", "storageEncrypted", "replace"),
    ("aws:rds/cluster:Cluster", "kmsKeyId", "replace"),
    ("aws:rds/cluster:Cluster", "deletionProtection", "update"),
    ("aws:rds/cluster:Cluster", "backupRetentionPeriod", "update"),
    ("aws:rds/cluster:Cluster", "iamDatabaseAuthenticationEnabled", "update"),
    ("aws:rds/clusterInstance:ClusterInstance", "instanceClass", "update"),
    ("aws:rds/clusterInstance:ClusterInstance", "identifier", "replace"),
    ("aws:rds/clusterInstance:ClusterInstance", "availabilityZone", "replace"),
    ("aws:ec2/vpc:Vpc", "cidrBlock", "replace"),
    ("aws:ec2/vpc:Vpc", "enableDnsHostnames", "update"),
    ("aws:ec2/subnet:Subnet", "availabilityZone", "replace"),
    ("aws:ec2/securityGroup:SecurityGroup", "description", "replace"),
    ("aws:ec2/natGateway:NatGateway", "subnetId", "replace"),
    ("aws:iam/role:Role", "assumeRolePolicy", "update"),
    ("aws:iam/role:Role", "name", "replace"),
    ("aws:secretsmanager/secret:Secret", "name", "replace"),
    ("aws:cloudwatch/logGroup:LogGroup", "retentionInDays", "update"),
    ("aws:cloudwatch/logGroup:LogGroup", "kmsKeyId", "update"),
    ("aws:s3/bucket:Bucket", "bucket", "replace"),
    ("aws:kms/key:Key", "enableKeyRotation", "update"),
]


def reg_and_record(type_: str, old: dict, new: dict, **options):
    reg = Registration("urn:x", type_, "x", "", True, new, [], **options)
    record = ResourceRecord("urn:x", type_, "x", "id-1", old, {}, [],
                            replacement_trigger=options.get("replacement_trigger"))
    return reg, record


@pytest.mark.parametrize("type_,prop,op", EXPECTED, ids=[f"{t.split(':')[-1]}.{p}"
                                                          for t, p, _ in EXPECTED])
def test_a_change_is_classified_as_aws_does_it(type_, prop, op):
    reg, record = reg_and_record(type_, {prop: "old"}, {prop: "new"})
    assert diff(REGISTRY[type_], reg, record, {prop: "new"}, None) == (op, [prop])


def test_unchanged_inputs_are_the_same_step():
    reg, record = reg_and_record("aws:lambda/function:Function", {"memorySize": 256},
                                 {"memorySize": 256})
    assert diff(REGISTRY[reg.type], reg, record, {"memorySize": 256}, None) == ("same", [])


def test_ignore_changes_keeps_the_stored_value():
    type_ = "aws:lambda/function:Function"
    reg, record = reg_and_record(type_, {"name": "a", "memorySize": 256},
                                 {"name": "b", "memorySize": 256}, ignore_changes=["name"])
    assert diff(REGISTRY[type_], reg, record, {"name": "b", "memorySize": 256}, None) == \
        ("same", [])


def test_replace_on_changes_turns_an_update_into_a_replace():
    type_ = "aws:lambda/function:Function"
    for option in (["memorySize"], ["*"]):
        reg, record = reg_and_record(type_, {"memorySize": 256}, {"memorySize": 512},
                                     replace_on_changes=option)
        assert diff(REGISTRY[type_], reg, record, {"memorySize": 512}, None)[0] == "replace"
    reg, record = reg_and_record(type_, {"memorySize": 256}, {"memorySize": 512},
                                 replace_on_changes=["timeout"])
    assert diff(REGISTRY[type_], reg, record, {"memorySize": 512}, None)[0] == "update"


def test_a_changed_replacement_trigger_replaces_whatever_the_inputs():
    type_ = "aws:secretsmanager/secretRotation:SecretRotation"
    reg = Registration("urn:r", type_, "r", "", True, {"secretId": "s"}, [],
                       replacement_trigger={"cluster": "c-2"})
    record = ResourceRecord("urn:r", type_, "r", "id", {"secretId": "s"}, {}, [],
                            replacement_trigger={"cluster": "c-1"})
    assert diff(REGISTRY[type_], reg, record, {"secretId": "s"},
                trigger_of(reg, apply=True)) == ("replace", [REPLACEMENT_TRIGGER])
    unknown = Registration("urn:r", type_, "r", "", True, {"secretId": "s"}, [],
                           replacement_trigger={"cluster": rpc.UNKNOWN})
    assert diff(REGISTRY[type_], unknown, record, {"secretId": "s"},
                trigger_of(unknown, apply=False))[0] == "replace"
    # a trigger set for the first time, or cleared, replaces nothing (Pulumi records it)
    first = ResourceRecord("urn:r", type_, "r", "id", {"secretId": "s"}, {}, [])
    assert diff(REGISTRY[type_], reg, first, {"secretId": "s"},
                trigger_of(reg, apply=True)) == ("same", [])


def test_a_reviewed_step_binds_op_properties_and_values():
    planned = Step("u", "t", "n", "update", ["memorySize"],
                   changes=[{"property": "memorySize", "old": 256, "new": 512}])
    assert same_step(planned, Step("u", "t", "n", "update", ["memorySize"], changes=[
        {"property": "memorySize", "old": 256, "new": 512}]))
    assert not same_step(planned, Step("u", "t", "n", "update", ["memorySize"], changes=[
        {"property": "memorySize", "old": 640, "new": 512}]))
    assert not same_step(planned, Step("u", "t", "n", "replace", ["memorySize"]))
    assert not same_step(None, planned)


def test_side_keys_settle_to_the_newest_old_copy():
    def rec(urn, status="created"):
        return ResourceRecord(urn, "t", "n", "id", {}, {}, [], status=status)

    resources = {"u#replaced": rec("u#replaced"), "u#replaced.2": rec("u#replaced.2"),
                 "u": rec("u", status="pending-create")}
    assert restorable(resources) == {"u#replaced.2": "u"}
    assert restorable({**resources, "u": rec("u")}) == {}
    assert base_urn("u#replaced.2") == "u"
