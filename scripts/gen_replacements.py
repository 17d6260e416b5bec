#!/usr/bin/env python3
"""Regenerate tap_lib/engines/sandbox/replacements.json from terraform-provider-aws sources.

The real Pulumi AWS provider is bridged from terraform-provider-aws: an attribute whose schema says
`ForceNew: true` (SDKv2) or carries a `RequiresReplace()` plan modifier (plugin framework)
replaces the resource when it changes; every other settable attribute updates in place. The
sandbox engine classifies its steps from this table, so the rules come from the provider's own
schema instead of from memory.

Usage:
    scripts/gen_replacements.py SOURCE [--out FILE] [--commit SHA]

SOURCE is a terraform-provider-aws work tree, or its git directory (files are then read with
`git show HEAD:path` and the commit comes from `git rev-parse HEAD`). A directory holding only the
files listed in RESOURCES (same relative paths) works too; give `--commit` then, or put a
`SOURCES.json` ({path: commit}) beside them when the files come from different commits.

Parsing is regex and brace matching over the Go source, enough for the schema maps the provider
writes: `Schema: map[string]*schema.Schema{...}` / `SchemaFunc` (SDKv2) and
`Attributes: map[string]...Attribute{...}` (framework). Keys are string literals, constants of
the same file, or `names.AttrXxx` (resolved from names/attr_consts_gen.go when present, else by
splitting the Go identifier). Pulumi property names come from the installed pulumi_aws package,
so a renamed property (`function_name` -> `name`) must be declared in RENAMES, and the script
fails if a Pulumi property has no provider attribute or a rename points nowhere.
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

# Pulumi type token -> provider source file(s) holding its schema.
RESOURCES: dict[str, list[str]] = {
    "aws:ec2/vpc:Vpc": ["internal/service/ec2/vpc_.go"],
    "aws:ec2/internetGateway:InternetGateway": ["internal/service/ec2/vpc_internet_gateway.go"],
    "aws:ec2/subnet:Subnet": ["internal/service/ec2/vpc_subnet.go"],
    "aws:ec2/routeTable:RouteTable": ["internal/service/ec2/vpc_route_table.go"],
    "aws:ec2/route:Route": ["internal/service/ec2/vpc_route.go"],
    "aws:ec2/routeTableAssociation:RouteTableAssociation":
        ["internal/service/ec2/vpc_route_table_association.go"],
    "aws:ec2/eip:Eip": ["internal/service/ec2/ec2_eip.go"],
    "aws:ec2/natGateway:NatGateway": ["internal/service/ec2/vpc_nat_gateway.go"],
    "aws:ec2/securityGroup:SecurityGroup": ["internal/service/ec2/vpc_security_group.go"],
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        ["internal/service/ec2/vpc_security_group_ingress_rule.go"],
    # The egress rule resource embeds the ingress rule's schema (same file family).
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule":
        ["internal/service/ec2/vpc_security_group_ingress_rule.go"],
    "aws:ec2/flowLog:FlowLog": ["internal/service/ec2/vpc_flow_log.go"],
    "aws:cloudwatch/logGroup:LogGroup": ["internal/service/logs/group.go"],
    "aws:iam/role:Role": ["internal/service/iam/role.go"],
    "aws:iam/rolePolicy:RolePolicy": ["internal/service/iam/role_policy.go"],
    "aws:kms/key:Key": ["internal/service/kms/key.go"],
    "aws:kms/alias:Alias": ["internal/service/kms/alias.go"],
    "aws:lambda/function:Function": ["internal/service/lambda/function.go"],
    "aws:lambda/permission:Permission": ["internal/service/lambda/permission.go"],
    "aws:rds/subnetGroup:SubnetGroup": ["internal/service/rds/subnet_group.go"],
    "aws:rds/cluster:Cluster": ["internal/service/rds/cluster.go"],
    "aws:rds/clusterInstance:ClusterInstance": ["internal/service/rds/cluster_instance.go"],
    "aws:s3/bucket:Bucket": ["internal/service/s3/bucket.go"],
    "aws:s3/bucketVersioning:BucketVersioning": ["internal/service/s3/bucket_versioning.go"],
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration":
        ["internal/service/s3/bucket_server_side_encryption_configuration.go"],
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock":
        ["internal/service/s3/bucket_public_access_block.go"],
    "aws:s3/bucketPolicy:BucketPolicy": ["internal/service/s3/bucket_policy.go"],
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration":
        ["internal/service/s3/bucket_lifecycle_configuration.go"],
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls":
        ["internal/service/s3/bucket_ownership_controls.go"],
    "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration":
        ["internal/service/s3/bucket_object_lock_configuration.go"],
    "aws:s3/bucketLogging:BucketLogging": ["internal/service/s3/bucket_logging.go"],
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup":
        ["internal/service/ec2/vpc_default_security_group.go"],
    "aws:ec2/defaultNetworkAcl:DefaultNetworkAcl":
        ["internal/service/ec2/vpc_default_network_acl.go"],
    "aws:ec2/vpcEndpoint:VpcEndpoint": ["internal/service/ec2/vpc_endpoint.go"],
    "aws:secretsmanager/secret:Secret": ["internal/service/secretsmanager/secret.go"],
    "aws:secretsmanager/secretVersion:SecretVersion":
        ["internal/service/secretsmanager/secret_version.go"],
    "aws:secretsmanager/secretRotation:SecretRotation":
        ["internal/service/secretsmanager/secret_rotation.go"],
    # TLS parameter group, managed-policy attachments, DLQ, secret policy, AWS Backup
    "aws:rds/clusterParameterGroup:ClusterParameterGroup":
        ["internal/service/rds/cluster_parameter_group.go"],
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment":
        ["internal/service/iam/role_policy_attachment.go"],
    "aws:sqs/queue:Queue": ["internal/service/sqs/queue.go"],
    "aws:secretsmanager/secretPolicy:SecretPolicy":
        ["internal/service/secretsmanager/secret_policy.go"],
    "aws:backup/vault:Vault": ["internal/service/backup/vault.go"],
    "aws:backup/plan:Plan": ["internal/service/backup/plan.go"],
    "aws:backup/selection:Selection": ["internal/service/backup/selection.go"],
    # S3 event notifications to EventBridge, AWS Backup's job report plan
    "aws:s3/bucketNotification:BucketNotification":
        ["internal/service/s3/bucket_notification.go"],
    "aws:backup/reportPlan:ReportPlan": ["internal/service/backup/report_plan.go"],
}

# Provider attribute -> Pulumi property, where pulumi-aws renames it (resources.go of pulumi-aws).
RENAMES: dict[str, dict[str, str]] = {
    "aws:lambda/function:Function": {"function_name": "name", "filename": "code"},
    "aws:lambda/permission:Permission": {"function_name": "function"},
}

# Every resource of pulumi-aws 7 takes `region` (terraform-provider-aws 6 adds it to each schema
# through its wrappers, not in the resource files); changing it moves the resource: replace.
ALWAYS_FORCE_NEW = ("region",)
# Tags change in place wherever they exist (the provider's tagging interceptors).
ALWAYS_UPDATABLE = ("tags", "tagsAll")

ACRONYMS = sorted(["ARN", "ARNs", "AZ", "CIDR", "DB", "DNS", "IAM", "ID", "IDs", "IOPS", "IP", "IPv4",
                   "IPv6", "KMS", "S3", "SSE", "TLS", "URL", "VPC", "JSON", "SNS", "SQS"],
                  key=len, reverse=True)


class SourceError(Exception):
    """The provider source does not have the shape this parser expects."""


# --------------------------------------------------------------------------- reading sources
class Source:
    def __init__(self, root: Path, commit: str | None):
        self.root = root
        self.git = (root / "HEAD").is_file() and (root / "objects").is_dir()
        self.manifest: dict[str, str] = {}
        if not self.git and (root / "SOURCES.json").is_file():
            self.manifest = json.loads((root / "SOURCES.json").read_text())
        if self.git:
            self.commit = subprocess.run(["git", f"--git-dir={root}", "rev-parse", "HEAD"],
                                         check=True, capture_output=True, text=True).stdout.strip()
        elif (root / ".git").exists():
            self.commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                         check=True, capture_output=True, text=True).stdout.strip()
        else:
            self.commit = commit or ""

    def read(self, path: str) -> str | None:
        if self.git:
            out = subprocess.run(["git", f"--git-dir={self.root}", "show", f"HEAD:{path}"],
                                 capture_output=True, text=True)
            return out.stdout if out.returncode == 0 else None
        file = self.root / path
        return file.read_text() if file.is_file() else None

    def commit_of(self, path: str) -> str:
        return self.manifest.get(path, self.commit)


# --------------------------------------------------------------------------- Go parsing
def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = []
    for line in text.splitlines():
        # Drop // comments outside string literals (good enough: schema keys have no "//").
        in_str, cut = False, len(line)
        for i, ch in enumerate(line):
            if ch in "\"`" and (i == 0 or line[i - 1] != "\\"):
                in_str = not in_str
            elif not in_str and line.startswith("//", i):
                cut = i
                break
        out.append(line[:cut])
    return "\n".join(out)


def _match_brace(text: str, open_at: int) -> int:
    """Index of the brace closing the one at open_at (strings and runes skipped)."""
    depth, i, n = 0, open_at, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"`'":
            end = text.find(ch, i + 1)
            while ch == '"' and end != -1 and text[end - 1] == "\\":
                end = text.find(ch, end + 1)
            i = end if end != -1 else n
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise SourceError("unbalanced braces")


def _entries(body: str) -> list[tuple[str, str]]:
    """Top-level `KEY: VALUE,` entries of a Go composite literal body."""
    entries, i, n = [], 0, len(body)
    while i < n:
        m = re.compile(r"\s*([A-Za-z_][\w.]*|\"[^\"]*\")\s*:\s*").match(body, i)
        if not m:
            i += 1
            continue
        key, j = m.group(1), m.end()
        # The value runs to the next top-level comma.
        depth, k = 0, j
        while k < n:
            ch = body[k]
            if ch in "\"`":
                k = body.find(ch, k + 1)
            elif ch in "{([":
                depth += 1
            elif ch in "})]":
                depth -= 1
            elif ch == "," and depth == 0:
                break
            k += 1
        entries.append((key, body[j:k].strip()))
        i = k + 1
    return entries


def _consts(text: str) -> dict[str, str]:
    found = dict(re.findall(r"\b([A-Za-z_]\w*)\s*=\s*\"([^\"]+)\"", text))
    return found


def _snake_from_attr(ident: str) -> str:
    """names.AttrVPCID -> vpc_id (used when names/attr_consts_gen.go is not available)."""
    rest, parts = ident[len("Attr"):], []
    while rest:
        for acr in ACRONYMS:
            if rest.startswith(acr) and (len(rest) == len(acr) or not rest[len(acr)].islower()
                                         or acr.endswith("s")):
                parts.append(acr.lower())
                rest = rest[len(acr):]
                break
        else:
            m = re.match(r"[A-Z][a-z0-9]*|[a-z0-9]+", rest)
            if not m:
                raise SourceError(f"cannot split identifier {ident}")
            parts.append(m.group(0).lower())
            rest = rest[m.end():]
    return "_".join(parts)


class KeyResolver:
    def __init__(self, names_text: str | None):
        self.names = _consts(names_text) if names_text else {}

    def __call__(self, key: str, local: dict[str, str]) -> str:
        if key.startswith('"'):
            return key.strip('"')
        if key.startswith("names."):
            ident = key.split(".", 1)[1]
            return self.names.get(ident) or _snake_from_attr(ident)
        if key in local:
            return local[key]
        raise SourceError(f"unresolved schema key {key}")


SDK_MAP = re.compile(r"(?:Schema:\s*|return\s+)map\[string\]\*schema\.Schema\s*\{")
FW_MAP = re.compile(r"Attributes:\s*map\[string\][\w.]*Attribute\s*\{")
FW_BLOCKS = re.compile(r"Blocks:\s*map\[string\][\w.]*Block\s*\{")


def _value_body(value: str) -> str:
    start = value.find("{")
    return value[start + 1:_match_brace(value, start)] if start != -1 else ""


def parse_schema(text: str, resolve: KeyResolver) -> dict[str, dict]:
    """{attribute: {"force_new": bool, "computed_only": bool, "nested_force_new": [paths]}}."""
    text = _strip_comments(text)
    local = _consts(text)
    attrs: dict[str, dict] = {}
    m = SDK_MAP.search(text)
    fw = FW_MAP.search(text)
    if m and (not fw or m.start() < fw.start()):
        body = text[m.end():_match_brace(text, m.end() - 1)]
        for key, value in _entries(body):
            attrs[resolve(key, local)] = _sdk_attr(value, text, local, resolve)
    elif fw:
        body = text[fw.end():_match_brace(text, fw.end() - 1)]
        for key, value in _entries(body):
            attrs[resolve(key, local)] = _fw_attr(value)
        blocks = FW_BLOCKS.search(text, fw.end())
        if blocks:
            bbody = text[blocks.end():_match_brace(text, blocks.end() - 1)]
            for key, value in _entries(bbody):
                nested = re.findall(r"RequiresReplace\w*\(", value)
                attrs[resolve(key, local)] = {"force_new": False, "computed_only": False,
                                              "nested_force_new": ["*"] if nested else []}
    else:
        raise SourceError("no schema map found")
    # CustomizeDiff / ModifyPlan can force a replacement for some changes of an attribute.
    for key in re.findall(r"ForceNew(?:If|IfChange)?\(\s*(\"[^\"]+\"|names\.\w+|\w+)", text):
        try:
            name = resolve(key, local)
        except SourceError:
            continue
        if name in attrs:
            attrs[name]["conditional_force_new"] = True
    return attrs


def _sdk_attr(value: str, text: str, local: dict, resolve: KeyResolver) -> dict:
    if not value.startswith("{"):
        # A shared variable (e.g. securityGroupRuleSetNestedBlock) or a helper call.
        var = re.match(r"([A-Za-z_]\w*)\s*$", value)
        if var:
            decl = re.search(rf"\b{var.group(1)}\s*=\s*&schema\.Schema\s*\{{", text)
            if decl:
                value = text[decl.end() - 1:_match_brace(text, decl.end() - 1) + 1]
        if not value.startswith("{"):
            return {"force_new": False, "computed_only": False, "nested_force_new": []}
    body = _value_body(value)
    top = _top_level_text(body)
    computed_only = bool(re.search(r"\bComputed:\s*true", top)) and not re.search(
        r"\b(Optional|Required):\s*true", top)
    force_top = bool(re.search(r"\bForceNew:\s*true", top))
    nested = ["*"] if not force_top and re.search(r"\bForceNew:\s*true", body) else []
    return {"force_new": force_top, "computed_only": computed_only, "nested_force_new": nested}


def _fw_attr(value: str) -> dict:
    body = _value_body(value) if "{" in value else ""
    top = _top_level_text(body)
    return {"force_new": bool(re.search(r"RequiresReplace\(\)", body)),
            "conditional_force_new": bool(re.search(r"RequiresReplaceIf\w*\(", body)),
            "computed_only": bool(re.search(r"\bComputed:\s*true", top)) and not re.search(
                r"\b(Optional|Required):\s*true", top),
            "nested_force_new": []}


def _top_level_text(body: str) -> str:
    """The body with every nested {...} removed: the attribute's own fields."""
    out, depth = [], 0
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


# --------------------------------------------------------------------------- Pulumi names
def pulumi_properties(type_token: str) -> set[str]:
    """Property names of a pulumi_aws resource, read from its generated `_XState` class."""
    import pulumi_aws

    module, _, cls = type_token.split(":", 1)[1].partition(":")
    package, _, file = module.partition("/")
    package = {"lambda": "lambda_"}.get(package, package)
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", file).lower()
    path = Path(pulumi_aws.__file__).parent / package / f"{snake}.py"
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == f"_{cls}State":
            props = set()
            for fn in node.body:
                if not isinstance(fn, ast.FunctionDef):
                    continue
                for deco in fn.decorator_list:
                    if isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "getter":
                        named = [k.value.value for k in deco.keywords if k.arg == "name"]
                        props.add(named[0] if named else fn.name)
                    elif getattr(deco, "attr", "") == "getter":
                        props.add(fn.name)
            return props
    raise SourceError(f"no _{cls}State class in {path}")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def pulumi_name(tf_name: str, renames: dict[str, str], pulumi: set[str]) -> str | None:
    """The bridge's name for a provider attribute: camelCase, pluralized for list blocks
    (`route` -> `routes`, `inline_policy` -> `inlinePolicies`), or an explicit rename."""
    if tf_name in renames:
        return renames[tf_name]
    name = camel(tf_name)
    for candidate in (name, name + "s", name[:-1] + "ies" if name.endswith("y") else None):
        if candidate and candidate in pulumi:
            return candidate
    return None


# --------------------------------------------------------------------------- table
def build(source: Source) -> dict:
    names_text = source.read("names/attr_consts_gen.go")
    resolve = KeyResolver(names_text)
    types: dict[str, dict] = {}
    problems: list[str] = []
    for type_token, files in RESOURCES.items():
        attrs: dict[str, dict] = {}
        for path in files:
            text = source.read(path)
            if text is None:
                problems.append(f"{type_token}: {path} not found in {source.root}")
                continue
            try:
                attrs.update(parse_schema(text, resolve))
            except SourceError as exc:
                problems.append(f"{type_token}: {path}: {exc}")
        if not attrs:
            continue
        pulumi = pulumi_properties(type_token)
        renames = RENAMES.get(type_token, {})
        force_new, updatable, computed, nested, conditional = set(), set(), set(), {}, set()
        for tf_name, info in attrs.items():
            if tf_name == "id":
                continue  # every resource's id; never an input
            prop = pulumi_name(tf_name, renames, pulumi)
            if prop is None:
                problems.append(f"{type_token}: provider attribute {tf_name} has no pulumi_aws "
                                "property (add it to RENAMES)")
                continue
            if info["force_new"]:
                force_new.add(prop)
            elif info["computed_only"]:
                computed.add(prop)
            else:
                updatable.add(prop)
            if info.get("conditional_force_new"):
                conditional.add(prop)
            if info["nested_force_new"] and not info["force_new"]:
                nested[prop] = info["nested_force_new"]
        force_new.update(ALWAYS_FORCE_NEW)
        updatable.update(p for p in ALWAYS_UPDATABLE if p in pulumi)
        updatable -= force_new
        # Properties of the installed pulumi_aws that the source read does not have (a newer
        # provider than the file read): left out, so classify refuses them if ever set.
        unmapped = sorted(pulumi - force_new - updatable - computed - {"id"})
        if unmapped:
            print(f"note: {type_token}: not in the source read: {unmapped}", file=sys.stderr)
        types[type_token] = {
            "sources": [{"path": p, "commit": source.commit_of(p)} for p in files],
            "force_new": sorted(force_new),
            "updatable": sorted(updatable),
            "computed": sorted(computed),
            # Changing these replaces only for some values (CustomizeDiff / ModifyPlan);
            # classified as replace, the cautious reading.
            "force_new_conditional": sorted(conditional),
            # Nested blocks with a ForceNew field inside: any change to them is treated as replace.
            "force_new_nested": dict(sorted(nested.items())),
            "unmapped": unmapped,
        }
    if problems:
        raise SourceError("\n".join(problems))
    commits = sorted({s["commit"] for t in types.values() for s in t["sources"]})
    return {
        "source": {"repository": "https://github.com/hashicorp/terraform-provider-aws",
                   "commit": commits[0] if len(commits) == 1 else "per-file (see sources)",
                   "generator": "scripts/gen_replacements.py",
                   "rules": "SDKv2 ForceNew: true or framework RequiresReplace() -> force_new; "
                            "other settable attributes -> updatable; region always force_new; "
                            "tags/tagsAll always updatable"},
        "types": dict(sorted(types.items())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="terraform-provider-aws work tree or git dir")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1]
                        / "tap_lib/engines/sandbox/replacements.json")
    parser.add_argument("--commit", help="commit of SOURCE when it is not a git checkout")
    args = parser.parse_args(argv)
    try:
        table = build(Source(args.source, args.commit))
    except SourceError as exc:
        print(f"gen_replacements: {exc}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(table, indent=1, sort_keys=False) + "\n")
    n_props = sum(len(t["force_new"]) + len(t["updatable"]) for t in table["types"].values())
    print(f"wrote {args.out}: {len(table['types'])} types, {n_props} properties")
    return 0


if __name__ == "__main__":
    sys.exit(main())
