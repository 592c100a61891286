"""Serving runtime on tiny in-memory models and a fake feature reader: no server, no Feast."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import MutableMapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from loyal.settings import ServingSettings, load_settings
from models.churn import ChurnModel
from models.offers import load_catalog
from models.recommender import PopularityRecommender
from serving.auth import ApiKeyMiddleware, api_key_ok
from serving.champions import LoadedModel, load_champions
from serving.fastchurn import FastChurn
from serving.feedback import FeedbackStore
from serving.online import FeatureStoreError
from serving.runtime import RequestError, Runtime, history_days
from serving.schemas import (
    ChurnScoreRequest,
    FeedbackRequest,
    NextBestActionRequest,
    RecommendRequest,
    SegmentRequest,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
REASONS = ["3 complaints in the last 90 days", "last purchase 80 days ago"]
FULL_VIEWS = ("profile", "rfm", "holdings", "engagement", "balances", "lifecycle", "scores")


def customer(**overrides: Any) -> dict[str, Any]:
    """A known customer with idle cash in checking (the ATM example fits)."""
    row: dict[str, Any] = {
        "consent_marketing": True,
        "tenure_days": 900,
        "age": 45.0,
        "holds_checking": True,
        "holds_high_yield_savings": False,
        "holds_mortgage": False,
        "holds_credit_card": False,
        "balance_checking": 6000.0,
        "idle_cash": 5000.0,
        "total_deposits": 6000.0,
        "complaints_90d": 0,
        "logins_30d": 4,
        "monetary_365d": 3000.0,
        "tier": "gold",
        "segment_id": 2,
        "segment_name": "affluent savers",
        "clv": 2400.0,
        "p_alive": 0.93,
        "churn_probability": 0.05,
    }
    row.update(overrides)
    return row


class FakeReader:
    """Online rows from a dict; `broken` makes every read fail like an unreachable store."""

    name = "fake"

    def __init__(self, rows: dict[str, dict[str, Any]], views: Sequence[str] = FULL_VIEWS) -> None:
        self.rows = rows
        self.broken = False
        self._views = tuple(views)
        self.calls = 0

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(sorted({name for row in self.rows.values() for name in row}))

    @property
    def views(self) -> tuple[str, ...]:
        return self._views

    def read(self, customer_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        self.calls += 1
        if self.broken:
            raise FeatureStoreError("online store /x/online.db is missing")
        return [dict(self.rows[c]) if c in self.rows else None for c in customer_ids]

    def probe(self) -> None:
        if self.broken:
            raise FeatureStoreError("online store /x/online.db is missing")


class FakeChurn:
    """A churn 'model' with a fixed answer."""

    def __init__(self, probability: float) -> None:
        self.probability = probability

    def score(self, row: dict[str, Any], top: int = 3) -> tuple[float, list[str]]:
        return self.probability, REASONS[:top]


class Recorder:
    """Collects what the runtime reports."""

    def __init__(self) -> None:
        self.degraded_answers: list[tuple[str, list[str]]] = []
        self.cold: list[str] = []
        self.outcomes: list[str] = []

    def degraded(self, endpoint: str, kinds: Sequence[str]) -> None:
        self.degraded_answers.append((endpoint, list(kinds)))

    def cold_start(self, endpoint: str) -> None:
        self.cold.append(endpoint)

    def feedback(self, outcome: str) -> None:
        self.outcomes.append(outcome)


@pytest.fixture(scope="module")
def recommender() -> PopularityRecommender:
    """Popularity over four products: savings is held most, then credit_card, then insurance."""
    users = [f"C{i}" for i in range(6)]
    items = ["checking", "credit_card", "insurance", "savings"]
    held = np.array(
        [[1, 1, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1], [0, 0, 0, 1], [1, 1, 0, 1], [1, 0, 1, 1]]
    )
    return PopularityRecommender().fit(sp.csr_matrix(held), users, items)


def make_runtime(
    tmp_path: Path,
    reader: FakeReader,
    recommender: PopularityRecommender | None,
    churn: Any | None = None,
    recorder: Recorder | None = None,
) -> Runtime:
    models = {
        "churn": LoadedModel("churn", churn, "7" if churn else None, "test", None),
        "cross_sell": LoadedModel(
            "cross_sell", recommender, "3" if recommender else None, "test", None
        ),
    }
    return Runtime(
        load_catalog(),
        models,
        lambda: reader,
        FeedbackStore(tmp_path / "feedback.db"),
        ServingSettings(),
        recorder,
        clock=lambda: NOW,
    )


# --- next best action ----------------------------------------------------------------------------


def test_known_customer_gets_the_idle_cash_offer_at_the_atm(
    tmp_path: Path, recommender: PopularityRecommender
) -> None:
    reader = FakeReader({"C1": customer()})
    runtime = make_runtime(tmp_path, reader, recommender, FakeChurn(0.05))
    answer = runtime.next_best_action(NextBestActionRequest(customer_id="C1", channel="atm"))
    assert not answer.degraded and not answer.cold_start
    assert answer.actions[0].action_id == "hys_move_idle_cash"
    assert answer.actions[0].message.startswith("You keep $5,000 in checking.")
    assert answer.tier == "gold" and answer.segment == "affluent savers" and answer.clv == 2400.0
    assert answer.churn_probability == 0.05
    assert answer.model_versions == {"churn": "7", "cross_sell": "3"}


def test_unknown_customer_gets_a_flagged_cold_start_answer(
    tmp_path: Path, recommender: PopularityRecommender
) -> None:
    recorder = Recorder()
    runtime = make_runtime(
        tmp_path, FakeReader({"C1": customer()}), recommender, FakeChurn(0.05), recorder
    )
    answer = runtime.next_best_action(NextBestActionRequest(customer_id="NEW-9", channel="web"))
    assert answer.cold_start and not answer.degraded
    assert answer.actions, "a cold start still gets an offer"
    catalog = load_catalog()
    assert all(catalog.offer(a.action_id).cold_start for a in answer.actions)  # type: ignore[union-attr]
    assert answer.churn_probability is None and answer.tier is None
    assert recorder.cold == ["next_best_action"]


def test_store_failure_degrades_the_answer_instead_of_failing(
    tmp_path: Path, recommender: PopularityRecommender
) -> None:
    recorder = Recorder()
    reader = FakeReader({"C1": customer()})
    runtime = make_runtime(tmp_path, reader, recommender, FakeChurn(0.05), recorder)
    reader.broken = True
    answer = runtime.next_best_action(NextBestActionRequest(customer_id="C1", channel="atm"))
    assert answer.degraded
    assert any("feature store unavailable" in r for r in answer.degraded_reasons)
    assert answer.actions and answer.cold_start  # generic offers while the store is down
    assert recorder.degraded_answers == [("next_best_action", ["feature_store"])]
    assert runtime.feature_store_status().startswith("online store")
    assert not runtime.ready()


def test_missing_churn_model_degrades_and_falls_back_to_the_batch_score(
    tmp_path: Path, recommender: PopularityRecommender
) -> None:
    reader = FakeReader({"C1": customer(churn_probability=0.31)})
    runtime = make_runtime(tmp_path, reader, recommender, churn=None)
    answer = runtime.next_best_action(NextBestActionRequest(customer_id="C1", channel="atm"))
    assert answer.degraded and answer.churn_probability == 0.31
    assert any("churn" in r for r in answer.degraded_reasons)
    scores = runtime.churn_score(ChurnScoreRequest(customer_ids=["C1"]))
    assert scores.scores[0].source == "batch" and scores.degraded
    assert not runtime.ready()


def test_missing_scores_view_is_flagged(tmp_path: Path, recommender: PopularityRecommender) -> None:
    row = {k: v for k, v in customer().items() if k not in ("tier", "clv", "segment_name")}
    reader = FakeReader({"C1": row}, views=FULL_VIEWS[:-1])
    runtime = make_runtime(tmp_path, reader, recommender, FakeChurn(0.05))
    answer = runtime.next_best_action(NextBestActionRequest(customer_id="C1", channel="atm"))
    assert answer.degraded and answer.tier is None
    assert any("'scores' view" in r for r in answer.degraded_reasons)
    assert answer.actions[0].action_id == "hys_move_idle_cash"


def test_high_churn_gold_customer_gets_a_retention_offer_with_reasons(
    tmp_path: Path, recommender: PopularityRecommender
) -> None:
    reader = FakeReader({"C1": customer(idle_cash=0.0, complaints_90d=3)})
    runtime = make_runtime(tmp_path, reader, recommender, FakeChurn(0.72))
    answer = runtime.next_best_action(
        NextBestActionRequest(customer_id="C1", channel="call_center", k=2)
    )
    top = answer.actions[0]
    assert top.kind == "retention" and "gold tier" in top.message
    assert REASONS[0] in top.reasons


class CountingChurn(FakeChurn):
    """A fixed churn answer that counts the reasons it was asked for."""

    def __init__(self, probability: float) -> None:
        super().__init__(probability)
        self.reason_requests: list[int] = []

    def score(self, row: dict[str, Any], top: int = 3) -> tuple[float, list[str]]:
        self.reason_requests.append(top)
        return super().score(row, top)


def test_reasons_are_computed_only_where_an_offer_can_show_them(
    tmp_path: Path, recommender: PopularityRecommender
) -> None:
    catalog = load_catalog()
    assert catalog.reads_churn_reasons("call_center") and not catalog.reads_churn_reasons("atm")
    churn = CountingChurn(0.72)
    reader = FakeReader({"C1": customer(complaints_90d=3)})
    runtime = make_runtime(tmp_path, reader, recommender, churn)
    atm = runtime.next_best_action(NextBestActionRequest(customer_id="C1", channel="atm", k=3))
    call = runtime.next_best_action(
        NextBestActionRequest(customer_id="C1", channel="call_center", k=3)
    )
    assert churn.reason_requests == [0, 3]
    assert atm.actions and all(r not in a.reasons for a in atm.actions for r in REASONS)
    assert REASONS[0] in call.actions[0].reasons


def test_declined_feedback_suppresses_the_offer_and_the_next_one_comes_up(
    tmp_path: Path, recommender: PopularityRecommender
) -> None:
    recorder = Recorder()
    reader = FakeReader({"C1": customer()})
    runtime = make_runtime(tmp_path, reader, recommender, FakeChurn(0.05), recorder)
    request = NextBestActionRequest(customer_id="C1", channel="atm", explain=True)
    first = runtime.next_best_action(request).actions[0].action_id
    recorded = runtime.feedback(
        FeedbackRequest(
            customer_id="C1",
            action_id=first,
            channel="atm",
            outcome="declined",
            ts=NOW - timedelta(days=2),
        )
    )
    assert recorded.recorded and recorded.feedback_id >= 1
    again = runtime.next_best_action(request)
    assert first not in [a.action_id for a in again.actions]
    dropped = [f for f in again.filtered or [] if f.action_id == first]
    assert dropped and dropped[0].stage == "contact" and "declined 2 days ago" in dropped[0].reason
    assert recorder.outcomes == ["declined"]


def test_feedback_is_durable_across_runtimes(
    tmp_path: Path, recommender: PopularityRecommender
) -> None:
    reader = FakeReader({"C1": customer()})
    first = make_runtime(tmp_path, reader, recommender, FakeChurn(0.05))
    first.feedback(
        FeedbackRequest(
            customer_id="C1", action_id="hys_move_idle_cash", channel="atm", outcome="accepted"
        )
    )
    later = make_runtime(tmp_path, reader, recommender, FakeChurn(0.05))
    events = later.feedback_store.history("C1", NOW - timedelta(days=1))
    assert [(e.offer_id, e.outcome) for e in events] == [("hys_move_idle_cash", "accepted")]


def test_feedback_on_an_unknown_action_names_the_field(
    tmp_path: Path, recommender: PopularityRecommender
) -> None:
    runtime = make_runtime(tmp_path, FakeReader({}), recommender)
    with pytest.raises(RequestError) as error:
        runtime.feedback(
            FeedbackRequest(customer_id="C1", action_id="nope", channel="atm", outcome="ignored")
        )
    assert error.value.field == "action_id"


def test_context_overrides_features_and_unknown_names_are_rejected(
    tmp_path: Path, recommender: PopularityRecommender
) -> None:
    reader = FakeReader({"C1": customer(idle_cash=0.0, balance_checking=1000.0)})
    runtime = make_runtime(tmp_path, reader, recommender, FakeChurn(0.05))
    fresh = NextBestActionRequest(
        customer_id="C1", channel="atm", context={"idle_cash": 3000.0, "balance_checking": 4000.0}
    )
    assert runtime.next_best_action(fresh).actions[0].message.startswith("You keep $3,000")
    with pytest.raises(RequestError) as error:
        runtime.next_best_action(
            NextBestActionRequest(customer_id="C1", channel="atm", context={"shoe_size": 44})
        )
    assert error.value.field == "context.shoe_size"


# --- other endpoints -----------------------------------------------------------------------------


def test_churn_score_keeps_the_order_and_flags_unknown_customers(
    tmp_path: Path, recommender: PopularityRecommender
) -> None:
    reader = FakeReader({"C1": customer(), "C2": customer()})
    runtime = make_runtime(tmp_path, reader, recommender, FakeChurn(0.4))
    answer = runtime.churn_score(ChurnScoreRequest(customer_ids=["C2", "X", "C1"]))
    assert [s.customer_id for s in answer.scores] == ["C2", "X", "C1"]
    assert [s.cold_start for s in answer.scores] == [False, True, False]
    assert answer.scores[0].churn_probability == 0.4 and answer.scores[0].reasons == REASONS
    assert answer.scores[1].churn_probability is None and not answer.degraded
    assert reader.calls == 1, "one batched read for the whole request"


def test_recommend_answers_unknown_customers_with_popular_products(
    tmp_path: Path, recommender: PopularityRecommender
) -> None:
    runtime = make_runtime(tmp_path, FakeReader({}), recommender)
    answer = runtime.recommend(RecommendRequest(customer_id="NEW", k=2))
    assert answer.cold_start and [p.product_id for p in answer.products] == ["savings", "checking"]
    known = runtime.recommend(RecommendRequest(customer_id="C3", k=3))
    assert not known.cold_start and "savings" not in [p.product_id for p in known.products]


def test_recommend_without_a_model_is_degraded_not_an_error(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, FakeReader({}), None)
    answer = runtime.recommend(RecommendRequest(customer_id="C1"))
    assert answer.degraded and answer.products == []


def test_segment_reads_the_batch_scores_and_drops_no_segment_markers(
    tmp_path: Path, recommender: PopularityRecommender
) -> None:
    reader = FakeReader(
        {"C1": customer(), "C2": customer(segment_id=-1, segment_name="", tier="lead")}
    )
    runtime = make_runtime(tmp_path, reader, recommender)
    first = runtime.segment(SegmentRequest(customer_id="C1"))
    assert (first.tier, first.segment_id, first.segment, first.p_alive) == (
        "gold",
        2,
        "affluent savers",
        0.93,
    )
    second = runtime.segment(SegmentRequest(customer_id="C2"))
    assert second.segment_id is None and second.segment is None and second.tier == "lead"


def test_status_lists_versions_and_problems(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, FakeReader({}, views=FULL_VIEWS[:-1]), None, FakeChurn(0.1))
    status = runtime.status()
    assert status.model_versions == {"churn": "7", "cross_sell": None}
    assert status.feature_store == "ok" and not status.ready
    assert any("cross_sell" in r for r in status.degraded_reasons)


def test_history_window_covers_the_longest_contact_rule() -> None:
    assert history_days(load_catalog()) == 120


def test_load_champions_records_missing_and_broken_models() -> None:
    class Source:
        def locate(self, name: str) -> Any:
            if name == "churn":
                return None
            raise OSError("registry unreachable")

    loaded = load_champions(Source(), ["churn", "cross_sell", "segments"])
    assert all(m.obj is None for m in loaded.values())
    assert "no churn@champion" in (loaded["churn"].problem or "")
    assert "registry unreachable" in (loaded["cross_sell"].problem or "")
    assert "no serving loader" in (loaded["segments"].problem or "")


# --- the churn fast path -------------------------------------------------------------------------


def churn_table(n: int = 600, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "complaints_90d": rng.poisson(0.6, n),
            "tenure_days": rng.integers(30, 4000, n),
            "balance_checking": np.where(rng.random(n) < 0.2, np.nan, rng.lognormal(7, 1, n)),
            "holds_savings": rng.random(n) < 0.5,
            "region": rng.choice(["north", "south", "east", "west", "capital", "isles"], n),
        }
    )
    logit = -2.5 + 0.9 * frame["complaints_90d"] - frame["tenure_days"] / 3000
    logit += np.where(frame["region"].isin(["east", "isles"]), 0.8, 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, y


@pytest.mark.parametrize("depth", [1, 3])
def test_fast_churn_equals_the_batch_path(depth: int) -> None:
    X, y = churn_table()
    model = ChurnModel(max_depth=depth, max_rounds=60, cv_folds=2, max_cat_to_onehot=2).fit(X, y)
    fast = FastChurn(model)
    rows = [
        {str(k): (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in X.to_dict(orient="records")
    ]
    batch = model.predict_proba(X)[:, 1]
    online = np.array([fast.probability(r) for r in rows])
    np.testing.assert_allclose(online, batch, rtol=0, atol=1e-6)
    contributions = model.contributions(X.head(40)).drop(columns="bias").to_numpy()
    mine = np.array([fast.contributions(fast.encode(r)) for r in rows[:40]])
    np.testing.assert_allclose(mine, contributions, atol=1e-5)
    expected = [[r.sentence for r in row] for row in model.explain(X.head(40), top=2)]
    assert [fast.reasons(r, top=2) for r in rows[:40]] == expected


def test_fast_churn_reads_unseen_categories_and_missing_keys_as_missing() -> None:
    X, y = churn_table()
    model = ChurnModel(max_rounds=30, cv_folds=2).fit(X, y)
    fast = FastChurn(model)
    expected = model.predict_proba(X.head(1).assign(region="atlantis"))[0, 1]
    first = {str(k): v for k, v in X.iloc[0].to_dict().items()}
    assert fast.probability({**first, "region": "atlantis"}) == pytest.approx(expected, abs=1e-6)
    assert 0.0 < fast.probability({}) < 1.0


# --- the online store fast path ------------------------------------------------------------------


def test_value_decoding_equals_feasts_converter() -> None:
    from feast.protos.feast.types.Value_pb2 import Int64List, Value
    from feast.type_map import feast_value_type_to_python_type

    from serving.online import decode_value

    values = [
        Value(),
        Value(double_val=5357.61),
        Value(double_val=-0.0),
        Value(double_val=1e300),
        Value(float_val=0.1),
        Value(int64_val=0),
        Value(int64_val=-1),
        Value(int64_val=2**62 + 3),
        Value(int32_val=-7),
        Value(int32_val=300),
        Value(bool_val=True),
        Value(bool_val=False),
        Value(string_val=""),
        Value(string_val="35-44"),
        Value(string_val="caf\u00e9 " * 40),
        Value(int64_list_val=Int64List(val=[1, 2])),
        Value(unix_timestamp_val=1_793_491_200),
    ]
    for value in values:
        blob = value.SerializeToString()
        expected = feast_value_type_to_python_type(Value.FromString(blob))
        decoded = decode_value(blob)
        assert decoded == expected and type(decoded) is type(expected), value
    assert decode_value(None) is None


# --- authentication ------------------------------------------------------------------------------


def test_api_key_check() -> None:
    assert api_key_ok(None, None) and api_key_ok("", "anything")
    assert api_key_ok("s3cret", "s3cret")
    assert not api_key_ok("s3cret", None)
    assert not api_key_ok("s3cret", "S3CRET")
    assert not api_key_ok("s3cret", "s3cret ")


def call(middleware: ApiKeyMiddleware, path: str, headers: list[tuple[bytes, bytes]]) -> tuple:
    sent: list[dict[str, Any]] = []
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    middleware.app = app
    scope = {"type": "http", "path": path, "headers": headers}
    asyncio.run(middleware(scope, receive, send))
    status = sent[0]["status"] if sent else 200
    body = b"".join(m.get("body", b"") for m in sent)
    return status, body, reached


def test_middleware_rejects_missing_or_wrong_keys_on_protected_paths_only() -> None:
    rejected: list[str] = []
    middleware = ApiKeyMiddleware(
        None,  # type: ignore[arg-type]
        api_key="s3cret",
        protected=["/next_best_action"],
        on_reject=rejected.append,
    )
    status, body, reached = call(middleware, "/next_best_action", [])
    assert status == 401 and not reached and b"X-API-Key" in body and b"s3cret" not in body
    status, body, _ = call(middleware, "/next_best_action", [(b"x-api-key", b"guess-123")])
    assert status == 401 and b"guess-123" not in body
    assert call(middleware, "/next_best_action", [(b"X-Api-Key", b"s3cret")])[2] == [
        "/next_best_action"
    ]
    assert call(middleware, "/readyz", [])[2] == ["/readyz"]
    assert rejected == ["/next_best_action", "/next_best_action"]
    assert "s3cret" not in repr(middleware)


# --- settings and commands -----------------------------------------------------------------------


def test_serving_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYAL_SERVING__MODELS", "churn")
    monkeypatch.setenv("LOYAL_SERVING__API_KEY", "key-7f3a")
    options = load_settings().serving
    assert options.models == ("churn",) and options.auth_enabled
    assert "key-7f3a" not in repr(options)


def test_example_curls_call_every_endpoint() -> None:
    from pipelines.commands.serve import example_curls

    lines = example_curls("http://127.0.0.1:3000", "C0000042", "X-API-Key")
    paths = {line.split()[4].removeprefix("http://127.0.0.1:3000") for line in lines}
    assert paths == {"/next_best_action", "/recommend", "/churn_score", "/segment", "/feedback"}
    assert all('"X-API-Key: $LOYAL_SERVING__API_KEY"' in line for line in lines)
    body = json.loads(lines[0].split(" -d ")[1].strip("'"))
    assert body == {"customer_id": "C0000042", "channel": "atm"}
    retail = example_curls("http://127.0.0.1:3000", "17850", catalog=load_catalog("retail"))
    bodies = [json.loads(line.split(" -d ")[1].strip("'")) for line in retail]
    assert [b.get("channel") for b in bodies if "channel" in b] == ["web", "call_center", "web"]
    assert bodies[-1]["action_id"] == "cross_sell_recommended"


def test_build_spec_pins_models_by_alias_and_packages(tmp_path: Path) -> None:
    from serving.bento import BENTOFILE, build_spec

    spec = build_spec({"churn": "loyal-churn:v3-abcdef12"}, BENTOFILE)
    assert spec["models"] == [{"tag": "loyal-churn:v3-abcdef12", "alias": "churn"}]
    assert all("==" in p for p in spec["python"]["packages"])
    assert spec["python"]["lock_packages"] is False
    assert not any(":latest" in m["tag"] for m in spec["models"])


# --- issue 16: trust boundaries ------------------------------------------------------------------


def lead_customer() -> dict[str, Any]:
    """A lead-tier customer at high churn risk: only the cheap check-in fits on call_center."""
    return customer(tier="lead", clv=150.0, idle_cash=0.0, complaints_90d=0)


@pytest.mark.parametrize(
    "context",
    [
        {"tier": "platinum", "clv": 100000},
        {"clv": 100000},
        {"churn_probability": 0.9},
        {"segment_name": "affluent savers"},
        {"consent_marketing": True},
        {"holds_mortgage": False},
        {"shoe_size": 44},
    ],
)
def test_context_can_never_set_scores_tier_clv_segment_or_consent(
    tmp_path: Path, recommender: PopularityRecommender, context: dict[str, Any]
) -> None:
    """Issue 16, point 1: the attack `"context": {"tier": "platinum", "clv": 100000}`."""
    reader = FakeReader({"C1": lead_customer()})
    runtime = make_runtime(tmp_path, reader, recommender, FakeChurn(0.72))
    plain = runtime.next_best_action(NextBestActionRequest(customer_id="C1", channel="call_center"))
    assert plain.tier == "lead"
    assert all(a.cost <= 25 for a in plain.actions)
    with pytest.raises(RequestError) as error:
        runtime.next_best_action(
            NextBestActionRequest(customer_id="C1", channel="call_center", context=context)
        )
    assert error.value.field == f"context.{next(iter(context))}"


@pytest.mark.parametrize(
    ("value", "problem"),
    [(-5.0, "at least 0"), ("5000", "a number"), (True, "a number"), (math.inf, "finite")],
)
def test_context_values_are_checked_against_the_catalog(
    tmp_path: Path, recommender: PopularityRecommender, value: Any, problem: str
) -> None:
    runtime = make_runtime(tmp_path, FakeReader({"C1": customer()}), recommender)
    with pytest.raises(RequestError) as error:
        runtime.next_best_action(
            NextBestActionRequest(customer_id="C1", channel="atm", context={"idle_cash": value})
        )
    assert error.value.field == "context.idle_cash" and problem in error.value.message


def test_every_answer_states_the_context_it_used(
    tmp_path: Path, recommender: PopularityRecommender
) -> None:
    runtime = make_runtime(tmp_path, FakeReader({"C1": customer()}), recommender)
    context = {"idle_cash": 3000.0, "balance_checking": 4000.0}
    known = runtime.next_best_action(
        NextBestActionRequest(customer_id="C1", channel="atm", context=context)
    )
    assert known.context_used == ["balance_checking", "idle_cash"] and not known.context_ignored
    assert (
        runtime.next_best_action(
            NextBestActionRequest(customer_id="C1", channel="atm")
        ).context_used
        == []
    )
    unknown = runtime.next_best_action(
        NextBestActionRequest(customer_id="NEW-1", channel="atm", context=context)
    )
    assert unknown.context_used == [] and unknown.context_ignored == [
        "balance_checking",
        "idle_cash",
    ]


@pytest.mark.parametrize("channel", ["web", "atm", "branch", "mobile"])
def test_refusals_hold_when_the_store_is_down_or_the_id_is_unknown(
    tmp_path: Path, recommender: PopularityRecommender, channel: str
) -> None:
    """Issue 16, point 2: no marketing offer without consent on record, in every mode."""
    reader = FakeReader({"C1": customer(consent_marketing=False)})
    runtime = make_runtime(tmp_path, reader, recommender, FakeChurn(0.05))
    catalog = runtime.catalog
    for customer_id in ("C1", "C1-typo", "NEW-9"):
        answer = runtime.next_best_action(
            NextBestActionRequest(customer_id=customer_id, channel=channel, k=5)
        )
        assert all(not catalog.offer(a.action_id).is_marketing for a in answer.actions)  # type: ignore[union-attr]
    reader.broken = True
    down = runtime.next_best_action(NextBestActionRequest(customer_id="C1", channel=channel, k=5))
    assert down.degraded and down.cold_start
    assert all(not catalog.offer(a.action_id).is_marketing for a in down.actions)  # type: ignore[union-attr]
    assert "hys_open" not in [a.action_id for a in down.actions]


def test_answers_show_no_paths_or_exception_texts(tmp_path: Path) -> None:
    reader = FakeReader({"C1": customer()})
    broken = LoadedModel("churn", None, None, None, "churn not loaded: [Errno 2] /srv/m/model.pkl")
    runtime = Runtime(
        load_catalog(),
        {"churn": broken},
        lambda: reader,
        FeedbackStore(tmp_path / "feedback.db"),
        ServingSettings(models=("churn",)),
        clock=lambda: NOW,
    )
    reader.broken = True
    texts = [
        runtime.next_best_action(NextBestActionRequest(customer_id="C1", channel="atm")),
        runtime.churn_score(ChurnScoreRequest(customer_ids=["C1"])),
        runtime.segment(SegmentRequest(customer_id="C1")),
        runtime.status(),
    ]
    for answer in texts:
        dumped = answer.model_dump_json()
        assert "/x/online.db" not in dumped and "/srv/m" not in dumped and "Errno" not in dumped
    assert runtime.status().feature_store == "feature store unavailable"


def feedback_request(**overrides: Any) -> FeedbackRequest:
    fields: dict[str, Any] = {
        "customer_id": "C1",
        "action_id": "hys_move_idle_cash",
        "channel": "atm",
        "outcome": "declined",
    }
    fields.update(overrides)
    return FeedbackRequest(**fields)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"ts": datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)}, "ts"),
        ({"ts": datetime(1, 1, 1, tzinfo=UTC)}, "ts"),
        ({"ts": NOW + timedelta(hours=1)}, "ts"),
        ({"ts": NOW - timedelta(days=400)}, "ts"),
        ({"channel": "call_center"}, "channel"),
        ({"customer_id": "C404"}, "customer_id"),
        ({"action_id": "buy_everything"}, "action_id"),
    ],
)
def test_feedback_that_could_suppress_a_customer_for_ever_is_refused(
    tmp_path: Path, overrides: dict[str, Any], field: str
) -> None:
    """Issue 16, point 4: far-future and year-1 ts, a channel the offer is never shown on."""
    runtime = make_runtime(tmp_path, FakeReader({"C1": customer()}), None)
    with pytest.raises(RequestError) as error:
        runtime.feedback(feedback_request(**overrides))
    assert error.value.field == field
    assert runtime.feedback_store.history("C1", datetime(1, 1, 2, tzinfo=UTC)) == []


def test_feedback_within_the_skew_is_recorded(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, FakeReader({"C1": customer()}), None)
    recorded = runtime.feedback(feedback_request(ts=NOW + timedelta(seconds=30)))
    assert recorded.recorded and recorded.ts == NOW + timedelta(seconds=30)


def test_a_retried_feedback_is_stored_once(tmp_path: Path) -> None:
    """Issue 16, point 4: a client retry after a timeout must not store the answer twice."""
    runtime = make_runtime(tmp_path, FakeReader({"C1": customer()}), None)
    first = runtime.feedback(feedback_request(idempotency_key="retry-1"))
    again = runtime.feedback(feedback_request(idempotency_key="retry-1"))
    assert first.recorded and not again.recorded and again.feedback_id == first.feedback_id
    assert len(runtime.feedback_store.history("C1", NOW - timedelta(days=1))) == 1
    with pytest.raises(RequestError) as error:
        runtime.feedback(feedback_request(idempotency_key="retry-1", outcome="accepted"))
    assert error.value.field == "idempotency_key"


def test_a_decision_id_keys_retries_and_bounds_ts(
    tmp_path: Path, recommender: PopularityRecommender
) -> None:
    runtime = make_runtime(tmp_path, FakeReader({"C1": customer()}), recommender)
    answer = runtime.next_best_action(NextBestActionRequest(customer_id="C1", channel="atm"))
    decision = answer.decision_id
    with pytest.raises(RequestError) as error:
        runtime.feedback(feedback_request(decision_id=decision, ts=NOW - timedelta(days=1)))
    assert error.value.field == "ts" and "before the decision" in error.value.message
    first = runtime.feedback(feedback_request(decision_id=decision))
    again = runtime.feedback(feedback_request(decision_id=decision))
    assert first.recorded and not again.recorded
    assert len(runtime.feedback_store.history("C1", NOW - timedelta(days=1))) == 1


def test_feedback_is_refused_when_the_customer_cannot_be_checked(tmp_path: Path) -> None:
    from serving.runtime import UnavailableError

    reader = FakeReader({"C1": customer()})
    runtime = make_runtime(tmp_path, reader, None)
    reader.broken = True
    with pytest.raises(UnavailableError):
        runtime.feedback(feedback_request())


# --- consent the business does not record --------------------------------------------------------


def _runtime_without_consent_records(
    tmp_path: Path, recommender: PopularityRecommender, assume_consent: bool
) -> tuple[Runtime, FakeReader]:
    # The feature store reads missing consent as False for everyone.
    reader = FakeReader({"C1": customer(consent_marketing=False)})
    runtime = Runtime(
        load_catalog(),
        {"churn": LoadedModel("churn", FakeChurn(0.05), "7", "test", None)},
        lambda: reader,
        FeedbackStore(tmp_path / "feedback.db"),
        ServingSettings(),
        clock=lambda: NOW,
        assume_consent=assume_consent,
    )
    return runtime, reader


@pytest.mark.parametrize("assume_consent", [False, True])
def test_unrecorded_consent_is_what_the_business_says_and_never_for_unknown_customers(
    tmp_path: Path, recommender: PopularityRecommender, assume_consent: bool
) -> None:
    runtime, _ = _runtime_without_consent_records(tmp_path, recommender, assume_consent)
    known = runtime.next_best_action(NextBestActionRequest(customer_id="C1", channel="atm"))
    marketing = [a.action_id for a in known.actions if a.action_id == "hys_move_idle_cash"]
    assert bool(marketing) is assume_consent
    unknown = runtime.next_best_action(NextBestActionRequest(customer_id="NOPE", channel="atm"))
    assert unknown.cold_start
    assert all(
        not runtime.catalog.offer(a.action_id).is_marketing  # type: ignore[union-attr]
        for a in unknown.actions
    )


def test_start_up_assumes_consent_only_when_none_is_recorded_and_the_setting_allows(
    tmp_path: Path,
) -> None:
    from loyal.settings import Settings
    from serving.runtime import _assumes_consent

    settings = Settings(home=tmp_path)
    contract = settings.paths.contract_dir
    contract.mkdir(parents=True)
    allow = ServingSettings(consent_when_unrecorded="allow")
    assert _assumes_consent(settings, allow) is False  # nothing loaded yet
    pd.DataFrame({"customer_id": ["a"], "consent_marketing": [None]}).to_parquet(
        contract / "customers.parquet"
    )
    assert _assumes_consent(settings, allow) is True
    assert _assumes_consent(settings, ServingSettings()) is False
    pd.DataFrame({"customer_id": ["a"], "consent_marketing": [False]}).to_parquet(
        contract / "customers.parquet"
    )
    assert _assumes_consent(settings, allow) is False  # recorded: the records rule


def test_a_customer_asked_about_again_gets_the_same_answer_from_one_ranking(
    tmp_path: Path, recommender: PopularityRecommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original = recommender.recommend

    def counted(user_id: str, k: int = 10) -> Any:
        calls.append(user_id)
        return original(user_id, k)

    monkeypatch.setattr(recommender, "recommend", counted)
    reader = FakeReader({"C1": customer(), "C2": customer(holds_savings=False)})
    runtime = make_runtime(tmp_path, reader, recommender, FakeChurn(0.05))
    fresh = make_runtime(tmp_path / "fresh", reader, recommender, FakeChurn(0.05))
    for cid, channel in [("C1", "web"), ("C2", "web"), ("C1", "email"), ("C1", "web")]:
        request = NextBestActionRequest(customer_id=cid, channel=channel, k=3)
        again = runtime.next_best_action(request).model_dump(exclude={"decision_id"})
        first = fresh.next_best_action(request).model_dump(exclude={"decision_id"})
        fresh._ranked.clear()
        assert again == first
    assert calls.count("C1") == 1 + 3 and calls.count("C2") == 1 + 1
