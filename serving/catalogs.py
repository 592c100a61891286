"""The offer catalog a home serves: which one, the product names it shows, what the data lacks.

A home serves `serving.catalog_path` (your own catalog), else the shipped catalog named by
`serving.catalog`, else the one its loaded data calls for (the ingest preset's, `bank` when the
data holds balances, else `retail`). Generic cross-sell offers name products by the products
table's `name`. Offers that read features the online store does not serve are reported once
each at start-up; the service still answers, and those offers are never chosen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from pyarrow import ArrowException

from features.catalog import BALANCES, ENGAGEMENT
from features.tables_io import loaded_manifest, recorded_catalog
from loyal.settings import ServingSettings, Settings
from models.offers import Catalog, choose_catalog, load_catalog

log = logging.getLogger(__name__)

PRODUCTS_FILE = "products.parquet"
"""The validated products table in the contract folder."""


def load_home_catalog(settings: Settings, options: ServingSettings) -> tuple[Catalog, str]:
    """The validated catalog this home serves, and which one it is in words.

    Raises:
        CatalogError: the chosen catalog is unknown, unreadable or invalid.
    """
    path, why = choose_catalog(options.catalog_path, options.catalog, recorded_catalog(settings))
    catalog = load_catalog(path)
    label = f"{why}: {path}"
    log.info(
        "offer catalog %s (%d offers, channels %s)", label, len(catalog.offers), catalog.channels
    )
    return catalog, label


def read_product_names(settings: Settings) -> dict[str, str]:
    """Product id -> name from the loaded products table ({} without names; logged)."""
    file = settings.paths.contract_dir / PRODUCTS_FILE
    return product_names_from(file)


def product_names_from(file: Path) -> dict[str, str]:
    """Product id -> name from a products Parquet file; {} when it is missing or has no names."""
    try:
        products = pd.read_parquet(file)
    except (OSError, ValueError, ArrowException) as exc:
        log.warning("product names unavailable (%s): cross-sell messages name product ids", exc)
        return {}
    if "product_id" not in products.columns or "name" not in products.columns:
        log.info("the products table has no names: cross-sell messages name product ids")
        return {}
    named = products.loc[products["name"].notna(), ["product_id", "name"]]
    names = named["name"].astype(str).str.strip()
    return {str(p): n for p, n in zip(named["product_id"].astype(str), names, strict=True) if n}


TRANSACTION_FEATURES = frozenset({"digital_share"})
"""Engagement features built from transactions, not interactions."""


def features_without_data(settings: Settings) -> frozenset[str]:
    """Online features the loaded data cannot give: built only from an optional table it lacks.

    The store still serves them (as 0 counts or NaN), but no offer should act on them: without
    interactions "0 complaints" means "unknown", not "happy". Empty without a manifest.
    """
    manifest = loaded_manifest(settings)
    if manifest is None:
        return frozenset()
    rows = manifest.get("rows")
    tables = {name for name, n in rows.items() if n} if isinstance(rows, dict) else set()
    absent: set[str] = set()
    if "balances" not in tables:
        absent.update(f.name for f in BALANCES.features)
    if "interactions" not in tables:
        absent.update(f.name for f in ENGAGEMENT.features if f.name not in TRANSACTION_FEATURES)
    return frozenset(absent)


def report_missing_features(
    catalog: Catalog, feature_names: Iterable[str]
) -> dict[str, tuple[str, ...]]:
    """Warn once per offer that reads features the store does not serve; return them by offer."""
    missing = catalog.missing_names(feature_names)
    for offer_id, names in missing.items():
        offer = catalog.offer(offer_id)
        cold = offer is not None and offer.cold_start
        log.warning(
            "offer '%s' reads %s, which the data does not have: %s",
            offer_id,
            ", ".join(names),
            "only unknown customers get it (cold start)" if cold else "it will never be chosen",
        )
    return missing


def channel_problem(catalog: Catalog, channel: str) -> str | None:
    """Why `channel` cannot be served by this catalog (None: it can)."""
    if channel in catalog.channels:
        return None
    return f"unknown channel {channel!r}; this catalog's channels: {', '.join(catalog.channels)}"


def cold_start_reason(customer_id: str, store_failed: bool) -> str:
    """Why an answer is a cold start, in words."""
    if store_failed:
        return "customer data unavailable: the feature store cannot be read"
    return f"unknown customer: no customer with id {customer_id!r} (ids are matched exactly)"
