"""Aurora PostgreSQL: subnet group, cluster (with a real local PostgreSQL standing in for its
endpoint), instances."""
from __future__ import annotations

from .base import Handler, handler, ignore_missing


@handler
class SubnetGroup(Handler):
    type = "aws:rds/subnetGroup:SubnetGroup"
    applies = frozenset({"subnetIds", "description"})
    tagger = "rds"
    id_input = "name"

    def create(self, ctx, inputs):
        rds = ctx.client("rds")
        group = rds.create_db_subnet_group(
            DBSubnetGroupName=inputs["name"],
            DBSubnetGroupDescription=inputs.get("description") or "Managed by tap",
            SubnetIds=inputs["subnetIds"], Tags=ctx.tag_list(inputs.get("tags")))["DBSubnetGroup"]
        return inputs["name"], {**inputs, "id": inputs["name"], "arn": group["DBSubnetGroupArn"]}

    def modify(self, ctx, id_, old, new, changed):
        # moto 5.2's ModifyDBSubnetGroup pops the group out of its registry and never puts it
        # back (AWS keeps it), and answers HTTP 500 when the group is already gone. So: a group
        # an earlier modify lost is created as AWS would have it; otherwise modify, and put the
        # modified group back as AWS has it.
        if self.read(ctx, id_, new) is None:
            self.create(ctx, new)
            return
        ctx.client("rds").modify_db_subnet_group(
            DBSubnetGroupName=id_, SubnetIds=new["subnetIds"],
            DBSubnetGroupDescription=new.get("description") or "Managed by tap")
        if self.read(ctx, id_, new) is None:
            self.create(ctx, new)

    def read(self, ctx, id_, inputs):
        found = ignore_missing(ctx.client("rds").describe_db_subnet_groups,
                               DBSubnetGroupName=id_)
        if found is None:
            return None
        subnets = found["DBSubnetGroups"][0]["Subnets"]
        return {"name": id_, "subnetIds": sorted(s["SubnetIdentifier"] for s in subnets)}

    def tags(self, ctx, id_):
        rds = ctx.client("rds")
        found = ignore_missing(rds.describe_db_subnet_groups, DBSubnetGroupName=id_)
        if found is None:
            return None
        return rds.list_tags_for_resource(
            ResourceName=found["DBSubnetGroups"][0]["DBSubnetGroupArn"]).get("TagList")

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("rds").delete_db_subnet_group, DBSubnetGroupName=id_)


@handler
class Cluster(Handler):
    type = "aws:rds/cluster:Cluster"
    # Input -> ModifyDBCluster parameter (and how to convert the value).
    MODIFY = {"backupRetentionPeriod": ("BackupRetentionPeriod", int),
              "preferredBackupWindow": ("PreferredBackupWindow", str),
              "preferredMaintenanceWindow": ("PreferredMaintenanceWindow", str),
              "copyTagsToSnapshot": ("CopyTagsToSnapshot", bool),
              "deletionProtection": ("DeletionProtection", bool),
              "engineVersion": ("EngineVersion", str), "port": ("Port", int),
              "vpcSecurityGroupIds": ("VpcSecurityGroupIds", list),
              "manageMasterUserPassword": ("ManageMasterUserPassword", bool),
              "masterUserSecretKmsKeyId": ("MasterUserSecretKmsKeyId", str),
              "iamDatabaseAuthenticationEnabled": ("EnableIAMDatabaseAuthentication", bool),
              # a list in, Enable/DisableLogTypes out (modify builds it from old and new)
              "enabledCloudwatchLogsExports": ("CloudwatchLogsExportConfiguration", list),
              "dbClusterParameterGroupName": ("DBClusterParameterGroupName", str),
              "engineLifecycleSupport": ("EngineLifecycleSupport", str)}
    applies = frozenset(MODIFY)
    # Used when the cluster is deleted, or to steer a modify; never a setting of the cluster.
    state_only = frozenset({"skipFinalSnapshot", "finalSnapshotIdentifier", "applyImmediately",
                            "allowMajorVersionUpgrade", "deleteAutomatedBackups"})
    tagger = "rds"
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
            EnableCloudwatchLogsExports=list(inputs.get("enabledCloudwatchLogsExports") or []),
            EnableIAMDatabaseAuthentication=bool(inputs.get("iamDatabaseAuthenticationEnabled")),
            **({"DBClusterParameterGroupName": inputs["dbClusterParameterGroupName"]}
               if inputs.get("dbClusterParameterGroupName") else {}),
            # sent as AWS takes it; moto 5.2 neither keeps nor reports it (read leaves it out)
            **({"EngineLifecycleSupport": inputs["engineLifecycleSupport"]}
               if inputs.get("engineLifecycleSupport") else {}),
            Tags=ctx.tag_list(inputs.get("tags")))["DBCluster"]
        _rotate_like_rds(ctx, cluster)
        return cluster["DBClusterIdentifier"], self._outputs(ctx, cluster, inputs)

    def _outputs(self, ctx, cluster: dict, inputs: dict) -> dict:
        secret_arn = (cluster.get("MasterUserSecret") or {}).get("SecretArn", "")
        # The outputs are AWS's (the endpoint names describe_db_clusters reports); the sandbox
        # cannot run Aurora, so a real PostgreSQL stands in behind those names for tap's own
        # connections (standin.host_map), never by changing what the outputs say.
        from .. import standin   # here: a preview never loads PostgreSQL's tooling

        standin.ensure(ctx, cluster["DBClusterIdentifier"], secret_arn,
                       inputs.get("databaseName") or "postgres",
                       hosts=(cluster["Endpoint"], cluster.get("ReaderEndpoint")))
        return {**inputs, "id": cluster["DBClusterIdentifier"], "arn": cluster["DBClusterArn"],
                "endpoint": cluster["Endpoint"], "port": int(cluster["Port"]),
                "readerEndpoint": cluster.get("ReaderEndpoint") or cluster["Endpoint"],
                "clusterResourceId": cluster.get("DbClusterResourceId"),
                "masterUserSecrets": [{"secretArn": secret_arn, "secretStatus": "active",
                                       "kmsKeyId": inputs.get("masterUserSecretKmsKeyId") or ""}]}

    def modify(self, ctx, id_, old, new, changed):
        """One ModifyDBCluster with every changed setting, applied immediately (tap's runbook
        promises the change now, not in the next maintenance window)."""
        params = {}
        for prop in sorted(changed):
            name, conv = self.MODIFY[prop]
            if prop == "enabledCloudwatchLogsExports":
                before, after = set(old.get(prop) or []), set(new.get(prop) or [])
                params[name] = {"EnableLogTypes": sorted(after - before),
                                "DisableLogTypes": sorted(before - after)}
            elif new.get(prop) is not None:
                params[name] = conv(new[prop])
        if "EngineVersion" in params and _major(params["EngineVersion"]) != _major(
                str(old.get("engineVersion", ""))):
            params["AllowMajorVersionUpgrade"] = True
        cluster = ctx.client("rds").modify_db_cluster(
            DBClusterIdentifier=id_, ApplyImmediately=True, **params)["DBCluster"]
        return self._outputs(ctx, cluster, new)

    def read(self, ctx, id_, inputs):
        found = ignore_missing(ctx.client("rds").describe_db_clusters, DBClusterIdentifier=id_)
        if found is None:
            return None
        c = found["DBClusters"][0]
        return {"clusterIdentifier": id_, "engine": c["Engine"], "engineVersion": c["EngineVersion"],
                "storageEncrypted": c.get("StorageEncrypted"), "port": c.get("Port"),
                "preferredBackupWindow": c.get("PreferredBackupWindow"),
                "copyTagsToSnapshot": c.get("CopyTagsToSnapshot"),
                "deletionProtection": c.get("DeletionProtection"),
                "backupRetentionPeriod": c.get("BackupRetentionPeriod"),
                "enabledCloudwatchLogsExports": sorted(c.get("EnabledCloudwatchLogsExports")
                                                       or []),
                "iamDatabaseAuthenticationEnabled": c.get("IAMDatabaseAuthenticationEnabled"),
                "dbClusterParameterGroupName": c.get("DBClusterParameterGroup"),
                **({"engineLifecycleSupport": c["EngineLifecycleSupport"]}
                   if c.get("EngineLifecycleSupport") else {})}

    def tags(self, ctx, id_):
        found = ignore_missing(ctx.client("rds").describe_db_clusters, DBClusterIdentifier=id_)
        return found["DBClusters"][0].get("TagList") if found else None

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
        from .. import standin

        standin.remove(ctx, id_)



def _rotate_like_rds(ctx, cluster: dict) -> None:
    """RDS rotates the master secret it manages every 7 days; moto creates the secret but no
    schedule. The schedule alone (no rotation now: the stand-in uses the current password)."""
    arn = (cluster.get("MasterUserSecret") or {}).get("SecretArn")
    sm = ctx.client("secretsmanager")
    if arn and not sm.describe_secret(SecretId=arn).get("RotationEnabled"):
        sm.rotate_secret(SecretId=arn, RotationRules={"AutomaticallyAfterDays": 7},
                         RotateImmediately=False)


def _major(version: str) -> str:
    return version.split(".")[0]


@handler
class ClusterInstance(Handler):
    type = "aws:rds/clusterInstance:ClusterInstance"
    MODIFY = {"instanceClass": ("DBInstanceClass", str), "engineVersion": ("EngineVersion", str),
              "publiclyAccessible": ("PubliclyAccessible", bool),
              "copyTagsToSnapshot": ("CopyTagsToSnapshot", bool),
              "autoMinorVersionUpgrade": ("AutoMinorVersionUpgrade", bool),
              "promotionTier": ("PromotionTier", int),
              "preferredMaintenanceWindow": ("PreferredMaintenanceWindow", str),
              "dbParameterGroupName": ("DBParameterGroupName", str),
              "monitoringInterval": ("MonitoringInterval", int),
              "monitoringRoleArn": ("MonitoringRoleArn", str)}
    applies = frozenset(MODIFY)
    state_only = frozenset({"applyImmediately", "forceDestroy"})
    tagger = "rds"
    id_input = "identifier"

    def create(self, ctx, inputs):
        inst = ctx.client("rds").create_db_instance(
            DBInstanceIdentifier=inputs["identifier"], DBClusterIdentifier=inputs["clusterIdentifier"],
            DBInstanceClass=inputs["instanceClass"], Engine=inputs["engine"],
            PubliclyAccessible=bool(inputs.get("publiclyAccessible")),
            DBSubnetGroupName=inputs.get("dbSubnetGroupName"),
            **({"AvailabilityZone": inputs["availabilityZone"]}
               if inputs.get("availabilityZone") else {}),
            # RDS.6: RDS refuses an interval without a role and a role without an interval
            **({"MonitoringInterval": int(inputs["monitoringInterval"]),
                "MonitoringRoleArn": inputs.get("monitoringRoleArn")}
               if inputs.get("monitoringInterval") else {}),
            Tags=ctx.tag_list(inputs.get("tags")))["DBInstance"]
        return inputs["identifier"], {**inputs, "id": inputs["identifier"],
                                      "arn": inst["DBInstanceArn"], "writer": False}

    def modify(self, ctx, id_, old, new, changed):
        # An Aurora instance runs its cluster's engine version: the cluster's modify (a
        # dependency, applied first) upgrades it, and RDS refuses EngineVersion here.
        params = {self.MODIFY[p][0]: self.MODIFY[p][1](new[p]) for p in sorted(changed)
                  if new.get(p) is not None and p != "engineVersion"}
        if "monitoringInterval" in changed and not new.get("monitoringInterval"):
            params["MonitoringInterval"] = 0      # turning monitoring off: interval 0, no role
            params.pop("MonitoringRoleArn", None)
        rds = ctx.client("rds")
        if params:
            rds.modify_db_instance(DBInstanceIdentifier=id_, ApplyImmediately=True, **params)
        if "engineVersion" in changed:
            live = rds.describe_db_instances(DBInstanceIdentifier=id_)["DBInstances"][0]
            if live.get("EngineVersion") != new.get("engineVersion"):
                raise RuntimeError(f"instance {id_} runs {live.get('EngineVersion')}, not "
                                   f"{new.get('engineVersion')}: upgrade its cluster first")

    def read(self, ctx, id_, inputs):
        found = ignore_missing(ctx.client("rds").describe_db_instances,
                               DBInstanceIdentifier=id_)
        if found is None:
            return None
        i = found["DBInstances"][0]
        return {"identifier": id_, "instanceClass": i["DBInstanceClass"],
                "engineVersion": i.get("EngineVersion"),
                "publiclyAccessible": i.get("PubliclyAccessible"),
                "availabilityZone": i.get("AvailabilityZone"),
                "monitoringInterval": i.get("MonitoringInterval") or 0,
                "monitoringRoleArn": i.get("MonitoringRoleArn")}

    def tags(self, ctx, id_):
        found = ignore_missing(ctx.client("rds").describe_db_instances,
                               DBInstanceIdentifier=id_)
        return found["DBInstances"][0].get("TagList") if found else None

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("rds").delete_db_instance, DBInstanceIdentifier=id_,
                       SkipFinalSnapshot=True)


@handler
class ClusterParameterGroup(Handler):
    """RDS.38: the cluster's parameters (rds.force_ssl). moto stores the group and its
    parameters but does not apply them: the stand-in's TLS is standin.py's job."""
    type = "aws:rds/clusterParameterGroup:ClusterParameterGroup"
    applies = frozenset({"parameters"})
    tagger = "rds"
    id_input = "name"

    def create(self, ctx, inputs):
        rds = ctx.client("rds")
        group = rds.create_db_cluster_parameter_group(
            DBClusterParameterGroupName=inputs["name"], DBParameterGroupFamily=inputs["family"],
            Description=inputs.get("description") or "Managed by tap",
            Tags=ctx.tag_list(inputs.get("tags")))["DBClusterParameterGroup"]
        self._apply(ctx, inputs["name"], inputs.get("parameters") or [])
        return inputs["name"], {**inputs, "id": inputs["name"],
                                "arn": group.get("DBClusterParameterGroupArn")}

    @staticmethod
    def _apply(ctx, name: str, parameters: list[dict]) -> None:
        if parameters:
            ctx.client("rds").modify_db_cluster_parameter_group(
                DBClusterParameterGroupName=name, Parameters=[
                    {"ParameterName": p["name"], "ParameterValue": str(p["value"]),
                     "ApplyMethod": p.get("applyMethod") or "immediate"} for p in parameters])

    def modify(self, ctx, id_, old, new, changed):
        self._apply(ctx, id_, new.get("parameters") or [])

    def read(self, ctx, id_, inputs):
        rds = ctx.client("rds")
        found = ignore_missing(rds.describe_db_cluster_parameter_groups,
                               DBClusterParameterGroupName=id_)
        if found is None:
            return None
        group = found["DBClusterParameterGroups"][0]
        params = rds.describe_db_cluster_parameters(DBClusterParameterGroupName=id_)["Parameters"]
        return {"name": id_, "family": group["DBParameterGroupFamily"],
                "parameters": [{"name": p["ParameterName"], "value": p.get("ParameterValue"),
                                "applyMethod": p.get("ApplyMethod")} for p in params]}

    def tags(self, ctx, id_):
        rds = ctx.client("rds")
        found = ignore_missing(rds.describe_db_cluster_parameter_groups,
                               DBClusterParameterGroupName=id_)
        if found is None:
            return None
        arn = found["DBClusterParameterGroups"][0].get("DBClusterParameterGroupArn")
        return rds.list_tags_for_resource(ResourceName=arn).get("TagList") if arn else None

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("rds").delete_db_cluster_parameter_group,
                       DBClusterParameterGroupName=id_)
