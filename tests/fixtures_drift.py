"""Drift injected behind tap's back, the way a console edit or a script would: shared by the
verify/inspect tests (is it caught?) and the repair tests (does it converge?)."""
from __future__ import annotations

import json


def inject_drift(engine) -> str:
    """The five drifts of issue 4 (bucket versioning suspended, public access block removed, the
    database security group opened to the world, the payment function pointed at another
    secret, rotation cancelled), plus the database password copied into a function variable
    whose name does not give it away. Returns that password."""
    c, out = engine.clients(), engine.outputs()
    bucket, function = out["s3_bucket_name"], out["lambda_function_name"]
    c("s3").put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    c("s3").delete_public_access_block(Bucket=bucket)
    cluster = c("rds").describe_db_clusters(DBClusterIdentifier=out["rds_cluster_id"])
    db_sg = cluster["DBClusters"][0]["VpcSecurityGroups"][0]["VpcSecurityGroupId"]
    c("ec2").authorize_security_group_ingress(GroupId=db_sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
        "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    password = json.loads(c("secretsmanager").get_secret_value(
        SecretId=out["db_secret_arn"])["SecretString"])["password"]
    variables = c("lambda").get_function_configuration(FunctionName=function)["Environment"]
    c("lambda").update_function_configuration(FunctionName=function, Environment={"Variables": {
        **variables["Variables"], "DB_CONN": password,
        "DB_SECRET_ARN": out["db_secret_arn"].rsplit(":", 1)[0] + ":someone-else"}})
    c("secretsmanager").cancel_rotate_secret(SecretId=out["db_secret_arn"])
    return password
