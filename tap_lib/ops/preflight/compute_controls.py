"""Preflight rules for the compute and identity controls Prowler evaluates (issue 19): Lambda.1-3
and the functions' CloudTrail logging, secrets in variables and layers; KMS.3-5 and the key's
use and region; log groups made public; the inline policies' privilege escalation and full
access; service trust pinned to the account.

The judgements take AWS's shapes (a policy document, a function's configuration), so verify
(ops/hardening_compute.py) applies the same functions to what AWS returns.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Any

from ... import controls_compute as cc
from ...privesc_paths import PATHS
from . import (
    FUNCTION,
    IAM_POLICY,
    IAM_ROLE,
    KMS_KEY,
    PERMISSION,
    Context,
    Finding,
    _statements,
    error,
    rule,
)
from .securityhub import _severity
from .vpc_controls import _account, restricts_to_account

LOG_POLICY = ("aws:cloudwatch/logResourcePolicy:LogResourcePolicy",)
TRAIL = ("aws:cloudtrail/trail:Trail",)
LAYER = ("aws:lambda/layerVersion:LayerVersion",)
SENTINEL = "zzzanyaction"      # matches a pattern only if it covers a whole wildcard
SECRET_NAME = re.compile(r"pass(word|wd|phrase)?|pwd|secret|token|api_?key|private_?key",
                         re.IGNORECASE)
SECRET_VALUE = re.compile(r"AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----"
                          r"|xox[abp]-[0-9A-Za-z-]{10,}|gh[pousr]_[0-9A-Za-z]{30,}")
REFERENCE = re.compile(r"^arn:aws[a-z-]*:|^[a-z0-9-]+$")   # an ARN or a plain name, not a value


# -- judgements on AWS's shapes (shared with verify) -------------------------------------------
def _list(value: Any) -> list:
    return value if isinstance(value, list) else [value] if value is not None else []


def _covers(pattern: str, action: str) -> bool:
    """An Action pattern covers `action`; a wildcard in `action` ('kms:*', 'iam:Put*') must
    be covered whole, not just one action it stands for."""
    return fnmatch.fnmatchcase(action.replace("*", SENTINEL).lower(), str(pattern).lower())


def _on_all(stmt: dict) -> bool:
    return "*" in _list(stmt.get("Resource"))


def grants(policy: Any, action: str, *, all_resources: bool = False) -> bool:
    """An Allow of `action` (on Resource '*' where all_resources), via Action or NotAction,
    not cancelled by an unconditional Deny of it on '*'."""
    allowed = denied = False
    for s in _statements(policy):
        if all_resources and not _on_all(s) and "NotResource" not in s:
            continue
        hit = (any(_covers(p, action) for p in _list(s.get("Action")))
               if "Action" in s else
               "NotAction" in s and not any(_covers(p, action) for p in _list(s["NotAction"])))
        if not hit:
            continue
        if s.get("Effect") == "Allow":
            allowed = True
        elif s.get("Effect") == "Deny" and not s.get("Condition") and _on_all(s):
            denied = True
    return allowed and not denied


def escalations(policy: Any) -> list[str]:
    """iam_inline_policy_allows_privilege_escalation: Prowler's paths this policy grants whole
    (every action of the path, on any resource)."""
    return [name for name, actions in PATHS.items() if all(grants(policy, a) for a in actions)]


def full_access(policy: Any, service: str) -> bool:
    """iam_inline_policy_no_full_access_to_<service>: every action of it on every resource."""
    return grants(policy, f"{service}:*", all_resources=True)


def policy_problems(policy: Any) -> dict[str, str]:
    """The inline-policy controls this document fails, with why."""
    out = {}
    paths = escalations(policy)
    if paths:
        out[cc.IAM_PRIVESC] = f"grants escalation path(s) {', '.join(paths[:3])}"
    for control, service in ((cc.IAM_CLOUDTRAIL, "cloudtrail"), (cc.IAM_KMS, "kms")):
        if full_access(policy, service):
            out[control] = f"grants {service}:* on all resources"
    if grants(policy, "aws-marketplace:Subscribe", all_resources=True):
        out[cc.IAM_MARKETPLACE] = "grants aws-marketplace:Subscribe on all resources"
    return out


def _service_trust(stmt: dict) -> bool:
    principal = stmt.get("Principal")
    return (stmt.get("Effect") == "Allow" and isinstance(principal, dict)
            and "Service" in principal
            and any(_covers(a, "sts:AssumeRole") or str(a).lower().startswith("sts:assumerole")
                    for a in _list(stmt.get("Action"))))


def _pins(condition: Any, key: str, ok) -> bool:
    for op, block in (condition or {}).items() if isinstance(condition, dict) else ():
        lowered = op.lower()
        if lowered not in ("stringequals", "stringlike", "arnequals", "arnlike"):
            continue
        for k, values in (block or {}).items():
            if k.lower() == key and _list(values) and all(ok(str(v)) for v in _list(values)):
                return True
    return False


def unpinned_trust(policy: Any) -> list[str]:
    """iam_role_service_trust_restricts_source_to_account: service principals whose trust
    carries a condition that confines no account (aws:SourceAccount a literal account id, or
    aws:SourceArn naming one); an unconditioned trust is the confused-deputy control's."""
    out = []
    for s in _statements(policy):
        if not _service_trust(s) or not s.get("Condition"):
            continue
        account = _pins(s["Condition"], "aws:sourceaccount", lambda v: bool(
            re.fullmatch(r"\d{12}", v)))
        arn = _pins(s["Condition"], "aws:sourcearn", lambda v: len(v.split(":")) >= 5
                    and bool(re.fullmatch(r"\d{12}", v.split(":")[4])))
        if not (account or arn):
            out += _list(s["Principal"]["Service"])
    return out


def public_statements(policy: Any, account: str) -> list[str]:
    """KMS.5 / Lambda.1 / log resource policies: Allow statements open to everyone ('*' or
    AWS '*') without a condition confining them to `account`."""
    return [str(s.get("Sid") or i) for i, s in enumerate(_statements(policy))
            if s.get("Effect") == "Allow" and (s.get("Principal") == "*" or "*" in _list(
                (s.get("Principal") or {}).get("AWS") if isinstance(s.get("Principal"), dict)
                else None)) and not restricts_to_account(s.get("Condition"), account)]


def secret_variables(variables: dict) -> list[str]:
    """awslambda_function_no_secrets_in_variables: variables whose value is a credential (a
    known key format), or named like one and holding a literal rather than a reference."""
    out = []
    for k, v in (variables or {}).items():
        if not isinstance(v, str) or not v:
            continue
        if SECRET_VALUE.search(v) or (SECRET_NAME.search(k) and not REFERENCE.match(v)):
            out.append(k)
    return sorted(out)


def trail_records_lambda(selectors: list[dict], function_arn: str) -> bool:
    """awslambda_function_invoke_api_operations_cloudtrail_logging_enabled, for one trail's
    event selectors (classic or advanced): Lambda data events of this function or all."""
    for sel in selectors or []:
        for r in sel.get("DataResources") or []:
            if r.get("Type") == "AWS::Lambda::Function" and any(
                    v == function_arn or v in ("arn:aws:lambda", "arn:aws:lambda:")
                    for v in r.get("Values") or []):
                return True
        if any(f.get("Field") == "resources.type" and "AWS::Lambda::Function" in (
                f.get("Equals") or []) for f in sel.get("FieldSelectors") or []):
            return True
    return False


# -- Lambda -----------------------------------------------------------------------------------
@rule("TAP340", f"{cc.LAMBDA_PUBLIC} lambda-not-public")
def lambda_not_public(ctx: Context) -> list[Finding]:
    """Lambda.1: a permission for everyone (or another account) without a source condition lets
    anyone invoke the payment path."""
    account, out = _account(ctx), []
    for p in ctx.of(PERMISSION):
        principal = str(p.inputs.get("principal") or "")
        foreign = principal == "*" or (principal.isdigit() and principal != account)
        if foreign and not (p.inputs.get("sourceAccount") or p.inputs.get("sourceArn")):
            out.append(error(p.name, f"lets {principal} invoke with no source condition",
                             "name the service principal and set source_arn/source_account"))
    return out


@rule("TAP341", f"{cc.LAMBDA_RUNTIME} lambda-runtime")
def lambda_runtime(ctx: Context) -> list[Finding]:
    """Lambda.2: a deprecated runtime gets no security patches."""
    return [error(f.name, f"runtime {f.inputs.get('runtime')} is deprecated",
                  "use a supported runtime (packaging.RUNTIME)")
            for f in ctx.of(FUNCTION) if f.inputs.get("runtime") in cc.OBSOLETE_RUNTIMES]


@rule("TAP342", f"{cc.LAMBDA_VPC} lambda-in-vpc")
def lambda_in_vpc(ctx: Context) -> list[Finding]:
    """Lambda.3: a function outside the VPC cannot reach the private database and egresses
    without the stack's network controls."""
    return [error(f.name, "not in the VPC", "set vpc_config with the private subnets")
            for f in ctx.of(FUNCTION)
            if not ((f.inputs.get("vpcConfig") or {}).get("subnetIds"))]


@rule("TAP343", f"{cc.LAMBDA_TRAIL} lambda-cloudtrail")
def lambda_cloudtrail(ctx: Context) -> list[Finding]:
    """Who invoked the payment function is a data event: without a trail recording Lambda data
    events nobody can say. The trail is the account's (outside this stack) where there is one;
    a stack that declares none carries a policy exception saying whose trail it is."""
    arns = {f.name: str((f.outputs or {}).get("arn") or "") for f in ctx.of(FUNCTION)}
    selectors = [s for t in ctx.of(TRAIL) for s in _upper(t.inputs.get("eventSelectors"))
                 + _upper(t.inputs.get("advancedEventSelectors"))]
    return [_severity(ctx)(name, "no trail of this program records its Lambda data events",
                           "an account trail with Lambda data events (or "
                           "aws.cloudtrail.Trail(event_selectors=[AWS::Lambda::Function]))")
            for name, arn in arns.items() if not trail_records_lambda(selectors, arn)]


def _upper(selectors: Any) -> list[dict]:
    """Pulumi's camelCase selectors in the API's shape."""
    out = []
    for s in selectors or []:
        out.append({"DataResources": [{"Type": r.get("type"), "Values": r.get("values") or []}
                                      for r in s.get("dataResources") or []],
                    "FieldSelectors": [{"Field": f.get("field"), "Equals": f.get("equals") or []}
                                       for f in s.get("fieldSelectors") or []]})
    return out


@rule("TAP344", f"{cc.LAMBDA_SECRETS} lambda-env-secrets")
def lambda_env_secrets(ctx: Context) -> list[Finding]:
    """Environment variables are readable by anyone with lambda:GetFunctionConfiguration: they
    name the secret, never hold it."""
    out = []
    for f in ctx.of(FUNCTION):
        found = secret_variables((f.inputs.get("environment") or {}).get("variables") or {})
        if found:
            out.append(error(f.name, f"variable(s) {', '.join(found)} hold a credential",
                             "pass the secret's ARN and read it from Secrets Manager"))
    return out


@rule("TAP345", f"{cc.LAMBDA_LAYERS} lambda-layers")
def lambda_layers(ctx: Context) -> list[Finding]:
    """Another account's layer is code that account can change under the payment function."""
    account, own = _account(ctx), {lv.id for lv in ctx.of(LAYER)}
    out = []
    for f in ctx.of(FUNCTION):
        foreign = [a for a in f.inputs.get("layers") or [] if a not in own
                   and (str(a).split(":") + [""] * 5)[4] != account]
        if foreign:
            out.append(error(f.name, f"layer(s) of another account: {', '.join(foreign)}",
                             "publish the layer in this account"))
    return out


# -- KMS ----------------------------------------------------------------------------------------
@rule("TAP346", f"{cc.KMS_ROTATION} kms-rotation")
def kms_rotation(ctx: Context) -> list[Finding]:
    """KMS.4: a key that never rotates keeps every ciphertext under one key material."""
    return [error(k.name, "key rotation is off", "set enable_key_rotation=True")
            for k in ctx.of(KMS_KEY)
            if "SYMMETRIC" in str(k.inputs.get("customerMasterKeySpec") or k.inputs.get(
                "keySpec") or "SYMMETRIC_DEFAULT") and k.inputs.get("enableKeyRotation") is not True]


@rule("TAP347", f"{cc.KMS_PUBLIC} kms-not-public")
def kms_not_public(ctx: Context) -> list[Finding]:
    """KMS.5: a key policy open to everyone lets any account decrypt the stack's data."""
    account, out = _account(ctx), []
    for k in ctx.of(KMS_KEY):
        found = public_statements(k.inputs.get("policy"), account)
        if found:
            out.append(error(k.name, f"statement(s) {', '.join(found)} allow everyone",
                             "name this account's principals (policies.key_policy)"))
    return out


@rule("TAP348", f"{cc.KMS_USED} kms-enabled")
def kms_enabled(ctx: Context) -> list[Finding]:
    """kms_cmk_are_used: a disabled key makes every log group, secret and bucket encrypted with
    it unreadable. (KMS.3, scheduled deletion, is a live state: verify judges it.)"""
    return [error(k.name, "the key is declared disabled", "set is_enabled=True")
            for k in ctx.of(KMS_KEY) if k.inputs.get("isEnabled") is False]


@rule("TAP349", f"{cc.KMS_MULTI_REGION} kms-single-region")
def kms_single_region(ctx: Context) -> list[Finding]:
    """A multi-Region key's replicas decrypt the stack's data outside its region, under policies
    managed elsewhere."""
    return [error(k.name, "multi-Region key", "set multi_region=False")
            for k in ctx.of(KMS_KEY) if k.inputs.get("multiRegion") is True]


# -- logs and IAM -------------------------------------------------------------------------------
@rule("TAP350", f"{cc.LOG_PUBLIC} log-policy-not-public")
def log_policy_not_public(ctx: Context) -> list[Finding]:
    """A log resource policy open to everyone publishes payment errors and flow records."""
    account = _account(ctx)
    return [error(p.name, "log resource policy allows everyone",
                  "name the service principal with aws:SourceAccount")
            for p in ctx.of(LOG_POLICY)
            if public_statements(p.inputs.get("policyDocument"), account)]


INLINE_CONTROLS = (cc.IAM_PRIVESC, cc.IAM_CLOUDTRAIL, cc.IAM_KMS, cc.IAM_MARKETPLACE)


def inline_documents(ctx: Context) -> list[tuple[str, Any]]:
    """The program's inline policies: RolePolicy resources and roles' inline_policies."""
    return [(p.name, p.inputs.get("policy")) for p in ctx.of(IAM_POLICY)] + [
        (f"{r.name}/{i.get('name')}", i.get("policy")) for r in ctx.of(IAM_ROLE)
        for i in r.inputs.get("inlinePolicies") or []]


def _inline_rule(control: str, rule_id: str) -> None:
    def check(ctx: Context) -> list[Finding]:
        return [error(name, why, "grant the actions the function calls, on its resources")
                for name, doc in inline_documents(ctx)
                for c, why in policy_problems(doc).items() if c == control]
    check.__doc__ = (f"{control}: a function's role that can grant itself more (or administer "
                     "keys, the trail or subscriptions) turns a code bug into an account "
                     "takeover.")
    rule(rule_id, f"{control} inline-policy")(check)


for _id, _control in zip(("TAP351", "TAP353", "TAP354", "TAP355"), INLINE_CONTROLS):
    _inline_rule(_control, _id)


@rule("TAP352", f"{cc.TRUST_ACCOUNT} trust-pins-account")
def trust_pins_account(ctx: Context) -> list[Finding]:
    """A service trust conditioned on something that names no account still lets another
    account's resource make the service assume the role."""
    out = []
    for r in ctx.of(IAM_ROLE):
        services = unpinned_trust(r.inputs.get("assumeRolePolicy"))
        if services:
            out.append(_severity(ctx)(r.name, f"trust of {', '.join(services)} pins no account",
                                      "use policies.assume_role_policy(service, account)"))
    return out
