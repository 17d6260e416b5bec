"""The TapStack component: the whole payment stack of one environment."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from ..config import Settings
from ..naming import PhysicalNames
from .backup import build_backup
from .database import build_database
from .functions import build_functions
from .network import build_endpoints, build_network
from .policies import key_policy
from .storage import build_access_log_bucket, build_bucket

COMPONENT_TYPE = "tap:index:TapStack"


@dataclass(frozen=True)
class TapStackArgs:
    settings: Settings
    names: PhysicalNames
    account: str           # for trust and key policies scoped to this account


class TapStack(pulumi.ComponentResource):
    def __init__(self, name: str, args: TapStackArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        s, names, account = args.settings, args.names, args.account
        child = pulumi.ResourceOptions(parent=self)
        key = aws.kms.Key(f"kms-key-{s.suffix}", description=f"TapStack {s.suffix} data at rest",
                          enable_key_rotation=True, policy=key_policy(account, s.region),
                          deletion_window_in_days=30 if s.db.deletion_protection else 7,
                          tags=s.all_tags(), opts=child)
        aws.kms.Alias(f"kms-alias-{s.suffix}", name=names.kms_alias, target_key_id=key.key_id,
                      opts=child)
        net = build_network(s, names, key, account, child)
        db = build_database(s, names, net, key, child, account)
        build_endpoints(s, names, net, db.lambda_security_group, child)
        log_bucket = build_access_log_bucket(s, names, child)
        bucket = build_bucket(s, names, key, log_bucket, account, child)
        fns = build_functions(s, names, net, db, bucket, key, account, child)
        build_backup(s, names, db, key, account, child, log_bucket)

        self.outputs = {
            "vpc_id": net.vpc.id,
            "public_subnet_ids": [sn.id for sn in net.public_subnets],
            "private_subnet_ids": [sn.id for sn in net.private_subnets],
            "nat_gateway_ids": [n.id for n in net.nat_gateways],
            "rds_cluster_id": db.cluster.cluster_identifier,
            "rds_cluster_endpoint": db.cluster.endpoint,
            "rds_cluster_port": db.cluster.port,
            "db_secret_arn": fns.secret.arn,
            "lambda_function_name": fns.payment.name,
            "lambda_function_arn": fns.payment.arn,
            "rotation_function_name": fns.rotation.name,
            "s3_bucket_name": bucket.bucket,
            "s3_access_log_bucket_name": log_bucket.bucket,
            "lambda_security_group_id": db.lambda_security_group.id,
            "kms_key_arn": key.arn,
            "region": pulumi.Output.from_input(s.region),
        }
        self.register_outputs(self.outputs)
