"""AWS naming rules and the builders that must always produce a valid name.

Unit tests pin AWS's rules (RULES[kind].problems / is_valid); hypothesis drives `build` and
`PhysicalNames.create` with hostile input: uppercase, unicode, punctuation, very long parts.
"""
from __future__ import annotations

import re
import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tap_lib.naming import HASH_LEN, RULES, InvalidName, PhysicalNames, build, short_hash

ACCOUNT = "123456789012"
REGION = "eu-west-2"

# Kinds whose builder takes free-form parts (kms_alias takes an "alias/..." part; tested apart).
FREE_KINDS = sorted(k for k in RULES if k != "kms_alias")


# -- the rules themselves -----------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "192.168.1.1", "10.0.0.1",                                  # shaped like an IP address
    "xn--abc", "sthree-x", "amzn-s3-demo-x",                    # reserved prefixes
    "abc-s3alias", "abc--ol-s3", "abc.mrap", "abc--x-s3",       # reserved suffixes
    "a..b", "Abc", "ABC-logs",                                  # '..', uppercase
    "ab", "a" * 64,                                             # too short, too long
    "-abc", "abc-", ".abc", "abc.", "ab_c", "ab c",             # ends, characters
])
def test_bucket_rule_rejects(name):
    assert not RULES["s3_bucket"].is_valid(name)
    assert RULES["s3_bucket"].problems(name)


@pytest.mark.parametrize("name", ["abc", "a" * 63, "tapstack-txlogs-dev-8e552421", "a.b-c.d",
                                  "192.168.1.1x", "1abc"])
def test_bucket_rule_accepts(name):
    assert RULES["s3_bucket"].problems(name) == []


def test_bucket_rule_explains_each_problem():
    problems = RULES["s3_bucket"].problems("Xn--A..B")
    text = " ".join(problems)
    assert "lowercase" in text and "'..'" in text
    assert len(RULES["s3_bucket"].problems("192.168.1.1")) == 1


@pytest.mark.parametrize("kind", ["rds_cluster", "rds_instance"])
@pytest.mark.parametrize("name", ["Payments", "pay--ments", "payments-", "1payments", "a" * 64,
                                  "", "pay_ments", "pay.ments", "-payments"])
def test_rds_identifier_rule_rejects(kind, name):
    assert not RULES[kind].is_valid(name)


@pytest.mark.parametrize("kind", ["rds_cluster", "rds_instance"])
@pytest.mark.parametrize("name", ["a", "a" * 63, "tapstack-payments-dev", "tapstack-payments-dev-1"])
def test_rds_identifier_rule_accepts(kind, name):
    assert RULES[kind].problems(name) == []


def test_subnet_group_rule():
    rule = RULES["db_subnet_group"]
    assert not rule.is_valid("default")
    assert not rule.is_valid("Upper")
    assert not rule.is_valid("a" * 256)
    assert not rule.is_valid("a/b")
    assert rule.is_valid("tapstack-db-subnets-dev")
    assert rule.is_valid("db subnets_1.x")
    assert rule.is_valid("a" * 255)


def test_secret_rule():
    rule = RULES["secret"]
    assert not rule.is_valid("name-AbCdEf")      # looks like the ARN's random suffix
    assert not rule.is_valid("tapstack-dev-db-abc123")
    assert not rule.is_valid("a" * 513)
    assert not rule.is_valid("name with space")
    assert rule.is_valid("tapstack/dev/db")
    assert rule.is_valid("tapstack-dev-db-app-credentials")
    assert rule.is_valid("name-AbCdE")          # five characters are fine
    assert rule.is_valid("a" * 512)


def test_lambda_function_rule():
    rule = RULES["lambda_function"]
    assert rule.is_valid("a" * 64)
    assert not rule.is_valid("a" * 65)
    assert not rule.is_valid("pay.ment")
    assert not rule.is_valid("pay/ment")
    assert rule.is_valid("Pay_Ment-1")


def test_iam_role_rule():
    rule = RULES["iam_role"]
    assert not rule.is_valid("path/role")
    assert not rule.is_valid("a" * 65)
    assert not rule.is_valid("role name")
    assert rule.is_valid("a" * 64)
    assert rule.is_valid("Role+=,.@_-1")


@pytest.mark.parametrize("name", ["rôle", "röle-x", "r\u0663"])
def test_iam_role_rule_is_ascii_only(name):
    """AWS's IAM name pattern [\\w+=,.@-] means ASCII word characters."""
    assert not RULES["iam_role"].is_valid(name)


def test_log_group_security_group_and_alias_rules():
    assert RULES["log_group"].is_valid("/aws/lambda/tapstack-payment-dev")
    assert not RULES["log_group"].is_valid("/aws/lambda/a b")
    assert not RULES["log_group"].is_valid("a" * 513)
    assert not RULES["security_group"].is_valid("sg-payments")
    assert RULES["security_group"].is_valid("tapstack-db-dev")
    assert RULES["kms_alias"].is_valid("alias/tapstack-dev")
    assert not RULES["kms_alias"].is_valid("tapstack-dev")
    assert not RULES["kms_alias"].is_valid("alias/aws/tapstack")


# -- build: unit tests --------------------------------------------------------------------------

def test_build_lowercases_and_cleans_where_required():
    assert build("rds_cluster", "TapStack", "payments", "PR6329") == "tapstack-payments-pr6329"
    assert build("rds_cluster", "Ab--C-") == "ab-c"
    assert build("rds_cluster", "9lives") == "x9lives"
    assert build("s3_bucket", "Tap_Stack", "Logs..X") == "tap-stack-logs.x"
    assert build("db_subnet_group", "TapStack", "DB") == "tapstack-db"


def test_build_keeps_case_where_aws_allows_it():
    assert build("lambda_function", "TapStack", "Payment") == "TapStack-Payment"
    assert build("iam_role", "TapStack", "Role") == "TapStack-Role"
    assert build("secret", "TapStack", "dev", "db") == "TapStack-dev-db"


def test_build_skips_empty_parts():
    assert build("lambda_function", "a", "", "b") == "a-b"


def test_build_shortens_long_names_with_a_stable_hash():
    long = "payments" * 20
    name = build("lambda_function", long)
    assert len(name) == 64
    assert name.endswith("-" + short_hash(long))
    assert RULES["lambda_function"].is_valid(name)
    other = build("lambda_function", long + "x")
    assert other != name and len(other) == 64
    assert other[:-HASH_LEN] == name[:-HASH_LEN]


@pytest.mark.parametrize("kind,parts", [
    ("s3_bucket", ("a",)),
    ("s3_bucket", ("192.168.1.1",)),
    ("s3_bucket", ("sthree-logs",)),
    ("s3_bucket", ("amzn-s3-demo-logs",)),
    ("s3_bucket", ("logs", "s3alias")),
    ("s3_bucket", ("logs.mrap",)),
    ("db_subnet_group", ("default",)),
    ("secret", ("name", "AbCdEf")),
    ("security_group", ("sg", "payments")),
    ("kms_alias", ("alias/aws/tapstack",)),
])
def test_build_never_raises_for_reachable_input(kind, parts):
    """InvalidName is documented as a builder bug: a builder must normalize its way to a
    valid name (pad, prefix, or hash), not give up."""
    name = build(kind, *parts)
    assert RULES[kind].problems(name) == []


# -- build: properties --------------------------------------------------------------------------

PART = st.one_of(
    st.text(max_size=40),                                                # any unicode
    st.text(alphabet=string.ascii_uppercase + string.digits, max_size=30),
    st.text(alphabet=string.punctuation + " ", max_size=20),
    st.text(alphabet=string.ascii_letters + string.digits + "-._/", min_size=100, max_size=300),
)


@st.composite
def name_parts(draw):
    """1-4 parts, at least one ASCII letter or digit somewhere."""
    parts = draw(st.lists(PART, min_size=1, max_size=4))
    i = draw(st.integers(0, len(parts) - 1))
    pos = draw(st.integers(0, len(parts[i])))
    ch = draw(st.sampled_from(string.ascii_letters + string.digits))
    parts[i] = parts[i][:pos] + ch + parts[i][pos:]
    return tuple(parts)


@pytest.mark.parametrize("kind", FREE_KINDS)
@settings(max_examples=150, deadline=None)
@given(parts=name_parts())
@example(parts=("default",))
@example(parts=("sg", "x"))
@example(parts=("name", "AbCdEf"))
@example(parts=("192.168.1.1",))
@example(parts=("a",))
@example(parts=("xn--abc",))
@example(parts=("-.-a.-.",))
def test_build_always_returns_a_valid_name(kind, parts):
    try:
        name = build(kind, *parts)
    except InvalidName as exc:  # pragma: no cover - the failure this test exists to catch
        pytest.fail(f"build({kind!r}, *{parts!r}) raised: {exc}")
    rule = RULES[kind]
    assert rule.problems(name) == []
    assert build(kind, *parts) == name
    if rule.lowercase:
        assert name == name.lower()


@pytest.mark.parametrize("kind", FREE_KINDS)
@settings(max_examples=60, deadline=None)
@given(parts=name_parts())
@example(parts=("rôle",))
def test_built_names_are_ascii(kind, parts):
    try:
        name = build(kind, *parts)
    except InvalidName:
        return  # covered by test_build_always_returns_a_valid_name
    assert name.isascii(), name


@settings(max_examples=100, deadline=None)
@given(parts=name_parts())
def test_build_kms_alias_from_alias_prefix(parts):
    try:
        name = build("kms_alias", "alias/" + parts[0], *parts[1:])
    except InvalidName as exc:  # pragma: no cover
        pytest.fail(f"raised: {exc}")
    assert RULES["kms_alias"].problems(name) == []
    assert name.startswith("alias/")


@pytest.mark.parametrize("kind", [k for k in FREE_KINDS if RULES[k].lowercase])
@settings(max_examples=60, deadline=None)
@given(parts=name_parts())
def test_case_does_not_matter_where_aws_lowercases(kind, parts):
    """For lowercase-only kinds, 'PR6329' and 'pr6329' give the same name (unless shortened:
    the hash is taken over the raw parts)."""
    try:
        name = build(kind, *parts)
        lowered = build(kind, *(p.lower() for p in parts))
    except InvalidName:
        return  # covered by test_build_always_returns_a_valid_name
    raw = "-".join(p for p in parts if p)
    if not name.endswith("-" + short_hash(raw)):  # not shortened
        assert name == lowered


def test_short_hash():
    h = short_hash("123456789012", "eu-west-2", "TapStackdev")
    assert re.fullmatch(r"[0-9a-f]{8}", h)
    assert short_hash("123456789012", "eu-west-2", "TapStackdev") == h
    assert short_hash("ab", "c") != short_hash("a", "bc")
    assert len(short_hash("x", length=12)) == 12


# -- PhysicalNames ------------------------------------------------------------------------------

def _create(suffix="dev", region=REGION, account=ACCOUNT, instances=2, project="TapStack"):
    return PhysicalNames.create(project, suffix, region, account, instances)


def test_pr_stack_names_are_lowercase_and_valid():
    names = _create("PR6329", instances=3)
    rows = names.items()
    # 18 names before issue 19, + 9 from its hardening: the access-log bucket (S3.9), the
    # interface endpoints' security group (EC2.10), the TLS cluster parameter group (RDS.38),
    # the enhanced-monitoring role (RDS.6), the payment DLQ, and AWS Backup's vault, plan,
    # selection and role.
    assert len(rows) == 27
    for field, kind, name in rows:
        assert RULES[kind].problems(name) == [], (field, name)
        assert name == name.lower(), (field, name)
        assert "pr6329" in name, (field, name)
    assert names.rds_cluster == "tapstack-payments-pr6329"
    assert names.rds_instances == ("tapstack-payments-pr6329-1", "tapstack-payments-pr6329-2",
                                   "tapstack-payments-pr6329-3")
    assert names.payment_log_group == "/aws/lambda/" + names.payment_function
    assert names.rotation_log_group == "/aws/lambda/" + names.rotation_function
    assert names.s3_access_log_bucket.startswith("tapstack-accesslogs-pr6329-")
    assert names.endpoint_security_group == "tapstack-endpoints-pr6329"
    assert names.monitoring_role == "tapstack-rds-monitoring-pr6329"
    assert names.payment_dlq == "tapstack-payment-dlq-pr6329"
    assert (names.backup_vault, names.backup_plan, names.backup_selection, names.backup_role) \
        == ("tapstack-vault-pr6329", "tapstack-daily-pr6329", "tapstack-aurora-pr6329",
            "tapstack-backup-pr6329")


def test_parameter_group_name_carries_the_engine_major():
    """An engine upgrade creates the new family's group beside the one still in use."""
    assert _create("dev").db_cluster_parameter_group == "tapstack-aurora-tls-dev"
    pg15 = PhysicalNames.create("TapStack", "dev", REGION, ACCOUNT, 2, "15")
    pg16 = PhysicalNames.create("TapStack", "dev", REGION, ACCOUNT, 2, "16")
    assert pg15.db_cluster_parameter_group == "tapstack-aurora-tls-pg15-dev"
    assert pg16.db_cluster_parameter_group == "tapstack-aurora-tls-pg16-dev"
    assert pg15.s3_bucket == pg16.s3_bucket  # nothing else moves with the major


def test_bucket_name_is_stable_and_unique_per_account_region_stack():
    base = _create().s3_bucket
    assert _create().s3_bucket == base
    assert _create(instances=3).s3_bucket == base  # unrelated settings do not move it
    assert _create(account="210987654321").s3_bucket != base
    assert _create(region="us-east-1").s3_bucket != base
    assert _create(suffix="staging").s3_bucket != base
    assert _create(project="OtherStack").s3_bucket != base
    expected = "tapstack-txlogs-dev-" + short_hash(ACCOUNT, REGION, "tapstackdev")
    assert base == expected
    # PR6329 and pr6329 share every other physical name, so they share the bucket too
    assert _create(suffix="PR6329").s3_bucket == _create(suffix="pr6329").s3_bucket
    # the access-log bucket (S3.9) follows the same stable scheme, and is a separate bucket
    logs = _create().s3_access_log_bucket
    assert logs == "tapstack-accesslogs-dev-" + short_hash(ACCOUNT, REGION, "tapstackdev")
    assert logs != base and _create(account="210987654321").s3_access_log_bucket != logs


SUFFIX = st.from_regex(r"[A-Za-z0-9]{1,80}", fullmatch=True)
REGIONS = ("eu-west-2", "us-east-1", "ap-southeast-2", "eu-central-1", "us-gov-west-1")


@settings(max_examples=150, deadline=None)
@given(suffix=SUFFIX, region=st.sampled_from(REGIONS),
       account=st.from_regex(r"[0-9]{12}", fullmatch=True), instances=st.integers(1, 15))
def test_physical_names_always_valid(suffix, region, account, instances):
    names = PhysicalNames.create("TapStack", suffix, region, account, instances)
    for field, kind, name in names.items():
        assert RULES[kind].problems(name) == [], (field, name)
        assert name == name.lower(), (field, name)
    assert len(names.rds_instances) == instances
    assert len(set(names.rds_instances)) == instances
    assert PhysicalNames.create("TapStack", suffix, region, account, instances) == names


@settings(max_examples=100, deadline=None)
@given(prefix=st.from_regex(r"[a-z0-9]{50,70}", fullmatch=True),
       a=st.from_regex(r"[A-Za-z0-9]{1,6}", fullmatch=True),
       b=st.from_regex(r"[A-Za-z0-9]{1,6}", fullmatch=True))
def test_over_long_suffixes_are_shortened_and_stay_unique(prefix, a, b):
    if a.lower() == b.lower():
        return
    one = PhysicalNames.create("TapStack", prefix + a, REGION, ACCOUNT, 2)
    two = PhysicalNames.create("TapStack", prefix + b, REGION, ACCOUNT, 2)
    shortened = 0
    for (field, kind, x), (_, _, y) in zip(one.items(), two.items()):
        assert x != y, f"{field}: both stacks get {x!r}"
        assert RULES[kind].is_valid(x) and RULES[kind].is_valid(y)
        shortened += len(x) == RULES[kind].max_len
    assert shortened >= 3  # the test really exercises the hash shortening
