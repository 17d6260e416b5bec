"""Where offered Aurora engine versions come from: AWS itself, or the repo's catalog snapshot for
targets that cannot list them (moto answers describe_db_engine_versions with HTTP 500)."""
from __future__ import annotations

import json

from ..errors import TargetUnreachable
from ..project import PACKAGE_DIR

CATALOG = PACKAGE_DIR / "data" / "engine_versions.json"


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def catalog_engine_versions(region: str, engine: str) -> tuple[list[str], str]:
    """Versions from the repo's catalog snapshot."""
    data = json.loads(CATALOG.read_text())
    versions = data["engines"].get(engine, {}).get(region)
    if versions is None:
        raise LookupError(f"the catalog {CATALOG.name} has no {engine} entry for {region}; "
                          f"refresh it with: {data['refresh']}")
    return list(versions), f"catalog {CATALOG.name} as of {data['as_of']}"


def aws_engine_versions(region: str, engine: str) -> tuple[list[str], str]:
    """Versions AWS offers in `region` now (read-only: describe_db_engine_versions)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        pages = boto3.client("rds", region_name=region).get_paginator(
            "describe_db_engine_versions").paginate(Engine=engine)
        versions = {v["EngineVersion"] for page in pages for v in page["DBEngineVersions"]}
    except (BotoCoreError, ClientError) as exc:
        raise TargetUnreachable(f"cannot list {engine} versions in {region}: {exc}") from None
    return sorted(versions, key=version_key), f"describe_db_engine_versions in {region}"
