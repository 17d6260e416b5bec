"""The meters tap prices: what AWS bills for each resource type the program declares.

One source of truth for how a meter is found in AWS's Price List (service code, usage type,
unit, attributes): the catalog (catalog.json) stores one price per meter and region, and the
refresher (refresh.py) uses these definitions to look each price up with the Pricing API.
Prices are kept in the unit the Price List uses (per hour, per GB, per request), so a refreshed
price is stored exactly as AWS publishes it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

HOURS_PER_MONTH = 730

# Aurora PostgreSQL instance classes the catalog covers: every class an environment file uses
# (tests/test_cost.py checks params/*.yaml against this) plus the common Graviton sizes.
AURORA_CLASSES = ("db.t4g.medium", "db.t4g.large",
                  "db.r6g.large", "db.r6g.xlarge", "db.r6g.2xlarge",
                  "db.r7g.large", "db.r7g.xlarge", "db.r7g.2xlarge")

# The Price List prefixes usage types with a region code (none in us-east-1).
USAGE_PREFIX = {"us-east-1": "", "us-east-2": "USE2-", "us-west-2": "USW2-",
                "eu-west-1": "EU-", "eu-west-2": "EUW2-", "eu-central-1": "EUC1-"}


@dataclass(frozen=True)
class Meter:
    """One billed dimension. `usagetype` is a template: {p} is the region's usage-type prefix,
    {region} the region code, {cls} an instance class."""

    id: str
    service: str            # Price List service code
    usagetype: str
    unit: str               # the Price List's unit for the price
    description: str
    attributes: dict[str, str] = field(default_factory=dict)  # further exact-match filters

    def usage_type(self, region: str, cls: str = "") -> str:
        return self.usagetype.format(p=USAGE_PREFIX.get(region, ""), region=region,
                                     cls=usage_class(cls))


def usage_class(cls: str) -> str:
    """An instance class as the Price List's usage types spell it: "xlarge" is cut to "xl"
    (EUW2-InstanceUsage:db.r6g.xl, InstanceUsage:db.r6g.2xl), "large" and "medium" are not.
    Without this the refresher would find nothing for any xlarge class."""
    return re.sub(r"xlarge$", "xl", cls)


METERS: dict[str, Meter] = {m.id: m for m in (
    Meter("nat_gateway_hour", "AmazonEC2", "{p}NatGateway-Hours", "Hrs",
          "NAT gateway, per hour provisioned"),
    Meter("nat_gateway_gb", "AmazonEC2", "{p}NatGateway-Bytes", "GB",
          "NAT gateway, per GB processed"),
    Meter("public_ipv4_hour", "AmazonVPC", "{p}PublicIPv4:InUseAddress", "Hrs",
          "public IPv4 address in use, per hour (charged since 2024-02-01)"),
    Meter("aurora_instance_hour", "AmazonRDS", "{p}InstanceUsage:{cls}", "Hrs",
          "Aurora PostgreSQL instance (Aurora Standard), per hour",
          {"databaseEngine": "Aurora PostgreSQL"}),
    Meter("aurora_storage_gb_month", "AmazonRDS", "{p}Aurora:StorageUsage", "GB-Mo",
          "Aurora storage (Aurora Standard), per GB-month"),
    Meter("aurora_io_request", "AmazonRDS", "{p}Aurora:StorageIOUsage", "IOs",
          "Aurora storage I/O (Aurora Standard), per request"),
    Meter("kms_key_month", "awskms", "{region}-KMS-Keys", "Keys",
          "KMS customer managed key, per month"),
    Meter("kms_request", "awskms", "{region}-KMS-Requests", "Requests",
          "KMS API request"),
    Meter("secret_month", "AWSSecretsManager", "{p}AWSSecretsManager-Secrets", "Secrets",
          "Secrets Manager secret, per month"),
    Meter("secrets_api_request", "AWSSecretsManager", "{p}AWSSecretsManagerAPIRequest",
          "API Requests", "Secrets Manager API call"),
    Meter("logs_ingest_gb", "AmazonCloudWatch", "{p}DataProcessing-Bytes", "GB",
          "CloudWatch Logs ingestion (Standard class), per GB"),
    Meter("logs_vended_ingest_gb", "AmazonCloudWatch", "{p}VendedLog-Bytes", "GB",
          "CloudWatch Logs vended-log ingestion (VPC flow logs), per GB, first tier"),
    Meter("logs_storage_gb_month", "AmazonCloudWatch", "{p}TimedStorage-ByteHrs", "GB-Mo",
          "CloudWatch Logs archived storage, per GB-month"),
    Meter("lambda_request", "AWSLambda", "{p}Request", "Requests",
          "Lambda request (x86_64)"),
    Meter("lambda_gb_second", "AWSLambda", "{p}Lambda-GB-Second", "Lambda-GB-Second",
          "Lambda duration (x86_64), per GB-second, first tier"),
    Meter("s3_standard_gb_month", "AmazonS3", "{p}TimedStorage-ByteHrs", "GB-Mo",
          "S3 Standard storage, per GB-month, first 50 TB"),
    Meter("s3_standard_ia_gb_month", "AmazonS3", "{p}TimedStorage-SIA-ByteHrs", "GB-Mo",
          "S3 Standard-IA storage, per GB-month"),
    Meter("s3_put_request", "AmazonS3", "{p}Requests-Tier1", "Requests",
          "S3 PUT, COPY, POST, LIST request"),
    Meter("s3_get_request", "AmazonS3", "{p}Requests-Tier2", "Requests",
          "S3 GET and other requests"),
    # issue 19's additions: interface endpoints, AWS Backup storage, the DLQ's requests
    # (enhanced monitoring's RDSOSMetrics are CloudWatch Logs ingestion: logs_ingest_gb)
    Meter("vpc_endpoint_hour", "AmazonVPC", "{p}VpcEndpoint-Hours", "Hrs",
          "VPC interface endpoint, per endpoint network interface (AZ) per hour"),
    Meter("vpc_endpoint_gb", "AmazonVPC", "{p}VpcEndpoint-Bytes", "GB",
          "VPC interface endpoint data processed, per GB, first tier"),
    # Aurora is not a resource type under "full AWS Backup management": AWS Backup's Aurora
    # recovery points are cluster snapshots, billed by RDS as Aurora backup storage (the
    # AWSBackup offer has no warm-storage usage type for Aurora in a standard vault).
    Meter("backup_aurora_gb_month", "AmazonRDS", "{p}Aurora:BackupUsage", "GB-Mo",
          "Aurora backup storage beyond the free allocation (AWS Backup's Aurora recovery "
          "points included), per GB-month"),
    Meter("sqs_request", "AWSQueueService", "{p}Requests-Tier1", "Requests",
          "SQS standard queue request, first tier"),
)}


def meter_key(meter: str, cls: str = "") -> str:
    """The catalog key of a meter: the meter id, or id:class for per-class meters."""
    return f"{meter}:{cls}" if cls else meter


def catalog_keys() -> list[tuple[str, str]]:
    """Every (meter, class) the catalog should price in each region."""
    keys = []
    for meter in METERS.values():
        if "{cls}" in meter.usagetype:
            keys += [(meter.id, cls) for cls in AURORA_CLASSES]
        else:
            keys.append((meter.id, ""))
    return keys
