"""`tap audit verify`: the trail, the records, the index and the seals, each against the others.

Every entry is checked against its hash and its predecessor; every record against the SHA-256 its
entry holds (and the head it embeds); every record present against the trail; every index row
against its record's entry; every seal against params/approvers and the chain (records/seals.py);
with an s3:// root, each record's Object Lock retention, and the local trail and seals against
their Object Lock copy (records/locked.py). What no seal vouches for is listed as
unsealed, and a mutation that started but never ended (a killed process) as interrupted: facts
to know, not breaks.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import signing, trail
from ..errors import TapError
from ..trail import is_remote, record_location, records_root
from . import locked, seals
from .index import index_path, numbered_rows, row_digest
from .problem import Problem, dedupe
from .store import read_bytes, record_paths, s3, s3_records, split

# Fields of an index row that a record's entry from before `index_sha256` holds itself.
_ENTRY_FIELDS = ("stack", "target", "operator", "env", "notebook", "status")


@dataclass
class Verification:
    root: str
    entries: int
    records: int
    head: trail.Head
    problems: list[Problem] = field(default_factory=list)
    duration_s: float = 0.0
    seals: int = 0                                          # valid seals
    unsealed: list[int] = field(default_factory=list)       # seq no valid seal vouches for
    interrupted: list[int] = field(default_factory=list)    # seq of "started" with no outcome
    warnings: list[str] = field(default_factory=list)       # facts an auditor should weigh
    locked: dict[str, int] | None = None    # s3:// root: entries and seals in the locked copy

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "ok": self.ok, "entries": self.entries,
                "records": self.records, "head": {"seq": self.head.seq, "hash": self.head.hash,
                                                  "time": self.head.time},
                "problems": [asdict(p) for p in self.problems], "seals": self.seals,
                "unsealed": self.unsealed, "interrupted": self.interrupted,
                "warnings": self.warnings, "locked": self.locked,
                "duration_s": round(self.duration_s, 3)}


def chain_head(output_dir: str | None = None) -> trail.Head:
    """The trail's last entry: the hash an auditor writes down (or `tap audit verify --head`)."""
    return trail.head(records_root(output_dir))


def verify(output_dir: str | None = None, expect_head: str | None = None,
           require_seals: bool = False) -> Verification:
    """Check the whole chain. `expect_head` (a hash written down earlier) must still be in the
    chain: that catches deleting its newest entries when nothing sealed them.
    `require_seals`: an entry no seal vouches for is a problem too."""
    t0 = time.monotonic()
    root = records_root(output_dir)
    # A local root's records are read and hashed on threads (hashlib and file reads release
    # the GIL) while this thread parses the trail: the two halves of the work overlap.
    with _LocalDigests(root) as prefetched:
        entries, problems = check_entries(root)
        chained: dict[str, dict[str, Any]] = {}
        for e in entries:
            if e.get("operation") == "record" and e.get("record"):
                chained[record_location(e["record"], root)] = e
        problems += check_records(root, chained, prefetched)
    problems += check_index(root, chained)
    approvers = signing.approvers_now()
    sealed = seals.check(root, entries, approvers)
    problems += sealed.problems
    warnings = _approvers_warning(approvers) if sealed.lines else []
    copy = None
    if is_remote(root):
        copy = locked.compare(root)
        problems += copy.problems
        warnings += copy.warnings
    unsealed = seals.unsealed(entries, sealed)
    if require_seals and unsealed:
        problems.append(Problem("unsealed", f"entries {_span(unsealed)}",
                                "no seal by a key params/approvers lists vouches for them"))
    if expect_head and not any(e.get("hash") == expect_head for e in entries):
        problems.append(Problem("deleted", f"entry {expect_head[:16]}…",
                                "the chain no longer holds this head: its newest entries were "
                                "removed or the trail was rewritten"))
    ended = {e.get("started") for e in entries if e.get("started")}
    interrupted = [e.get("seq") for e in entries
                   if e.get("result") == "started" and e.get("hash") not in ended]
    records = sum(1 for e in entries if e.get("operation") == "record")
    return Verification(root, len(entries), records, trail.head(root), problems,
                        time.monotonic() - t0, len(sealed.spans), unsealed, interrupted,
                        warnings,
                        None if copy is None else {"entries": copy.entries, "seals": copy.seals})


def _approvers_warning(approvers: str) -> list[str]:
    """Seals are judged by params/approvers as it is on disk, which a shell can edit: say so
    when it is not the file as committed."""
    try:
        committed = signing.approvers_at("HEAD")
    except (TapError, OSError):  # no git, or the file was never committed
        return []
    if committed == approvers:
        return []
    return ["params/approvers differs from the committed one: seals were judged by the file on "
            "disk (`git diff params/approvers`)"]


def _span(seqs: list[int]) -> str:
    return f"#{seqs[0]}" if len(seqs) == 1 else f"#{seqs[0]}…#{seqs[-1]} ({len(seqs)})"


def check_entries(root: str) -> tuple[list[dict[str, Any]], list[Problem]]:
    problems: list[Problem] = []
    entries: list[dict[str, Any]] = []
    try:
        raw = trail.trail_path(root).read_bytes()
    except FileNotFoundError:
        raw = b""
    for lineno, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError
        except ValueError:
            problems.append(Problem("unreadable", f"trail line {lineno}",
                                    "not a JSON entry (edited, or torn by a killed writer)"))
            continue
        if not (trail.line_hash_ok(line, entry.get("hash"))
                or trail.entry_hash(entry) == entry.get("hash")):
            problems.append(Problem("edited", f"entry {entry.get('seq')}", f"line {lineno}: "
                                    "its content does not match its hash"))
        entry["_line"] = lineno  # ours, not the entry's: added after hashing
        entries.append(entry)

    def name(e: dict[str, Any]) -> str:
        return f"entry {e.get('seq')}"

    by_hash = {e.get("hash"): i for i, e in enumerate(entries)}
    referenced = {e.get("prev") for e in entries}
    seqs = [e.get("seq") for e in entries]
    counts: dict[Any, int] = {}
    for q in seqs:
        counts[q] = counts.get(q, 0) + 1
    numbers = {q for q in seqs if isinstance(q, int)}
    rehashed: set[int] = set()
    dangling = [i for i, e in enumerate(entries[:-1]) if e.get("hash") not in referenced]
    for i, e in enumerate(entries):
        prev = e.get("prev")
        if prev == trail.GENESIS:
            if i:
                problems.append(Problem("inserted" if counts.get(e.get("seq"), 0) > 1 else
                                        "reordered", name(e), f"line {e['_line']}: claims to "
                                        "be the first entry"))
            continue
        if prev in by_hash:
            j = by_hash[prev]
            if j > i:
                problems.append(Problem("reordered", name(e), f"line {e['_line']} stands "
                                        f"before {name(entries[j])} (line "
                                        f"{entries[j]['_line']}), which it follows"))
            continue
        # its predecessor is not in the trail: rehashed after an edit, deleted, or forged
        twin = next((d for d in dangling if entries[d].get("seq") == _int(e.get("seq")) - 1
                     and d not in rehashed), None)
        if twin is not None:
            rehashed.add(twin)
            problems.append(Problem("edited", name(entries[twin]), "its hash was recomputed: "
                                    f"{name(e)} follows another entry"))
        elif counts.get(e.get("seq"), 0) > 1:
            problems.append(Problem("inserted", name(e), f"line {e['_line']}: follows no entry "
                                    "of the trail"))
        elif _int(e.get("seq")) - 1 not in numbers:
            continue  # the missing number is named below
        else:
            problems.append(Problem("deleted", f"before {name(e)}", f"line {e['_line']} "
                                    "follows an entry that is no longer in the trail"))
    for i in dangling:  # two entries follow the same one: the dead end is the intruder
        e = entries[i]
        if i in rehashed:
            continue
        if counts.get(e.get("seq"), 0) > 1 or e.get("prev") in {
                x.get("prev") for k, x in enumerate(entries) if k != i}:
            problems.append(Problem("inserted", name(e), f"line {e['_line']}: no entry follows "
                                    "it, yet it is not the newest"))
    if numbers:
        for missing in sorted(set(range(max(numbers) + 1)) - numbers)[:100]:
            problems.append(Problem("deleted", f"entry {missing}", "no longer in the trail"))
    return entries, dedupe(problems)


def _shown(root: str, path: str) -> str:
    return "record " + path.removeprefix(root + "/")


class _LocalDigests:
    """The SHA-256 and the `chain_prev` neighbourhood of every record of a local root, computed
    on worker threads from the moment the block starts (nothing for an s3:// root)."""

    def __init__(self, root: str):
        self.root, self.paths, self._pool, self._parts = root, None, None, []

    def __enter__(self) -> _LocalDigests:
        if is_remote(self.root):
            return self
        self.paths = record_paths(self.root)
        workers = min(4, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(max_workers=workers)
        for i in range(workers):  # few tasks: little overhead
            chunk = self.paths[i::workers]
            self._parts.append((chunk, self._pool.submit(_read_digests, chunk)))
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def result(self) -> dict[str, tuple[str | None, bytes | None, str | None]]:
        """path: (sha256, the bytes after `"chain_prev"` or None, error)."""
        out: dict[str, tuple] = {}
        for chunk, future in self._parts:
            out.update(zip(chunk, future.result()))
        return out


def _read_digests(paths: list[str]) -> list[tuple[str | None, bytes | None, str | None]]:
    out = []
    for path in paths:
        try:
            raw = read_bytes(path)
        except Exception as exc:  # noqa: BLE001 - OSError...
            out.append((None, None, type(exc).__name__))
            continue
        at = raw.rfind(b'"chain_prev"')
        out.append((trail.sha256_bytes(raw), raw[at:at + 100] if at >= 0 else None, None))
    return out


def check_records(root: str, chained: dict[str, dict[str, Any]],
                  prefetched: _LocalDigests | None = None) -> list[Problem]:
    """Each record chained (by where it is now) against its content, and each one present
    against the trail. `prefetched`: the local root's digests, already under way."""
    by_sha = {e.get("record_sha256"): path for path, e in chained.items()}
    remote = is_remote(root)
    if prefetched is not None and prefetched.paths is not None:
        return _compare_records(root, chained, _local_results(chained, prefetched), by_sha,
                                set(prefetched.paths), None)
    present = s3_records(root) if remote else [(p, p) for p in record_paths(root)]
    on_disk = {url for url, _ in present}
    client = s3() if remote and (chained or present) else None

    def digest(item: tuple[str, dict[str, Any]]) -> tuple[str | None, bool, dict, str | None]:
        """(sha256, embeds its head, object lock, error) of one record; threads overlap the
        reads (and S3 calls), hashlib hashes outside the GIL, nothing large is kept."""
        path, e = item
        lock: dict[str, Any] = {}
        try:
            if client is not None:
                bucket, key = split(path)
                got = client.get_object(Bucket=bucket, Key=key)
                raw = got["Body"].read()
                lock = {k: got.get(k) for k in ("ObjectLockMode", "ObjectLockRetainUntilDate")}
            else:
                raw = read_bytes(path)
        except Exception as exc:  # noqa: BLE001 - OSError, botocore ClientError...
            return None, False, lock, type(exc).__name__
        return trail.sha256_bytes(raw), _embeds(raw, e.get("prev") or ""), lock, None

    present_items = [(p, e) for p, e in chained.items() if p in on_disk]
    workers = 8 if remote else min(4, os.cpu_count() or 1)
    chunks = [present_items[i::workers] for i in range(workers)]  # few tasks: little overhead
    digests: dict[str, tuple] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for chunk, results in zip(chunks, pool.map(lambda c: [digest(x) for x in c], chunks)):
            digests.update(zip((p for p, _ in chunk), results))
    return _compare_records(root, chained, digests, by_sha, on_disk, client)


def _local_results(chained: dict[str, dict[str, Any]], prefetched: _LocalDigests
                   ) -> dict[str, tuple]:
    """The prefetched digests as check_records compares them: (sha256, embeds, lock, error)."""
    out = {}
    for path, (sha, tail, error) in prefetched.result().items():
        e = chained.get(path)
        if e is None:
            continue
        prev = (e.get("prev") or "").encode()
        if tail is not None:
            embeds = prev in tail
        else:  # no chain_prev key: the whole record is searched, as _embeds does
            try:
                embeds = _embeds(read_bytes(path), prev.decode())
            except OSError as exc:
                sha, embeds, error = None, False, type(exc).__name__
        out[path] = (sha, embeds, {}, error)
    return out


def _compare_records(root: str, chained: dict[str, dict[str, Any]], digests: dict[str, tuple],
                     by_sha: dict, on_disk: set[str], client) -> list[Problem]:
    problems: list[Problem] = []
    for path, e in chained.items():
        shown = _shown(root, path)
        if path not in on_disk:
            problems.append(Problem("deleted", shown, f"chained by entry {e.get('seq')}, "
                                    "no longer stored"))
            continue
        sha, embeds, lock, error = digests[path]
        if error:
            problems.append(Problem("unreadable", shown, error))
            continue
        if sha != e.get("record_sha256"):
            other = by_sha.get(sha)
            if other and other != path:
                problems.append(Problem("reordered", shown, "holds the content chained "
                                        f"for {_shown(root, other)} (records renamed or "
                                        "swapped)"))
            else:
                problems.append(Problem("edited", shown, "its SHA-256 is not the one "
                                        f"entry {e.get('seq')} holds"))
        elif e.get("prev") and not embeds:
            problems.append(Problem("reordered", shown, "does not embed the head it was "
                                    f"chained after: entry {e.get('seq')} was moved or rehashed"))
        if client is not None:
            problems += _check_retention(lock, e, shown)
    for path in sorted(on_disk - set(chained)):
        problems.append(Problem("inserted", _shown(root, path), "not in the trail (added "
                                "afterwards, or its entry was deleted)"))
    return problems


def check_index(root: str, chained: dict[str, dict[str, Any]]) -> list[Problem]:
    """Each index row against the entry of the record it lists: the record's SHA-256, the
    entry's hash and the row itself (its digest, `index_sha256`, or for older entries the
    fields the entry holds). A missing index is rebuilt from the records: nothing to check."""
    path = index_path(root)
    if not path.exists():
        return []
    problems: list[Problem] = []
    listed: set[str] = set()
    for lineno, row in numbered_rows(path):
        what = f"index line {lineno}"
        if row is None:
            problems.append(Problem("unreadable", what, "not a JSON row (edited, or torn by a "
                                    "killed writer)"))
            continue
        where = record_location(row.get("path"), root)
        e = chained.get(where) if isinstance(where, str) else None
        if e is None or where in listed:
            problems.append(Problem("inserted", what, f"lists {row.get('path')!r}, which "
                                    + ("it lists twice" if e else "no record entry chains")))
            continue
        listed.add(where)
        wrong = [k for k, want in (("sha256", e.get("record_sha256")), ("entry", e.get("hash")))
                 if row.get(k) != want]
        if "index_sha256" in e:
            wrong += ["its fields"] if row_digest(row) != e["index_sha256"] else []
        else:
            wrong += [k for k in _ENTRY_FIELDS if k in e and row.get(k) != e[k]]
        if wrong:
            problems.append(Problem("edited", what, f"{_shown(root, where)}: "
                                    f"{', '.join(wrong)} not as entry {e.get('seq')} chains"))
    for where in sorted(set(chained) - listed):
        problems.append(Problem("deleted", f"index row of {_shown(root, where)}",
                                f"chained by entry {chained[where].get('seq')}, not listed "
                                "(`tap audit` no longer shows it)"))
    return problems


def _check_retention(lock: dict[str, Any], entry: dict[str, Any], shown: str) -> list[Problem]:
    """The object's Object Lock, as GetObject reports it (moto has no GetObjectRetention)."""
    from datetime import timezone

    mode, until = lock.get("ObjectLockMode"), lock.get("ObjectLockRetainUntilDate")
    if mode != "COMPLIANCE" or until is None:
        return [Problem("unlocked", shown, f"Object Lock mode {mode or 'none'}, "
                        "not COMPLIANCE with a retention date")]
    until_s = until.astimezone(timezone.utc).isoformat()
    wanted = entry.get("retain_until")
    if wanted and until_s[:19] < wanted[:19]:
        return [Problem("unlocked", shown, f"retained until {until_s}, not {wanted} as "
                        "chained")]
    return []


def _embeds(raw: bytes, prev: str) -> bool:
    """Whether a record's metadata.tap.chain_prev is `prev`. nbformat writes metadata last, so
    the key is found from the end; a record without the key is searched whole."""
    at = raw.rfind(b'"chain_prev"')
    if at < 0:
        return prev.encode() in raw
    return raw.find(prev.encode(), at, at + 100) >= 0


def _int(value: Any) -> int:
    return value if isinstance(value, int) else -2
