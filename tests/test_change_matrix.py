"""The change matrix: every setting an operator can change, applied to one deployed dev stack.

The cases are generated from the settings model (`Settings.model_fields`, walked recursively),
so a new setting cannot be forgotten: a leaf with no case generator, no boto3 observer and no
reasoned exclusion fails `test_every_setting_has_a_case`. Each case, on the shared stack:
preview classifies every step as the provider's replacement table says
(tap_lib/engines/sandbox/replacements.json, computed here from the step's diffs); deploy does
what the preview promised, in place where it said update (same physical ids); the next preview
is all `same`; verify passes; the new value is visible through boto3; then the base settings are
deployed again and converge too. Settings that declare no resource (cost assumptions) must
preview all `same`.

Real parts throughout: the moto server, the program under Pulumi's mock runtime, a real
PostgreSQL stand-in, verify from tap_lib.ops. The engine is driven directly (no preflight per
case: tests/test_preflight.py covers it) to keep the matrix fast. `run_case` records timings;
benchmarks/bench_engine.py reuses it to print the per-case table.
"""
from __future__ import annotations

import ipaddress
import json
import time
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from pydantic import BaseModel

from tap_lib.config import LOG_RETENTION_DAYS, Settings, load_settings
from tap_lib.engines.sandbox.engine import REPLACEMENT_TRIGGER, SandboxEngine
from tap_lib.engines.sandbox.handlers.base import replacement_table
from tap_lib.errors import ConfigError

from helpers import engines

SUFFIX = "mtx"
ENV = "dev"
ENGINE = "aurora-postgresql"

# Leaves that are the stack's identity, not a change to it: each with the reason.
EXCLUDED = {
    "environment": "identity: the environment file the stack was created from; the engine "
                   "refuses a deploy from another one (Engine._guard_origin), and a different "
                   "environment is a different stack",
    "suffix": "identity: names the stack (TapStack<suffix>) and every physical name; another "
              "suffix is another stack, not a change to this one",
    "region": "identity: where the stack lives; every type is force_new on region "
              "(test_replacements.test_classify_follows_the_table), so it is a new stack in "
              "another region plus a destroy of this one",
    "exceptions": "policy exceptions: a list that preflight and verify read and no resource "
                  "declares (--set cannot spell a list); tests/test_preflight.py and "
                  "tests/test_config.py cover them",
    "protected": "identity: recorded in the stack's state at its first deploy and refused as "
                 "an override (config.load_settings); tests/test_guards.py covers it",
    # issue 19's settings the shared stack cannot take, each for the reason given
    "secrets.deployer_roles": "a list, which --set cannot spell (as for exceptions); what it "
                              "changes (the app secret policy's exempt principals) is shown by "
                              "tests/test_program.py on the synthesized policy, and the sandbox "
                              "never enforces resource policies",
    "vpc.interface_endpoints": "a list, which --set cannot spell (as for exceptions); dev's [] "
                               "and the default [secretsmanager, ec2] are each deployed and "
                               "verified by tests/test_network_controls.py (stacks fixture)",
    "bucket.object_lock_mode": "COMPLIANCE, the only other value, locks every object the "
                               "matrix's verify writes (its synthetic payment logs one) for "
                               "object_lock_days: no one could delete it, so the shared stack "
                               "could never be destroyed; tests/test_network_controls.py "
                               "deploys COMPLIANCE on its own stack and shows the delete refused",
    "bucket.object_lock_days": "moto refuses PutObjectLockConfiguration on a bucket holding "
                               "objects (BucketNeedsToBeNew; AWS accepts it) and every verify "
                               "of the matrix writes one; the handler's refusal is tested in "
                               "tests/test_network_controls.py, the retention read back there",
    "backup.retention_days": "moto 5.2 has no UpdateBackupPlan: the sandbox re-creates the plan "
                             "(a new id, and only once the emulator accepts a deleted plan's "
                             "name), so the matrix's in-place invariant (same physical id) "
                             "cannot hold on the emulator; TAP163 and verify's backup.plan "
                             "judge the retention (tests/test_data_controls.py)",
}

# Changes that fail a control as the control defines it (verify judges the control, not "as
# the file says"): those checks may fail on that case, and no others.
BREAKS_CONTROLS = {
    "secrets.rotation_enabled": ("SecretsManager.1", "SecretsManager.4"),  # rotation turned off
}

# Leaves that declare no resource (inputs to the cost estimate and its budget check): a change
# must leave every step `same`. Prefixes cover a whole sub-model.
NOT_DEPLOYED = {
    "usage.": "usage assumptions for the cost estimate (tap_lib/cost); no resource reads them",
    "budget_monthly_usd": "preflight's cost budget; no resource reads it",
}

# Cases that fail because of a known product bug, each naming it. strict: the case turns red
# the moment the bug is fixed, so the mark is removed with the fix, never left behind.
KNOWN_BUGS: dict[str, str] = {}

# Settings that change what the application secret's rotation established in the database (its
# role, in that database, under that name): the program's replacement_trigger replaces the
# rotation schedule, which rotates on creation. So does any replacement of the cluster (a new,
# empty database). Any other change must leave the schedule alone: a rotation is not free.
ROTATES = {"db.database_name", "db.app_username"}
ROTATION = "aws:secretsmanager/secretRotation:SecretRotation"
CLUSTER = "aws:rds/cluster:Cluster"


# --------------------------------------------------------------------------- the settings model
def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def leaves(model: type[BaseModel] = Settings, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key as --set spells it, FieldInfo) for every leaf of the settings model."""
    out = []
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        if _is_model(info.annotation):
            out.extend(leaves(info.annotation, key + "."))
        else:
            out.append((key, info))
    return out


def current(settings: Settings, key: str) -> Any:
    data = settings.public_dict()
    for part in key.split("."):
        data = data[part]
    return data


def _valid(key: str, value: Any) -> bool:
    text = value if isinstance(value, str) else json.dumps(value)
    try:
        load_settings(ENV, [f"suffix={SUFFIX}", f"{key}={text}"])
    except ConfigError:
        return False
    return True


def _bounds(info) -> tuple[int | None, int | None]:
    ge = next((m.ge for m in info.metadata if getattr(m, "ge", None) is not None), None)
    le = next((m.le for m in info.metadata if getattr(m, "le", None) is not None), None)
    return ge, le


def _int_candidates(value: int | None, info) -> list[int]:
    """+1 within bounds first, then the next allowed retention (for validated day counts)."""
    ge, le = _bounds(info)
    if value is None:
        return [c for c in (ge, 1, 10) if c is not None]
    out = [value + 1, value - 1] + [r for r in LOG_RETENTION_DAYS if r > value]
    return [c for c in out if (ge is None or c >= ge) and (le is None or c <= le)]


SIZES = ("nano", "micro", "small", "medium", "large", "xlarge", "2xlarge", "4xlarge")


def _next_size(value: str) -> list[str]:
    prefix, _, size = value.rpartition(".")
    return [f"{prefix}.{s}" for s in SIZES[SIZES.index(size) + 1:]] if size in SIZES else []


def _next_network(value: str) -> list[str]:
    net = ipaddress.IPv4Network(value)
    return [str(ipaddress.IPv4Network((int(net.network_address) + net.num_addresses,
                                       net.prefixlen)))]


def _other_versions(value: str, settings: Settings) -> list[str]:
    offered, _ = SandboxEngine.offered_engine_versions(settings.region, ENGINE)
    later = [v for v in offered if v != value]
    return later[offered.index(value):] + later[:offered.index(value)] if value in offered \
        else later


# Text settings mean something specific (a CIDR, a version the region offers, an identifier):
# each names how to pick another valid value. A new text setting needs an entry here.
TEXT = {
    "vpc.cidr": lambda v, s: _next_network(v),
    "db.engine_version": _other_versions,
    "db.instance_class": lambda v, s: _next_size(v),
    "db.database_name": lambda v, s: [v + "2", v + "_b"],
    "db.app_username": lambda v, s: [v + "2", v + "_b"],
}


def new_overrides(key: str, info, settings: Settings) -> list[str] | None:
    """--set overrides that give `key` a different valid value, or None if no generator knows
    its type."""
    ann, value = info.annotation, current(settings, key)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    candidates: list[Any]
    if ann is bool:
        candidates = [not value]
    elif origin is typing.Literal:
        candidates = [a for a in args if a != value]
    elif ann is int or (origin in (typing.Union, types.UnionType)
                        and set(args) == {int, type(None)}):
        candidates = _int_candidates(value, info)
    elif origin is dict:
        # change one tag's value and add one: both must reach every taggable resource
        first = next(iter(value), None)
        changed = {**({first: f"{value[first]}-changed"} if first else {}),
                   "ChangeMatrix": "added"}
        return [f"{key}.{k}={v}" for k, v in changed.items()]
    elif ann is str and key in TEXT:
        candidates = TEXT[key](value, settings)
    else:
        return None
    for cand in candidates:
        if cand != value and _valid(key, cand):
            return [f"{key}={cand if isinstance(cand, str) else json.dumps(cand)}"]
    return None


# --------------------------------------------------------------------------- what boto3 shows
Observer = Callable[[Callable, dict, Settings], tuple[Any, Any]]   # -> (expected, live)


def _cluster(c, out):
    return c("rds").describe_db_clusters(DBClusterIdentifier=out["rds_cluster_id"])[
        "DBClusters"][0]


def _instances(c, out):
    return [i for i in c("rds").describe_db_instances()["DBInstances"]
            if i.get("DBClusterIdentifier") == out["rds_cluster_id"]]


def _retention(c, name):
    groups = c("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    return next(g.get("retentionInDays") for g in groups if g["logGroupName"] == name)


def _lifecycle(c, out):
    return c("s3").get_bucket_lifecycle_configuration(Bucket=out["s3_bucket_name"])["Rules"]


def _access_log_expiry(c, out):
    rules = c("s3").get_bucket_lifecycle_configuration(
        Bucket=out["s3_access_log_bucket_name"])["Rules"]
    return [r["Expiration"]["Days"] for r in rules if r.get("Expiration")]


def _fn(c, out):
    return c("lambda").get_function_configuration(FunctionName=out["lambda_function_name"])


def _names(s: Settings):
    return s.physical_names(SandboxEngine.account(s.region))


def _live_subnets(c, out):
    return c("ec2").describe_subnets(Filters=[{"Name": "vpc-id", "Values": [out["vpc_id"]]}])[
        "Subnets"]


def _live_nats(c, out):
    return [n for n in c("ec2").describe_nat_gateways(Filters=[
        {"Name": "vpc-id", "Values": [out["vpc_id"]]}])["NatGateways"]
        if n["State"] not in ("deleted", "deleting")]


def _app_username(c, out):
    # only the user name is read out of the secret: the password is never looked at
    return json.loads(c("secretsmanager").get_secret_value(
        SecretId=out["db_secret_arn"])["SecretString"]).get("username")


def _user_tags(c, out, s):
    """The user's tags as the VPC, the payment function and the bucket carry them."""
    vpc = {t["Key"]: t["Value"] for t in c("ec2").describe_vpcs(VpcIds=[out["vpc_id"]])[
        "Vpcs"][0].get("Tags", [])}
    fn = c("lambda").list_tags(Resource=_fn(c, out)["FunctionArn"])["Tags"]
    bucket = {t["Key"]: t["Value"] for t in c("s3").get_bucket_tagging(
        Bucket=out["s3_bucket_name"])["TagSet"]}
    return [{k: t.get(k) for k in {*s.tags, "ChangeMatrix"}} for t in (vpc, fn, bucket)]


def _secret(c, out):
    return c("secretsmanager").describe_secret(SecretId=out["db_secret_arn"])


OBSERVERS: dict[str, Observer] = {
    "vpc.cidr": lambda c, o, s: (s.vpc.cidr, c("ec2").describe_vpcs(VpcIds=[o["vpc_id"]])[
        "Vpcs"][0]["CidrBlock"]),
    "vpc.az_count": lambda c, o, s: (
        sorted(s.availability_zones), sorted({n["AvailabilityZone"]
                                              for n in _live_subnets(c, o)})),
    "vpc.nat_gateways": lambda c, o, s: (s.nat_count, len(_live_nats(c, o))),
    "vpc.flow_logs_retention_days": lambda c, o, s: (
        s.vpc.flow_logs_retention_days, _retention(c, _names(s).flow_log_group)),
    "db.engine_version": lambda c, o, s: (
        [s.db.engine_version] * (1 + s.db.instances),
        [_cluster(c, o)["EngineVersion"]] + [i["EngineVersion"] for i in _instances(c, o)]),
    "db.instance_class": lambda c, o, s: (
        [s.db.instance_class] * s.db.instances, [i["DBInstanceClass"]
                                                 for i in _instances(c, o)]),
    "db.instances": lambda c, o, s: (s.db.instances, len(_instances(c, o))),
    "db.monitoring_interval_s": lambda c, o, s: (   # RDS.6: dev's 0 (off) to 1 s and back
        [s.db.monitoring_interval_s] * s.db.instances,
        [i.get("MonitoringInterval", 0) for i in _instances(c, o)]),
    "bucket.access_log_days": lambda c, o, s: ([s.bucket.access_log_days],
                                               _access_log_expiry(c, o)),
    "db.backup_retention_days": lambda c, o, s: (
        s.db.backup_retention_days, _cluster(c, o)["BackupRetentionPeriod"]),
    "db.deletion_protection": lambda c, o, s: (
        s.db.deletion_protection, _cluster(c, o)["DeletionProtection"]),
    "db.database_name": lambda c, o, s: (s.db.database_name, _cluster(c, o)["DatabaseName"]),
    "db.app_username": lambda c, o, s: (s.db.app_username, _app_username(c, o)),
    "db.port": lambda c, o, s: ((s.db.port, s.db.port), (_cluster(c, o)["Port"],
                                                         int(o["rds_cluster_port"]))),
    "secrets.rotation_enabled": lambda c, o, s: (
        s.secrets.rotation_enabled, bool(_secret(c, o).get("RotationEnabled"))),
    "secrets.rotation_days": lambda c, o, s: (
        s.secrets.rotation_days, _secret(c, o)["RotationRules"]["AutomaticallyAfterDays"]),
    "lambda.memory_mb": lambda c, o, s: (s.function.memory_mb, _fn(c, o)["MemorySize"]),
    "lambda.timeout_s": lambda c, o, s: (s.function.timeout_s, _fn(c, o)["Timeout"]),
    "lambda.log_retention_days": lambda c, o, s: (
        s.function.log_retention_days, _retention(c, _names(s).payment_log_group)),
    "bucket.transition_to_ia_days": lambda c, o, s: (
        [s.bucket.transition_to_ia_days],
        [t["Days"] for r in _lifecycle(c, o) for t in r.get("Transitions", [])]),
    "bucket.noncurrent_expiration_days": lambda c, o, s: (
        [s.bucket.noncurrent_expiration_days],
        [r["NoncurrentVersionExpiration"]["NoncurrentDays"] for r in _lifecycle(c, o)
         if r.get("NoncurrentVersionExpiration")]),
    "tags": lambda c, o, s: ([{k: {**s.tags}.get(k) for k in {*s.tags, "ChangeMatrix"}}] * 3,
                             _user_tags(c, o, s)),
}


def _not_deployed(key: str) -> str | None:
    return next((why for p, why in NOT_DEPLOYED.items()
                 if key == p or (p.endswith(".") and key.startswith(p))), None)


# --------------------------------------------------------------------------- the cases
@dataclass
class Case:
    key: str
    overrides: list[str]
    deploys: bool = True               # False: a setting no resource reads
    timings: dict[str, float] = field(default_factory=dict)
    ops: set[str] = field(default_factory=set)   # what the change's deploy did (not `same`)

    @property
    def id(self) -> str:
        return self.key


def base_overrides() -> list[str]:
    return [f"suffix={SUFFIX}"]


def cases() -> list[Case]:
    base = load_settings(ENV, base_overrides())
    out = []
    for key, info in leaves():
        if key in EXCLUDED:
            continue
        overrides = new_overrides(key, info, base)
        if overrides is None:
            continue
        out.append(Case(key, overrides, deploys=_not_deployed(key) is None))
    return out


engine = engines(ENV, suffix=SUFFIX)


def expected_op(type_: str, diffs: list[str]) -> str:
    """What the provider does with these changed inputs, from the table (not from classify);
    a replacement_trigger that changed replaces whatever the inputs (Pulumi's option)."""
    rules = replacement_table()[type_]
    replacing = {*rules["force_new"], *rules["force_new_conditional"],
                 *rules["force_new_nested"]}
    inputs = [d for d in diffs if d != REPLACEMENT_TRIGGER]
    unknown = [d for d in inputs if d not in replacing and d not in rules["updatable"]]
    assert not unknown, f"{type_}: {unknown} not in the replacement table"
    return "replace" if REPLACEMENT_TRIGGER in diffs or replacing & set(inputs) else "update"


def check_rotation(key: str, steps) -> None:
    """The schedule is replaced (so rotates again) exactly when the case changes what the
    rotation established: a setting of ROTATES, or a new cluster."""
    replaced = {s.type for s in steps if s.op == "replace"}
    expected = key in ROTATES or CLUSTER in replaced
    assert (ROTATION in replaced) == expected, \
        f"{key}: rotation schedule {'not ' if expected else ''}replaced: {sorted(replaced)}"


def check_classification(steps) -> None:
    for s in steps:
        if s.op in ("update", "replace"):
            assert s.diffs, f"{s.name}: {s.op} without a changed input"
            assert s.op == expected_op(s.type, s.diffs), (s.name, s.op, s.diffs)
        else:
            assert s.op in ("same", "create", "delete") and not s.diffs, (s.name, s.op, s.diffs)


def _ops(steps) -> set[tuple[str, str]]:
    return {(s.urn, s.op) for s in steps if s.op != "same"}


def apply_and_check(overrides: list[str], timings: dict[str, float], label: str):
    """Preview, deploy, preview again: the classification holds, deploy keeps the promise,
    in-place updates keep their physical ids, and the stack converges."""
    eng = engine(*overrides)
    t0 = time.perf_counter()
    plan = eng.preview()
    t1 = time.perf_counter()
    check_classification(plan.steps)
    ids = {u: r.id for u, r in eng.store.state.resources.items()}
    result = eng.up()
    t2 = time.perf_counter()
    timings[f"{label} preview"], timings[f"{label} deploy"] = t1 - t0, t2 - t1
    assert _ops(result.steps) == _ops(plan.steps), "deploy did not do what preview promised"
    state = eng.store.state.resources
    moved = {s.name for s in result.steps if s.op == "update" and state[s.urn].id != ids[s.urn]
             and s.type != "aws:ec2/routeTableAssociation:RouteTableAssociation"}
    assert moved == set(), "an in-place update changed the physical id"  # (an association's
    # id is its association, which ReplaceRouteTableAssociation renews, as on AWS)
    assert {s.op for s in engine(*overrides).preview().steps} == {"same"}, "did not converge"
    return plan, eng


def run_case(case: Case, *, verify_change: bool = True) -> Case:
    """Apply one case to the deployed stack and revert it; fills case.timings."""
    from tap_lib.ops.verify import verify

    start = time.perf_counter()
    if not case.deploys:
        plan = engine(*case.overrides).preview()
        case.timings["change preview"] = time.perf_counter() - start
        assert {s.op for s in plan.steps} == {"same"}, \
            f"{case.key} declares no resource, yet the preview changes: {_ops(plan.steps)}"
        case.timings["total"] = time.perf_counter() - start
        return case
    reverted = False
    try:
        plan, eng = apply_and_check(case.overrides, case.timings, "change")
        assert _ops(plan.steps), f"changing {case.key} changed nothing"
        check_rotation(case.key, plan.steps)
        case.ops = {op for _, op in _ops(plan.steps)}
        c, out, s = eng.clients(), eng.outputs(), eng.settings
        if verify_change:
            t = time.perf_counter()
            report = verify(ENV, overrides=[*base_overrides(), *case.overrides])
            case.timings["verify"] = time.perf_counter() - t
            failed = report.checks[report.checks.status == "fail"]
            failed = failed[~failed.control.isin(BREAKS_CONTROLS.get(case.key, ()))]
            assert failed.empty, failed[["id", "resource", "expected", "actual"]].to_dict(
                "records")
        expected, live = OBSERVERS[case.key](c, out, s)
        assert live == expected, f"{case.key}: boto3 shows {live!r}, declared {expected!r}"
        revert_plan, back = apply_and_check([], case.timings, "revert")
        reverted = True
        check_rotation(case.key, revert_plan.steps)
        if verify_change and case.key in ROTATES:   # the rotation back works too (a user
            report = verify(ENV, overrides=base_overrides())   # renamed back, a new database)
            failed = report.checks[report.checks.status == "fail"]
            assert report.failed == 0, failed[["id", "resource", "expected", "actual"]].to_dict(
                "records")
        expected, live = OBSERVERS[case.key](c, back.outputs(), back.settings)
        assert live == expected, f"{case.key} after revert: boto3 shows {live!r}"
    finally:
        if not reverted:   # leave the shared stack at its base for the next case
            try:
                engine().up()
            except Exception:  # noqa: BLE001 - the case's own failure is the one to report
                pass
    case.timings["total"] = time.perf_counter() - start
    return case


# --------------------------------------------------------------------------- the tests
def test_every_setting_has_a_case():
    """A leaf of Settings is in the matrix, or excluded with a reason: never forgotten."""
    base = load_settings(ENV, base_overrides())
    keys = [k for k, _ in leaves()]
    generated = {c.key: c for c in cases()}
    missing = [k for k in keys if k not in EXCLUDED and k not in generated]
    assert missing == [], f"no case generator for {missing}: extend new_overrides/TEXT"
    unobserved = [k for k, c in generated.items() if c.deploys and k not in OBSERVERS]
    assert unobserved == [], f"no boto3 observer for {unobserved}: add one to OBSERVERS"
    stale = [k for k in [*EXCLUDED, *OBSERVERS, *TEXT, *KNOWN_BUGS, *ROTATES] if k not in keys]
    stale += [p for p in NOT_DEPLOYED if not any(k == p or k.startswith(p) for k in keys)]
    assert stale == [], f"entries for settings that no longer exist: {stale}"
    assert all(len(why) > 20 for why in [*EXCLUDED.values(), *NOT_DEPLOYED.values()])
    # every generated value is really different and valid
    for c in generated.values():
        changed = load_settings(ENV, [*base_overrides(), *c.overrides])
        assert current(changed, c.key) != current(base, c.key), c.key


@pytest.fixture(scope="module")
def deployed(sandbox_home):
    """ONE dev stack for the whole matrix: each case changes it and reverts it."""
    eng = engine()
    eng.up()
    timings: dict[str, dict[str, float]] = {}
    yield timings
    engine("db.deletion_protection=false").destroy()
    for key, t in timings.items():   # shown with -s; the benchmark prints the full table
        print(f"{key:<36} " + "  ".join(f"{k} {v:5.2f}s" for k, v in t.items()))


def _params():
    """One param per leaf; known-bug cases last, so what they leave behind (an app secret
    without a password) cannot fail the cases after them."""
    out = []
    for case in sorted(cases(), key=lambda c: c.key in KNOWN_BUGS):
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[case.key])] \
            if case.key in KNOWN_BUGS else []
        out.append(pytest.param(case, id=case.key, marks=marks))
    return out


@pytest.mark.sandbox
@pytest.mark.postgres
@pytest.mark.parametrize("case", _params())
def test_change(deployed, case):
    deployed[case.key] = run_case(case).timings
