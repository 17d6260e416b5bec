"""The pulumi engine: the TapStack program deployed to real AWS through Pulumi's Automation API.

The workspace is the repository itself (Pulumi.yaml stays the one place the project is named) and
the Pulumi CLI does the work; this module only chooses the backend, writes the stack config, and
translates what comes back (engine events, results, errors) into tap's Plan/Result types and
exception tree, so nothing above the engines knows which one ran.

The CLI is a Go binary no registry reachable here ships, so everything that can be checked
without it (settings, config, event translation, error mapping) lives in pure functions.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timezone
from pathlib import Path
from typing import Any, Callable, TypeVar

from pulumi import automation as auto
from pulumi.automation.events import OpType

from ..aws import Clients
from ..config import Settings
from ..errors import ConfigError, OperationFailed, StackLocked, TapError, TargetUnreachable
from ..project import project_dir, tap_home
from .base import (OPS, Engine, HistoryEntry, Plan, ProgressCallback, ResourceState, Result,
                   StackMeta, Step, StepEvent, is_secret)
from .changes import property_changes
from .versions import aws_engine_versions

SECRET = "[secret]"
INSTALL_HINT = ("the pulumi CLI is not on PATH; install it with `conda env create -f "
                "environment.yml` (pulumi-core from conda-forge) or see "
                "https://www.pulumi.com/docs/install/")

# Pulumi's step ops folded into tap's five. The parts of a replacement (create-replacement,
# delete-replaced, ...) all become `replace`; reads change nothing in the cloud; an import or
# discard adds a resource to, or removes it from, the stack.
OP_MAP: dict[str, str] = {
    OpType.CREATE.value: "create",
    OpType.IMPORT.value: "create",
    OpType.UPDATE.value: "update",
    OpType.DELETE.value: "delete",
    OpType.DISCARD.value: "delete",
    OpType.SAME.value: "same",
    OpType.READ.value: "same",
    OpType.REFRESH.value: "same",
    OpType.REPLACE.value: "replace",
    OpType.CREATE_REPLACEMENT.value: "replace",
    OpType.DELETE_REPLACED.value: "replace",
    OpType.READ_REPLACEMENT.value: "replace",
    OpType.DISCARD_REPLACED.value: "replace",
    OpType.IMPORT_REPLACEMENT.value: "replace",
    OpType.REMOVE_PENDING_REPLACE.value: "replace",
}
# When several events concern one URN, the strongest op describes the resource.
_OP_RANK = {"same": 0, "update": 1, "create": 2, "delete": 2, "replace": 3}
_PENDING_STATUS = {"creating": "pending-create", "updating": "pending-update",
                   "deleting": "pending-delete", "reading": "pending-read",
                   "importing": "pending-import"}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
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


# ---- translation of what Pulumi returns --------------------------------------------------------

def translate_event(event: auto.EngineEvent) -> tuple[str, Step] | None:
    """One engine event as (phase, Step), phase being start, done or failed; None for events that
    are not about a cloud resource (diagnostics, summaries, the stack root, components,
    providers), so that plans count the same resources as the sandbox engine's."""
    for phase, payload in (("start", event.resource_pre_event),
                           ("done", event.res_outputs_event),
                           ("failed", event.res_op_failed_event)):
        if payload is not None:
            break
    else:
        return None
    meta = payload.metadata
    state = meta.new or meta.old
    if state is None or not state.custom or meta.type.startswith("pulumi:providers:"):
        return None
    op = OP_MAP[meta.op.value]
    diffs = list(meta.diffs or dict.fromkeys(_top_level(p) for p in meta.detailed_diff or {}))
    if meta.op == OpType.REFRESH and phase == "done":
        op, diffs = _refresh_outcome(meta)
    values = []
    if op in ("update", "replace") and meta.old is not None and meta.new is not None:
        # the event log masks secrets itself ("[secret]"); values as Pulumi shows them
        values = property_changes(dict(meta.old.inputs or {}), dict(meta.new.inputs or {}),
                                  diffs)
    return phase, Step(urn=meta.urn, type=meta.type, name=urn_name(meta.urn), op=op, diffs=diffs,
                       changes=values)


def urn_name(urn: str) -> str:
    """urn:pulumi:STACK::PROJECT::TYPE::NAME -> NAME (which may itself contain '::')."""
    parts = urn.split("::", 3)
    return parts[3] if len(parts) == 4 else urn


def _top_level(path: str) -> str:
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def _refresh_outcome(meta: auto.StepEventMetadata) -> tuple[str, list[str]]:
    """A refresh reports drift only by its before/after states: gone, changed or the same."""
    if meta.new is None:
        return "delete", []
    old = dict((meta.old.outputs if meta.old else None) or {})
    new = dict(meta.new.outputs or {})
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return ("update", changed) if changed else ("same", [])


def redact(value: Any) -> Any:
    """State as Pulumi serializes it, with every secret (plaintext or ciphertext) replaced."""
    if isinstance(value, dict):
        if is_secret(value):
            return SECRET
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def plain_outputs(outputs: auto.OutputMap) -> dict[str, Any]:
    return {k: SECRET if v.secret else v.value for k, v in outputs.items()}


def resource_states(deployment: auto.Deployment) -> list[ResourceState]:
    """Cloud resources in an exported state, including ones an interrupted update left pending;
    the stack root, components and providers are bookkeeping, not inventory."""
    data = deployment.deployment or {}
    found: dict[str, ResourceState] = {}
    records = [(res, "pending-delete" if res.get("delete") else "created")
               for res in data.get("resources") or []]
    records += [(op.get("resource") or {}, _PENDING_STATUS.get(op.get("type", ""), "pending"))
                for op in data.get("pending_operations") or []]
    for res, status in records:
        type_ = res.get("type", "")
        if not res.get("custom") or type_.startswith("pulumi:providers:"):
            continue
        urn = res["urn"]
        found[urn] = ResourceState(urn=urn, type=type_, name=urn_name(urn), id=res.get("id", ""),
                                   status=status, outputs=redact(res.get("outputs") or {}))
    return list(found.values())


def history_entry(summary: auto.UpdateSummary) -> HistoryEntry:
    """Counts are Pulumi's own, so they include the stack root and component resources."""
    start = summary.start_time.replace(tzinfo=timezone.utc)
    end = summary.end_time.replace(tzinfo=timezone.utc) if summary.end_time else None
    counts = dict.fromkeys(OPS, 0)
    for op, n in (summary.resource_changes or {}).items():
        if op in OP_MAP:
            counts[OP_MAP[op]] += n
    return HistoryEntry(time=start.isoformat(timespec="seconds"),
                        operation=HISTORY_VOCABULARY.get(summary.kind, summary.kind),
                        result=summary.result,
                        duration_s=(end - start).total_seconds() if end else 0.0, **counts)


# Pulumi's names for operations in the words every tap target uses (base.HISTORY_OPERATIONS).
HISTORY_VOCABULARY = {"update": "deploy", "destroy": "destroy", "refresh": "refresh"}
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
    _, marker, stderr = _ANSI.sub("", str(exc)).rpartition("\n stderr: ")
    return stderr if marker else ""


def _scrub(text: str) -> str:
    text = _URL_CREDENTIALS.sub(r"\1***@", _ANSI.sub("", text))
    passphrase = os.environ.get("PULUMI_CONFIG_PASSPHRASE")
    return text.replace(passphrase, SECRET) if passphrase else text


# ---- progress ----------------------------------------------------------------------------------

class StepTracker:
    """The `on_event` callback of one operation: one Step per URN, plus start/done/failed
    progress. A replacement arrives as several events for one URN (create-replacement, replace,
    delete-replaced); they fold into one `replace` step with one start and one done."""

    def __init__(self, progress: ProgressCallback | None = None):
        self.errors: list[str] = []
        self._progress = progress
        self._steps: dict[str, Step] = {}
        self._finished: set[str] = set()
        self._error_by_urn: dict[str, str] = {}
        self._lock = threading.Lock()
        self._started = time.monotonic()

    @property
    def steps(self) -> list[Step]:
        return list(self._steps.values())

    def __call__(self, event: auto.EngineEvent) -> None:
        diag, translated = event.diagnostic_event, translate_event(event)
        with self._lock:
            if diag is not None and diag.severity == "error":
                message = _ANSI.sub("", diag.message).strip()
                self.errors.append(message)
                if diag.urn:
                    self._error_by_urn[diag.urn] = message
            notice = self._record(*translated) if translated is not None else None
        if notice is not None and self._progress is not None:
            self._progress(notice)

    def _record(self, phase: str, step: Step) -> StepEvent | None:
        known = self._steps.setdefault(step.urn, step)
        first = known is step
        if not first:
            if _OP_RANK[step.op] > _OP_RANK[known.op]:
                known.op = step.op
            known.diffs = known.diffs + [d for d in step.diffs if d not in known.diffs]
        elapsed = time.monotonic() - self._started
        snapshot = dataclasses.replace(known)
        if phase == "start":
            return StepEvent(snapshot, phase, len(self._finished), None, elapsed) if first else None
        if phase == "done" and step.urn in self._finished:
            return None
        self._finished.add(step.urn)
        error = self._error_by_urn.get(step.urn, "failed") if phase == "failed" else None
        return StepEvent(snapshot, phase, len(self._finished), None, elapsed, error)


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
