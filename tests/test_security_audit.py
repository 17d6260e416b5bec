"""The independent audit (scripts/security_audit.py): Prowler's verdict beside tap's, per control.

A full Prowler scan of a stack takes ~60-100 s here, too long for the suite, so:
- Prowler runs live (its own virtualenv, .venv-prowler) on a dev stack deployed on this module's
  sandbox, restricted to its S3 and Secrets Manager checks (LIVE_CHECKS, ~25 s here): tap and
  Prowler must agree on every control both judge there, and the emulator's "unused secret"
  artifact is listed apart.
- The comparison over the whole stack runs on a recorded scan (tests/data/prowler_dev_*: the
  script's `--save-scan` output of a real run on a sandbox dev stack, not hand-written), with the
  tap side both recorded (same run) and live (this module's stack).
Under CI the Prowler venv must be there (a missing one fails, never skips); locally the live test
skips with the reason. TAP_PROWLER_PYTHON points at another Prowler interpreter."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tap_lib.project import project_dir

sys.path.insert(0, str(project_dir() / "scripts"))
import security_audit as audit

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]

DATA = Path(__file__).parent / "data"
# Prowler's checks of the S3 and Secrets Manager controls tap judges, and the emulator's
# "unused secret" artifact: a full scan takes too long for the suite (see the module docstring).
LIVE_CHECKS = ("s3_bucket_secure_transport_policy", "s3_bucket_level_public_access_block",
               "s3_bucket_object_versioning", "s3_bucket_kms_encryption",
               "s3_bucket_lifecycle_enabled", "secretsmanager_automatic_rotation_enabled",
               "secretsmanager_secret_rotated_periodically",
               "secretsmanager_has_restrictive_resource_policy", "secretsmanager_secret_unused")
SCRIPT = project_dir() / "scripts" / "security_audit.py"


def recorded(what: str):
    """One part of the recorded run (a fresh copy: tests edit them)."""
    scan, stack, verify, preflight = audit.load_saved(DATA, "dev")
    return {"scan": scan, "stack": stack.to_dict(), "verify": verify,
            "preflight": preflight}[what]


@pytest.fixture(scope="module")
def prowler_python(ci_tool) -> Path:
    ci_tool("prowler")
    python = Path(os.environ.get("TAP_PROWLER_PYTHON") or audit.PROWLER_PYTHON)
    if not python.exists():
        why = (f"no Prowler virtualenv at {python}: .ci/run creates it with `python3 -m venv "
               ".venv-prowler && .venv-prowler/bin/pip install 'prowler==5.46.*'`")
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return python


def tap_json(*args: str) -> dict:
    """`tap ... --json` in this process (a cold `tap` costs seconds to import)."""
    from tap_lib import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([*args, "--json"])
    assert code in (0, 1), f"tap {' '.join(args)}: exit {code}\n{err.getvalue()[-2000:]}"
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def dev(sandbox_home):
    """A dev stack on the module's sandbox: its stack ids (as the script reads them), and tap's
    verify and preflight reports of it."""
    from tap_lib.engines.sandbox import server
    from tap_lib.ops import stack as stack_ops

    stack_ops.deploy("dev", yes=True)
    outputs = tap_json("outputs", "--env", "dev")
    endpoint = server.endpoint()
    return {"endpoint": endpoint, "region": outputs["region"],
            "stack": audit.stack_of("TapStackdev", outputs, endpoint, outputs["region"]),
            "verify": tap_json("verify", "--env", "dev"),
            "preflight": tap_json("preflight", "--env", "dev")}


def recorded_report(scan=None) -> dict:
    return audit.compare(scan if scan is not None else recorded("scan"),
                         audit.Stack.from_dict(recorded("stack")), recorded("verify"),
                         recorded("preflight"), audit.preflight_rule_controls())


# -- live Prowler ------------------------------------------------------------------------------
def test_prowler_and_tap_agree_on_the_live_stacks_buckets_and_secrets(prowler_python, dev,
                                                                      tmp_path):
    findings, took = audit.run_prowler(dev["endpoint"], dev["region"], tmp_path, prowler_python,
                                       checks=LIVE_CHECKS)
    report = audit.compare(findings, dev["stack"], dev["verify"], dev["preflight"],
                           audit.preflight_rule_controls())
    rows = {r["control"]: r for r in report["rows"]}
    judged = [r for r in report["rows"] if r["prowler"] in ("PASS", "FAIL")
              and r["tap"] != "not checked"]
    # Prowler looked at the stack's bucket and secrets, and tap judges some of the same controls.
    assert {"S3.5", "S3.8", "SecretsManager.1"} <= set(rows)
    assert len(judged) >= 3
    assert [r for r in judged if r["agree"] != "yes"] == []
    # moto never reports a secret as read: listed apart with the reason, never the stack's FAIL.
    unused = [a for a in report["artifacts"] if a["check"] == "secretsmanager_secret_unused"]
    assert unused and all("LastAccessedDate" in a["reason"] for a in unused)
    # ...so no FAIL of it is the stack's (a secret the emulator reports as read may PASS)
    assert rows.get("secretsmanager_secret_unused", {}).get("prowler") != "FAIL", \
        rows.get("secretsmanager_secret_unused")
    print(f"prowler s3+secretsmanager scan: {took:.1f} s")


# -- the comparison, on a recorded scan ----------------------------------------------------------
def test_every_finding_is_counted_in_the_table_the_artifacts_or_outside_the_stack():
    scan, stack = recorded("scan"), audit.Stack.from_dict(recorded("stack"))
    report = recorded_report(scan)
    owned = [f for f in scan if stack.owns(f)]
    assert report["counts"]["findings_total"] == len(scan)
    assert report["counts"]["findings_outside_stack"] == len(scan) - len(owned)
    # Each FAIL on the stack is an artifact or appears, by resource, in a control row that FAILs.
    failed = {(audit.check_of(f), audit._uid(f)) for f in owned if f["status_code"] == "FAIL"}
    artifacts = {(a["check"], a["resource"]) for a in report["artifacts"]}
    in_rows = {(check, uid) for r in report["rows"] if r["prowler"] == "FAIL"
               for check in r["checks"] for uid in r["failed_resources"]}
    assert failed - artifacts <= in_rows
    assert artifacts <= failed
    # The default VPC moto makes in every region is not the stack's.
    assert report["counts"]["fail_findings_outside_stack"] > 0


def test_an_artifact_is_listed_with_its_reason_and_only_where_it_applies():
    scan, stack = recorded("scan"), audit.Stack.from_dict(recorded("stack"))
    report = recorded_report(scan)
    reasons = {a.check: a.reason for a in audit.EMULATOR_ARTIFACTS}
    assert report["artifacts"] and all(a["reason"] == reasons[a["check"]]
                                       for a in report["artifacts"])
    # The DB security group reads "unused" (moto makes no ENI for RDS): an artifact. The same
    # check failing on another group of the stack is the stack's failure, in the EC2.22 row.
    db_sg = [a for a in report["artifacts"] if a["check"] == "ec2_securitygroup_not_used"]
    assert db_sg and all(any(g in a["resource"] for g in stack.db_security_groups)
                         for a in db_sg)
    other = next(f for f in scan if audit.check_of(f) == "ec2_securitygroup_not_used"
                 and stack.owns(f) and not any(g in audit._uid(f)
                                               for g in stack.db_security_groups))
    other = copy.deepcopy(other)
    other["status_code"] = "FAIL"
    flipped = recorded_report([f for f in scan if f is not other] + [other])
    row = next(r for r in flipped["rows"] if r["control"] == "EC2.22")
    assert row["prowler"] == "FAIL" and audit._uid(other) in row["failed_resources"]
    assert flipped["counts"]["artifact_findings"] == report["counts"]["artifact_findings"]


def test_a_fail_on_a_control_tap_passes_is_a_disagreement():
    scan = recorded("scan")
    report = recorded_report(scan)
    agreed = next(r for r in report["rows"] if r["agree"] == "yes" and r["prowler"] == "PASS"
                  and r["tap"] == "pass")
    victim = next(f for f in scan if agreed["control"] in audit.controls_of_finding(f)
                  and f["status_code"] == "PASS"
                  and audit.Stack.from_dict(recorded("stack")).owns(f))
    failing = copy.deepcopy(victim)
    failing["status_code"] = "FAIL"
    after = recorded_report([f for f in scan if f is not victim] + [failing])
    row = next(r for r in after["rows"] if r["control"] == agreed["control"])
    assert (row["prowler"], row["tap"], row["agree"]) == ("FAIL", "pass", "NO")
    assert after["counts"]["disagreements"] == report["counts"]["disagreements"] + 1


def test_an_excepted_control_is_a_known_failure_never_a_pass():
    verify = copy.deepcopy(recorded("verify"))
    scan = recorded("scan")
    failing = {c for f in scan if f["status_code"] == "FAIL"
               and audit.Stack.from_dict(recorded("stack")).owns(f)
               for c in audit.controls_of_finding(f)}
    check = next(c for c in verify["checks"] if c["control"] in failing)
    for c in verify["checks"]:
        if c["control"] == check["control"]:
            c["status"] = "excepted"
    rows = {r["control"]: r for r in audit.compare(
        scan, audit.Stack.from_dict(recorded("stack")), verify, {"findings": []}, set())["rows"]}
    assert (rows[check["control"]]["tap"], rows[check["control"]]["agree"]) == ("excepted", "yes")
    for c in verify["checks"]:
        if c["control"] == check["control"]:
            c["status"] = "pass"
    rows = {r["control"]: r for r in audit.compare(
        scan, audit.Stack.from_dict(recorded("stack")), verify, {"findings": []}, set())["rows"]}
    assert (rows[check["control"]]["tap"], rows[check["control"]]["agree"]) == ("pass", "NO")


def test_the_live_tap_side_fills_the_table(dev):
    """Recorded scan, live tap: each control the live verify judges is in the table with
    verify's own verdict, and preflight's rules count as checks."""
    report = audit.compare(recorded("scan"), audit.Stack.from_dict(recorded("stack")),
                           dev["verify"], dev["preflight"], audit.preflight_rule_controls())
    rows = {r["control"]: r for r in report["rows"]}
    statuses: dict[str, set] = {}
    for c in dev["verify"]["checks"]:
        for control in audit.split_controls(c["control"]):
            statuses.setdefault(control, set()).add(c["status"])
    assert statuses
    for control, seen in statuses.items():
        want = ("fail" if "fail" in seen else "excepted" if "excepted" in seen
                else "pass" if "pass" in seen else "unverified")
        assert rows[control]["verify"] == want, control
    excepted = [f for f in dev["preflight"]["findings"] if f["severity"] == "excepted"]
    assert excepted, "dev's params file carries policy exceptions"
    for f in excepted:
        for control in audit._controls_in_rule(f["rule"]):
            assert rows[control]["preflight"] in ("excepted", "fail"), control


def test_the_command_compares_a_saved_run_and_names_what_is_missing(tmp_path):
    args = [sys.executable, str(SCRIPT), "--saved", str(DATA), "--env", "dev"]
    out = subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=300,
                         check=False)
    report = json.loads(out.stdout)
    assert out.returncode == (1 if report["counts"]["disagreements"] else 0), out.stderr
    assert report["counts"] == recorded_report()["counts"]
    text = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False).stdout
    assert "emulator artifacts" in text and "disagreements" in text
    (tmp_path / "prowler_dev_scan.json.gz").write_bytes(
        (DATA / "prowler_dev_scan.json.gz").read_bytes())
    missing = subprocess.run([*args[:2], "--saved", str(tmp_path)], capture_output=True,
                             text=True, timeout=300, check=False)
    assert missing.returncode == 2 and "prowler_dev_stack.json" in missing.stderr
