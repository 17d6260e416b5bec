"""Records for reviewers and pictures per run: one record as self-contained HTML, and the gate
every record a user names passes (confine_record) before anything is read."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .. import trail
from ..errors import UsageError
from ..project import outputs_dir
from ..trail import is_remote, record_location, records_root
from .index import by_name
from .listing import format_summary
from .store import env_of, read_bytes, root_of, write_new

# Folders beside the records of one environment that hold no records (never listed, chained or
# verified as records): reviewer exports and topology pictures, one per record or run.
EXPORTS, PICTURES = "_exports", "_pictures"


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
        with trail.writing(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(html, encoding="utf-8")
        return target
    folder = outputs_dir() / env_of(source) / EXPORTS
    return write_new(folder, stem, ".html", html.encode("utf-8"))


def picture_path(env: str, name: str, suffix: str = ".png") -> Path:
    """A new file for one run's picture, ``<env>/_pictures/<UTC stamp>-<name><suffix>`` under
    the local outputs: kept per run, never overwritten (``-2``... in the same second)."""
    from datetime import datetime, timezone

    folder = outputs_dir() / env / PICTURES
    stem = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{name}"
    return write_new(folder, stem, suffix, b"")


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
        return _confined(by_name(record), root, shown)
    return _confined(record, root, shown)


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


def _entry_for(record: str) -> dict[str, Any] | None:
    root = root_of(record)
    for entry in reversed(trail.read(root)):
        if entry.get("operation") == "record" and \
                record_location(entry.get("record"), root) == record:
            return entry
    return None


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
