"""The command line as scripts use it: JSON shapes, exit codes and guards, in real processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import tap_process as tap   # a real process: the exit path is part of the test

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]


def test_sandbox_status_json(sandbox_home):
    out = tap("sandbox", "status", "--json")
    assert out.returncode == 0
    status = json.loads(out.stdout)
    assert status["running"] is True and status["pid"] > 0
    assert status["endpoint"] == f"http://127.0.0.1:{os.environ['TAP_SANDBOX_PORT']}"


def test_preview_json_shape(sandbox_home):
    out = tap("preview", "--env", "dev", "--set", "suffix=cli", "--json")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # no stray noise (event loops closed at exit, no warnings)
    plan = json.loads(out.stdout)
    assert plan["stack"] == "TapStackcli"
    assert set(plan["summary"]) == {"create", "update", "replace", "delete", "same"}
    from tap_lib.config import load_settings
    from tap_lib.engines.synth import synthesize

    declared = synthesize(load_settings("dev", ("suffix=cli",))).resources  # the program's own
    assert plan["summary"]["create"] == len(plan["steps"]) == len(declared) > 0
    assert {s["urn"] for s in plan["steps"]} == {r.urn for r in declared}
    assert set(plan["steps"][0]) >= {"urn", "type", "name", "op", "diffs"}


def test_exit_codes_and_guards(sandbox_home):
    bad = tap("preview", "--env", "dev", "--set", "vpc.az_count=9")
    assert bad.returncode == 2
    assert "params/dev.yaml (--set vpc.az_count)" in bad.stderr and "Traceback" not in bad.stderr

    problems = tap("preflight", "--env", "dev", "--set", "db.engine_version=15.3", "--json")
    assert problems.returncode == 1
    findings = json.loads(problems.stdout)["findings"]
    assert any(f["rule"].startswith("TAP005") and "15.6" in f["message"] for f in findings)

    not_deployed = tap("verify", "--env", "dev", "--set", "suffix=nothing")
    assert not_deployed.returncode == 3 and "tap deploy --env dev" in not_deployed.stderr

    no_yes = tap("destroy", "--env", "dev")
    assert no_yes.returncode == 2 and "--yes" in no_yes.stderr
    prod = tap("destroy", "--env", "prod", "--yes")
    assert prod.returncode == 2 and "--confirm TapStackprod" in prod.stderr
    wrong = tap("destroy", "--env", "prod", "--yes", "--confirm", "TapStackdev")
    assert wrong.returncode == 2

    deploy = tap("deploy", "--env", "dev", "--set", "suffix=cli")
    assert deploy.returncode == 2 and "--yes" in deploy.stderr  # no terminal to ask on


def test_db_connect_shows_where_and_how_never_the_password(sandbox_home):
    """`tap db connect`: the conninfo and a psql command; the password only in the 0600 pgpass
    file. Not deployed: exit 3 with the deploy command; an unknown --secret: exit 2."""
    missing = tap("db", "connect", "--env", "dev", "--set", "suffix=nodb")
    assert missing.returncode == 3 and "tap deploy --env dev" in missing.stderr
    assert tap("db", "connect", "--env", "dev", "--secret", "root").returncode == 2

    assert tap("deploy", "--env", "dev", "--set", "suffix=dbc", "--yes").returncode == 0
    shown = tap("db", "connect", "--env", "dev", "--set", "suffix=dbc")
    as_json = tap("db", "connect", "--env", "dev", "--set", "suffix=dbc", "--json")
    assert shown.returncode == 0 and as_json.returncode == 0, shown.stderr + as_json.stderr
    conn = json.loads(as_json.stdout)
    passfile = conn["passfile"]
    assert os.stat(passfile).st_mode & 0o777 == 0o600
    (line,) = open(passfile).read().splitlines()
    password = _pgpass_fields(line)[4]
    assert password and password not in shown.stdout + shown.stderr + as_json.stdout
    assert conn["psql"] in shown.stdout and f"passfile={passfile}" in shown.stdout
    assert tap("destroy", "--env", "dev", "--set", "suffix=dbc", "--yes").returncode == 0


def _pgpass_fields(line: str) -> list[str]:
    """A pgpass line's five fields as libpq reads them: `\\:` and `\\\\` are escapes (a
    rotated password may hold a colon, so splitting on the last ':' is not enough)."""
    fields, field, chars = [], "", iter(line)
    for c in chars:
        if c == "\\":
            field += next(chars, "")
        elif c == ":" and len(fields) < 4:
            fields, field = [*fields, field], ""
        else:
            field += c
    return [*fields, field]


def test_pgpass_fields_read_escapes_as_libpq_does():
    assert _pgpass_fields(r"h:5432:db:u:pa\:ss\\") == ["h", "5432", "db", "u", "pa:ss\\"]
    assert _pgpass_fields(r"h:1:d:u:ends\:") == ["h", "1", "d", "u", "ends:"]


def test_sandbox_stop_takes_the_stand_in_databases_with_it(sandbox_home):
    deployed = tap("deploy", "--env", "dev", "--set", "suffix=stop", "--yes", "--json")
    assert deployed.returncode == 0, deployed.stderr
    data_dirs = [p for p in (sandbox_home / "sandbox" / "stacks" / "TapStackstop").glob(
        "postgres/*") if p.is_dir()]                  # beside them: their init lock files
    assert len(data_dirs) == 1 and (data_dirs[0] / "postmaster.pid").exists()
    assert tap("sandbox", "stop").returncode == 0
    assert not data_dirs[0].exists()
    assert json.loads(tap("sandbox", "status", "--json").stdout)["running"] is False
    # the next operation starts a fresh emulator and reports the lost stack
    lost = tap("preview", "--env", "dev", "--set", "suffix=stop")
    assert lost.returncode == 3 and "restarted" in lost.stderr


HEAVY = ("pulumi", "pulumi_aws", "pandas", "papermill", "nbformat", "matplotlib")


def _heavy_modules_after(argv: list[str], env: dict[str, str] | None = None) -> dict:
    """The exit code of `tap ARGV` run in-process in a fresh interpreter, and which of the
    heavy packages it had imported by then (sys.modules)."""
    probe = ("import json, sys\nfrom tap_lib.cli import main\n"
             f"try:\n    code = main({argv!r})\nexcept SystemExit as exc:\n    code = exc.code\n"
             f"print(json.dumps([code, sorted({{m.split('.')[0] for m in sys.modules}} & "
             f"set({list(HEAVY)!r}))]), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env or os.environ.copy(), timeout=120)
    code, loaded = json.loads(out.stderr.strip().splitlines()[-1])
    return {"code": code, "loaded": loaded, "stdout": out.stdout}


def test_version_help_and_audit_verify_load_no_engine_and_no_pandas(tmp_path):
    """issue #23: what a command does not use is not imported (pulumi, pandas, papermill...
    cost seconds at start-up)."""
    version = _heavy_modules_after(["--version"])
    assert version["code"] == 0 and version["stdout"].startswith("tap ")
    assert version["loaded"] == []
    for argv in (["--help"], ["run", "--help"], ["deploy", "--help"]):
        shown = _heavy_modules_after(argv)
        assert shown["code"] == 0 and "usage: tap" in shown["stdout"]
        assert shown["loaded"] == [], argv
    env = {**os.environ, "TAP_OUTPUTS": str(tmp_path / "records"), "TAP_HOME": str(tmp_path)}
    audit = _heavy_modules_after(["audit", "verify"], env)
    assert audit["code"] == 0 and "audit chain intact" in audit["stdout"], audit
    assert audit["loaded"] == []


def test_run_help_lists_every_notebook_of_the_folder(tmp_path):
    """`tap run --help` offers each notebook of notebooks/ (repair and fleet too), read from the
    folder: a notebook added there is offered without another edit."""
    from tap_lib.project import notebooks_dir

    env = {"COLUMNS": "300"}
    shown = tap("run", "--help", env=env, timeout=60).stdout
    offered = shown.split("one of notebooks/:", 1)[1].split(";", 1)[0]
    names = [n.strip() for n in offered.split(",")]
    assert "repair" in names and "fleet" in names
    assert sorted(names) == sorted(p.stem for p in notebooks_dir().glob("*.ipynb"))

    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    for name in ("preview", "extra"):
        (project / "notebooks" / f"{name}.ipynb").write_text("{}")
    env["TAP_PROJECT_DIR"] = str(project)
    shown = tap("run", "--help", env=env, timeout=60).stdout
    assert "one of notebooks/: preview, extra; or all" in shown, shown


def test_a_locked_stack_exits_4_before_preflight(sandbox_home):
    """Another operation holds the stack: preview and deploy say so at once with exit 4 (not 3,
    "unreachable"), before preflight: this override is a preflight error (exit 1) otherwise."""
    bad = ("--set", "suffix=busy4", "--set", "db.engine_version=15.3")
    assert tap("preview", "--env", "dev", *bad).returncode == 1   # preflight's error, unlocked
    holder = subprocess.Popen(   # another operator's process, mid-deploy
        [sys.executable, "-c", "import sys\n"
         "from tap_lib.engines.sandbox.state import OperationLock\n"
         "with OperationLock('TapStackbusy4', 'deploy'):\n"
         "    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert holder.stdout.readline().strip() == "held"
        for argv in (("preview", "--env", "dev", *bad), ("deploy", "--env", "dev", "--yes", *bad)):
            out = tap(*argv)
            assert out.returncode == 4, (argv, out.stderr)
            assert "stack TapStackbusy4 is locked" in out.stderr and "preflight" not in out.stderr
            assert "Traceback" not in out.stderr
    finally:
        holder.communicate("", timeout=30)


def test_verify_failures_name_the_repair_command():
    """A failed verify points to the command that converges it (issue #20), with the same
    environment. The display only: the checks are tests/test_verify's, and a really failing
    verify needs a deployed, drifted stack (tests/test_repair.py builds one), so ops.verify is
    replaced here by a report with one failed check."""
    import argparse
    from types import SimpleNamespace
    from unittest import mock

    import pandas as pd

    from tap_lib.cli import stack_cmds

    report = SimpleNamespace(
        checks=pd.DataFrame([{"status": "fail", "id": "EC2.18", "resource": "sg-db",
                              "expected": "5432 from the function", "actual": "0.0.0.0/0"}]),
        passed=41, failed=1, excepted=0, unverified=0, aws_calls=7, notes=[],
        to_dict=lambda: {})
    args = argparse.Namespace(env="staging", target=None, set=[], json=False)
    with mock.patch("tap_lib.ops.verify.verify", return_value=report), \
            mock.patch("builtins.print") as printed:
        code = stack_cmds.cmd_verify(args)
    text = "\n".join(str(c.args[0]) for c in printed.call_args_list if c.args)
    assert code == 1 and "tap run repair --env staging" in text


# -- the console script's exit: no interpreter teardown, nothing lost ----------------------------
def _run_with(main_body: str) -> subprocess.CompletedProcess:
    """`tap_lib.cli.run()` in a process of its own, with `main` replaced by `main_body`."""
    code = ("import atexit, gc, sys, threading, time\n"
            "from tap_lib import cli\n"
            "atexit.register(lambda: print('atexit ran', file=sys.stderr))\n"
            f"def main():\n{main_body}\n"
            "cli.main = main\n"
            "cli.run()\n"
            "print('after run', flush=True)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)


def test_run_exits_with_mains_code_after_atexit_and_flushed_output():
    done = _run_with("    sys.stdout.write('x' * 200000)\n    return 7")
    assert done.returncode == 7
    assert done.stdout == "x" * 200000            # block-buffered to a pipe, flushed whole
    assert done.stderr == "atexit ran\n"           # handlers ran; nothing after run()


def test_the_script_runs_without_the_cyclic_collector_and_main_alone_keeps_it():
    done = _run_with("    print('collector on:', gc.isenabled(), flush=True)\n    return 0")
    assert (done.returncode, done.stdout) == (0, "collector on: False\n")
    import gc                                       # main(), as notebooks and tests call it
    assert tap("--version").returncode == 0 and gc.isenabled()


def test_run_takes_the_usual_exit_while_another_thread_works():
    done = _run_with("    threading.Thread(target=lambda: (time.sleep(0.5),\n"
                     "                     print('late', flush=True))).start()\n    return 5")
    assert (done.returncode, done.stdout) == (5, "late\n")   # the thread finished first


def test_the_tap_script_keeps_every_byte_and_exit_code():
    report = tap("preflight", "--env", "dev", "--json")
    assert report.returncode == 0 and json.loads(report.stdout)["summary"]["error"] == 0
    bad = tap("preflight", "--env", "no-such-env")
    assert bad.returncode == 2 and "no such environment file" in bad.stderr
