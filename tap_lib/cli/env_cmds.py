"""`tap sandbox` (the local emulator) and `tap fleet` (many stacks at once)."""
from __future__ import annotations

from ..terminal import emit_json, emit_table
from .common import command


@command("sandbox")
def cmd_sandbox(args) -> int:
    from ..engines.sandbox import server
    from ..engines.sandbox.engine import reset_sandbox, stop_sandbox

    status = {"start": server.start, "stop": stop_sandbox, "status": server.status,
              "reset": reset_sandbox}[args.action]()
    if args.json:
        emit_json(status.to_dict())
    else:
        state = "running" if status.running else "stopped"
        line = f"sandbox {state} at {status.endpoint}"
        if status.running:
            line += f" (pid {status.pid}, up {status.uptime_s or 0:.0f}s)"
        print(line)
    return 0


@command("fleet")
def cmd_fleet(args) -> int:
    """verify|preview|inspect over many stacks at once (ops/fleet.py); list shows the stacks."""
    import pandas as pd

    from ..ops import fleet

    stacks = fleet.resolve_stacks(args.env, args.suffix, args.fleet)
    if args.action == "list":
        rows = [{**ref.to_dict(), "stack": s.stack_name, "region": s.region}
                for ref, s in stacks]
        emit_json(rows) if args.json else emit_table(pd.DataFrame(rows), "fleet:")
        return 0

    def show(result) -> None:
        print(f"{result.status:<12} {result.stack:<24} {result.duration_s:6.1f}s"
              + (f"  {result.error}" if result.error else ""), flush=True)

    report = fleet.run_fleet(args.action, stacks, args.target, args.max_workers,
                             progress=None if args.json else show)
    if args.json:
        emit_json(report.to_list())
    else:
        emit_table(report.summary(), f"\nfleet {args.action} ({report.target}):")
        if args.action == "verify":
            matrix = report.matrix()
            failing = matrix.loc[:, (matrix == "fail").any()]
            if failing.shape[1]:
                emit_table(failing.reset_index(names="stack"), "\nfailed checks (stack x id):")
        print(f"{len(report.results)} stack(s) in {report.duration_s:.1f}s; "
              f"exit {report.exit_code}")
    return report.exit_code


@command("db")
def cmd_db(args) -> int:
    """`tap db connect`: where the stack's database is and how to log in (ops/dbconnect.py);
    the password goes to a 0600 pgpass file, never to the screen."""
    from ..ops.dbconnect import db_connect

    conn = db_connect(args.env, args.target, args.set, secret=args.secret,
                      ca_file=args.ca_file)
    if args.json:
        emit_json(conn.to_dict())
        return 0
    print(f"database {conn.dbname} as {conn.user} at {conn.host}:{conn.port} "
          f"(endpoint {conn.endpoint}:{conn.endpoint_port}), sslmode {conn.sslmode}")
    print(f"password: in {conn.passfile} (0600; libpq reads it through passfile=)")
    print(f"connection string: {conn.conninfo()}")
    print(conn.psql_command())
    return 0
