"""The sandbox engine: the real TapStack program, applied to the local emulator.

The program runs under Pulumi's mock runtime (engines/synth.py); every resource it registers is
answered by a resolver. For preview the resolver only compares with state; for deploy it calls
the type's handler (create/update/replace) and records the result before answering, so the
program's own data flow gives the dependency order, as in the real engine.

Replacements follow Pulumi. Preview answers a replaced resource with placeholders, as for a
create, so dependents whose inputs use its outputs classify as they will. Deploy creates the
replacement before deleting the old resource: the old record moves to a side key
(`<urn>#replaced`) in the same state write that marks the new one pending, dependents update or
replace onto the new resource, and the side keys are deleted at the end in reverse dependency
order. A replacement that keeps a physical name (`Handler.collides`) cannot exist beside the
old resource: like `deleteBeforeReplace`, a preview pass run first finds those, and they and the
dependents the plan replaces with them are deleted (reverse dependency order) before the
program runs; the pass then creates them, each still one `replace` step. The program's own
replacement options are honoured as Pulumi's step generator does (`steps.diff`): ignore_changes,
replace_on_changes, replacement_trigger (recorded per resource), and delete_before_replace,
which when set overrides the physical-name rule either way.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import boto3

from ...aws import Clients
from ...config import Settings
from ...errors import OperationFailed, PlanMismatch, ProtectedStack, SandboxStateLost, TapError
from ..base import (Engine, HistoryEntry, Plan, ProgressCallback, ResourceState, Result, Step,
                    StackMeta)
from ..synth import MOCK_ACCOUNT, synthesize
from ..versions import catalog_engine_versions
# standin (PostgreSQL, TLS) and lambda_runtime load where used: a preview needs neither
from . import server
from .handlers import Context
from .lifecycle import TARGET
from .lifecycle import protected_stacks, reset_sandbox, stop_sandbox  # noqa: F401 - the CLI's
from .refresh import read_back
from .resolver import Resolver, replayed_preview
from .scope import handler_of
from .state import OperationLock, ResourceRecord, StateStore, normalize, normalize_reveal
from .steps import (REPLACED, base_urn, nothing_to_apply, ordered, restorable, same_step,
                    said)
from .steps import REPLACEMENT_TRIGGER  # noqa: F401 - tests name it through the engine

# Warm runtime processes for a block of invocations (a fleet's payments): two were no faster
# than one on 2 cores (benchmarks/bench_fleet.py).
RUNTIME_WORKERS = 1


class SandboxEngine(Engine):
    name = TARGET
    reads_live = True
    invoke_note = ("sandbox: the emulator cannot execute Lambdas; the function's shipped handler "
                   "ran in tap's local runtime stand-in against the sandbox's Secrets Manager, "
                   "S3 and PostgreSQL")

    def __init__(self, settings: Settings, overrides: tuple[str, ...] = (), *, program=None):
        super().__init__(settings)
        self.program = program          # tests pass broken variants; default: define_stack
        self.store = StateStore(self.stack)
        self._clients: Clients | None = None
        self._boot_seen: str | None = None   # the boot id read when the clients were made

    # -- the target ----------------------------------------------------------------------
    @classmethod
    def account(cls, region: str) -> str:
        return MOCK_ACCOUNT

    @classmethod
    def offered_engine_versions(cls, region: str, engine: str) -> tuple[list[str], str]:
        return catalog_engine_versions(region, engine)

    @classmethod
    def default_region(cls, settings: Settings) -> str | None:
        return settings.region

    @classmethod
    def reset(cls) -> None:
        reset_sandbox()

    def clients(self) -> Clients:
        """Clients on the emulator (started on first use), shared by every step."""
        if self._clients is None:
            status = server.ensure_running()
            self._boot_seen = status.boot_id
            session = boto3.session.Session(aws_access_key_id="testing",
                                            aws_secret_access_key="testing",
                                            region_name=self.settings.region)
            # botocore's endpoint and service files, parsed once per process (0.2 s each time)
            session._session.register_component("data_loader", server.data_loader())
            self._clients = Clients(session, endpoint_url=status.endpoint,
                                    config=server.CLIENT_CONFIG)
        return self._clients

    @classmethod
    def invocations(cls):
        """One warm runtime process for the block instead of a child process per call."""
        from . import lambda_runtime

        return lambda_runtime.shared(workers=RUNTIME_WORKERS, prestart=True)

    def invoke(self, function: dict, event: dict, *, handler: str = "payment") -> dict:
        from . import lambda_runtime, standin

        env = function.get("Configuration", {}).get("Environment") or {}
        return lambda_runtime.invoke(handler, event, endpoint=self.clients().endpoint,
                                     region=self.settings.region,
                                     variables=env.get("Variables", {}),
                                     hosts=standin.host_map(self.stack))

    def login_check(self) -> bool:
        return True

    def db_ca_file(self) -> Path:
        """The stand-ins' certificates chain to the sandbox's own CA."""
        from .sandbox_ca import ca_file

        return ca_file()

    def db_address(self, host: str, port: int) -> tuple[str, int]:
        """The Aurora endpoint names lead to the cluster's local stand-in."""
        from . import standin

        local = standin.host_map(self.stack).get(host)
        if local is None:
            return host, port
        address, _, local_port = local.rpartition(":")
        return address, int(local_port)

    def context(self, urn: str, name: str, changed: list[str] | None = None) -> Context:
        return Context(region=self.settings.region, account=MOCK_ACCOUNT, urn=urn, name=name,
                       clients=self.clients(), changed=changed or [])

    def _check_emulator(self, *, writing: bool) -> list[str]:
        """Detect an emulator that restarted and forgot the stack (its boot id changed).

        Reading fails with a hint; writing starts the stack afresh. A writing operation also
        binds the state to this emulator before its first write, so that one killed part-way
        is recognised as ours (and converged) next time, not as an emulator restart."""
        fresh = self._clients is None
        self.clients()
        state = self.store.state
        # the emulator's boot id as ensure_running read it a moment ago, else asked now
        live_boot = self._boot_seen if fresh and self._boot_seen else server.boot_id()
        notes = []
        if state.resources and state.boot_id != live_boot:
            if not writing:
                raise SandboxStateLost(
                    f"the sandbox emulator was restarted and no longer holds stack "
                    f"{self.stack} ({len(state.resources)} resources in tap's state)",
                    hint=f"run `tap deploy --env {self.settings.environment} --yes` to "
                         "recreate it cleanly, or `tap sandbox reset` to start from empty")
            forget_stand_ins(self.stack)
            state.resources.clear()
            state.outputs = {}
            notes.append("the emulator had restarted and lost this stack; recreated it from "
                         "scratch")
        if writing:
            state.boot_id = live_boot
            self.store.save()
        return notes

    # -- the stack -----------------------------------------------------------------------
    def preparing_up(self):
        from . import standin   # here: a preview never loads PostgreSQL's tooling

        return standin.preparing(self.stack, self.settings.physical_names(MOCK_ACCOUNT).rds_cluster)

    def check_not_busy(self) -> None:
        from .state import reading_check
        reading_check(self.stack)

    def stack_meta(self) -> StackMeta | None:
        state = self.store.state
        return StackMeta(state.origin, state.protected) if state.origin else None

    def preview(self, artifact: Path | None = None) -> Plan:
        """The sandbox has no plan file of its own: a reviewed plan's steps are checked one by
        one as the deploy reaches them."""
        from .state import reading_check
        reading_check(self.stack)  # mid-deploy state is half-applied: say so, do not show it
        self._check_emulator(writing=False)
        if not self.store.state.resources:  # "create everything" would be a promise deploy
            self._refuse_orphans()          # refuses: say so now, and why
        return self._plan_now()

    def _refuse_orphans(self) -> None:
        from .discovery import refuse_orphans
        refuse_orphans(self.stack, self.clients(), env=self.settings.environment,
                       state_file=self.store.path)

    def _plan_now(self) -> Plan:
        resolver, syn = replayed_preview(self)   # preflight's run, when it answers for this stack
        if syn is None:
            resolver = Resolver(self, apply=False)
            syn = self._synthesize(resolver, preview=True)
        steps = resolver.steps + self._removed_steps(syn, skip=restorable(
            self.store.state.resources))
        return Plan(self.stack, TARGET, ordered(steps, syn), operation="preview")

    def _up(self, progress: ProgressCallback | None, *, confirm: str | None,
            meta: StackMeta, plan: Plan | None = None) -> Result:
        started = time.monotonic()
        with OperationLock(self.stack, "deploy"):
            self.store.reload()  # what the stack is now, not when this engine was opened
            notes = self._check_emulator(writing=True)
            if not self.store.state.resources:  # lost state must not duplicate the stack
                self._refuse_orphans()
            state = self.store.state
            if not state.origin:
                state.origin, state.protected = meta.origin, meta.protected
                self.store.save()
            if plan is not None:
                self._check_reviewed(plan)
            self._recover_pending()
            resolver = Resolver(self, apply=True, progress=progress,
                                 confirmed=confirm == self.stack, plan=plan)
            try:
                planned, syn = self._delete_before_replace(resolver)
                if planned is not None and nothing_to_apply(
                        planned.steps, syn, self.store.state, self._removed_steps(syn)):
                    for step in planned.steps:  # the apply pass would change and record nothing
                        resolver.steps.append(step)
                        resolver._event(step, "done")
                else:
                    syn = self._apply_program(resolver)
            except TapError:
                self.store.append_history(HistoryEntry.from_plan(
                    Plan(self.stack, TARGET, resolver.steps), "deploy", "failed", started))
                raise
            state.outputs = normalize(syn.outputs)
            state.region = self.settings.region
            self.store.save()
            result = Result(self.stack, TARGET, ordered(resolver.steps, syn),
                            operation="deploy", outputs=state.outputs,
                            duration_s=time.monotonic() - started,
                            notes=notes + resolver.notes)
            self.store.append_history(HistoryEntry.from_plan(result, "deploy", "succeeded",
                                                             started))
            return result

    def _apply_program(self, resolver: Resolver):
        """The apply pass: the program against the applying resolver, then what it no longer
        declares (and old copies of replaced resources) deleted in reverse dependency order."""
        syn = self._synthesize(resolver, preview=False)
        removed = self._removed_steps(syn, skip=resolver.superseded)
        for step in removed:
            resolver.check_planned(step)
        if removed and not resolver.confirmed:
            raise ProtectedStack(self.stack, "this deploy would delete " + ", ".join(
                s.name for s in removed), None)
        records = self.store.state.resources
        self._delete_in_order(
            [records[s.urn] for s in removed]
            + [records[u] for u in resolver.superseded if u in records],
            resolver, quiet=set(resolver.superseded))
        return syn

    def _check_reviewed(self, plan: Plan) -> None:
        """Under the lock, before the first change: the stack as it is now must still give
        every step of the reviewed plan, `same` ones included. The plan file's checks ran
        before the lock; another operator may have applied this plan, or another, since. The
        apply pass checks each step again as it reaches it."""
        planned = {s.urn: s for s in plan.steps}
        for step in self._plan_now().steps:
            was = planned.pop(step.urn, None)
            if not same_step(was, step):
                raise PlanMismatch(self.stack, step.name, said(was), said(step))
        for was in planned.values():
            raise PlanMismatch(self.stack, was.name, said(was), "nothing")

    def _destroy(self, progress: ProgressCallback | None) -> Result:
        started = time.monotonic()
        with OperationLock(self.stack, "destroy"):
            self.store.reload()  # what the stack is now, not when this engine was opened
            notes = self._check_emulator(writing=True)
            resolver = Resolver(self, apply=True, progress=progress)
            records = list(self.store.state.resources.values())
            try:
                self._delete_in_order(records, resolver)
            except TapError:
                self.store.append_history(HistoryEntry.from_plan(
                    Plan(self.stack, TARGET, resolver.steps), "destroy", "failed", started))
                raise
            forget_stand_ins(self.stack)
            state = self.store.state
            state.outputs, state.origin, state.protected = {}, "", False
            self.store.save()
            result = Result(self.stack, TARGET, resolver.steps, operation="destroy",
                            duration_s=time.monotonic() - started, notes=notes)
            self.store.append_history(HistoryEntry.from_plan(result, "destroy", "succeeded",
                                                             started))
            return result

    def _refresh(self, progress: ProgressCallback | None) -> Result:
        """Each recorded resource read back from the emulator (refresh.read_back)."""
        started = time.monotonic()
        with OperationLock(self.stack, "refresh"):
            self.store.reload()  # what the stack is now, not when this engine was opened
            notes = self._check_emulator(writing=True)
            resolver = Resolver(self, apply=True, progress=progress)
            read_back(self, resolver)
            result = Result(self.stack, TARGET, resolver.steps, operation="refresh",
                            outputs=dict(self.store.state.outputs),
                            duration_s=time.monotonic() - started, notes=notes)
            self.store.append_history(HistoryEntry.from_plan(result, "refresh", "succeeded",
                                                             started))
            return result

    def outputs(self) -> dict[str, Any]:
        from .state import reading_check
        reading_check(self.stack)
        return dict(self.store.state.outputs)

    def resources(self) -> list[ResourceState]:
        return [ResourceState(r.urn, r.type, r.name, r.id or "", r.status, r.outputs)
                for r in self.store.state.resources.values()]

    def history(self) -> list[HistoryEntry]:
        return self.store.history()

    def read_live(self, urn: str) -> dict | None:
        """The resource as the emulator has it now (for drift), or None if it is gone."""
        rec = self.store.state.resources[urn]
        ctx = self.context(urn, rec.name)
        return handler_of(rec.type, urn).read(ctx, rec.id, normalize_reveal(rec.outputs))

    # -- helpers -----------------------------------------------------------------------
    def _synthesize(self, resolver: Resolver, preview: bool):
        syn = synthesize(self.settings, resolver, preview=preview, program=self.program)
        resolver.drain()
        if resolver.failure is not None:
            raise resolver.failure
        if syn.error is not None:
            if isinstance(syn.error, TapError):
                raise syn.error
            raise OperationFailed(f"the program failed: {type(syn.error).__name__}: "
                                  f"{syn.error}")
        return syn

    def _removed_steps(self, syn, skip=()) -> list[Step]:
        """Recorded resources the program no longer declares, and old copies an earlier,
        interrupted replace left to delete (side keys; `skip`: this deploy's own)."""
        declared = {r.urn for r in syn.registrations}
        return [Step(r.urn, r.type, r.name, "delete")
                for r in self.store.state.resources.values()
                if r.urn not in declared and r.urn not in skip]

    def side_key(self, urn: str) -> str:
        """A free key for a replaced resource's old record."""
        state, n, key = self.store.state.resources, 1, urn + REPLACED
        while key in state:
            n += 1
            key = f"{urn}{REPLACED}.{n}"
        return key

    def _delete_before_replace(self, resolver: Resolver):
        """Replacements that keep a physical name cannot be created beside the resource they
        replace, and those the program marks delete_before_replace must not be (Pulumi's
        deleteBeforeReplace): a preview pass finds them; they, and every
        dependent the plan replaces with them, are deleted now in reverse dependency order
        (state written after each), and the deploy's pass creates them as `replace` steps.
        Refused before anything is deleted if the stack is protected and unconfirmed, or a
        reviewed plan says otherwise. Returns the preview pass (its resolver and synthesis)
        when it deleted nothing (steps.nothing_to_apply reads it); else (None, None)."""
        state = self.store.state.resources
        if not state:
            return None, None
        planned = Resolver(self, apply=False)
        syn = self._synthesize(planned, preview=True)
        if not planned.colliding:
            return planned, syn
        replaces = {s.urn: s for s in planned.steps if s.op == "replace"}
        dependents: dict[str, set[str]] = {}
        for urn, deps in [(r.urn, r.dependencies) for r in state.values()] + [
                (r.urn, r.dependencies) for r in syn.registrations]:
            for dep in deps:
                dependents.setdefault(dep, set()).add(urn)
        doomed: set[str] = set()
        todo = sorted(planned.colliding)
        while todo:
            urn = todo.pop()
            if urn not in doomed:
                doomed.add(urn)
                todo.extend(d for d in dependents.get(urn, ()) if d in replaces)
        for urn in sorted(doomed):
            resolver.check_planned(replaces[urn])
            if not resolver.confirmed:
                raise ProtectedStack(self.stack, f"this deploy would replace {replaces[urn].name}",
                                     None)
        self._delete_in_order([state[u] for u in doomed], resolver, quiet=doomed)
        resolver.rebuilt = {u: replaces[u] for u in doomed}
        return None, None

    def _recover_pending(self) -> None:
        """Settle steps an earlier operation left in flight. A create that was never recorded
        may have happened: find the resource by its name or tag and delete it, so the deploy
        recreates it cleanly (no orphans). A delete that did not finish: keep the resource if
        it is still there, forget it if it is gone. A replacement whose create never got
        recorded leaves its old resource the resource again (its side key moves back)."""
        for rec in list(self.store.state.resources.values()):
            if rec.status == "pending-create":
                self._recover_pending_one(rec)
            elif rec.status == "pending-delete":
                if self.read_live(rec.urn) is None:
                    self.store.drop(rec.urn)
                else:
                    rec.status = "created"
                    self.store.put(rec)
        for side, base in restorable(self.store.state.resources).items():
            self.store.change(put=[dataclasses.replace(self.store.state.resources[side],
                                                       urn=base)], drop=[side])

    def delete_record(self, rec: ResourceRecord) -> None:
        rec.status = "pending-delete"
        self.store.put(rec)
        handler = handler_of(rec.type, rec.urn)
        try:
            handler.delete(self.context(rec.urn, rec.name), rec.id,
                           normalize_reveal(rec.inputs), normalize_reveal(rec.outputs))
        except Exception:
            rec.status = "created"  # the emulator refused: the resource is still there
            self.store.put(rec)
            raise
        self.store.drop(rec.urn)

    def _delete_in_order(self, records: list[ResourceRecord], resolver: Resolver,
                         quiet: set[str] = frozenset()) -> None:
        """Reverse dependency order: a resource goes only after everything that uses it (a
        side key's old copy after everything that used its resource). `quiet` records are
        part of a replace step, not delete steps of their own."""
        remaining = {r.urn: r for r in records}
        if set(remaining) - set(quiet):
            resolver.total = len(set(remaining) - set(quiet))
        while remaining:
            used = {d for r in remaining.values() for d in r.dependencies}
            ready = [r for urn, r in remaining.items() if base_urn(urn) not in used] or \
                list(remaining.values())[:1]
            for rec in ready:
                step = Step(rec.urn, rec.type, rec.name, "delete")
                shown = rec.urn not in quiet
                if shown:
                    resolver.steps.append(step)
                    resolver._event(step, "start")
                try:
                    if rec.status == "created":
                        self.delete_record(rec)
                    else:
                        self._recover_pending_one(rec)
                except TapError:
                    raise
                except Exception as exc:  # noqa: BLE001 - reported with the resource
                    if shown:
                        resolver._event(step, "failed", str(exc))
                    raise OperationFailed(f"deleting {rec.urn} failed: {exc}") from None
                if shown:
                    resolver._event(step, "done")
                del remaining[rec.urn]

    def _recover_pending_one(self, rec: ResourceRecord) -> None:
        """Delete what a record in flight may have left live. Found by name or tag, never a
        resource state holds under another key (a replaced resource's old copy carries the
        same URN tag and may keep the name): that one is accounted for, so it stays."""
        handler = handler_of(rec.type, rec.urn)
        ctx = self.context(rec.urn, rec.name)
        inputs = normalize_reveal(rec.inputs)
        if rec.id:
            found = rec.id
        else:
            known = frozenset(r.id for r in self.store.state.resources.values()
                              if r.type == rec.type and r.urn != rec.urn and r.id)
            found = handler.find(ctx, inputs, known)
            found = None if found in known else found
        if found:
            handler.delete(ctx, found, inputs, normalize_reveal(rec.outputs))
        self.store.drop(rec.urn)


def forget_stand_ins(stack: str) -> None:
    from . import standin

    standin.forget_all(stack)
