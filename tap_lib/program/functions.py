"""The application credentials secret, its rotation Lambda, and the payment Lambda.

Rotation is wired to a function this repo ships (tap_lib/lambdas/rotation), with the
`lambda.Permission` Secrets Manager needs to invoke it - never a placeholder ARN.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from ..config import Settings
from ..naming import PhysicalNames
from .database import Database
from .network import Network
from .packaging import function_archive
from .policies import (VPC_ENI_ACTIONS, assume_role_policy, deployer_principal, policy_document,
                       secret_policy)

RUNTIME = "python3.12"
HANDLER = "handler.lambda_handler"
# The payment DLQ keeps failed asynchronous events as long as SQS allows (14 days), so a
# failure found after a long weekend can still be replayed.
DLQ_RETENTION_S = 14 * 24 * 3600


@dataclass
class Functions:
    secret: aws.secretsmanager.Secret
    payment: aws.lambda_.Function
    rotation: aws.lambda_.Function
    dead_letter_queue: aws.sqs.Queue | None = None


def _logs(arn: pulumi.Output) -> pulumi.Output:
    return arn.apply(lambda a: [a, f"{a}:*"])


def build_functions(s: Settings, names: PhysicalNames, net: Network, db: Database,
                    bucket: aws.s3.Bucket, kms_key: aws.kms.Key, account: str,
                    opts: pulumi.ResourceOptions) -> Functions:
    tags = s.all_tags()
    sfx = s.suffix
    master_secret_arn = db.cluster.master_user_secrets.apply(
        lambda secrets: secrets[0].secret_arn if secrets else "")

    secret = aws.secretsmanager.Secret(
        f"db-app-credentials-{sfx}", name=names.db_secret, kms_key_id=kms_key.arn,
        description="Payment application database user; password set by rotation",
        recovery_window_in_days=7 if s.db.deletion_protection else 0, tags=tags, opts=opts)
    # Connection facts as the functions read them (Lambda variables are strings). They update
    # the functions in place when the cluster changes; the secret holds the credentials.
    connection = {"DB_HOST": db.cluster.endpoint, "DB_PORT": db.cluster.port.apply(str),
                  "DB_NAME": s.db.database_name}
    # Only the first version comes from here, without a password: the first rotation creates
    # it, so none passes through tap. Later values are the rotation's to write (from its
    # environment, below), so a change here must never put a new, password-less version over
    # the rotated one: the provider would replace it (secretString is ForceNew).
    secret_version = aws.secretsmanager.SecretVersion(
        f"db-app-credentials-initial-{sfx}", secret_id=secret.id,
        secret_string=pulumi.Output.json_dumps({
            "engine": "postgres", "host": db.cluster.endpoint, "port": db.cluster.port,
            "dbname": s.db.database_name, "username": s.db.app_username,
            "masterarn": master_secret_arn}),
        opts=pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(ignore_changes=["secret_string"])))

    vpc_config = {"subnet_ids": [sn.id for sn in net.private_subnets],
                  "security_group_ids": [db.lambda_security_group.id]}
    payment_logs = aws.cloudwatch.LogGroup(
        f"payment-logs-{sfx}", name=names.payment_log_group,
        retention_in_days=s.function.log_retention_days, kms_key_id=kms_key.arn, tags=tags,
        opts=opts)
    rotation_logs = aws.cloudwatch.LogGroup(
        f"rotation-logs-{sfx}", name=names.rotation_log_group,
        retention_in_days=s.function.log_retention_days, kms_key_id=kms_key.arn, tags=tags,
        opts=opts)

    payment_role = aws.iam.Role(f"payment-role-{sfx}", name=names.payment_role,
                                assume_role_policy=assume_role_policy("lambda.amazonaws.com",
                                                                      account),
                                tags=tags, opts=opts)
    aws.iam.RolePolicy(
        f"payment-policy-{sfx}", role=payment_role.id,
        policy=pulumi.Output.all(secret.arn, kms_key.arn, bucket.arn,
                                 _logs(payment_logs.arn)).apply(
            lambda a: policy_document(
                (["secretsmanager:GetSecretValue"], [a[0]]),
                (["kms:Decrypt", "kms:GenerateDataKey"], [a[1]]),
                (["s3:PutObject"], [f"{a[2]}/*"]),
                (["logs:CreateLogStream", "logs:PutLogEvents"], a[3]),
                (VPC_ENI_ACTIONS, ["*"]))),
        opts=opts)
    rotation_role = aws.iam.Role(f"rotation-role-{sfx}", name=names.rotation_role,
                                 assume_role_policy=assume_role_policy("lambda.amazonaws.com",
                                                                       account),
                                 tags=tags, opts=opts)
    aws.iam.RolePolicy(
        f"rotation-policy-{sfx}", role=rotation_role.id,
        policy=pulumi.Output.all(secret.arn, master_secret_arn, kms_key.arn,
                                 _logs(rotation_logs.arn)).apply(
            lambda a: policy_document(
                (["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
                  "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"],
                 [a[0]]),
                (["secretsmanager:GetSecretValue"], [a[1]]),
                # GetRandomPassword has no resource to scope to.
                (["secretsmanager:GetRandomPassword"], ["*"]),
                (["kms:Decrypt", "kms:GenerateDataKey"], [a[2]]),
                (["logs:CreateLogStream", "logs:PutLogEvents"], a[3]),
                (VPC_ENI_ACTIONS, ["*"]))),
        opts=opts)

    # awslambda_function_no_dead_letter_queue: asynchronous invokes that fail every retry
    # land here instead of vanishing (the functions' shared DLQ); SQS.1: encrypted with the
    # stack's key.
    dlq = aws.sqs.Queue(
        f"payment-dlq-{sfx}", name=names.payment_dlq, kms_master_key_id=kms_key.arn,
        kms_data_key_reuse_period_seconds=300, message_retention_seconds=DLQ_RETENTION_S,
        tags=tags, opts=opts)
    for what, role in (("payment", payment_role), ("rotation", rotation_role)):
        aws.iam.RolePolicy(
            f"{what}-dlq-policy-{sfx}", role=role.id,
            policy=dlq.arn.apply(lambda a: policy_document((["sqs:SendMessage"], [a]))),
            opts=opts)
    # secretsmanager_has_restrictive_resource_policy: nobody but the stack's functions and
    # its deployers (the params file's deployer_roles and whoever deploys now) may use the
    # application secret, whatever their IAM policies allow.
    deployer = aws.get_caller_identity(opts=pulumi.InvokeOptions(parent=opts.parent))
    deployers = [*s.secrets.deployer_roles, deployer_principal(deployer.arn)]
    aws.secretsmanager.SecretPolicy(
        f"db-app-credentials-policy-{sfx}", secret_arn=secret.arn, block_public_policy=True,
        policy=pulumi.Output.all(secret.arn, payment_role.arn, rotation_role.arn).apply(
            lambda a: secret_policy(a[0], [a[1], a[2], *deployers])),
        opts=opts)

    # Environment variables encrypted with the stack's key, not Lambda's AWS-managed one.
    common = dict(runtime=RUNTIME, handler=HANDLER, vpc_config=vpc_config, tags=tags,
                  kms_key_arn=kms_key.arn)
    payment = aws.lambda_.Function(
        f"payment-fn-{sfx}", name=names.payment_function, role=payment_role.arn,
        code=function_archive("payment"), memory_size=s.function.memory_mb,
        timeout=s.function.timeout_s,
        environment={"variables": {"DB_SECRET_ARN": secret.arn, "BUCKET_NAME": bucket.bucket,
                                   **connection}},
        dead_letter_config={"target_arn": dlq.arn},
        **common,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[payment_logs])))
    rotation = aws.lambda_.Function(
        f"rotation-fn-{sfx}", name=names.rotation_function, role=rotation_role.arn,
        code=function_archive("rotation"), memory_size=256, timeout=60,
        # What each new version of the secret describes: the rotation writes these into it.
        environment={"variables": {**connection, "DB_USERNAME": s.db.app_username,
                                   "MASTER_SECRET_ARN": master_secret_arn}},
        # Prowler checks every function; Secrets Manager invokes rotation synchronously, so
        # this queue only ever holds events of a stray asynchronous invoke.
        dead_letter_config={"target_arn": dlq.arn},
        **common,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[rotation_logs])))

    if s.secrets.rotation_enabled:
        permission = aws.lambda_.Permission(
            f"rotation-invoke-{sfx}", action="lambda:InvokeFunction", function=rotation.name,
            principal="secretsmanager.amazonaws.com", source_arn=secret.arn, opts=opts)
        # The first rotation creates the application role in the database and writes the user
        # into the secret; the next scheduled one may be weeks away. So the schedule is replaced
        # (and, rotate_immediately by default, rotates on creation) whenever what that rotation
        # established is gone or renamed: a new cluster (its resource id changes on every
        # replacement, e.g. a new database_name: an empty database without the role), another
        # database, another user. Delete before replace: the old schedule's delete is
        # CancelRotateSecret on the same secret, which would disable the new one after it.
        established = {"cluster": db.cluster.cluster_resource_id,
                       "database": s.db.database_name, "username": s.db.app_username}
        aws.secretsmanager.SecretRotation(
            f"db-app-credentials-rotation-{sfx}", secret_id=secret.id,
            rotation_lambda_arn=rotation.arn,
            rotation_rules={"automatically_after_days": s.secrets.rotation_days},
            opts=pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(depends_on=[permission, secret_version],
                                             replacement_trigger=established,
                                             delete_before_replace=True)))
    return Functions(secret, payment, rotation, dlq)
