"""Seals: what proves the trail to someone who trusts no file a shell can write.

Anyone who can write trail.jsonl can rewrite it whole, every hash recomputed; no one can sign
without a key params/approvers lists. A seal (``seals.jsonl`` beside the trail, written by
trail.seal_entries) is an OpenSSH signature over ``tap-seal\\n{first}\\n{seq}\\n{hash}\\n``:
its signer vouches for entries first..seq, and the chain's hash links pin every earlier entry.
Here each seal is judged: its signature against params/approvers (signing.verify), its
(seq, hash) against the chain. A bad signature, or a sealed entry the chain no longer holds as
sealed, is a problem; entries no valid seal vouches for are listed as unsealed.
"""
from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .. import signing, trail
from ..errors import SignatureRefused
from ..trail import SEALS_NAME, local_dir
from .problem import Problem

HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class SealCheck:
    """Valid seals as (first, seq, signer) spans, and the problems the others showed."""

    spans: list[tuple[int, int, str]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    lines: int = 0

    def signers(self) -> dict[int, str]:
        """seq -> who vouches for that entry (the latest seal covering it)."""
        out: dict[int, str] = {}
        for first, last, who in self.spans:  # sorted by seq: later seals win
            out.update(dict.fromkeys(range(first, last + 1), who))
        return out


def seals_path(root: str):
    return local_dir(root) / SEALS_NAME


def check(root: str, entries: list[dict[str, Any]], approvers: str | None = None) -> SealCheck:
    """Judge every seal of `root` against the chain `entries` (as verify parsed them)."""
    try:
        raw = seals_path(root).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return SealCheck()
    approvers = signing.approvers_now() if approvers is None else approvers
    result = SealCheck()
    parsed: list[tuple[int, dict[str, Any]]] = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        result.lines += 1
        seal = _parse(line)
        if seal is None:
            result.problems.append(Problem("unreadable", f"seal line {lineno}", "not a seal "
                                           "(edited, or torn by a killed writer)"))
        else:
            parsed.append((lineno, seal))
    by_seq: dict[int, str] = {}
    for e in entries:
        if isinstance(e.get("seq"), int):
            by_seq.setdefault(e["seq"], e.get("hash"))
    workers = min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # one ssh-keygen process per seal
        judged = list(pool.map(lambda item: _signer(item[1], item[0], approvers), parsed))
    for (lineno, seal), (who, refused) in zip(parsed, judged):
        seq, hash_ = seal["seq"], seal["hash"]
        if refused is not None:
            result.problems.append(Problem("forged", f"seal line {lineno}",
                                           f"for entry {seq}: {refused}"))
        elif seq not in by_seq:
            result.problems.append(Problem("deleted", f"entry {seq}", f"sealed by {who} (seal "
                                           f"line {lineno}), no longer in the trail"))
        elif by_seq[seq] != hash_:
            result.problems.append(Problem("edited", f"entry {seq}", f"sealed by {who} as "
                                           f"{hash_[:16]}…, the trail holds "
                                           f"{str(by_seq[seq])[:16]}…: rewritten after it was "
                                           "sealed"))
        else:
            result.spans.append((seal["first"], seq, who))
    result.spans.sort(key=lambda span: span[1])
    return result


def _parse(line: bytes) -> dict[str, Any] | None:
    """A seal line's fields, if it has the shape trail.seal_entries writes."""
    try:
        seal = json.loads(line)
    except ValueError:
        return None
    if not isinstance(seal, dict):
        return None
    first, seq = seal.get("first"), seal.get("seq")
    if not all(type(n) is int for n in (first, seq)) or not 0 <= first <= seq:
        return None
    if not isinstance(seal.get("hash"), str) or not HEX64.fullmatch(seal["hash"]):
        return None
    return seal if isinstance(seal.get("signature"), str) else None


def _signer(seal: dict[str, Any], lineno: int, approvers: str) -> tuple[str, str | None]:
    """(principal, None) when the seal's signature holds, ("", why) when it does not."""
    message = trail.seal_message(seal["first"], seal["seq"], seal["hash"])
    try:
        return signing.verify(message, seal["signature"], approvers,
                              what=f"seal line {lineno}").principal, None
    except SignatureRefused as exc:
        return "", exc.problem


def unsealed(entries: list[dict[str, Any]], sealed: SealCheck) -> list[int]:
    """The seq of every entry no valid seal vouches for."""
    signers = sealed.signers()
    return [e["seq"] for e in entries if isinstance(e.get("seq"), int) and e["seq"] not in signers]
