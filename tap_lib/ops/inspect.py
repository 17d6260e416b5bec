"""Inspect: what the stack is, what changed behind its back, and a picture of it.

Drift has two sources, merged by (resource, property):
- the engine's state (declared inputs and outputs) against each resource read live, where the
  engine can read live resources (the sandbox's handlers); only properties both sides know are
  compared, and secrets and digests never are;
- the facts verify collects (bucket versioning and public access block, security group rules
  open to the internet, Lambda environment variables, secret rotation), which no handler reads
  and which the aws target can only see this way.
The topology picture is drawn from the state with matplotlib alone (no graphviz binary), one
file per run under ``<env>/_pictures/`` (audit.picture_path): an earlier picture is never replaced.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..aws import ip_permission
from ..engines.base import Engine, ResourceState
from ..engines.drift import compare
from ..redaction import MASK
from .audit import picture_path
from .facts import PASSWORD_KEY, Facts, collect_facts, digest
from .gating import engine_for
from .verify import world_ingress

VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
NAT = "aws:ec2/natGateway:NatGateway"
ROUTE = "aws:ec2/route:Route"
ROUTE_ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
CLUSTER = "aws:rds/cluster:Cluster"
DB_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
FUNCTION = "aws:lambda/function:Function"
SECRET = "aws:secretsmanager/secret:Secret"
ROTATION = "aws:secretsmanager/secretRotation:SecretRotation"
BUCKET = "aws:s3/bucket:Bucket"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
KMS_KEY = "aws:kms/key:Key"

INVENTORY_COLUMNS = ["type", "name", "id", "status"]
DRIFT_COLUMNS = ["resource", "property", "declared", "live"]
HISTORY_COLUMNS = ["time", "operation", "result", "duration_s", "create", "update", "replace",
                   "delete", "same"]
ABSENT = "(absent)"
NONE = "(none)"

Row = tuple[str, str, Any, Any]     # resource, property, declared, live


@dataclass
class Inspection:
    stack: str
    target: str
    outputs: dict[str, Any]
    inventory: pd.DataFrame
    drift: pd.DataFrame
    history: pd.DataFrame
    topology_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        def records(frame: pd.DataFrame) -> list[dict]:
            return json.loads(frame.to_json(orient="records"))

        return {"stack": self.stack, "target": self.target, "outputs": self.outputs,
                "inventory": records(self.inventory), "drift": records(self.drift),
                "history": records(self.history),
                "topology_path": str(self.topology_path) if self.topology_path else None,
                "notes": self.notes}


class _State:
    """The engine's resources, looked up by type."""

    def __init__(self, resources: list[ResourceState]):
        self.resources = resources

    def of(self, type_: str) -> list[ResourceState]:
        return [r for r in self.resources if r.type == type_]

    def first(self, type_: str) -> ResourceState | None:
        return next(iter(self.of(type_)), None)


# -- inventory and history -------------------------------------------------------------------
def short_type(type_: str) -> str:
    """'aws:ec2/vpc:Vpc' -> 'ec2:Vpc': the service and the resource, without the module path."""
    parts = type_.split(":")
    return f"{parts[1].split('/')[0]}:{parts[-1]}" if len(parts) == 3 else type_


def inventory_frame(resources: list[ResourceState]) -> pd.DataFrame:
    rows = sorted((short_type(r.type), r.name, r.id, r.status) for r in resources)
    return pd.DataFrame(rows, columns=INVENTORY_COLUMNS)


def history_frame(engine: Engine) -> pd.DataFrame:
    return pd.DataFrame([asdict(h) for h in engine.history()], columns=HISTORY_COLUMNS)


# -- drift: state against live ---------------------------------------------------------------
def state_drift(engine: Engine, state: _State) -> list[Row]:
    """Each created resource read live and compared with what the state declares."""
    rows = []
    for res in state.resources:
        if res.status != "created":
            continue
        live = engine.read_live(res.urn)
        if live is None:
            rows.append((res.name, "(resource)", "present", "missing"))
        else:
            rows += [(res.name, prop, d, v) for prop, d, v in compare(res.outputs, live)]
    return rows


# -- drift: the out-of-band facts verify collects ----------------------------------------------
def fact_drift(state: _State, facts: Facts) -> list[Row]:
    return [*_versioning_drift(state, facts), *_public_access_drift(state, facts),
            *_world_ingress_drift(state, facts), *_environment_drift(state, facts),
            *_rotation_drift(state, facts)]


def _differs(name: str, prop: str, declared: Any, live: Any) -> list[Row]:
    return [(name, prop, declared, live)] if declared != live else []


def _versioning_drift(state: _State, facts: Facts) -> list[Row]:
    return [row for r in state.of(VERSIONING) for row in _differs(
        r.name, "versioningConfiguration.status",
        (r.outputs.get("versioningConfiguration") or {}).get("status"), facts.bucket.versioning)]


def _public_access_drift(state: _State, facts: Facts) -> list[Row]:
    live = facts.bucket.public_access_block or {}
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    return [row for r in state.of(PUBLIC_ACCESS_BLOCK) for flag in flags for row in _differs(
        r.name, flag, r.outputs.get(flag), live.get(flag[0].upper() + flag[1:], False))]


def _world_ingress_drift(state: _State, facts: Facts) -> list[Row]:
    rows = []
    for sg in state.of(SECURITY_GROUP):
        declared = sorted(world_ingress({"IpPermissions": [
            ip_permission(r.outputs) for r in state.of(INGRESS_RULE)
            if r.outputs.get("securityGroupId") == sg.id]}))
        live = sorted(world_ingress(facts.security_groups.get(sg.id, {})))
        rows += _differs(sg.name, "ingress from 0.0.0.0/0", declared or "none", live or "none")
    return rows


def _environment_drift(state: _State, facts: Facts) -> list[Row]:
    rows = []
    for fn in state.of(FUNCTION):
        live_fn = facts.functions.get(fn.id)
        if live_fn is None:
            continue
        declared = (fn.outputs.get("environment") or {}).get("variables") or {}
        live = (live_fn["Configuration"].get("Environment") or {}).get("Variables") or {}
        rows += [row for key in sorted(declared.keys() | live.keys()) for row in _differs(
            fn.name, f"environment.variables.{key}", declared.get(key, ABSENT),
            live.get(key, ABSENT))]
    return rows


def _rotation_drift(state: _State, facts: Facts) -> list[Row]:
    rotated = {r.outputs.get("secretId") for r in state.of(ROTATION)}
    live = facts.secret or {}
    return [row for s in state.of(SECRET) if s.id == live.get("ARN") for row in _differs(
        s.name, "rotationEnabled", s.id in rotated, bool(live.get("RotationEnabled")))]


def _show(prop: str, value: Any, secrets: frozenset[str] | None) -> str:
    """Display form; a value named like a password, or equal to one, is masked."""
    if isinstance(value, str) and value != ABSENT and (
            PASSWORD_KEY.search(prop.rsplit(".", 1)[-1]) or (secrets and digest(value) in secrets)):
        return MASK
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, bool):
        return str(value).lower()
    return ABSENT if value is None else str(value)


def drift_frame(rows: list[Row], facts: Facts) -> pd.DataFrame:
    merged = {(res, prop): (res, prop, _show(prop, d, facts.secret_digests),
                            _show(prop, v, facts.secret_digests)) for res, prop, d, v in rows}
    return pd.DataFrame(sorted(merged.values()), columns=DRIFT_COLUMNS)


# -- topology ----------------------------------------------------------------------------------
@dataclass
class Zone:
    az: str
    public: list[str]          # "subnet-…\n10.0.0.0/20"
    private: list[str]
    nats: list[str]


@dataclass
class Topology:
    title: str
    vpc: str
    zones: list[Zone]
    routes: dict[int, int]     # private zone index -> zone index of the NAT it routes through
    functions: list[str]
    database: str
    bucket: str
    secret: str
    key: str


def build_topology(stack: str, target: str, state: _State, outputs: dict[str, Any]) -> Topology:
    """The stack's shape as its state declares it (the picture needs no AWS calls)."""
    zones = _zones(state, set(outputs.get("private_subnet_ids") or []))
    vpc, cluster, secret = state.first(VPC), state.first(CLUSTER), state.first(SECRET)
    bucket, key, rotation = state.first(BUCKET), state.first(KMS_KEY), state.first(ROTATION)
    days = (rotation.outputs.get("rotationRules") or {}).get("automaticallyAfterDays") \
        if rotation else None
    return Topology(
        title=f"{stack} ({target}, {outputs.get('region', '')})",
        vpc=f"VPC {vpc.id}  {vpc.outputs.get('cidrBlock', '')}" if vpc else "VPC",
        zones=zones,
        routes=_nat_routes(state, zones),
        functions=[f.outputs.get("name", f.id) for f in state.of(FUNCTION)],
        database=(f"{cluster.id}\n{cluster.outputs.get('engine', '')} "
                  f"{cluster.outputs.get('engineVersion', '')}, "
                  f"{len(state.of(DB_INSTANCE))} instance(s)") if cluster else NONE,
        bucket=bucket.id if bucket else NONE,
        secret=f"{secret.outputs.get('name', secret.id)}\n"
               f"{f'rotation every {days} days' if days else 'no rotation'}" if secret else NONE,
        key=key.id if key else NONE)


def _zones(state: _State, private: set[str]) -> list[Zone]:
    """One zone per AZ: its subnets by tier (the stack has public and private only) and the NAT
    gateways placed in it."""
    zones: dict[str, Zone] = {}
    az_of = _subnet_azs(state)
    for subnet in state.of(SUBNET):
        zone = zones.setdefault(az_of[subnet.id], Zone(az_of[subnet.id], [], [], []))
        tier = zone.private if subnet.id in private else zone.public
        tier.append(f"{subnet.id}\n{subnet.outputs.get('cidrBlock', '')}")
    for nat in state.of(NAT):
        az = az_of.get(nat.outputs.get("subnetId"), "?")
        zones.setdefault(az, Zone(az, [], [], [])).nats.append(nat.id)
    return [zones[az] for az in sorted(zones)]


def _subnet_azs(state: _State) -> dict[str, str]:
    return {s.id: s.outputs.get("availabilityZone", "?") for s in state.of(SUBNET)}


def _nat_routes(state: _State, zones: list[Zone]) -> dict[int, int]:
    """Which zone's NAT each zone's private subnet routes 0.0.0.0/0 through."""
    zone_index = {z.az: i for i, z in enumerate(zones)}
    nat_zone = {nat: i for i, z in enumerate(zones) for nat in z.nats}
    table_nat = {r.outputs.get("routeTableId"): r.outputs.get("natGatewayId")
                 for r in state.of(ROUTE) if r.outputs.get("natGatewayId")}
    az_of = _subnet_azs(state)
    routes = {}
    for assoc in state.of(ROUTE_ASSOCIATION):
        nat = table_nat.get(assoc.outputs.get("routeTableId"))
        az = az_of.get(assoc.outputs.get("subnetId"))
        if nat in nat_zone and az in zone_index:
            routes[zone_index[az]] = nat_zone[nat]
    return routes


# Colours close to the AWS architecture icons, so the picture reads like the usual diagrams.
COLOURS = {"vpc": "#248814", "public": "#e9f3e6", "private": "#e6f2f8", "nat": "#8c4fff",
           "lambda": "#ed7100", "db": "#3b48cc", "s3": "#7aa116", "secret": "#dd344c",
           "kms": "#dd344c"}


def draw_topology(topo: Topology, png: Path) -> Path:
    """Save the picture as PNG and SVG side by side; returns the PNG path."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    fig = Figure(figsize=(13, 7.5))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 62)
    ax.axis("off")

    def box(x, y, w, h, label, colour, fill="white", size=8, weight="normal", top=False):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.3,rounding_size=0.8",
                                    edgecolor=colour, facecolor=fill, linewidth=1.4))
        ax.text(x + w / 2, y + h - 0.8 if top else y + h / 2, label, ha="center",
                va="top" if top else "center", fontsize=size, weight=weight, color="#222222")

    def arrow(start, end, label="", colour="#555555"):
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(
            arrowstyle="-|>", color=colour, lw=1.2, shrinkA=2, shrinkB=2))
        if label:
            ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, label, fontsize=7,
                    ha="center", va="center", color=colour, backgroundcolor="white")

    ax.text(50, 60, topo.title, ha="center", fontsize=13, weight="bold")
    ax.add_patch(FancyBboxPatch((1, 3), 69, 49.5, boxstyle="round,pad=0.3,rounding_size=1.2",
                                edgecolor=COLOURS["vpc"], facecolor="none", linewidth=2))
    ax.text(2.5, 51, topo.vpc, fontsize=9, weight="bold", color=COLOURS["vpc"], va="center")
    box(27.5, 54.5, 16, 2.6, "Internet gateway", COLOURS["vpc"])

    width = 66 / max(len(topo.zones), 1)
    nats: dict[int, tuple[float, float]] = {}
    for i, zone in enumerate(topo.zones):
        x, mid = 3 + i * width, 3 + i * width + (width - 1.5) / 2
        ax.add_patch(FancyBboxPatch((x, 20), width - 1.5, 28.5, boxstyle="round,pad=0.2",
                                    edgecolor="#999999", facecolor="none", linestyle="--"))
        ax.text(mid, 47.3, zone.az, ha="center", fontsize=9, color="#555555")
        box(x + 1, 35, width - 3.5, 10.5, "public subnet\n" + "\n".join(zone.public),
            COLOURS["vpc"], COLOURS["public"], top=True)
        box(x + 1, 22, width - 3.5, 9, "private subnet\n" + "\n".join(zone.private),
            COLOURS["db"], COLOURS["private"])
        arrow((mid, 45.9), (35.5, 54.2), colour=COLOURS["vpc"])
        if zone.nats:
            nat_width = min(18, width - 6)
            box(mid - nat_width / 2, 35.6, nat_width, 2.6, "NAT " + ", ".join(zone.nats),
                COLOURS["nat"], size=7)
            nats[i] = (mid, 35.4)
    for private_zone, nat_zone in topo.routes.items():
        arrow((3 + private_zone * width + (width - 1.5) / 2, 31.4), nats[nat_zone],
              "0.0.0.0/0", colour=COLOURS["nat"])

    box(3, 5, 30, 11, "Aurora PostgreSQL\n" + topo.database, COLOURS["db"], weight="bold")
    box(38, 5, 30, 11, "Lambda (in the private subnets)\n" + "\n".join(topo.functions),
        COLOURS["lambda"], weight="bold")
    box(76, 38, 22, 9, "KMS key\n" + topo.key, COLOURS["kms"], size=7)
    box(76, 22, 22, 9, "S3 bucket\n" + topo.bucket, COLOURS["s3"])
    box(76, 6, 22, 9, "Secrets Manager\n" + topo.secret, COLOURS["secret"])
    arrow((37.7, 10.5), (33.3, 10.5), "SQL", colour=COLOURS["db"])
    arrow((68.3, 14), (75.7, 25), "logs", colour=COLOURS["s3"])
    arrow((68.3, 10.5), (75.7, 10.5), "credentials", colour=COLOURS["secret"])

    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=130)
    fig.savefig(png.with_suffix(".svg"))
    return png


# -- the operation -----------------------------------------------------------------------------
def inspect_stack(env: str, target: str | None = None, overrides=(), *,
                  engine: Engine | None = None) -> Inspection:
    """Outputs, inventory, drift, history and topology of one environment; read-only.
    `engine`: one already open on the stack (a `Stack` handle's), else one is opened."""
    engine = engine_for(env, target, overrides, engine)
    outputs, state = engine.outputs(), _State(engine.resources())
    result = Inspection(engine.stack, engine.name, outputs, inventory_frame(state.resources),
                        pd.DataFrame(columns=DRIFT_COLUMNS), history_frame(engine))
    if not outputs:
        result.notes.append(f"{engine.stack} is not deployed on {engine.name}: no drift or "
                            "topology to show")
        return result
    facts, notes = collect_facts(engine.clients(), outputs)
    result.notes += notes
    rows = fact_drift(state, facts)
    if engine.reads_live:
        rows = state_drift(engine, state) + rows
    else:
        result.notes.append("drift covers the properties verify reads; run `pulumi refresh` "
                            "for every property of every resource")
    result.drift = drift_frame(rows, facts)
    result.topology_path = draw_topology(build_topology(engine.stack, engine.name, state, outputs),
                                         picture_path(env, "topology"))
    return result


def display_inspection(result: Inspection) -> None:
    """Notebook view: each table under a heading, then the topology picture inline."""
    from IPython.display import Image, Markdown, display

    display(Markdown(f"### {result.stack} on {result.target}"))
    outputs = pd.DataFrame(list(result.outputs.items()), columns=["output", "value"])
    for title, frame in (("Outputs", outputs), ("Resources", result.inventory),
                         ("Drift", result.drift), ("History", result.history)):
        display(Markdown(f"**{title}**" + ("" if len(frame) else ": none")))
        if len(frame):
            display(frame)
    for note in result.notes:
        display(Markdown(f"_note: {note}_"))
    if result.topology_path:
        display(Image(filename=str(result.topology_path)))
