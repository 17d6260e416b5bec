"""An independent security audit of a tap stack: Prowler's verdict beside tap's, per control.

Deploys an environment on a throwaway sandbox (own TAP_HOME and port), scans the emulator with
Prowler (.venv-prowler; AWS_ENDPOINT_URL, fake credentials, the stack's services only), runs
`tap verify --json` and `tap preflight --json`, and prints one row per control (Security Hub id,
else Prowler's check id): Prowler's status, tap's, and whether they agree.

    .venv/bin/python scripts/security_audit.py --env dev [--json] [--save-scan DIR]
    .venv/bin/python scripts/security_audit.py --env prod      # a throwaway signed project

prod is protected, so it deploys only from a signed, approved plan: the script builds a
throwaway git project (Pulumi.yaml and params/ of this checkout, two ed25519 approvers made on
the spot, as tests/fixtures_signing.py does) and runs tap's own `preview --save-plan`, `approve`
and `deploy --plan` in it (TAP_PROJECT_DIR). Nothing outside the temporary directory changes.

Findings are sorted, never dropped: the stack's (the table), emulator artifacts (EMULATOR_ARTIFACTS,
each with its reason, listed apart), and those on what is not the stack's (the account, moto's
default VPC), counted apart. `--saved DIR` compares what `--save-scan DIR` kept, without a scan.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PROWLER_PYTHON = REPO / ".venv-prowler" / "bin" / "python"
SERVICES = ("ec2", "vpc", "rds", "s3", "secretsmanager", "awslambda", "iam", "kms", "cloudwatch",
            "backup", "sqs")
FSBP = "AWS-Foundational-Security-Best-Practices"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing"}

# Checks not run (printed with every report): ~1300 findings on moto's built-in AMI snapshots.
EXCLUDED_CHECKS = {
    "ec2_ebs_snapshots_encrypted": "judges moto's built-in AMI snapshots; the stack has no EBS",
    "ec2_ebs_public_snapshot": "judges moto's built-in AMI snapshots; the stack has no EBS",
}


@dataclass(frozen=True)
class Artifact:
    """A Prowler FAIL on the stack that comes from the emulator, not from the stack."""
    check: str
    applies: Callable[[dict, Stack], bool]
    reason: str


def _db_or_endpoint_security_group(finding: dict, stack: Stack) -> bool:
    groups = [*stack.db_security_groups, *stack.facts.get("endpoint_security_groups", [])]
    return any(g in _uid(finding) for g in groups)


def _any(finding: dict, stack: Stack) -> bool:
    return True


def _has(fact: str) -> Callable[[dict, Stack], bool]:
    """The stack has `fact` in the emulator: its cluster's setting on, a queue, a backup plan."""
    return lambda finding, stack: bool(stack.facts.get(fact))


def _app_secret_of_root_deployer(finding: dict, stack: Stack) -> bool:
    secret = stack.facts.get("app_secret") or "\0"
    return secret in _uid(finding) and stack.facts.get("deployer", "").endswith(":root")


def _spread_cluster(finding: dict, stack: Stack) -> bool:
    return len(set(stack.facts.get("member_azs", []))) > 1


# The one table of known emulator artifacts. Each FAIL it matches is reported in its own list
# with the reason, and never counts as the stack's failure; an entry that matched nothing in a
# run is said too (the emulator may have learnt it).
EMULATOR_ARTIFACTS = (
    Artifact("ec2_securitygroup_not_used", _db_or_endpoint_security_group,
             "moto creates no network interface for RDS instances, and an interface endpoint's "
             "without the endpoint's security groups, so the DB cluster's and the endpoints' "
             "groups look unattached; on AWS the instances' and endpoints' interfaces carry them"),
    Artifact("secretsmanager_secret_unused", _any,
             "moto's ListSecrets never reports LastAccessedDate, so every secret reads 'never "
             "accessed'; tap verify and the Lambdas read them on every run"),
    Artifact("rds_instance_certificate_expiration", _any,
             "moto does not implement DescribeCertificates: no certificate details, which "
             "Prowler reads as an expired certificate"),
    Artifact("rds_instance_deprecated_engine_version", _any,
             "moto answers DescribeDBEngineVersions with a server error, so Prowler knows no "
             "supported version; tap's preflight (TAP005) checks the version against its "
             "catalog of offered versions"),
    Artifact("rds_instance_iam_authentication_enabled", _has("iam_auth"),
             "moto does not report the cluster's IAM database authentication on its member "
             "instances (AWS reports the cluster's setting on Aurora instances); the cluster "
             "has it on (RDS.12)"),
    Artifact("rds_instance_integration_cloudwatch_logs", _has("log_exports"),
             "moto does not report the cluster's log exports on its member instances (on "
             "Aurora the cluster exports the logs); the cluster exports them (RDS.37)"),
    Artifact("rds_cluster_multi_az", _spread_cluster,
             "moto reports MultiAZ false for an Aurora cluster whose instances are in more "
             "than one zone; AWS reports true"),
    Artifact("rds_instance_multi_az", _spread_cluster,
             "reads the cluster's MultiAZ, which moto reports false although the cluster's "
             "instances are in more than one zone"),
    Artifact("rds_instance_enhanced_monitoring_enabled", _has("monitoring"),
             "moto never returns EnhancedMonitoringResourceArn, which Prowler reads; the "
             "instances have MonitoringInterval and a monitoring role set"),
    Artifact("awslambda_function_no_dead_letter_queue", _has("queues"),
             "moto drops a function's DeadLetterConfig (GetFunction/ListFunctions never report "
             "it); the stack declares a dead-letter queue, which the emulator holds"),
    Artifact("secretsmanager_has_restrictive_resource_policy", _app_secret_of_root_deployer,
             "the app secret's Deny exempts the identity that deploys the stack; in the "
             "emulator that is moto's account root (every request is root's), which Prowler "
             "accepts only as a named role or user; on AWS it is the deploying role"),
    Artifact("rds_cluster_protected_by_backup_plan", _has("backup_plans"),
             "moto has no AWS Backup selections (ListBackupSelections), so no resource reads as "
             "protected; the stack declares a backup plan, which the emulator holds"),
)


# Prowler checks its FSBP mapping does not name, which are the control tap names: the finding
# counts under tap's id (printed with every report, so the mapping is never hidden).
ALIASES = {
    "secretsmanager_secret_rotated_periodically": (
        "SecretsManager.4", "FSBP SecretsManager.4 (rotated within 90 days) is this check; "
        "Prowler 5.46's FSBP mapping omits it"),
    "awslambda_function_env_vars_not_encrypted_with_cmk": (
        "tap:lambda-env-cmk", "the same control under tap's own id; tap_lib/controls.py should "
        "use Prowler's check id, as it does for the other controls FSBP lacks"),
}

# Controls where Prowler's check is laxer than the Security Hub control tap applies: a Prowler
# PASS beside tap's fail/excepted is reported as a known difference, not an agreement.
KNOWN_DIFFERENCES = {
    "RDS.11": "Prowler's rds_instance_backup_enabled passes any retention above 0 days; Security "
              "Hub's RDS.11 requires backupRetentionMinimum (default 7), which tap applies",
}


@dataclass
class Stack:
    """What of the sandbox is the stack's: Prowler reports on the whole region."""
    name: str
    tokens: set[str] = field(default_factory=set)       # ids, names, ARNs of its resources
    vpcs: set[str] = field(default_factory=set)
    db_security_groups: set[str] = field(default_factory=set)
    facts: dict = field(default_factory=dict)   # the cluster's settings, queues, backup plans

    def owns(self, finding: dict) -> bool:
        resource = finding["resources"][0]
        if f"Stack:{self.name}" in (resource.get("labels") or []):
            return True
        meta = (resource.get("data") or {}).get("metadata") or {}
        if isinstance(meta, dict) and meta.get("vpc_id") in self.vpcs:
            return True
        text = f"{resource.get('uid', '')} {resource.get('name', '')}"
        return any(t in text for t in self.tokens)

    def to_dict(self) -> dict:
        return {"name": self.name, "tokens": sorted(self.tokens), "vpcs": sorted(self.vpcs),
                "db_security_groups": sorted(self.db_security_groups), "facts": self.facts}

    @classmethod
    def from_dict(cls, d: dict) -> Stack:
        return cls(d["name"], set(d["tokens"]), set(d["vpcs"]), set(d["db_security_groups"]),
                   d.get("facts", {}))


def _uid(finding: dict) -> str:
    return finding["resources"][0].get("uid", "")


def check_of(finding: dict) -> str:
    return finding["metadata"]["event_code"]


def controls_of_finding(finding: dict) -> list[str]:
    """Security Hub ids the check maps to (Prowler's own mapping), else the check id."""
    mapped = ((finding.get("unmapped") or {}).get("compliance") or {}).get(FSBP)
    if mapped:
        return list(mapped)
    return [ALIASES[check_of(finding)][0] if check_of(finding) in ALIASES else check_of(finding)]


# -- the comparison ------------------------------------------------------------------------------
def _prowler_status(statuses: set[str]) -> str:
    return "FAIL" if "FAIL" in statuses else "PASS" if "PASS" in statuses else "MANUAL"


def _tap_status(verify: list[str], preflight: list[str]) -> str:
    """fail > excepted > pass over verify's checks and preflight's findings of the control."""
    if "fail" in verify or {"error", "warning"} & set(preflight):
        return "fail"
    if "excepted" in verify or "excepted" in preflight:
        return "excepted"
    if "pass" in verify or "pass" in preflight:
        return "pass"
    if "unverified" in verify:      # tap could not read it here (says so in its report)
        return "unverified"
    return "not checked"


def agreement(prowler: str, tap: str, control: str = "") -> str:
    """yes: both fail (an excepted control is a known failure) or both pass; 'not checked':
    tap has no check of a control Prowler evaluated; 'known difference': KNOWN_DIFFERENCES;
    NO otherwise."""
    if prowler == "MANUAL":
        return "manual"
    if tap in ("not checked", "unverified"):
        return tap
    if (prowler == "FAIL") == (tap in ("fail", "excepted")):
        return "yes"
    if prowler == "PASS" and control in KNOWN_DIFFERENCES:
        return "known difference"
    return "NO"


def split_controls(label: str) -> list[str]:
    return [c for c in re.split(r"[\s/,]+", label or "") if c]


def compare(findings: list[dict], stack: Stack, verify: dict, preflight: dict,
            preflight_controls: set[str]) -> dict:
    """The per-control table and its counts. `preflight_controls`: controls some preflight rule
    judges (a rule without a finding passed them)."""
    own, outside, artifacts = [], [], []
    for f in findings:
        if not stack.owns(f):
            outside.append(f)
            continue
        hit = next((a for a in EMULATOR_ARTIFACTS if f["status_code"] == "FAIL"
                    and a.check == check_of(f) and a.applies(f, stack)), None)
        if hit:
            artifacts.append({"check": check_of(f), "controls": controls_of_finding(f),
                              "resource": _uid(f), "reason": hit.reason})
        else:
            own.append(f)
    prowler: dict[str, dict] = {}
    for f in own:
        for c in controls_of_finding(f):
            row = prowler.setdefault(c, {"statuses": set(), "checks": set(), "failed": []})
            row["statuses"].add(f["status_code"])
            row["checks"].add(check_of(f))
            if f["status_code"] == "FAIL":
                row["failed"].append(_uid(f))
    tap_verify: dict[str, list[str]] = {}
    for c in verify.get("checks", []):
        for control in split_controls(c.get("control", "")):
            tap_verify.setdefault(control, []).append(c["status"])
    tap_pre: dict[str, list[str]] = {c: ["pass"] for c in preflight_controls}
    for f in preflight.get("findings", []):
        for control in _controls_in_rule(f.get("rule", "")):
            tap_pre.setdefault(control, [])
            tap_pre[control] = [s for s in tap_pre[control] if s != "pass"] + [f["severity"]]
    rows, only_artifacts = [], {c for a in artifacts for c in a["controls"]} - set(prowler)
    for control in sorted(set(prowler) | set(tap_verify) | set(tap_pre) | only_artifacts,
                          key=_control_key):
        p = prowler.get(control)
        pstatus = _prowler_status(p["statuses"]) if p else (
            "artifact" if control in only_artifacts else "-")
        tstatus = _tap_status(tap_verify.get(control, []), tap_pre.get(control, []))
        rows.append({"control": control, "prowler": pstatus, "tap": tstatus,
                     "verify": _tap_status(tap_verify.get(control, []), []),
                     "preflight": _tap_status([], tap_pre.get(control, [])),
                     "agree": agreement(pstatus, tstatus, control) if p else (
                         "artifact" if control in only_artifacts else "tap only"),
                     "checks": sorted(p["checks"]) if p else [],
                     "failed_resources": sorted(set(p["failed"])) if p else []})
    seen = {a["check"] for a in artifacts}
    outside_fail = Counter(check_of(f) for f in outside if f["status_code"] == "FAIL")
    agree, prowler_says, tap_says = (Counter(r[k] for r in rows)
                                     for k in ("agree", "prowler", "tap"))
    counts = {
        "controls_evaluated": len(rows) - prowler_says["-"] - prowler_says["artifact"], "prowler_fail": prowler_says["FAIL"],
        "tap_fail": tap_says["fail"], "tap_excepted": tap_says["excepted"],
        "disagreements": agree["NO"], "known_differences": agree["known difference"],
        "unverified_by_tap": agree["unverified"], "not_checked_by_tap": agree["not checked"],
        "prowler_fail_not_checked": sum(r["agree"] == "not checked" and r["prowler"] == "FAIL"
                                        for r in rows),
        "artifact_findings": len(artifacts), "findings_outside_stack": len(outside),
        "fail_findings_outside_stack": sum(outside_fail.values()), "findings_total": len(findings),
    }
    return {"stack": stack.name, "rows": rows, "counts": counts, "artifacts": artifacts,
            "artifacts_not_seen": [a.check for a in EMULATOR_ARTIFACTS if a.check not in seen],
            "outside_fail_by_check": dict(sorted(outside_fail.items())),
            "excluded_checks": EXCLUDED_CHECKS,
            "aliases": {k: {"control": v[0], "reason": v[1]} for k, v in ALIASES.items()},
            "known_differences": {r["control"]: KNOWN_DIFFERENCES[r["control"]] for r in rows
                                  if r["agree"] == "known difference"}}


def _controls_in_rule(label: str) -> list[str]:
    """The controls a preflight finding's rule label names ('TAP111 S3.1/S3.8 name')."""
    try:
        from tap_lib.controls import controls_of
        return controls_of(label)
    except ImportError:      # a tap without a controls table keys no rule to a control
        return []


def _control_key(control: str) -> tuple:
    m = re.fullmatch(r"([A-Za-z0-9]+)\.(\d+)", control)
    return (0, m.group(1), int(m.group(2))) if m else (1, control, 0)


def preflight_rule_controls() -> set[str]:
    from tap_lib.ops.preflight import RULES
    return {c for r in RULES for c in _controls_in_rule(r.label)}


# -- running tap, the sandbox and Prowler ----------------------------------------------------------
def tap(*args: str, env: dict[str, str], ok=(0,)) -> str:
    out = subprocess.run([sys.executable, "-m", "tap_lib.cli", *args], env=env, check=False,
                         capture_output=True, text=True, timeout=1800)
    if out.returncode not in ok:
        raise SystemExit(f"tap {' '.join(args)} exited {out.returncode}:\n{out.stderr[-3000:]}")
    return out.stdout


def signed_project(root: Path) -> dict[str, dict[str, str]]:
    """A throwaway git project with this checkout's Pulumi.yaml and params/, approvers alice and
    bob (keys made here); returns each one's signing environment."""
    project, keys = root / "project", root / "keys"
    keys.mkdir(parents=True)
    shutil.copytree(REPO / "params", project / "params")
    shutil.copy(REPO / "Pulumi.yaml", project)
    lines, envs = [], {}
    for name in ("alice", "bob"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                        str(keys / name)], check=True, capture_output=True)
        kind, pub = (keys / f"{name}.pub").read_text().split()[:2]
        lines.append(f'{name}@example.com namespaces="tap" {kind} {pub}')
        envs[name] = {"TAP_SIGNING_KEY": str(keys / name), "TAP_OPERATOR": name}
    (project / "params" / "approvers").write_text("\n".join(lines) + "\n")
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "audit project"]):
        subprocess.run(["git", "-c", "user.name=audit", "-c", "user.email=audit@example.com",
                        *args], cwd=project, check=True, capture_output=True)
    return envs


def deploy(env_name: str, env: dict[str, str], work: Path) -> None:
    if env_name != "prod":
        tap("deploy", "--env", env_name, "--yes", env=env)
        return
    signers = signed_project(work / "signed")
    env["TAP_PROJECT_DIR"] = str(work / "signed" / "project")
    plan = str(work / "prod-plan.json")
    tap("preview", "--env", "prod", "--save-plan", plan, env={**env, **signers["alice"]})
    tap("approve", plan, env={**env, **signers["bob"]})
    tap("deploy", "--env", "prod", "--plan", plan, "--confirm", "TapStackprod", "--yes",
        env={**env, **signers["alice"]})


def stack_of(stack_name: str, outputs: dict[str, Any], endpoint: str, region: str,
             suffix: str | None = None) -> Stack:
    """The stack's resources as the emulator holds them (ids Prowler's findings name)."""
    import boto3

    def client(service):
        return boto3.client(service, endpoint_url=endpoint, region_name=region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    stack = Stack(stack_name)
    for value in outputs.values():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v != region and len(v) > 6:
                stack.tokens.add(v)
    vpc = outputs.get("vpc_id")
    if vpc:
        stack.vpcs.add(vpc)
        ec2, flt = client("ec2"), [{"Name": "vpc-id", "Values": [vpc]}]
        stack.tokens |= {g["GroupId"] for g in ec2.describe_security_groups(Filters=flt)
                         ["SecurityGroups"]}
        stack.tokens |= {a["NetworkAclId"] for a in ec2.describe_network_acls(Filters=flt)
                         ["NetworkAcls"]}
        stack.tokens |= {r["RouteTableId"] for r in ec2.describe_route_tables(Filters=flt)
                         ["RouteTables"]}
        stack.facts["endpoint_security_groups"] = sorted(
            {g["GroupId"] for e in ec2.describe_vpc_endpoints(Filters=flt)["VpcEndpoints"]
             if e.get("VpcEndpointType") == "Interface" for g in e.get("Groups", [])})
        for fl in client("ec2").describe_flow_logs(
                Filters=[{"Name": "resource-id", "Values": [vpc]}])["FlowLogs"]:
            stack.tokens |= {v for v in (fl.get("LogGroupName"), fl.get("LogDestination"),
                                         fl.get("DeliverLogsPermissionArn")) if v}
    cluster_id = outputs.get("rds_cluster_id")
    if cluster_id:
        for c in client("rds").describe_db_clusters(DBClusterIdentifier=cluster_id)["DBClusters"]:
            members = [m["DBInstanceIdentifier"] for m in c.get("DBClusterMembers", [])]
            stack.tokens |= set(members)
            instances = [i for m in members for i in client("rds").describe_db_instances(
                DBInstanceIdentifier=m)["DBInstances"]]
            stack.facts |= {
                "iam_auth": bool(c.get("IAMDatabaseAuthenticationEnabled")),
                "log_exports": c.get("EnabledCloudwatchLogsExports") or [],
                "member_azs": [i["AvailabilityZone"] for i in instances],
                "monitoring": bool(instances) and all(i.get("MonitoringInterval")
                                                      for i in instances)}
            stack.db_security_groups |= {g["VpcSecurityGroupId"]
                                         for g in c.get("VpcSecurityGroups", [])}
            secret = (c.get("MasterUserSecret") or {}).get("SecretArn")
            if secret:
                stack.tokens.add(secret)
    stack.facts["app_secret"] = outputs.get("db_secret_arn") or ""
    stack.facts["deployer"] = client("sts").get_caller_identity()["Arn"]
    suffix = suffix or stack_name.removeprefix("TapStack")
    queues = client("sqs").list_queues().get("QueueUrls", [])
    plans = client("backup").list_backup_plans().get("BackupPlansList", [])
    stack.facts["queues"] = [q for q in queues if q.rsplit("/", 1)[-1].startswith("tapstack")
                             and f"-{suffix}" in q.rsplit("/", 1)[-1]]
    stack.facts["backup_plans"] = [p["BackupPlanName"] for p in plans
                                   if f"-{suffix}" in p["BackupPlanName"]]
    stack.tokens |= set(stack.facts["queues"])
    # the backup plans' job report plans (named as the plan, "-" -> "_": program/backup.py)
    reports = {n.replace("-", "_").replace(".", "_") for n in stack.facts["backup_plans"]}
    stack.tokens |= {v for r in client("backup").list_report_plans().get("ReportPlans", [])
                     if r["ReportPlanName"] in reports
                     for v in (r["ReportPlanName"], r.get("ReportPlanArn")) if v}
    lam = client("lambda")
    for name in (outputs.get("lambda_function_name"), outputs.get("rotation_function_name")):
        if name:
            stack.tokens |= {lam.get_function_configuration(FunctionName=name)["Role"],
                             f"/aws/lambda/{name}"}
    return stack


def run_prowler(endpoint: str, region: str, out_dir: Path, python: Path,
                services=SERVICES, checks=()) -> tuple[list[dict], float]:
    """Prowler's findings (OCSF) on the emulator, and the seconds it took; `checks`: only those
    (Prowler's start-up alone takes ~10-20 s)."""
    env = {**os.environ, **FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint,
           "AWS_DEFAULT_REGION": region}
    env.pop("AWS_PROFILE", None)
    started = time.monotonic()
    out = subprocess.run(
        [str(python.parent / "prowler"), "aws", "--region", region, "--scan-unused-services",
         *(["--check", *checks] if checks else
           ["--services", *services, "--excluded-check", *EXCLUDED_CHECKS]),
         "--output-formats", "json-ocsf", "--output-directory", str(out_dir),
         "--output-filename", "scan", "--no-banner", "--no-color", "--ignore-exit-code-3"],
        env=env, capture_output=True, text=True, timeout=1800)
    took = time.monotonic() - started
    path = out_dir / "scan.ocsf.json"
    if out.returncode != 0 or not path.exists():
        raise SystemExit(f"prowler exited {out.returncode}:\n{(out.stderr or out.stdout)[-3000:]}")
    return json.loads(path.read_text()), took


def load_saved(directory: Path, env_name: str) -> tuple[list[dict], Stack, dict, dict]:
    """The scan, stack ids, verify and preflight reports --save-scan kept for `env_name`."""
    def read(what: str):
        return json.loads((directory / f"prowler_{env_name}_{what}.json").read_text())
    scan = json.loads(gzip.decompress(
        (directory / f"prowler_{env_name}_scan.json.gz").read_bytes()))
    return scan, Stack.from_dict(read("stack")), read("verify"), read("preflight")


def audit(env_name: str, *, prowler_python: Path = PROWLER_PYTHON, save_scan: Path | None = None,
          services=SERVICES) -> dict:
    """Deploy `env_name` on a throwaway sandbox, scan it, compare; the sandbox is stopped after."""
    from tap_lib.localdb import free_port

    if not prowler_python.exists():
        raise SystemExit(f"no Prowler at {prowler_python}: python3 -m venv .venv-prowler && "
                         ".venv-prowler/bin/pip install 'prowler==5.46.*'")
    work = Path(tempfile.mkdtemp(prefix=f"tap-audit-{env_name}-"))
    port = free_port()
    env = {**os.environ, "TAP_HOME": str(work / "home"), "TAP_SANDBOX_PORT": str(port),
           "TAP_OUTPUTS": str(work / "home" / "outputs")}
    for k in ("ENVIRONMENT_SUFFIX", "TAP_TARGET", "TAP_PROJECT_DIR"):
        env.pop(k, None)
    try:
        started = time.monotonic()
        deploy(env_name, env, work)
        deployed = time.monotonic() - started
        outputs = json.loads(tap("outputs", "--env", env_name, "--json", env=env))
        region = outputs.get("region") or "eu-west-2"
        endpoint = f"http://127.0.0.1:{port}"
        stack = stack_of(f"TapStack{env_name}", outputs, endpoint, region)
        findings, scanned = run_prowler(endpoint, region, work / "prowler", prowler_python,
                                        services)
        verify = json.loads(tap("verify", "--env", env_name, "--json", env=env, ok=(0, 1)))
        preflight = json.loads(tap("preflight", "--env", env_name, "--json", env=env,
                                   ok=(0, 1)))
        if save_scan:
            save_scan.mkdir(parents=True, exist_ok=True)
            (save_scan / f"prowler_{env_name}_scan.json.gz").write_bytes(
                gzip.compress(json.dumps(findings).encode(), mtime=0))
            for what, value in (("stack", stack.to_dict()), ("verify", verify),
                                ("preflight", preflight)):
                (save_scan / f"prowler_{env_name}_{what}.json").write_text(
                    json.dumps(value, indent=1) + "\n")
    finally:
        _stop_sandbox(env)
        shutil.rmtree(work, ignore_errors=True)
    report = compare(findings, stack, verify, preflight, preflight_rule_controls())
    report["seconds"] = {"deploy": round(deployed, 1), "prowler": round(scanned, 1)}
    return report


def _stop_sandbox(env: dict[str, str]) -> None:
    """The emulator and the stand-in databases this run started (its own TAP_HOME only)."""
    code = ("from tap_lib.engines.sandbox import server, standin; "
            "standin.forget_every_stack(); server.stop()")
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300)


# -- output ------------------------------------------------------------------------------------
def render(report: dict) -> str:
    rows = report["rows"]
    w = max([len(r["control"]) for r in rows] + [7])
    lines = [f"{report['stack']}: Prowler beside tap, per control",
             f"{'control':<{w}}  prowler   tap          verify       preflight    agree"]
    for r in rows:
        lines.append(f"{r['control']:<{w}}  {r['prowler']:<8}  {r['tap']:<11}  "
                     f"{r['verify']:<11}  {r['preflight']:<11}  {r['agree']}")
    lines.append("")
    lines.append("emulator artifacts (Prowler FAILs not counted, EMULATOR_ARTIFACTS):")
    for a in report["artifacts"]:
        lines.append(f"  {a['check']} ({'/'.join(a['controls'])}) on {a['resource']}: "
                     f"{a['reason']}")
    if report["artifacts_not_seen"]:
        lines.append("  not seen this run: " + ", ".join(report["artifacts_not_seen"]))
    lines.append(f"not the stack's (account-wide, moto's default VPC): "
                 f"{report['counts']['fail_findings_outside_stack']} FAIL finding(s): " +
                 ", ".join(f"{k} x{v}" for k, v in report["outside_fail_by_check"].items()))
    for control, why in report.get("known_differences", {}).items():
        lines.append(f"known difference {control}: {why}")
    lines.append("counted under tap's id: " + "; ".join(
        f"{k} -> {v['control']} ({v['reason']})" for k, v in report.get("aliases", {}).items()))
    lines.append("checks not run: " + "; ".join(f"{k} ({v})"
                                                for k, v in report["excluded_checks"].items()))
    c = report["counts"]
    lines.append(f"controls evaluated by Prowler {c['controls_evaluated']}; Prowler FAIL "
                 f"{c['prowler_fail']}; tap fail {c['tap_fail']} (excepted "
                 f"{c['tap_excepted']}); disagreements {c['disagreements']} (known differences "
                 f"{c['known_differences']}); unverified by tap {c['unverified_by_tap']}; "
                 "not checked by "
                 f"tap {c['not_checked_by_tap']} ({c['prowler_fail_not_checked']} of them FAIL)")
    if "seconds" in report:
        lines.append(f"deploy {report['seconds']['deploy']} s, Prowler scan "
                     f"{report['seconds']['prowler']} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", action="append", help="environment (repeat); default dev")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--prowler", type=Path, default=Path(os.environ.get(
        "TAP_PROWLER_PYTHON") or PROWLER_PYTHON), help="Prowler's interpreter")
    ap.add_argument("--save-scan", type=Path, help="keep the scan and tap's reports here")
    ap.add_argument("--saved", type=Path, help="compare what --save-scan kept in this "
                    "directory instead of deploying and scanning")
    args = ap.parse_args(argv)
    if args.saved:
        try:
            reports = [compare(*load_saved(args.saved, e), preflight_rule_controls())
                       for e in (args.env or ["dev"])]
        except (OSError, ValueError, KeyError) as exc:
            ap.error(f"--saved {args.saved}: {exc}")
    else:
        reports = [audit(e, prowler_python=args.prowler, save_scan=args.save_scan)
                   for e in (args.env or ["dev"])]
    if args.json:
        print(json.dumps(reports if len(reports) > 1 else reports[0], indent=1))
    else:
        print("\n\n".join(render(r) for r in reports))
    return 1 if any(r["counts"]["disagreements"] for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
