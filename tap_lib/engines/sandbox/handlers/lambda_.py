"""Lambda functions (code uploaded as a real zip of the archive) and invoke permissions."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pulumi

from .base import Handler, adoptable, handler, ignore_missing


def zip_archive(archive: pulumi.AssetArchive) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, asset in sorted(archive.assets.items()):
            if isinstance(asset, pulumi.FileAsset):
                zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)),
                            Path(asset.path).read_bytes())
            elif isinstance(asset, pulumi.StringAsset):
                zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), asset.text)
            else:
                raise TypeError(f"unsupported asset in Lambda archive: {name} ({type(asset).__name__})")
    return buf.getvalue()


def _config(inputs: dict) -> dict:
    vpc = inputs.get("vpcConfig") or {}
    return {"Role": inputs["role"], "Handler": inputs["handler"], "Runtime": inputs["runtime"],
            "Timeout": int(inputs.get("timeout") or 3),
            "MemorySize": int(inputs.get("memorySize") or 128),
            "Environment": {"Variables": (inputs.get("environment") or {}).get("variables", {})},
            "VpcConfig": {"SubnetIds": vpc.get("subnetIds", []),
                          "SecurityGroupIds": vpc.get("securityGroupIds", [])},
            # "" puts an update back on Lambda's own key, as the provider does
            "KMSKeyArn": inputs.get("kmsKeyArn") or "",
            # Sent as AWS takes it; moto 5.2 accepts and drops it (its GetFunction reports no
            # DeadLetterConfig), so verify cannot judge the DLQ on the sandbox (hardening_data).
            "DeadLetterConfig": {"TargetArn": (inputs.get("deadLetterConfig") or {})
                                 .get("targetArn") or ""}}


def _function_tags(ctx, function: str):
    """A function's tags, by name or ARN."""
    return (ignore_missing(ctx.client("lambda").get_function, FunctionName=function) or {}).get(
        "Tags")


@handler
class Function(Handler):
    type = "aws:lambda/function:Function"
    applies = frozenset({"code", "role", "handler", "runtime", "timeout", "memorySize",
                         "environment", "vpcConfig", "description", "kmsKeyArn",
                         "deadLetterConfig"})
    tagger = "lambda"
    id_input = "name"

    def create(self, ctx, inputs):
        fn = ctx.client("lambda").create_function(
            FunctionName=inputs["name"], Code={"ZipFile": zip_archive(inputs["code"])},
            Tags={**(inputs.get("tags") or {}), "tap:urn": ctx.urn}, **_config(inputs))
        return inputs["name"], self._outputs(inputs, fn)

    @staticmethod
    def _outputs(inputs, fn) -> dict:
        return {**inputs, "id": fn["FunctionName"], "arn": fn["FunctionArn"],
                "invokeArn": fn["FunctionArn"], "version": fn.get("Version", "$LATEST")}

    def modify(self, ctx, id_, old, new, changed):
        lam = ctx.client("lambda")
        if "code" in changed:
            lam.update_function_code(FunctionName=id_, ZipFile=zip_archive(new["code"]))
        fn = lam.update_function_configuration(FunctionName=id_, **_config(new))
        return self._outputs(new, fn)

    def read(self, ctx, id_, inputs):
        lam = ctx.client("lambda")
        c = ignore_missing(lam.get_function_configuration, FunctionName=id_)
        if c is None:
            return None
        return {"name": id_, "memorySize": c.get("MemorySize"), "timeout": c.get("Timeout"),
                "runtime": c.get("Runtime"), "handler": c.get("Handler"),
                "kmsKeyArn": c.get("KMSKeyArn") or None,
                "environment": {"variables": c.get("Environment", {}).get("Variables", {})},
                "vpcConfig": {"subnetIds": sorted(c.get("VpcConfig", {}).get("SubnetIds", [])),
                              "securityGroupIds": c.get("VpcConfig", {}).get("SecurityGroupIds", [])}}

    def tags(self, ctx, id_):
        return _function_tags(ctx, id_)

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("lambda").delete_function, FunctionName=id_,
                       codes=("ResourceNotFoundException",))


@handler
class Permission(Handler):
    type = "aws:lambda/permission:Permission"
    unique = ("function", "statementId")

    def create(self, ctx, inputs):
        sid = inputs.get("statementId") or ctx.name
        ctx.client("lambda").add_permission(
            FunctionName=inputs["function"], StatementId=sid, Action=inputs["action"],
            Principal=inputs["principal"], SourceArn=inputs.get("sourceArn"))
        return sid, {**inputs, "id": sid, "statementId": sid}

    def read(self, ctx, id_, inputs):
        lam = ctx.client("lambda")
        found = ignore_missing(lam.get_policy, FunctionName=inputs["function"])
        if found is None:
            return None
        for st in json.loads(found["Policy"]).get("Statement", []):
            if st.get("Sid") == id_:
                return {"function": inputs["function"], "principal":
                        (st.get("Principal") or {}).get("Service", st.get("Principal"))}
        return None

    def delete(self, ctx, id_, inputs, outputs):
        ignore_missing(ctx.client("lambda").remove_permission, FunctionName=inputs["function"],
                       StatementId=id_, codes=("ResourceNotFoundException",))

    def find(self, ctx, inputs, exclude=frozenset()):
        """By statement id; a permission has no tags, so its function must be of ctx's stack."""
        sid = inputs.get("statementId") or ctx.name
        function = _function_tags(ctx, inputs["function"])
        return sid if adoptable(ctx, function, untagged=True, parent=True) and \
            self.read(ctx, sid, inputs) else None
