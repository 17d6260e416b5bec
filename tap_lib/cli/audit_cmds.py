"""`tap audit [list|verify|trail|seal]`: the records, the trail and its seals."""
from __future__ import annotations

import os

from .. import terminal
from ..terminal import emit_json, emit_table
from .common import command


@command("audit")
def cmd_audit(args) -> int:
    from ..ops import audit

    if args.export:
        path = audit.export_html(args.export)
        print(path)
        return 0
    if args.action == "verify":
        report = audit.verify(expect_head=args.head, require_seals=args.require_seals)
        if args.json:
            emit_json(report.to_dict())
            return 0 if report.ok else 1
        for problem in report.problems:
            print(problem)
        if report.interrupted:
            print(f"warning: {len(report.interrupted)} mutation(s) started and never ended "
                  "(killed, or still running): entries "
                  + ", ".join(f"#{q}" for q in report.interrupted[:20]))
        for warning in report.warnings:
            print(f"warning: {warning}")
        if report.unsealed:
            first, last = report.unsealed[0], report.unsealed[-1]
            print(f"warning: {len(report.unsealed)} entries unsealed (#{first}"
                  + (f"…#{last}" if last != first else "") + "): no seal by a key "
                  "params/approvers lists vouches for them (`tap audit seal`)")
        state = "intact" if report.ok else f"BROKEN: {len(report.problems)} problem(s)"
        copy = "" if report.locked is None else (
            f" (its Object Lock copy holds {report.locked['entries']} entries, "
            f"{report.locked['seals']} seals)")
        print(f"audit chain {state}: {report.entries} entries, {report.records} records, "
              f"{report.seals} seal(s) under {report.root}{copy}; head #{report.head.seq} "
              f"{report.head.hash}")
        return 0 if report.ok else 1
    if args.action == "seal":
        made = audit.seal()
        if args.json:
            emit_json(made)
        else:
            print(f"sealed entries #{made['first']}…#{made['seq']} (head {made['hash']}) with "
                  f"{os.environ.get('TAP_SIGNING_KEY')}")
        return 0
    if args.action == "trail":
        rows = audit.trail_entries(env=args.env)
        if args.json:
            emit_json(rows)
            return 0
        import pandas as pd

        table = pd.DataFrame(rows, columns=audit.TRAIL_COLUMNS)
        table["sealed"] = table["sealed"].map({True: "yes", False: "no"})
        if not terminal.wide:
            table = table[["status", "seq", "time", "operation", "stack", "operator", "sealed"]]
        emit_table(table, "trail entries:")
        return 0
    table = audit.audit_table(env=args.env)
    if args.json:
        emit_json(table.to_dict("records"))
    else:
        if not terminal.wide:  # the columns an operator scans, within the terminal
            table = table.assign(record=table.path.str.rsplit("/", n=1).str[-1])[
                ["status", "record", "env", "operator", "summary"]]  # the name holds the time
        emit_table(table, "audit records:")
        head = audit.chain_head()
        print(f"chain head: #{head.seq} {head.hash}"
              + (f" ({head.time})" if head.time else " (empty trail)"))
    return 0
