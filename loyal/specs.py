"""One spec per model: what every layer needs to know about it, in one registered place.

A spec names its parts by reference (``"package.module:function"``), resolved only when used, so
this module imports nothing heavy and every layer may import it: serving reads the champion
loader and score fields without ever importing training. The CLI (`loyal train|promote|
rollback|models`), `loyal run`, `loyal pipeline retrain` and the model listing loop over
`MODELS`; a new model is a spec passed to `register` plus the module its references name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loyal.errors import LoyalError


def resolve(reference: str) -> Any:
    """The object a ``"package.module:attribute"`` reference names (imported now).

    Raises:
        LoyalError: a reference without ``:``.
    """
    module, _, attribute = reference.partition(":")
    if not attribute:
        raise LoyalError(f"'{reference}' is not a 'module:attribute' reference")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """How one model is trained, promoted, listed, scored and served.

    Attributes:
        name: the registered model name in MLflow.
        command: its name on the command line (`loyal promote <command>`; default: the name
            with dashes for underscores).
        title: how stage titles name it (`Train <title>`; default: the command).
        run_metric: the holdout metric its training run logs (shown by `loyal models`;
            default: the promotion metric).
        promotion_metric: the metric promotion compares, tagged on each decision.
        higher_is_better: direction of both metrics.
        train: reference to `train(settings, **options)`, which fits, logs and registers a
            version and returns a result with `model_version`.
        scorer_factory: reference to `factory(metric) -> Scorer` used by promotion.
        feature_service: the Feast feature service it reads (None: none, e.g. transactions).
        feature_views: the feature views that service joins (`features.feature_repo.services`
            builds each spec's service from them; a view missing from the store is left out).
        settings_section: its `loyal.yaml` section (None: no settings yet).
        applicable: reference to `check(settings)`, raising `StepSkippedError` with the reason
            when the loaded data cannot support the model (None: always applicable).
        on_promoted: reference to `publish(settings, result)`, run when a freshly trained
            version becomes champion (e.g. cross-sell's batch recommendations).
        champion_loader: reference to `load(artifact)`, the in-process serving object.
        batch_scorer: reference to `score(loaded_model, customer_ids) -> DataFrame`, one column
            per score field (None: its scores are computed by the scores table itself).
        score_fields: the columns it publishes in the scores table.
        commands: references to its own `loyal train` and `loyal promote` commands (typer
            functions with the model's options); None: the generic ones.
        current_reference: its training rows come from recent snapshots, so features that moved
            alone may raise a monitoring alert; False when they come from older snapshots by
            design (uplift: past campaigns' members), where features alone only warn.
        serving_fallback: what the service answers without this model's champion, when that is
            a complete answer of its own (uplift: retention valued by churn risk); such a
            model, configured but without a champion, neither degrades answers nor readiness,
            and answers name no version of it. None: a missing champion degrades answers.
        trains_on_features: its training reads the feature tables (or Feast); False when it
            learns from the contract data alone (cross-sell: the purchase log), so a retrain
            may train it while the features are being rebuilt.
        after: the models whose newly trained version its training reads (segments: CLV's,
            for the value tiers); a retrain starts it only once they are trained.
    """

    name: str
    command: str = ""
    title: str = ""
    run_metric: str = ""
    promotion_metric: str
    higher_is_better: bool = True
    train: str
    scorer_factory: str = "training.registry:metric_scorer"
    feature_service: str | None = None
    settings_section: str | None = None
    applicable: str | None = None
    on_promoted: str | None = None
    champion_loader: str | None = None
    batch_scorer: str | None = None
    score_fields: tuple[str, ...] = field(default=())
    commands: tuple[str, str] | None = None
    current_reference: bool = True
    feature_views: tuple[str, ...] = ()
    serving_fallback: str | None = None
    trains_on_features: bool = True
    after: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        command = self.command or self.name.replace("_", "-")
        object.__setattr__(self, "command", command)
        object.__setattr__(self, "title", self.title or command)
        object.__setattr__(self, "run_metric", self.run_metric or self.promotion_metric)

    def scorer(self, metric: str | None = None) -> Callable[..., float]:
        """The promotion scorer for `metric` (default: the spec's promotion metric)."""
        factory = resolve(self.scorer_factory)
        scorer: Callable[..., float] = factory(metric or self.promotion_metric)
        return scorer


CUSTOMER_VIEWS = ("profile", "rfm", "holdings", "engagement", "balances", "lifecycle")
"""The views describing a customer (the churn model's feature service joins them all)."""


def _own_commands(module: str, infix: str = "") -> tuple[str, str]:
    """References to a model's own `loyal train` and `loyal promote` commands in
    `pipelines.commands.<module>` (`train<infix>_command`, `promote<infix>_command`)."""
    return (
        f"pipelines.commands.{module}:train{infix}_command",
        f"pipelines.commands.{module}:promote{infix}_command",
    )


BUILTIN: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="churn",
        run_metric="test_roc_auc",
        promotion_metric="roc_auc",
        train="training.churn:train_configured",
        feature_service="churn_v1",
        feature_views=CUSTOMER_VIEWS,
        settings_section="churn",
        applicable="training.applicability:check_churn",
        champion_loader="serving.champions:load_churn",
        score_fields=("churn_probability",),
        commands=_own_commands("churn"),
    ),
    ModelSpec(
        name="cross_sell",
        promotion_metric="ndcg_at_3",
        train="training.cross_sell:train_bank",
        scorer_factory="training.cross_sell:ranking_scorer",
        feature_service="cross_sell_v1",
        feature_views=("profile", "holdings"),
        settings_section="cross_sell",
        applicable="training.applicability:check_cross_sell",
        on_promoted="training.cross_sell:publish_recommendations",
        champion_loader="serving.champions:load_cross_sell",
        score_fields=("recommendation_1", "recommendation_2", "recommendation_3"),
        commands=_own_commands("cross_sell"),
        trains_on_features=False,  # the purchase log and the customers table
    ),
    ModelSpec(
        name="clv",
        title="CLV",
        run_metric="mae",
        promotion_metric="holdout_mae",
        higher_is_better=False,
        train="training.clv:train_clv",
        scorer_factory="training.clv:mae_scorer",
        settings_section="clv",
        applicable="training.applicability:check_clv",
        score_fields=("clv", "p_alive", "expected_purchases_12m", "tier"),
        commands=_own_commands("value", "_clv"),
    ),
    ModelSpec(
        name="segments",
        title="need segments",
        promotion_metric="holdout_silhouette",
        train="training.segments:train_segments",
        scorer_factory="training.segments:silhouette_scorer",
        feature_service="segments_v1",
        feature_views=("profile", "rfm", "holdings", "engagement", "balances"),
        settings_section="segments",
        score_fields=("segment_id", "segment_name"),
        commands=_own_commands("value", "_segments"),
        after=("clv",),  # value tiers from the latest CLV version
    ),
    ModelSpec(
        name="uplift",
        promotion_metric="qini_auc",
        train="training.uplift:train_uplift",
        scorer_factory="training.uplift:qini_scorer",
        feature_service="churn_v1",  # the churn model's inputs: what a contact acts on
        feature_views=CUSTOMER_VIEWS,
        applicable="training.uplift:check_uplift",
        champion_loader="serving.champions:load_uplift",
        current_reference=False,
        serving_fallback=(
            "no uplift champion: retention offers valued by churn risk x CLV x save rate"
        ),
    ),
    ModelSpec(
        name="acceptance",
        run_metric="ope_dr_value",
        promotion_metric="ope_paired_gain_low",
        train="training.acceptance:train",
        scorer_factory="training.acceptance:ope_scorer",
        applicable="training.acceptance:check_applicable",
        champion_loader="serving.champions:load_acceptance",
    ),
)
"""The shipped models, in training order (CLV before segments: tiers read CLV; uplift: it
learns from the data's past campaigns and is skipped, with the reason, when there are none;
acceptance last, from the decision log, skipped while it holds too few answers)."""

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in BUILTIN}
"""Every registered model, in training order."""


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model (or replace the one of the same name); it is trained after the others.

    Raises:
        LoyalError: its command name is taken by another model.
    """
    for other in MODELS.values():
        if other.name != spec.name and spec.command in (other.name, other.command):
            raise LoyalError(f"model command '{spec.command}' is taken by '{other.name}'")
    MODELS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a registered model (a test's extra model); unknown names are ignored."""
    MODELS.pop(name, None)


def model_spec(name: str) -> ModelSpec:
    """The spec of a model named as registered (`cross_sell`) or as typed (`cross-sell`).

    Raises:
        LoyalError: an unknown model, naming the known ones.
    """
    for spec in MODELS.values():
        if name in (spec.name, spec.command):
            return spec
    known = ", ".join(spec.command for spec in MODELS.values())
    raise LoyalError(f"unknown model '{name}'; use one of: {known}")


def serving_fallback(name: str) -> str | None:
    """What the service answers without `name`'s champion (None: its absence degrades answers;
    unknown names too)."""
    spec = MODELS.get(name)
    return spec.serving_fallback if spec is not None else None


def promotion_for(name: str) -> Callable[..., Any]:
    """`promote(settings, version, force, reason, metric)` for one model, importing nothing yet.

    The one promotion path (`training.models_admin.promote_model`), bound to a model name; the
    arguments after `settings` are `promote_model`'s after the name.
    """

    def promote(settings: Any, *args: Any, **kwargs: Any) -> Any:
        from training.models_admin import promote_model

        return promote_model(settings, name, *args, **kwargs)

    promote.__doc__ = f"Make a `{name}` version the champion if it wins (`promote_model`)."
    return promote
