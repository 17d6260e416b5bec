"""Aurora PostgreSQL: subnet group, cluster (with a real local PostgreSQL standing in for its
endpoint), instances."""
from __future__ import annotations

from .. import standin
from .base import Handler, handler, ignore_missing


@handler
class SubnetGroup(Handler):
    type = "aws:rds/subnetGroup:SubnetGroup"
    updatable = frozenset({"subnetIds", "description"})
    id_input = "name"

    def create(self, ctx, inputs):
        rds = ctx.client("rds")
        group = rds.create_db_subnet_group(
            DBSubnetGroupName=inputs["name"],
            DBSubnetGroupDescription=inputs.get("description") or "Managed by tap",
            SubnetIds=inputs["subnetIds"], Tags=ctx.tag_list(inputs.get("tags")))["DBSubnetGroup"]
        return inputs["name"], {**inputs, "id": inputs["name"], "arn": group["DBSubnetGroupArn"]}

    def update(self, ctx, id_, old, new):
        ctx.client("rds").modify_db_subnet_group(
            DBSubnetGroupName=id_, SubnetIds=new["subnetIds"],
            DBSubnetGroupDescription=new.get("description") or "Managed by tap")
        return {**old, **new}

    def read(self, ctx, id_, inputs):
        found = ignore_missing(ctx.client("rds").describe_db_subnet_groups,
                               DBSubnetGroupName=id_)
        if found is None:
            return None
        subnets = found["DBSubnetGroups"][0]["Subnets"]
        return {"name": id_, "subnetIds": sorted(s["SubnetIdentifier"] for s in subnets)}

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("rds").delete_db_subnet_group, DBSubnetGroupName=id_)


@handler
class Cluster(Handler):
    type = "aws:rds/cluster:Cluster"
    updatable = frozenset({"backupRetentionPeriod", "deletionProtection", "preferredBackupWindow",
                           "engineVersion", "copyTagsToSnapshot", "skipFinalSnapshot",
                           "finalSnapshotIdentifier", "vpcSecurityGroupIds"})
    ignored = Handler.ignored | {"skipFinalSnapshot", "finalSnapshotIdentifier"}
    id_input = "clusterIdentifier"

    def create(self, ctx, inputs):
        rds = ctx.client("rds")
        cluster = rds.create_db_cluster(
            DBClusterIdentifier=inputs["clusterIdentifier"], Engine=inputs["engine"],
            EngineVersion=inputs["engineVersion"], DatabaseName=inputs.get("databaseName"),
            Port=int(inputs.get("port") or 5432), MasterUsername=inputs["masterUsername"],
            ManageMasterUserPassword=bool(inputs.get("manageMasterUserPassword")),
            MasterUserSecretKmsKeyId=inputs.get("masterUserSecretKmsKeyId"),
            DBSubnetGroupName=inputs["dbSubnetGroupName"],
            VpcSecurityGroupIds=inputs.get("vpcSecurityGroupIds", []),
            StorageEncrypted=bool(inputs.get("storageEncrypted")),
            KmsKeyId=inputs.get("kmsKeyId"),
            BackupRetentionPeriod=int(inputs.get("backupRetentionPeriod") or 1),
            PreferredBackupWindow=inputs.get("preferredBackupWindow"),
            DeletionProtection=bool(inputs.get("deletionProtection")),
            CopyTagsToSnapshot=bool(inputs.get("copyTagsToSnapshot")),
            Tags=ctx.tag_list(inputs.get("tags")))["DBCluster"]
        return cluster["DBClusterIdentifier"], self._outputs(ctx, cluster, inputs)

    def _outputs(self, ctx, cluster: dict, inputs: dict) -> dict:
        secret_arn = (cluster.get("MasterUserSecret") or {}).get("SecretArn", "")
        # The sandbox cannot run Aurora; a real PostgreSQL answers at the endpoint instead.
        endpoint = standin.ensure(ctx, cluster["DBClusterIdentifier"], secret_arn,
                                  inputs.get("databaseName") or "postgres")
        return {**inputs, "id": cluster["DBClusterIdentifier"], "arn": cluster["DBClusterArn"],
                "endpoint": endpoint.host, "port": endpoint.port,
                "readerEndpoint": endpoint.host, "clusterResourceId": cluster.get("DbClusterResourceId"),
                "masterUserSecrets": [{"secretArn": secret_arn, "secretStatus": "active",
                                       "kmsKeyId": inputs.get("masterUserSecretKmsKeyId") or ""}]}

    def update(self, ctx, id_, old, new):
        rds = ctx.client("rds")
        cluster = rds.modify_db_cluster(
            DBClusterIdentifier=id_, ApplyImmediately=True,
            BackupRetentionPeriod=int(new.get("backupRetentionPeriod") or 1),
            DeletionProtection=bool(new.get("deletionProtection")),
            EngineVersion=new["engineVersion"],
            VpcSecurityGroupIds=new.get("vpcSecurityGroupIds", []))["DBCluster"]
        return self._outputs(ctx, cluster, new)

    def read(self, ctx, id_, inputs):
        found = ignore_missing(ctx.client("rds").describe_db_clusters, DBClusterIdentifier=id_)
        if found is None:
            return None
        c = found["DBClusters"][0]
        return {"clusterIdentifier": id_, "engine": c["Engine"], "engineVersion": c["EngineVersion"],
                "storageEncrypted": c.get("StorageEncrypted"),
                "deletionProtection": c.get("DeletionProtection"),
                "backupRetentionPeriod": c.get("BackupRetentionPeriod")}

    def delete(self, ctx, id_, inputs, outputs):
        rds = ctx.client("rds")
        # Deletion protection is honoured as AWS does (moto would not refuse).
        live = self.read(ctx, id_, inputs)
        if live and live.get("deletionProtection"):
            raise RuntimeError(
                f"RDS cluster {id_} has deletion protection enabled; set "
                "db.deletion_protection=false and deploy before destroying it")
        ignore_missing(rds.delete_db_cluster, DBClusterIdentifier=id_, SkipFinalSnapshot=True)
        # AWS deletes a cluster's automated snapshots with it; moto keeps them, and a cluster
        # re-created within the same minute would collide with the old one's snapshot name.
        for snap in rds.describe_db_cluster_snapshots(
                DBClusterIdentifier=id_, SnapshotType="automated")["DBClusterSnapshots"]:
            ignore_missing(rds.delete_db_cluster_snapshot,
                           DBClusterSnapshotIdentifier=snap["DBClusterSnapshotIdentifier"])
        standin.remove(ctx, id_)



@handler
class ClusterInstance(Handler):
    type = "aws:rds/clusterInstance:ClusterInstance"
    updatable = frozenset({"instanceClass"})
    id_input = "identifier"

    def create(self, ctx, inputs):
        inst = ctx.client("rds").create_db_instance(
            DBInstanceIdentifier=inputs["identifier"], DBClusterIdentifier=inputs["clusterIdentifier"],
            DBInstanceClass=inputs["instanceClass"], Engine=inputs["engine"],
            PubliclyAccessible=bool(inputs.get("publiclyAccessible")),
            DBSubnetGroupName=inputs.get("dbSubnetGroupName"),
            Tags=ctx.tag_list(inputs.get("tags")))["DBInstance"]
        return inputs["identifier"], {**inputs, "id": inputs["identifier"],
                                      "arn": inst["DBInstanceArn"], "writer": False}

    def update(self, ctx, id_, old, new):
        ctx.client("rds").modify_db_instance(DBInstanceIdentifier=id_, ApplyImmediately=True,
                                             DBInstanceClass=new["instanceClass"])
        return {**old, **new}

    def read(self, ctx, id_, inputs):
        found = ignore_missing(ctx.client("rds").describe_db_instances,
                               DBInstanceIdentifier=id_)
        if found is None:
            return None
        i = found["DBInstances"][0]
        return {"identifier": id_, "instanceClass": i["DBInstanceClass"],
                "publiclyAccessible": i.get("PubliclyAccessible")}

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("rds").delete_db_instance, DBInstanceIdentifier=id_,
                       SkipFinalSnapshot=True)
