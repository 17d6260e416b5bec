"""The emulator's transport: persistent connections (patches/http_keepalive.py) and batched
server access-log delivery (patches/s3_logging.py)."""
from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from werkzeug.serving import make_server

from tap_lib.engines.sandbox.patches import http_keepalive, s3_logging

REGION = "eu-west-2"


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Says which client port asked and what body it read; /skip reads no body, /boom fails,
    HEAD answers a Content-Length with no body (as S3's HeadObject)."""
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise RuntimeError("a failing service")
    body = b"" if path == "/skip" else environ["wsgi.input"].read()
    if environ["REQUEST_METHOD"] == "HEAD":
        start_response("200 OK", [("Content-Length", "1234")])
        return []
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"port": environ["REMOTE_PORT"], "body": body.decode()}).encode()]


@pytest.fixture
def server() -> Iterator[int]:
    httpd = make_server("127.0.0.1", 0, _app, threaded=True,
                        request_handler=http_keepalive.handler_class())
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_port
    httpd.shutdown()
    httpd.server_close()


def _ask(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response, response.read()


def test_requests_share_one_connection_whatever_the_service_read(server: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    first, content = _ask(conn, "PUT", "/put", b"payload",
                          {"Expect": "100-continue"})
    port = json.loads(content)["port"]
    assert first.status == 200 and json.loads(content)["body"] == "payload"
    assert first.getheader("Connection") is None and first.getheader("Content-Length")
    # a body the service never read is drained: the next request line is found after it
    skipped, _ = _ask(conn, "POST", "/skip", b"x" * 100_000)
    head, head_body = _ask(conn, "HEAD", "/object")
    last, content = _ask(conn, "POST", "/put", b"last")
    assert skipped.status == head.status == last.status == 200
    assert head.getheader("Content-Length") == "1234" and head_body == b""
    assert json.loads(content) == {"port": port, "body": "last"}  # the same connection
    conn.close()


def test_a_chunked_body_is_read_and_the_connection_kept(server: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    conn.request("PUT", "/put", body=iter([b"ab", b"cd"]), encode_chunked=True)
    response = conn.getresponse()
    assert json.loads(response.read())["body"] == "abcd"
    again, content = _ask(conn, "GET", "/put")
    assert again.status == 200 and json.loads(content)["body"] == ""


def test_a_failing_service_answers_500_and_closes(server: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    response, content = _ask(conn, "GET", "/boom")
    assert response.status == 500 and content == b"Internal Server Error"
    assert response.getheader("Connection") == "close"


def test_an_unreadable_length_closes_the_connection(server: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    conn.putrequest("POST", "/skip")
    conn.putheader("Content-Length", "twelve")
    conn.endheaders()
    response = conn.getresponse()
    response.read()
    assert response.getheader("Connection") == "close"


def test_a_client_asking_to_close_is_answered_so(server: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    response, _ = _ask(conn, "GET", "/put", headers={"Connection": "close"})
    assert response.status == 200 and response.getheader("Connection") == "close"


# -- access logs ---------------------------------------------------------------------------------

@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str, str]]:
    """A bucket logging to a target, with the batched delivery installed (in process)."""
    from moto.s3.models import S3Backend

    monkeypatch.setattr(S3Backend, "log_incoming_request", s3_logging._log_incoming_request)
    monkeypatch.setattr(s3_logging, "_deliveries", s3_logging._Deliveries())
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION, aws_access_key_id="testing",
                          aws_secret_access_key="testing")
        source, target = "tap-source-bucket", "tap-target-logs"
        for name in (source, target):
            s3.create_bucket(Bucket=name,
                             CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_policy(Bucket=target, Policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"},
                "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{target}/*"}]}))
        s3.put_bucket_logging(Bucket=source, BucketLoggingStatus={"LoggingEnabled": {
            "TargetBucket": target, "TargetPrefix": "access/"}})
        yield s3, source, target


def _stored(target: str) -> list[str]:
    """The target's log lines, read from the backend (a request to it would deliver first)."""
    from moto.s3.models import s3_backends

    bucket = s3_backends["123456789012"]["aws"].buckets[target]
    return [line for key in bucket.keys.values() for line in key.value.decode().splitlines()]


def test_records_wait_and_are_delivered_together(logged: tuple[Any, str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    s3, source, target = logged
    monkeypatch.setattr(s3_logging, "DELIVERY_DELAY_S", 0.2)
    for i in range(5):
        s3.put_object(Bucket=source, Key=f"k{i}", Body=b"x")
    assert _stored(target) == []  # nothing written inside the requests
    deadline = time.monotonic() + 10
    while not _stored(target) and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = _stored(target)
    assert len(lines) == 5 and all(f" {source} " in line and "REST.PUT" in line
                                   for line in lines)
    listed = s3.list_objects_v2(Bucket=target)["Contents"]
    assert len(listed) == 1 and listed[0]["Key"].startswith("access/")


def test_a_request_to_the_target_sees_every_earlier_record(
        logged: tuple[Any, str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    s3, source, target = logged
    monkeypatch.setattr(s3_logging, "DELIVERY_DELAY_S", 3600)
    s3.put_object(Bucket=source, Key="a", Body=b"x")
    s3.get_object(Bucket=source, Key="a")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=target)["Contents"]]
    body = s3.get_object(Bucket=target, Key=keys[0])["Body"].read().decode()
    assert len(keys) == 1 and "REST.PUT" in body and "REST.GET" in body


def test_a_target_gone_before_delivery_drops_its_records(
        logged: tuple[Any, str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    s3, source, target = logged
    monkeypatch.setattr(s3_logging, "DELIVERY_DELAY_S", 3600)
    s3.put_object(Bucket=source, Key="a", Body=b"x")
    s3_logging._deliveries.deliver(None, "unrelated")  # another bucket: nothing delivered
    assert _stored(target) == []
    from moto.s3.models import s3_backends

    del s3_backends["123456789012"]["aws"].buckets[target]  # gone without a request to it
    s3_logging._deliveries.deliver()  # best effort: no error, nothing left waiting
    assert s3_logging._deliveries.pending == {}
    assert s3.get_object(Bucket=source, Key="a")["Body"].read() == b"x"
