"""Preflight: find, before anything is created, the failures the seed found only by deploying.

Preflight changes nothing anywhere. It synthesizes the TapStack program under the mock runtime
(tap_lib.engines.synth) and runs a list of rules over the configuration and the synthesized plan,
plus read-only AWS look-ups on the aws target. Each rule is one small function registered with
`@rule`; its docstring says which failure it prevents. A rule returns findings (severity,
resource, message, fix); a program that does not run to the end becomes findings too, never a
traceback, and the rules that need the whole plan are then skipped rather than misreport.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd
import pulumi
import yaml

from ..config import Settings
from ..engines.registry import check_target, engine_class
from ..engines.versions import version_key
from ..engines.synth import Registration, Synthesis, synthesize
from ..errors import DuplicateUrnError, TapError, UsageError
from ..naming import RULES as NAME_RULES
from ..project import project_dir
from ..project import project_file as default_project_file

Program = Callable[[Settings], Any]
EngineVersions = Callable[[str, str], tuple[list[str], str]]

EXPECTED_PROJECT = "TapStack"
ENGINE = "aurora-postgresql"
SEVERITIES = ("error", "warning", "info")
SYNTHESIS_RULE = ("TAP000", "synthesis")  # also reports the rules a failed program skipped
COLUMNS = ["rule", "severity", "resource", "message", "fix"]

# -- resource types the rules look at --------------------------------------------------------
PROVIDER = "pulumi:providers:aws"
BUCKET = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
PUBLIC_ACCESS_BLOCK = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
BUCKET_POLICY = ("aws:s3/bucketPolicy:BucketPolicy",)
VERSIONING = ("aws:s3/bucketVersioning:BucketVersioning",
              "aws:s3/bucketVersioningV2:BucketVersioningV2")
SSE = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
       "aws:s3/bucketServerSideEncryptionConfigurationV2:"
       "BucketServerSideEncryptionConfigurationV2")
CLUSTER = ("aws:rds/cluster:Cluster",)
DB_INSTANCE = ("aws:rds/clusterInstance:ClusterInstance", "aws:rds/instance:Instance")
FUNCTION = ("aws:lambda/function:Function",)
PERMISSION = ("aws:lambda/permission:Permission",)
SUBNET = ("aws:ec2/subnet:Subnet",)
VPC = ("aws:ec2/vpc:Vpc",)
FLOW_LOG = ("aws:ec2/flowLog:FlowLog",)
SECRET = ("aws:secretsmanager/secret:Secret",)
ROTATION = ("aws:secretsmanager/secretRotation:SecretRotation",)
IAM_POLICY = ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy")

# Physical-name input and naming rule per type (buckets: TAP007, with their stability).
NAME_INPUTS: dict[str, tuple[str, str]] = {
    "aws:rds/cluster:Cluster": ("clusterIdentifier", "rds_cluster"),
    "aws:rds/clusterInstance:ClusterInstance": ("identifier", "rds_instance"),
    "aws:rds/subnetGroup:SubnetGroup": ("name", "db_subnet_group"),
    "aws:lambda/function:Function": ("name", "lambda_function"),
    "aws:iam/role:Role": ("name", "iam_role"),
    "aws:secretsmanager/secret:Secret": ("name", "secret"),
    "aws:cloudwatch/logGroup:LogGroup": ("name", "log_group"),
    "aws:ec2/securityGroup:SecurityGroup": ("name", "security_group"),
    "aws:kms/alias:Alias": ("name", "kms_alias"),
}
# What a name looks like when Pulumi derives it: logical name, '-', 7 random hex characters.
AUTONAME_SUFFIX = "-0a1b2c3"

# Known replacements for removed or deprecated pulumi-aws arguments and resources; anything else
# echoes the provider's own "in favor of" / "Use ... instead" text.
REPLACEMENTS: dict[str | tuple[str, str], str] = {
    ("Eip", "vpc"): 'domain="vpc"',
    ("Instance", "cpu_core_count"): 'cpu_options={"core_count": N}',
    ("Instance", "cpu_threads_per_core"): 'cpu_options={"threads_per_core": N}',
    "BucketV2": "aws.s3.Bucket",
    "BucketAclV2": "aws.s3.BucketAcl",
    "BucketVersioningV2": "aws.s3.BucketVersioning",
    "BucketLoggingV2": "aws.s3.BucketLogging",
    "BucketLifecycleConfigurationV2": "aws.s3.BucketLifecycleConfiguration",
    "BucketServerSideEncryptionConfigurationV2": "aws.s3.BucketServerSideEncryptionConfiguration",
}
_UNEXPECTED_ARG = re.compile(
    r"(\w+)\.(?:_internal_init|__init__)\(\) got an unexpected keyword argument '(\w+)'")
_MISSING_CLASS = re.compile(r"module 'pulumi_aws\.([\w.]+)' has no attribute '(\w+)'")
_WARNING = re.compile(r"^(?:pulumi warning|\w+): (?:(\w+) is deprecated: )?(.*)$", re.S)
_SUBJECT = re.compile(r"^(\w+) is deprecated")
_REPLACEMENT_TEXT = re.compile(r"in favor of (\S+)|[Uu]se (?:the )?(.+?)(?: resource)? instead")


# -- findings and the report -----------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """One problem (or note); `rule` is filled in by the runner from the rule that found it."""

    severity: str
    resource: str
    message: str
    fix: str = ""
    rule: str = ""


def error(resource: str, message: str, fix: str = "") -> Finding:
    return Finding("error", resource, message, fix)


def warning(resource: str, message: str, fix: str = "") -> Finding:
    return Finding("warning", resource, message, fix)


def info(resource: str, message: str, fix: str = "") -> Finding:
    return Finding("info", resource, message, fix)


@dataclass
class PreflightReport:
    """Findings of one preflight run; `ok` when nothing is error-level."""

    findings: pd.DataFrame
    stack: str
    environment: str
    target: str
    rules_checked: int

    @property
    def errors(self) -> int:
        return int((self.findings["severity"] == "error").sum())

    @property
    def warnings(self) -> int:
        return int((self.findings["severity"] == "warning").sum())

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def errors_text(self) -> str:
        """The error-level findings, one line each, for a refusal message."""
        rows = self.findings[self.findings["severity"] == "error"]
        return "\n".join(f"  {r.rule}: {r.resource}: {r.message}" + (f" (fix: {r.fix})"
                                                                    if r.fix else "")
                         for r in rows.itertuples())

    def to_dict(self) -> dict[str, Any]:
        counts = self.findings["severity"].value_counts()
        summary = {s: int(counts.get(s, 0)) for s in SEVERITIES}
        return {"stack": self.stack, "environment": self.environment, "target": self.target,
                "findings": self.findings.to_dict("records"),
                "summary": {**summary, "rules_checked": self.rules_checked}}


# -- what the rules see ----------------------------------------------------------------------
@dataclass
class Context:
    """Everything a rule may look at: configuration, the synthesized plan, the target."""

    settings: Settings
    target: str
    synthesis: Synthesis
    program: Program | None
    project_file: Path
    engine_versions: EngineVersions
    region_of_target: str | None

    def of(self, types: tuple[str, ...]) -> list[Registration]:
        return [r for r in self.synthesis.registrations if r.type in types]

    def resynthesize(self, settings: Settings) -> Synthesis:
        return synthesize(settings, program=self.program)

    @property
    def params_file(self) -> str:
        return f"params/{self.settings.environment}.yaml"

    @property
    def is_prod(self) -> bool:
        return self.settings.environment == "prod"


@dataclass(frozen=True)
class Rule:
    """A registered check; its docstring (`prevents`) names the failure it exists for."""

    id: str
    name: str
    check: Callable[[Context], Iterable[Finding]]
    needs_complete_plan: bool

    @property
    def label(self) -> str:
        return f"{self.id} {self.name}"

    @property
    def prevents(self) -> str:
        return (self.check.__doc__ or "").strip()


RULES: list[Rule] = []


def rule(id_: str, name: str, *, needs_complete_plan: bool = True):
    """Register a rule. Rules that need the whole plan are skipped when the program failed,
    since a half-declared stack would make them report resources as missing."""
    def register(check: Callable[[Context], Iterable[Finding]]):
        RULES.append(Rule(id_, name, check, needs_complete_plan))
        return check
    return register


# -- entry point -----------------------------------------------------------------------------
def run_preflight(settings: Settings, *, target: str = "sandbox", program: Program | None = None,
                  project_file: Path | None = None, engine_versions: EngineVersions | None = None,
                  region_of_target: str | None = None,
                  skip: dict[str, str] | None = None) -> PreflightReport:
    """Check one environment before deploying; changes nothing anywhere. `skip` maps rule ids
    to the reason an operator gave for not running them; each skip is reported as a finding."""
    target = check_target(target)
    skip = skip or {}
    unknown = sorted(set(skip) - {r.id for r in RULES})
    if unknown:
        raise UsageError(f"--skip-rule: unknown rule {', '.join(unknown)}",
                         hint="allowed: " + ", ".join(r.id for r in RULES))
    synthesis = _synthesize(settings, program)
    ctx = Context(
        settings=settings, target=target, synthesis=synthesis, program=program,
        project_file=Path(project_file) if project_file else default_project_file(),
        engine_versions=engine_versions or engine_class(target).offered_engine_versions,
        region_of_target=region_of_target or engine_class(target).default_region(settings))
    findings: list[Finding] = []
    skipped: list[str] = []
    for r in RULES:
        if r.id in skip:
            findings.append(Finding("warning", "preflight", f"rule skipped on purpose: "
                                    f"{skip[r.id]}", "", rule=r.label))
            continue
        if synthesis.error is not None and r.needs_complete_plan:
            skipped.append(r.id)
            continue
        findings += [dataclasses.replace(f, rule=r.label) for f in r.check(ctx)]
    if skipped:
        findings.append(Finding(
            "info", "program", f"{len(skipped)} rules need the whole plan and were not run: "
            f"{', '.join(skipped)}", "fix the errors above and run preflight again",
            rule=" ".join(SYNTHESIS_RULE)))
    return PreflightReport(_frame(findings), synthesis.stack, settings.environment, target,
                           rules_checked=len(RULES) - len(skipped) - len(skip))


def _synthesize(settings: Settings, program: Program | None) -> Synthesis:
    """Synthesis, or an empty one carrying the error when even the setup failed (an unreadable
    Pulumi.yaml), so that the failure is reported like any other."""
    try:
        return synthesize(settings, program=program)
    except TapError as exc:
        return Synthesis(stack=f"{EXPECTED_PROJECT}{settings.suffix}", registrations=[],
                         outputs={}, warnings=[], duplicates=[], error=exc, duration_s=0.0)


def _frame(findings: list[Finding]) -> pd.DataFrame:
    rows = [{c: getattr(f, c) for c in COLUMNS} for f in findings]
    df = pd.DataFrame(rows, columns=COLUMNS)
    order = df["severity"].map(SEVERITIES.index)
    df = df.assign(_order=order).sort_values(["_order", "rule"], kind="stable")
    return df.drop(columns="_order").reset_index(drop=True)


# -- small helpers over the plan -------------------------------------------------------------
def _bucket_of(ctx: Context, reg: Registration) -> Registration | None:
    ref = reg.inputs.get("bucket")
    return next((b for b in ctx.of(BUCKET) if ref in (b.id, b.inputs.get("bucket"))), None)


def _attached(ctx: Context, bucket: Registration, types: tuple[str, ...]) -> list[Registration]:
    return [r for r in ctx.of(types) if _bucket_of(ctx, r) is bucket]


def _statements(policy: Any) -> list[dict]:
    """A policy document's statements; none for a document that is not valid JSON."""
    try:
        doc = json.loads(policy) if isinstance(policy, str) else policy
    except json.JSONDecodeError:
        return []
    stmts = doc.get("Statement", []) if isinstance(doc, dict) else []
    return [stmts] if isinstance(stmts, dict) else [s for s in stmts if isinstance(s, dict)]


def _denies_plain_http(stmt: dict) -> bool:
    secure = (stmt.get("Condition") or {}).get("Bool", {}).get("aws:SecureTransport")
    return stmt.get("Effect") == "Deny" and str(secure).lower() == "false"


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _display(path: str | Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(project_dir()))
    except ValueError:
        return str(path)


# -- rules: the seed's failures --------------------------------------------------------------
@rule(*SYNTHESIS_RULE, needs_complete_plan=False)
def program_runs(ctx: Context) -> list[Finding]:
    """A program that fails for a reason no other rule explains (the other rules claim removed
    provider APIs and duplicate URNs) would otherwise surface only as a deploy-time traceback."""
    err = ctx.synthesis.error
    if err is None or isinstance(err, DuplicateUrnError) or _removed_api(err):
        return []
    return [error("program", f"the program failed: {type(err).__name__}: {err}",
                  "fix the program (tap_lib/program/) and run preflight again")]


def _removed_api(err: BaseException) -> re.Match | None:
    if isinstance(err, TypeError):
        return _UNEXPECTED_ARG.search(str(err))
    if isinstance(err, AttributeError):
        return _MISSING_CLASS.search(str(err))
    return None


@rule("TAP001", "deprecated-api", needs_complete_plan=False)
def deprecated_api(ctx: Context) -> list[Finding]:
    """Seed 1: `Eip(vpc=True)` fails in pulumi-aws 7. Removed arguments and resources (the
    program raises) and deprecated ones (warnings during synthesis) are named with their
    replacement instead of failing the deploy."""
    provider = f"pulumi-aws {importlib.metadata.version('pulumi_aws')}"
    out: list[Finding] = []
    err = ctx.synthesis.error
    match = _removed_api(err) if err is not None else None
    if match and isinstance(err, TypeError):
        cls, arg = match.groups()
        resource, where = _failing_resource(err)
        fix = REPLACEMENTS.get((cls, arg))
        out.append(error(resource or cls,
                         f"{cls}({arg}=...){where} is not accepted by {provider}: the argument "
                         "was removed",
                         f"use {fix} instead of {arg}" if fix
                         else f"see the {cls} documentation of {provider} for its replacement"))
    elif match:
        module, cls = match.groups()
        fix = REPLACEMENTS.get(cls)
        out.append(error(cls, f"aws.{module}.{cls} does not exist in {provider}: the resource "
                              "was removed",
                         f"use {fix}" if fix else f"see the aws.{module} documentation"))
    # One deprecation arrives as a Python and as a pulumi warning with the same text; the pulumi
    # one names the argument as the program spells it (cors_rules, not cors_rule).
    subjects: dict[str, str | None] = {}
    for text in ctx.synthesis.warnings:
        m = _WARNING.match(text)
        explicit, body = (m.group(1), m.group(2)) if m else (None, text)
        if explicit or body not in subjects:
            implicit = _SUBJECT.match(body)
            subjects[body] = explicit or (implicit.group(1) if implicit else None)
    for body, subject in subjects.items():
        fix = _replacement(subject, body)
        for resource in _resources_using(ctx, subject) or ["program"]:
            out.append(error(resource, f"deprecated in {provider}: {body}",
                             f"use {fix}" if fix else "resolve the warning"))
    return out


def _failing_resource(err: BaseException) -> tuple[str | None, str]:
    """(logical name, ' at file:line') of the resource whose constructor raised."""
    where = ""
    for frame, lineno in traceback.walk_tb(err.__traceback__):
        local = frame.f_locals
        if isinstance(local.get("__self__"), pulumi.Resource) and \
                isinstance(local.get("resource_name"), str):
            return local["resource_name"], where
        if "site-packages" not in frame.f_code.co_filename:
            where = f" at {_display(frame.f_code.co_filename)}:{lineno}"
    return None, where


def _replacement(subject: str | None, body: str) -> str | None:
    if subject in REPLACEMENTS:
        return REPLACEMENTS[subject]
    m = _REPLACEMENT_TEXT.search(body)
    return (m.group(1) or m.group(2)) if m else None


def _resources_using(ctx: Context, subject: str | None) -> list[str]:
    """Resources of a deprecated class, or that set a deprecated argument."""
    if not subject:
        return []
    if subject[0].isupper():
        return [r.name for r in ctx.synthesis.registrations if r.type.endswith(f":{subject}")]
    head, *rest = subject.split("_")
    key = head + "".join(p.title() for p in rest)
    return [r.name for r in ctx.synthesis.resources if key in r.inputs]


@rule("TAP002", "project-name", needs_complete_plan=False)
def project_name_matches(ctx: Context) -> list[Finding]:
    """Seed 2: `name: pulumi-infra` in Pulumi.yaml made stack TapStack<suffix>, its outputs and
    the CI that looks them up disagree ("project name doesn't match expected name 'TapStack'")."""
    path = _display(ctx.project_file)
    try:
        data = yaml.safe_load(ctx.project_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return [error(path, f"cannot read the project file: {exc}",
                      f"restore Pulumi.yaml with `name: {EXPECTED_PROJECT}`")]
    name = data.get("name") if isinstance(data, dict) else None
    if name != EXPECTED_PROJECT:
        return [error(path, f"project name is {name!r}; tap expects {EXPECTED_PROJECT!r}: the "
                            f"stack is {EXPECTED_PROJECT}{ctx.settings.suffix} and its URNs, tags "
                            "and outputs carry the project name",
                      f"set `name: {EXPECTED_PROJECT}` in {path}")]
    return []


@rule("TAP003", "duplicate-urn", needs_complete_plan=False)
def duplicate_urn(ctx: Context) -> list[Finding]:
    """Seed 3: the stack was instantiated twice and the engine refused a duplicate URN."""
    urns = list(ctx.synthesis.duplicates)
    if isinstance(ctx.synthesis.error, DuplicateUrnError) and ctx.synthesis.error.urn not in urns:
        urns.append(ctx.synthesis.error.urn)
    return [error(urn.rsplit("::", 1)[-1], f"duplicate resource URN {urn}",
                  "declare every resource once: instantiate TapStack only in "
                  "tap_lib/program/entry.define_stack, never at import time of a module")
            for urn in urns]


@rule("TAP004", "physical-names", needs_complete_plan=False)
def physical_names_valid(ctx: Context) -> list[Finding]:
    """Seed 4: uppercase RDS identifiers and subnet group names were rejected by AWS at create
    time. Every physical name in the plan is checked against naming.RULES."""
    out: list[Finding] = []
    for reg in ctx.synthesis.resources:
        if reg.type not in NAME_INPUTS:
            continue
        key, kind = NAME_INPUTS[reg.type]
        name = reg.inputs.get(key)
        fix = "build the name with tap_lib.naming (PhysicalNames) and pass it explicitly"
        if isinstance(name, str):
            problems = NAME_RULES[kind].problems(name)
            if problems:
                out.append(error(reg.name, f"{kind} name {name!r}: {'; '.join(problems)}", fix))
        elif kind != "kms_alias":  # an alias without a name gets one from the provider
            problems = NAME_RULES[kind].problems(reg.name + AUTONAME_SUFFIX)
            text = f"no explicit {key}: Pulumi derives '{reg.name}-<random>' from the logical name"
            out.append(error(reg.name, f"{text}, which breaks the rules: {'; '.join(problems)}",
                             fix) if problems else warning(reg.name, text, fix))
    return out


@rule("TAP005", "engine-version", needs_complete_plan=False)
def engine_version_offered(ctx: Context) -> list[Finding]:
    """Seed 5: aurora-postgresql 15.3 is not offered in eu-west-2 (CreateDBCluster failed).
    Versions come from AWS on the aws target and from the repo's catalog on the sandbox."""
    region = ctx.settings.region
    wanted = {r.name: r.inputs["engineVersion"] for r in ctx.of(CLUSTER + DB_INSTANCE)
              if r.inputs.get("engine") == ENGINE and r.inputs.get("engineVersion")}
    wanted = wanted or {"db.engine_version": ctx.settings.db.engine_version}
    try:
        offered, source = ctx.engine_versions(region, ENGINE)
    except (LookupError, TapError) as exc:
        return [warning("db.engine_version", f"engine version not checked: {exc}",
                        "refresh tap_lib/data/engine_versions.json or run with --target aws")]
    if not offered:
        return [warning("db.engine_version", f"{source} lists no {ENGINE} versions in {region}",
                        "check the region and the account's access to RDS")]
    out: list[Finding] = []
    for resource, version in wanted.items():
        if version not in offered:
            out.append(error(resource, f"{ENGINE} {version} is not offered in {region}; offered: "
                                       f"{', '.join(offered)} (source: {source})",
                             f"set db.engine_version in {ctx.params_file} (or --set "
                             f"db.engine_version=V) to an offered version, e.g. "
                             f"{_closest(version, offered)}"))
    for version in sorted(set(wanted.values()) & set(offered), key=version_key):
        out.append(info("db.engine_version",
                        f"{ENGINE} {version} is offered in {region} (source: {source})"))
    return out


def _closest(version: str, offered: list[str]) -> str:
    """The first offered version at or after `version` in its major line, else the newest."""
    major = version.split(".")[0]
    later = [v for v in sorted(offered, key=version_key)
             if v.split(".")[0] == major and version_key(v) >= version_key(version)]
    return later[0] if later else max(offered, key=version_key)


@rule("TAP006", "rotation-lambda")
def rotation_lambda_in_plan(ctx: Context) -> list[Finding]:
    """Seed 6: rotation pointed at a placeholder Lambda ARN (ResourceNotFoundException). The
    rotation Lambda must be a function of this stack that Secrets Manager may invoke."""
    functions = {f.outputs.get("arn"): f for f in ctx.of(FUNCTION)}
    out: list[Finding] = []
    for rotation in ctx.of(ROTATION):
        arn = rotation.inputs.get("rotationLambdaArn")
        fn = functions.get(arn)
        if fn is None:
            out.append(error(rotation.name, f"rotationLambdaArn {arn!r} is not a Lambda function "
                                            "of this stack; rotation would fail with "
                                            "ResourceNotFoundException",
                             "pass the .arn of the rotation function the program declares "
                             "(tap_lib/lambdas/rotation)"))
        elif not _invokable_by_secrets_manager(ctx, fn):
            out.append(error(fn.name, "no lambda.Permission lets secretsmanager.amazonaws.com "
                                      f"invoke {fn.inputs.get('name', fn.name)!r}",
                             "add aws.lambda_.Permission(action='lambda:InvokeFunction', "
                             "principal='secretsmanager.amazonaws.com', function=<fn>.name, "
                             "source_arn=<secret>.arn)"))
    return out


def _invokable_by_secrets_manager(ctx: Context, fn: Registration) -> bool:
    refs = {fn.id, fn.inputs.get("name"), fn.outputs.get("name"), fn.outputs.get("arn")} - {None}
    return any(p.inputs.get("principal") == "secretsmanager.amazonaws.com"
               and p.inputs.get("action") == "lambda:InvokeFunction"
               and p.inputs.get("function") in refs for p in ctx.of(PERMISSION))


@rule("TAP007", "bucket-name")
def bucket_name_stable(ctx: Context) -> list[Finding]:
    """Seed 7: an uppercase, non-unique bucket name failed; its patch (a random suffix on every
    run) would replace the bucket, and lose its logs, on every deploy. The name must be valid,
    unique per stack and identical across runs."""
    names = _bucket_names(ctx.synthesis)
    fix = "use naming.PhysicalNames.s3_bucket: lowercase, with a hash of (account, region, stack)"
    out: list[Finding] = []
    for logical, name in names.items():
        if not isinstance(name, str):
            out.append(warning(logical, "no explicit bucket name: Pulumi picks a random one that "
                                        "preflight cannot check", fix))
            continue
        problems = NAME_RULES["s3_bucket"].problems(name)
        if problems:
            out.append(error(logical, f"bucket name {name!r}: {'; '.join(problems)}", fix))
    again = _bucket_names(ctx.resynthesize(ctx.settings))
    other_suffix = "preflight" if ctx.settings.suffix.lower() != "preflight" else "preflight2"
    other = set(_bucket_names(ctx.resynthesize(
        ctx.settings.model_copy(update={"suffix": other_suffix}))).values())
    for logical, name in names.items():
        if not isinstance(name, str):
            continue
        if again.get(logical) != name:
            out.append(error(logical, f"bucket name changes between runs ({name!r}, then "
                                      f"{again.get(logical)!r}): every deploy would replace "
                                      "the bucket", fix))
        if name in other:
            out.append(error(logical, f"bucket name {name!r} is the same for stack "
                                      f"{EXPECTED_PROJECT}{other_suffix}: bucket names are "
                                      "global, so a second stack cannot be created", fix))
    return out


def _bucket_names(synthesis: Synthesis) -> dict[str, Any]:
    return {b.name: b.inputs.get("bucket") for b in synthesis.registrations if b.type in BUCKET}


@rule("TAP008", "one-region", needs_complete_plan=False)
def one_region(ctx: Context) -> list[Finding]:
    """Seed 8: the environment said one region, AWS_REGION another, and resources went to the
    wrong one. Environment file, provider, target and the `region` output must agree."""
    want, source = ctx.settings.region, ctx.params_file
    out: list[Finding] = []
    for provider in ctx.of((PROVIDER,)):
        got = provider.inputs.get("region")
        if got != want:
            out.append(error(provider.name, f"aws provider region is {got!r}; {source} says "
                                            f"{want!r}",
                             "create the provider with region=settings.region only"))
    for reg in ctx.synthesis.resources:
        if reg.type.startswith("aws:") and not reg.provider:
            out.append(error(reg.name, "uses the default aws provider, whose region comes from "
                                       "AWS_REGION or stack config instead of " + source,
                             "declare it under TapStack so it inherits the explicit provider"))
    if ctx.region_of_target is None:
        out.append(info("target", "the target has no default region; the explicit provider "
                                  f"uses {want}"))
    elif ctx.region_of_target != want:
        out.append(error("target", f"the {ctx.target} target's region is "
                                   f"{ctx.region_of_target!r} but {source} says {want!r}; the "
                                   "explicit provider wins, but tools and tests that read the "
                                   "ambient region will look in the wrong place",
                         f"set AWS_REGION={want} (or the profile's region), or change region "
                         f"in {source}"))
    if ctx.synthesis.error is None and ctx.synthesis.outputs.get("region") != want:
        out.append(error("region", f"stack output region is "
                                   f"{ctx.synthesis.outputs.get('region')!r}; {source} says "
                                   f"{want!r}", "export region=settings.region"))
    return out


# -- rules: hardening, keyed to AWS Security Hub controls ------------------------------------
@rule("TAP101", "RDS.2 not-public")
def rds_not_public(ctx: Context) -> list[Finding]:
    """RDS.2: a publicly accessible database instance exposes the payment data to the internet."""
    return [error(i.name, "database instance is publicly accessible",
                  "set publicly_accessible=False")
            for i in ctx.of(DB_INSTANCE) if i.inputs.get("publiclyAccessible") is True]


@rule("TAP102", "RDS.27 storage-encrypted")
def rds_encrypted(ctx: Context) -> list[Finding]:
    """RDS.27: an unencrypted cluster cannot be encrypted later without a snapshot restore."""
    return [error(c.name, "cluster storage is not encrypted",
                  "set storage_encrypted=True with kms_key_id=<stack key>.arn")
            for c in ctx.of(CLUSTER) if c.inputs.get("storageEncrypted") is not True]


@rule("TAP103", "RDS.7 deletion-protection")
def rds_deletion_protection(ctx: Context) -> list[Finding]:
    """RDS.7: without deletion protection one mistaken destroy drops the production database."""
    make = error if ctx.is_prod else info
    return [make(c.name, "cluster has no deletion protection",
                 f"set db.deletion_protection: true in {ctx.params_file}")
            for c in ctx.of(CLUSTER) if c.inputs.get("deletionProtection") is not True]


@rule("TAP104", "RDS.11 backups")
def rds_backups(ctx: Context) -> list[Finding]:
    """RDS.11: automated backups on (at least 1 day; 7 in prod) so data can be restored."""
    need = 7 if ctx.is_prod else 1
    out = []
    for c in ctx.of(CLUSTER):
        days = c.inputs.get("backupRetentionPeriod", 1)  # AWS default: 1 day
        if days < need:
            out.append(error(c.name, f"backup retention is {days:g} day(s); needs >= {need}",
                             f"set db.backup_retention_days >= {need} in {ctx.params_file}"))
    return out


@rule("TAP111", "S3.1/S3.8 public-access-block")
def s3_public_access_block(ctx: Context) -> list[Finding]:
    """S3.1/S3.8: without all four public access block flags a policy or ACL can expose the
    transaction logs."""
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    fix = "add aws.s3.BucketPublicAccessBlock with all four flags True"
    out = []
    for bucket in ctx.of(BUCKET):
        blocks = _attached(ctx, bucket, PUBLIC_ACCESS_BLOCK)
        if not blocks:
            out.append(error(bucket.name, "bucket has no public access block", fix))
        for block in blocks:
            off = [f for f in flags if block.inputs.get(f) is not True]
            if off:
                out.append(error(bucket.name, f"public access block leaves {', '.join(off)} off",
                                 fix))
    return out


@rule("TAP112", "S3.5 tls-only")
def s3_tls_only(ctx: Context) -> list[Finding]:
    """S3.5: without a Deny on aws:SecureTransport=false, clients may send logs in clear text."""
    out = []
    for bucket in ctx.of(BUCKET):
        stmts = [s for p in _attached(ctx, bucket, BUCKET_POLICY)
                 for s in _statements(p.inputs.get("policy"))]
        if not any(_denies_plain_http(s) for s in stmts):
            out.append(error(bucket.name, "no bucket policy denies requests without TLS",
                             "attach policies.tls_only_bucket_policy(bucket.arn)"))
    return out


@rule("TAP113", "S3.14 versioning")
def s3_versioning(ctx: Context) -> list[Finding]:
    """S3.14: without versioning an overwrite or delete loses transaction logs for good."""
    out = []
    for bucket in ctx.of(BUCKET):
        states = [v.inputs.get("versioningConfiguration", {}).get("status")
                  for v in _attached(ctx, bucket, VERSIONING)]
        if "Enabled" not in states:
            out.append(error(bucket.name, f"versioning is not Enabled (got {states or 'none'})",
                             "add aws.s3.BucketVersioning with status Enabled"))
    return out


@rule("TAP114", "S3.17 sse-kms")
def s3_sse_kms(ctx: Context) -> list[Finding]:
    """S3.17: logs must be encrypted with the stack's KMS key, not only S3-managed keys."""
    out = []
    for bucket in ctx.of(BUCKET):
        algorithms = [(r.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
                      for c in _attached(ctx, bucket, SSE) for r in c.inputs.get("rules", [])]
        if not any(a in ("aws:kms", "aws:kms:dsse") for a in algorithms):
            out.append(error(bucket.name, f"default encryption is not SSE-KMS "
                                          f"(got {algorithms or 'none'})",
                             "add BucketServerSideEncryptionConfiguration with aws:kms"))
    return out


@rule("TAP121", "Lambda.5 multi-az")
def lambda_multi_az(ctx: Context) -> list[Finding]:
    """Lambda.5: a VPC function in one AZ stops taking payments when that AZ fails."""
    azs_of = {s.id: s.inputs.get("availabilityZone") for s in ctx.of(SUBNET)}
    out = []
    for fn in ctx.of(FUNCTION):
        subnets = (fn.inputs.get("vpcConfig") or {}).get("subnetIds") or []
        if not subnets:
            out.append(error(fn.name, "function is not attached to the VPC",
                             "set vpc_config with the private subnets"))
            continue
        unknown = [s for s in subnets if s not in azs_of]
        if unknown:
            out.append(warning(fn.name, f"subnets {unknown} are not declared by this stack; "
                                        "their AZs are unknown"))
        azs = sorted({azs_of[s] for s in subnets if s in azs_of})
        if len(azs) < 2 and not unknown:
            out.append(error(fn.name, f"function subnets span {len(azs)} AZ ({', '.join(azs)}); "
                                      "needs >= 2",
                             "pass every private subnet in vpc_config.subnet_ids"))
    return out


@rule("TAP131", "EC2.6 flow-logs")
def vpc_flow_logs(ctx: Context) -> list[Finding]:
    """EC2.6: without VPC flow logs there is no record of who talked to the database."""
    logged = {f.inputs.get("vpcId") for f in ctx.of(FLOW_LOG)}
    return [error(v.name, "VPC has no flow log", "add aws.ec2.FlowLog(vpc_id=vpc.id, "
                                                 "traffic_type='ALL')")
            for v in ctx.of(VPC) if v.id not in logged]


@rule("TAP141", "SecretsManager.1 rotation")
def secret_rotation(ctx: Context) -> list[Finding]:
    """SecretsManager.1, and seed 6's "fix": rotation was commented out, leaving the database
    password unrotated while the environment file still asked for rotation."""
    rotated = {r.inputs.get("secretId") for r in ctx.of(ROTATION)}
    wanted = ctx.settings.secrets.rotation_enabled
    out = []
    for secret in ctx.of(SECRET):
        if rotated & {secret.id, secret.outputs.get("arn")}:
            continue
        if wanted:
            out.append(error(secret.name, f"{ctx.params_file} enables rotation but the plan has "
                                          "no SecretRotation for this secret",
                             "declare aws.secretsmanager.SecretRotation with the stack's "
                             "rotation Lambda"))
        else:
            out.append((error if ctx.is_prod else warning)(
                secret.name, f"rotation is disabled in {ctx.params_file}",
                f"set secrets.rotation_enabled: true in {ctx.params_file}"))
    return out


@rule("TAP151", "IAM.1 no-admin")
def iam_no_admin(ctx: Context) -> list[Finding]:
    """IAM.1: a statement allowing every action on every resource turns a Lambda bug into an
    account takeover."""
    out = []
    for policy in ctx.of(IAM_POLICY):
        for s in _statements(policy.inputs.get("policy")):
            if s.get("Effect") == "Allow" and {"*", "*:*"} & set(_as_list(s.get("Action"))) \
                    and "*" in _as_list(s.get("Resource")):
                out.append(error(policy.name, 'a statement allows Action "*" on Resource "*"',
                                 "list the actions and resources the function needs "
                                 "(tap_lib/program/policies.policy_document)"))
    return out
