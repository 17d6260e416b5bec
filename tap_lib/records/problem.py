"""One break `tap audit verify` found: shared by the checks of the trail, records, index, seals."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Problem:
    """One break in the chain: what kind, which entry, record, index row or seal, and what was
    found."""

    kind: str       # edited | deleted | inserted | reordered | unreadable | unlocked | forged
    what: str       # "entry 12", "record dev/20261128T142501Z-deploy.ipynb", "seal line 3"
    detail: str

    def __str__(self) -> str:
        return f"{self.kind:<10} {self.what}: {self.detail}"


def dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        if (p.kind, p.what) not in seen:
            seen.add((p.kind, p.what))
            out.append(p)
    return out
