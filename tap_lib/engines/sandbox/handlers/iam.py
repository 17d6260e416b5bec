"""IAM roles and their inline policies."""
from __future__ import annotations

import json
from urllib.parse import unquote

from .base import Handler, adoptable, handler, ignore_missing


def _doc(value) -> dict:
    if isinstance(value, dict):
        return value
    return json.loads(unquote(value)) if value else {}


def _role_tags(ctx, name: str):
    return (ignore_missing(ctx.client("iam").list_role_tags, RoleName=name) or {}).get("Tags")


@handler
class Role(Handler):
    type = "aws:iam/role:Role"
    applies = frozenset({"assumeRolePolicy", "description", "maxSessionDuration"})
    state_only = frozenset({"forceDetachPolicies"})
    tagger = "iam_role"
    id_input = "name"

    def create(self, ctx, inputs):
        role = ctx.client("iam").create_role(
            RoleName=inputs["name"], AssumeRolePolicyDocument=inputs["assumeRolePolicy"],
            Tags=ctx.tag_list(inputs.get("tags")))["Role"]
        return inputs["name"], {**inputs, "id": inputs["name"], "arn": role["Arn"],
                                "uniqueId": role["RoleId"]}

    def tags(self, ctx, id_):
        return _role_tags(ctx, id_)

    def read(self, ctx, id_, inputs):
        found = ignore_missing(ctx.client("iam").get_role, RoleName=id_)
        if found is None:
            return None
        role = found["Role"]
        return {"name": role["RoleName"], "assumeRolePolicy": _doc(role["AssumeRolePolicyDocument"])}

    def modify(self, ctx, id_, old, new, changed):
        iam = ctx.client("iam")
        if "assumeRolePolicy" in changed:
            iam.update_assume_role_policy(RoleName=id_, PolicyDocument=new["assumeRolePolicy"])
        if "description" in changed:
            iam.update_role_description(RoleName=id_, Description=new.get("description") or "")
        if "maxSessionDuration" in changed:
            iam.update_role(RoleName=id_, MaxSessionDuration=int(new.get("maxSessionDuration")
                                                                 or 3600))

    def delete(self, ctx, id_, inputs, outputs):
        iam = ctx.client("iam")
        for name in (ignore_missing(iam.list_role_policies, RoleName=id_) or {}).get(
                "PolicyNames", []):
            iam.delete_role_policy(RoleName=id_, PolicyName=name)
        ignore_missing(iam.delete_role, RoleName=id_)


@handler
class RolePolicy(Handler):
    type = "aws:iam/rolePolicy:RolePolicy"
    unique = ("role", "name")         # PutRolePolicy would overwrite, delete would remove it
    applies = frozenset({"policy"})

    def create(self, ctx, inputs):
        name = inputs.get("name") or ctx.name
        ctx.client("iam").put_role_policy(RoleName=inputs["role"], PolicyName=name,
                                          PolicyDocument=inputs["policy"])
        pid = f"{inputs['role']}:{name}"
        return pid, {**inputs, "id": pid, "name": name}

    def read(self, ctx, id_, inputs):
        role, _, name = id_.partition(":")
        doc = ignore_missing(ctx.client("iam").get_role_policy, RoleName=role, PolicyName=name)
        if doc is None:
            return None
        return {"role": role, "policy": _doc(doc["PolicyDocument"])}

    def modify(self, ctx, id_, old, new, changed):
        self.create(ctx, new)  # PutRolePolicy replaces the document in place

    def delete(self, ctx, id_, inputs, outputs):
        role, _, name = id_.partition(":")
        ignore_missing(ctx.client("iam").delete_role_policy, RoleName=role, PolicyName=name)

    def find(self, ctx, inputs, exclude=frozenset()):
        """By role and name; a policy has no tags, so its role must be of ctx's stack."""
        pid = f"{inputs['role']}:{inputs.get('name') or ctx.name}"
        role = _role_tags(ctx, inputs["role"])
        return pid if adoptable(ctx, role, untagged=True, parent=True) and \
            self.read(ctx, pid, inputs) else None
