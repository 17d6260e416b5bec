"""Aurora PostgreSQL in the private subnets, reachable only from the payment Lambda's SG.

The master password is managed by RDS (`manage_master_user_password`): it never passes through
tap. The application user's password lives in its own secret, created by the first rotation.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from ..config import Settings
from ..naming import PhysicalNames
from .network import Network
from .policies import assume_role_policy

MASTER_USERNAME = "tapadmin"
NO_EXTENDED_SUPPORT = "open-source-rds-extended-support-disabled"
ENGINE = "aurora-postgresql"
# AWS's managed policy for the enhanced monitoring agent (RDS.6): it writes RDSOSMetrics.
MONITORING_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"


def parameter_group_family(engine_version: str) -> str:
    """aurora-postgresql<major> from db.engine_version (one source of truth: '15.6' ->
    aurora-postgresql15), so an engine upgrade cannot leave the cluster on a group of the old
    family (RDS refuses a group of another major)."""
    return f"{ENGINE}{engine_version.split('.')[0]}"


@dataclass
class Database:
    cluster: aws.rds.Cluster
    instances: list[aws.rds.ClusterInstance]
    security_group: aws.ec2.SecurityGroup
    lambda_security_group: aws.ec2.SecurityGroup
    parameter_group: aws.rds.ClusterParameterGroup | None = None
    monitoring_role: aws.iam.Role | None = None


def build_database(s: Settings, names: PhysicalNames, net: Network, kms_key: aws.kms.Key,
                   opts: pulumi.ResourceOptions, account: str = "") -> Database:
    tags = s.all_tags()
    sfx = s.suffix
    lambda_sg = aws.ec2.SecurityGroup(
        f"lambda-sg-{sfx}", name=names.lambda_security_group, vpc_id=net.vpc.id,
        description="Payment and rotation Lambdas", tags=tags, opts=opts)
    db_sg = aws.ec2.SecurityGroup(
        f"db-sg-{sfx}", name=names.db_security_group, vpc_id=net.vpc.id,
        description="Aurora PostgreSQL: only from the Lambda security group", tags=tags,
        opts=opts)
    aws.vpc.SecurityGroupIngressRule(
        f"db-from-lambda-{sfx}", security_group_id=db_sg.id,
        referenced_security_group_id=lambda_sg.id, ip_protocol="tcp",
        from_port=s.db.port, to_port=s.db.port, description="PostgreSQL from Lambdas",
        opts=opts)
    aws.vpc.SecurityGroupEgressRule(
        f"lambda-to-db-{sfx}", security_group_id=lambda_sg.id,
        referenced_security_group_id=db_sg.id, ip_protocol="tcp",
        from_port=s.db.port, to_port=s.db.port, description="PostgreSQL", opts=opts)
    aws.vpc.SecurityGroupEgressRule(
        f"lambda-to-https-{sfx}", security_group_id=lambda_sg.id, cidr_ipv4="0.0.0.0/0",
        ip_protocol="tcp", from_port=443, to_port=443,
        description="AWS APIs (Secrets Manager, S3) through NAT", opts=opts)

    subnet_group = aws.rds.SubnetGroup(
        f"db-subnet-group-{sfx}", name=names.db_subnet_group,
        subnet_ids=[sn.id for sn in net.private_subnets], tags=tags, opts=opts)
    # RDS.38: the server refuses connections without TLS (rds.force_ssl=1); a static parameter
    # on Aurora PostgreSQL is applied at the next reboot, so pending-reboot is what RDS accepts.
    # The engine's major is in the name (naming.py): a major upgrade creates the new family's
    # group beside the old one, which the cluster uses until it moves, then deletes the old.
    tls_params = aws.rds.ClusterParameterGroup(
        f"aurora-tls-params-{sfx}", name=names.db_cluster_parameter_group,
        family=parameter_group_family(s.db.engine_version),
        description="Aurora PostgreSQL: TLS required (rds.force_ssl=1)",
        parameters=[{"name": "rds.force_ssl", "value": "1", "apply_method": "pending-reboot"}],
        tags=tags, opts=opts)
    cluster = aws.rds.Cluster(
        f"aurora-cluster-{sfx}",
        db_cluster_parameter_group_name=tls_params.name,
        cluster_identifier=names.rds_cluster,
        engine=ENGINE,
        engine_version=s.db.engine_version,
        # rds_instance_extended_support: RDS enrols a cluster created without a choice in paid
        # Extended Support once its major leaves standard support; the stack upgrades instead
        engine_lifecycle_support=NO_EXTENDED_SUPPORT,
        database_name=s.db.database_name,
        port=s.db.port,
        master_username=MASTER_USERNAME,
        manage_master_user_password=True,
        master_user_secret_kms_key_id=kms_key.key_id,
        db_subnet_group_name=subnet_group.name,
        vpc_security_group_ids=[db_sg.id],
        storage_encrypted=True,
        kms_key_id=kms_key.arn,
        backup_retention_period=s.db.backup_retention_days,
        preferred_backup_window="02:00-03:00",
        deletion_protection=s.db.deletion_protection,
        skip_final_snapshot=not s.db.deletion_protection,
        final_snapshot_identifier=(f"{names.rds_cluster}-final"
                                   if s.db.deletion_protection else None),
        copy_tags_to_snapshot=True,
        # RDS.9/RDS.37: the PostgreSQL log in CloudWatch Logs; RDS.10/RDS.12: IAM auth on
        enabled_cloudwatch_logs_exports=["postgresql"],
        iam_database_authentication_enabled=True,
        tags=tags,
        opts=opts)
    monitoring = _monitoring(s, names, account, tags, opts)
    zones = s.availability_zones
    instances = [
        aws.rds.ClusterInstance(
            f"aurora-instance-{i}-{sfx}", identifier=identifier,
            cluster_identifier=cluster.id, instance_class=s.db.instance_class,
            engine=ENGINE, engine_version=s.db.engine_version,
            # RDS.15: writer and readers spread over the environment's zones, round robin
            availability_zone=zones[i % len(zones)],
            db_subnet_group_name=subnet_group.name, publicly_accessible=False,
            # RDS.6: OS metrics every monitoring_interval_s seconds (0: off, dev's exception)
            monitoring_interval=s.db.monitoring_interval_s,
            monitoring_role_arn=monitoring.arn if s.db.monitoring_interval_s else None,
            tags=tags, opts=opts)
        for i, identifier in enumerate(names.rds_instances)]
    return Database(cluster, instances, db_sg, lambda_sg, tls_params, monitoring)


def _monitoring(s: Settings, names: PhysicalNames, account: str, tags: dict,
                opts: pulumi.ResourceOptions) -> aws.iam.Role:
    """The role the enhanced monitoring agent assumes, trusted only on behalf of this account
    (confused deputy). Declared even where monitoring is off (dev): it costs nothing, and
    turning monitoring on is then one setting, not a new role on the instances' critical path."""
    role = aws.iam.Role(f"rds-monitoring-role-{s.suffix}", name=names.monitoring_role,
                        assume_role_policy=assume_role_policy("monitoring.rds.amazonaws.com",
                                                              account),
                        tags=tags, opts=opts)
    aws.iam.RolePolicyAttachment(f"rds-monitoring-policy-{s.suffix}", role=role.name,
                                 policy_arn=MONITORING_POLICY_ARN, opts=opts)
    return role
