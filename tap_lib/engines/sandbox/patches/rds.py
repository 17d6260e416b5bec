"""RDS answers as the RDS API Reference and User Guide have them for Aurora PostgreSQL.

- The RDS-managed master secret (ManageMasterUserPassword, "Password management with Amazon
  RDS and Secrets Manager") holds {"username": <the cluster's MasterUsername>, "password":
  <a random password>}; moto stores the constant admin / P@55w0rd! for every cluster.
- An instance endpoint is `<instance id>.<hash>.<region>.rds.amazonaws.com`, the same hash as
  its cluster's `<cluster id>.cluster-<hash>.…` (the hash is the account's in the region);
  moto writes the placeholder `aaaaaaaaaa`.
- A cluster created without a parameter group gets its engine family's default,
  `default.aurora-postgresql<major>` (moto: `default.aurora8.0`, a family that does not exist).
- DescribeDBClusters' StorageType is `aurora` (Aurora Standard) unless one was asked for;
  moto reports gp2, a storage type of RDS instances.
- DescribeDBEngineVersions answers from tap's engine-version catalog
  (tap_lib/data/engine_versions.json); moto has no such action (HTTP 500).
"""
from __future__ import annotations

import hashlib
import json
import secrets
import string

# Secrets Manager's GetRandomPassword alphabet without what RDS refuses in a master password
# ('/', '@', '"', space) and what a pgpass line escapes (':' and '\').
PASSWORD_ALPHABET = string.ascii_letters + string.digits + "!#$%&()*+,-.;<=>?[]^_`{|}~"
PASSWORD_LENGTH = 28


def install(endpoint: str) -> None:
    from moto.rds import models, responses

    models.MasterUserSecret._generate_secret_string = _master_secret_string
    models.DBInstance.address = property(_instance_address)
    original_init = models.DBCluster.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        _aurora_defaults(self, kwargs)

    models.DBCluster.__init__ = __init__
    responses.RDSResponse.describe_db_engine_versions = _describe_db_engine_versions


def random_password() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def _master_secret_string(self) -> str:
    return json.dumps({"username": self.resource.master_username,
                       "password": random_password()})


def region_hash(account_id: str, region: str) -> str:
    """The 12-character label AWS puts in every RDS endpoint of an account in a region."""
    return hashlib.sha256(f"{account_id}:{region}".encode()).hexdigest()[:12]


def _instance_address(self) -> str:
    cluster = getattr(self, "cluster", None)
    label = cluster.url_identifier if cluster is not None else region_hash(
        self.account_id, self.region)
    return f"{self.db_instance_identifier}.{label}.{self.region}.rds.amazonaws.com"


def _aurora_defaults(cluster, kwargs: dict) -> None:
    if not str(cluster.engine or "").startswith("aurora"):
        return
    if not kwargs.get("db_cluster_parameter_group_name"):
        major = str(cluster.engine_version or "").split(".")[0]
        family = (f"aurora-postgresql{major}" if cluster.engine == "aurora-postgresql"
                  else f"aurora-mysql{'8.0' if major.startswith('8') else '5.7'}")
        cluster.parameter_group = f"default.{family}"
    if kwargs.get("storage_type") is None:
        cluster.storage_type = "aurora"


def engine_versions(region: str, engine: str | None, version: str | None) -> list[dict]:
    """DBEngineVersion entries for the catalog's versions of `engine` (all when None)."""
    from ...versions import CATALOG, version_key

    catalog = json.loads(CATALOG.read_text())["engines"]
    found = []
    for name, regions in sorted(catalog.items()):
        if engine and name != engine:
            continue
        for number in sorted(regions.get(region, []), key=version_key):
            if version and number != version and not number.startswith(f"{version}."):
                continue
            major = number.split(".")[0]
            family = f"{name}{major}" if name == "aurora-postgresql" else name
            found.append({
                "Engine": name, "EngineVersion": number, "MajorEngineVersion": major,
                "DBParameterGroupFamily": family,
                "DBEngineDescription": "Aurora (PostgreSQL)" if name == "aurora-postgresql"
                else name,
                "DBEngineVersionDescription": f"Aurora PostgreSQL (Compatible with "
                                              f"PostgreSQL {number})",
                "Status": "available", "SupportsReadReplica": True,
                "SupportsLogExportsToCloudwatchLogs": True,
                "ExportableLogTypes": ["postgresql"],
                "SupportedEngineModes": ["provisioned"],
            })
    return found


def _describe_db_engine_versions(self):
    from moto.core.responses import ActionResult

    found = engine_versions(self.region, self.params.get("Engine"),
                            self.params.get("EngineVersion"))
    if str(self.params.get("DefaultOnly")).lower() == "true" and found:
        found = found[-1:]
    return ActionResult({"DBEngineVersions": found})
