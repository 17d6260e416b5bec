"""The rotation and payment functions against a real PostgreSQL and a real moto server.

Nothing is mocked: the functions run in process with plain boto3 clients pointed at a moto
server by AWS_ENDPOINT_URL, and log in to a local PostgreSQL (tap_lib.localdb). moto
cannot execute Lambdas, so the tests drive the rotation steps the way Secrets Manager does
(see fixtures_lambdas.begin_rotation).
"""
from __future__ import annotations

import ast
import json
import logging
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pg8000.native
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures_lambdas import (MASTER_PASSWORD, MASTER_USER, STEPS, Stack, aws_environment,
                              begin_rotation, create_stack, forwarded_port, login_works,
                              moto_server, rotate, run_steps, scratch_dir, secret_value, stages,
                              standin_server)
from tap_lib.lambdas.payment import handler as payment
from tap_lib.lambdas.rotation import handler as rotation
from tap_lib.localdb import LocalPostgres

REPO = Path(__file__).resolve().parents[1]


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def standin() -> Iterator[tuple[LocalPostgres, Path]]:
    """The stand-in as the sandbox runs it: TLS only, a master that is not a superuser."""
    with scratch_dir() as base, standin_server(base) as found:
        yield found


@pytest.fixture(scope="module")
def pg_server(standin: tuple[LocalPostgres, Path]) -> LocalPostgres:
    return standin[0]


@pytest.fixture(scope="module")
def ca_file(standin: tuple[LocalPostgres, Path]) -> Path:
    return standin[1]


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as base:
        yield base


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in aws_environment(moto_endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_endpoint


@pytest.fixture(autouse=True)
def fresh_payment_container() -> Iterator[None]:
    """Each test starts like a new Lambda container: nothing cached."""
    payment.reset_cache()
    yield
    payment.reset_cache()


def _stack(pg_server: LocalPostgres, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> Stack:
    assert pg_server.port is not None
    kwargs.setdefault("ca_file", pg_server.data_dir.parent / "ca" / "ca.crt")
    stack = create_stack(pg_server.host, pg_server.port, **kwargs)
    for name, value in stack.payment_environment().items():
        monkeypatch.setenv(name, value)
    return stack


@pytest.fixture
def stack(aws: str, pg_server: LocalPostgres, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """A fresh stack whose secret has no password yet (as deployed)."""
    return _stack(pg_server, monkeypatch)


@pytest.fixture
def live_stack(stack: Stack) -> Stack:
    """A stack after its first (bootstrap) rotation: the application user exists."""
    rotate(stack.app_arn)
    return stack


# -- helpers ------------------------------------------------------------------------------------

def _event(payment_id: str = "pay-1", **overrides: Any) -> dict[str, Any]:
    return {"payment_id": payment_id, "amount": "12.50", "currency": "GBP",
            "merchant_id": "merchant-7", "metadata": {"order": "A-17"}, **overrides}


def _invoke(event: Any) -> tuple[int, dict[str, Any]]:
    response = payment.lambda_handler(event, None)
    return response["statusCode"], json.loads(response["body"])


def _current_password(stack: Stack) -> str:
    return str(secret_value(stack.app_arn)["password"])


def _rows(stack: Stack) -> list[list[Any]]:
    conn = stack.master_connection()
    try:
        if conn.run("SELECT to_regclass('public.payments')")[0][0] is None:
            return []
        rows: list[list[Any]] = conn.run(
            "SELECT payment_id, amount, currency, merchant_id FROM payments ORDER BY payment_id")
        return rows
    finally:
        conn.close()


def _objects(stack: Stack) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=stack.bucket)
    return [item["Key"] for item in listed.get("Contents", [])]


def _stored_verifier(stack: Stack) -> str:
    conn = stack.master_connection()
    try:
        return str(conn.run("SELECT rolpassword FROM pg_authid WHERE rolname = :name",
                            name=stack.app_user)[0][0])
    finally:
        conn.close()


def _version_snapshot(stack: Stack) -> dict[str, tuple[list[str], str | None]]:
    """Every version's labels and value: what a repeated step must leave unchanged."""
    sm = boto3.client("secretsmanager")
    snapshot = {}
    for version in sm.list_secret_version_ids(SecretId=stack.app_arn)["Versions"]:
        try:
            value = sm.get_secret_value(SecretId=stack.app_arn,
                                        VersionId=version["VersionId"])["SecretString"]
        except sm.exceptions.ResourceNotFoundException:
            value = None
        snapshot[version["VersionId"]] = (sorted(version["VersionStages"]), value)
    return snapshot


def _all_passwords(stack: Stack) -> set[str]:
    snapshot = _version_snapshot(stack)
    found = {json.loads(value)["password"] for _, value in snapshot.values()
             if value and "password" in json.loads(value)}
    return found | {MASTER_PASSWORD}


# -- rotation -----------------------------------------------------------------------------------

@pytest.mark.postgres
def test_bootstrap_rotation_creates_the_role_and_ends_with_aws_labels(stack: Stack) -> None:
    initial = stages(stack.app_arn)
    assert list(initial.values()) == [["AWSCURRENT"]]
    assert "password" not in secret_value(stack.app_arn)

    token = rotate(stack.app_arn)

    secret = secret_value(stack.app_arn)
    assert stages(stack.app_arn) == {token: ["AWSCURRENT"], **{v: ["AWSPREVIOUS"]
                                                               for v in initial}}
    assert {k: v for k, v in secret.items() if k != "password"} == json.loads(
        json.dumps({"engine": "postgres", "host": stack.db_host, "port": stack.db_port,
                    "dbname": stack.dbname, "username": stack.app_user,
                    "masterarn": stack.master_arn}))
    assert len(secret["password"]) == rotation.PASSWORD_LENGTH
    assert not set(secret["password"]) & set(rotation.EXCLUDED_CHARACTERS)
    assert login_works(stack, stack.app_user, secret["password"])
    assert _stored_verifier(stack).startswith("SCRAM-SHA-256$")


@pytest.mark.postgres
def test_rotation_replaces_the_password(live_stack: Stack) -> None:
    old_token = next(v for v, labels in stages(live_stack.app_arn).items()
                     if "AWSCURRENT" in labels)
    old_password = _current_password(live_stack)

    token = rotate(live_stack.app_arn)

    new_password = _current_password(live_stack)
    assert new_password != old_password
    assert not login_works(live_stack, live_stack.app_user, old_password)
    assert login_works(live_stack, live_stack.app_user, new_password)
    assert stages(live_stack.app_arn) == {token: ["AWSCURRENT"], old_token: ["AWSPREVIOUS"]}
    assert secret_value(live_stack.app_arn, "AWSPREVIOUS")["password"] == old_password


@pytest.mark.postgres
def test_repeating_any_step_changes_nothing_more(live_stack: Stack) -> None:
    token = begin_rotation(live_stack.app_arn)
    for step in STEPS:
        run_steps(live_stack.app_arn, token, (step,))
        versions, verifier = _version_snapshot(live_stack), _stored_verifier(live_stack)
        run_steps(live_stack.app_arn, token, (step,))
        assert _version_snapshot(live_stack) == versions, step
        assert _stored_verifier(live_stack) == verifier, step

    finished, verifier = _version_snapshot(live_stack), _stored_verifier(live_stack)
    run_steps(live_stack.app_arn, token)  # a late retry of every step
    assert _version_snapshot(live_stack) == finished
    assert _stored_verifier(live_stack) == verifier
    assert login_works(live_stack, live_stack.app_user, _current_password(live_stack))


@pytest.mark.postgres
def test_failed_set_secret_keeps_current_working_and_a_retry_completes(live_stack: Stack) -> None:
    sm = boto3.client("secretsmanager")
    current_password, labels = _current_password(live_stack), stages(live_stack.app_arn)
    wrong_master = "wrong-master-Pw-987654"
    sm.put_secret_value(SecretId=live_stack.master_arn, SecretString=json.dumps(
        {"username": MASTER_USER, "password": wrong_master}))
    token = begin_rotation(live_stack.app_arn)
    run_steps(live_stack.app_arn, token, ("createSecret",))
    pending_password = secret_value(live_stack.app_arn, "AWSPENDING")["password"]

    with pytest.raises(rotation.RotationError, match="master secret") as failure:
        run_steps(live_stack.app_arn, token, ("setSecret",))

    assert all(p not in str(failure.value) for p in (wrong_master, pending_password,
                                                     current_password, MASTER_PASSWORD))
    assert login_works(live_stack, live_stack.app_user, current_password)
    assert not login_works(live_stack, live_stack.app_user, pending_password)
    assert {v: s for v, s in stages(live_stack.app_arn).items() if v != token} == labels

    # Secrets Manager retries with the same token once the master secret is right again.
    sm.put_secret_value(SecretId=live_stack.master_arn, SecretString=json.dumps(
        {"username": MASTER_USER, "password": MASTER_PASSWORD}))
    run_steps(live_stack.app_arn, token, ("setSecret", "testSecret", "finishSecret"))
    assert _current_password(live_stack) == pending_password
    assert login_works(live_stack, live_stack.app_user, pending_password)
    assert not login_works(live_stack, live_stack.app_user, current_password)


@pytest.mark.postgres
def test_failed_test_secret_keeps_current_working(live_stack: Stack) -> None:
    """testSecret is the gate: a password the database does not accept never becomes current."""
    current_password, labels = _current_password(live_stack), stages(live_stack.app_arn)
    token = begin_rotation(live_stack.app_arn)
    run_steps(live_stack.app_arn, token, ("createSecret",))  # setSecret lost or never applied

    with pytest.raises(rotation.RotationError, match="refuses version"):
        run_steps(live_stack.app_arn, token, ("testSecret",))

    assert login_works(live_stack, live_stack.app_user, current_password)
    assert _current_password(live_stack) == current_password
    assert {v: s for v, s in stages(live_stack.app_arn).items() if v != token} == labels
    assert stages(live_stack.app_arn)[token] == ["AWSPENDING"]

    run_steps(live_stack.app_arn, token, ("setSecret", "testSecret", "finishSecret"))
    assert stages(live_stack.app_arn)[token] == ["AWSCURRENT"]
    assert not login_works(live_stack, live_stack.app_user, current_password)


@pytest.mark.postgres
def test_test_secret_checks_the_privileges_the_payment_function_needs(live_stack: Stack) -> None:
    token = begin_rotation(live_stack.app_arn)
    run_steps(live_stack.app_arn, token, ("createSecret", "setSecret"))
    conn = live_stack.master_connection()
    try:
        conn.run(f"REVOKE CREATE ON SCHEMA public FROM {live_stack.app_user}")
    finally:
        conn.close()
    with pytest.raises(rotation.RotationError, match="lacks CONNECT"):
        run_steps(live_stack.app_arn, token, ("testSecret",))


def _create_database(stack: Stack, name: str) -> None:
    conn = stack.master_connection()
    try:
        conn.run(f"CREATE DATABASE {name}")
    finally:
        conn.close()


def _without_password(secret: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in secret.items() if k != "password"}


@pytest.mark.postgres
def test_rotation_after_a_port_and_database_change_writes_the_new_facts(
        live_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack sets the rotation function's environment from the cluster; the initial
    version is never rewritten (ignore_changes), so the rotation brings the secret up to date
    and sets the password where the database now is."""
    new_db = f"{live_stack.dbname}_b"
    _create_database(live_stack, new_db)
    with forwarded_port(live_stack.db_host, live_stack.db_port) as new_port:
        monkeypatch.setenv("DB_HOST", live_stack.db_host)
        monkeypatch.setenv("DB_PORT", str(new_port))
        monkeypatch.setenv("DB_NAME", new_db)
        before = _without_password(secret_value(live_stack.app_arn))
        assert (before["port"], before["dbname"]) == (live_stack.db_port, live_stack.dbname)

        rotate(live_stack.app_arn)

        secret = secret_value(live_stack.app_arn)
        assert _without_password(secret) == {**before, "port": new_port, "dbname": new_db}
        conn = pg8000.native.Connection(live_stack.app_user, password=secret["password"],
                                        host=live_stack.db_host, port=new_port,
                                        database=new_db, timeout=10)
        try:
            assert conn.run("SELECT current_database(), current_user") == [
                [new_db, live_stack.app_user]]
        finally:
            conn.close()


@pytest.mark.postgres
def test_a_new_username_gets_its_role_on_the_next_rotation_and_payments_keep_working(
        live_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    status, _ = _invoke(_event("pay-before"))  # the old user creates (and owns) the table
    assert status == 200
    old_password = _current_password(live_stack)
    new_user = f"{live_stack.app_user}_b"
    monkeypatch.setenv("DB_USERNAME", new_user)

    rotate(live_stack.app_arn)

    secret = secret_value(live_stack.app_arn)
    assert secret["username"] == new_user
    assert secret_value(live_stack.app_arn, "AWSPREVIOUS")["username"] == live_stack.app_user
    assert login_works(live_stack, new_user, secret["password"])
    assert login_works(live_stack, live_stack.app_user, old_password)  # nothing taken away
    payment.reset_cache()  # a new container reads the new user
    status, body = _invoke(_event("pay-after"))
    assert status == 200, body
    assert [r[0] for r in _rows(live_stack)] == ["pay-after", "pay-before"]

    monkeypatch.setenv("DB_USERNAME", live_stack.app_user)  # and back again
    rotate(live_stack.app_arn)
    assert secret_value(live_stack.app_arn)["username"] == live_stack.app_user
    payment.reset_cache()
    assert _invoke(_event("pay-back"))[0] == 200


def test_renaming_back_to_an_earlier_user_keeps_the_tables_the_later_one_created(
        live_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """a -> b -> a where b made the first payment (b owns the table): back as a, payments work."""
    new_user = f"{live_stack.app_user}_b"
    monkeypatch.setenv("DB_USERNAME", new_user)
    rotate(live_stack.app_arn)
    payment.reset_cache()
    status, body = _invoke(_event("pay-by-b"))  # b creates (and owns) the table
    assert status == 200, body

    monkeypatch.setenv("DB_USERNAME", live_stack.app_user)
    rotate(live_stack.app_arn)
    secret = secret_value(live_stack.app_arn)
    assert secret["username"] == live_stack.app_user
    assert login_works(live_stack, live_stack.app_user, secret["password"])
    payment.reset_cache()
    status, body = _invoke(_event("pay-by-a"))
    assert status == 200, body
    assert [r[0] for r in _rows(live_stack)] == ["pay-by-a", "pay-by-b"]


@pytest.mark.postgres
def test_rotation_refuses_what_the_contract_refuses(aws: str, pg_server: LocalPostgres,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    stack = _stack(pg_server, monkeypatch)
    first = next(iter(stages(stack.app_arn)))
    with pytest.raises(rotation.RotationError, match="not enabled for rotation"):
        run_steps(stack.app_arn, first, ("createSecret",))

    rotate(stack.app_arn)
    with pytest.raises(rotation.RotationError, match="has no stage"):
        run_steps(stack.app_arn, "f" * 36, ("createSecret",))
    with pytest.raises(rotation.RotationError, match="is not AWSPENDING"):
        run_steps(stack.app_arn, first, ("setSecret",))  # now AWSPREVIOUS

    sm = boto3.client("secretsmanager")
    sm.put_secret_value(SecretId=stack.master_arn, SecretString=json.dumps(
        {"username": stack.app_user, "password": MASTER_PASSWORD}))
    token = begin_rotation(stack.app_arn)
    run_steps(stack.app_arn, token, ("createSecret",))
    with pytest.raises(rotation.RotationError, match="names the master user"):
        run_steps(stack.app_arn, token, ("setSecret",))


# -- payments -----------------------------------------------------------------------------------

@pytest.mark.postgres
def test_payment_is_recorded_and_logged(live_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_PREFIX", "/audit/tx/")
    status, body = _invoke(_event("pay-100", amount=7))

    assert status == 200 and body["duplicate"] is False
    assert _rows(live_stack) == [["pay-100", Decimal("7.00"), "GBP", "merchant-7"]]
    day = body["created_at"][:10].replace("-", "/")
    key = f"audit/tx/{day}/pay-100.json"
    assert body["log_object"] == f"s3://{live_stack.bucket}/{key}"
    assert _objects(live_stack) == [key]
    logged = json.loads(boto3.client("s3").get_object(Bucket=live_stack.bucket,
                                                      Key=key)["Body"].read())
    assert logged == {k: v for k, v in body.items() if k not in {"duplicate", "log_object"}}
    assert logged["amount"] == "7.00" and logged["metadata"] == {"order": "A-17"}


@pytest.mark.postgres
def test_retrying_a_payment_is_idempotent(aws: str, pg_server: LocalPostgres,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    stack = _stack(pg_server, monkeypatch, versioned_bucket=True)
    rotate(stack.app_arn)
    first = _invoke(_event("pay-200"))
    payment.reset_cache()  # the retry may land on another container
    second = _invoke(_event("pay-200"))

    assert first[0] == second[0] == 200
    assert (first[1]["duplicate"], second[1]["duplicate"]) == (False, True)
    assert {k: v for k, v in first[1].items() if k != "duplicate"} == \
        {k: v for k, v in second[1].items() if k != "duplicate"}
    assert len(_rows(stack)) == 1
    versions = boto3.client("s3").list_object_versions(Bucket=stack.bucket)["Versions"]
    assert len(versions) == 1  # the retry wrote no second object version


@pytest.mark.postgres
def test_a_retry_writes_the_log_a_crash_left_missing(live_stack: Stack) -> None:
    _invoke(_event("pay-250"))
    [key] = _objects(live_stack)
    boto3.client("s3").delete_object(Bucket=live_stack.bucket, Key=key)

    status, body = _invoke(_event("pay-250"))
    assert status == 200 and body["duplicate"] is True
    assert _objects(live_stack) == [key]


@pytest.mark.postgres
def test_a_reused_payment_id_for_another_payment_is_a_conflict(live_stack: Stack) -> None:
    assert _invoke(_event("pay-300"))[0] == 200
    status, body = _invoke(_event("pay-300", amount="99.99"))
    assert status == 409 and body["payment_id"] == "pay-300"
    assert _rows(live_stack) == [["pay-300", Decimal("12.50"), "GBP", "merchant-7"]]
    assert len(_objects(live_stack)) == 1


_INVALID = {
    "payment_id": st.one_of(
        st.sampled_from([None, 7, "", "x" * 65, "pay 1", "pay/1", "paié", ["p"]]),
        st.text(max_size=70).filter(lambda t: not payment.PAYMENT_ID.fullmatch(t))),
    "amount": st.one_of(
        st.sampled_from([None, True, "", "0", "0.00", "-1", "1.234", "1e3", " 5", "5.", ".5",
                         "NaN", "Infinity", "1_000", "12,50", [], {}, float("nan"),
                         float("inf"), 0.001, -3.5, 10 ** 13, "1234567890123"]),
        st.integers(max_value=0),
        st.text(max_size=8).filter(lambda t: not payment.AMOUNT_TEXT.fullmatch(t))),
    "currency": st.one_of(
        st.sampled_from([None, "usd", "US", "USDD", "XYZ", "XAU", 840, "€€€"]),
        st.text(max_size=5).filter(lambda t: t not in payment.CURRENCIES)),
    "merchant_id": st.sampled_from([None, "", "m" * 65, "a b", 7, "m/1"]),
    "metadata": st.sampled_from([[], "x", 5, False, {1: "a"}, {"big": "x" * 5000},
                                 {"nan": float("nan")}, {"obj": object()}]),
    "unexpected": st.sampled_from([1, "x", None]),
}


@pytest.mark.postgres
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.one_of(*(st.tuples(st.just(name), values) for name, values in _INVALID.items())))
def test_invalid_payments_are_refused_and_write_nothing(live_stack: Stack,
                                                        case: tuple[str, Any]) -> None:
    field, value = case
    status, body = _invoke({**_event("pay-bad"), field: value})
    assert status == 400
    assert field in {error["field"] for error in body["errors"]}
    assert _rows(live_stack) == [] and _objects(live_stack) == []


@pytest.mark.postgres
@pytest.mark.parametrize("event", [None, [], "pay", 5, {}])
def test_events_that_are_not_payments_are_refused(live_stack: Stack, event: Any) -> None:
    status, body = _invoke(event)
    assert status == 400 and body["errors"]
    assert _rows(live_stack) == [] and _objects(live_stack) == []


@given(payment_id=st.from_regex(payment.PAYMENT_ID, fullmatch=True),
       amount=st.one_of(
           st.decimals(min_value=Decimal("0.01"), max_value=payment.MAX_AMOUNT, places=2),
           st.integers(min_value=1, max_value=10 ** 9),
           st.integers(min_value=1, max_value=10 ** 8).map(lambda cents: cents / 100)),
       as_text=st.booleans(),
       currency=st.sampled_from(sorted(payment.CURRENCIES)),
       merchant_id=st.from_regex(payment.MERCHANT_ID, fullmatch=True),
       metadata=st.none() | st.dictionaries(st.text(max_size=10), st.integers() | st.text(
           max_size=20), max_size=5))
def test_valid_payments_pass_validation(payment_id: str, amount: Any, as_text: bool,
                                        currency: str, merchant_id: str,
                                        metadata: dict[str, Any] | None) -> None:
    if as_text:
        amount = f"{Decimal(str(amount)):f}"
    event = {"payment_id": payment_id, "amount": amount, "currency": currency,
             "merchant_id": merchant_id, "metadata": metadata}
    parsed, errors = payment.validate_payment(event)
    assert errors == [] and parsed is not None
    assert parsed.amount == Decimal(str(amount)).quantize(Decimal("0.01"))
    assert parsed.metadata == (metadata or {})


@pytest.mark.postgres
def test_a_payment_before_the_first_rotation_fails_clearly(stack: Stack) -> None:
    with pytest.raises(payment.CredentialsRejected, match="first rotation"):
        payment.lambda_handler(_event("pay-400"), None)


@pytest.mark.postgres
def test_payments_keep_working_across_a_rotation(live_stack: Stack,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    assert _invoke(_event("pay-500"))[0] == 200
    rotate(live_stack.app_arn)

    assert _invoke(_event("pay-501"))[0] == 200  # open session: unaffected by the rotation
    payment.close_connection()  # new login with the cached, now stale, password
    assert _invoke(_event("pay-502"))[0] == 200
    assert "refused the cached credentials" in caplog.text
    assert len(_rows(live_stack)) == 3


@pytest.mark.postgres
def test_payments_work_between_set_secret_and_finish_secret(live_stack: Stack) -> None:
    assert _invoke(_event("pay-600"))[0] == 200
    token = begin_rotation(live_stack.app_arn)
    run_steps(live_stack.app_arn, token, ("createSecret", "setSecret"))
    payment.close_connection()
    assert _invoke(_event("pay-601"))[0] == 200  # only AWSPENDING logs in now

    run_steps(live_stack.app_arn, token, ("testSecret", "finishSecret"))
    payment.close_connection()
    assert _invoke(_event("pay-602"))[0] == 200


@pytest.mark.postgres
def test_payment_connects_where_its_environment_says(live_stack: Stack,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Host and port come from the function's environment (updated in place by a deploy), not
    from the secret, whose copies are stale after a port change until the next rotation."""
    with forwarded_port(live_stack.db_host, live_stack.db_port) as old_port:
        monkeypatch.setenv("DB_PORT", str(old_port))  # the rotation writes this port
        rotate(live_stack.app_arn)
    assert secret_value(live_stack.app_arn)["port"] == old_port  # now closed: the db moved
    monkeypatch.delenv("DB_PORT")
    with pytest.raises(pg8000.native.InterfaceError):
        _invoke(_event("pay-stale"))

    with forwarded_port(live_stack.db_host, live_stack.db_port) as new_port:
        monkeypatch.setenv("DB_HOST", live_stack.db_host)
        monkeypatch.setenv("DB_PORT", str(new_port))
        status, body = _invoke(_event("pay-moved"))
        assert status == 200, body
        payment.close_connection()
    assert [r[0] for r in _rows(live_stack)] == ["pay-moved"]


@pytest.mark.postgres
def test_a_lost_connection_is_replaced(live_stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    assert _invoke(_event("pay-700"))[0] == 200
    live_stack.terminate_app_connections()
    assert _invoke(_event("pay-701"))[0] == 200
    assert "connection was lost" in caplog.text


@pytest.mark.postgres
def test_payment_logs_into_an_object_lock_bucket(aws: str, pg_server: LocalPostgres,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 refuses a PUT without a checksum into a bucket with a default retention."""
    stack = _stack(pg_server, monkeypatch, object_lock=True)
    rotate(stack.app_arn)
    status, body = _invoke(_event("pay-locked"))
    assert status == 200, body


@pytest.mark.postgres
def test_the_log_put_carries_its_checksum_and_does_not_wait_for_100_continue(
        live_stack: Stack) -> None:
    """A few hundred bytes: no `Expect: 100-continue` round trip, the same body and checksum."""
    assert _invoke(_event("pay-head-0"))[0] == 200
    sent: list[tuple[dict[str, Any], bytes]] = []

    def capture(request: Any, **_: Any) -> None:
        body = request.body
        sent.append((dict(request.headers), body.getvalue() if hasattr(body, "getvalue")
                     else bytes(body or b"")))

    payment._clients["s3"].meta.events.register("before-send.s3.PutObject", capture)
    status, body = _invoke(_event("pay-head-1"))
    assert status == 200 and len(sent) == 1
    headers, content = sent[0]
    assert "Expect" not in headers
    assert any(name.lower().startswith("x-amz-checksum-") for name in headers)
    assert headers["If-None-Match"] == b"*"
    assert json.loads(content) == {k: v for k, v in body.items()
                                   if k not in {"duplicate", "log_object"}}


@pytest.mark.postgres
def test_the_insert_is_prepared_once_per_connection(live_stack: Stack,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    prepared: list[int] = []
    prepare = pg8000.native.Connection.prepare
    monkeypatch.setattr(pg8000.native.Connection, "prepare",
                        lambda conn, sql: prepared.append(id(conn)) or prepare(conn, sql))
    for i in range(5):
        assert _invoke(_event(f"prep-{i}"))[0] == 200
    assert len(prepared) == 1

    live_stack.terminate_app_connections()  # the statement dies with its session
    assert _invoke(_event("prep-after"))[0] == 200
    assert _invoke(_event("prep-after-2"))[0] == 200
    assert len(prepared) == 2 and prepared[0] != prepared[1]
    assert _invoke(_event("prep-after"))[1]["duplicate"] is True  # same statement, a retry
    assert [r[0] for r in _rows(live_stack)] == sorted(
        [f"prep-{i}" for i in range(5)] + ["prep-after", "prep-after-2"])


def _app_backends(stack: Stack) -> list[int]:
    """Backend pids of the payment function's sessions (pg_stat_activity)."""
    conn = stack.master_connection()
    try:
        return [row[0] for row in conn.run(
            "SELECT pid FROM pg_stat_activity WHERE usename = :user "
            "AND application_name = 'tap-payment' ORDER BY pid", user=stack.app_user)]
    finally:
        conn.close()


@pytest.mark.postgres
def test_a_warm_container_reuses_one_connection_and_survives_terminate_and_rotation(
        live_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """As a Lambda container keeps them: one session and one secret read for N payments; a
    session the server ends, and a rotation after it, cost one new login each, no failure."""
    reads: list[str] = []
    read = payment._read_credentials
    monkeypatch.setattr(payment, "_read_credentials",
                        lambda stage: reads.append(stage) or read(stage))
    pids = set()
    for i in range(20):
        assert _invoke(_event(f"warm-{i}"))[0] == 200
        pids.update(_app_backends(live_stack))
    assert len(pids) == 1 and reads == ["AWSCURRENT"]

    live_stack.terminate_app_connections()
    assert _invoke(_event("warm-after-terminate"))[0] == 200
    after = _app_backends(live_stack)
    assert len(after) == 1 and after[0] not in pids
    assert reads == ["AWSCURRENT"]  # the cached secret still logs in

    rotate(live_stack.app_arn)
    # the open session survives a rotation; end it so the next login needs the new password
    live_stack.terminate_app_connections()
    assert _invoke(_event("warm-after-rotation"))[0] == 200
    assert len(_app_backends(live_stack)) == 1
    assert reads == ["AWSCURRENT", "AWSCURRENT"]  # refused once, re-read once


@pytest.mark.postgres
def test_the_cached_secret_expires_at_the_next_login(live_stack: Stack,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    read = payment._read_credentials
    monkeypatch.setattr(payment, "_read_credentials",
                        lambda stage: reads.append(stage) or read(stage))
    assert _invoke(_event("ttl-1"))[0] == 200
    monkeypatch.setattr(payment, "SECRET_TTL_S", 0)
    assert _invoke(_event("ttl-2"))[0] == 200  # an open session needs no secret
    assert reads == ["AWSCURRENT"]
    payment.close_connection()
    assert _invoke(_event("ttl-3"))[0] == 200
    assert reads == ["AWSCURRENT", "AWSCURRENT"]


@pytest.mark.postgres
def test_no_password_is_logged_printed_or_returned(stack: Stack, caplog: pytest.LogCaptureFixture,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    sm = boto3.client("secretsmanager")
    texts: list[str] = []
    rotate(stack.app_arn)
    texts += [json.dumps(_invoke(_event("pay-800"))), json.dumps(_invoke(_event("pay-800"))),
              json.dumps(_invoke(_event("pay-801", amount="-1")))]
    rotate(stack.app_arn)
    sm.put_secret_value(SecretId=stack.master_arn, SecretString=json.dumps(
        {"username": MASTER_USER, "password": "wrong-master-Pw-55"}))
    token = begin_rotation(stack.app_arn)
    with pytest.raises(rotation.RotationError) as failure:
        run_steps(stack.app_arn, token)
    texts.append(str(failure.value))
    payment.close_connection()
    texts.append(json.dumps(_invoke(_event("pay-802"))))

    captured = capsys.readouterr()
    texts += [caplog.text, captured.out, captured.err]
    assert "pay-802" in caplog.text  # the logs were captured
    passwords = _all_passwords(stack) | {"wrong-master-Pw-55"}
    assert len(passwords) == 5  # master, wrong master, two rotations, one pending
    leaked = [p for p in passwords for text in texts if p in text]
    assert leaked == []


@pytest.mark.postgres
def test_scram_verifier_is_what_postgresql_accepts(live_stack: Stack) -> None:
    verifier = rotation.scram_verifier("correct-horse-battery", salt=b"0123456789abcdef")
    assert verifier.startswith("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$")
    conn = live_stack.master_connection()
    try:
        conn.run(f"ALTER ROLE {live_stack.app_user} PASSWORD '{verifier}'")
    finally:
        conn.close()
    assert login_works(live_stack, live_stack.app_user, "correct-horse-battery")
    with pytest.raises(rotation.RotationError):
        rotation.scram_verifier("pässword")


@pytest.mark.parametrize("function", ["rotation", "payment"])
def test_handlers_import_only_what_their_archive_holds(function: str) -> None:
    """Each handler.py is packaged with pg8000 and pgclient.py; the runtime provides boto3. The
    one relative import, `from .. import pgclient` (tap's own imports of the handler), falls
    back to the archive's root."""
    from tap_lib.program import packaging

    packaged = {name.split("/")[0].removesuffix(".py")
                for name in packaging.function_archive(function).assets}
    for source in (REPO / "tap_lib" / "lambdas" / function / "handler.py",
                   REPO / "tap_lib" / "lambdas" / "pgclient.py"):
        imported, relative = set(), set()
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level:
                relative |= {(node.level, node.module, a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(str(node.module).split(".")[0])
        assert relative <= {(2, None, "pgclient")}, relative
        assert imported - sys.stdlib_module_names <= {"boto3", "botocore"} | packaged, imported
        assert {name for _, _, name in relative} <= imported     # the fallback is there too
