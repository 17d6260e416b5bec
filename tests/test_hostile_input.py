"""Hostile input: environment files, --set values, ENVIRONMENT_SUFFIX and notebook parameters
written by an attacker or a careless operator.

Each must end in a clean exit 2 before any engine work: a ConfigError/UsageError whose message
names the file, stays under a few KB, shows no traceback and never echoes a value whose
setting's name looks secret - and nothing appears in the emulator. The reproductions of
issue 10 ("Code execution from input", "Input that passes validation but AWS rejects") are one
test each; the fuzz tests throw a few hundred random hostile documents at the loader.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tap_lib import project
from tap_lib.config import (MAX_FILE_BYTES, TAGS_PER_RESOURCE, TAP_TAG_KEYS, Settings,
                            load_settings, region_zones)
from tap_lib.errors import ConfigError

from helpers import live_counts, region_clients, tap

DEV: dict = yaml.safe_load((project.params_dir() / "dev.yaml").read_text())
MESSAGE_LIMIT = 4096
CANARY = "CANARY-hunter2"

# A 1 KB "billion laughs": nine levels of nine aliases, 9**9 strings once expanded.
ALIAS_BOMB = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))


def dev_with(**changes: Any) -> dict:
    data = copy.deepcopy(DEV)
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    return data


def dumped(data: dict) -> bytes:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode()


def tags_with(tags: dict) -> bytes:
    return dumped(dev_with(tags=tags))


# -- pure loading --------------------------------------------------------------------------------

def load_bytes(directory: Path, content: bytes, overrides: tuple[str, ...] = ()) -> Settings:
    (directory / "dev.yaml").write_bytes(content)
    return load_settings("dev", overrides, directory=directory, use_environ=False)


def refused(directory: Path, content: bytes, overrides: tuple[str, ...] = ()) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_bytes(directory, content, overrides)
    exc = info.value
    msg = str(exc)
    assert exc.exit_code == 2
    assert len(msg) < MESSAGE_LIMIT, f"{len(msg)} characters"
    assert "dev.yaml" in msg
    assert CANARY not in msg
    return exc


REPRODUCTIONS = {
    # "Input that passes validation but AWS rejects"
    "tag value of 100 KB": (tags_with({"Owner": "a" * 100_000}), (), "tags.Owner"),
    "tag key with emoji": (tags_with({"Owner\N{GRINNING FACE}": "x"}), (), "GRINNING FACE"),
    "tag key starting aws:": (tags_with({"aws:createdBy": "x"}), (), "aws:"),
    "tag key starting AWS: (any case)": (tags_with({"AwS:x": "x"}), (), "aws:"),
    "tag value starting aws:": (tags_with({"Owner": "aws:x"}), (), "aws:"),
    "NUL byte in a tag value": (tags_with({"Owner": "a\x00b"}), (), "U+0000"),
    "NUL byte in a tag key": (tags_with({"Ow\x00ner": "x"}), (), "U+0000"),
    "NUL byte in a tag via --set": (dumped(DEV), ('tags.Owner="a\\0b"',), "U+0000"),
    "tag key of 129 characters": (tags_with({"k" * 129: "x"}), (), "1 to 128"),
    "a tag tap sets itself": (tags_with({"ManagedBy": "terraform"}), (), "reserved"),
    "more tags than fit beside tap's": (
        tags_with({f"k{i}": "v" for i in range(TAGS_PER_RESOURCE - len(TAP_TAG_KEYS) + 1)}),
        (), f"at most {TAGS_PER_RESOURCE - len(TAP_TAG_KEYS)} tags"),
    "az_count 6 in eu-west-2": (dumped(dev_with(vpc__az_count=6)), (), "eu-west-2 has 3"),
    "az_count 6 in eu-west-2 via --set": (dumped(DEV), ("vpc.az_count=6",), "eu-west-2 has 3"),
    "az_count 3 after --set region=us-west-1": (dumped(dev_with(vpc__az_count=3)),
                                      ("region=us-west-1",), "us-west-1 has 2"),
    # hostile files
    "non-UTF-8": (dumped(DEV).replace(b"payments-platform", b"pay\xffments"), (), "not UTF-8"),
    "UTF-16 file": (dumped(DEV).decode().encode("utf-16"), (), "not UTF-8"),
    "10,000-deep flow sequence": (b"tags: " + b"[" * 10_000 + b"]" * 10_000, (), "nested"),
    "10,000-deep flow mapping": (b"tags: " + b"{a: " * 10_000 + b"}" * 10_000, (), "nested"),
    "1 KB alias bomb": (ALIAS_BOMB.encode(), (), "anchors and aliases"),
    "alias bomb under tags": (dumped(DEV) + b"x: &x [a, a]\ny: [*x, *x]\n", (), "aliases"),
    "merge key": (dumped(DEV) + b"base: &b {a: 1}\nother:\n  <<: *b\n", (), "aliases"),
    # issue 18: YAML accepts these, and the result was last-wins or a silent merge
    "merge key without an anchor": (dumped(DEV).replace(b"vpc:\n", b"vpc:\n  <<: {a: 1}\n", 1),
                                    (), "merge key '<<' at line"),
    "protected: false set twice": (dumped(dev_with(protected=True)) + b"protected: false\n",
                                   (), "field 'protected': set twice"),
    "nested key set twice": (dumped(DEV).replace(b"  az_count: 2\n",
                                                 b"  az_count: 2\n  az_count: 3\n"),
                             (), "field 'vpc.az_count': set twice"),
    "2 MiB file": (dumped(DEV) + b"#" + b"x" * (2 * MAX_FILE_BYTES), (), "larger than"),
    "binary garbage": (bytes(range(256)) * 8, (), "not UTF-8"),
    "control characters": (b"\x01\x02\x03 region: x", (), "not valid YAML"),
    "top-level list": (b"- a\n- b\n", (), "mapping"),
    "top-level scalar": (b"just text\n", (), "mapping"),
    "python object tag": (b"!!python/object/apply:os.system ['true']\n", (), "not valid YAML"),
    "integer of 5000 digits": (dumped(DEV).replace(b"az_count: 2", b"az_count: " + b"9" * 5000),
                               (), "4300 digits"),
    "100 KB unknown key": (dumped(DEV) + b"k" * 100_000 + b": 1\n", (), "dev.yaml"),
    "100 KB --set": (dumped(DEV), ("tags.Owner=" + "a" * 100_000,), "at most 4096"),
    "10,000-deep --set": (dumped(DEV), ("tags.Owner=" + "[" * 10_000,), "dev.yaml (--set"),
    "alias bomb --set": (dumped(DEV), ("tags.Owner={" + ALIAS_BOMB.replace("\n", ", ") + "}",),
                         "dev.yaml (--set"),
}


@pytest.mark.parametrize("name", sorted(REPRODUCTIONS))
def test_reproduction_is_a_clean_config_error(name: str, tmp_path: Path) -> None:
    content, overrides, expected = REPRODUCTIONS[name]
    exc = refused(tmp_path, content, overrides)
    assert expected in str(exc)


def test_a_secret_looking_setting_is_never_echoed(tmp_path: Path) -> None:
    for content, overrides in [
        (tags_with({"ApiKey": CANARY + "\x00"}), ()),
        (tags_with({"DbPassword": CANARY * 100}), ()),
        (dumped(DEV), (f"db.master_password={CANARY}",)),
        (dumped(DEV), (f"tags.SigningToken={CANARY}\x01",)),
        (dumped(DEV), (f"db.password:{CANARY}",)),          # malformed: no '='
        (dumped(dev_with(db__secret_key=CANARY)), ()),
    ]:
        exc = refused(tmp_path, content, overrides)  # refused() asserts no CANARY
        assert "hidden" in str(exc)


def test_the_largest_tag_set_that_fits_is_accepted(tmp_path: Path) -> None:
    room = TAGS_PER_RESOURCE - len(TAP_TAG_KEYS)
    tags = {f"team:{i}/a.b_c=d+e-f@g": f"Zoë {i} x" * 20 for i in range(room)}
    tags["k" * 128] = "v" * 256
    tags.pop(next(iter(tags)))
    s = load_bytes(tmp_path, tags_with(tags))
    assert s.tags == tags and len(s.all_tags()) == room + 4


def test_zones_come_from_the_shipped_table(tmp_path: Path) -> None:
    assert len(region_zones("eu-west-2")) == 3 and len(region_zones("us-east-1")) == 6
    s = load_bytes(tmp_path, dumped(dev_with(region="us-east-1", vpc__az_count=6)))
    assert s.availability_zones == [f"us-east-1{z}" for z in "abcdef"]
    s = load_bytes(tmp_path, dumped(dev_with(region="ap-northeast-1", vpc__az_count=3)))
    assert s.availability_zones == ["ap-northeast-1a", "ap-northeast-1c", "ap-northeast-1d"]


def test_a_region_missing_from_the_table_is_said_so(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from tap_lib import config_aws

    table = copy.deepcopy(config_aws._zone_table())
    del table["zones"]["eu-west-2"]
    monkeypatch.setattr(config_aws, "_zone_table", lambda: table)
    exc = refused(tmp_path, dumped(DEV))
    assert "does not list region eu-west-2" in str(exc) and exc.field == "vpc.az_count"


def test_tap_tag_keys_are_every_tag_tap_adds() -> None:
    """TAP_TAG_KEYS must name every tag the program and the sandbox put on a resource, or the
    50-per-resource budget is wrong: check it against a synthesized stack with the most user
    tags allowed."""
    from tap_lib.engines.sandbox.handlers.base import URN_TAG
    from tap_lib.engines.synth import synthesize

    room = TAGS_PER_RESOURCE - len(TAP_TAG_KEYS) - len(DEV["tags"])
    added = {f"User{i}": "x" for i in range(room)}
    s = load_settings("dev", [f"tags.{k}={v}" for k, v in added.items()], use_environ=False)
    user = {**DEV["tags"], **added}
    assert s.tags == user and URN_TAG in TAP_TAG_KEYS
    syn = synthesize(s)
    assert syn.error is None, syn.error
    tagged = [r for r in syn.registrations if isinstance(r.inputs.get("tags"), dict)]
    assert len(tagged) > 20
    for r in tagged:
        keys = set(r.inputs["tags"]) | {URN_TAG}
        assert keys - set(user) <= set(TAP_TAG_KEYS), (r.type, keys - set(user))
        assert len(keys) <= TAGS_PER_RESOURCE, r.type


# -- fuzz: a few hundred random hostile documents -------------------------------------------------

def _aws_tag_ok(key: str, value: str) -> bool:
    """An independent statement of AWS's tag rule, to judge what the loader accepted."""
    def ok(text: str) -> bool:
        return all(c.isalnum() and unicodedata.category(c)[0] in "LN"
                   or unicodedata.category(c).startswith("Z") or c in "_.:/=+-@" for c in text)
    return (0 < len(key) <= 128 and len(value) <= 256 and ok(key) and ok(value)
            and not key.lower().startswith("aws:") and not value.lower().startswith("aws:"))


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                    st.text(max_size=300), st.binary(max_size=20))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=20)
PATHS = st.sampled_from(["region", "suffix", "environment", "vpc__az_count", "vpc__cidr",
                         "vpc__nat_gateways", "db__instances", "db__engine_version", "db__port",
                         "lambda__memory_mb", "tags", "tags__Owner", "secrets__rotation_days",
                         "bucket__transition_to_ia_days", "extra"])
NASTY_LINES = st.sampled_from([
    "&a x", "*a", "<<: *a", "!!python/object:os.system x", "!!binary aGk=", "? [a]\n: 1",
    "---", "%YAML 1.1", "\t", "\x85", "\ufeff", "{", "[" * 200, "x: !!set {a}",
    "x: !!timestamp 2026-01-01", "'" * 3, "\"\\0\"", "key: " + "9" * 5000, "\\u0000",
    "tags: {Owner: \"\\0\"}", "tags: {\"aws:x\": y}", "vpc: {az_count: 6}",
])


@st.composite
def hostile_documents(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "text", "mutated", "tags", "nested", "aliases",
                                 "spliced"]))
    if kind == "bytes":
        return draw(st.binary(max_size=3000))
    if kind == "text":
        return draw(st.text(max_size=2000)).encode("utf-8", "surrogatepass")
    if kind == "mutated":
        data = dev_with(**{draw(PATHS): draw(VALUES)})
        return yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogatepass")
    if kind == "tags":
        tags = draw(st.dictionaries(st.text(max_size=140), st.text(max_size=300), max_size=60))
        return yaml.safe_dump(dev_with(tags=tags), allow_unicode=True).encode(
            "utf-8", "surrogatepass")
    if kind == "nested":
        depth = draw(st.integers(1, 12_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}"), ("- ", "")]))
        body = opener * depth + "x" + closer * depth if closer else "".join(
            "  " * i + opener for i in range(min(depth, 300))) + "x"
        return f"tags: {body}\n".encode()
    if kind == "aliases":
        levels, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        lines = ["l0: &l0 [lol]"] + [
            f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
        return ("\n".join(lines) + "\n").encode()
    lines = yaml.safe_dump(DEV, sort_keys=False).splitlines()
    at = draw(st.integers(0, len(lines)))
    lines[at:at] = [draw(NASTY_LINES)]
    return "\n".join(lines).encode("utf-8", "surrogatepass")


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(content=hostile_documents())
@example(content=ALIAS_BOMB.encode())
@example(content=b"tags: " + b"[" * 10_000)
@example(content=b"\xff\xfe\x00\x00")
def test_random_hostile_files_load_or_give_a_clean_config_error(content: bytes) -> None:
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        (directory / "dev.yaml").write_bytes(content)
        try:
            s = load_settings("dev", directory=directory, use_environ=False)
        except ConfigError as exc:
            msg = str(exc)
            assert len(msg) < MESSAGE_LIMIT, f"{len(msg)} characters"
            assert "dev.yaml" in msg
            assert exc.exit_code == 2
            return
    # accepted: then it is something AWS accepts too
    assert all(_aws_tag_ok(k, v) for k, v in s.tags.items()), s.tags
    assert len(s.tags) + len(TAP_TAG_KEYS) <= TAGS_PER_RESOURCE
    assert s.vpc.az_count <= len(region_zones(s.region))


# -- the command line, in-process, against a real emulator ----------------------------------------

def emulator_inventory() -> dict[str, int]:
    """How many of each kind of resource the stack creates the emulator holds."""
    return live_counts(region_clients("eu-west-2"), "vpcs", "subnets", "buckets", "clusters",
                       "functions", "secrets", "kms_keys", "roles")


@dataclass
class HostileProject:
    root: Path
    inventory_before: dict[str, int]


@pytest.fixture(scope="module")
def hostile_project(sandbox_home: Path, tmp_path_factory) -> HostileProject:
    """A copy of the project whose params/hostile.yaml each test rewrites; the emulator's
    inventory must be the same after every test as before the first."""
    root = tmp_path_factory.mktemp("hostile-project")
    for part in ("params", "notebooks"):
        shutil.copytree(project.project_dir() / part, root / part)
    shutil.copy(project.project_file(), root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAP_PROJECT_DIR", str(root))
        mp.setenv("TAP_TARGET", "sandbox")
        mp.delenv("ENVIRONMENT_SUFFIX", raising=False)
        project_ = HostileProject(root, emulator_inventory())
        yield project_
        assert emulator_inventory() == project_.inventory_before


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every engine the command opens; a refused command must open none. (Cheaper
    than asking the emulator after each test; hostile_project asks it once at the end.)"""
    from tap_lib.engines import registry

    opened: list[str] = []
    real = registry.engine_class

    def recording(target=None):
        opened.append(str(target))
        return real(target)

    monkeypatch.setattr(registry, "engine_class", recording)
    return opened


def assert_refused(code: int, err: str, names: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and len(err) < MESSAGE_LIMIT
    assert names in err


@pytest.mark.sandbox
@pytest.mark.parametrize("name", sorted(REPRODUCTIONS))
def test_deploy_of_a_hostile_environment_exits_2_and_creates_nothing(
        hostile_project: HostileProject, no_engine: list[str], name: str) -> None:
    content, overrides, expected = REPRODUCTIONS[name]
    path = hostile_project.root / "params" / "hostile.yaml"
    path.write_bytes(content.replace(b"environment: dev", b"environment: hostile"))
    try:
        code, out, err = tap("deploy", "--env", "hostile", "--yes",
                             *[f"--set={o}" for o in overrides])
    finally:  # left behind, an unreadable params file stops every later load (fail closed)
        path.unlink()
    assert_refused(code, err, "hostile.yaml")
    assert out == "" and no_engine == []


@pytest.mark.sandbox
def test_a_refused_deploy_left_the_emulator_as_it_was(hostile_project: HostileProject) -> None:
    """One look at the emulator after the refusals above (hostile_project looks again at the
    end of the module): a deploy that part-created would show here."""
    code, out, err = tap("deploy", "--env", "hostile", "--yes", "--set=vpc.az_count=6")
    assert code == 2
    assert emulator_inventory() == hostile_project.inventory_before


@pytest.mark.sandbox
@pytest.mark.parametrize("suffix", ["prod;rm -rf /", "x" * 100_000, "pr\u00f66329", "\x1b[2J",
                                    "../../etc", "pr 1"])
def test_hostile_environment_suffix_exits_2(hostile_project: HostileProject,
                                            no_engine: list[str], suffix: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", suffix)
    code, out, err = tap("deploy", "--env", "dev", "--yes")
    assert_refused(code, err, "ENVIRONMENT_SUFFIX")
    assert "\x1b" not in err and no_engine == []


@pytest.mark.sandbox
@pytest.mark.parametrize("how", ["ENVIRONMENT_SUFFIX=prod", "ENVIRONMENT_SUFFIX=PROD",
                                 "--set=suffix=Prod"])
def test_squatting_prods_stack_name_exits_2_and_creates_nothing(
        hostile_project: HostileProject, no_engine: list[str], how: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18: `ENVIRONMENT_SUFFIX=prod tap deploy --env dev --yes` created an unprotected
    TapStackprod. It is refused before any engine opens, naming the file that reserves it."""
    argv = ["deploy", "--env", "dev", "--yes"]
    if how.startswith("--set"):
        argv.append(how)
    else:
        monkeypatch.setenv(*how.split("="))
    code, out, err = tap(*argv)
    assert_refused(code, err, "params/prod.yaml")
    assert ("ENVIRONMENT_SUFFIX" in err) == how.startswith("ENV")
    assert "--set suffix" in err or how.startswith("ENV")
    assert out == "" and no_engine == []


@pytest.mark.sandbox
def test_code_in_a_notebook_parameter_name_is_never_run(hostile_project: HostileProject,
                                                        no_engine: list[str],
                                                        tmp_path: Path) -> None:
    """Issue 10: `tap run preflight -p "__import__('os').system('touch /tmp/x');x" 1`."""
    marker = tmp_path / "x"
    code, out, err = tap("run", "preflight", "--env", "dev",
                         "-p", f"__import__('os').system('touch {marker}');x", "1")
    assert_refused(code, err, "preflight.ipynb")
    assert "allowed: env, target, operator" in err
    assert not marker.exists() and no_engine == []
    assert not list(Path(os.environ["TAP_OUTPUTS"]).glob("*/*.ipynb"))  # no record, no run


@pytest.mark.sandbox
@pytest.mark.parametrize("record", ["../../../../etc/shadow", "/etc/passwd",
                                    "../../../../etc/passwd.ipynb"])
def test_audit_export_outside_the_records_root_exits_2(hostile_project: HostileProject,
                                                       record: str) -> None:
    code, out, err = tap("audit", "--export", record)
    assert_refused(code, err, "records root")
    assert out == "" and "root:" not in err  # nothing of /etc/passwd or /etc/shadow
    code, out, err = tap("run", "audit", "--env", "dev", "-p", "export", record)
    assert_refused(code, err, "audit.ipynb")


SET_KEYS = st.sampled_from(["tags.Owner", "tags.X", "region", "suffix", "vpc.az_count",
                            "db.instances", "db.engine_version", "lambda.memory_mb",
                            "vpc.cidr", "db.password", "nosuch.key", "tags"])


@pytest.mark.sandbox
def test_random_hostile_overrides_exit_cleanly(hostile_project: HostileProject) -> None:
    """`tap config --set KEY=VALUE` with random hostile values: exit 0/1/2, never a traceback;
    the emulator's inventory is unchanged afterwards (hostile_project checks it)."""

    @settings(max_examples=120, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(key=SET_KEYS, value=st.one_of(
        st.text(max_size=300), st.sampled_from([
            "\"\\0\"", "[" * 5000, "&a [*a]", "!!python/object:os.system x", "9" * 5000,
            "{" + ALIAS_BOMB.replace("\n", ", ") + "}", "a" * 5000, "aws:x", "6", "16", "0",
            "\"\\x1b[2J\""])))
    def check(key: str, value: str) -> None:
        if "\x00" in value:  # argv cannot carry NUL bytes; "\0" escapes are tried above
            return
        code, out, err = tap("config", "--env", "dev", "--json", f"--set={key}={value}")
        assert code in (0, 1, 2), err
        assert "Traceback" not in err and len(err) < MESSAGE_LIMIT
        if code == 2:
            assert "params/dev.yaml" in err, err

    check()


# -- the stand-in database's host files, written by hand ------------------------------------------

STANDIN_STACK = "TapStackhosts"


@pytest.fixture
def hosts_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TAP_HOME whose stack has one stand-in (cluster c1) that has a port: host_map reads
    its postgres-hosts/c1.json. No server is started; the port comes from tap's conf file."""
    from tap_lib.localdb import CONF_NAME

    monkeypatch.setenv("TAP_HOME", str(tmp_path))
    stack = tmp_path / "sandbox" / "stacks" / STANDIN_STACK
    (stack / "postgres" / "c1").mkdir(parents=True)
    (stack / "postgres" / "c1" / CONF_NAME).write_text("port = 54999\n")
    (stack / "postgres-hosts").mkdir()
    return stack / "postgres-hosts"


def test_a_good_host_file_maps_the_endpoints(hosts_dir: Path) -> None:
    from tap_lib.engines.sandbox import standin

    names = ["c1.cluster-x.eu-west-2.rds.amazonaws.com",
             "c1.cluster-ro-x.eu-west-2.rds.amazonaws.com"]
    (hosts_dir / "c1.json").write_text(json.dumps(names))
    assert standin.host_map(STANDIN_STACK) == {n: "127.0.0.1:54999" for n in names}


CORRUPT_HOSTS = {
    "cut short": (b'["c1.cluster-x.eu-west-2.rds.amaz', "is not JSON"),
    "empty": (b"", "is not JSON"),
    "binary": (bytes(range(256)), "is not JSON"),
    "a mapping": (b'{"c1.cluster-x": 1}', "not a JSON list"),
    "a string": (b'"c1.cluster-x"', "not a JSON list"),   # was mapped character by character
    "a number in the list": (b'["c1.cluster-x", 5]', "not a JSON list"),
    "a URL, not a host": (b'["http://10.0.0.1:5432/"]', "not a JSON list"),
    "a terminal escape": (b'["\\u001b[2Jx"]', "not a JSON list"),
    "4 MiB": (b'["' + b"a" * (4 << 20) + b'"]', "larger than"),
}


@pytest.mark.parametrize("name", sorted(CORRUPT_HOSTS))
def test_a_corrupt_host_file_is_named_in_a_state_corrupt_error(hosts_dir: Path,
                                                               name: str) -> None:
    """Was a raw JSONDecodeError/TypeError traceback, or silently a wrong map."""
    from tap_lib.engines.sandbox import standin
    from tap_lib.errors import StateCorrupt

    content, problem = CORRUPT_HOSTS[name]
    path = hosts_dir / "c1.json"
    path.write_bytes(content)
    with pytest.raises(StateCorrupt) as info:
        standin.host_map(STANDIN_STACK)
    exc = info.value
    assert exc.file == str(path) and problem in str(exc) and exc.exit_code == 3
    assert "cluster c1" in exc.hint and "tap destroy" in exc.hint
    assert len(str(exc)) < MESSAGE_LIMIT and "\x1b" not in str(exc)
    assert path.read_bytes() == content  # left as found, for the operator to look at


def test_a_directory_in_place_of_a_host_file_is_named(hosts_dir: Path) -> None:
    from tap_lib.engines.sandbox import standin
    from tap_lib.errors import StateCorrupt

    (hosts_dir / "c1.json").mkdir()
    with pytest.raises(StateCorrupt, match="cannot be read"):
        standin.host_map(STANDIN_STACK)


def test_the_engine_reports_a_corrupt_host_file_where_verify_asks(hosts_dir: Path) -> None:
    """verify's database login resolves the cluster endpoint through the engine."""
    from tap_lib.engines.sandbox.engine import SandboxEngine
    from tap_lib.errors import StateCorrupt

    (hosts_dir / "c1.json").write_text("[")
    engine = SandboxEngine(load_settings("dev", ["suffix=hosts"], use_environ=False))
    assert engine.stack == STANDIN_STACK
    with pytest.raises(StateCorrupt) as info:
        engine.db_address("c1.cluster-x.eu-west-2.rds.amazonaws.com", 5432)
    assert info.value.file == str(hosts_dir / "c1.json")


def test_a_host_file_is_written_whole_or_not_at_all(hosts_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that dies part-way leaves the previous file intact (it was a truncated file
    before: the next run then failed to read it)."""
    from tap_lib.engines.sandbox import standin

    path = hosts_dir / "c1.json"
    standin._write_hosts(path, ["old.example"])

    def dies(*args):
        raise OSError("disk full")

    monkeypatch.setattr(standin.os, "replace", dies)
    with pytest.raises(OSError):
        standin._write_hosts(path, ["new.example"])
    assert json.loads(path.read_text()) == ["old.example"]
    assert standin.host_map(STANDIN_STACK) == {"old.example": "127.0.0.1:54999"}
