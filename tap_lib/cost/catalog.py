"""The price catalog (catalog.json): one On-Demand price per meter and region, with its source.

A price the catalog does not hold is unknown: `price()` returns None and the estimate reports
the item as unknown, never as zero. `missing` records, per region, why a price is absent.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .meters import meter_key

CATALOG_FILE = Path(__file__).with_name("catalog.json")


@dataclass(frozen=True)
class Catalog:
    currency: str
    as_of: str
    hours_per_month: int
    regions: dict[str, dict[str, dict[str, Any]]]
    missing: dict[str, dict[str, str]]
    source: dict[str, Any]

    def price(self, region: str, meter: str, cls: str = "") -> float | None:
        entry = self.regions.get(region, {}).get(meter_key(meter, cls))
        return None if entry is None else float(entry["price"])

    def why_missing(self, region: str, meter: str, cls: str = "") -> str:
        if region not in self.regions:
            return f"the catalog has no prices for region {region}"
        return self.missing.get(region, {}).get(meter_key(meter, cls),
                                                "not in the price catalog")

    def price_dates(self, region: str) -> dict[str, str]:
        """Entries dated apart from the catalog (quoted from an older public table, with their
        own `as_of`): shown beside the figures so an old price never passes for a current one."""
        return {key: str(entry["as_of"]) for key, entry in self.regions.get(region, {}).items()
                if entry.get("as_of") and entry["as_of"] != self.as_of}

    def to_dict(self) -> dict[str, Any]:
        return {"currency": self.currency, "as_of": self.as_of,
                "hours_per_month": self.hours_per_month, "source": self.source,
                "regions": self.regions, "missing": self.missing}


def load_catalog(path: Path | str | None = None) -> Catalog:
    return _load(str(path or CATALOG_FILE))


@functools.lru_cache(maxsize=4)
def _load(path: str) -> Catalog:
    try:
        data = json.loads(Path(path).read_text())
        return Catalog(currency=data["currency"], as_of=data["as_of"],
                       hours_per_month=int(data["hours_per_month"]), regions=data["regions"],
                       missing=data.get("missing", {}), source=data.get("source", {}))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"unreadable price catalog: {type(exc).__name__}: {exc}",
                          file=path) from None
