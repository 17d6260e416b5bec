"""Run the TapStack program in-process under Pulumi's mock runtime and record what it declares.

This is how tap gets a resource graph without the Pulumi CLI: the program is the real one; only
the engine it talks to is replaced (pulumi.runtime.mocks). A `Resolver` decides what each
registered resource answers (ids and outputs): placeholders for a plain synthesis, stored or
freshly created values for the sandbox engine.

The mock runtime keeps global state, so runs are serialized and each runs on a fresh thread with
its own event loop (notebook kernels already run a loop on the main thread).

One command synthesizes once: preflight publishes its run (`share`), and the sandbox engine's
preview takes it (`take_shared`) and replays it through its own resolver (`replays`), using it
only when every answer its resolver gives is the one the run was given.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import resource as pulumi_resource
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from ..config import Settings
from ..errors import DuplicateUrnError
from ..project import project_name

MOCK_ACCOUNT = "123456789012"
_RUN_LOCK = threading.Lock()
REGISTER_THREADS = 32   # see _run
# Set on the threads that run a synthesis (the run, and the executor threads registering for it).
_IN_SYNTHESIS = threading.local()
# How long a published synthesis may wait for the engine of the same command (seconds).
SHARE_TTL_S = 120.0


@dataclass
class Registration:
    """One resource as the program declared it."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]   # camelCase; secrets wrapped ({SIG_KEY: SECRET_SIG, "value": v})
    dependencies: list[str]
    provider: str = ""
    # Inputs whose changes the engine must not act on (ResourceOptions.ignore_changes), camelCase
    ignore_changes: list[str] = field(default_factory=list)
    # The other replacement options, as the engine receives them: delete_before_replace (None:
    # not set, the provider decides), replace_on_changes (input paths, "*" for any) and
    # replacement_trigger (JSON; unknowns as rpc.UNKNOWN, secrets wrapped; None: not set).
    delete_before_replace: bool | None = None
    replace_on_changes: list[str] = field(default_factory=list)
    replacement_trigger: Any = None
    # Resource options the program set beyond parent, dependencies, providers and the
    # replacement options above (protect, retain_on_delete, aliases, import, deleted_with, ...),
    # by their Python name: an engine that does not model one must refuse it.
    options: list[str] = field(default_factory=list)
    id: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_provider(self) -> bool:
        return self.type.startswith("pulumi:providers:")


@dataclass
class Synthesis:
    stack: str
    registrations: list[Registration]
    outputs: dict[str, Any]
    warnings: list[str]
    duplicates: list[str]
    error: BaseException | None
    duration_s: float
    # (token, args, answer) of every invoke, in order: a replay checks these answers too.
    invokes: list[tuple[str, dict, dict]] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    @property
    def resources(self) -> list[Registration]:
        """Custom (cloud) resources, without components and providers."""
        return [r for r in self.registrations if r.custom and not r.is_provider]


class Resolver(Protocol):
    def resource(self, reg: Registration) -> tuple[str, dict]: ...
    def invoke(self, token: str, args: dict) -> dict: ...


class PlaceholderResolver:
    """Answers like `pulumi preview` would for new resources: ids and ARNs made up from names."""

    def __init__(self, region: str, account: str = MOCK_ACCOUNT):
        self.region, self.account = region, account

    def resource(self, reg: Registration) -> tuple[str, dict]:
        if reg.is_provider:  # as the sandbox resolver answers it, so a replay can match
            return provider_id(reg), dict(reg.inputs)
        return placeholder_id(reg), placeholder_outputs(reg, self.region, self.account)

    def invoke(self, token: str, args: dict) -> dict:
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": self.account, "arn": f"arn:aws:iam::{self.account}:root",
                    "userId": "AIDTAPSANDBOX", "id": self.account}
        return {}


def placeholder_id(reg: Registration) -> str:
    return f"{reg.name}-id"


def provider_id(reg: Registration) -> str:
    return f"{reg.name}-provider"


def placeholder_outputs(reg: Registration, region: str, account: str) -> dict:
    """Computed outputs the program reads, shaped like AWS's so names and policies render."""
    out = dict(reg.inputs)
    service = reg.type.split(":")[1].split("/")[0] if ":" in reg.type else "x"
    physical = (reg.inputs.get("name") or reg.inputs.get("bucket")
                or reg.inputs.get("clusterIdentifier") or reg.name)
    out.setdefault("arn", f"arn:aws:{service}:{region}:{account}:{reg.name}")
    if reg.type == "aws:s3/bucket:Bucket":
        out["arn"] = f"arn:aws:s3:::{physical}"
    if reg.type == "aws:kms/key:Key":
        out["keyId"] = f"{reg.name}-key-id"
    if reg.type == "aws:rds/cluster:Cluster":
        out["endpoint"] = f"{physical}.cluster-placeholder.{region}.rds.amazonaws.com"
        out["masterUserSecrets"] = [{"secretArn": f"arn:aws:secretsmanager:{region}:{account}:"
                                                  f"secret:rds!cluster-{physical}-AbCdEf",
                                     "kmsKeyId": "", "secretStatus": "active"}]
    return out


class _Mocks(pulumi_mocks.Mocks):
    def __init__(self, recorder: "_RecordingMonitor", resolver: Resolver):
        self.recorder, self.resolver = recorder, resolver

    def new_resource(self, args: pulumi_mocks.MockResourceArgs):
        reg = self.recorder.pending.pop((args.typ, args.name))
        if not reg.custom:
            return None, {}
        reg.id, reg.outputs = self.resolver.resource(reg)
        return reg.id, reg.outputs

    def call(self, args: pulumi_mocks.MockCallArgs):
        answer = self.resolver.invoke(args.token, args.args)
        with self.recorder._lock:
            self.recorder.invokes.append((args.token, args.args, answer))
        return answer


def options_set(request: Any) -> list[str]:
    """The resource options the program set on `request`, by their ResourceOptions name.

    What the SDK adds by itself is not counted: the type aliases a provider class declares
    (a spec naming only an old type), empty hooks and timeouts, and the secret outputs a
    class declares (additional_secret_outputs only marks outputs secret)."""
    found = []
    if request.protect:
        found.append("protect")
    if request.HasField("retainOnDelete") and request.retainOnDelete:
        found.append("retain_on_delete")
    if request.aliasURNs or any(_user_alias(a) for a in request.aliases):
        found.append("aliases")
    if request.importId:
        found.append("import_")
    if request.deletedWith:
        found.append("deleted_with")
    if request.HasField("customTimeouts") and request.customTimeouts.ListFields():
        found.append("custom_timeouts")
    if request.replace_with:
        found.append("replace_with")
    if request.HasField("hooks") and request.hooks.ListFields():
        found.append("hooks")
    return found


def _user_alias(alias: Any) -> bool:
    if alias.WhichOneof("alias") == "urn":
        return True
    spec = alias.spec
    return bool(spec.name or spec.stack or spec.project or spec.parentUrn or spec.noParent)


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """Records parent, dependencies and order, and refuses a URN registered twice (the mock
    runtime would silently overwrite it; the real engine fails with 'duplicate resource URN')."""

    def __init__(self):
        super().__init__(None)  # mocks set right after: they need the monitor
        self.registrations: list[Registration] = []
        self.pending: dict[tuple[str, str], Registration] = {}
        self.duplicates: list[str] = []
        self.invokes: list[tuple[str, dict, dict]] = []
        self._lock = threading.Lock()
        self._seen: set[str] = set()

    def RegisterResource(self, request):
        urn = self.make_urn(request.parent, request.type, request.name)
        with self._lock:
            if urn in self._seen:
                self.duplicates.append(urn)
                raise DuplicateUrnError(urn)
            self._seen.add(urn)
        if request.type == "pulumi:pulumi:Stack":
            return super().RegisterResource(request)
        deps = set(request.dependencies)
        for pd in request.propertyDependencies.values():
            deps.update(pd.urns)
        reg = Registration(urn=urn, type=request.type, name=request.name, parent=request.parent,
                           custom=bool(request.custom),
                           inputs=rpc.deserialize_properties(request.object),
                           dependencies=sorted(deps), provider=request.provider,
                           ignore_changes=list(request.ignoreChanges),
                           delete_before_replace=request.deleteBeforeReplace
                           if request.deleteBeforeReplaceDefined else None,
                           replace_on_changes=list(request.replaceOnChanges),
                           replacement_trigger=json_format.MessageToDict(
                               request.replacement_trigger)
                           if request.HasField("replacement_trigger") else None,
                           options=options_set(request))
        with self._lock:
            self.registrations.append(reg)
            self.pending[(request.type, request.name)] = reg
        return super().RegisterResource(request)


class _WarningCollector(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def synthesize(settings: Settings, resolver: Resolver | None = None, *, preview: bool = True,
               program: Callable[[Settings], Any] | None = None) -> Synthesis:
    """Run the program once; never raises for program errors (they land in `.error`) so that
    preflight can turn them into findings."""
    from ..program.entry import define_stack

    program = program or define_stack
    resolver = resolver or PlaceholderResolver(settings.region)
    stack = settings.stack_name
    with _RUN_LOCK, ThreadPoolExecutor(1, thread_name_prefix="tap-synth") as pool:
        return pool.submit(_run, settings, resolver, preview, program, stack).result()


def _run(settings, resolver, preview, program, stack) -> Synthesis:
    _IN_SYNTHESIS.active = True
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(_quiet_unretrieved)
    asyncio.set_event_loop(loop)
    # The runtime registers resources on executor threads, and each of them gets an event loop
    # of its own (pulumi.runtime.sync_await). Left open, those loops are collected at exit and
    # print "Exception ignored in BaseEventLoop.__del__" on stderr: give them loops we close.
    thread_loops: list[asyncio.AbstractEventLoop] = []

    def own_loop() -> None:
        _IN_SYNTHESIS.active = True
        thread_loop = asyncio.new_event_loop()
        asyncio.set_event_loop(thread_loop)
        thread_loops.append(thread_loop)

    # Wide: a registration's thread mostly waits on the target (the emulator, a database
    # start), and with the default min(32, cores + 4) a deploy's resources queued behind each
    # other while their inputs were ready (the cluster started 0.7 s late on 2 cores).
    executor = ThreadPoolExecutor(REGISTER_THREADS, thread_name_prefix="tap-register",
                                  initializer=own_loop)
    loop.set_default_executor(executor)
    try:
        return _run_in_loop(settings, resolver, preview, program, stack)
    finally:
        # A failed program leaves registrations in flight; settle them so the loop closes
        # quietly instead of warning about destroyed pending tasks.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        asyncio.set_event_loop(None)
        loop.close()
        executor.shutdown(wait=True)
        for thread_loop in thread_loops:
            thread_loop.close()


def _quiet_unretrieved(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """A failed program is reported once, as Synthesis.error; the runtime's futures that carried
    the same exception and were never awaited would repeat it on stderr when collected."""
    if context.get("message") != "Future exception was never retrieved":
        loop.default_exception_handler(context)


def _run_in_loop(settings, resolver, preview, program, stack) -> Synthesis:
    monitor = _RecordingMonitor()
    mocks = _Mocks(monitor, resolver)
    monitor.mocks = mocks
    collector = _WarningCollector()
    logger = logging.getLogger("tap.synth")
    logger.propagate = False
    logger.handlers = [collector]
    pulumi_settings.reset_options()
    pulumi_mocks.set_mocks(mocks, project=project_name(), stack=stack, preview=preview,
                           logger=logger, monitor=monitor)
    pulumi_settings.SETTINGS.rpc_manager.clear()
    pulumi_settings.SETTINGS.outputs.clear()
    root = pulumi_settings.get_root_resource()
    error: BaseException | None = None
    outputs: dict[str, Any] = {}
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _sync_await(run_pulumi_func(lambda: program(settings)))
            outputs = _sync_await(pulumi.Output.from_input(dict(root.outputs)).future()) or {}
        except Exception as exc:  # noqa: BLE001 - reported to the caller as data
            error = _unwrap(exc, monitor)
    messages = [f"{w.category.__name__}: {w.message}" for w in caught
                if issubclass(w.category, (DeprecationWarning, UserWarning, FutureWarning))
                and not _import_time_notice(w)]
    messages += [f"pulumi warning: {m}" for m in collector.messages]
    return Synthesis(stack=stack, registrations=monitor.registrations, outputs=outputs,
                     warnings=messages, duplicates=list(monitor.duplicates), error=error,
                     duration_s=time.perf_counter() - start, invokes=list(monitor.invokes))


_EMPTY_TRACE = pulumi_resource.source_pb2.StackTrace()
_sdk_stack_trace = pulumi_resource._get_stack_trace


def _stack_trace() -> Any:
    """Pulumi walks and encodes the Python stack of every resource it registers, for the
    engine's source positions. The mock monitor drops them; in a synthesis that walk was a
    fifth of the run. Elsewhere (the Pulumi CLI's own runs) the SDK's walk is kept."""
    if getattr(_IN_SYNTHESIS, "active", False):
        return _EMPTY_TRACE
    return _sdk_stack_trace()


pulumi_resource._get_stack_trace = _stack_trace


# -- one synthesis per command ---------------------------------------------------------------
_shared: tuple[tuple, Synthesis, float] | None = None
_shared_lock = threading.Lock()


def share_key(settings: Settings, program: Callable[[Settings], Any] | None,
              resolver: PlaceholderResolver, preview: bool = True) -> tuple:
    """Everything a placeholder synthesis depends on: every setting (and the file they came
    from), the program function itself, the project and stack names, what the resolver answers
    with (region, account) and the preview flag. The program reads nothing else: its lambda
    archives are file paths, hashed by whoever compares them, not by the program."""
    if program is None:
        from ..program.entry import define_stack
        program = define_stack
    return (type(settings), settings.model_dump_json(), settings.source, program,
            project_name(), settings.stack_name, type(resolver), resolver.region,
            resolver.account, preview)


def share(synthesis: Synthesis, key: tuple) -> None:
    """Offer a fresh, complete placeholder synthesis to the rest of this command (the sandbox
    engine's preview). One slot: the newest offer replaces any older one."""
    global _shared
    if synthesis.error is not None or synthesis.duplicates:
        return
    with _shared_lock:
        _shared = (key, synthesis, time.monotonic())


def take_shared(key: tuple) -> Synthesis | None:
    """The offered synthesis if it was made from exactly `key` within SHARE_TTL_S; the slot is
    emptied either way, so an offer serves at most one consumer."""
    global _shared
    with _shared_lock:
        offer, _shared = _shared, None
    if offer is None or offer[0] != key or time.monotonic() - offer[2] > SHARE_TTL_S:
        return None
    return offer[1]


def forget_shared() -> None:
    global _shared
    with _shared_lock:
        _shared = None


def replays(synthesis: Synthesis, resolver: Resolver) -> bool:
    """Whether `resolver` gives every answer the run that made `synthesis` was given: then
    running the program against it would register exactly these resources with exactly these
    inputs (the program sees nothing but its settings and these answers), and the resolver has
    now seen every registration, as in that run. Stops at the first answer that differs."""
    for token, args, answer in synthesis.invokes:
        if resolver.invoke(token, args) != answer:
            return False
    for reg in synthesis.registrations:
        if not reg.custom:
            continue  # components are not answered by the resolver
        if tuple(resolver.resource(reg)) != (reg.id, reg.outputs):
            return False
    return True


def _import_time_notice(w: warnings.WarningMessage) -> bool:
    """pulumi_aws announces every deprecated class of a namespace when the namespace is first
    imported, used or not. Using such a class also logs a pulumi warning, which is captured, so
    these notices carry no information about the program."""
    return "pulumi_aws" in (w.filename or "") and "has been deprecated in favor of" in str(w.message)


def _unwrap(exc: BaseException, monitor: _RecordingMonitor) -> BaseException:
    """gRPC-style wrapping hides our own errors raised inside the monitor; dig them out."""
    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, DuplicateUrnError):
            return cur
        cur = cur.__cause__ or cur.__context__
    if monitor.duplicates:
        return DuplicateUrnError(monitor.duplicates[0])
    return exc
