"""Reading the live stack: one describe per resource kind, shared by verify's checks and by
inspect's drift table, with every call counted (verify reports the number).

Secret values are read only to be digested (so a Lambda variable holding the database password
can be recognised) and never leave this module otherwise.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ..errors import OperationFailed, TargetUnreachable

PASSWORD_KEY = re.compile(r"pass(word|wd|phrase)?|pwd", re.IGNORECASE)

Clients = Callable[[str], Any]


# -- counting and clients ------------------------------------------------------------------
class CallCounter:
    """Hands out the target's clients and records every API call made through them by the
    thread that opened it (a fleet shares one client per service among concurrent stacks)."""

    def __init__(self, clients: Clients):
        self._clients = clients
        self._id = f"tap-verify-{id(self)}"
        self._thread = threading.get_ident()
        self._hooked: list[Any] = []
        self.calls: list[str] = []

    def __call__(self, service: str) -> Any:
        client = self._clients(service)
        if client not in self._hooked:
            client.meta.events.register("before-call", self._record, unique_id=self._id)
            self._hooked.append(client)
        return client

    def _record(self, model, **_: Any) -> None:
        if threading.get_ident() == self._thread:
            self.calls.append(f"{model.service_model.service_name}.{model.name}")

    def __enter__(self) -> "CallCounter":
        return self

    def __exit__(self, *_: Any) -> None:
        for client in self._hooked:
            client.meta.events.unregister("before-call", unique_id=self._id)


# -- facts: one fetch per resource kind ------------------------------------------------------
@dataclass
class BucketFacts:
    versioning: str | None = None
    encryption: list[dict] | None = None
    public_access_block: dict | None = None
    policy: dict | None = None
    lifecycle: list[dict] | None = None
    tags: dict[str, str] | None = None


@dataclass
class Facts:
    """Everything verify (and inspect) knows about the live stack."""

    vpc: dict | None = None
    dns: dict[str, bool] = field(default_factory=dict)
    flow_logs: list[dict] = field(default_factory=list)
    subnets: dict[str, dict] = field(default_factory=dict)
    nat_gateways: list[dict] = field(default_factory=list)
    addresses: dict[str, dict] = field(default_factory=dict)
    route_tables: list[dict] = field(default_factory=list)
    security_groups: dict[str, dict] = field(default_factory=dict)
    cluster: dict | None = None
    instances: list[dict] = field(default_factory=list)
    secret: dict | None = None
    secret_digests: frozenset[str] | None = None   # None: secret values were not readable
    functions: dict[str, dict | None] = field(default_factory=dict)
    bucket: BucketFacts = field(default_factory=BucketFacts)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _missing(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    return "NotFound" in code or code.startswith("NoSuch")


def _optional(call: Callable[..., dict], **kwargs: Any) -> dict | None:
    """The response, or None when the thing asked for does not exist."""
    try:
        return call(**kwargs)
    except ClientError as exc:
        if _missing(exc):
            return None
        raise


def tags_of(items: Iterable[dict] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


def _fetch_network(ec2: Any, vpc_id: str, facts: Facts) -> None:
    by_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
    vpcs = ec2.describe_vpcs(Filters=by_vpc)["Vpcs"]
    facts.vpc = vpcs[0] if vpcs else None
    if facts.vpc:
        for attr in ("enableDnsSupport", "enableDnsHostnames"):
            reply = ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=attr)
            facts.dns[attr] = reply[attr[0].upper() + attr[1:]]["Value"]
    facts.flow_logs = ec2.describe_flow_logs(
        Filters=[{"Name": "resource-id", "Values": [vpc_id]}])["FlowLogs"]
    facts.subnets = {s["SubnetId"]: s for s in ec2.describe_subnets(Filters=by_vpc)["Subnets"]}
    facts.nat_gateways = [n for n in ec2.describe_nat_gateways(Filter=by_vpc)["NatGateways"]
                          if n["State"] not in ("deleting", "deleted")]
    facts.addresses = {a["AllocationId"]: a for a in ec2.describe_addresses(
        Filters=[{"Name": "domain", "Values": ["vpc"]}])["Addresses"]}
    facts.route_tables = ec2.describe_route_tables(Filters=by_vpc)["RouteTables"]
    facts.security_groups = {g["GroupId"]: g for g in ec2.describe_security_groups(
        Filters=by_vpc)["SecurityGroups"]}


def _fetch_database(rds: Any, cluster_id: str, facts: Facts) -> None:
    clusters = rds.describe_db_clusters(
        Filters=[{"Name": "db-cluster-id", "Values": [cluster_id]}])["DBClusters"]
    facts.cluster = clusters[0] if clusters else None
    facts.instances = sorted(rds.describe_db_instances(
        Filters=[{"Name": "db-cluster-id", "Values": [cluster_id]}])["DBInstances"],
        key=lambda i: i["DBInstanceIdentifier"])


def _fetch_secret(sm: Any, secret_arn: str, facts: Facts) -> list[str]:
    """Describe the secret; digest the passwords of it and of the cluster's master secret."""
    facts.secret = _optional(sm.describe_secret, SecretId=secret_arn)
    master = ((facts.cluster or {}).get("MasterUserSecret") or {}).get("SecretArn")
    ids = [secret_arn, master] if master else [secret_arn]
    try:
        values = sm.batch_get_secret_value(SecretIdList=ids)
    except ClientError as exc:
        return [f"secret values not readable ({exc.response['Error']['Code']}): Lambda "
                "variables were checked by name only"]
    facts.secret_digests = frozenset(
        digest(v) for item in values.get("SecretValues", [])
        for k, v in _json_object(item.get("SecretString")).items()
        if PASSWORD_KEY.search(k) and isinstance(v, str) and v)
    return []


def _json_object(raw: str | None) -> dict:
    try:
        data = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _fetch_functions(lam: Any, names: Iterable[str], facts: Facts) -> None:
    """One get_function per stack function: configuration and tags in a single call."""
    facts.functions = {name: _optional(lam.get_function, FunctionName=name) for name in names}


def _fetch_bucket(s3: Any, bucket: str, facts: Facts) -> None:
    b = facts.bucket
    b.versioning = (_optional(s3.get_bucket_versioning, Bucket=bucket) or {}).get(
        "Status", "Disabled")
    b.encryption = ((_optional(s3.get_bucket_encryption, Bucket=bucket) or {})
                    .get("ServerSideEncryptionConfiguration", {}).get("Rules"))
    b.public_access_block = (_optional(s3.get_public_access_block, Bucket=bucket) or {}).get(
        "PublicAccessBlockConfiguration")
    policy = (_optional(s3.get_bucket_policy, Bucket=bucket) or {}).get("Policy")
    b.policy = json.loads(policy) if policy else None
    b.lifecycle = (_optional(s3.get_bucket_lifecycle_configuration, Bucket=bucket) or {}).get(
        "Rules")
    tagging = _optional(s3.get_bucket_tagging, Bucket=bucket)
    b.tags = tags_of(tagging["TagSet"]) if tagging else None


def collect_facts(clients: Clients, outputs: dict[str, Any]) -> tuple[Facts, list[str]]:
    """Fetch every fact the checks use, once per kind; returns (facts, notes)."""
    facts = Facts()
    try:
        _fetch_network(clients("ec2"), outputs.get("vpc_id", ""), facts)
        _fetch_database(clients("rds"), outputs.get("rds_cluster_id", ""), facts)
        notes = _fetch_secret(clients("secretsmanager"), outputs.get("db_secret_arn", ""), facts)
        _fetch_functions(clients("lambda"), _function_names(outputs), facts)
        _fetch_bucket(clients("s3"), outputs.get("s3_bucket_name", ""), facts)
    except NoCredentialsError:
        raise TargetUnreachable("no AWS credentials for verify",
                                hint="configure a profile or AWS_* variables") from None
    except BotoCoreError as exc:
        raise TargetUnreachable(f"the target did not answer: {exc}") from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise OperationFailed(f"{exc.operation_name} failed: {err.get('Code')}: "
                              f"{err.get('Message', '')}") from None
    return facts, notes


def _function_names(outputs: dict[str, Any]) -> list[str]:
    return [n for n in (outputs.get("lambda_function_name"), outputs.get("rotation_function_name"))
            if n]
