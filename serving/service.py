"""The BentoML 1.4 service: thin endpoints over `serving.runtime.Runtime`.

Run it with `loyal serve` (or `bentoml serve serving.service:Loyal` from the project home);
build it with `loyal bento build`. Health: `/livez`, `/readyz` (503 until the feature store
answers and every champion is loaded), `/metrics` (Prometheus, with Loyal's counters of
degraded answers, cold starts, feedback and rejected keys). With `LOYAL_SERVING__API_KEY` set,
every API call needs the key in the `X-API-Key` header (401 otherwise).
"""

from __future__ import annotations

import gc
import logging
from functools import cache
from http import HTTPStatus
from typing import Any, get_type_hints

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from loyal.settings import ServingSettings, Settings, get_settings
from serving import schemas as api
from serving.auth import ApiKeyMiddleware
from serving.guard import QuietRejections, RequestGuard, Schemas, loyal_spec
from serving.wire import json_response

OPTIONS = get_settings().serving
"""Read once when BentoML imports the service: worker count and tracing shape the server."""


def service_config(options: ServingSettings) -> dict[str, Any]:
    """BentoML service options: workers, timeouts, and tracing off unless asked for."""
    config: dict[str, Any] = {
        "name": "loyal",
        "workers": options.workers,
        "traffic": {"timeout": 30},
        "logging": {"access": {"enabled": False}},
        "labels": {"project": "loyal", "api": "next-best-action"},
    }
    if not options.tracing:
        # OpenTelemetry's ASGI middleware costs ~0.5 ms a request even without an exporter.
        config["tracing"] = {"excluded_urls": ".*"}
    return config


@cache
def _counters() -> dict[str, Any]:
    """Loyal's Prometheus counters, made in the worker (after BentoML set multiprocess mode)."""
    from prometheus_client import Counter

    return {
        "degraded": Counter(
            "loyal_degraded_answers_total",
            "Answers flagged degraded, by endpoint and kind of problem.",
            ["endpoint", "kind"],
        ),
        "cold": Counter(
            "loyal_cold_start_answers_total",
            "Answers for customers the feature store does not know.",
            ["endpoint"],
        ),
        "feedback": Counter("loyal_feedback_total", "Feedback recorded, by outcome.", ["outcome"]),
        "rejected": Counter(
            "loyal_auth_rejections_total",
            "API calls rejected for a missing or wrong key.",
            ["path"],
        ),
    }


class PrometheusRecorder:
    """The runtime's metrics, as Prometheus counters."""

    def degraded(self, endpoint: str, kinds: Any) -> None:
        """Count a degraded answer once per kind of problem."""
        for kind in kinds:
            _counters()["degraded"].labels(endpoint=endpoint, kind=kind).inc()

    def cold_start(self, endpoint: str) -> None:
        """Count an answer for an unknown customer."""
        _counters()["cold"].labels(endpoint=endpoint).inc()

    def feedback(self, outcome: str) -> None:
        """Count a recorded feedback."""
        _counters()["feedback"].labels(outcome=outcome).inc()


def _request_sampler(settings: Settings) -> Any:
    """The served-request sampler: PSI gauges on `/metrics`, samples for `loyal monitor`."""
    from prometheus_client import Gauge

    from monitoring.sampler import RequestSampler
    from monitoring.service import champion_reference, monitoring_dir

    gauge = Gauge(
        "loyal_served_psi",
        "PSI (corrected for sample size) of the last served answers against the churn "
        "champion's training profile, by column (churn_probability and key features).",
        ["column"],
        multiprocess_mode="livemax",
    )
    return RequestSampler(
        monitoring_dir(settings),
        lambda: champion_reference(settings),
        lambda column, value: gauge.labels(column=column).set(value),
    ).start()


def _rejected(path: str) -> None:
    _counters()["rejected"].labels(path=path).inc()


def _invalid(model: type[Any], field: str, message: str, value: Any) -> ValidationError:
    """A 400 shaped like pydantic's own: the field in `loc`, the problem in `msg`."""
    error = InitErrorDetails(
        type=PydanticCustomError("invalid_value", message),
        loc=tuple(field.split(".")),
        input=value,
    )
    return ValidationError.from_exception_data(model.__name__, [error])


def _field_value(request: Any, field: str) -> Any:
    """The value of a request field named as `channel` or `context.<name>`."""
    head, _, rest = field.partition(".")
    value = getattr(request, head, None)
    return value.get(rest) if rest and isinstance(value, dict) else value


@bentoml.service(**service_config(OPTIONS))
class Loyal:
    """Next best action, cross-sell, churn and segments for one customer at a time."""

    def __init__(self) -> None:
        from serving.bento import BentoChampions
        from serving.champions import ChainedChampions, MlflowChampions
        from serving.process import die_with_parent
        from serving.runtime import Runtime

        die_with_parent()  # a killed server must not leave this worker serving
        settings = get_settings()
        source = ChainedChampions(
            [
                BentoChampions(),
                MlflowChampions(
                    settings.mlflow.tracking_uri,
                    settings.paths.runtime_dir / "serving" / "models",
                ),
            ]
        )
        # BentoML logs each rejected request with a traceback holding its values: one line instead.
        logging.getLogger("bentoml._internal.server.http_app").addFilter(QuietRejections())
        self.runtime = Runtime.start(settings, OPTIONS, source, PrometheusRecorder())
        self.runtime.sampler = _request_sampler(settings)
        # Everything loaded so far (mlflow, feast, pandas, the models) lives as long as the
        # worker: keep it out of the cyclic GC, whose full passes over it cost long pauses.
        gc.collect()
        gc.freeze()

    def __is_ready__(self) -> bool:
        """Ready when the feature store answers and the champions are loaded."""
        return self.runtime.ready()

    @bentoml.api(route="/next_best_action")
    async def next_best_action(
        self, request: api.NextBestActionRequest, /
    ) -> api.NextBestActionResponse:
        """The best actions for one customer on one channel, each with its message and reasons."""
        from serving.runtime import RequestError

        try:
            answer = self.runtime.next_best_action(request)
        except RequestError as exc:
            raise _invalid(api.NextBestActionRequest, exc.field, exc.message, None) from None
        # Encoded once (serving.wire): the same JSON as BentoML's own path, which dumps twice.
        return json_response(answer)  # type: ignore[return-value]

    @bentoml.api(route="/recommend")
    async def recommend(self, request: api.RecommendRequest, /) -> api.RecommendResponse:
        """Cross-sell products the customer does not hold yet (popular ones when unknown)."""
        return self.runtime.recommend(request)

    @bentoml.api(route="/churn_score")
    def churn_score(self, request: api.ChurnScoreRequest, /) -> api.ChurnScoreResponse:
        """Churn probability and top reasons for up to 1,000 customers."""
        return self.runtime.churn_score(request)

    @bentoml.api(route="/segment")
    async def segment(self, request: api.SegmentRequest, /) -> api.SegmentResponse:
        """Value tier, need segment and CLV (from the last batch scoring)."""
        return self.runtime.segment(request)

    @bentoml.api(route="/feedback")
    async def feedback(self, request: api.FeedbackRequest, /) -> api.FeedbackResponse:
        """Record accepted, declined or ignored; the contact policy reads it back."""
        from serving.feedback import FeedbackStoreError
        from serving.runtime import RequestError, UnavailableError

        try:
            return self.runtime.feedback(request)
        except RequestError as exc:
            raise _invalid(api.FeedbackRequest, exc.field, exc.message, None) from None
        except (FeedbackStoreError, UnavailableError) as exc:
            raise BentoMLException(
                f"feedback not recorded: {exc}", error_code=HTTPStatus.SERVICE_UNAVAILABLE
            ) from None

    @bentoml.api(route="/status")
    async def status(self) -> api.StatusResponse:
        """Loaded models, feature store state and degradation reasons (a trivial call)."""
        return self.runtime.status()


def _route_schemas() -> Schemas:
    """Route -> (request, answer) schemas, read from the API methods' own annotations, for the
    OpenAPI spec (BentoML drops their nullables)."""
    methods = Loyal.apis.values()  # type: ignore[attr-defined]  # @bentoml.service made a Service
    hints = {method.route: get_type_hints(method.func) for method in methods}
    return {route: (hint.get("request"), hint["return"]) for route, hint in hints.items()}


SCHEMAS = _route_schemas()
API_ROUTES = tuple(SCHEMAS)
"""The API's routes: the key guard and the request guard protect these."""


def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = Loyal.openapi_spec.asdict()  # type: ignore[attr-defined]
    return loyal_spec(spec, SCHEMAS, OPTIONS.auth_enabled)


Loyal.add_asgi_middleware(RequestGuard, routes=API_ROUTES, spec=_spec)  # type: ignore[attr-defined]
if OPTIONS.auth_enabled:
    Loyal.add_asgi_middleware(  # type: ignore[attr-defined]  # @bentoml.service made a Service
        ApiKeyMiddleware,
        api_key=OPTIONS.api_key.get_secret_value() if OPTIONS.api_key else "",
        header=OPTIONS.api_key_header,
        protected=API_ROUTES,
        on_reject=_rejected,
    )
