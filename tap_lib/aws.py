"""boto3 clients, one per service, shared by every caller of an operation."""
from __future__ import annotations

import threading
from typing import Any

import boto3


class Clients:
    """Callable `clients(service) -> client`. boto3 clients are thread-safe but creating them
    from one session is not, and creating them is slow: make each once, under a lock."""

    def __init__(self, session: boto3.session.Session, **client_kwargs: Any):
        self.session = session
        self.endpoint: str | None = client_kwargs.get("endpoint_url")
        self._kwargs = client_kwargs
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self.session.client(service, **self._kwargs)
            return self._clients[service]
