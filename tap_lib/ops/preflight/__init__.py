"""Preflight: find, before anything is created, the failures the seed found only by deploying.

Preflight changes nothing anywhere. It synthesizes the TapStack program under the mock runtime
(tap_lib.engines.synth) and runs the registered rules over the configuration and the synthesized
plan, plus read-only look-ups on the target. This module is the framework (findings, the rule
registry, the runner); the rules live in one module per family, as moto keeps one folder per
service: `seed` (the nine failures the project grew from) and `securityhub` (hardening keyed to
AWS Security Hub controls). Each rule is one small function registered with `@rule`; its
docstring says which failure it prevents. A program that does not run to the end becomes
findings too, never a traceback, and the rules that need the whole plan are then skipped.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ...config import Settings
from ...controls import controls_of
from ...engines.registry import check_target, engine_class
from ...engines.synth import (PlaceholderResolver, Registration, Synthesis, share, share_key,
                               synthesize)
from ...errors import TapError, UsageError
from ...project import project_dir
from ...project import project_file as default_project_file

if TYPE_CHECKING:  # pandas loads in ~1 s: preview and deploy only need the counts
    import pandas as pd

Program = Callable[[Settings], Any]
EngineVersions = Callable[[str, str], tuple[list[str], str]]

EXPECTED_PROJECT = "TapStack"
ENGINE = "aurora-postgresql"
# excepted: a control finding a valid policy exception of the environment file covers
SEVERITIES = ("error", "warning", "info", "excepted")
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
IAM_ROLE = ("aws:iam/role:Role",)
LOG_GROUP = ("aws:cloudwatch/logGroup:LogGroup",)
KMS_KEY = ("aws:kms/key:Key",)


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
    """Findings of one preflight run; `ok` when nothing is error-level. `rows` are the findings
    in report order; `findings` is the same as a table, built when first shown. `synthesis` is
    the plan the rules read, for the cost and the plan of the same command (one synthesis)."""

    rows: list[Finding]
    stack: str
    environment: str
    target: str
    rules_checked: int
    synthesis: Synthesis | None = dataclasses.field(default=None, repr=False, compare=False)

    @functools.cached_property
    def findings(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame([{c: getattr(f, c) for c in COLUMNS} for f in self.rows],
                            columns=COLUMNS)

    def _count(self, severity: str) -> int:
        return sum(f.severity == severity for f in self.rows)

    @property
    def errors(self) -> int:
        return self._count("error")

    @property
    def warnings(self) -> int:
        return self._count("warning")

    @property
    def excepted(self) -> int:
        return self._count("excepted")

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def errors_text(self) -> str:
        """The error-level findings, one line each, for a refusal message."""
        return "\n".join(f"  {r.rule}: {r.resource}: {r.message}" + (f" (fix: {r.fix})"
                                                                    if r.fix else "")
                         for r in self.rows if r.severity == "error")

    def to_dict(self) -> dict[str, Any]:
        summary = {s: self._count(s) for s in SEVERITIES}
        return {"stack": self.stack, "environment": self.environment, "target": self.target,
                "findings": [{c: getattr(f, c) for c in COLUMNS} for f in self.rows],
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
        return self.settings.source

    @property
    def strict(self) -> bool:
        """A protected stack (prod): hardening findings are errors, not advice."""
        return self.settings.protected


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
        # one ask per region and engine a run, however many rules read the offer (on AWS, a
        # DescribeDBEngineVersions call each)
        engine_versions=functools.cache(engine_versions
                                        or engine_class(target).offered_engine_versions),
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
        findings += [except_(settings, dataclasses.replace(f, rule=r.label))
                     for f in r.check(ctx)]
    if skipped:
        findings.append(Finding(
            "info", "program", f"{len(skipped)} rules need the whole plan and were not run: "
            f"{', '.join(skipped)}", "fix the errors above and run preflight again",
            rule=" ".join(SYNTHESIS_RULE)))
    return PreflightReport(_ordered(findings), synthesis.stack, settings.environment, target,
                           rules_checked=len(RULES) - len(skipped) - len(skip),
                           synthesis=synthesis)


def except_(settings: Settings, finding: Finding) -> Finding:
    """The finding as `excepted` when a valid policy exception of the environment file covers
    its control on its resource; otherwise unchanged. Never turns a finding into a pass."""
    for control in controls_of(finding.rule):
        found = settings.exception_for(control, finding.resource)
        if found is not None:
            return dataclasses.replace(
                finding, severity="excepted",
                fix=f"policy exception in {settings.source} ({control}, owner {found.owner}, "
                    f"until {found.expires.isoformat()}): {found.reason}")
    return finding


def _synthesize(settings: Settings, program: Program | None) -> Synthesis:
    """Synthesis, or an empty one carrying the error when even the setup failed (an unreadable
    Pulumi.yaml), so that the failure is reported like any other."""
    try:
        resolver = PlaceholderResolver(settings.region)
        synthesis = synthesize(settings, resolver, program=program)
    except TapError as exc:
        return Synthesis(stack=f"{EXPECTED_PROJECT}{settings.suffix}", registrations=[],
                         outputs={}, warnings=[], duplicates=[], error=exc, duration_s=0.0)
    # the engine of the same command plans from this run when it can (engines/synth.share)
    share(synthesis, share_key(settings, program, resolver))
    return synthesis


def _ordered(findings: list[Finding]) -> list[Finding]:
    """By severity (errors first), then rule; stable, so a rule's findings keep their order."""
    return sorted(findings, key=lambda f: (SEVERITIES.index(f.severity), f.rule))


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


# The rule families register themselves on import.
from . import cost, data_controls, exceptions, network_controls, prowler, seed, securityhub  # noqa: E402,F401,E501
from . import rds_controls, storage_controls  # noqa: E402,F401
from . import compute_controls, vpc_controls  # noqa: E402,F401
