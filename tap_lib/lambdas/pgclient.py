"""How both functions reach PostgreSQL: TLS as sslmode=verify-full, over a socket that sends at
once. Packaged at each function's archive root beside handler.py (program/packaging.py); only
the standard library and pg8000, like the handlers.

pg8000 leaves Nagle's algorithm on, and its login writes twice before it reads: the second small
write then waits for the server's delayed ACK, ~40 ms of every login (6 ms with TCP_NODELAY to a
local server). Rotation logs in four times, a cold payment once.
"""
from __future__ import annotations

import os
import socket
import ssl

import pg8000.native

CA_BUNDLE = "rds-global-bundle.pem"


class NoCaBundle(Exception):
    """The CA bundle to verify the database with is missing."""


def tls_context(ca_file: str, beside: str) -> ssl.SSLContext:
    """A client context that verifies the chain against `ca_file` (a relative path is taken in
    the directory `beside`, the handler's) and the host name; without one, the RDS bundle beside
    the handler (as packaged) or one directory up (tap_lib/lambdas, in the source tree)."""
    candidates = ([os.path.join(beside, ca_file)] if ca_file else
                  [os.path.join(beside, CA_BUNDLE),
                   os.path.join(os.path.dirname(beside), CA_BUNDLE)])
    found = next((path for path in candidates if os.path.isfile(path)), None)
    if found is None:
        raise NoCaBundle(f"no CA bundle to verify the database with: {candidates[0]} does not "
                         "exist (set DB_CA_FILE, or package the function with its RDS CA bundle)")
    context = ssl.create_default_context(cafile=found)  # CERT_REQUIRED, check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def open_socket(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection with TCP_NODELAY; a failure is pg8000's own InterfaceError, as when
    pg8000 connects itself."""
    try:
        sock = socket.create_connection((host, port), timeout)
    except OSError as exc:
        raise pg8000.native.InterfaceError(
            f"Can't create a connection to host {host} and port {port} "
            f"(timeout is {timeout} and source_address is None).") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def connect(user: str, password: str, host: str, port: int, database: str, *,
            timeout: float, ssl_context: ssl.SSLContext,
            application_name: str | None = None) -> pg8000.native.Connection:
    """pg8000's connection over open_socket; `host` still names the server TLS verifies."""
    sock = open_socket(host, port, timeout)
    try:
        return pg8000.native.Connection(
            user, password=password, host=host, port=port, database=database, timeout=timeout,
            application_name=application_name, ssl_context=ssl_context, sock=sock)
    except BaseException:
        sock.close()
        raise
