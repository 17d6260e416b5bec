"""Audit records: where executed notebooks go, the index that lists them, HTML for reviewers.

Every `tap run` leaves one executed notebook under ``<root>/<env>/`` whose ``metadata.tap`` says
who ran what against which stack. Listing must not open thousands of notebooks, so each record
also appends one JSON line to an index; the index is rebuilt from the records only when missing.

The root is ``outputs/`` (``TAP_OUTPUTS`` moves it), or an ``s3://bucket/prefix`` URL: papermill
reads and writes S3 natively. An S3 root keeps its index locally under ``tap_home()/audit/``.
"""
from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .. import trail
from ..errors import UsageError
from ..project import outputs_dir, tap_home
from ..trail import is_remote, local_dir, records_root  # noqa: F401 - re-exported

if TYPE_CHECKING:  # pandas loads in ~0.7 s; `tap audit verify` does without it
    import pandas as pd

INDEX_NAME = "index.jsonl"
# Folders beside the records of one environment that hold no records (never listed, chained or
# verified as records): reviewer exports and topology pictures, one per record or run.
EXPORTS, PICTURES = "_exports", "_pictures"
COLUMNS = ["time", "env", "notebook", "stack", "target", "operator", "status", "duration_s",
           "summary", "path"]


def index_path(root: str) -> Path:
    """Next to the records when local; under tap_home() for an S3 root (S3 has no append)."""
    return local_dir(root) / INDEX_NAME


def index_row(meta: dict[str, Any], path: str, sha256: str | None = None,
              entry: str | None = None) -> dict[str, Any]:
    """The index line of one record, from its ``metadata.tap``, with the SHA-256 of its content
    and the hash of its trail entry when known."""
    return {"time": meta.get("start", ""), "env": meta.get("env", ""),
            "notebook": meta.get("notebook", ""), "stack": meta.get("stack", ""),
            "target": meta.get("target", ""), "operator": meta.get("operator", ""),
            "status": meta.get("status", ""), "duration_s": meta.get("duration_s"),
            "summary": meta.get("summary", {}), "path": path, "sha256": sha256,
            "entry": entry}


def add_to_index(row: dict[str, Any], root: str) -> None:
    """Append one record's line; a missing index is first rebuilt (it then holds the record)."""
    path = index_path(root)
    with _index_lock(path):
        if not path.exists():
            _rebuild_locked(root, path)
            return
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")


def rebuild_index(output_dir: str | None = None) -> Path:
    """Scan every record's metadata (slow, one read per record) and rewrite the index."""
    root = records_root(output_dir)
    path = index_path(root)
    with _index_lock(path):
        _rebuild_locked(root, path)
    return path


def audit_table(env: str | None = None, output_dir: str | None = None) -> pd.DataFrame:
    """One row per record, oldest first, read from the index only."""
    import pandas as pd

    root = records_root(output_dir)
    path = index_path(root)
    if not path.exists():
        rebuild_index(root)
    rows = list(_read_index(path))
    if env:
        rows = [r for r in rows if r.get("env") == env]
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["summary"] = table["summary"].map(format_summary)
    return table.sort_values("time", kind="stable", ignore_index=True)


def format_summary(summary: Any) -> str:
    """{'create': 50, 'same': 0} -> 'create=50, same=0' (compact enough for a table cell)."""
    if not isinstance(summary, dict):
        return "" if summary is None else str(summary)
    return ", ".join(f"{key}={value}" for key, value in summary.items())


def export_html(record: str | Path, dest: str | Path | None = None) -> Path:
    """Render one record to self-contained HTML for reviewers without Jupyter or a network.

    `record` is a path, an s3:// URL, or a record's file name (or stem) looked up in the index,
    and must be a record under the records root (confine_record): nothing else is read.
    The page is titled with the stack and operation and opens with the record's audit metadata
    (commit, status, times, version, operator, content and chain hashes); it loads nothing from
    the network (nbconvert's require.js and MathJax CDN scripts are left out, images are data
    URIs). Each export is kept: ``<env>/_exports/<record>.html`` beside the local records
    (outputs_dir() for an S3 root), ``-2``, ``-3``... when exported again; never overwritten.
    """
    from nbconvert import HTMLExporter
    from papermill.iorw import load_notebook_node

    source = confine_record(str(record))
    raw = read_bytes(source)
    nb = load_notebook_node(source)
    meta = dict(nb.metadata.get("tap") or {})
    entry = _entry_for(source)
    title = " · ".join(str(x) for x in (meta.get("stack") or "unknown stack",
                                        meta.get("notebook") or "notebook",
                                        meta.get("start") or "") if x)
    exporter = HTMLExporter(template_name="lab", embed_images=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    html = _offline(body, _metadata_header(meta, source, trail.sha256_bytes(raw), entry, title))
    stem = source.rsplit("/", 1)[-1].removesuffix(".ipynb")
    if dest is not None:
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(html, encoding="utf-8")
        return target
    folder = outputs_dir() / _env_of(source) / EXPORTS
    return _write_new(folder, stem, ".html", html.encode("utf-8"))


def picture_path(env: str, name: str, suffix: str = ".png") -> Path:
    """A new file for one run's picture, ``<env>/_pictures/<UTC stamp>-<name><suffix>`` under
    the local outputs: kept per run, never overwritten (``-2``... in the same second)."""
    from datetime import datetime, timezone

    folder = outputs_dir() / env / PICTURES
    stem = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{name}"
    return _write_new(folder, stem, suffix, b"")


@dataclass
class Problem:
    """One break in the chain: what kind, which entry or record, and what was found."""

    kind: str       # edited | deleted | inserted | reordered | unreadable | unlocked
    what: str       # "entry 12" or "record dev/20261128T142501Z-deploy.ipynb"
    detail: str

    def __str__(self) -> str:
        return f"{self.kind:<10} {self.what}: {self.detail}"


@dataclass
class Verification:
    root: str
    entries: int
    records: int
    head: trail.Head
    problems: list[Problem] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "ok": self.ok, "entries": self.entries,
                "records": self.records, "head": {"seq": self.head.seq, "hash": self.head.hash,
                                                  "time": self.head.time},
                "problems": [asdict(p) for p in self.problems],
                "duration_s": round(self.duration_s, 3)}


def chain_head(output_dir: str | None = None) -> trail.Head:
    """The trail's last entry: the hash an auditor writes down (or `tap audit verify --head`)."""
    return trail.head(records_root(output_dir))


def verify(output_dir: str | None = None, expect_head: str | None = None) -> Verification:
    """Check the whole chain: every trail entry against its hash and its predecessor, every
    record against the SHA-256 its entry holds (and the head it embeds), every record on disk
    (or in S3) against the trail, and with an s3:// root each record's Object Lock retention.
    `expect_head` (a hash written down earlier) must still be in the chain: that catches the
    one change the chain alone cannot show, deleting its newest entries."""
    t0 = time.monotonic()
    root = records_root(output_dir)
    entries, problems = _check_entries(root)
    problems += _check_records(root, entries)
    if expect_head and not any(e.get("hash") == expect_head for e in entries):
        problems.append(Problem("deleted", f"entry {expect_head[:16]}…",
                                "the chain no longer holds this head: its newest entries were "
                                "removed or the trail was rewritten"))
    head = trail.head(root)
    records = sum(1 for e in entries if e.get("operation") == "record")
    return Verification(root, len(entries), records, head, problems, time.monotonic() - t0)


def _check_entries(root: str) -> tuple[list[dict[str, Any]], list[Problem]]:
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
    return entries, _dedupe(problems)


def _check_records(root: str, entries: list[dict[str, Any]]) -> list[Problem]:
    problems: list[Problem] = []
    chained: dict[str, dict[str, Any]] = {}
    for e in entries:
        if e.get("operation") == "record" and e.get("record"):
            chained[e["record"]] = e
    by_sha = {e.get("record_sha256"): path for path, e in chained.items()}
    remote = is_remote(root)
    present = _s3_records(root) if remote else [(p, p) for p in _record_paths(root)]
    on_disk = {url for url, _ in present}
    client = _s3() if remote and (chained or present) else None

    def shown(path: str) -> str:
        return "record " + path.removeprefix(root + "/")

    def digest(item: tuple[str, dict[str, Any]]) -> tuple[str | None, bool, dict, str | None]:
        """(sha256, embeds its head, object lock, error) of one record; threads overlap the
        reads (and S3 calls), hashlib hashes outside the GIL, nothing large is kept."""
        path, e = item
        lock: dict[str, Any] = {}
        try:
            if client is not None:
                bucket, key = _split(path)
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
    for path, e in chained.items():
        if path not in on_disk:
            problems.append(Problem("deleted", shown(path), f"chained by entry {e.get('seq')}, "
                                    "no longer stored"))
            continue
        sha, embeds, lock, error = digests[path]
        if error:
            problems.append(Problem("unreadable", shown(path), error))
            continue
        if sha != e.get("record_sha256"):
            other = by_sha.get(sha)
            if other and other != path:
                problems.append(Problem("reordered", shown(path), "holds the content chained "
                                        f"for {shown(other)} (records renamed or swapped)"))
            else:
                problems.append(Problem("edited", shown(path), "its SHA-256 is not the one "
                                        f"entry {e.get('seq')} holds"))
        elif e.get("prev") and not embeds:
            problems.append(Problem("reordered", shown(path), "does not embed the head it was "
                                    f"chained after: entry {e.get('seq')} was moved or rehashed"))
        if client is not None:
            problems += _check_retention(lock, e, shown(path))
    for path in sorted(on_disk - set(chained)):
        problems.append(Problem("inserted", shown(path), "not in the trail (added afterwards, "
                                "or its entry was deleted)"))
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


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        if (p.kind, p.what) not in seen:
            seen.add((p.kind, p.what))
            out.append(p)
    return out


def confine_record(record: str) -> str:
    """The path or s3:// URL of one audit record, which must lie under the records root.

    `record` is a record's name (file name or stem, looked up in the index) or its path or
    URL. A path is resolved (symlinks included) before it is compared with the root, an index
    row is held to the same rule, and only ``.ipynb`` files count: `../../etc/shadow`, an
    absolute path elsewhere or a link out of the root is refused before anything is opened.
    """
    root = records_root()
    shown = repr(record if len(record) <= 200 else record[:200] + "…")
    if not record or not record.isprintable():
        raise UsageError(f"not an audit record name: {shown}",
                         hint="pass a record's name or path as listed by `tap audit`")
    if "/" not in record and os.sep not in record:
        return _confined(_by_name(record), root, shown)
    return _confined(record, root, shown)


# -------------------------------------------------------------------------------- internals

def _by_name(record: str) -> str:
    path = index_path(records_root())
    wanted = record.removesuffix(".ipynb")
    matches = [r["path"] for r in _read_index(path)
               if str(r.get("path", "")).rsplit("/", 1)[-1].removesuffix(".ipynb") == wanted]
    if len(matches) != 1:
        raise UsageError(f"no single audit record named {record!r} "
                         f"({len(matches)} found in {path})",
                         hint="pass the record's path as shown by `tap audit`")
    return str(matches[0])


def _confined(record: str, root: str, shown: str) -> str:
    outside = UsageError(f"{shown} is not an audit record under the records root {root}",
                         hint="pass a record's name or path as listed by `tap audit`; "
                              "TAP_OUTPUTS moves the root")
    if not record.endswith(".ipynb"):
        raise outside
    if is_remote(root) or is_remote(record):
        if not (is_remote(root) and record.startswith(root + "/")) or \
                ".." in record.removeprefix("s3://").split("/"):
            raise outside
        return record
    resolved = Path(record).resolve()
    if not resolved.is_relative_to(Path(root).resolve()):
        raise outside
    if not resolved.is_file():
        raise UsageError(f"no audit record at {shown}",
                         hint="pass a record's name or path as listed by `tap audit`")
    return str(resolved)


def _read_index(path: Path) -> Iterator[dict[str, Any]]:
    """Lines of the index; a torn last line (a writer killed mid-append) is skipped."""
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                with contextlib.suppress(ValueError):
                    yield json.loads(line)
    except FileNotFoundError:
        return


def _rebuild_locked(root: str, path: Path) -> None:
    import nbformat

    chained = {e.get("record"): e for e in trail.read(root) if e.get("operation") == "record"}
    rows = []
    for record in _record_paths(root):
        try:
            raw = read_bytes(record)
            meta = nbformat.reads(raw.decode("utf-8"), as_version=4).metadata.get("tap")
        except Exception:  # noqa: BLE001 - a damaged or half-written record: verify names it
            continue
        if meta:
            entry = chained.get(record, {}).get("hash")
            rows.append(index_row(meta, record, trail.sha256_bytes(raw), entry))
    rows.sort(key=lambda r: r["time"])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)


def _record_paths(root: str) -> list[str]:
    """Every record under the root: ``<env>/<name>.ipynb``, not in a ``_`` folder."""
    if is_remote(root):
        return [url for url, _ in _s3_records(root)]
    found = []
    with contextlib.suppress(FileNotFoundError):
        for env in os.scandir(root):
            if env.is_dir() and not env.name.startswith("_"):
                found += [f.path for f in os.scandir(env.path)
                          if f.name.endswith(".ipynb") and f.is_file()]
    return sorted(found)


def _s3_records(root: str) -> list[tuple[str, str]]:
    """(url, key) of each record object under an s3:// root."""
    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    prefix = f"{prefix}/" if prefix else ""
    found = []
    pages = _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix):].split("/")
            if len(rel) == 2 and rel[1].endswith(".ipynb") and not rel[0].startswith("_"):
                found.append((f"s3://{bucket}/{obj['Key']}", obj["Key"]))
    return sorted(found)


def _s3():
    import boto3

    return boto3.client("s3")


def _split(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def read_bytes(record: str) -> bytes:
    if is_remote(record):
        bucket, key = _split(record)
        return _s3().get_object(Bucket=bucket, Key=key)["Body"].read()
    return Path(record).read_bytes()


def _env_of(record: str) -> str:
    return record.rstrip("/").rsplit("/", 2)[-2]


def _write_new(folder: Path, stem: str, suffix: str, data: bytes) -> Path:
    """Create a file no one had: stem, stem-2, stem-3..."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        path = folder / f"{stem}{'' if n == 1 else f'-{n}'}{suffix}"
        try:
            with open(path, "xb") as fh:
                fh.write(data)
            return path
        except FileExistsError:
            continue
    raise AssertionError("unreachable: the names are endless")


def _entry_for(record: str) -> dict[str, Any] | None:
    for entry in reversed(trail.read(_root_of(record))):
        if entry.get("operation") == "record" and entry.get("record") == record:
            return entry
    return None


def _root_of(record: str) -> str:
    return record.rsplit("/", 2)[0]


_HEADER_FIELDS = (("stack", "stack"), ("operation", "notebook"), ("environment", "env"),
                  ("target", "target"), ("status", "status"), ("operator", "operator"),
                  ("started", "start"), ("ended", "end"), ("duration (s)", "duration_s"),
                  ("commit", "commit"), ("working tree", "dirty"),
                  ("tap version", "tap_version"), ("error", "error"))


def _metadata_header(meta: dict[str, Any], source: str, sha: str,
                     entry: dict[str, Any] | None, title: str) -> str:
    from html import escape

    rows = [(label, meta.get(key)) for label, key in _HEADER_FIELDS]
    if meta.get("dirty") is not None:
        rows[10] = ("working tree", "dirty" if meta["dirty"] else "clean")
    rows += [("summary", format_summary(meta.get("summary"))), ("record", source),
             ("record SHA-256", sha),
             ("trail entry", f"#{entry['seq']} {entry['hash']}" if entry else "not in the trail"),
             ("chained after", (entry or {}).get("prev") or meta.get("chain_prev") or "")]
    cells = "".join(f"<tr><th>{escape(label)}</th><td><code>{escape(str(value))}</code></td></tr>"
                    for label, value in rows if value not in (None, ""))
    return (f'<header class="tap-audit" style="font-family:sans-serif;margin:1em;padding:.5em 1em;'
            f'border:2px solid #555;background:#f6f6f6"><h1 style="font-size:1.4em">'
            f'{escape(title)}</h1><table style="text-align:left">{cells}</table>'
            '<p>Check it with <code>tap audit verify</code>: the record\'s SHA-256 must be '
            'the one its trail entry holds.</p></header>')


def _offline(body: str, header: str) -> str:
    """No script, style or image from the network, the audit header first in the body."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(body, "html.parser")
    for tag in soup.find_all(["script", "link", "img", "iframe", "source", "video", "audio"]):
        ref = tag.get("src") or tag.get("href") or ""
        if _remote_ref(ref):
            if tag.name == "img":
                tag.replace_with(f"[image not embedded: {ref}]")
            else:
                tag.decompose()
    for tag in soup.find_all("script"):
        if tag.get("type") == "text/x-mathjax-config" or (
                not tag.get("src") and re.search(r"(https?:)?//[\w.-]+\.\w+/", tag.get_text())):
            tag.decompose()  # MathJax's configuration, the Mermaid loader: fetch at view time
    soup.body.insert(0, BeautifulSoup(header, "html.parser"))
    return str(soup)


def _remote_ref(ref: str) -> bool:
    return ref.strip().lower().startswith(("http:", "https:", "//", "ftp:"))


@contextlib.contextmanager
def _index_lock(path: Path) -> Iterator[None]:
    """Writers (runs finishing at once, a rebuild) take turns; readers need no lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(".index.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
