"""What a stack costs a month: a price catalog with its sources, and an estimator that turns
declared (or recorded) resources into priced line items. See README "Cost"."""
from .catalog import Catalog, load_catalog
from .estimate import (Estimate, LineItem, Resource, ResourceCost, estimate, estimate_program,
                       estimate_state)
from .meters import HOURS_PER_MONTH, METERS

__all__ = ["Catalog", "Estimate", "HOURS_PER_MONTH", "LineItem", "METERS", "Resource",
           "ResourceCost", "estimate", "estimate_program", "estimate_state", "load_catalog"]
