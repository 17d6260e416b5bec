"""Environment files, --set overrides, ENVIRONMENT_SUFFIX and the errors bad configuration gets.

Every bad value must end in a ConfigError that names the file, the field, the value and what is
allowed - never another exception, never a traceback from `tap`.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tap_lib import project
from tap_lib.config import (ENV_NAME_RE, LOG_RETENTION_DAYS, Settings, available_environments,
                            aws_regions, load_settings, parse_override, read_settings_file)
from tap_lib.errors import ConfigError
from tap_lib.naming import RULES

from helpers import tap_process

REPO = Path(__file__).resolve().parents[1]
DEV_DATA: dict = yaml.safe_load((project.params_dir() / "dev.yaml").read_text())


@pytest.fixture(scope="module", autouse=True)
def clean_environment():
    """No ambient ENVIRONMENT_SUFFIX or target; module-scoped so hypothesis tests can use it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ENVIRONMENT_SUFFIX", raising=False)
        mp.setenv("TAP_TARGET", "sandbox")
        yield


def write_env(directory: Path, data: dict, env: str = "dev") -> Path:
    path = directory / f"{env}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def with_value(dotted: str, value: Any) -> dict:
    data = copy.deepcopy(DEV_DATA)
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return data


def without(dotted: str) -> dict:
    data = copy.deepcopy(DEV_DATA)
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    del node[last]
    return data


def load_modified(data: dict) -> tuple[Path, Settings]:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_env(Path(tmp), data)
        return path, load_settings("dev", directory=Path(tmp), use_environ=False)


def config_error(data: dict, **kwargs) -> tuple[Path, ConfigError]:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_env(Path(tmp), data)
        with pytest.raises(ConfigError) as info:
            load_settings("dev", directory=Path(tmp), use_environ=False, **kwargs)
        return path, info.value


# -- the shipped environment files -------------------------------------------------------------

def test_shipped_environment_files_load():
    envs = available_environments()
    assert {"dev", "staging", "prod"} <= set(envs)
    for env in envs:
        s = load_settings(env)
        assert s.environment == env
        assert s.suffix == env
        assert s.stack_name == f"TapStack{env}"
        assert s.region in aws_regions()
        public, private = s.subnet_cidrs()
        assert len(public) == len(private) == s.vpc.az_count
        assert len(s.availability_zones) == s.vpc.az_count


def test_dev_matches_the_seed():
    s = load_settings("dev")
    assert s.region == "eu-west-2"
    assert s.vpc.cidr == "10.0.0.0/16"
    assert s.vpc.nat_gateways == "single"
    assert s.nat_count == 1
    assert s.availability_zones == ["eu-west-2a", "eu-west-2b"]


def test_prod_is_production_shaped():
    s = load_settings("prod")
    assert s.vpc.az_count == 3
    assert s.vpc.nat_gateways == "per_az"
    assert s.nat_count == 3
    assert s.db.instances >= 2
    assert s.db.deletion_protection is True
    assert s.db.backup_retention_days >= 7
    assert s.availability_zones == [f"{s.region}{z}" for z in "abc"]


def test_staging_has_a_nat_per_az():
    s = load_settings("staging")
    assert s.vpc.nat_gateways == "per_az"
    assert s.nat_count == s.vpc.az_count >= 2


def test_environments_do_not_share_a_vpc_range():
    cidrs = [load_settings(env).vpc.cidr for env in ("dev", "staging", "prod")]
    assert len(set(cidrs)) == 3


def test_engine_version_is_a_quoted_string_in_every_file():
    for env in ("dev", "staging", "prod"):
        raw = yaml.safe_load((project.params_dir() / f"{env}.yaml").read_text())
        assert isinstance(raw["db"]["engine_version"], str), env


# -- --set overrides ----------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("db.engine_version=15.10", ("db.engine_version", "15.10")),
    ("db.engine_version=15.6", ("db.engine_version", "15.6")),
    ("lambda.memory_mb=512", ("lambda.memory_mb", 512)),
    ("db.deletion_protection=true", ("db.deletion_protection", True)),
    ("db.deletion_protection=false", ("db.deletion_protection", False)),
    ("tags.Owner=team a=b", ("tags.Owner", "team a=b")),
    ("tags.Owner=", ("tags.Owner", "")),
    ("tags.Owner=[1, 2]", ("tags.Owner", "[1, 2]")),
    (" region = eu-west-1", ("region", "eu-west-1")),
])
def test_parse_override(text, expected):
    key, value = parse_override(text)
    assert (key, value) == expected
    assert type(value) is type(expected[1])


@pytest.mark.parametrize("text", ["novalue", "=x", "1db.instances=2", "db..instances=2",
                                  "db.instances.=2", "db instances=2"])
def test_parse_override_rejects_malformed(text):
    with pytest.raises(ConfigError) as info:
        parse_override(text)
    assert "--set" in str(info.value)
    assert repr(text) in str(info.value)


def test_overrides_apply_with_types():
    s = load_settings("dev", ["db.engine_version=15.10", "lambda.memory_mb=512",
                              "db.deletion_protection=true", "vpc.az_count=3"])
    assert s.db.engine_version == "15.10"
    assert s.function.memory_mb == 512 and type(s.function.memory_mb) is int
    assert s.db.deletion_protection is True
    assert s.vpc.az_count == 3
    assert len(s.availability_zones) == 3
    p = load_settings("prod", ["db.deletion_protection=false"])
    assert p.db.deletion_protection is False
    assert load_settings("dev").db.engine_version == "15.6"  # the file is untouched


def test_override_is_validated_and_blamed_on_the_override():
    with pytest.raises(ConfigError) as info:
        load_settings("dev", ["lambda.memory_mb=64"])
    exc = info.value
    assert exc.field == "lambda.memory_mb"
    assert "params/dev.yaml (--set lambda.memory_mb)" in str(exc)
    assert "64" in str(exc) and "128" in str(exc)
    assert exc.exit_code == 2


def test_override_of_unknown_key_lists_allowed_keys():
    with pytest.raises(ConfigError) as info:
        load_settings("dev", ["db.engin_version=15.6"])
    msg = str(info.value)
    assert "field 'db.engin_version'" in msg and "unknown setting" in msg
    for key in ("engine_version", "instance_class", "instances", "deletion_protection"):
        assert key in info.value.allowed


def test_override_below_a_scalar_is_rejected():
    with pytest.raises(ConfigError) as info:
        load_settings("dev", ["region.name=eu-west-1"])
    assert info.value.field == "region.name"
    assert "params/dev.yaml" in str(info.value)


def test_float_override_for_a_string_setting_keeps_its_text():
    s = load_settings("dev", ["db.engine_version=16.10"])
    assert s.db.engine_version == "16.10"


# -- ENVIRONMENT_SUFFIX -------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["PR6329", "pr6329"])
def test_environment_suffix_overrides_the_stack_name(monkeypatch, suffix):
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", suffix)
    s = load_settings("dev")
    assert s.suffix == suffix
    assert s.stack_name == f"TapStack{suffix}"
    assert s.region == "eu-west-2"
    assert s.environment == "dev"
    assert load_settings("dev", use_environ=False).stack_name == "TapStackdev"


@pytest.mark.parametrize("suffix", ["pr-6329", "pr_6329", "a" * 25, "prö"])
def test_bad_environment_suffix_is_blamed_on_the_variable(monkeypatch, suffix):
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", suffix)
    with pytest.raises(ConfigError) as info:
        load_settings("dev")
    msg = str(info.value)
    assert "ENVIRONMENT_SUFFIX" in msg and "field 'suffix'" in msg and repr(suffix) in msg


# -- errors name file, field, value and what is allowed -----------------------------------------

@pytest.mark.parametrize("dotted,value,allowed", [
    ("region", "eu-west-9", "eu-west-2"),
    ("region", "EU-WEST-2", "us-east-1"),
    ("vpc.cidr", "10.0.0.0/8", "/16 to /24"),
    ("vpc.cidr", "10.0.0.1/16", "10.0.0.0/16"),
    ("vpc.cidr", "8.8.0.0/16", "private"),
    ("vpc.az_count", 7, "6"),
    ("vpc.az_count", 1, "2"),
    ("vpc.nat_gateways", "triple", "'per_az'"),
    ("vpc.flow_logs_retention_days", 13, "14"),
    ("db.engine_version", 15.6, "string"),
    ("db.engine_version", "15", "MAJOR.MINOR"),
    ("db.instance_class", "r6g.large", "db.<family>.<size>"),
    ("db.instances", 0, "1"),
    ("db.backup_retention_days", 36, "35"),
    ("db.database_name", "Payments", "lowercase"),
    ("lambda.memory_mb", 100000, "10240"),
    ("lambda.log_retention_days", 10, "3653"),
    ("bucket.transition_to_ia_days", 5, "30"),
    ("suffix", "pr-6329", "letters or digits"),
    ("environment", "Dev", "lowercase"),
])
def test_bad_value_error_names_file_field_value_and_allowed(dotted, value, allowed):
    path, exc = config_error(with_value(dotted, value))
    msg = str(exc)
    assert str(path) in msg
    assert f"field '{dotted}'" in msg
    assert repr(value) in msg
    assert allowed in msg
    assert (exc.file, exc.field, exc.value) == (str(path), dotted, value)
    assert exc.exit_code == 2


@pytest.mark.parametrize("dotted,allowed_key", [
    ("regoin", "region"), ("vpc.nat_gatways", "nat_gateways"), ("db.engin_version", "engine_version"),
    ("lambda.memory", "memory_mb"), ("secrets.rotation", "rotation_days"),
])
def test_unknown_key_is_rejected_with_allowed_keys(dotted, allowed_key):
    path, exc = config_error(with_value(dotted, "x"))
    msg = str(exc)
    assert str(path) in msg and f"field '{dotted}'" in msg and "unknown setting" in msg
    assert allowed_key in exc.allowed and allowed_key in msg


def test_missing_setting_is_named():
    path, exc = config_error(without("vpc.cidr"))
    assert exc.field == "vpc.cidr" and "missing" in str(exc) and str(path) in str(exc)


def test_unreadable_files_are_config_errors(tmp_path):
    (tmp_path / "dev.yaml").write_text("vpc: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_settings("dev", directory=tmp_path, use_environ=False)
    assert "not valid YAML" in str(info.value) and str(tmp_path / "dev.yaml") in str(info.value)
    (tmp_path / "dev.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError) as info:
        load_settings("dev", directory=tmp_path, use_environ=False)
    assert "mapping" in str(info.value)


@pytest.mark.parametrize("env", ["nosuch", "../params/dev", "Dev", ""])
def test_unknown_environment_lists_the_available_ones(env):
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.field == "--env"
    assert "dev" in info.value.allowed and "prod" in info.value.allowed


def test_a_rejected_environment_name_is_never_listed_as_allowed(tmp_path):
    """Files whose names --env refuses (upper case, '_', a leading digit) used to be offered
    as the allowed names in the very error that refused them."""
    for name in ("Prod_Copy", "UPPER", "9lives", "dev", "ok-env"):
        write_env(tmp_path, copy.deepcopy(DEV_DATA), name)
    (tmp_path / "dir.yaml").mkdir()
    for env in ("Prod_Copy", "UPPER", "9lives", "x y"):
        with pytest.raises(ConfigError) as info:
            load_settings(env, directory=tmp_path, use_environ=False)
        allowed = info.value.allowed.split(", ")
        assert "not a valid environment name" in str(info.value)
        assert env not in allowed and allowed == ["dev", "ok-env"]
    with pytest.raises(ConfigError, match="no such environment file") as info:
        load_settings("dir", directory=tmp_path, use_environ=False)
    assert "dir" not in info.value.allowed.split(", ")


@settings(max_examples=60, deadline=None)
@given(names=st.lists(st.text(alphabet="abcXY_-.9 ", min_size=1, max_size=8), max_size=6))
def test_every_listed_environment_is_one_env_accepts(names):
    """The allowed list and --env's own rule agree, whatever files the directory holds."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            with contextlib.suppress(OSError):
                (Path(tmp) / f"{name}.yaml").write_text("environment: x\n")
        listed = available_environments(Path(tmp))
        assert all(ENV_NAME_RE.fullmatch(env) for env in listed)
        for name in names:
            if not ENV_NAME_RE.fullmatch(name):
                with pytest.raises(ConfigError) as info:
                    load_settings(name, directory=Path(tmp), use_environ=False)
                assert name not in (info.value.allowed or "").split(", ")


# -- keys YAML accepts but an environment file may not hold --------------------------------------

DEV_TEXT = (project.params_dir() / "dev.yaml").read_text()


def dev_lines() -> list[str]:
    return DEV_TEXT.splitlines()


def line_of(prefix: str) -> int:
    return next(i for i, line in enumerate(dev_lines(), 1) if line.startswith(prefix))


def text_error(tmp_path: Path, text: str, name: str = "dev") -> ConfigError:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(name, directory=tmp_path, use_environ=False)
    assert path.read_text() == text  # nothing rewrote the file
    assert str(path) in str(info.value) and info.value.exit_code == 2
    return info.value


def test_a_top_level_key_set_twice_names_both_lines(tmp_path):
    """Last-wins would let a trailing line undo an earlier one, unseen."""
    exc = text_error(tmp_path, DEV_TEXT + "region: us-east-1\n")
    assert exc.field == "region"
    assert f"line {line_of('region:')} and line {len(dev_lines()) + 1}" in str(exc)


def test_a_nested_key_set_twice_names_its_path_and_both_lines(tmp_path):
    lines = dev_lines()
    at = line_of("  az_count:")
    lines.insert(at + 1, "  az_count: 3")  # two lines further down, still under vpc
    exc = text_error(tmp_path, "\n".join(lines) + "\n")
    assert exc.field == "vpc.az_count"
    assert f"line {at} and line {at + 2}" in str(exc)


@pytest.mark.parametrize("tags, field", [
    ("tags: {Owner: a, Owner: b}", "tags.Owner"),
    ("tags: {1: a, 0x1: b}", "tags.0x1"),          # the same key once read: 1 == 0x1
    ("tags:\n  Owner: a\n  'Owner': b", "tags.Owner"),
])
def test_keys_that_read_as_the_same_key_are_duplicates(tmp_path, tags, field):
    text = DEV_TEXT.replace("tags:\n  Owner: payments-platform\n  CostCenter: pay-dev\n",
                            tags + "\n")
    assert text != DEV_TEXT
    exc = text_error(tmp_path, text)
    assert exc.field == field and "set twice" in str(exc)


def test_duplicates_inside_a_list_of_mappings_are_found(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text("stacks:\n  - env: dev\n    suffix: a\n  - env: dev\n    env: prod\n")
    with pytest.raises(ConfigError) as info:
        read_settings_file(path)
    assert info.value.field == "stacks[1].env" and "line 4 and line 5" in str(info.value)


@pytest.mark.parametrize("merge", ["  <<: {az_count: 3}", "  <<: [{az_count: 3}, {cidr: x}]"])
def test_the_merge_key_is_refused_with_its_line(tmp_path, merge):
    """No anchor needed: an inline `<<` mapping was merged silently, though the loader's own
    message said `<<` was not allowed."""
    lines = dev_lines()
    at = line_of("vpc:")
    lines.insert(at, merge)
    lines.remove("  az_count: 2")
    exc = text_error(tmp_path, "\n".join(lines) + "\n")
    assert "merge key '<<'" in str(exc) and f"line {at + 1}" in str(exc)
    assert exc.field == "vpc.<<"


def test_a_quoted_merge_key_is_just_an_unknown_setting(tmp_path):
    exc = text_error(tmp_path, DEV_TEXT.replace("vpc:\n", "vpc:\n  '<<': {az_count: 3}\n", 1))
    assert exc.field == "vpc.<<" and "unknown setting" in str(exc)


@pytest.mark.parametrize("cidr", ["127.0.0.0/16", "169.254.0.0/16", "0.0.0.0/16",
                                  "198.18.0.0/16", "240.0.0.0/16"])
def test_vpc_cidr_must_be_rfc1918(cidr):
    """The validator promises 'a private (RFC 1918) range'; ipaddress.is_private is wider
    (loopback, link-local, 0.0.0.0/8, benchmarking, reserved)."""
    path, exc = config_error(with_value("vpc.cidr", cidr))
    assert "field 'vpc.cidr'" in str(exc)


def test_engine_version_digits_are_ascii():
    """'\\d' also matches other scripts' digits, which no engine version uses."""
    path, exc = config_error(with_value("db.engine_version", "\u0661\u0665.\u0666"))
    assert "field 'db.engine_version'" in str(exc)


# -- properties: random bad values and unknown keys ---------------------------------------------

def _rfc1918_cidr_ok(v: Any) -> bool:
    import ipaddress

    if not isinstance(v, str):
        return False
    try:
        net = ipaddress.IPv4Network(v, strict=True)
    except ValueError:
        return False
    private = [ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
    return 16 <= net.prefixlen <= 24 and any(net.subnet_of(p) for p in private)


NOT_A_NUMBER = st.text(alphabet=st.characters(categories=["L", "P", "S", "Zs"]),
                       min_size=1, max_size=20)
ANY_TEXT = st.text(max_size=40)
OCTET = st.integers(0, 255)
CIDR_SHAPED = st.builds(lambda a, b, c, d, p: f"{a}.{b}.{c}.{d}/{p}",
                        st.sampled_from([10, 172, 192, 0, 8, 100, 127, 169, 198, 240, 300]),
                        OCTET, OCTET, OCTET,
                        st.integers(0, 40))

BAD_VALUES: dict[str, st.SearchStrategy] = {
    "region": st.one_of(ANY_TEXT.filter(lambda v: v not in aws_regions()), st.integers(),
                        st.booleans(), st.lists(st.sampled_from(["eu-west-2", "x"]), max_size=2)),
    "vpc.cidr": st.one_of(ANY_TEXT, CIDR_SHAPED, st.integers()).filter(
        lambda v: not _rfc1918_cidr_ok(v)),
    "vpc.az_count": st.one_of(st.integers().filter(lambda v: not 2 <= v <= 6), NOT_A_NUMBER,
                              st.floats(allow_nan=False).filter(
                                  lambda v: not (v.is_integer() and 2 <= v <= 6))),
    "vpc.nat_gateways": st.one_of(ANY_TEXT.filter(lambda v: v not in ("single", "per_az")),
                                  st.integers(), st.booleans()),
    "db.engine_version": st.one_of(
        ANY_TEXT.filter(lambda v: not re.fullmatch(r"\d{2}\.\d{1,2}", v)),
        st.floats(allow_nan=False), st.integers()),
    "lambda.memory_mb": st.one_of(st.integers().filter(lambda v: not 128 <= v <= 10240),
                                  NOT_A_NUMBER),
    "lambda.log_retention_days": st.one_of(
        st.integers().filter(lambda v: v not in LOG_RETENTION_DAYS), NOT_A_NUMBER),
    "vpc.flow_logs_retention_days": st.one_of(
        st.integers().filter(lambda v: v not in LOG_RETENTION_DAYS), NOT_A_NUMBER),
    "suffix": st.one_of(ANY_TEXT.filter(lambda v: not re.fullmatch(r"[A-Za-z0-9]{1,24}", v)),
                        st.integers(), st.booleans()),
    "db.instances": st.one_of(st.integers().filter(lambda v: not 1 <= v <= 16), NOT_A_NUMBER),
}


def _round_trips(value: Any) -> bool:
    try:
        return yaml.safe_load(yaml.safe_dump({"v": value}, allow_unicode=True)) == {"v": value}
    except yaml.YAMLError:
        return False


@pytest.mark.parametrize("dotted", sorted(BAD_VALUES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_random_bad_values_give_a_clean_config_error(dotted, data):
    value = data.draw(BAD_VALUES[dotted].filter(_round_trips), label="value")
    with tempfile.TemporaryDirectory() as tmp:
        path = write_env(Path(tmp), with_value(dotted, value))
        try:
            load_settings("dev", directory=Path(tmp), use_environ=False)
        except ConfigError as exc:
            msg = str(exc)
            assert f"field '{dotted}'" in msg
            assert str(path) in msg
            assert repr(value) in msg
        else:
            pytest.fail(f"{dotted}={value!r} was accepted")


KNOWN_KEYS = {
    None: {"environment", "suffix", "region", "vpc", "db", "secrets", "lambda", "function",
           "bucket", "tags"},
    "vpc": {"cidr", "az_count", "nat_gateways", "flow_logs_retention_days"},
    "db": {"engine_version", "instance_class", "instances", "backup_retention_days",
           "deletion_protection", "database_name", "app_username", "port"},
    "secrets": {"rotation_enabled", "rotation_days"},
    "lambda": {"memory_mb", "timeout_s", "log_retention_days"},
    "bucket": {"transition_to_ia_days", "noncurrent_expiration_days"},
}
KEY = st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,15}", fullmatch=True),
                st.text(min_size=1, max_size=12))


@settings(max_examples=80, deadline=None)
@given(section=st.sampled_from(sorted(KNOWN_KEYS, key=str)), key=KEY,
       value=st.one_of(st.integers(), st.text(max_size=5), st.none()))
def test_random_unknown_keys_give_a_clean_config_error(section, key, value):
    if key in KNOWN_KEYS[section] or not _round_trips({key: value}):
        return
    data = copy.deepcopy(DEV_DATA)
    (data[section] if section else data)[key] = value
    dotted = f"{section}.{key}" if section else key
    with tempfile.TemporaryDirectory() as tmp:
        path = write_env(Path(tmp), data)
        with pytest.raises(ConfigError) as info:
            load_settings("dev", directory=Path(tmp), use_environ=False)
    msg = str(info.value)
    shown = dotted if dotted.isprintable() else repr(dotted)[1:-1]  # no raw control characters
    assert f"field '{shown}'" in msg and "unknown setting" in msg and str(path) in msg
    some_known = sorted(KNOWN_KEYS[section] - {"function"})[0]
    assert some_known in info.value.allowed


def _int_like(v: Any) -> bool:
    try:
        return float(str(v).replace("_", "")).is_integer()
    except ValueError:
        return False


# What an accepted override must have been: anything else that loads is a validation hole.
ACCEPTABLE_OVERRIDES = {
    "region": lambda v: v in aws_regions(),
    "vpc.nat_gateways": lambda v: v in ("single", "per_az"),
    "db.engine_version": lambda v: isinstance(v, str) and re.fullmatch(r"\d{2}\.\d{1,2}", v),
    "db.instances": lambda v: _int_like(v) and 1 <= int(float(str(v).replace("_", ""))) <= 16,
}


@pytest.mark.parametrize("dotted", sorted(ACCEPTABLE_OVERRIDES))
@settings(max_examples=40, deadline=None)
@given(raw=st.text(max_size=30))
@example(raw="abc")
@example(raw="15.10")
@example(raw="[unclosed")
@example(raw="a: b")
@example(raw="null")
@example(raw="2024-01-01")
def test_random_overrides_load_or_give_a_clean_config_error(dotted, raw):
    _, value = parse_override(f"{dotted}={raw}")
    try:
        load_settings("dev", [f"{dotted}={raw}"], use_environ=False)
    except ConfigError as exc:
        assert f"field '{dotted}'" in str(exc)
        assert f"(--set {dotted})" in str(exc)
    else:
        assert ACCEPTABLE_OVERRIDES[dotted](value), f"--set {dotted}={raw!r} was accepted"


@settings(max_examples=40, deadline=None)
@given(suffix=st.text(alphabet=st.characters(blacklist_categories=["Cs"],
                                             blacklist_characters="\x00"),
                      min_size=1, max_size=40).filter(
    lambda v: not re.fullmatch(r"[A-Za-z0-9]{1,24}", v)))
def test_random_bad_environment_suffix_gives_a_clean_config_error(suffix):
    old = os.environ.get("ENVIRONMENT_SUFFIX")
    os.environ["ENVIRONMENT_SUFFIX"] = suffix
    try:
        with pytest.raises(ConfigError) as info:
            load_settings("dev")
    finally:
        if old is None:
            del os.environ["ENVIRONMENT_SUFFIX"]
        else:
            os.environ["ENVIRONMENT_SUFFIX"] = old
    assert "ENVIRONMENT_SUFFIX" in str(info.value) and "field 'suffix'" in str(info.value)


# -- `tap config` -------------------------------------------------------------------------------

def run_tap(*args: str, suffix: str | None = None) -> subprocess.CompletedProcess:
    """`tap ARGS` from the repository, on the sandbox, ENVIRONMENT_SUFFIX=`suffix` or unset."""
    env = {"TAP_TARGET": "sandbox", "ENVIRONMENT_SUFFIX": suffix or None}
    return tap_process(*args, env=env, cwd=REPO, timeout=120)


def test_tap_config_bad_value_exits_2_without_traceback():
    proc = run_tap("config", "--env", "dev", "--set", "db.instances=abc")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "params/dev.yaml" in proc.stderr
    assert "db.instances" in proc.stderr and "'abc'" in proc.stderr
    assert proc.stdout == ""


def test_tap_config_unknown_environment_exits_2():
    proc = run_tap("config", "--env", "nosuch")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "dev" in proc.stderr and "prod" in proc.stderr and "staging" in proc.stderr


def _names_section(stdout: str) -> list[str]:
    lines = stdout.split("physical names:", 1)[1].strip().splitlines()
    return lines[1:]  # without the header row


def test_tap_config_pr_stack_shows_region_and_lowercase_names():
    proc = run_tap("config", "--env", "dev", suffix="PR6329")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "TapStackPR6329" in out
    assert "region: eu-west-2" in out
    rows = _names_section(out)
    assert len(rows) >= 16
    for row in rows:
        resource, kind, name, valid = row.split()
        assert valid == "True", row
        assert name == name.lower(), row
    assert any("tapstack-payments-pr6329" in row for row in rows)


def test_tap_config_json():
    proc = run_tap("config", "--env", "dev", "--json", suffix="PR6329")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["stack"] == "TapStackPR6329"
    assert doc["settings"]["region"] == "eu-west-2"
    assert doc["settings"]["suffix"] == "PR6329"
    assert doc["settings"]["db"]["engine_version"] == "15.6"
    names = {row["resource"]: row for row in doc["names"]}
    for field in ("rds_cluster", "rds_instances", "db_subnet_group", "s3_bucket", "db_secret",
                  "payment_function", "rotation_function", "payment_role", "kms_alias"):
        assert field in names, field
    for row in doc["names"]:
        assert row["valid"] is True and row["problems"] == ""
        assert row["name"] == row["name"].lower()
        assert RULES[row["kind"]].is_valid(row["name"])


def test_tap_config_applies_overrides():
    proc = run_tap("config", "--env", "dev", "--json", "--set", "db.instances=3",
                   "--set", "db.engine_version=15.10")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["settings"]["db"]["engine_version"] == "15.10"
    assert [r["name"] for r in doc["names"] if r["resource"] == "rds_instances"] == [
        "tapstack-payments-dev-1", "tapstack-payments-dev-2", "tapstack-payments-dev-3"]


# -- policy exceptions (issue 19) ----------------------------------------------------------
EXCEPTION = {"control": "RDS.7", "resource": "aurora-cluster", "owner": "payments-platform",
             "reason": "dev is rebuilt daily and holds synthetic data only",
             "expires": "2027-06-30"}


def _dev_with(*entries: Any) -> Any:
    import yaml as _yaml

    from tap_lib.config import validate

    data = _yaml.safe_load((Path(__file__).parents[1] / "params" / "dev.yaml").read_text())
    return validate({**data, "exceptions": list(entries)}, "params/dev.yaml")


@pytest.mark.parametrize("field, value, says", [
    ("expires", "next June", "must be an ISO date"),
    ("expires", 20270630, "must be an ISO date"),
    ("reason", "because", "at least 20 characters"),
    ("resource", "aurora cluster", "logical resource name"),
    ("owner", "", "at least 1 character"),
    ("control", 7, "valid string"),
])
def test_bad_exception_entries_name_file_and_field(field: str, value: Any, says: str):
    with pytest.raises(ConfigError) as info:
        _dev_with({**EXCEPTION, field: value})
    assert info.value.file == "params/dev.yaml"
    assert info.value.field == f"exceptions.0.{field}" and says in str(info.value)


def test_exception_entry_missing_or_unknown_keys_list_the_allowed_ones():
    with pytest.raises(ConfigError) as info:
        _dev_with({k: v for k, v in EXCEPTION.items() if k != "owner"})
    assert info.value.field == "exceptions.0.owner" and "missing" in str(info.value)
    with pytest.raises(ConfigError) as info:
        _dev_with({**EXCEPTION, "approved_by": "me"})
    assert info.value.allowed == "control, expires, owner, reason, resource"


def test_exception_dates_read_from_yaml_or_text_and_cover_by_logical_name():
    import datetime

    s = _dev_with(EXCEPTION, {**EXCEPTION, "control": "RDS.11",
                              "expires": datetime.date(2020, 1, 1)})
    assert s.exceptions[0].expires == datetime.date(2027, 6, 30)
    assert s.exception_for("RDS.7", "aurora-cluster-dev") is s.exceptions[0]
    assert s.exception_for("RDS.7", "aurora-instance-0-dev") is None
    assert s.exception_for("RDS.11", "aurora-cluster-dev") is None     # expired
    assert s.public_dict()["exceptions"][0]["expires"] == "2027-06-30"


def test_shipped_exceptions_are_owned_explained_and_prod_only_the_justified_ones():
    for env in ("dev", "staging"):
        excs = load_settings(env, use_environ=False).exceptions
        assert {e.control for e in excs} >= {"RDS.7", "RDS.11"}
        assert all(e.owner and len(e.reason) >= 40 and not e.expired() for e in excs)
    # Issue 19: prod excepts exactly the two controls the access-log bucket cannot meet by
    # design, on that bucket alone: S3.9 (a log target does not log itself) and S3.17 (server
    # access logs are delivered only to SSE-S3 targets, never SSE-KMS); the resource policy
    # of the master secret RDS owns, on the cluster alone; and four that cannot apply to a
    # stack: the account's CloudTrail trail, MFA delete (root only), a second region's
    # replica, the database port (a policy choice, not protection).
    prod = load_settings("prod", use_environ=False)
    excs = {e.control: e for e in prod.exceptions}
    master = "secretsmanager_has_restrictive_resource_policy"
    trail = "awslambda_function_invoke_api_operations_cloudtrail_logging_enabled"
    replica = "s3_bucket_cross_region_replication"
    port = "rds_cluster_non_default_port"
    assert sorted(excs) == sorted(["S3.17", "S3.9", master, trail, "S3.20", replica, "RDS.23",
                                   port])
    assert len(prod.exceptions) == len(excs)
    assert all(e.owner and len(e.reason) >= 80 and not e.expired() for e in prod.exceptions)
    assert all("deferred" not in e.reason for e in prod.exceptions)   # policy, never a to-do
    assert excs[trail].resource == "all" and "account" in excs[trail].reason
    assert "root" in excs["S3.20"].reason and "region" in excs[replica].reason
    assert excs[port].resource == "aurora-cluster" and "RDS.23" in excs[port].reason
    assert excs[master].resource == "aurora-cluster" and "RDS" in excs[master].reason
    assert prod.exception_for(master, "db-app-credentials-prod") is None  # the app secret: none
    for e in (excs["S3.9"], excs["S3.17"]):
        assert e.resource == "access-logs" and e.owner and not e.expired()
    assert "log target" in excs["S3.9"].reason
    assert "SSE-S3" in excs["S3.17"].reason and "SSE-KMS" in excs["S3.17"].reason
    # they cover the access-log bucket and nothing else, e.g. not the transaction-log bucket
    assert prod.exception_for("S3.9", "access-logs-prod") is excs["S3.9"]
    assert prod.exception_for("S3.17", "access-logs-prod") is excs["S3.17"]
    assert prod.exception_for("S3.9", "transaction-logs-prod") is None
    assert prod.exception_for("S3.17", "transaction-logs-prod") is None


def test_the_region_list_is_botocores():
    """aws_regions reads botocore's endpoints file itself (no boto3 session per command): the
    same regions boto3 offers for EC2, no more, no fewer."""
    import boto3

    assert aws_regions() == tuple(sorted(boto3.session.Session().get_available_regions("ec2")))
    assert "eu-west-2" in aws_regions() and "us-gov-west-1" not in aws_regions()


# -- secrets.deployer_roles: who else may deploy past the application secret's Deny -------------

def test_deployer_roles_load_as_role_arns():
    data = copy.deepcopy(DEV_DATA)
    roles = ["arn:aws:iam::123456789012:role/tap-deployer",
             "arn:aws:iam::123456789012:role/ops/break-glass"]
    data.setdefault("secrets", {})["deployer_roles"] = roles
    _, s = load_modified(data)
    assert s.secrets.deployer_roles == tuple(roles)
    assert load_settings("dev").secrets.deployer_roles == ()


@pytest.mark.parametrize("value", [
    ["arn:aws:iam::123456789012:user/alice"],          # a user, not a role
    ["arn:aws:sts::123456789012:assumed-role/R/s"],    # a session: the policy names the role
    ["arn:aws:iam::12345:role/short-account"],
    ["tap-deployer"],
    "arn:aws:iam::123456789012:role/not-a-list",
    [7],
])
def test_a_deployer_role_that_is_not_a_role_arn_is_refused(value):
    data = copy.deepcopy(DEV_DATA)
    data.setdefault("secrets", {})["deployer_roles"] = value
    path, exc = config_error(data)
    assert exc.field.startswith("secrets.deployer_roles"), exc.field
    assert exc.file == str(path)
