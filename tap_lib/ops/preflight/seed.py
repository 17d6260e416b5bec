"""Preflight rules for the seed's failures: each rule makes one of the nine deployment failures
the project grew from (shared/seed) impossible to reach AWS unnoticed."""
from __future__ import annotations

import importlib.metadata
import re
import traceback
from typing import Any

import pulumi
import yaml

from ...engines.synth import Registration, Synthesis
from ...engines.versions import version_key
from ...errors import DuplicateUrnError, TapError
from ...naming import RULES as NAME_RULES
from . import (BUCKET, CLUSTER, DB_INSTANCE, ENGINE, EXPECTED_PROJECT, FUNCTION, PERMISSION,
               PROVIDER, ROTATION, SYNTHESIS_RULE, Context, Finding, _display, error,
               info, rule, warning)

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


@rule("TAP005", "rds_instance_deprecated_engine_version engine-version", needs_complete_plan=False)
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
