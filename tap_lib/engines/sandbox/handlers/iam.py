"""IAM roles and their inline policies."""
from __future__ import annotations

import json
from urllib.parse import unquote

from botocore.exceptions import ClientError

from .base import Handler, adoptable, handler, ignore_missing, is_missing


def _doc(value) -> dict:
    if isinstance(value, dict):
        return value
    return json.loads(unquote(value)) if value else {}


def _aws_managed_absent(ctx, arn: str) -> bool:
    """An AWS managed policy the emulator has not loaded (see RolePolicyAttachment)."""
    return arn.startswith("arn:aws:iam::aws:policy/") and \
        ignore_missing(ctx.client("iam").get_policy, PolicyArn=arn) is None


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
        # AWS refuses to delete a role with managed policies attached (DeleteConflict)
        for policy in (ignore_missing(iam.list_attached_role_policies, RoleName=id_) or {}).get(
                "AttachedPolicies", []):
            ignore_missing(iam.detach_role_policy, RoleName=id_, PolicyArn=policy["PolicyArn"])
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


@handler
class RolePolicyAttachment(Handler):
    """A managed policy attached to a role (the enhanced monitoring and AWS Backup roles take
    AWS's service-role policies)."""
    type = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
    unique = ("role", "policyArn")    # attaching twice is one attachment; detach removes it

    def create(self, ctx, inputs):
        aid = f"{inputs['role']}/{inputs['policyArn']}"
        try:
            ctx.client("iam").attach_role_policy(RoleName=inputs["role"],
                                                 PolicyArn=inputs["policyArn"])
        except ClientError as exc:
            # moto loads AWS's managed policies only when MOTO_IAM_LOAD_MANAGED_POLICIES is
            # set; without them the attachment can exist in tap's state only, and verify
            # reports the role's policy as not verifiable there (ops/hardening_data.py).
            if not (is_missing(exc) and _aws_managed_absent(ctx, inputs["policyArn"])):
                raise
            ctx.notes.append(f"{inputs['policyArn']} is not loaded in the emulator: the "
                             "attachment is recorded in tap's state only")
        return aid, {**inputs, "id": aid}

    def read(self, ctx, id_, inputs):
        role, _, arn = id_.partition("/")
        if _aws_managed_absent(ctx, arn):
            return dict(inputs) if _role_tags(ctx, role) is not None else None
        found = ignore_missing(ctx.client("iam").list_attached_role_policies, RoleName=role)
        if found is None or arn not in {p["PolicyArn"] for p in found["AttachedPolicies"]}:
            return None
        return {"role": role, "policyArn": arn}

    def delete(self, ctx, id_, inputs, outputs):
        role, _, arn = id_.partition("/")
        ignore_missing(ctx.client("iam").detach_role_policy, RoleName=role, PolicyArn=arn)

    def find(self, ctx, inputs, exclude=frozenset()):
        """By role and policy; an attachment has no tags, so its role must be of ctx's stack."""
        aid = f"{inputs['role']}/{inputs['policyArn']}"
        role = _role_tags(ctx, inputs["role"])
        return aid if aid not in exclude and adoptable(ctx, role, untagged=True, parent=True) \
            and self.read(ctx, aid, inputs) else None
