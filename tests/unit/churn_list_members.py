"""Churn-list members for the win-back tests (bank and retail catalogs): the list a campaign
would select, and the actions `suggest_actions` gives them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from campaigns.churn_list import retention_catalog, suggest_actions
from models.offers import Catalog


def list_members(tiers: list[str], clv: dict[str, float], prefix: str = "C") -> pd.DataFrame:
    """Churn-list members at high risk, one per tier given, with that tier's CLV."""
    return pd.DataFrame(
        {
            "customer_id": [f"{prefix}{i}" for i in range(len(tiers))],
            "tier": tiers,
            "churn_probability": 0.8,
            "clv": [clv[t] for t in tiers],
            "segment_id": -1,
            "segment_name": "",
            "consent_marketing": True,
            "region": "north",
        }
    )


def suggested_actions(
    catalog: Catalog,
    members: pd.DataFrame,
    facts: list[dict[str, Any]],
    now: datetime,
) -> pd.DataFrame:
    """The churn list's suggested action per member, each with its row of `facts` as features."""
    index = pd.Index(members["customer_id"], name="customer_id")
    features = pd.DataFrame(facts, index=index)
    return suggest_actions(members, features, {}, retention_catalog(catalog), now)
