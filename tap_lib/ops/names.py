"""The physical name of every resource of a stack, with its validity under AWS's rules."""
from __future__ import annotations

import pandas as pd

from ..engines.registry import engine_class
from ..naming import RULES, PhysicalNames


def account_for(target: str | None, region: str) -> str:
    """The account the bucket-name hash uses: the target's (the emulator's, or the caller's)."""
    return engine_class(target).account(region)


def names_table(names: PhysicalNames) -> pd.DataFrame:
    rows = [{"resource": field, "kind": kind, "name": name,
             "valid": RULES[kind].is_valid(name),
             "problems": "; ".join(RULES[kind].problems(name))}
            for field, kind, name in names.items()]
    return pd.DataFrame(rows, columns=["resource", "kind", "name", "valid", "problems"])
