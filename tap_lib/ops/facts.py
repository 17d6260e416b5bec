"""Reading the live stack: one describe per resource kind, shared by verify's checks and by
inspect's drift table, with every call counted (verify reports the number).

Secret values are read only to be digested (so a Lambda variable holding the database password
can be recognised) and never leave this module otherwise.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ..errors import OperationFailed, TargetUnreachable

PASSWORD_KEY = re.compile(r"pass(word|wd|phrase)?|pwd", re.IGNORECASE)

Clients = Callable[[str], Any]


# -- counting and clients ------------------------------------------------------------------
SHARED = "(shared)"


class CallCounter:
    """Hands out the target's clients and records every API call made through them, under the
    stack it was made for, by the threads that said which stack they read (`owner`); calls of
    other threads (a fleet shares one client per service among concurrent stacks, and a
    stack's live checks use the same clients) are not counted."""

    def __init__(self, clients: Clients):
        self._clients = clients
        self._id = f"tap-verify-{id(self)}"
        self._owners: dict[int, Any] = {}
        self._hooked: list[Any] = []
        self._lock = threading.Lock()
        self.by_owner: dict[Any, list[str]] = {}

    @property
    def calls(self) -> list[str]:
        return [c for calls in self.by_owner.values() for c in calls]

    @contextlib.contextmanager
    def owner(self, key: Any) -> Iterator["CallCounter"]:
        """Count this thread's calls for `key` (SHARED: made once for the group)."""
        thread = threading.get_ident()
        self._owners[thread] = key
        try:
            yield self
        finally:
            del self._owners[thread]

    def __call__(self, service: str) -> Any:
        client = self._clients(service)
        with self._lock:
            if client not in self._hooked:
                client.meta.events.register("before-call", self._record, unique_id=self._id)
                self._hooked.append(client)
        return client

    def _record(self, model, **_: Any) -> None:
        owner = self._owners.get(threading.get_ident(), _NOBODY)
        if owner is not _NOBODY:
            with self._lock:
                self.by_owner.setdefault(owner, []).append(
                    f"{model.service_model.service_name}.{model.name}")

    def __enter__(self) -> "CallCounter":
        return self

    def __exit__(self, *_: Any) -> None:
        for client in self._hooked:
            client.meta.events.unregister("before-call", unique_id=self._id)


_NOBODY = object()


# -- facts: one fetch per resource kind ------------------------------------------------------
@dataclass
class BucketFacts:
    versioning: str | None = None
    encryption: list[dict] | None = None
    public_access_block: dict | None = None
    policy: dict | None = None
    lifecycle: list[dict] | None = None
    tags: dict[str, str] | None = None
    ownership: str | None = None          # S3.12: BucketOwnerEnforced
    object_lock: dict | None = None       # S3.15
    logging: dict | None = None           # S3.9: where its server access logs go
    mfa_delete: str | None = None         # S3.20, read with versioning (hardening_storage)


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
    master_secret: dict | None = None              # the RDS-managed rds!cluster-... secret
    secret_digests: frozenset[str] | None = None   # None: secret values were not readable
    functions: dict[str, dict | None] = field(default_factory=dict)
    log_groups: dict[str, dict | None] = field(default_factory=dict)   # by name; None: gone
    roles: dict[str, dict | None] = field(default_factory=dict)        # by name; None: gone
    bucket: BucketFacts = field(default_factory=BucketFacts)
    access_logs: BucketFacts | None = None    # the S3.9 target; None: no such output
    network_acls: list[dict] = field(default_factory=list)
    endpoints: list[dict] = field(default_factory=list)          # VPC endpoints, not deleted
    data: Any = None    # hardening_data.DataFacts: read by name, so with the stack's settings
    compute: Any = None  # hardening_compute.ComputeFacts, set by verify.judge


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


# -- describes shared by a group of stacks -------------------------------------------------
BATCH = 50              # ids per filter in one shared describe (AWS allows up to 200 values)
SECRET_BATCH = 20       # BatchGetSecretValue's limit


def _all(call: Callable[..., dict], key: str, **kwargs: Any) -> list[dict]:
    """Every page of a describe (EC2's NextToken, RDS's Marker)."""
    items: list[dict] = []
    while True:
        reply = call(**kwargs)
        items += reply.get(key, [])
        token = reply.get("NextToken") or reply.get("Marker")
        if not token:
            return items
        kwargs["NextToken" if "NextToken" in reply else "Marker"] = token


def _chunks(ids: Iterable[str], size: int) -> list[list[str]]:
    ids = list(dict.fromkeys(ids))
    return [ids[i:i + size] for i in range(0, len(ids), size)]


class Shared:
    """Describes made once for a group of stacks in one region, filtered by all their ids and
    split per stack by the id each item carries, so that every stack sees exactly what its
    own filtered describe would have returned. A kind whose shared describe fails is left to
    each stack's own call (so a failure lands on the stack that causes it, and only there)."""

    def __init__(self):
        self._parts: dict[str, dict[str, list[dict]] | None] = {}

    def load(self, kind: str, ids: Iterable[str], call: Callable[..., dict], key: str,
             by: str, filter_arg: str = "Filters", filter_name: str = "", size: int = BATCH,
             **kwargs: Any) -> None:
        parts: dict[str, list[dict]] = {}
        try:
            for chunk in _chunks(ids, size) if filter_name else [None]:
                args = dict(kwargs)
                if chunk is not None:
                    args[filter_arg] = [{"Name": filter_name, "Values": chunk}]
                for item in _all(call, key, **args):
                    parts.setdefault(str(item.get(by, "")).lower(), []).append(item)
        except (ClientError, BotoCoreError):
            self._parts[kind] = None
            return
        self._parts[kind] = parts

    def unavailable(self, kind: str) -> bool:
        return self._parts.get(kind) is None

    def items(self, kind: str, ident: str, own: Callable[[], list[dict]]) -> list[dict]:
        """The stack's items of this kind; `own` reads them alone when there is no share."""
        parts = self._parts.get(kind)
        return own() if parts is None else list(parts.get(str(ident).lower(), []))

    def load_secret_values(self, sm: Any, ids: Iterable[str]) -> None:
        values: dict[str, list[dict]] = {}
        try:
            for chunk in _chunks(ids, SECRET_BATCH):
                for item in sm.batch_get_secret_value(SecretIdList=chunk).get("SecretValues", []):
                    for ident in {item.get("ARN"), item.get("Name")} - {None, ""}:
                        values.setdefault(ident, []).append(item)
        except (ClientError, BotoCoreError):
            self._parts["secret_values"] = None
            return
        self._parts["secret_values"] = values

    def secret_values(self, ids: list[str], own: Callable[[], list[dict]]) -> list[dict]:
        parts = self._parts.get("secret_values")
        if parts is None:
            return own()
        return [v for i in dict.fromkeys(ids) for v in parts.get(i, [])[:1]]


def load_shared(clients: Clients, stacks: Iterable[dict[str, Any]]) -> Shared:
    """One describe per kind for all of these stacks' resources (one region, one target)."""
    stacks = list(stacks)
    shared = Shared()
    vpcs = [o.get("vpc_id", "") for o in stacks]
    clusters = [o.get("rds_cluster_id", "") for o in stacks]
    ec2, rds = clients("ec2"), clients("rds")
    shared.load("vpcs", vpcs, ec2.describe_vpcs, "Vpcs", "VpcId", filter_name="vpc-id")
    shared.load("flow_logs", vpcs, ec2.describe_flow_logs, "FlowLogs", "ResourceId",
                filter_name="resource-id")
    shared.load("subnets", vpcs, ec2.describe_subnets, "Subnets", "VpcId", filter_name="vpc-id")
    shared.load("nat_gateways", vpcs, ec2.describe_nat_gateways, "NatGateways", "VpcId",
                filter_arg="Filter", filter_name="vpc-id")
    shared.load("addresses", [], ec2.describe_addresses, "Addresses", "Domain",
                Filters=[{"Name": "domain", "Values": ["vpc"]}])
    shared.load("route_tables", vpcs, ec2.describe_route_tables, "RouteTables", "VpcId",
                filter_name="vpc-id")
    shared.load("security_groups", vpcs, ec2.describe_security_groups, "SecurityGroups",
                "VpcId", filter_name="vpc-id")
    shared.load("network_acls", vpcs, ec2.describe_network_acls, "NetworkAcls", "VpcId",
                filter_name="vpc-id")
    shared.load("endpoints", vpcs, ec2.describe_vpc_endpoints, "VpcEndpoints", "VpcId",
                filter_name="vpc-id")
    shared.load("clusters", clusters, rds.describe_db_clusters, "DBClusters",
                "DBClusterIdentifier", filter_name="db-cluster-id")
    shared.load("instances", clusters, rds.describe_db_instances, "DBInstances",
                "DBClusterIdentifier", filter_name="db-cluster-id")
    if shared.unavailable("clusters"):
        return shared   # the master secrets' ARNs are the clusters': each stack reads its own
    secret_ids = []
    for o in stacks:
        cluster = next(iter(shared.items("clusters", o.get("rds_cluster_id", ""), list)), None)
        secret_ids += _secret_ids(o.get("db_secret_arn", ""), cluster)
    shared.load_secret_values(clients("secretsmanager"), secret_ids)
    return shared


def _secret_ids(secret_arn: str, cluster: dict | None) -> list[str]:
    master = ((cluster or {}).get("MasterUserSecret") or {}).get("SecretArn")
    return [secret_arn, master] if master else [secret_arn]


# -- one stack's facts -----------------------------------------------------------------------
GONE = ("deleted", "deleting", "failed")     # endpoint states the emulator keeps listing


def _fetch_network(ec2: Any, vpc_id: str, facts: Facts, shared: Shared) -> None:
    by_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
    vpcs = shared.items("vpcs", vpc_id, lambda: ec2.describe_vpcs(Filters=by_vpc)["Vpcs"])
    facts.vpc = vpcs[0] if vpcs else None
    if facts.vpc:
        for attr in ("enableDnsSupport", "enableDnsHostnames"):
            reply = ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=attr)
            facts.dns[attr] = reply[attr[0].upper() + attr[1:]]["Value"]
    facts.flow_logs = shared.items("flow_logs", vpc_id, lambda: ec2.describe_flow_logs(
        Filters=[{"Name": "resource-id", "Values": [vpc_id]}])["FlowLogs"])
    facts.subnets = {s["SubnetId"]: s for s in shared.items(
        "subnets", vpc_id, lambda: ec2.describe_subnets(Filters=by_vpc)["Subnets"])}
    facts.nat_gateways = [n for n in shared.items(
        "nat_gateways", vpc_id, lambda: ec2.describe_nat_gateways(Filter=by_vpc)["NatGateways"])
        if n["State"] not in ("deleting", "deleted")]
    facts.addresses = {a["AllocationId"]: a for a in shared.items(
        "addresses", "vpc", lambda: ec2.describe_addresses(
            Filters=[{"Name": "domain", "Values": ["vpc"]}])["Addresses"])}
    facts.route_tables = shared.items(
        "route_tables", vpc_id, lambda: ec2.describe_route_tables(Filters=by_vpc)["RouteTables"])
    facts.security_groups = {g["GroupId"]: g for g in shared.items(
        "security_groups", vpc_id,
        lambda: ec2.describe_security_groups(Filters=by_vpc)["SecurityGroups"])}
    facts.network_acls = shared.items("network_acls", vpc_id, lambda: ec2.describe_network_acls(
        Filters=by_vpc)["NetworkAcls"])
    endpoints = shared.items("endpoints", vpc_id, lambda: ec2.describe_vpc_endpoints(
        Filters=by_vpc)["VpcEndpoints"])
    facts.endpoints = [e for e in endpoints if e.get("State", "").lower() not in GONE]


def _fetch_database(rds: Any, cluster_id: str, facts: Facts, shared: Shared) -> None:
    by_cluster = [{"Name": "db-cluster-id", "Values": [cluster_id]}]
    clusters = shared.items("clusters", cluster_id, lambda: rds.describe_db_clusters(
        Filters=by_cluster)["DBClusters"])
    facts.cluster = clusters[0] if clusters else None
    instances = shared.items("instances", cluster_id, lambda: rds.describe_db_instances(
        Filters=by_cluster)["DBInstances"])
    facts.instances = sorted(instances, key=lambda i: i["DBInstanceIdentifier"])


def _fetch_secret(sm: Any, secret_arn: str, facts: Facts, shared: Shared) -> list[str]:
    """Describe the secret and the cluster's master secret (SecretsManager.1/.4 judge both);
    digest the passwords of both."""
    facts.secret = _optional(sm.describe_secret, SecretId=secret_arn)
    ids = _secret_ids(secret_arn, facts.cluster)
    if len(ids) > 1:
        facts.master_secret = _optional(sm.describe_secret, SecretId=ids[1])
    try:
        values = shared.secret_values(ids, lambda: sm.batch_get_secret_value(
            SecretIdList=ids).get("SecretValues", []))
    except ClientError as exc:
        return [f"secret values not readable ({exc.response['Error']['Code']}): Lambda "
                "variables were checked by name only"]
    facts.secret_digests = frozenset(
        digest(v) for item in values
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


def _fetch_logs_and_roles(logs: Any, iam: Any, facts: Facts) -> None:
    """The log groups and service roles the stack's functions and flow logs use (found from
    them, so nothing is guessed from names): one describe or get per group and role."""
    groups = [f"/aws/lambda/{name}" for name, fn in facts.functions.items() if fn] + [
        _flow_log_group(fl) for fl in facts.flow_logs if _flow_log_group(fl)]
    for name in dict.fromkeys(groups):
        found = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
        facts.log_groups[name] = next((g for g in found if g["logGroupName"] == name), None)
    arns = [fn["Configuration"].get("Role") for fn in facts.functions.values() if fn] + [
        fl.get("DeliverLogsPermissionArn") for fl in facts.flow_logs]
    for name in dict.fromkeys(a.rsplit("/", 1)[-1] for a in arns if a):
        facts.roles[name] = (_optional(iam.get_role, RoleName=name) or {}).get("Role")


def _flow_log_group(flow_log: dict) -> str | None:
    """The log group a flow log delivers to: its name, or the one its destination ARN names."""
    if flow_log.get("LogGroupName"):
        return flow_log["LogGroupName"]
    arn = flow_log.get("LogDestination") or ""
    return arn.split(":log-group:", 1)[1].removesuffix(":*") if ":log-group:" in arn else None


def _fetch_bucket(s3: Any, bucket: str, b: BucketFacts) -> BucketFacts:
    """Both buckets' configuration (the transaction logs and their access-log target)."""
    versioning = _optional(s3.get_bucket_versioning, Bucket=bucket) or {}
    b.versioning, b.mfa_delete = versioning.get("Status", "Disabled"), versioning.get("MFADelete")
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
    rules = ((_optional(s3.get_bucket_ownership_controls, Bucket=bucket) or {})
             .get("OwnershipControls", {}).get("Rules")) or [{}]
    b.ownership = rules[0].get("ObjectOwnership")
    b.object_lock = (_optional(s3.get_object_lock_configuration, Bucket=bucket) or {}).get(
        "ObjectLockConfiguration")
    b.logging = (_optional(s3.get_bucket_logging, Bucket=bucket) or {}).get("LoggingEnabled")
    return b


@contextlib.contextmanager
def _as_tap_errors() -> Iterator[None]:
    """AWS's failures as tap's typed errors (exit 3), with nothing secret in them."""
    try:
        yield
    except NoCredentialsError:
        raise TargetUnreachable("no AWS credentials for verify",
                                hint="configure a profile or AWS_* variables") from None
    except BotoCoreError as exc:
        raise TargetUnreachable(f"the target did not answer: {exc}") from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise OperationFailed(f"{exc.operation_name} failed: {err.get('Code')}: "
                              f"{err.get('Message', '')}") from None


def _stack_facts(clients: Clients, outputs: dict[str, Any], shared: Shared
                 ) -> tuple[Facts, list[str]]:
    facts = Facts()
    with _as_tap_errors():
        _fetch_network(clients("ec2"), outputs.get("vpc_id", ""), facts, shared)
        _fetch_database(clients("rds"), outputs.get("rds_cluster_id", ""), facts, shared)
        notes = _fetch_secret(clients("secretsmanager"), outputs.get("db_secret_arn", ""), facts,
                              shared)
        _fetch_functions(clients("lambda"), _function_names(outputs), facts)
        _fetch_logs_and_roles(clients("logs"), clients("iam"), facts)
        _fetch_buckets(clients("s3"), outputs, facts)
    return facts, notes


def _fetch_buckets(s3: Any, outputs: dict[str, Any], facts: Facts) -> None:
    _fetch_bucket(s3, outputs.get("s3_bucket_name", ""), facts.bucket)
    if outputs.get("s3_access_log_bucket_name"):   # a stack deployed before issue 19 has none
        facts.access_logs = _fetch_bucket(s3, outputs["s3_access_log_bucket_name"], BucketFacts())


@dataclass
class Reading:
    """One stack's facts, with the calls made for it alone and those made once for its whole
    group (`shared_by` stacks; a single verify is a group of one)."""

    facts: Facts
    notes: list[str]
    calls: list[str]
    shared_calls: list[str]
    shared_by: int = 1

    @property
    def aws_calls(self) -> float:
        """Its own calls plus its share of the group's."""
        return len(self.calls) + len(self.shared_calls) / self.shared_by


K = TypeVar("K")


class FactReader:
    """The facts of a group of stacks on one target and in one region: the describes that can
    cover several stacks are made once for all of them, when the reader opens; then `read`
    gives one stack's facts (callable from several threads at once, one stack each)."""

    def __init__(self, clients: Clients, stacks: dict[Any, dict[str, Any]]):
        self._stacks = stacks
        self._counter = CallCounter(clients)
        try:
            with self._counter.owner(SHARED), _as_tap_errors():
                self._shared = load_shared(self._counter, stacks.values())
        except Exception:  # noqa: BLE001 - then each stack reads on its own
            self._shared = Shared()
        self.shared_calls = list(self._counter.by_owner.get(SHARED, []))

    def read(self, key: Any) -> Reading:
        """One stack's facts; its failure (a typed TapError) is its own."""
        with self._counter.owner(key):
            facts, notes = _stack_facts(self._counter, self._stacks[key], self._shared)
        return Reading(facts, notes, list(self._counter.by_owner.get(key, [])),
                       self.shared_calls, len(self._stacks))

    def close(self) -> None:
        self._counter.__exit__()

    def __enter__(self) -> "FactReader":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def read_facts(clients: Clients, stacks: dict[K, dict[str, Any]]
               ) -> dict[K, Reading | Exception]:
    """Every fact the checks use for each of these stacks (one target, one region), one after
    the other; a stack whose read fails gets its exception, and the others their facts."""
    out: dict[K, Reading | Exception] = {}
    with FactReader(clients, stacks) as reader:
        for key in stacks:
            try:
                out[key] = reader.read(key)
            except Exception as exc:  # noqa: BLE001 - one stack's failure is its own
                out[key] = exc
    return out


def collect_facts(clients: Clients, outputs: dict[str, Any]) -> tuple[Facts, list[str]]:
    """Fetch every fact the checks use for one stack, once per kind; returns (facts, notes)."""
    reading = read_facts(clients, {0: outputs})[0]
    if isinstance(reading, Exception):
        raise reading
    return reading.facts, reading.notes


def _function_names(outputs: dict[str, Any]) -> list[str]:
    return [n for n in (outputs.get("lambda_function_name"), outputs.get("rotation_function_name"))
            if n]
