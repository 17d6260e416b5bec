"""Repair converges drift: the five drifts verify detects (plus a password copied into a
function's variables), injected behind tap's back, are gone after `tap run repair`, and the
record shows each failed check before and after, on one engine (a repair once opened six).
Also `tap deploy --refresh`."""
from __future__ import annotations

import json

import nbformat
import pytest
from fixtures_drift import inject_drift

from tap_lib import Stack
from tap_lib.engines.registry import open_engine
from tap_lib.ops.repair import repair
from tap_lib.ops.stack import deploy, destroy, settings_for
from tap_lib.ops.verify import verify

from helpers import tap_process

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]

ENV = "dev"
# Rotation turned off fails SecretsManager.1 (secret.rotation) and, as the control defines it,
# SecretsManager.4 (secret.rotated-recently: no rotation scheduled within 90 days).
# sg.internet: the injected 0.0.0.0/0 rule also fails the internet-ingress controls (issue 19)
INJECTED = {"s3.versioning", "s3.public-access-block", "sg.no-world-ingress", "sg.db-ingress",
            "sg.internet",
            "lambda.secret-ref", "lambda.no-password", "secret.rotation",
            "secret.rotated-recently", "payment.synthetic"}


@pytest.fixture(scope="module")
def engine(sandbox_home):
    deploy(ENV, "sandbox")
    yield open_engine(settings_for(ENV), "sandbox")
    destroy(ENV, "sandbox", yes=True)


def failing(report) -> set[str]:
    return set(report.checks.query("status == 'fail'").id)


def test_repair_converges_every_injected_drift(engine, opened):
    inject_drift(engine)
    result = repair(ENV, "sandbox")
    # verify, refresh, preview, deploy, revoke, verify: one engine for all six steps
    assert len(opened) == 1
    assert failing(result.before) == INJECTED
    assert {s.name: s.op for s in result.refreshed.changes} == {
        "transaction-logs-pab-dev": "delete", "db-app-credentials-rotation-dev": "delete",
        "transaction-logs-versioning-dev": "update", "payment-fn-dev": "update"}
    assert {s.name: s.op for s in result.plan.changes} == {
        "transaction-logs-pab-dev": "create", "db-app-credentials-rotation-dev": "create",
        "transaction-logs-versioning-dev": "update", "payment-fn-dev": "update"}
    assert [r["what"] for r in result.revoked] == ["tcp 5432-5432 from 0.0.0.0/0"]
    assert result.converged and result.after.failed == 0
    assert set(result.comparison().check) == INJECTED
    assert set(result.comparison().status) == {"pass"}
    # converged for good: nothing left to change, nothing left to revoke
    assert not open_engine(settings_for(ENV), "sandbox").preview().changes
    again = repair(ENV, "sandbox")
    assert again.before.failed == 0 and not again.plan.changes and not again.revoked


def test_the_stack_handle_repairs_on_its_one_engine(engine, opened):
    """The public handle: repair, then verify and outputs, all on the engine it opened."""
    inject_drift(engine)
    stack = Stack.open(ENV, "sandbox")
    assert opened == []                               # opened lazily, on first use
    result = stack.repair()
    assert failing(result.before) == INJECTED and result.converged
    assert [r["what"] for r in result.revoked] == ["tcp 5432-5432 from 0.0.0.0/0"]
    assert failing(stack.verify()) == set()
    assert stack.outputs()["s3_bucket_name"] == engine.outputs()["s3_bucket_name"]
    assert opened == [stack.engine]


def test_deploy_refresh_repairs_what_a_plain_deploy_does_not(engine):
    c, out = engine.clients(), engine.outputs()
    c("s3").put_bucket_versioning(Bucket=out["s3_bucket_name"],
                                  VersioningConfiguration={"Status": "Suspended"})
    plain = deploy(ENV, "sandbox")                 # compares with state: sees nothing
    assert not plain.changes and failing(verify(ENV, "sandbox")) == {"s3.versioning"}
    repaired = deploy(ENV, "sandbox", refresh=True)
    assert [s.name for s in repaired.changes] == ["transaction-logs-versioning-dev"]
    assert any("refresh found 1 resource" in n for n in repaired.notes)
    assert failing(verify(ENV, "sandbox")) == set()


def test_repair_notebook_records_before_and_after(engine, sandbox_home):
    password = inject_drift(engine)
    out = tap_process("run", "repair", "--env", ENV, "--json", timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    record = json.loads(out.stdout)[0]
    assert record["status"] == "succeeded"
    nb = nbformat.read(record["path"], as_version=4)
    text = json.dumps(nb)
    for check_id in INJECTED:                          # each failed check, before and after
        assert check_id in text, check_id
    assert "revoked tcp 5432-5432 from 0.0.0.0/0" in text
    assert password not in text                       # the leaked password is never shown
    assert failing(verify(ENV, "sandbox")) == set()
