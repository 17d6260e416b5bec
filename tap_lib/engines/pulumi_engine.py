"""The pulumi engine: the TapStack program deployed to real AWS through Pulumi's Automation API.

The workspace is the repository itself (Pulumi.yaml stays the one place the project is named) and
the Pulumi CLI does the work; this module only chooses the backend, writes the stack config, and
maps failures into tap's exception tree; pulumi_events.py translates what comes back (engine
events, state, history) into tap's Plan/Result types, so nothing above the engines knows which
one ran.

The CLI is a Go binary no registry reachable here ships, so everything that can be checked
without it (settings, config, event translation, error mapping) lives in pure functions.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable, TypeVar

from pulumi import automation as auto

from ..aws import Clients
from ..config import Settings
from ..errors import ConfigError, OperationFailed, StackLocked, TapError, TargetUnreachable
from ..project import project_dir, tap_home
from .base import Engine, HistoryEntry, Plan, ProgressCallback, ResourceState, Result, StackMeta
# The translation of what Pulumi returns (re-exported: callers and tests have long asked here).
from .pulumi_events import (ANSI, OP_MAP, SECRET, StepTracker, history_entry,  # noqa: F401
                            plain_outputs, redact, resource_states, translate_event, urn_name)
from .versions import aws_engine_versions

INSTALL_HINT = ("the pulumi CLI is not on PATH; install it with `conda env create -f "
                "environment.yml` (pulumi-core from conda-forge) or see "
                "https://www.pulumi.com/docs/install/")

_URL_CREDENTIALS = re.compile(r"(\w+://)[^/@\s]+@")
_T = TypeVar("_T")


# ---- settings: pure, checkable without the CLI ------------------------------------------------

def require_cli() -> None:
    """Checked before any workspace exists: the SDK would otherwise fail with a bare
    FileNotFoundError from deep inside subprocess."""
    if shutil.which("pulumi") is None:
        raise TargetUnreachable(INSTALL_HINT,
                                hint="to rehearse without the CLI or AWS, use --target sandbox")


def require_passphrase() -> None:
    """Stacks use the passphrase secrets provider; without a passphrase the CLI would stop at an
    interactive prompt it cannot show. The value itself is never read here."""
    if "PULUMI_CONFIG_PASSPHRASE" in os.environ:
        return
    path = os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if path and Path(path).is_file():
        return
    if path:
        raise ConfigError("passphrase file not found", field="PULUMI_CONFIG_PASSPHRASE_FILE",
                          value=path)
    raise ConfigError(
        "no passphrase for the stack's secrets: set PULUMI_CONFIG_PASSPHRASE, or "
        "PULUMI_CONFIG_PASSPHRASE_FILE to a file holding it",
        hint="it encrypts secret config and state in the backend; everyone operating a stack "
             "needs the same one (keep it in a password manager, never in the repo)")


def backend_url() -> str:
    """PULUMI_BACKEND_URL when set (e.g. s3://bucket for a team); otherwise a file backend under
    TAP_HOME, so a personal `pulumi login` elsewhere never receives tap's stacks by accident."""
    return os.environ.get("PULUMI_BACKEND_URL") or f"file://{(tap_home() / 'pulumi').as_posix()}"


def stack_config(settings: Settings, overrides: Sequence[str] = ()) -> dict[str, str]:
    """What tap_lib/program/__main__.py reads. The suffix travels as a last override so the
    stack keeps its own suffix even when the CLI later runs without ENVIRONMENT_SUFFIX; it is
    quoted so that suffixes such as 017 or on stay strings (it is alphanumeric, so this is safe).
    AWS_ENDPOINT_URL (the variable every AWS SDK reads) sends the program's provider there too:
    `AWS_ENDPOINT_URL=$(tap sandbox endpoint) tap deploy --target aws` runs the real Pulumi
    engine against the sandbox's emulator."""
    return {
        "aws:region": settings.region,
        "tap:env": settings.environment,
        "tap:overrides": json.dumps([*overrides, f"suffix='{settings.suffix}'"]),
        "tap:endpoint": endpoint_override(),  # written empty when unset: never stale
    }


def endpoint_override() -> str:
    """AWS_ENDPOINT_URL, checked: the provider would take any text and fail much later."""
    value = os.environ.get("AWS_ENDPOINT_URL", "")
    if value and not re.fullmatch(r"https?://[^\s/?#]+/?", value):
        raise ConfigError("not an endpoint URL", field="AWS_ENDPOINT_URL", value=value,
                          allowed="http(s)://host[:port], e.g. http://127.0.0.1:5599",
                          hint="unset it to deploy to AWS itself")
    return value


META_KEYS = ("tap:origin", "tap:protected")  # written at the first deploy, never rewritten


def stack_meta_from(config: dict[str, Any]) -> StackMeta | None:
    """A stack's recorded origin and protection from its config (None: never recorded)."""
    origin = config.get("tap:origin")
    if origin is None:
        return None
    value = getattr(origin, "value", origin)
    protected = getattr(config.get("tap:protected"), "value", config.get("tap:protected"))
    return StackMeta(str(value), str(protected).lower() == "true")


_PULUMI_FAILURES = (auto.CommandError, auto.InvalidVersionError, subprocess.CalledProcessError,
                    OSError, RuntimeError)


def map_error(exc: BaseException, stack: str, *, diagnostics: Sequence[str] = (),
              backend: str = "") -> TapError:
    """A failure of the CLI or the SDK as one of tap's exceptions. Messages carry the error
    diagnostics and the tail of stderr (never stdout, never config values); the passphrase and
    any credentials in URLs are scrubbed all the same."""
    if isinstance(exc, FileNotFoundError) and "pulumi" in str(exc.filename or ""):
        return TargetUnreachable(INSTALL_HINT)
    if isinstance(exc, subprocess.CalledProcessError):
        cmd = exc.cmd if isinstance(exc.cmd, str) else " ".join(map(str, exc.cmd))
        return TargetUnreachable(f"the pulumi CLI on PATH does not run: `{cmd}` exited with "
                                 f"{exc.returncode}",
                                 hint="reinstall it: see https://www.pulumi.com/docs/install/")
    if isinstance(exc, auto.InvalidVersionError):
        return TargetUnreachable(f"the pulumi CLI is too old for this SDK: {exc}",
                                 hint="upgrade it: see https://www.pulumi.com/docs/install/")
    if isinstance(exc, auto.ConcurrentUpdateError):
        holders = re.findall(r"created by (.+)", _stderr(exc))
        where = f" ({'; '.join(h.strip() for h in holders)})" if holders else ""
        return StackLocked(
            _scrub(f"stack {stack} is locked by another update{where}; wait for it to finish, "
                   f"or run `pulumi cancel --stack {stack}` if it is stale"),
            hint=_scrub(f"a killed process leaves a stale lock; run `pulumi cancel` in "
                        f"{project_dir()} with PULUMI_BACKEND_URL={backend or backend_url()}"))
    if isinstance(exc, auto.CommandError):
        details = [d if len(d) < 2000 else "..." + d[-2000:] for d in diagnostics[-5:]]
        tail = [line for line in _stderr(exc).splitlines() if line.strip()][-10:]
        body = "\n".join(dict.fromkeys([*details, *tail])) or "no error output"
        return OperationFailed(_scrub(f"pulumi failed on stack {stack}:\n{body}"))
    return OperationFailed(_scrub(f"pulumi failed on stack {stack}: {exc}"))


def _stderr(exc: auto.CommandError) -> str:
    """CommandError keeps only the rendered text of its CommandResult (code, stdout, stderr);
    stderr comes last. Cut at the last marker, so that stdout can never leak into the result."""
    _, marker, stderr = ANSI.sub("", str(exc)).rpartition("\n stderr: ")
    return stderr if marker else ""


def _scrub(text: str) -> str:
    text = _URL_CREDENTIALS.sub(r"\1***@", ANSI.sub("", text))
    passphrase = os.environ.get("PULUMI_CONFIG_PASSPHRASE")
    return text.replace(passphrase, SECRET) if passphrase else text


# ---- the engine --------------------------------------------------------------------------------

class PulumiEngine(Engine):
    """The Engine on the Pulumi CLI. Construction checks what would otherwise fail half-way
    (the CLI, the passphrase, the backend directory) and touches no stack."""

    name = "aws"

    def __init__(self, settings: Settings, overrides: Sequence[str] = ()):
        require_cli()
        require_passphrase()
        super().__init__(settings)
        self.overrides = tuple(overrides)
        self.work_dir = project_dir()
        self.backend_url = backend_url()
        if not os.environ.get("PULUMI_BACKEND_URL"):
            local = tap_home() / "pulumi"
            try:
                local.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create the Pulumi state directory: {exc.strerror}",
                                  field="TAP_HOME", value=str(local)) from None
        self._workspace: auto.LocalWorkspace | None = None

    def stack_config(self) -> dict[str, str]:
        return stack_config(self.settings, self.overrides)

    def workspace_env(self) -> dict[str, str]:
        """Variables for the CLI on top of the inherited environment. The passphrase is inherited,
        never put here: the SDK prints these in the workspace's repr. PULUMI_PYTHON_CMD runs the
        program with this interpreter, which has tap_lib and pulumi_aws."""
        return {"PULUMI_BACKEND_URL": self.backend_url,
                "PULUMI_PYTHON_CMD": os.environ.get("PULUMI_PYTHON_CMD", sys.executable),
                "PULUMI_SKIP_UPDATE_CHECK": "true",
                "PULUMI_EXPERIMENTAL": "true"}   # update plans (preview/up with plan=)

    # -- the target (plain boto3 with the caller's credentials; no CLI needed)

    @classmethod
    def account(cls, region: str) -> str:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return boto3.client("sts", region_name=region).get_caller_identity()["Account"]
        except (BotoCoreError, ClientError) as exc:
            raise TargetUnreachable(f"cannot determine the AWS account: {exc}",
                                    hint="configure AWS credentials (AWS_PROFILE or "
                                         "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)") from None

    @classmethod
    def offered_engine_versions(cls, region: str, engine: str) -> tuple[list[str], str]:
        return aws_engine_versions(region, engine)

    @classmethod
    def default_region(cls, settings: Settings) -> str | None:
        import boto3

        return os.environ.get("AWS_REGION") or boto3.session.Session().region_name

    def clients(self) -> Clients:
        import boto3

        return Clients(boto3.session.Session(region_name=self.settings.region))

    def invoke(self, function: dict, event: dict, *, handler: str = "payment") -> dict:
        response = self.clients()("lambda").invoke(
            FunctionName=function["Configuration"]["FunctionName"],
            Payload=json.dumps(event).encode())
        return json.loads(response["Payload"].read() or b"{}")

    # -- operations

    def stack_meta(self) -> StackMeta | None:
        return self._read(lambda s: stack_meta_from(s.get_all_config()), None)

    def preview(self, artifact: Path | None = None) -> Plan:
        """With `artifact`, Pulumi saves its update plan there (`pulumi preview --save-plan`)."""
        tracker = StepTracker()
        extra = {"plan": str(artifact)} if artifact else {}
        self._mutate(lambda s: s.preview(on_event=tracker, color="never", **extra), tracker)
        return Plan(stack=self.stack, target=self.name, steps=tracker.steps,
                    artifact=str(artifact) if artifact else None)

    def _up(self, progress: ProgressCallback | None, *, confirm: str | None,
            meta: StackMeta, plan: Plan | None = None) -> Result:
        # With a reviewed plan, Pulumi itself refuses any step its saved update plan lacks.
        extra = {"plan": plan.artifact} if plan is not None and plan.artifact else {}
        return self._apply("deploy", progress, lambda s, on_event: s.up(
            on_event=on_event, color="never", show_secrets=False, **extra), meta=meta)

    def _destroy(self, progress: ProgressCallback | None) -> Result:
        return self._apply("destroy", progress, lambda s, on_event: s.destroy(
            on_event=on_event, color="never", show_secrets=False))

    def _refresh(self, progress: ProgressCallback | None) -> Result:
        """Reconcile state with what really exists in AWS; drift shows as update or delete."""
        return self._apply("refresh", progress, lambda s, on_event: s.refresh(
            on_event=on_event, color="never", show_secrets=False))

    def outputs(self) -> dict[str, Any]:
        return self._read(lambda s: plain_outputs(s.outputs()), {})

    def resources(self) -> list[ResourceState]:
        return self._read(lambda s: resource_states(s.export_stack()), [])

    def history(self) -> list[HistoryEntry]:
        return self._read(lambda s: [history_entry(h) for h in s.history(show_secrets=False)], [])

    # -- plumbing

    def _apply(self, operation: str, progress: ProgressCallback | None,
               run: Callable[[auto.Stack, StepTracker], Any],
               meta: StackMeta | None = None) -> Result:
        started = time.monotonic()
        tracker = StepTracker(progress)
        result = self._mutate(lambda s: run(s, tracker), tracker, meta)
        outputs = plain_outputs(result.outputs) if isinstance(result, auto.UpResult) else {}
        return Result(stack=self.stack, target=self.name, steps=tracker.steps,
                      operation=operation, outputs=outputs,
                      duration_s=time.monotonic() - started, status=result.summary.result)

    def _mutate(self, action: Callable[[auto.Stack], _T], tracker: StepTracker,
                meta: StackMeta | None = None) -> _T:
        """Create or select the stack and (re)write its config before every change, so the config
        the program reads always matches the environment file of this run. The stack's origin
        and protection are written once, by its first deploy."""
        with self._mapped_errors(tracker.errors):
            stack = auto.Stack.create_or_select(self.stack, self._open_workspace())
            config = self.stack_config()
            if meta is not None and "tap:origin" not in stack.get_all_config():
                config.update({"tap:origin": meta.origin,
                               "tap:protected": str(meta.protected).lower()})
            stack.set_all_config({k: auto.ConfigValue(v) for k, v in config.items()})
            return action(stack)

    def _read(self, action: Callable[[auto.Stack], _T], empty: _T) -> _T:
        """Reads never create a stack: one that was never deployed has nothing to show."""
        with self._mapped_errors():
            try:
                stack = auto.Stack.select(self.stack, self._open_workspace())
            except auto.StackNotFoundError:
                return empty
            return action(stack)

    def _open_workspace(self) -> auto.LocalWorkspace:
        """The repo as work dir and no inline program or project settings: the CLI reads
        Pulumi.yaml, as it would for `pulumi preview` typed in the repo."""
        if self._workspace is None:
            self._workspace = auto.LocalWorkspace(work_dir=str(self.work_dir),
                                                  secrets_provider="passphrase",
                                                  env_vars=self.workspace_env())
        return self._workspace

    @contextlib.contextmanager
    def _mapped_errors(self, diagnostics: Sequence[str] = ()) -> Iterator[None]:
        try:
            yield
        except _PULUMI_FAILURES as exc:
            # `from None`: the SDK's exception text includes the CLI's whole stdout.
            raise map_error(exc, self.stack, diagnostics=diagnostics,
                            backend=self.backend_url) from None
