"""From declared resources to billable line items with quantities, priced from the catalog.

The estimate reads the resources as the program declares them (synth registrations) or as an
engine's state records them (`ResourceState` outputs): type and properties only, so it is the
same on every target. Types known to be free cost 0.0; a type tap does not know, a price the
catalog lacks or a usage assumption the environment file leaves unset makes the item unknown
(None), and totals say what they leave out instead of counting it as zero.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..config import Settings
from .backup import vault_snapshots
from .catalog import Catalog, load_catalog

DAYS_PER_MONTH = 365 / 12
# Secrets Manager calls a rotation function once per step: create, set, test, finish.
ROTATION_STEPS = 4
# RDS keeps enhanced monitoring's RDSOSMetrics log group 30 days unless changed (RDS User Guide,
# "Retention of Enhanced Monitoring metrics"); the program does not change it.
RDS_OS_METRICS_DAYS = 30

# Resource types that AWS does not bill by themselves (their traffic, if any, is billed on
# another item: a flow log's data on its log group, a rotation's calls on its function).
FREE_TYPES = frozenset({
    "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/routeTable:RouteTable", "aws:ec2/route:Route",
    "aws:ec2/routeTableAssociation:RouteTableAssociation", "aws:ec2/securityGroup:SecurityGroup",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "aws:ec2/flowLog:FlowLog",
    "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy", "aws:rds/subnetGroup:SubnetGroup",
    "aws:kms/alias:Alias", "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketPolicy:BucketPolicy",
    # EventBridge delivery of S3 events and AWS Backup report plans carry no charge of their own
    "aws:s3/bucketNotification:BucketNotification", "aws:backup/reportPlan:ReportPlan",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:lambda/permission:Permission", "aws:secretsmanager/secretVersion:SecretVersion",
    "aws:secretsmanager/secretRotation:SecretRotation",
    # issue 19: configuration AWS does not bill (a backup plan and selection cost nothing
    # themselves: the recovery points they make are billed on the vault)
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:rds/clusterParameterGroup:ClusterParameterGroup",
    "aws:secretsmanager/secretPolicy:SecretPolicy", "aws:backup/plan:Plan",
    "aws:backup/selection:Selection", "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
    "aws:ec2/defaultNetworkAcl:DefaultNetworkAcl",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
    "aws:s3/bucketLogging:BucketLogging",
    # not cloud resources: the stack's component and its provider
    "tap:index:TapStack", "pulumi:providers:aws", "pulumi:pulumi:Stack",
})

NAT = "aws:ec2/natGateway:NatGateway"
EIP = "aws:ec2/eip:Eip"
CLUSTER = "aws:rds/cluster:Cluster"
INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
KEY = "aws:kms/key:Key"
SECRET = "aws:secretsmanager/secret:Secret"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
FUNCTION = "aws:lambda/function:Function"
BUCKET = "aws:s3/bucket:Bucket"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
ROTATION = "aws:secretsmanager/secretRotation:SecretRotation"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
VAULT = "aws:backup/vault:Vault"
QUEUE = "aws:sqs/queue:Queue"
LOGGING = "aws:s3/bucketLogging:BucketLogging"


@dataclass
class Resource:
    """A resource as the estimate sees it: its type and properties (camelCase)."""

    urn: str
    type: str
    name: str
    props: dict[str, Any]

    @classmethod
    def from_registration(cls, reg) -> "Resource":
        return cls(reg.urn, reg.type, reg.name,
                   {"id": reg.id, **reg.inputs, **(reg.outputs or {})})

    @classmethod
    def from_state(cls, state) -> "Resource":
        return cls(state.urn, state.type, state.name,
                   {"id": getattr(state, "id", None), **(state.outputs or {})})


@dataclass
class LineItem:
    """One billed quantity of one resource: quantity x unit price, either may be unknown."""

    meter: str
    quantity: float | None
    unit: str
    unit_price: float | None
    basis: str                      # where the quantity comes from, shown beside the figure
    why_unknown: str = ""

    @property
    def monthly_usd(self) -> float | None:
        if self.quantity == 0:
            return 0.0              # nothing used costs nothing, whatever the price
        if self.quantity is None or self.unit_price is None:
            return None
        return self.quantity * self.unit_price


@dataclass
class ResourceCost:
    urn: str
    type: str
    name: str
    items: list[LineItem] = field(default_factory=list)
    known_free: bool = False

    @property
    def kind(self) -> str:
        return self.type.split(":")[-1]

    @property
    def monthly_usd(self) -> float | None:
        """The resource's monthly cost; None when any of its items is unknown, or when tap
        does not know the type."""
        if self.known_free:
            return 0.0
        amounts = [i.monthly_usd for i in self.items]
        if not amounts or any(a is None for a in amounts):
            return None
        return sum(amounts)

    @property
    def known_usd(self) -> float:
        return sum(i.monthly_usd or 0.0 for i in self.items)


@dataclass
class Estimate:
    """The monthly cost of one set of resources in one region."""

    region: str
    resources: list[ResourceCost]
    currency: str
    as_of: str
    assumptions: dict[str, Any]

    @property
    def monthly_usd(self) -> float:
        """The sum of every known amount; `unknown` lists what it leaves out."""
        return sum(r.known_usd for r in self.resources)

    @property
    def unknown(self) -> list[str]:
        out = []
        for r in self.resources:
            if r.known_free:
                continue
            if not r.items:
                out.append(f"{r.name} ({r.type}): tap does not know how AWS bills this type")
            out += [f"{r.name} {i.meter}: {i.why_unknown}" for i in r.items
                    if i.monthly_usd is None]
        return out

    @property
    def complete(self) -> bool:
        return not self.unknown

    def by_urn(self) -> dict[str, ResourceCost]:
        return {r.urn: r for r in self.resources}

    def items_frame(self):
        """One row per line item, biggest first (the table the notebook shows)."""
        import pandas as pd

        rows = [{"resource": r.name, "kind": r.kind, "meter": i.meter, "quantity": i.quantity,
                 "unit": i.unit, "unit_price": i.unit_price, "monthly_usd": i.monthly_usd,
                 "basis": i.basis or i.why_unknown}
                for r in self.resources for i in r.items]
        df = pd.DataFrame(rows, columns=["resource", "kind", "meter", "quantity", "unit",
                                         "unit_price", "monthly_usd", "basis"])
        return df.sort_values("monthly_usd", ascending=False, na_position="first",
                              kind="stable").reset_index(drop=True)

    def by_kind(self):
        """Known monthly cost per resource kind, biggest first (the notebook's chart)."""
        import pandas as pd

        totals: dict[str, float] = {}
        for r in self.resources:
            if r.items:
                totals[r.kind] = totals.get(r.kind, 0.0) + r.known_usd
        return pd.Series(totals, name="monthly_usd", dtype=float).sort_values(ascending=False)

    def top(self, n: int = 3) -> list[ResourceCost]:
        priced = [r for r in self.resources if r.items]
        return sorted(priced, key=lambda r: -r.known_usd)[:n]


# -- the estimator ------------------------------------------------------------------------
class _Context:
    """What pricing one resource may need to know about the others and the environment."""

    def __init__(self, settings: Settings, catalog: Catalog, resources: list[Resource]):
        self.settings, self.catalog, self.region = settings, catalog, settings.region
        self.usage = settings.usage
        self.hours = catalog.hours_per_month
        self.of = lambda t: [r for r in resources if r.type == t]
        rotations = self.of(ROTATION)
        self.rotation_arns = {r.props.get("rotationLambdaArn") for r in rotations}
        self.rotation_days = {r.props.get("rotationLambdaArn"):
                              (r.props.get("rotationRules") or {}).get("automaticallyAfterDays")
                              for r in rotations}
        self.flow_destinations = {r.props.get("logDestination") for r in self.of(FLOW_LOG)}
        functions = self.of(FUNCTION)
        self.rotation_fn_names = {f.props.get("name") for f in functions
                                  if f.props.get("arn") in self.rotation_arns}
        self.app_fn_names = {f.props.get("name") for f in functions} - self.rotation_fn_names

    def item(self, meter: str, quantity: float | None, unit: str, basis: str, *,
             cls: str = "", usage_key: str | None = None) -> LineItem:
        price = self.catalog.price(self.region, meter, cls)
        why = ""
        if quantity is None:
            why = (f"usage.{usage_key} is not set in {self.settings.source}" if usage_key
                   else "quantity unknown")
        elif price is None:
            why = f"no {self.region} price: {self.catalog.why_missing(self.region, meter, cls)}"
        return LineItem(meter if not cls else f"{meter}:{cls}", quantity, unit, price, basis, why)

    def share(self, usage_key: str, among: int) -> float | None:
        """A stack-wide usage figure split evenly among `among` resources."""
        total = getattr(self.usage, usage_key)
        return None if total is None else total / max(among, 1)


def _nat(r: Resource, c: _Context) -> list[LineItem]:
    n = len(c.of(NAT))
    return [c.item("nat_gateway_hour", c.hours, "h", f"{c.hours} h a month"),
            c.item("nat_gateway_gb", c.share("nat_gb_processed_per_month", n), "GB",
                   f"usage.nat_gb_processed_per_month split over {n} NAT gateway(s)",
                   usage_key="nat_gb_processed_per_month")]


def _eip(r: Resource, c: _Context) -> list[LineItem]:
    return [c.item("public_ipv4_hour", c.hours, "h", f"{c.hours} h a month, in use")]


def _instance(r: Resource, c: _Context) -> list[LineItem]:
    cls = str(r.props.get("instanceClass") or "")
    items = [c.item("aurora_instance_hour", c.hours if cls else None, "h",
                    f"{c.hours} h a month", cls=cls)]
    if r.props.get("monitoringInterval"):   # RDS.6: RDSOSMetrics into CloudWatch Logs
        monitored = [i for i in c.of(INSTANCE) if i.props.get("monitoringInterval")]
        gb = c.share("rds_monitoring_gb_per_month", len(monitored))
        items += [c.item("logs_ingest_gb", gb, "GB",
                         "usage.rds_monitoring_gb_per_month (enhanced monitoring's "
                         "RDSOSMetrics), split over the monitored instances",
                         usage_key="rds_monitoring_gb_per_month"),
                  c.item("logs_storage_gb_month",
                         None if gb is None else gb * RDS_OS_METRICS_DAYS / DAYS_PER_MONTH,
                         "GB-month", f"{RDS_OS_METRICS_DAYS} days retained (RDSOSMetrics' "
                         "default) of the GB ingested a month",
                         usage_key="rds_monitoring_gb_per_month")]
    return items


def _endpoint(r: Resource, c: _Context) -> list[LineItem]:
    """Gateway endpoints (S3, DynamoDB) are free; an interface endpoint is billed per
    network interface (one per subnet, so per AZ) and hour, and per GB it processes."""
    if str(r.props.get("vpcEndpointType") or "Gateway") == "Gateway":
        return [LineItem("vpc_gateway_endpoint", 0, "", 0.0, "gateway endpoints are free")]
    azs = len(r.props.get("subnetIds") or [])
    interfaces = [e for e in c.of(ENDPOINT) if e.props.get("vpcEndpointType") == "Interface"]
    return [c.item("vpc_endpoint_hour", azs * c.hours if azs else None, "h",
                   f"{azs} AZ x {c.hours} h a month"),
            c.item("vpc_endpoint_gb", c.share("vpc_endpoint_gb_per_month", len(interfaces)),
                   "GB", "usage.vpc_endpoint_gb_per_month", usage_key="vpc_endpoint_gb_per_month")]


def _vault(r: Resource, c: _Context) -> list[LineItem]:
    """Aurora backup storage the vault's recovery points are billed (cost/backup.py): the
    operator's usage.backup_gb_stored when set (e.g. the TotalBackupStorageBilled metric once
    deployed), else the snapshots the declared plan keeps past the cluster's retention, each
    the size of usage.aurora_storage_gb."""
    meter = "backup_aurora_gb_month"
    if c.usage.backup_gb_stored is not None:
        return [c.item(meter, c.share("backup_gb_stored", len(c.of(VAULT))), "GB-month",
                       "usage.backup_gb_stored (Aurora backup storage billed)")]
    snaps = vault_snapshots(r, c.of)
    if snaps.billed is None:
        return [LineItem(meter, None, "GB-month", c.catalog.price(c.region, meter), "",
                         snaps.why)]
    gb = c.usage.aurora_storage_gb
    quantity = 0 if snaps.billed == 0 else None if gb is None else snaps.billed * gb
    return [c.item(meter, quantity, "GB-month",
                   f"{snaps.basis}; x usage.aurora_storage_gb, full size each (upper bound: "
                   "the free allocation is left to automated backups)" if snaps.billed
                   else snaps.basis, usage_key="aurora_storage_gb")]


def _queue(r: Resource, c: _Context) -> list[LineItem]:
    return [c.item("sqs_request", c.share("sqs_requests_per_month", len(c.of(QUEUE))),
                   "requests", "usage.sqs_requests_per_month (failed events sent and read "
                   "back)", usage_key="sqs_requests_per_month")]


def _cluster(r: Resource, c: _Context) -> list[LineItem]:
    if r.props.get("storageType") not in (None, "", "aurora"):
        return [LineItem("aurora_storage", None, "", None, "",
                         f"storage type {r.props.get('storageType')} is not in the catalog")]
    io = c.usage.aurora_io_millions
    items = [c.item("aurora_storage_gb_month", c.usage.aurora_storage_gb, "GB-month",
                    "usage.aurora_storage_gb", usage_key="aurora_storage_gb"),
             c.item("aurora_io_request", None if io is None else io * 1_000_000, "requests",
                    "usage.aurora_io_millions", usage_key="aurora_io_millions")]
    if r.props.get("manageMasterUserPassword"):
        items.append(c.item("secret_month", 1, "secret-month",
                            "the master password secret RDS manages"))
    return items


def _key(r: Resource, c: _Context) -> list[LineItem]:
    return [c.item("kms_key_month", 1, "key-month", "one key (rotations add $1 a month each "
                   "for the first two, from the first anniversary)"),
            c.item("kms_request", c.share("kms_requests_per_month", len(c.of(KEY))), "requests",
                   "usage.kms_requests_per_month", usage_key="kms_requests_per_month")]


def _secret(r: Resource, c: _Context) -> list[LineItem]:
    return [c.item("secret_month", 1, "secret-month", "one secret"),
            c.item("secrets_api_request",
                   c.share("secrets_api_calls_per_month", len(c.of(SECRET))), "requests",
                   "usage.secrets_api_calls_per_month", usage_key="secrets_api_calls_per_month")]


def _log_group(r: Resource, c: _Context) -> list[LineItem]:
    name = str(r.props.get("name") or "")
    owner = next((fn for fn in c.rotation_fn_names | c.app_fn_names
                  if fn and name.endswith(f"/{fn}")), None)
    if r.props.get("arn") in c.flow_destinations:
        n = len([g for g in c.of(LOG_GROUP) if g.props.get("arn") in c.flow_destinations])
        gb, key, meter = c.share("flow_log_gb_per_month", n), "flow_log_gb_per_month", \
            "logs_vended_ingest_gb"
        basis = "usage.flow_log_gb_per_month (VPC flow logs, vended)"
    elif owner in c.rotation_fn_names:
        gb, key, meter = 0, None, "logs_ingest_gb"
        basis = "rotation logs: a few KB a month, counted as none"
    else:
        n = len([fn for fn in c.app_fn_names if fn])
        gb, key, meter = c.share("log_gb_ingested_per_month", n), "log_gb_ingested_per_month", \
            "logs_ingest_gb"
        basis = "usage.log_gb_ingested_per_month"
    retention = r.props.get("retentionInDays")
    if gb is None:
        stored = None
    elif not retention:
        stored, key = None, None  # kept forever: grows without bound
    else:
        stored = gb * min(float(retention), 3653) / DAYS_PER_MONTH
    return [c.item(meter, gb, "GB", basis, usage_key=key),
            c.item("logs_storage_gb_month", stored, "GB-month",
                   f"{retention or 'unlimited'} days retained of the GB ingested a month "
                   "(uncompressed, so an upper bound)", usage_key=key)]


def _function(r: Resource, c: _Context) -> list[LineItem]:
    if "arm64" in (r.props.get("architectures") or []):
        return [LineItem("lambda", None, "", None, "", "arm64 Lambda prices are not in the "
                         "catalog")]
    arn = r.props.get("arn")
    duration = c.usage.lambda_avg_duration_ms
    if arn in c.rotation_arns:
        days = c.rotation_days.get(arn) or 30
        calls: float | None = ROTATION_STEPS * DAYS_PER_MONTH / float(days)
        basis, key = f"rotation every {float(days):g} days, {ROTATION_STEPS} calls each", None
    else:
        calls = c.share("lambda_invocations_per_month", len(c.app_fn_names))
        basis, key = "usage.lambda_invocations_per_month", "lambda_invocations_per_month"
    memory_gb = float(r.props.get("memorySize") or 128) / 1024
    gb_s = None if calls is None or duration is None else calls * duration / 1000 * memory_gb
    return [c.item("lambda_request", calls, "requests", basis, usage_key=key),
            c.item("lambda_gb_second", gb_s, "GB-s",
                   f"{basis} x usage.lambda_avg_duration_ms x {memory_gb * 1024:g} MB",
                   usage_key=key if calls is None else "lambda_avg_duration_ms")]


def _bucket(r: Resource, c: _Context) -> list[LineItem]:
    """The stack's data buckets share the usage.s3_* figures; a server access log bucket (a
    BucketLogging target, S3.9) stores what S3 writes to it, its own figure."""
    targets = {t.props.get("targetBucket") for t in c.of(LOGGING)}
    if targets & {r.props.get("id"), r.props.get("bucket")} - {None}:
        return [c.item("s3_standard_gb_month", c.usage.s3_access_log_gb_stored, "GB-month",
                       "usage.s3_access_log_gb_stored (server access logs; S3 writes them "
                       "without request charges)", usage_key="s3_access_log_gb_stored")]
    n = len([b for b in c.of(BUCKET)
             if not targets & {b.props.get("id"), b.props.get("bucket")} - {None}])
    return [c.item("s3_standard_gb_month", c.share("s3_gb_stored", n), "GB-month",
                   "usage.s3_gb_stored", usage_key="s3_gb_stored"),
            c.item("s3_standard_ia_gb_month", c.share("s3_gb_standard_ia", n), "GB-month",
                   "usage.s3_gb_standard_ia (after the lifecycle transition)",
                   usage_key="s3_gb_standard_ia"),
            c.item("s3_put_request", c.share("s3_put_requests_per_month", n), "requests",
                   "usage.s3_put_requests_per_month", usage_key="s3_put_requests_per_month"),
            c.item("s3_get_request", c.share("s3_get_requests_per_month", n), "requests",
                   "usage.s3_get_requests_per_month", usage_key="s3_get_requests_per_month")]


BILLABLE: dict[str, Callable[[Resource, _Context], list[LineItem]]] = {
    NAT: _nat, EIP: _eip, INSTANCE: _instance, CLUSTER: _cluster, KEY: _key, SECRET: _secret,
    LOG_GROUP: _log_group, FUNCTION: _function, BUCKET: _bucket,
    ENDPOINT: _endpoint, VAULT: _vault, QUEUE: _queue,
}


def estimate(resources: Iterable[Resource], settings: Settings,
             catalog: Catalog | None = None) -> Estimate:
    catalog = catalog or load_catalog()
    resources = list(resources)
    ctx = _Context(settings, catalog, resources)
    costs = []
    for r in resources:
        price = BILLABLE.get(r.type)
        costs.append(ResourceCost(r.urn, r.type, r.name, price(r, ctx) if price else [],
                                  known_free=r.type in FREE_TYPES))
    used = {i.meter for c in costs for i in c.items}
    return Estimate(settings.region, costs, catalog.currency, catalog.as_of,
                    assumptions(settings, catalog, used))


def assumptions(settings: Settings, catalog: Catalog,
                used: set[str] | None = None) -> dict[str, Any]:
    """What the figures rest on, shown beside them (`used`: the catalog keys priced, whose
    own dates, where they differ from the catalog's, are listed)."""
    dates = catalog.price_dates(settings.region)
    return {"region": settings.region, "hours_per_month": catalog.hours_per_month,
            "terms": "On-Demand list prices, first tier, no free tier, no data transfer out",
            "usage": {k: v for k, v in settings.usage.model_dump().items()},
            "usage_source": settings.source,
            "price_dates": {k: v for k, v in dates.items() if used is None or k in used},
            "before": "the stack's current resources priced with the same catalog and usage"}


def estimate_program(settings: Settings, catalog: Catalog | None = None,
                     synthesis=None) -> Estimate:
    """The declared program's cost (what the stack costs once a deploy has run)."""
    from ..engines.synth import synthesize

    synthesis = synthesis or synthesize(settings)
    if synthesis.error is not None:
        raise synthesis.error
    return estimate([Resource.from_registration(r) for r in synthesis.registrations],
                    settings, catalog)


def estimate_state(states, settings: Settings, catalog: Catalog | None = None) -> Estimate:
    """The cost of the resources an engine's state records (what the stack costs now)."""
    return estimate([Resource.from_state(s) for s in states], settings, catalog)
