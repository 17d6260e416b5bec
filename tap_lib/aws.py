"""boto3 helpers shared by the sandbox handlers and the operations."""
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


def ip_permission(rule: dict) -> dict:
    """A security group rule as the program declares it (aws.vpc.SecurityGroup*Rule inputs) in
    the EC2 API's IpPermission shape."""
    perm: dict[str, Any] = {"IpProtocol": rule["ipProtocol"]}
    if rule.get("fromPort") is not None:
        perm.update(FromPort=int(rule["fromPort"]), ToPort=int(rule["toPort"]))
    if rule.get("referencedSecurityGroupId"):
        perm["UserIdGroupPairs"] = [{"GroupId": rule["referencedSecurityGroupId"]}]
    if rule.get("cidrIpv4"):
        perm["IpRanges"] = [{"CidrIp": rule["cidrIpv4"]}]
    if rule.get("cidrIpv6"):
        perm["Ipv6Ranges"] = [{"CidrIpv6": rule["cidrIpv6"]}]
    return perm
