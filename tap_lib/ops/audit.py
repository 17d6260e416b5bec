"""Audit records, as operations use them: the public face of tap_lib/records (listing, index,
verify, seals, exports) and `tap audit seal`.

Every `tap run` leaves one executed notebook under ``<root>/<env>/`` whose ``metadata.tap`` says
who ran what against which stack; an index lists them; the trail (tap_lib/trail.py) chains them
with every mutation; seals signed by a key params/approvers lists prove the chain. The root is
``outputs/`` (``TAP_OUTPUTS`` moves it), or an ``s3://bucket/prefix`` URL: records under S3 Object
Lock, index, trail and seals locally under ``tap_home()/audit/``, every trail and seal line also
locked in the bucket (records/locked.py), which `verify` compares.
"""
from __future__ import annotations

from typing import Any

from .. import signing, trail
from ..errors import ChecksFailed, UsageError
from ..records.export import EXPORTS, PICTURES, confine_record, export_html, picture_path
from ..records.index import (COLUMNS, INDEX_NAME, add_to_index, index_path, index_row,
                             rebuild_index, row_digest)
from ..records.listing import TRAIL_COLUMNS, format_summary, trail_entries
from ..records.listing import audit_table as all_records
from ..records.problem import Problem
from ..records.store import read_bytes
from ..records.verify import Verification, chain_head, verify
from ..trail import is_remote, local_dir, records_root

# the names operations, notebooks and tests use, wherever they are defined
__all__ = ["COLUMNS", "DRAFT_STATUSES", "EXPORTS", "INDEX_NAME", "PICTURES",
           "TRAIL_COLUMNS", "Problem", "Verification", "add_to_index", "all_records",
           "audit_table", "chain_head", "confine_record", "export_html",
           "format_summary", "index_path", "index_row", "is_remote", "local_dir",
           "picture_path", "read_bytes", "rebuild_index", "records_root", "row_digest",
           "seal", "trail_entries", "verify"]


# Lab saves made before a save needed a run (tap_lib/lab_records.py) have status "saved":
# drafts, not runs - neither succeeded nor failed.
DRAFT_STATUSES = ("saved",)


def audit_table(env: str | None = None, output_dir: str | None = None,
                drafts: bool = False) -> Any:
    """The records of runs, oldest first (records/listing.audit_table); `drafts` keeps the
    lab saves of older sessions too. What the audit notebook counts: a draft is no failed
    run."""
    table = all_records(env, output_dir)
    if drafts:
        return table
    return table[~table.status.isin(DRAFT_STATUSES)].reset_index(drop=True)


def seal(output_dir: str | None = None) -> dict[str, Any]:
    """`tap audit seal`: vouch with TAP_SIGNING_KEY for the chain as it is now, from its first
    entry no seal vouches for up to its head. The chain is verified first: sealing a broken
    chain would vouch for its breaks. Returns the seal."""
    signing.signing_key()  # UsageError naming TAP_SIGNING_KEY when there is no key
    root = records_root(output_dir)
    with trail.locked(root):  # what is sealed is what was verified: appenders wait
        report = verify(root)
        if not report.ok:
            raise ChecksFailed(f"the audit chain under {root} does not verify "
                               f"({len(report.problems)} problem(s)): sealing it would vouch "
                               "for them", hint="`tap audit verify` names each one")
        last = next((e for e in reversed(trail.read(root))
                     if e.get("hash") == report.head.hash), None)
        if last is None:
            raise UsageError(f"the audit trail under {root} is empty: nothing to seal")
        return trail.seal_entries(last, root, first=min(report.unsealed, default=last["seq"]))
