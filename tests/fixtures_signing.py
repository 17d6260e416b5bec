"""Signed plans in tests: a throwaway git project whose params/approvers lists test keys."""
from __future__ import annotations

from pathlib import Path

import pytest

PRINCIPALS = ("alice", "bob", "carol")   # listed in params/approvers; mallory's key is not
REPO = Path(__file__).resolve().parents[1]


def git(project: Path, *args: str) -> None:
    import subprocess

    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                   cwd=project, check=True, capture_output=True)


class Signers:
    """Keys of a test project's approvers, and the four-eyes flow done as operators do it."""

    def __init__(self, project: Path, keys: dict[str, Path]):
        self.project, self.keys = project, keys

    def use(self, mp: pytest.MonkeyPatch, name: str) -> None:
        mp.setenv("TAP_SIGNING_KEY", str(self.keys[name]))
        mp.setenv("TAP_OPERATOR", name)

    def env(self, name: str) -> dict[str, str]:
        return {"TAP_SIGNING_KEY": str(self.keys[name]), "TAP_OPERATOR": name}

    def authorization(self, stack: str, *, operation: str = "deploy", target: str = "sandbox",
                      steps=(), author: str = "alice", approvers=("bob",), **extra):
        """A plan body at the project's HEAD, signed by `author`, approved by `approvers`
        (what `approved` makes through tap's own commands, built here without an engine)."""
        import subprocess

        from tap_lib import signing
        from tap_lib.authority import Authorization, approval_message, digest, plan_message

        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=self.project, text=True,
                                capture_output=True, check=True).stdout.strip()
        body = {"stack": stack, "operation": operation, "target": target, "commit": commit,
                "steps": list(steps), **extra}
        plan_hash = digest(body)
        approvals = []
        for name in approvers:
            principal, when = f"{name}@example.com", "2026-12-03T12:00:00+00:00"
            approvals.append({"principal": principal, "plan": plan_hash, "time": when,
                              "signature": signing.sign(approval_message(
                                  plan_hash, principal, when), self.keys[name])})
        return Authorization(body, plan_hash,
                             signing.sign(plan_message(plan_hash), self.keys[author]),
                             tuple(approvals), "plan.json")

    def approved(self, env: str, path: Path, overrides=(), *, destroy: bool = False,
                 author: str = "alice", approver: str = "bob", skip_rules=(),
                 reason: str | None = None) -> str:
        """`author` saves a plan (a destroy plan with `destroy`), `approver` approves it."""
        from tap_lib.ops import plans

        with pytest.MonkeyPatch.context() as mp:
            self.use(mp, author)
            plans.save_plan(plans.make_plan(env, "sandbox", tuple(overrides), destroy=destroy,
                                            skip_rules=skip_rules, reason=reason),
                            path)
            self.use(mp, approver)
            plans.approve(path)
        return str(path)


def make_signed_project(root: Path, *, notebooks: bool = False) -> Signers:
    """Pulumi.yaml and params/ copied into a new git repository at `root`/project whose
    params/approvers lists alice, bob and carol (ed25519 keys made here, outside the project)."""
    import shutil
    import subprocess

    project, keydir = root / "project", root / "keys"
    project.mkdir()
    keydir.mkdir()
    shutil.copy(REPO / "Pulumi.yaml", project)
    shutil.copy(REPO / ".gitignore", project)
    shutil.copytree(REPO / "params", project / "params")
    if notebooks:
        shutil.copytree(REPO / "notebooks", project / "notebooks",
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    keys, lines = {}, []
    for name in (*PRINCIPALS, "mallory"):
        keys[name] = keydir / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                        str(keys[name])], check=True, capture_output=True)
        if name != "mallory":
            pub = (keydir / f"{name}.pub").read_text().split()
            lines.append(f'{name}@example.com namespaces="tap" {pub[0]} {pub[1]}')
    (project / "params" / "approvers").write_text("\n".join(lines) + "\n")
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-qm", "params and approvers")
    return Signers(project, keys)
