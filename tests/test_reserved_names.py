"""A stack name a protected environment file produces is produced by no other file, suffix or
override (issue 18): `ENVIRONMENT_SUFFIX=prod tap deploy --env dev` once created an unprotected
TapStackprod. Every refusal is a ConfigError raised by load_settings, before anything runs,
naming the protected file, what produced the name and what to do.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tap_lib import cli, config_reserved, config_yaml, project
from tap_lib.config import SUFFIX_RE, load_settings
from tap_lib.errors import ConfigError
from tap_lib.naming import PhysicalNames, suffix_key

PARAMS = project.params_dir()
PROD_TEXT = (PARAMS / "prod.yaml").read_text()
DEV_TEXT = (PARAMS / "dev.yaml").read_text()


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    monkeypatch.delenv("ENVIRONMENT_SUFFIX", raising=False)
    config_reserved.clear_cache()


@pytest.fixture
def params(tmp_path) -> Path:
    """A params directory like the shipped one: dev, staging, and the protected prod."""
    directory = tmp_path / "params"
    directory.mkdir()
    for name in ("dev", "staging", "prod"):
        shutil.copy(PARAMS / f"{name}.yaml", directory)
    return directory


def refused(env: str, directory: Path, overrides=(), suffix: str | None = None,
            monkeypatch=None) -> ConfigError:
    if suffix is not None:
        monkeypatch.setenv("ENVIRONMENT_SUFFIX", suffix)
    with pytest.raises(ConfigError) as info:
        load_settings(env, overrides, directory=directory)
    return info.value


def copy_of(text: str, env: str, *replace: tuple[str, str]) -> str:
    """An environment file's text under another environment name, with `replace` applied."""
    for old, new in (("environment: dev", f"environment: {env}"),
                     ("environment: prod", f"environment: {env}"), *replace):
        text = text.replace(old, new)
    return text


# -- what produces the name ------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["prod", "PROD", "Prod", "pRoD"])
def test_environment_suffix_cannot_take_a_protected_files_name(params, monkeypatch, suffix):
    exc = refused("dev", params, suffix=suffix, monkeypatch=monkeypatch)
    msg = str(exc)
    assert exc.exit_code == 2 and exc.field == "suffix" and exc.value == suffix
    assert "environment variable ENVIRONMENT_SUFFIX" in exc.file
    assert str(params / "prod.yaml") in msg and "TapStackprod is reserved" in msg
    assert str(params / "dev.yaml") in msg
    assert "unset ENVIRONMENT_SUFFIX" in exc.hint and "--env prod" in exc.hint
    assert ("differs only in case" in msg) == (suffix != "prod")


@pytest.mark.parametrize("suffix", [" prod", "prod ", "prod\n", "\tPROD", "pro d"])
def test_whitespace_variants_of_a_reserved_suffix_are_refused(params, monkeypatch, suffix):
    exc = refused("dev", params, suffix=suffix, monkeypatch=monkeypatch)
    assert "ENVIRONMENT_SUFFIX" in str(exc) and exc.field == "suffix"


@pytest.mark.parametrize("override", ["suffix=prod", "suffix= PROD ", "suffix='Prod'"])
def test_a_set_override_cannot_take_a_protected_files_name(params, override):
    exc = refused("dev", params, [override])
    assert exc.file == f"{params / 'dev.yaml'} (--set suffix)"
    assert str(params / "prod.yaml") in str(exc) and "drop --set suffix" in exc.hint


def test_an_unprotected_files_own_suffix_field_cannot_take_it(params):
    (params / "mine.yaml").write_text(copy_of(DEV_TEXT, "mine", ("suffix: dev", "suffix: Prod")))
    exc = refused("mine", params)
    assert exc.file == str(params / "mine.yaml") and exc.field == "suffix"
    assert str(params / "prod.yaml") in str(exc)
    assert f"change 'suffix' in {params / 'mine.yaml'}" in exc.hint


def test_two_protected_files_cannot_own_one_stack(params):
    """A copied prod file (protected, same suffix) would deploy other settings onto prod's
    stack: neither file loads until one of them changes its suffix."""
    (params / "prod-dr.yaml").write_text(copy_of(PROD_TEXT, "prod-dr"))
    for env, other in (("prod-dr", "prod"), ("prod", "prod-dr")):
        exc = refused(env, params)
        assert f"reserved by {params / other}.yaml" in str(exc)
        assert "two protected files cannot own one stack" in exc.hint
    (params / "prod-dr.yaml").write_text(copy_of(PROD_TEXT, "prod-dr",
                                                 ("suffix: prod", "suffix: proddr")))
    assert load_settings("prod-dr", directory=params).stack_name == "TapStackproddr"
    assert load_settings("prod", directory=params).stack_name == "TapStackprod"


# -- what stays allowed ----------------------------------------------------------------------

def test_a_protected_file_loads_its_own_name(params, monkeypatch):
    assert load_settings("prod", directory=params).protected
    # the pulumi engine passes the stack's own suffix back as a quoted override
    assert load_settings("prod", ["suffix='prod'"], directory=params).stack_name == "TapStackprod"
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "prod")
    assert load_settings("prod", directory=params).stack_name == "TapStackprod"
    # an ad-hoc copy of prod is a new (protected) stack of its own
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "pr17")
    s = load_settings("prod", directory=params)
    assert s.stack_name == "TapStackpr17" and s.protected


def test_a_protected_file_may_not_rename_itself_by_case(params, monkeypatch):
    exc = refused("prod", params, suffix="PROD", monkeypatch=monkeypatch)
    assert "reserves TapStackprod" in str(exc) and "differs only in case" in str(exc)
    assert exc.allowed.startswith("prod exactly")


def test_only_protected_files_reserve(params, monkeypatch):
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "staging")
    assert load_settings("dev", directory=params).stack_name == "TapStackstaging"
    (params / "prod.yaml").write_text(PROD_TEXT.replace("protected: true", "protected: false"))
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "prod")
    assert load_settings("dev", directory=params).stack_name == "TapStackprod"


def test_the_fleet_file_is_no_environment(params):
    """params/fleet.yaml lists stacks; even written like a protected file it reserves
    nothing, and its shape does not stop anything loading."""
    (params / project.FLEET_FILE).write_text("stacks:\n  - env: dev\n    suffix: pr1\n"
                                             "protected: true\nsuffix: dev\n")
    assert load_settings("dev", directory=params).stack_name == "TapStackdev"


# -- someone with a shell ----------------------------------------------------------------------

def test_a_duplicate_protected_false_does_not_free_the_name(params, monkeypatch):
    """Appending `protected: false` to prod.yaml (YAML keeps the last) used to turn protection
    off; now prod.yaml is unreadable, and an unreadable file may be the protected one, so no
    environment loads until it is fixed - and nothing tells the loader prod is unprotected."""
    prod = params / "prod.yaml"
    prod.write_text(PROD_TEXT + "protected: false\n")
    before = prod.read_bytes()
    exc = refused("dev", params, suffix="prod", monkeypatch=monkeypatch)
    msg = str(exc)
    lines = PROD_TEXT.splitlines()
    first = next(i for i, x in enumerate(lines, 1) if x.startswith("protected:"))
    assert str(prod) in msg and f"line {first} and line {len(lines) + 1}" in msg
    assert f"fix {prod}" in exc.hint
    with pytest.raises(ConfigError, match="set twice"):
        load_settings("prod", directory=params, use_environ=False)
    assert prod.read_bytes() == before  # nothing rewrote it


def test_unreadable_environment_file_blocks_every_load_naming_it(params):
    (params / "scratch.yaml").write_bytes(b"\xff\xfe not yaml")
    exc = refused("dev", params)
    assert str(params / "scratch.yaml") in str(exc) and "not UTF-8" in str(exc)
    assert exc.file == str(params / "dev.yaml")
    (params / "scratch.yaml").unlink()
    assert load_settings("dev", directory=params).stack_name == "TapStackdev"


@pytest.mark.parametrize("protected", ["yes", "'true'", "1", "on"])
def test_any_protected_value_but_false_reserves(params, monkeypatch, protected):
    """Fail closed: `protected: 'true'` cannot load itself (not a bool), but nothing else may
    take the name it meant to protect either."""
    (params / "prod.yaml").write_text(PROD_TEXT.replace("protected: true",
                                                        f"protected: {protected}"))
    exc = refused("dev", params, suffix="prod", monkeypatch=monkeypatch)
    assert str(params / "prod.yaml") in str(exc)


def test_a_symlinked_protected_file_is_the_same_file(params):
    (params / "production.yaml").symlink_to(params / "prod.yaml")
    assert load_settings("prod", directory=params).stack_name == "TapStackprod"


# -- cheap ---------------------------------------------------------------------------------------

def test_params_files_are_read_once_until_they_change(params, monkeypatch):
    reads: list[str] = []
    real = config_yaml.read_settings_file

    def counting(path):
        reads.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(config_yaml, "read_settings_file", counting)
    old = 1_600_000_000
    for path in params.glob("*.yaml"):
        os.utime(path, (old, old))
    for _ in range(20):
        load_settings("dev", directory=params)
    assert sorted(reads) == ["dev.yaml", "prod.yaml", "staging.yaml"]
    reads.clear()
    prod = params / "prod.yaml"
    prod.write_text(PROD_TEXT.replace("protected: true", "protected: false"))
    os.utime(prod, (old + 10, old + 10))
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "prod")
    assert load_settings("dev", directory=params).stack_name == "TapStackprod"
    assert reads == ["prod.yaml"]


def test_a_change_within_the_timestamp_granularity_is_seen(params, monkeypatch):
    """Same size, same mtime, same inode: a file written just now is read every time."""
    prod = params / "prod.yaml"
    prod.write_text(PROD_TEXT.replace("protected: true", "protected: no  "))
    stamp = prod.stat().st_mtime_ns
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "prod")
    load_settings("dev", directory=params)
    prod.write_text(PROD_TEXT)
    os.utime(prod, ns=(stamp, stamp))
    assert refused("dev", params).field == "suffix"


# -- naming decides what counts as the same name ------------------------------------------------

SUFFIXES = st.from_regex(SUFFIX_RE, fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(a=SUFFIXES, b=SUFFIXES)
def test_suffix_key_is_exactly_when_physical_names_collide(a, b):
    """Two suffixes share any physical name exactly when their keys are equal: the check
    compares keys, so it must be neither looser nor stricter than naming."""
    na = PhysicalNames.create("TapStack", a, "eu-west-2", "123456789012").items()
    nb = PhysicalNames.create("TapStack", b, "eu-west-2", "123456789012").items()
    shared = any(x[2] == y[2] for x, y in zip(na, nb))
    assert shared == (suffix_key(a) == suffix_key(b))


@pytest.mark.parametrize("variant", ["PROD", "Prod"])
def test_case_variants_name_prods_resources(variant):
    base = PhysicalNames.create("TapStack", "prod", "eu-west-2", "123456789012")
    assert PhysicalNames.create("TapStack", variant, "eu-west-2", "123456789012") == base


# -- every path that loads settings ------------------------------------------------------------

def test_fleet_suffixes_cannot_take_a_protected_name(params, monkeypatch):
    from tap_lib.ops.fleet import resolve_stacks

    monkeypatch.setattr(project, "params_dir", lambda: params)
    with pytest.raises(ConfigError) as info:
        resolve_stacks(["dev"], ["pr1", "PROD"])
    assert "(--set suffix)" in info.value.file and "prod.yaml" in str(info.value)


def test_tap_deploy_with_a_squatting_suffix_exits_2_before_any_engine(tmp_path, monkeypatch):
    """The reproduction of issue 18, in-process: exit 2, the message names prod.yaml and the
    variable, no engine is opened and nothing is recorded."""
    from tap_lib.engines import registry

    root = tmp_path / "project"
    shutil.copytree(PARAMS, root / "params")
    shutil.copy(project.project_file(), root)
    monkeypatch.setenv("TAP_PROJECT_DIR", str(root))
    monkeypatch.setenv("TAP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TAP_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("TAP_TARGET", "sandbox")
    monkeypatch.setenv("ENVIRONMENT_SUFFIX", "prod")
    opened: list = []
    monkeypatch.setattr(registry, "engine_class", lambda target=None: opened.append(target))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["deploy", "--env", "dev", "--yes"])
    text = err.getvalue()
    assert code == 2, text
    assert "params/prod.yaml" in text and "ENVIRONMENT_SUFFIX" in text
    assert "Traceback" not in text and out.getvalue() == "" and opened == []
    assert not (tmp_path / "home" / "sandbox").exists()
