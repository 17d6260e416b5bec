"""The sandbox as a whole: stopping and resetting the emulator, which forgets every stack it
holds, so both are refused while a protected stack lives there, and recorded in the trail.
"""
from __future__ import annotations

from ... import trail
from ...errors import ProtectedStack, TapError
from . import server

TARGET = "sandbox"   # the target these stacks live on (registry.TARGETS)


def stop_sandbox() -> server.SandboxStatus:
    """Stop the emulator; the stacks it held are forgotten, so their databases go too. Refused
    while a protected stack lives in it: stopping would lose it as a reset does."""
    if protected_stacks() and _maybe_running():
        _refuse_while_protected("stopping the sandbox", "stop")
    from . import standin   # here: a preview never loads PostgreSQL's tooling

    standin.forget_every_stack()
    return server.stop()


def _maybe_running() -> bool:
    """Whether the emulator may hold stacks now; a damaged runtime file cannot say no."""
    try:
        return server.status().running
    except TapError:
        return True


def _refuse_while_protected(what: str, operation: str) -> None:
    protected = protected_stacks()
    if not protected:
        return
    trail.append("reset", stack=", ".join(protected), target=TARGET, result="refused",
                 error="ProtectedStack", notes=[f"tap sandbox {operation}"])
    raise ProtectedStack(protected[0], f"{what} would lose it" + (
        f" (and {', '.join(protected[1:])})" if protected[1:] else ""), None,
        hint=f"destroy it first with an approved destroy plan: tap preview --env ENV "
             f"--destroy --save-plan FILE; tap approve FILE; tap destroy --env ENV --plan "
             f"FILE --yes --confirm {protected[0]}")


def protected_stacks() -> list[str]:
    """Stacks living in the sandbox whose state says they are protected."""
    from .state import StateStore, stack_dir

    root = stack_dir("_").parent
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [name for name in names
            if (state := StateStore(name).state).protected and state.resources]


def reset_sandbox() -> server.SandboxStatus:
    """An empty emulator and no stack state: the sandbox as on a new machine. Refused while a
    protected stack lives here (it goes only by its approved destroy plan); recorded."""
    import shutil

    from . import standin
    from .state import stack_dir

    _refuse_while_protected("a sandbox reset", "reset")
    trail.append("reset", stack="(sandbox)", target=TARGET, result="started")  # write-ahead
    try:
        standin.forget_every_stack()
        status = server.reset()
        shutil.rmtree(stack_dir("_").parent, ignore_errors=True)
    except BaseException as exc:
        trail.append("reset", stack="(sandbox)", target=TARGET, result="failed",
                     error=type(exc).__name__)
        raise
    trail.append("reset", stack="(sandbox)", target=TARGET, result="succeeded")
    return status
