"""Rebuild the price catalog from the AWS Pricing API (`pricing` GetProducts, us-east-1 endpoint).

    python -m tap_lib.cost.refresh --target aws [--region eu-west-2]... [--out FILE]

Only on `--target aws`: it needs AWS credentials (any identity with pricing:GetProducts). Each
meter in meters.METERS is looked up by service code, region and exact usage type; the
On-Demand price of the first tier is stored in the Price List's own unit. A meter that matches
nothing, or matches two different prices, is recorded under `missing` with the reason, never
guessed. The regions default to those the environment files use.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import TapError, UsageError
from .catalog import CATALOG_FILE
from .meters import HOURS_PER_MONTH, METERS, catalog_keys, meter_key

PRICING_REGION = "us-east-1"  # the Pricing API answers from us-east-1 (and two others)
OFFER_URL = ("https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/{service}/current/"
             "{region}/index.json")


def pricing_client():
    import boto3

    return boto3.client("pricing", region_name=PRICING_REGION)


def _filters(region: str, usagetype: str, attributes: dict[str, str]) -> list[dict[str, str]]:
    pairs = {"regionCode": region, "usagetype": usagetype, **attributes}
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in pairs.items()]


def _first_tier(item: dict[str, Any]) -> tuple[float, str] | None:
    """(price, unit) of the On-Demand dimension that starts at 0, or None."""
    for term in (item.get("terms", {}).get("OnDemand") or {}).values():
        for dim in term.get("priceDimensions", {}).values():
            if str(dim.get("beginRange", "0")) == "0" and "USD" in dim.get("pricePerUnit", {}):
                return float(dim["pricePerUnit"]["USD"]), dim.get("unit", "")
    return None


def lookup(client, service: str, region: str, usagetype: str,
           attributes: dict[str, str]) -> tuple[dict[str, Any] | None, str]:
    """One meter's catalog entry, or (None, why it is missing)."""
    found: list[tuple[float, str, dict]] = []
    kwargs = {"ServiceCode": service, "Filters": _filters(region, usagetype, attributes),
              "FormatVersion": "aws_v1", "MaxResults": 100}
    while True:
        page = client.get_products(**kwargs)
        for raw in page.get("PriceList", []):
            item = json.loads(raw) if isinstance(raw, str) else raw
            tier = _first_tier(item)
            if tier:
                found.append((*tier, item))
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    prices = {price for price, _, _ in found}
    if not found:
        return None, f"the Pricing API has no On-Demand {service} {usagetype} in {region}"
    if len(prices) > 1:
        return None, (f"{len(prices)} different prices for {service} {usagetype} in {region}: "
                      f"{sorted(prices)}; refine the meter's attributes")
    price, unit, item = found[0]
    return {"price": price, "unit": unit, "usagetype": usagetype, "service": service,
            "published": str(item.get("publicationDate", ""))[:10],
            "sku": item.get("product", {}).get("sku", "")}, ""


def build_catalog(client, regions: list[str], today: dt.date | None = None) -> dict[str, Any]:
    today = today or dt.date.today()
    out_regions: dict[str, dict] = {}
    missing: dict[str, dict] = {}
    for region in regions:
        out_regions[region], missing[region] = {}, {}
        for meter_id, cls in catalog_keys():
            meter = METERS[meter_id]
            entry, why = lookup(client, meter.service, region, meter.usage_type(region, cls),
                                meter.attributes)
            if entry is None:
                missing[region][meter_key(meter_id, cls)] = why
            else:
                out_regions[region][meter_key(meter_id, cls)] = entry
    published = {e["service"]: e["published"] for r in out_regions.values() for e in r.values()}
    return {"currency": "USD", "as_of": today.isoformat(), "hours_per_month": HOURS_PER_MONTH,
            "terms": "On-Demand list prices, first usage tier, no free tier (the free tier is "
                     "per account, not per stack)",
            "source": {"offer_files": OFFER_URL, "published": published,
                       "how": f"AWS Pricing API GetProducts ({PRICING_REGION} endpoint), "
                              f"read {today.isoformat()} by tap_lib/cost/refresh.py"},
            "regions": out_regions, "missing": missing}


def params_regions() -> list[str]:
    from ..config import available_environments, load_settings

    return sorted({load_settings(env, use_environ=False).region
                   for env in available_environments()})


def _boto_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tap_lib.cost.refresh",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="sandbox", choices=("sandbox", "aws"))
    parser.add_argument("--region", action="append", help="default: the params/ regions")
    parser.add_argument("--out", type=Path, default=CATALOG_FILE)
    args = parser.parse_args(argv)
    try:
        if args.target != "aws":
            raise UsageError("the price catalog is refreshed from the AWS Pricing API; the "
                             "sandbox has none", hint="run with --target aws and AWS "
                             "credentials allowed pricing:GetProducts")
        catalog = build_catalog(pricing_client(), args.region or params_regions())
    except TapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except _boto_errors() as exc:  # no credentials, no network, access denied
        print(f"error: the Pricing API could not be read: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 3
    args.out.write_text(json.dumps(catalog, indent=2) + "\n")
    gaps = sum(len(m) for m in catalog["missing"].values())
    print(f"wrote {args.out}: {sum(len(r) for r in catalog['regions'].values())} prices, "
          f"{gaps} missing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
