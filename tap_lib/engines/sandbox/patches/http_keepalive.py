"""Persistent HTTP/1.1 connections on the emulator (RFC 9112 section 9.3: a connection persists
unless a side says `Connection: close`), as AWS's endpoints keep them for SDK clients.

moto serves through werkzeug's development server, which answers every request with
`Connection: close`: every AWS call then opens a TCP connection and starts a server thread,
and after each answer that thread waits up to 10 ms for body bytes it never drains. Here each
answer is framed (Content-Length; moto builds its answers in memory anyway) and sent in one
write, each request's body is read to its end whether or not moto read it, and the connection
stays open for the client's next request. A warm Lambda function's boto3 client keeps one.

Also: moto's dispatcher lists its own package directory (a stat per service, twice a request)
while holding the lock every request takes; the list is read once here.
"""
from __future__ import annotations

import traceback
from typing import Any

IDLE_TIMEOUT_S = 120.0  # an idle connection is closed; clients open a new one


def handler_class() -> type:
    """moto's request handler, answering with persistent connections."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.datastructures import Headers
    from werkzeug.serving import DechunkedInput
    from werkzeug.wsgi import LimitedStream

    class KeepAliveRequestHandler(MotoRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = IDLE_TIMEOUT_S
        disable_nagle_algorithm = True  # an answer never waits for the client's ACK

        def run_wsgi(self) -> None:
            if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.environ = environ = self.make_environ()
            body: Any = environ["wsgi.input"]
            if not isinstance(body, DechunkedInput):
                try:
                    length = max(0, int(environ.get("CONTENT_LENGTH") or 0))
                except ValueError:  # no way to find where the next request starts
                    length, self.close_connection = 0, True
                body = environ["wsgi.input"] = LimitedStream(self.rfile, length)
            environ["wsgi.input_terminated"] = True
            started: list[Any] = []
            chunks: list[bytes] = []

            def start_response(status, headers, exc_info=None):
                if exc_info and started:
                    raise exc_info[1].with_traceback(exc_info[2])
                started[:] = [status, headers]
                return chunks.append

            try:
                result = self.server.app(environ, start_response)
                try:
                    chunks.extend(result)
                finally:
                    if hasattr(result, "close"):
                        result.close()
            except Exception:  # noqa: BLE001 - answered 500, as werkzeug's server answers it
                self.server.log("error", "Error on request:\n%s", traceback.format_exc())
                started[:] = ["500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain")]]
                chunks = [b"Internal Server Error"]
                self.close_connection = True
            while body.read(65536):  # the next request starts after this one's body
                pass
            self._answer(started[0], Headers(started[1]), b"".join(chunks))

        def _answer(self, status: str, headers: Any, content: bytes) -> None:
            code_text, _, message = status.partition(" ")
            code = int(code_text)
            bodiless = self.command == "HEAD" or code < 200 or code in (204, 304)
            if not bodiless:
                headers["Content-Length"] = str(len(content))
            headers.pop("Transfer-Encoding", None)
            headers.pop("Connection", None)
            if self.close_connection:
                headers["Connection"] = "close"
            self.send_response(code, message)
            for key, value in headers.items():
                self.send_header(key, value)
            # head and body in one write (http.server buffers the head until end_headers)
            self._headers_buffer.append(b"\r\n" + (b"" if bodiless else content))
            self.flush_headers()

    return KeepAliveRequestHandler


def install(endpoint: str) -> None:
    import moto.server
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: iter(modules)
    moto.server.MotoRequestHandler = handler_class()
