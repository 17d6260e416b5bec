"""Where the project lives and what it is called.

The project name is written once, in Pulumi.yaml; everything else (stack names, URNs, outputs)
derives from it here.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import yaml

from .errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent


def project_dir() -> Path:
    """The repository root: holds Pulumi.yaml, params/, notebooks/ and outputs/."""
    env = os.environ.get("TAP_PROJECT_DIR")
    return Path(env).resolve() if env else PACKAGE_DIR.parent


def params_dir() -> Path:
    return project_dir() / "params"


# What `tap run all` runs, in order; every notebook of notebooks/ is runnable (notebook_names).
RUNBOOK = ("preflight", "preview", "deploy", "verify", "inspect")

FLEET_FILE = "fleet.yaml"   # params/fleet.yaml lists a fleet of stacks; it is no environment


def notebooks_dir() -> Path:
    return project_dir() / "notebooks"


def notebook_names() -> tuple[str, ...]:
    """Every notebook of notebooks/, one list for `tap run`, `tap lab` and Airflow (a new
    notebook needs no edit elsewhere): the runbook's order first, then the others by name."""
    found = sorted(p.stem for p in notebooks_dir().glob("*.ipynb"))
    return tuple([n for n in RUNBOOK if n in found] + [n for n in found if n not in RUNBOOK])


def outputs_dir() -> Path:
    """Local home of audit records and pictures. When TAP_OUTPUTS is an s3:// URL, records go
    there (ops/audit.py) and pictures stay local, under TAP_HOME."""
    env = os.environ.get("TAP_OUTPUTS")
    if env and env.startswith("s3://"):
        return tap_home() / "outputs"
    return Path(env).resolve() if env else project_dir() / "outputs"


def tap_home() -> Path:
    """Working state (sandbox state, pulumi file backend, locks); git-ignored."""
    env = os.environ.get("TAP_HOME")
    return Path(env).resolve() if env else project_dir() / ".tap"


@functools.lru_cache(maxsize=8)
def _read_project_file(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError("Pulumi.yaml not found", file=str(path)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ConfigError("missing project name", file=str(path), field="name")
    return data


def project_file() -> Path:
    return project_dir() / "Pulumi.yaml"


def project_name() -> str:
    return _read_project_file(project_file())["name"]


def stack_name(suffix: str) -> str:
    return f"{project_name()}{suffix}"
