"""A catalog per business: declared channels, the retail catalog, generic cross-sell, choice."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from campaigns.churn_list import retention_catalog, suggest_action
from features.presets import catalog_for
from features.tables_io import MANIFEST_FILE, recorded_catalog
from loyal.settings import ServingSettings, load_settings
from models.nba import CustomerScores, PolicyError, decide
from models.offers import (
    DEFAULT_CATALOG_PATH,
    DEFAULT_CHANNELS,
    RETAIL_CATALOG_PATH,
    Catalog,
    CatalogError,
    Vocabulary,
    catalog_from_dict,
    choose_catalog,
    load_catalog,
)
from models.recommender import PopularityRecommender
from serving.catalogs import features_without_data, product_names_from, report_missing_features
from serving.champions import LoadedModel
from serving.feedback import FeedbackStore
from serving.online import FeatureStoreError
from serving.runtime import RequestError, Runtime
from serving.schemas import (
    ChurnScoreRequest,
    FeedbackRequest,
    NextBestActionRequest,
    RecommendRequest,
    SegmentRequest,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
HEART = "WHITE HANGING HEART T-LIGHT HOLDER"


def offer(**overrides: Any) -> dict[str, Any]:
    """A minimal valid offer as plain data."""
    base: dict[str, Any] = {
        "id": "o1",
        "kind": "service",
        "channels": ["web"],
        "cost": 1,
        "value": {"model": "fixed", "amount": 50},
        "p_accept": 0.1,
        "message": "Hello.",
    }
    base.update(overrides)
    return base


def generic(**overrides: Any) -> dict[str, Any]:
    """A generic cross-sell offer: any recommended product, named in the message."""
    fields: dict[str, Any] = {
        "id": "any",
        "kind": "cross_sell",
        "product_id": "*",
        "trigger": "als",
        "cost": 0.1,
        "value": {"model": "fixed", "amount": 20},
        "p_accept": 0.1,
        "message": "Picked for you: {product_name}.",
    }
    return offer(**{**fields, **overrides})


def error(data: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(CatalogError) as caught:
        catalog_from_dict(data, **kwargs)
    return str(caught.value)


@pytest.fixture(scope="module")
def retail() -> Catalog:
    return load_catalog("retail")


def shopper(**overrides: Any) -> dict[str, Any]:
    """A known retail customer: consenting, regular, ordering recently."""
    row: dict[str, Any] = {
        "consent_marketing": True,
        "tenure_days": 400,
        "recency_days": 12,
        "frequency_30d": 0,
        "frequency_365d": 6,
        "monetary_365d": 900.0,
        "avg_basket_365d": 150.0,
    }
    row.update(overrides)
    return row


# --- declared channels ---------------------------------------------------------------------------


def test_a_catalog_declares_its_channels_and_offers_use_only_those() -> None:
    data = {"channels": ["web", "pos"], "offers": [offer(channels=["pos"])]}
    assert catalog_from_dict(data).channels == ("web", "pos")
    assert catalog_from_dict({"offers": [offer()]}).channels == DEFAULT_CHANNELS
    message = error({"channels": ["web", "pos"], "offers": [offer(channels=["web", "store"])]})
    assert message == (
        "offer 'o1' channels: 'store' not among the catalog's channels (web, pos); declare it in "
        "the catalog's `channels`"
    )


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        (["web", "web"], "catalog channels: channel listed twice: web"),
        ([], "catalog channels: Tuple should have at least 1 item"),
        (["web", "point of sale"], "catalog channels #2: String should match pattern"),
    ],
)
def test_bad_catalog_channels_are_named(channels: list[str], expected: str) -> None:
    assert error({"channels": channels, "offers": [offer()]}).startswith(expected)


def test_decide_checks_the_channel_against_the_catalog(retail: Catalog) -> None:
    with pytest.raises(PolicyError, match=r"unknown channel 'atm' \(allowed: web, mobile, email"):
        decide(shopper(), None, "atm", retail, [], NOW)
    assert decide(shopper(), None, "store", retail, [], NOW).channel == "store"


# --- the retail catalog --------------------------------------------------------------------------


def test_the_retail_catalog_loads_by_name_and_by_path(retail: Catalog) -> None:
    assert load_catalog(RETAIL_CATALOG_PATH) == retail
    assert {"web", "email", "store", "call_center"} <= set(retail.channels)
    kinds = {o.kind for o in retail.offers}
    assert kinds == {"cross_sell", "retention", "win_back", "service"}
    assert [o.id for o in retail.generic] == ["cross_sell_recommended", "popular_products"]
    assert not any(o.product_id and o.product_id.startswith("holds_") for o in retail.offers)


def test_retail_cold_start_has_non_marketing_actions_on_self_service_channels(
    retail: Catalog,
) -> None:
    for channel in ("web", "mobile", "store"):
        cold = [o for o in retail.offers if o.cold_start and channel in o.channels]
        assert any(not o.is_marketing for o in cold), channel


def test_retail_offers_reading_absent_features_are_named(retail: Catalog) -> None:
    served = [*shopper(), "tenure_days"]
    assert retail.missing_names(served) == {"service_complaint_follow_up": ("complaints_90d",)}
    assert retail.missing_names([*served, "complaints_90d"]) == {}


def test_missing_features_get_one_warning_per_offer(
    retail: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="serving.catalogs"):
        missing = report_missing_features(retail, ["tenure_days"])
    assert set(missing) == {
        "cross_sell_recommended",
        "winback_lapsed",
        "loyalty_upgrade",
        "service_complaint_follow_up",
        "service_order_help",
        "popular_products",
    }
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == len(missing)
    assert (
        "offer 'winback_lapsed' reads recency_days, frequency_365d, monetary_365d, which the "
        "data does not have: it will never be chosen"
    ) in lines
    assert (
        "offer 'service_order_help' reads frequency_30d, which the data does not have: only "
        "unknown customers get it (cold start)"
    ) in lines


def test_offers_without_their_data_are_left_out_but_cold_starts_need_none(
    retail: Catalog,
) -> None:
    unavailable = {"winback_lapsed": ("recency_days",), "service_welcome": ("tenure_days",)}
    known = decide(
        shopper(recency_days=200), None, "email", retail, [], NOW, unavailable=unavailable
    )
    (dropped,) = [f for f in known.filtered if f.action_id == "winback_lapsed"]
    assert dropped.reason == "reads recency_days, which the data does not have"
    assert "winback_lapsed" not in [a.action_id for a in known.actions]
    cold = decide(None, None, "web", retail, [], NOW, k=3, unavailable=unavailable)
    assert "service_welcome" in [a.action_id for a in cold.actions]


# --- generic cross-sell --------------------------------------------------------------------------


def test_generic_offer_needs_trigger_als_and_checks_its_template() -> None:
    assert "needs trigger 'als'" in error({"offers": [generic(trigger="rules")]})
    assert "did you mean 'product_name'" in error(
        {"offers": [generic(message="Try {product_nam}.")]}
    )
    assert catalog_from_dict({"offers": [generic()]}).generic[0].id == "any"


def test_generic_cross_sell_names_the_recommended_product(retail: Catalog) -> None:
    decision = decide(
        shopper(),
        CustomerScores(churn_probability=0.05, tier="lead"),
        "email",
        retail,
        [],
        NOW,
        recommendations=[("85123A", 0.9), ("22423", 0.5)],
        product_names={"85123A": HEART},
    )
    (action,) = decision.actions
    assert action.action_id == "cross_sell_recommended" and action.product_id == "85123A"
    assert action.message == f"Picked for you: {HEART}."
    assert "cross-sell model ranks 85123A #1 (score 0.900)" in action.reasons
    assert action.value == pytest.approx(150.0 * 0.25)


def test_generic_cross_sell_without_a_name_shows_the_product_id(retail: Catalog) -> None:
    decision = decide(
        shopper(), None, "web", retail, [], NOW, recommendations=[("cd", 0.7)], product_names={}
    )
    assert decision.actions[0].message == "Picked for you: cd."


def test_generic_offer_leaves_products_with_their_own_offer_to_it() -> None:
    own = offer(
        id="own_a",
        kind="cross_sell",
        product_id="a",
        trigger="als",
        value={"model": "fixed", "amount": 500},
        message="Our best A.",
    )
    catalog = catalog_from_dict(
        {"offers": [own, generic()]},
        vocabulary=Vocabulary(frozenset({"holds_a", "consent_marketing"})),
    )
    decision = decide(
        {"consent_marketing": True}, None, "web", catalog, [], NOW, k=3,
        recommendations=[("a", 0.9), ("b", 0.8)], product_names={"b": "Bee"},
    )  # fmt: skip
    assert [(a.action_id, a.product_id, a.message) for a in decision.actions] == [
        ("own_a", "a", "Our best A."),
        ("any", "b", "Picked for you: Bee."),
    ]
    assert not any(r.action_id.startswith("als:") for r in decision.filtered)


# --- retail decisions ----------------------------------------------------------------------------


def test_high_churn_risk_gets_a_reactivation_offer_on_email_and_a_call(retail: Catalog) -> None:
    scores = CustomerScores(churn_probability=0.73, clv=600.0, tier="iron")
    churn_reasons = ("no order in 95 days",)
    on_email = decide(shopper(recency_days=95), scores, "email", retail, [], NOW)
    assert on_email.actions[0].action_id == "reactivation_voucher"
    assert on_email.actions[0].message.startswith("We miss you: here is 15% off")
    scores = scores.model_copy(update={"churn_reasons": churn_reasons})
    by_phone = decide(shopper(recency_days=95), scores, "call_center", retail, [], NOW)
    assert by_phone.actions[0].action_id == "retention_call"
    assert by_phone.actions[0].message.startswith("At risk (no order in 95 days), iron tier")


def test_top_tier_gets_the_members_club(retail: Catalog) -> None:
    scores = CustomerScores(churn_probability=0.02, clv=5000.0, tier="gold")
    decision = decide(shopper(monetary_365d=20000.0), scores, "email", retail, [], NOW)
    assert decision.actions[0].action_id == "loyalty_upgrade"
    lead = decide(shopper(monetary_365d=20000.0), scores.model_copy(update={"tier": "lead"}),
                  "email", retail, [], NOW)  # fmt: skip
    assert all(a.action_id != "loyalty_upgrade" for a in lead.actions)


def test_unknown_customer_gets_retail_cold_start_offers(retail: Catalog) -> None:
    decision = decide(
        None, None, "web", retail, [], NOW, k=3,
        recommendations=[("85123A", 0.3)], product_names={"85123A": HEART},
    )  # fmt: skip
    assert decision.cold_start
    ids = [a.action_id for a in decision.actions]
    # An unknown customer has no marketing consent on record: only the service actions remain.
    assert set(ids) == {"service_welcome", "service_order_help"}
    assert all(retail.offer(i).cold_start for i in ids)  # type: ignore[union-attr]
    refused = {r.action_id: r.stage for r in decision.filtered}
    assert refused["popular_products"] == "consent"


# --- which catalog a home serves -----------------------------------------------------------------


def test_choose_catalog_prefers_path_then_name_then_the_data(tmp_path: Path) -> None:
    own = tmp_path / "mine.yaml"
    assert choose_catalog(own, "retail", "retail") == (own, "serving.catalog_path")
    assert choose_catalog(None, "retail", "bank") == (
        RETAIL_CATALOG_PATH,
        "retail (serving.catalog)",
    )
    assert choose_catalog(None, None, "retail")[0] == RETAIL_CATALOG_PATH
    assert choose_catalog(None, None, None) == (DEFAULT_CATALOG_PATH, "bank (default)")
    with pytest.raises(CatalogError, match=r"no shipped catalog 'shop' \(choose one of bank, "):
        choose_catalog(None, "shop", None)


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ({"preset": "online-retail", "rows": {"customers": 3}}, "retail"),
        ({"preset": "cdnow", "rows": {}}, "retail"),
        ({"preset": None, "rows": {"customers": 3, "balances": 9}}, "bank"),
        ({"preset": None, "rows": {"customers": 3, "transactions": 9}}, "retail"),
    ],
)
def test_the_data_calls_for_a_catalog(manifest: dict[str, Any], expected: str) -> None:
    assert catalog_for(manifest) == expected


def test_recorded_catalog_reads_the_ingest_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(home=tmp_path)
    assert recorded_catalog(settings) is None
    settings.paths.contract_dir.mkdir(parents=True)
    manifest = {"preset": "cdnow", "rows": {"customers": 2}}
    (settings.paths.contract_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert recorded_catalog(settings) == "retail"


def test_product_names_come_from_the_products_table(tmp_path: Path) -> None:
    file = tmp_path / "products.parquet"
    pd.DataFrame(
        {"product_id": ["85123A", "22423", "x"], "name": [f" {HEART} ", "REGENCY CAKESTAND", None]}
    ).to_parquet(file)
    assert product_names_from(file) == {"85123A": HEART, "22423": "REGENCY CAKESTAND"}
    pd.DataFrame({"product_id": ["cd"]}).to_parquet(file)
    assert product_names_from(file) == {}
    assert product_names_from(tmp_path / "missing.parquet") == {}


# --- the runtime ---------------------------------------------------------------------------------


class Reader:
    """Online rows from a dict (or a store that cannot be read)."""

    name = "fake"
    views = ("profile", "rfm", "scores")

    def __init__(self, rows: dict[str, dict[str, Any]], broken: bool = False) -> None:
        self.rows = rows
        self.broken = broken

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(sorted({name for row in self.rows.values() for name in row}))

    def read(self, customer_ids: list[str]) -> list[dict[str, Any] | None]:
        if self.broken:
            raise FeatureStoreError("online store is down")
        return [self.rows.get(c) for c in customer_ids]

    def probe(self) -> None:
        """Always fine."""


def runtime(
    tmp_path: Path, catalog: Catalog, reader: Reader, absent: frozenset[str] = frozenset()
) -> Runtime:
    models = {
        "churn": LoadedModel("churn", None, None, None, "no churn@champion"),
        "cross_sell": LoadedModel("cross_sell", None, None, None, "no cross_sell@champion"),
    }
    return Runtime(
        catalog,
        models,
        lambda: reader,
        FeedbackStore(tmp_path / "feedback.db"),
        ServingSettings(),
        clock=lambda: NOW,
        catalog_name="retail (test)",
        absent_features=absent,
    )


def test_a_channel_outside_the_catalog_is_refused_naming_channel(
    tmp_path: Path, retail: Catalog
) -> None:
    served = runtime(tmp_path, retail, Reader({"C1": shopper()}))
    with pytest.raises(RequestError) as caught:
        served.next_best_action(NextBestActionRequest(customer_id="C1", channel="atm"))
    assert caught.value.field == "channel"
    assert caught.value.message == (
        "unknown channel 'atm'; this catalog's channels: web, mobile, email, store, call_center"
    )
    with pytest.raises(RequestError) as caught:
        served.feedback(
            FeedbackRequest(
                customer_id="C1", action_id="service_welcome", channel="atm", outcome="accepted"
            )
        )
    assert caught.value.field == "channel"
    answer = served.next_best_action(NextBestActionRequest(customer_id="C1", channel="store"))
    assert answer.channel == "store" and not answer.cold_start
    assert served.status().channels == list(retail.channels)
    assert served.status().catalog == "retail (test)"


def test_an_id_not_found_is_a_cold_start_with_the_reason(tmp_path: Path, retail: Catalog) -> None:
    served = runtime(tmp_path, retail, Reader({"00001": shopper()}))
    answer = served.next_best_action(NextBestActionRequest(customer_id="1", channel="web"))
    assert answer.cold_start
    assert answer.cold_start_reason == (
        "unknown customer: no customer with id '1' (ids are matched exactly)"
    )
    assert all(retail.offer(a.action_id).cold_start for a in answer.actions)  # type: ignore[union-attr]
    known = served.next_best_action(NextBestActionRequest(customer_id="00001", channel="web"))
    assert not known.cold_start and known.cold_start_reason is None


def test_an_unreadable_store_is_a_cold_start_for_another_reason(
    tmp_path: Path, retail: Catalog
) -> None:
    served = runtime(tmp_path, retail, Reader({}, broken=True))
    answer = served.next_best_action(NextBestActionRequest(customer_id="C1", channel="web"))
    assert answer.cold_start and answer.degraded
    assert answer.cold_start_reason == "customer data unavailable: the feature store cannot be read"


def test_the_runtime_reports_offers_the_data_cannot_feed(tmp_path: Path, retail: Catalog) -> None:
    served = runtime(tmp_path, retail, Reader({"C1": shopper()}))
    assert served.unavailable_offers == {"service_complaint_follow_up": ("complaints_90d",)}
    answer = served.next_best_action(
        NextBestActionRequest(customer_id="C1", channel="call_center", explain=True)
    )
    assert all(a.action_id != "service_complaint_follow_up" for a in answer.actions)
    dropped = [f for f in answer.filtered or [] if f.action_id == "service_complaint_follow_up"]
    assert [(f.stage, f.reason) for f in dropped] == [
        ("eligibility", "reads complaints_90d, which the data does not have")
    ]


def test_served_features_without_source_data_count_as_absent(
    tmp_path: Path, retail: Catalog
) -> None:
    # The store serves complaints_90d = 0 for everyone, but the data has no interactions:
    # "no complaint" is unknown, so the follow-up is never chosen, even where 0 >= 1 could flip.
    reader = Reader({"C1": shopper(complaints_90d=3)})
    served = runtime(tmp_path, retail, reader, absent=frozenset({"complaints_90d"}))
    assert served.unavailable_offers == {"service_complaint_follow_up": ("complaints_90d",)}
    answer = served.next_best_action(NextBestActionRequest(customer_id="C1", channel="call_center"))
    assert all(a.action_id != "service_complaint_follow_up" for a in answer.actions)
    present = runtime(tmp_path / "p", retail, reader)
    assert present.unavailable_offers == {}
    answer = present.next_best_action(
        NextBestActionRequest(customer_id="C1", channel="call_center")
    )
    assert answer.actions[0].action_id == "service_complaint_follow_up"


def test_features_without_data_follow_the_loaded_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(home=tmp_path)
    assert features_without_data(settings) == frozenset()
    settings.paths.contract_dir.mkdir(parents=True)
    manifest = settings.paths.contract_dir / MANIFEST_FILE
    manifest.write_text(json.dumps({"rows": {"customers": 3, "transactions": 9}}))
    absent = features_without_data(settings)
    assert {"complaints_90d", "logins_30d", "balance_checking", "idle_cash"} <= absent
    assert "digital_share" not in absent and "recency_days" not in absent
    rows = {"customers": 3, "transactions": 9, "interactions": 4, "balances": 2}
    manifest.write_text(json.dumps({"rows": rows}))
    assert features_without_data(settings) == frozenset()


# --- the churn list on a retailer's catalog ------------------------------------------------------


def test_the_churn_list_suggests_the_retail_call(retail: Catalog) -> None:
    restricted = retention_catalog(retail)
    assert restricted is not None and restricted.channels == retail.channels
    scores = CustomerScores(
        churn_probability=0.6, clv=800.0, tier="iron", churn_reasons=("no order in 95 days",)
    )
    suggestion = suggest_action(shopper(recency_days=95), scores, restricted, NOW)
    assert suggestion.action_id == "retention_call"
    shop = catalog_from_dict(
        {
            "channels": ["web"],
            "offers": [offer(kind="retention", value={"model": "retention"})],
        }
    )
    note = suggest_action(shopper(), scores, retention_catalog(shop), NOW).note
    assert note == "the offer catalog declares no call_center channel"


def test_every_endpoint_explains_a_cold_start(tmp_path: Path, retail: Catalog) -> None:
    users, items = ["00001", "00002"], ["a", "b"]
    popular = PopularityRecommender().fit(sp.csr_matrix(np.array([[1, 0], [1, 1]])), users, items)
    served = runtime(tmp_path, retail, Reader({"00001": shopper()}))
    served.models["cross_sell"] = LoadedModel("cross_sell", popular, "1", "test", None)
    unknown = "unknown customer: no customer with id '1' (ids are matched exactly)"
    recommended = served.recommend(RecommendRequest(customer_id="1"))
    assert recommended.cold_start and recommended.cold_start_reason == (
        "unknown customer: the cross-sell model has no history for id '1' (ids are matched "
        "exactly); popular products"
    )
    assert served.segment(SegmentRequest(customer_id="1")).cold_start_reason == unknown
    scores = served.churn_score(ChurnScoreRequest(customer_ids=["1", "00001"])).scores
    assert [s.cold_start_reason for s in scores] == [unknown, None]
    assert served.recommend(RecommendRequest(customer_id="00001")).cold_start_reason is None
