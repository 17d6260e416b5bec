"""What every engine returns, so that nothing above the engines knows which one ran."""
from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from .. import authority, trail
from ..authority import Authorization
from ..errors import DestroyBlocked, ProtectedStack, UsageError

if TYPE_CHECKING:
    import pandas as pd

    from ..aws import Clients
    from ..config import Settings

OPS = ("create", "update", "replace", "delete", "same")

# How Pulumi marks a secret in properties and state: {SIG_KEY: SECRET_SIG, "value" | ...}.
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


@dataclass
class Step:
    urn: str
    type: str
    name: str
    op: str
    diffs: list[str] = field(default_factory=list)
    # What the resource costs a month once the plan is applied (tap_lib/cost); None: unknown.
    monthly_usd: float | None = None
    # Old and new value of each changed property (engines/changes), where the target knows them.
    changes: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        if not self.changes:  # creates and deletes: the shape scripts already read
            del out["changes"]
        return out


@dataclass
class Plan:
    """The steps of a preview, or the steps an operation took."""

    stack: str
    target: str
    steps: list[Step]
    operation: str = "preview"
    # {"monthly_usd", "delta_monthly_usd", "currency", "as_of", "assumptions", ...} (tap_lib/cost)
    cost: dict | None = None
    # The target's own plan file, when it has one (Pulumi's update plan on aws).
    artifact: str | None = None

    @property
    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(OPS, 0)
        for step in self.steps:
            counts[step.op] = counts.get(step.op, 0) + 1
        return counts

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.op != "same"]

    def to_frame(self) -> "pd.DataFrame":
        import pandas as pd  # lazily: the CLI's start-up time matters (tap audit verify)

        return pd.DataFrame([s.to_dict() for s in self.steps],
                            columns=["urn", "type", "name", "op", "diffs"])

    def changes_frame(self) -> "pd.DataFrame":
        """The steps that change something, readable and in a stable order (resources finish
        in any order)."""
        steps = self.to_frame()
        steps["type"] = steps["type"].str.split(":").str[-1]
        steps["diffs"] = steps["diffs"].map(", ".join)
        changed = steps[steps.op != "same"].sort_values(["op", "type", "name"])
        return changed[["op", "type", "name", "diffs"]].reset_index(drop=True)

    @classmethod
    def from_body(cls, body: dict) -> "Plan":
        """The steps a saved plan (ops/plans) holds."""
        return cls(body["stack"], body["target"], [Step(**s) for s in body["steps"]],
                   operation="preview", cost=body.get("cost"), artifact=body.get("artifact"))

    def to_dict(self) -> dict:
        out = {"stack": self.stack, "target": self.target, "operation": self.operation,
               "steps": [s.to_dict() for s in self.steps], "summary": self.summary}
        if self.cost is not None:
            out["cost"] = self.cost
        return out


@dataclass
class Result(Plan):
    """A finished deploy or destroy."""

    outputs: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    status: str = "succeeded"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "outputs": self.outputs,
                "duration_s": round(self.duration_s, 3), "status": self.status,
                "notes": self.notes}


@dataclass
class ResourceState:
    """One resource as the engine's state knows it (for inventories and drift)."""

    urn: str
    type: str
    name: str
    id: str
    status: str
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepEvent:
    """Progress of one resource during deploy/destroy."""

    step: Step
    phase: str          # "start" | "done" | "failed"
    index: int          # 1-based count of finished steps when phase != "start"
    total: int | None   # total steps when known
    elapsed_s: float
    error: str | None = None


ProgressCallback = Callable[[StepEvent], None]


@dataclass
class HistoryEntry:
    time: str
    operation: str
    result: str
    duration_s: float
    create: int = 0
    update: int = 0
    replace: int = 0
    delete: int = 0
    same: int = 0

    @classmethod
    def from_plan(cls, plan: Plan, operation: str, result: str, started: float) -> "HistoryEntry":
        return cls(time=utc_now(), operation=operation, result=result,
                   duration_s=round(time.monotonic() - started, 3), **plan.summary)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class StackMeta:
    """What a stack remembers about itself from its first deploy, whichever file runs it now:
    the environment file that created it and whether that file declared it protected."""

    origin: str          # e.g. "params/prod.yaml"
    protected: bool


class Engine(ABC):
    """One target (where stacks live) behind one interface. Everything that differs between
    targets is a method here, so operations never ask which engine they have; a new target is
    one subclass and one line in `registry.TARGETS`.

    Mutations (`up`, `destroy`, `refresh`) are guarded here, below every caller: a protected
    stack changes only through a signed, approved plan (tap_lib/authority), its deletes and
    replacements also need `confirm=<stack name>`, and a stack operated from another
    environment file than the one that created it is refused unless confirmed."""

    name: ClassVar[str]
    # A target whose engine can read any resource as it is now (inspect's full drift table).
    reads_live: ClassVar[bool] = False
    # Said wherever a function ran somewhere other than in the target itself.
    invoke_note: ClassVar[str | None] = None

    def __init__(self, settings: Settings):
        self.settings = settings
        self.stack = settings.stack_name

    # -- facts about the target that need no stack -------------------------------------
    @classmethod
    @abstractmethod
    def account(cls, region: str) -> str:
        """The account id stacks on this target live in (it makes bucket names unique)."""

    @classmethod
    @abstractmethod
    def offered_engine_versions(cls, region: str, engine: str) -> tuple[list[str], str]:
        """(versions offered in the region, where that list came from)."""

    @classmethod
    @abstractmethod
    def default_region(cls, settings: Settings) -> str | None:
        """Where calls would go without tap's explicit provider (None: nowhere)."""

    # -- the stack ------------------------------------------------------------------------
    @abstractmethod
    def preview(self, artifact: Path | None = None) -> Plan:
        """What up would do. With `artifact`, the target also saves its own plan there (if it
        has such a thing), for an up constrained to this plan."""

    def up(self, progress: ProgressCallback | None = None, *,
           confirm: str | None = None, plan: Plan | None = None,
           authorization: Authorization | None = None) -> Result:
        """Apply the program; with a reviewed `plan`, stop at any step that differs from it.
        A protected stack changes only through a verified, approved plan (`authorization`),
        and then exactly as that plan says, whoever calls."""
        with trail.recorded(self, "deploy") as outcome:
            meta = self.check_origin(confirm)
            protected = self._protected(meta)
            if protected:
                authority.require(authorization, self.stack, "deploy", what="a deploy",
                                  env=self.settings.environment)
                plan = Plan.from_body(authorization.body)
                self.require_confirmation(plan, confirm)
            outcome["result"] = self._up(
                progress, confirm=confirm if protected else self.stack,
                meta=meta or StackMeta(self.settings.source, self.settings.protected),
                plan=plan)
        return outcome["result"]

    def destroy(self, progress: ProgressCallback | None = None, *,
                confirm: str | None = None,
                authorization: Authorization | None = None) -> Result:
        """Delete every resource. A protected stack needs an approved destroy plan and its
        name as confirmation; any stack is refused, before the first delete, when something
        would stop the destroy part-way."""
        with trail.recorded(self, "destroy") as outcome:
            meta = self.check_origin(confirm)
            if self._protected(meta):
                authority.require(authorization, self.stack, "destroy", what="a destroy",
                                  env=self.settings.environment)
                if confirm != self.stack:
                    raise ProtectedStack(self.stack, "destroy deletes every resource", confirm)
            blockers = self.destroy_blockers()
            if blockers:
                raise DestroyBlocked(self.stack, blockers)
            outcome["result"] = self._destroy(progress)
        return outcome["result"]

    def preview_destroy(self) -> Plan:
        """What destroy would do: delete every resource the stack has."""
        return Plan(self.stack, self.name, [Step(r.urn, r.type, r.name, "delete")
                                            for r in self.resources()], operation="destroy")

    def destroy_blockers(self) -> list[str]:
        """What would stop a destroy part-way (an RDS cluster with deletion protection on, as
        it is now where the target can say, else as recorded)."""
        blockers = []
        for res in self.resources():
            if res.type != "aws:rds/cluster:Cluster":
                continue
            # a create that failed part-way left no id: nothing live to ask (destroy settles it)
            live = self.read_live(res.urn) if self.reads_live and res.id else res.outputs
            if (live or {}).get("deletionProtection"):
                blockers.append(f"RDS cluster {res.id or res.name} has deletion protection on")
        return blockers

    def refresh(self, progress: ProgressCallback | None = None, *,
                confirm: str | None = None,
                authorization: Authorization | None = None) -> Result:
        """Read every resource as it is now into the stack's state (drift becomes visible to
        preview, and the next deploy repairs it). Changes no resource, but what later plans are
        computed against: a protected stack's refresh needs an approved refresh plan."""
        with trail.recorded(self, "refresh") as outcome:
            meta = self.check_origin(confirm)
            if self._protected(meta):
                authority.require(authorization, self.stack, "refresh", what="a refresh",
                                  env=self.settings.environment)
            outcome["result"] = self._refresh(progress)
        return outcome["result"]

    @abstractmethod
    def _refresh(self, progress: ProgressCallback | None) -> Result: ...

    @abstractmethod
    def _up(self, progress: ProgressCallback | None, *, confirm: str | None,
            meta: StackMeta, plan: Plan | None = None) -> Result:
        """Apply the program. Must refuse, before changing it, any delete or replace when
        `confirm` is not the stack name, and any step that differs from `plan` when one is
        given; records `meta` with the stack."""

    @abstractmethod
    def _destroy(self, progress: ProgressCallback | None) -> Result: ...

    @abstractmethod
    def outputs(self) -> dict[str, Any]: ...

    @abstractmethod
    def resources(self) -> list[ResourceState]: ...

    @abstractmethod
    def history(self) -> list[HistoryEntry]:
        """Past operations, named with HISTORY_OPERATIONS whatever the target calls them."""

    @abstractmethod
    def stack_meta(self) -> StackMeta | None:
        """What the stack recorded at its first deploy; None for a stack never deployed."""

    # -- what operations need from the target ----------------------------------------------
    @abstractmethod
    def clients(self) -> Clients:
        """boto3 clients on the target, in the stack's region."""

    @abstractmethod
    def invoke(self, function: dict, event: dict) -> dict:
        """Run a deployed function (its get_function description) with `event`; its result."""

    @classmethod
    def invocations(cls) -> AbstractContextManager[None]:
        """Within this block many `invoke` calls follow (a fleet's synthetic payments): a
        target whose functions run locally may keep its runtime warm between them."""
        return nullcontext()

    def check_not_busy(self) -> None:
        """Refuse at once (StackLocked) when another operation is changing the stack: a
        second operator hears it before preflight's work, not after. The mutation itself
        still takes the stack's lock."""

    def preparing_up(self) -> AbstractContextManager[None]:
        """Around preflight: the target may start slow work a deploy of these settings will
        wait for and that nothing preflight decides changes (the sandbox initialises its
        database stand-in on another core); undone when the block fails (deploy refused)."""
        return nullcontext()

    def read_live(self, urn: str) -> dict | None:
        """The resource as the target has it now, or None if it is gone."""
        raise NotImplementedError(f"the {self.name} target cannot read single resources")

    def login_check(self) -> bool:
        """Whether tap can reach the database itself (not only through the function)."""
        return False

    def db_address(self, host: str, port: int) -> tuple[str, int]:
        """Where tap's own connection to a database endpoint goes (the endpoint itself)."""
        return host, port

    def db_ca_file(self) -> Path:
        """The CA a connection to the stack's database verifies the server with: Aurora's
        certificates chain to the RDS bundle the functions ship too."""
        from ..program.packaging import ca_bundle

        return ca_bundle()

    @classmethod
    def reset(cls) -> None:
        """Return the target to empty (only a rehearsal target can)."""
        raise UsageError(f"the {cls.name} target cannot be reset; destroy its stacks instead")

    # -- guards ----------------------------------------------------------------------------
    def is_protected(self) -> bool:
        return self._protected(self.stack_meta())

    def _protected(self, meta: StackMeta | None) -> bool:
        """Protected when the stack recorded it, or its environment file says so: a state file
        edited by hand (protected: false) does not lift the file's protection."""
        return bool(meta and meta.protected) or self.settings.protected

    def check_origin(self, confirm: str | None) -> StackMeta | None:
        meta = self.stack_meta()
        if meta and meta.origin != self.settings.source and confirm != self.stack:
            raise UsageError(
                f"stack {self.stack} was created from {meta.origin}, not "
                f"{self.settings.source}; refusing to change it from another environment file",
                hint=f"use --env for {meta.origin}, or confirm on purpose with "
                     f"--confirm {self.stack}")
        return meta

    def require_confirmation(self, plan: Plan, confirm: str | None) -> None:
        """A protected stack: every delete and replace needs the stack name as confirmation."""
        risky = [s for s in plan.steps if s.op in ("delete", "replace")]
        if risky and confirm != self.stack:
            shown = ", ".join(f"{s.op} {s.name}" for s in risky[:8])
            more = f" and {len(risky) - 8} more" if len(risky) > 8 else ""
            raise ProtectedStack(self.stack, f"this deploy would {shown}{more}", confirm)


HISTORY_OPERATIONS = ("deploy", "destroy", "refresh")
