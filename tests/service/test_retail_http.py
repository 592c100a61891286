"""A retailer's home served over real HTTP: the end of issue 14's flow on Online Retail data.

`scored_retail_home` took an Online Retail sample through ingest (preset), features, training
and promotion of every applicable model, scoring, the churn list and the report; here
`bentoml serve` answers for it. The data records no marketing consent: by default known
customers get only service actions; with `serving.consent_when_unrecorded: allow` (the
business's statement that it may market to its existing customers) they get retail offers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest
from business_flow import BusinessHome

from features.catalog import ENTITY_KEY
from features.tables_io import read_contract
from models.offers import load_catalog
from serving.process import running_server

pytestmark = pytest.mark.service

RETAIL_MARKETING = {
    "cross_sell_recommended",
    "reactivation_voucher",
    "winback_lapsed",
    "loyalty_upgrade",
    "winback_strong_incentive",
    "winback_voucher",
}
SAMPLE = 40


@pytest.fixture(scope="module")
def retail_server(scored_retail_home: BusinessHome) -> Iterator[str]:
    home = scored_retail_home.settings.home
    env = {"LOYAL_SERVING__CONSENT_WHEN_UNRECORDED": "allow", "LOYAL_SERVING__WORKERS": "1"}
    with running_server(home, env=env, log_path=home / "server-allow.log") as server:
        yield server.url


@pytest.fixture(scope="module")
def known_customers(scored_retail_home: BusinessHome) -> list[str]:
    scores = pd.read_parquet(scored_retail_home.settings.paths.data_dir / "scores")
    return sorted(scores[ENTITY_KEY].astype(str).unique())[:SAMPLE]


def nba(url: str, customer_id: str, channel: str = "email") -> dict[str, Any]:
    answer = httpx.post(
        f"{url}/next_best_action",
        json={"customer_id": customer_id, "channel": channel, "k": 3},
        timeout=30.0,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_known_retail_customers_get_retail_offers_on_email(
    scored_retail_home: BusinessHome, retail_server: str, known_customers: list[str]
) -> None:
    settings = scored_retail_home.settings
    transactions = read_contract(settings, only=["transactions"])["transactions"]
    bought = transactions.groupby(transactions[ENTITY_KEY].astype(str))["product_id"].agg(set)
    names = read_contract(settings, only=["products"])["products"].set_index("product_id")["name"]
    retail = load_catalog("retail")
    offered = []
    for customer_id in known_customers:
        answer = nba(retail_server, customer_id)
        assert not answer["cold_start"] and answer["degraded"] is False, answer
        for action in answer["actions"]:
            offer = retail.offer(action["action_id"])
            assert offer is not None and "email" in offer.channels
            assert "{" not in action["message"] and action["reasons"]
            if action["action_id"] == "cross_sell_recommended":
                product = action["product_id"]
                assert product not in bought.get(customer_id, set())
                assert action["message"] == f"Picked for you: {names[product]}."
            if action["action_id"] == "reactivation_voucher":
                assert answer["churn_probability"] >= 0.5
            offered.append(action["action_id"])
    assert RETAIL_MARKETING & set(offered), offered
    assert offered.count("cross_sell_recommended") >= len(known_customers) // 2


def test_without_the_business_statement_unrecorded_consent_means_no_marketing(
    scored_retail_home: BusinessHome, known_customers: list[str]
) -> None:
    home = scored_retail_home.settings.home
    retail = load_catalog("retail")
    with running_server(home, log_path=home / "server-deny.log") as server:
        for customer_id in known_customers[:10]:
            for channel in ("email", "web"):
                answer = nba(server.url, customer_id, channel)
                assert all(
                    not retail.offer(a["action_id"]).is_marketing  # type: ignore[union-attr]
                    for a in answer["actions"]
                ), answer


def test_retail_channels_and_unknown_ids_are_answered_plainly(retail_server: str) -> None:
    unknown = nba(retail_server, "no-such-customer", "web")
    assert unknown["cold_start"] and unknown["cold_start_reason"].startswith("unknown customer")
    atm = httpx.post(
        f"{retail_server}/next_best_action",
        json={"customer_id": "12347", "channel": "atm"},
        timeout=30.0,
    )
    assert atm.status_code == 400 and "channel" in atm.text and "store" in atm.text
