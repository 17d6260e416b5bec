"""Audit records: the executed notebooks under the records root, the index that lists them, the
seals that prove the trail, and the checks an auditor runs (`tap audit ...`).

    store     where records are and how their bytes are read (a local folder or s3://)
    index     index.jsonl: one row per record, so listing opens no notebook
    listing   `tap audit` and `tap audit trail` as tables
    seals     seals.jsonl judged against params/approvers; `tap audit seal`
    locked    the Object Lock copy of an s3:// root held to the local trail and seals
              (tap_lib/object_lock.py, below the trail, writes the objects and lines)
    verify    `tap audit verify`: trail, records, index and seals against each other
    export    one record as self-contained HTML; pictures; the records-root confinement

The trail itself (trail.jsonl, appends, write-ahead entries, writing a seal) is tap_lib/trail.py,
below the engines (it writes each line's locked copy through tap_lib/object_lock.py);
tap_lib/ops/audit.py is the public face these modules are used through.
"""
