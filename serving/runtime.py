"""The serving runtime: champions, online features, the NBA policy and feedback, without BentoML.

`Runtime` answers every endpoint as a plain method taking and returning the pydantic schemas,
so it is tested without a server. Nothing here raises for a missing part: a feature store that
cannot be read, a champion that is missing or a feedback store that fails make the answer
`degraded` (with the reasons, and a metric), never an error. Business rules stay in
`models.nba`; this module only gathers the inputs and shapes the answers.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from decisions.log import DecisionLog, DecisionLogError
from decisions.record import DecisionRecorder, open_recorder
from features.tables_io import consent_recorded
from loyal.campaigns import ControlGroups, store_path
from loyal.errors import LoyalError
from loyal.settings import ServingSettings, Settings
from loyal.specs import serving_fallback
from models.nba import Action, ContactEvent, CustomerScores, Decision, decide
from models.offers import (
    Catalog,
)
from monitoring.sampler import NullSampler
from serving.catalogs import (
    channel_problem,
    cold_start_reason,
    features_without_data,
    load_home_catalog,
    read_product_names,
    report_missing_features,
)
from serving.champions import ChampionSource, LoadedModel, MlflowChampions, load_champions
from serving.feedback import FeedbackStore, FeedbackStoreError, IdempotencyConflictError
from serving.online import FeatureStoreError, OnlineReader, open_reader
from serving.schemas import (
    ActionOut,
    ChurnScore,
    ChurnScoreRequest,
    ChurnScoreResponse,
    FeedbackRequest,
    FeedbackResponse,
    NextBestActionRequest,
    NextBestActionResponse,
    ProductScore,
    RecommendRequest,
    RecommendResponse,
    RejectedOut,
    SegmentRequest,
    SegmentResponse,
    StatusResponse,
)

log = logging.getLogger(__name__)

Row = dict[str, Any]

SCORES_VIEW = "scores"
"""The feature view batch scoring writes back (tier, segment, CLV, P(alive), churn)."""
SCORE_COLUMNS: dict[str, tuple[str, ...]] = {
    "tier": ("tier",),
    "segment_id": ("segment_id",),
    "segment_name": ("segment_name", "segment"),
    "clv": ("clv",),
    "p_alive": ("p_alive",),
    "churn_probability": ("churn_probability",),
}
"""Score -> the column names batch scoring may give it in the scores view (first found wins)."""
REOPEN_SECONDS = 10.0
"""How often a feature store that could not be opened is tried again."""
PROBE_SECONDS = 1.0
"""How long a feature store probe result is reused (readiness and status calls)."""
RANKINGS_KEPT = 20_000
"""Cross-sell rankings a runtime keeps (about 1.5 kB each with 10 products), then restarts."""
CHURN_KEPT = 20_000
"""Live churn answers a runtime keeps, by feature row (about 1 kB each), then restarts."""
DECISIONS_KEPT = 5_000
"""Policy decisions a runtime keeps (about 15 kB each with the bank catalog), then restarts."""
STORE_DOWN = "feature store unavailable"
"""What callers are told when the online store cannot be read (the cause goes to the log)."""


OWN_PATHS = frozenset({"churn", "cross_sell"})
"""Models the runtime answers through paths of their own (live churn, recommendations)."""


class RequestError(LoyalError):
    """A well-formed request the runtime cannot accept; `field` names the culprit (a 400)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class UnavailableError(LoyalError):
    """A part the answer needs is down and nothing was done (the service answers 503)."""


@dataclass(frozen=True)
class Problem:
    """Why an answer is degraded: a short kind (a metric label) and a sentence."""

    kind: str
    message: str


class Recorder(Protocol):
    """Where the runtime reports degraded answers, cold starts and feedback (metrics)."""

    def degraded(self, endpoint: str, kinds: Sequence[str]) -> None:
        """One degraded answer and the kinds of its problems."""
        ...

    def cold_start(self, endpoint: str) -> None:
        """One answer for an unknown customer."""
        ...

    def feedback(self, outcome: str) -> None:
        """One recorded feedback."""
        ...


class NullRecorder:
    """Records nothing (tests, scripts)."""

    def degraded(self, endpoint: str, kinds: Sequence[str]) -> None:
        """Ignore."""

    def cold_start(self, endpoint: str) -> None:
        """Ignore."""

    def feedback(self, outcome: str) -> None:
        """Ignore."""


ReaderFactory = Callable[[], OnlineReader]


@dataclass
class _Customer:
    """What the runtime knows about one customer for one answer."""

    customer_id: str
    features: Row | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def known(self) -> bool:
        return self.features is not None

    @property
    def cold_start_reason(self) -> str | None:
        """Why the answer is a cold start: an unknown id or an unreadable store (None: known)."""
        if self.known:
            return None
        failed = any(p.kind == "feature_store" for p in self.problems)
        return cold_start_reason(self.customer_id, failed)


class ServedModels(dict[str, LoadedModel]):
    """The champions a worker serves; every change counts, so what the worker kept is dropped."""

    changes = 0

    def __setitem__(self, name: str, model: LoadedModel) -> None:
        super().__setitem__(name, model)
        self.changes += 1

    def __delitem__(self, name: str) -> None:
        super().__delitem__(name)
        self.changes += 1

    def pop(self, name: str, *default: Any) -> Any:
        self.changes += 1
        return super().pop(name, *default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self.changes += 1

    def clear(self) -> None:
        super().clear()
        self.changes += 1


class Runtime:
    """Everything an answer needs, loaded once; one method per endpoint.

    Args:
        catalog: the validated offer catalog.
        models: loaded champions by registered name (`serving.champions.load_champions`).
        reader_factory: opens the online feature reader (retried while it fails).
        feedback: the feedback store.
        options: serving settings (reasons, recommendations, readiness rule).
        recorder: metrics sink.
        clock: the current time (UTC).
        product_names: product id -> name, for generic cross-sell messages.
        absent_features: served features the loaded data has no source for (never acted on).
        catalog_name: which catalog this is, in words (shown by /status).
        assume_consent: the customers table records no consent at all and the business allows
            marketing to its known customers (`serving.consent_when_unrecorded: allow`).
    """

    def __init__(
        self,
        catalog: Catalog,
        models: Mapping[str, LoadedModel],
        reader_factory: ReaderFactory,
        feedback: FeedbackStore,
        options: ServingSettings | None = None,
        recorder: Recorder | None = None,
        clock: Callable[[], datetime] | None = None,
        product_names: Mapping[str, str] | None = None,
        catalog_name: str = "",
        absent_features: Iterable[str] = (),
        assume_consent: bool = False,
        control_groups: ControlGroups | None = None,
        decisions: DecisionRecorder | None = None,
    ) -> None:
        self.catalog = catalog
        self.control_groups = control_groups
        self.decisions = decisions or DecisionRecorder(
            DecisionLog(feedback.path.parent / "decisions.db")
        )
        self.assume_consent = assume_consent
        self.catalog_name = catalog_name
        self.product_names = dict(product_names or {})
        self.absent_features = frozenset(absent_features)
        self.unavailable_offers: dict[str, tuple[str, ...]] = {}
        self.models = ServedModels(models)
        self.options = options or ServingSettings()
        self.feedback_store = feedback
        self.recorder = recorder or NullRecorder()
        self.sampler: Any = NullSampler()
        """Keeps served churn answers for drift monitoring (`monitoring.sampler`), off-path."""
        self.clock = clock or (lambda: datetime.now(UTC))
        self._reader_factory = reader_factory
        self._reader: OnlineReader | None = None
        self._reader_error: str | None = None
        self._reader_tried_at = -1e9
        self._probed: tuple[float, str] | None = None
        self._history_days = history_days(catalog)
        self._ranked: dict[tuple[str, int], tuple[tuple[str, float], ...]] = {}
        self._churned: dict[tuple[Any, ...], tuple[float, tuple[str, ...]]] = {}
        self._decided: dict[tuple[Any, ...], Decision] = {}
        self._row_names: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._models_seen = self.models.changes
        self._open_reader()

    # ----------------------------------------------------------------------------- start-up
    @classmethod
    def start(
        cls,
        settings: Settings,
        options: ServingSettings | None = None,
        source: ChampionSource | None = None,
        recorder: Recorder | None = None,
    ) -> Runtime:
        """Load the catalog, the champions, the feature reader and the feedback store.

        Args:
            settings: the Loyal settings (MLflow, Feast, runtime folder).
            options: serving settings (default: the `serving` section of `settings`).
            source: where champions are found (default: the MLflow registry).
            recorder: metrics sink.
        """
        options = options or settings.serving
        source = source or MlflowChampions(
            settings.mlflow.tracking_uri, settings.paths.runtime_dir / "serving" / "models"
        )
        started = time.perf_counter()
        models = load_champions(source, options.models)
        catalog, catalog_name = load_home_catalog(settings, options)
        feedback = FeedbackStore(feedback_path(settings, options))
        runtime = cls(
            catalog,
            models,
            lambda: open_reader(settings, options.feature_service, options.feature_reader),
            feedback,
            options,
            recorder,
            product_names=read_product_names(settings),
            catalog_name=catalog_name,
            absent_features=features_without_data(settings),
            assume_consent=_assumes_consent(settings, options),
            control_groups=ControlGroups(store_path(settings.paths.runtime_dir)),
            decisions=open_recorder(settings),
        )
        log.info(
            "serving runtime ready in %.1f s: models %s, features %s",
            time.perf_counter() - started,
            runtime.model_versions,
            runtime._reader.name if runtime._reader else runtime._reader_error,
        )
        for fallback in runtime.fallbacks:
            log.info("fallback: %s", fallback)
        return runtime

    def _open_reader(self) -> OnlineReader | None:
        """The feature reader, opened now if it failed before (at most every REOPEN_SECONDS)."""
        if self._reader is not None:
            return self._reader
        now = time.monotonic()
        if now - self._reader_tried_at < REOPEN_SECONDS:
            return None
        self._reader_tried_at = now
        try:
            self._reader = self._reader_factory()
            self._reader_error = None
            served = set(self._reader.feature_names) - self.absent_features
            self.unavailable_offers = report_missing_features(self.catalog, served)
            self._decided.clear()  # decided with the offers then available
        except FeatureStoreError as exc:
            self._reader_error = str(exc)
            log.warning("feature store unavailable: %s", exc)
        return self._reader

    def _forget_if_models_changed(self) -> None:
        """Drop what this worker kept (rankings, churn answers, decisions): a champion changed."""
        if self.models.changes != self._models_seen:
            self._ranked.clear()
            self._churned.clear()
            self._decided.clear()
            self._models_seen = self.models.changes

    # ------------------------------------------------------------------------------ status
    @property
    def model_versions(self) -> dict[str, str | None]:
        """Registered version of each configured champion (None: missing); a model with a
        fallback of its own (`serving_fallback`) is named only while its champion is loaded."""
        return {name: loaded.version for name, loaded in self._served_models().items()}

    def _served_models(self) -> dict[str, LoadedModel]:
        """The configured models answers use: all but those falling back (`_falls_back`)."""
        return {name: loaded for name, loaded in self.models.items() if not self._falls_back(name)}

    def _falls_back(self, name: str) -> bool:
        """The model's champion is missing and answers have a complete fallback without it."""
        loaded = self.models.get(name)
        missing = loaded is None or loaded.obj is None
        return missing and serving_fallback(name) is not None

    @property
    def fallbacks(self) -> list[str]:
        """Why configured models with a fallback of their own are not used now."""
        return [
            f"{name}: {serving_fallback(name)}" for name in self.models if self._falls_back(name)
        ]

    def _model(self, name: str) -> Any | None:
        loaded = self.models.get(name)
        return None if loaded is None else loaded.obj

    def _model_problems(self, *names: str) -> list[Problem]:
        problems = []
        for name in names:
            loaded = self.models.get(name)
            if self._falls_back(name):
                continue
            if loaded is None or loaded.obj is None:
                # The loader's own words (paths, exception texts) stay in the service log.
                problems.append(Problem(f"model:{name}", f"{name} model unavailable"))
        return problems

    def feature_store_status(self) -> str:
        """'ok', or why the online store cannot be read now (probed at most once a second)."""
        now = time.monotonic()
        if self._probed is not None and now - self._probed[0] < PROBE_SECONDS:
            return self._probed[1]
        reader = self._open_reader()
        if reader is None:
            state = self._reader_error or "feature store not opened"
        else:
            try:
                reader.probe()
                state = "ok"
            except FeatureStoreError as exc:
                state = str(exc)
        self._probed = (now, state)
        return state

    def ready(self) -> bool:
        """Readiness: the feature store answers and (unless relaxed) every champion is loaded."""
        if self.feature_store_status() != "ok":
            return False
        return not self.options.require_models or all(
            loaded.obj is not None or self._falls_back(name) for name, loaded in self.models.items()
        )

    def status(self) -> StatusResponse:
        """What is loaded and what is missing."""
        store = self.feature_store_status()
        problems = self._model_problems(*self.models)
        if store != "ok":
            store = STORE_DOWN  # the cause (paths, exception texts) is in the service log
            problems.append(Problem("feature_store", store))
        reader = self._reader
        if reader is not None and SCORES_VIEW not in reader.views:
            problems.append(_no_scores_view())
        return StatusResponse(
            ready=self.ready(),
            model_versions=self.model_versions,
            model_sources={name: loaded.source for name, loaded in self._served_models().items()},
            feature_service=self.options.feature_service,
            feature_reader=reader.name if reader is not None else "none",
            feature_store=store,
            offers=len(self.catalog.offers),
            catalog=self.catalog_name,
            channels=list(self.catalog.channels),
            auth=self.options.auth_enabled,
            degraded_reasons=[p.message for p in problems],
            fallbacks=self.fallbacks,
        )

    # ---------------------------------------------------------------------------- features
    def _customers(self, customer_ids: Sequence[str]) -> list[_Customer]:
        """Online features of each customer; a store failure leaves them unknown, flagged."""
        reader = self._open_reader()
        if reader is None:
            problem = Problem("feature_store", STORE_DOWN)
            return [_Customer(cid, None, [problem]) for cid in customer_ids]
        try:
            rows = reader.read(customer_ids)
        except FeatureStoreError as exc:
            log.warning("feature store read failed: %s", exc)
            problem = Problem("feature_store", STORE_DOWN)
            return [_Customer(cid, None, [problem]) for cid in customer_ids]
        customers = [_Customer(cid, row) for cid, row in zip(customer_ids, rows, strict=True)]
        if SCORES_VIEW not in reader.views:
            for customer in customers:
                if customer.known:
                    customer.problems.append(_no_scores_view())
        return customers

    def _churn(
        self, customer: _Customer, top: int
    ) -> tuple[float | None, list[str], Literal["model", "batch"] | None]:
        """Churn probability, reasons and their source ('model' or 'batch') of a known customer."""
        if customer.features is None:
            return None, [], None
        model = self._model("churn")
        if model is not None:
            probability, reasons = self._live_churn(model, customer.features, top)
            self.sampler.offer(customer.features, probability)
            return probability, list(reasons), "model"
        customer.problems.extend(self._model_problems("churn"))
        batch = _score(customer.features, "churn_probability")
        return (None, [], None) if batch is None else (float(batch), [], "batch")

    def _row_key(self, row: Row) -> tuple[Any, ...]:
        """A row as a key: its names (one shared tuple per distinct list of names), its values."""
        names = tuple(row)
        shared = self._row_names.get(names)
        if shared is None:
            if len(self._row_names) >= 1_000:
                self._row_names.clear()
            shared = self._row_names[names] = names
        return (shared, *row.values())

    def _live_churn(self, model: Any, features: Row, top: int) -> tuple[float, tuple[str, ...]]:
        """The churn champion's probability and top reasons for one feature row, computed once.

        They depend only on the row (stored features, with any request context applied) and
        the loaded champion, so a row seen before is answered from `_churned`; a changed store
        or context makes a new row (bounded, then restarted).
        """
        try:
            key: tuple[Any, ...] | None = (top, *self._row_key(features))
            known = self._churned.get(key)  # type: ignore[arg-type]
        except TypeError:  # an unhashable value (a list feature): not kept
            key, known = None, None
        if known is not None:
            return known
        probability, reasons = model.score(features, top)
        answer = (probability, tuple(reasons))
        if key is not None:
            if len(self._churned) >= CHURN_KEPT:
                self._churned.clear()
            self._churned[key] = answer
        return answer

    def _scores(self, customer: _Customer, reasons_needed: bool = True) -> CustomerScores:
        """The customer's scores: live churn (champion) plus the batch scores view.

        Without `reasons_needed` the churn reasons are left out (nothing will show them).
        """
        top = self.options.reasons if reasons_needed else 0
        probability, reasons, _ = self._churn(customer, top)
        row = customer.features or {}
        clv = _score(row, "clv")
        return CustomerScores(
            churn_probability=probability,
            churn_reasons=tuple(reasons),
            tier=_score(row, "tier"),
            segment_id=_score(row, "segment_id"),
            segment_name=_score(row, "segment_name"),
            clv=None if clv is None else float(clv),
            extra=self._extra_scores(customer),
        )

    def _extra_scores(self, customer: _Customer) -> dict[str, Any]:
        """Scores of every loaded model without a path of its own here (churn and cross-sell).

        Such a champion's object answers `scores(customer_id, features)` with its spec's score
        fields; an unknown customer or a model that is not loaded gives none (and a degraded
        reason).
        """
        extra: dict[str, Any] = {}
        for name, loaded in self.models.items():
            if name in OWN_PATHS:
                continue
            if loaded.obj is None:
                customer.problems.extend(self._model_problems(name))
            elif customer.features is not None:
                extra.update(loaded.obj.scores(customer.customer_id, customer.features))
        return extra

    def _recommendations(self, customer: _Customer, k: int) -> list[tuple[str, float]]:
        """The cross-sell ranking, computed once per customer while this runtime lives.

        It depends only on the customer id and the loaded champion (never on the request),
        so a customer asked about again is answered from `_ranked` (bounded, then restarted).
        """
        model = self._model("cross_sell")
        if model is None:
            customer.problems.extend(self._model_problems("cross_sell"))
            return []
        key = (customer.customer_id, k)
        ranked = self._ranked.get(key)
        if ranked is None:
            if len(self._ranked) >= RANKINGS_KEPT:
                self._ranked.clear()
            ranked = self._ranked[key] = tuple(model.recommend(customer.customer_id, k))
        return list(ranked)

    def _history(self, customer: _Customer, now: datetime) -> list[ContactEvent]:
        try:
            return self.feedback_store.history(
                customer.customer_id, now - timedelta(days=self._history_days)
            )
        except FeedbackStoreError as exc:
            log.warning("contact history unavailable: %s", exc)
            customer.problems.append(Problem("feedback_store", "contact history unavailable"))
            return []

    def _report(self, endpoint: str, problems: Iterable[Problem], cold: bool) -> list[str]:
        """Record the answer's metrics; return its degraded reasons (unique, in order)."""
        unique = list(dict.fromkeys(problems))
        if unique:
            self.recorder.degraded(endpoint, sorted({p.kind for p in unique}))
        if cold:
            self.recorder.cold_start(endpoint)
        return [p.message for p in unique]

    # --------------------------------------------------------------------------- endpoints
    def next_best_action(self, request: NextBestActionRequest) -> NextBestActionResponse:
        """The best actions for one customer on one channel.

        Raises:
            RequestError: the channel is not one of the catalog's, or a bad `context` name.
        """
        self._forget_if_models_changed()
        problem = channel_problem(self.catalog, request.channel)
        if problem is not None:
            raise RequestError("channel", problem)
        now = self.clock()
        applied = self._checked_context(request.context)
        customer = self._customers([request.customer_id])[0]
        if customer.features is not None:
            customer.features = {**customer.features, **applied, **self._consent_override()}
        scores = self._scores(customer, self.catalog.reads_churn_reasons(request.channel))
        decision = self._decide(customer, scores, request, now)
        decision_id = new_decision_id(decision.decided_at)
        decision, unlogged = self.decisions.settle(
            decision,
            decision_id,
            request.customer_id,
            customer.features,
            self.model_versions,
            request.k,
        )
        if unlogged:
            customer.problems.append(Problem("decision_log", unlogged))
        reasons = self._report("next_best_action", customer.problems, decision.cold_start)
        return _nba_answer(
            request,
            customer,
            scores,
            decision,
            self.model_versions,
            reasons,
            sorted(applied),
            decision_id,
        )

    def _decide(
        self,
        customer: _Customer,
        scores: CustomerScores,
        request: NextBestActionRequest,
        now: datetime,
    ) -> Decision:
        """The policy's decision, kept while no contact history bears on it.

        With no contact in the history window the decision reads only the customer's row
        (stored features with the request's context), the scores and ranking that row and id
        give, the channel, k and the campaign holdout: the clock matters only through contacts
        and campaigns. Such a greedy decision is kept by (id, channel, k, holdout, row) and
        given again with this request's time (exploration and the decision log act on it after,
        on every request: `decisions.record`); any contact history, a new row or a reopened
        store decides afresh (bounded, then restarted).
        """
        history = self._history(customer, now)
        recommendations = self._recommendations(customer, self.options.recommendations)
        holdout = self._holdout(customer, now)
        key: tuple[Any, ...] | None = None
        if not history:
            try:
                row = self._row_key(customer.features or {})
                key = (customer.customer_id, request.channel, request.k, holdout, *row)
                kept = self._decided.get(key)
            except TypeError:  # an unhashable value (a list feature): not kept
                key, kept = None, None
            if kept is not None:
                return kept.model_copy(update={"decided_at": _utc(now)})
        decision = decide(
            customer.features,
            scores,
            request.channel,
            self.catalog,
            history,
            now,
            k=request.k,
            recommendations=recommendations,
            product_names=self.product_names,
            unavailable=self.unavailable_offers,
            holdout=holdout,
            acceptance=self._acceptance(customer, request.channel),
        )
        if key is not None:
            if len(self._decided) >= DECISIONS_KEPT:
                self._decided.clear()
            self._decided[key] = decision
        return decision

    def _holdout(self, customer: _Customer, now: datetime) -> str | None:
        """Why a running campaign holds this customer out of marketing (None: it does not)."""
        if self.control_groups is None:
            return None
        reason = self.control_groups.holdout(customer.customer_id, now)
        if self.control_groups.error is not None:
            customer.problems.append(Problem("campaigns", "campaigns store unreadable"))
        return reason

    def _acceptance(self, customer: _Customer, channel: str) -> dict[str, tuple[float, str]]:
        """Learned P(accept) per offer with its evidence (empty: no acceptance champion)."""
        model = self._model("acceptance")
        if model is None or customer.features is None:
            return {}
        priors = {offer.id: offer.p_accept for offer in self.catalog.offers}
        learned: dict[str, tuple[float, str]] = model.acceptance(
            customer.customer_id, customer.features, channel, priors
        )
        return learned

    def _consent_override(self) -> Row:
        """Consent for a known customer when the business allows it without a record."""
        return {"consent_marketing": True} if self.assume_consent else {}

    def _checked_context(self, context: Mapping[str, Any] | None) -> Row:
        """The request's context, each name one the catalog declares and each value in range.

        Only the catalog's `context` fields (fresh, channel-observed facts) may override the
        feature store, for this answer only; scores, tier, CLV, segment, holdings and consent
        never can.

        Raises:
            RequestError: a name the catalog does not declare, or a value out of its rule.
        """
        declared = self.catalog.context
        for name, value in (context or {}).items():
            rule = declared.get(name)
            if rule is None:
                allowed = ", ".join(sorted(declared)) or "none"
                raise RequestError(
                    f"context.{name}", f"not a context field this service accepts ({allowed})"
                )
            problem = rule.check(value)
            if problem is not None:
                raise RequestError(f"context.{name}", problem)
        return dict(context or {})

    def recommend(self, request: RecommendRequest) -> RecommendResponse:
        """Cross-sell products the customer does not hold yet."""
        self._forget_if_models_changed()
        model = self._model("cross_sell")
        problems = self._model_problems("cross_sell")
        products: list[ProductScore] = []
        cold = False
        if model is not None:
            ranking = model.recommend(request.customer_id, request.k)
            cold = bool(ranking.cold_start)
            products = [
                ProductScore(rank=i, product_id=p, score=s) for i, (p, s) in enumerate(ranking, 1)
            ]
        reasons = self._report("recommend", problems, cold)
        return RecommendResponse(
            customer_id=request.customer_id,
            products=products,
            cold_start=cold,
            cold_start_reason=(
                f"unknown customer: the cross-sell model has no history for id "
                f"{request.customer_id!r} (ids are matched exactly); popular products"
                if cold
                else None
            ),
            model_versions={"cross_sell": self.model_versions.get("cross_sell")},
            degraded=bool(reasons),
            degraded_reasons=reasons,
        )

    def churn_score(self, request: ChurnScoreRequest) -> ChurnScoreResponse:
        """Churn probability and top reasons of each customer, in the order asked."""
        self._forget_if_models_changed()
        customers = self._customers(request.customer_ids)
        scores: list[ChurnScore] = []
        problems: list[Problem] = []
        for customer in customers:
            probability, reasons, source = self._churn(customer, self.options.reasons)
            problems.extend(p for p in customer.problems if p.kind != "scores")
            scores.append(
                ChurnScore(
                    customer_id=customer.customer_id,
                    churn_probability=probability,
                    reasons=reasons,
                    cold_start=not customer.known,
                    cold_start_reason=customer.cold_start_reason,
                    source=source,
                )
            )
        cold = any(not c.known for c in customers)
        reasons = self._report("churn_score", problems, cold)
        return ChurnScoreResponse(
            scores=scores,
            model_versions={"churn": self.model_versions.get("churn")},
            degraded=bool(reasons),
            degraded_reasons=reasons,
        )

    def segment(self, request: SegmentRequest) -> SegmentResponse:
        """Tier, need segment and CLV from the batch scores view."""
        customer = self._customers([request.customer_id])[0]
        row = customer.features or {}
        reasons = self._report("segment", customer.problems, not customer.known)
        p_alive = _score(row, "p_alive")
        clv = _score(row, "clv")
        return SegmentResponse(
            customer_id=request.customer_id,
            tier=_score(row, "tier"),
            segment_id=_score(row, "segment_id"),
            segment=_score(row, "segment_name"),
            clv=None if clv is None else float(clv),
            p_alive=None if p_alive is None else float(p_alive),
            cold_start=not customer.known,
            cold_start_reason=customer.cold_start_reason,
            model_versions={},
            degraded=bool(reasons),
            degraded_reasons=reasons,
        )

    def feedback(self, request: FeedbackRequest) -> FeedbackResponse:
        """Record how the customer answered an action (the contact policy reads it back).

        The action must be in the catalog and shown on the channel, the customer known to the
        feature store, and `ts` within the allowed skew and age and not before the decision.
        A repeated idempotency key (or decision_id + action_id) records nothing new.

        Raises:
            RequestError: a field the service cannot accept (400; 409 for a reused key), the
                action or the channel not in the offer catalog among them.
            UnavailableError: the feature store cannot tell whether the customer exists.
            FeedbackStoreError: the store cannot be written (the caller answers 503).
        """
        problem = channel_problem(self.catalog, request.channel)
        if problem is not None:
            raise RequestError("channel", problem)
        offer = self.catalog.offer(request.action_id)
        if offer is None:
            raise RequestError(
                "action_id", f"unknown action {request.action_id!r} (not in the offer catalog)"
            )
        if request.channel not in offer.channels:
            raise RequestError(
                "channel",
                f"{request.action_id} is not shown on {request.channel} "
                f"(only {', '.join(offer.channels)})",
            )
        now = self.clock()
        ts = _utc(request.ts or now)
        self._check_feedback_time(ts, now, request.decision_id)
        self._check_known(request.customer_id)
        file_with_decision = self._check_decision(request)
        key = request.idempotency_key
        if key is None and request.decision_id is not None:
            key = f"{request.decision_id}:{request.action_id}"
        try:
            stored = self.feedback_store.record(
                request.customer_id, request.action_id, request.channel, request.outcome, ts, key
            )
        except IdempotencyConflictError:
            field = "idempotency_key" if request.idempotency_key else "decision_id"
            raise RequestError(
                field, "already used for a different answer; nothing recorded"
            ) from None
        if stored.new:
            self.recorder.feedback(request.outcome)
        matched = self._answer_decision(request, ts) if file_with_decision else None
        return FeedbackResponse(
            decision_id=matched,
            recorded=stored.new,
            feedback_id=stored.feedback_id,
            customer_id=request.customer_id,
            action_id=request.action_id,
            channel=request.channel,
            outcome=request.outcome,
            ts=stored.ts,
        )

    def _answer_decision(self, request: FeedbackRequest, ts: datetime) -> str | None:
        """File the answer with its decision (the latest one that showed the action without an id).

        Raises:
            UnavailableError: the decision log cannot be written (the feedback itself is kept;
                a retry with the same key files it).
        """
        store = self.decisions.store
        if store is None:
            return request.decision_id
        try:
            return store.answer(
                request.customer_id, request.action_id, request.outcome, ts, request.decision_id
            )
        except DecisionLogError as exc:
            log.error("%s", exc)
            raise UnavailableError(
                "decision log unavailable: the answer is kept for the contact policy but not "
                "filed with its decision; retry with the same idempotency key"
            ) from None

    def _check_feedback_time(self, ts: datetime, now: datetime, decision: str | None) -> None:
        """`ts` not in the future beyond the skew, not too old, not before its decision."""
        skew = timedelta(seconds=self.options.feedback_max_skew_seconds)
        oldest = now - timedelta(days=self.options.feedback_max_age_days)
        if ts > now + skew:
            raise RequestError(
                "ts", f"{ts:%Y-%m-%dT%H:%M:%SZ} is in the future (server time {now:%H:%M:%SZ})"
            )
        if ts < oldest:
            raise RequestError(
                "ts",
                f"{ts:%Y-%m-%dT%H:%M:%SZ} is older than "
                f"{self.options.feedback_max_age_days:g} days",
            )
        if decision is None:
            return
        decided = decided_at(decision)
        if decided is None or decided > now + skew:
            raise RequestError("decision_id", "not a decision of this service (in the future)")
        if ts < decided - skew:
            raise RequestError(
                "ts",
                f"{ts:%Y-%m-%dT%H:%M:%SZ} is before the decision ({decided:%Y-%m-%dT%H:%M:%SZ})",
            )

    def _check_decision(self, request: FeedbackRequest) -> bool:
        """Whether to file the answer with its decision; refuses one that would be misfiled.

        A logged decision named by `decision_id` must be this customer's, on this channel, and
        have shown this action: otherwise the answer would teach the acceptance model about
        another customer's offer. A `decision_id` the log does not hold (its write failed while
        the service answered, or the caller's copy is wrong) is not filed, but the answer is
        kept for the contact policy, as an answer without `decision_id` with no match is.
        When the log cannot be read, filing is tried and fails with 503, so the retry is checked.

        Raises:
            RequestError: the decision is another customer's, on another channel, or did not
                show the action (nothing recorded).
        """
        store = self.decisions.store
        if request.decision_id is None or store is None:
            return True
        try:
            shown = store.shown(request.decision_id)
        except DecisionLogError as exc:
            log.error("%s", exc)
            return True
        decision = request.decision_id
        if shown is None:
            log.warning("feedback names %s, which is not in the decision log: not filed", decision)
            return False
        if shown.customer_id != request.customer_id:
            raise RequestError(
                "decision_id", f"{decision} was made for another customer; nothing recorded"
            )
        if shown.channel != request.channel:
            raise RequestError(
                "channel",
                f"{decision} was made on {shown.channel}, not {request.channel}; nothing recorded",
            )
        if request.action_id not in shown.actions:
            showed = ", ".join(shown.actions) or "no action"
            raise RequestError(
                "action_id",
                f"{request.action_id} was not shown in {decision} (it showed {showed}); "
                "nothing recorded",
            )
        return True

    def _check_known(self, customer_id: str) -> None:
        """The customer must be in the feature store (feedback on strangers is refused)."""
        customer = self._customers([customer_id])[0]
        if any(p.kind == "feature_store" for p in customer.problems):
            raise UnavailableError(f"{STORE_DOWN}: cannot check customer_id; nothing recorded")
        if not customer.known:
            raise RequestError("customer_id", f"unknown customer {customer_id!r}")


# --- helpers -------------------------------------------------------------------------------------


def feedback_path(settings: Settings, options: ServingSettings) -> Path:
    """Where the feedback store lives (default: `<runtime_dir>/serving/feedback.db`)."""
    if options.feedback_db is not None:
        return settings.resolve(options.feedback_db)
    return settings.paths.runtime_dir / "serving" / "feedback.db"


def new_decision_id(decided: datetime) -> str:
    """A decision id carrying its time: `d-<epoch milliseconds>-<12 random hex digits>`."""
    return f"d-{int(decided.timestamp() * 1000)}-{secrets.token_hex(6)}"


def decided_at(decision_id: str) -> datetime | None:
    """The time a decision id was issued (None: not an id this service makes)."""
    parts = decision_id.split("-")
    if len(parts) != 3 or parts[0] != "d" or not parts[1].isdigit():
        return None
    try:
        return datetime.fromtimestamp(int(parts[1]) / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def history_days(catalog: Catalog) -> float:
    """How far back the contact policy looks: the longest cooldown, suppression or period."""
    spans = [catalog.contact.period_days]
    for offer in catalog.offers:
        policy = offer.contact
        spans.extend([policy.cooldown_days, policy.decline_days])
        if policy.max_per_period is not None:
            spans.append(policy.period_days)
    return max(spans)


def _score(row: Mapping[str, Any], name: str) -> Any:
    """A batch score from the scores view, under any of its accepted column names.

    Missing reads as None: null, NaN, an empty name, or a negative segment id (the view's
    "no segment model" markers).
    """
    for column in SCORE_COLUMNS[name]:
        value = row.get(column)
        if value is None or value != value or value == "":
            continue
        if name == "segment_id" and isinstance(value, int | float) and value < 0:
            continue
        return value
    return None


def _no_scores_view() -> Problem:
    return Problem(
        "scores",
        f"no '{SCORES_VIEW}' view in the feature store yet: tier, segment and CLV unknown",
    )


def _assumes_consent(settings: Settings, options: ServingSettings) -> bool:
    """Whether known customers count as consenting: no consent recorded, and the business allows.

    Said once at start-up either way, so an operator sees how consent is read.
    """
    if consent_recorded(settings) is not False:
        return False
    if options.consent_when_unrecorded == "allow":
        log.warning(
            "the customers table records no marketing consent; serving.consent_when_unrecorded "
            "is allow, so known customers are treated as consenting (unknown ones never are)"
        )
        return True
    log.warning(
        "the customers table records no marketing consent: known customers get only actions "
        "that need none (set serving.consent_when_unrecorded: allow if the business may market "
        "to them)"
    )
    return False


_ACTION_OUT_FIELDS = set(ActionOut.model_fields) - {"p_accept_evidence"}
"""The answer's action fields that are the chosen `Action`'s own, under the same names."""


def _action_out(action: Action) -> ActionOut:
    """A chosen action as the answer shows it: its own fields, and where p_accept comes from."""
    return ActionOut(
        **action.model_dump(include=_ACTION_OUT_FIELDS),
        p_accept_evidence=action.evidence or "catalog prior",
    )


def _nba_answer(
    request: NextBestActionRequest,
    customer: _Customer,
    scores: CustomerScores,
    decision: Decision,
    versions: dict[str, str | None],
    reasons: list[str],
    context: list[str],
    decision_id: str,
) -> NextBestActionResponse:
    """The answer; `context` names the request's context fields (applied if the customer is
    known, else listed as ignored)."""
    actions = [_action_out(a) for a in decision.actions]
    filtered = None
    if request.explain:
        filtered = [
            RejectedOut(
                action_id=r.action_id, product_id=r.product_id, stage=r.stage, reason=r.reason
            )
            for r in decision.filtered
        ]
    return NextBestActionResponse(
        customer_id=request.customer_id,
        channel=request.channel,
        actions=actions,
        churn_probability=scores.churn_probability,
        tier=scores.tier,
        segment=scores.segment_name,
        clv=scores.clv,
        model_versions=versions,
        degraded=bool(reasons),
        degraded_reasons=reasons,
        cold_start=decision.cold_start,
        cold_start_reason=(
            (customer.cold_start_reason or "unknown customer: no feature has a value")
            if decision.cold_start
            else None
        ),
        decided_at=decision.decided_at,
        decision_id=decision_id,
        context_used=context if customer.known else [],
        context_ignored=[] if customer.known else context,
        filtered=filtered,
    )
