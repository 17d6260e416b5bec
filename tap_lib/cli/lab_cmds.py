"""`tap run` (notebooks through papermill) and `tap lab` (JupyterLab sessions)."""
from __future__ import annotations

from ..errors import UsageError
from ..terminal import emit_json
from .common import command


@command("run")
def cmd_run(args) -> int:
    from ..ops.runbook import run_notebooks

    def show(name, record):
        if record is None:
            print(f"running    {name:<12} ...", flush=True)
            return
        print(f"{record.status:<10} {name:<12} {record.duration_s:6.1f}s  {record.path}",
              flush=True)
        if record.error:
            print(f"           {record.error}")

    params = dict(args.parameter or [])
    if len(params) != len(args.parameter or []):
        raise UsageError("each notebook parameter may be given once with -p")
    records = run_notebooks(args.notebook, env=args.env, target=args.target, parameters=params,
                            progress=None if args.json else show)
    if args.json:
        emit_json([r.to_dict() for r in records])
    return 1 if any(r.status != "succeeded" for r in records) else 0


@command("lab")
def cmd_lab(args) -> int:
    from ..lab import start_lab, stop_labs

    if args.action == "stop":
        stopped = stop_labs()
        for folder in stopped:
            print(f"stopped JupyterLab and its kernels for session {folder}")
        if not stopped:
            print("no tap lab running")
        return 0
    if not args.env:
        raise UsageError("tap lab needs --env ENV (the environment its notebooks run on)")
    return start_lab(args.env, args.target, port=args.port)
