"""Typed settings: one YAML file (loyal.yaml) with LOYAL_-prefixed environment overrides.

Precedence, highest first: arguments passed in code, environment variables
(``LOYAL_SECTION__FIELD``), the config file (``LOYAL_CONFIG`` or ``./loyal.yaml``), defaults.
Relative paths are resolved against ``home`` (the folder holding the config file).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from loyal.errors import ConfigError

CONFIG_FILE_NAME = "loyal.yaml"


class PathsSettings(BaseModel):
    """Where Loyal keeps its data; relative paths are under ``home``."""

    data_dir: Path = Path("data")
    runtime_dir: Path = Path(".loyal")

    @property
    def raw_dir(self) -> Path:
        """Raw tables as a user brings them (the sample bank is generated here)."""
        return self.data_dir / "raw"

    @property
    def contract_dir(self) -> Path:
        """Validated, normalized contract tables written by ``loyal ingest``."""
        return self.data_dir / "contract"

    @property
    def features_dir(self) -> Path:
        """Snapshot feature tables: Feast's offline store in the embedded profile."""
        return self.data_dir / "features"

    @property
    def truth_dir(self) -> Path:
        """Generator ground truth, read only by evaluation."""
        return self.data_dir / "truth"


class FeastSettings(BaseModel):
    """Feature store: embedded (SQLite online store, file registry) or production (Redis, SQL)."""

    project: str = "loyal"
    online_store: Literal["sqlite", "redis"] = "sqlite"
    registry: Literal["file", "sql"] = "file"
    offline_store: Literal["duckdb", "file"] = "duckdb"
    """Point-in-time joins of training sets: DuckDB (flat memory, default) or Feast's pandas."""
    redis_connection_string: str = "127.0.0.1:6379"
    registry_sql_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/loyal_feast"
    entity_key_serialization_version: int = 3


class MlflowSettings(BaseModel):
    """Tracking and registry: SQLite under ``mlflow/`` by default, PostgreSQL in production."""

    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_root: Path = Path("mlflow/artifacts")
    experiment: str = "loyal"


class SnapshotSettings(BaseModel):
    """How feature snapshots and churn labels are cut."""

    frequency: str = "MS"
    horizon_days: int = Field(default=90, gt=0)
    churn_definition: Literal["auto", "closure", "inactivity"] = "auto"


class TierSettings(BaseModel):
    """Customer pyramid cut points as cumulative shares: platinum, gold, iron; lead is the rest."""

    platinum: float = 0.01
    gold: float = 0.05
    iron: float = 0.20

    @model_validator(mode="after")
    def _ordered(self) -> TierSettings:
        if not 0 < self.platinum < self.gold < self.iron < 1:
            raise ValueError("tier cut points must satisfy 0 < platinum < gold < iron < 1")
        return self


class BoosterSettings(BaseModel):
    """One point of the churn search: the XGBoost settings `models.churn.SEARCHED` names."""

    model_config = ConfigDict(extra="forbid")

    max_depth: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    min_child_weight: float = Field(ge=0)
    reg_lambda: float = Field(ge=0)
    subsample: float = Field(default=0.8, gt=0, le=1)
    colsample_bynode: float = Field(default=0.8, gt=0, le=1)


Range = tuple[float, float]


class SearchSpaceSettings(BaseModel):
    """[low, high] of each setting the churn search draws from once its candidates are tried
    (learning rate, `min_child_weight` and `reg_lambda` on a log scale)."""

    model_config = ConfigDict(extra="forbid")

    max_depth: tuple[int, int] = (1, 8)
    learning_rate: Range = (0.02, 0.2)
    min_child_weight: Range = (0.5, 100.0)
    subsample: Range = (0.5, 1.0)
    colsample_bynode: Range = (0.4, 1.0)
    reg_lambda: Range = (0.1, 50.0)

    @model_validator(mode="after")
    def _valid_ranges(self) -> SearchSpaceSettings:
        for name, (low, high) in self:
            if not 0 < low <= high:
                raise ValueError(f"{name}: a range needs 0 < low <= high, got [{low}, {high}]")
        for name in ("subsample", "colsample_bynode"):
            if getattr(self, name)[1] > 1:
                raise ValueError(f"{name}: a share cannot exceed 1")
        return self


def _default_candidates() -> list[BoosterSettings]:
    """Stumps (an additive model, best on Telco), then more capacity for interactions."""
    return [
        BoosterSettings(max_depth=1, learning_rate=0.05, min_child_weight=5.0, reg_lambda=5.0),
        BoosterSettings(max_depth=2, learning_rate=0.05, min_child_weight=5.0, reg_lambda=5.0),
        BoosterSettings(max_depth=4, learning_rate=0.05, min_child_weight=2.0, reg_lambda=1.0),
        BoosterSettings(max_depth=6, learning_rate=0.05, min_child_weight=1.0, reg_lambda=1.0),
    ]


class ChurnSettings(BaseModel):
    """How the churn model is searched and trained (`loyal train churn`, `run`, `retrain`).

    Attributes:
        search_trials: most Optuna trials (each one cross-fit, median-pruned).
        search_timeout: seconds after which the search starts no new trial (None: no limit).
        max_train_snapshots: latest training snapshots fetched from the feature store (None:
            all). Feast's file offline store joins about 2-3 thousand rows a second; twelve
            snapshots gave the same test ROC-AUC as all fifteen on the sample bank.
        evaluate_budget_seconds: search budget of `loyal churn evaluate` per 10,000 rows (and
            at least this), shared by its folds: a 10,000-row, 20-column table finishes in
            under two minutes on a busy 2-core machine (`benchmarks/churn.py`).
        evaluate_max_trials: most search trials in each fold of `loyal churn evaluate` (the
            budget usually stops first).
        isotonic_min_rows: "auto" calibration turns isotonic from this many held-out rows...
        isotonic_min_per_class: ...with at least this many of each class (else Platt).
        selection_standard_errors: standard errors of excess held-out log-loss within which
            the search prefers the shallower trial (the one-standard-error rule).
        candidates: booster settings every search tries first, in order, after the model's
            defaults.
        search_space: ranges the seeded TPE search draws from after the candidates.
        max_train_rows: most training-snapshot rows fetched from the feature store (None:
            all): a seeded sample stratified by snapshot and label, drawn before the
            point-in-time join, so the frame, the boosters and the baselines stay bounded as
            customers grow; the validation and test snapshots have their own bound
            (`max_evaluation_rows`).
        max_evaluation_rows: most rows fetched of the validation snapshot and of the test
            snapshot each (None: all): a seeded sample stratified by label, drawn before the
            point-in-time join. Early stopping, calibration, the test metrics, the baselines'
            and promotion's scoring all grow with these rows; 300,000 keep a test ROC-AUC's
            standard error near 0.002. Banks below that many customers keep every row.
        search_max_rows: most training rows, and validation rows, each search trial sees
            (None: all): a seeded sample stratified by label (class shares kept, no weights);
            the chosen settings are refit on every training row and calibrated on every
            validation row fetched.
        baseline_max_rows: most rows the two baselines (plain XGBoost, logistic regression)
            are fitted on (None: every training and validation row): a seeded sample
            stratified by label. They are reported beside the model, never served. Off by
            default: at 100,000 customers, 100,000 of 370,739 rows cut their time from 65 to
            26 s but plain XGBoost's test ROC-AUC from 0.6585 to 0.6481 (the model's: 0.6574),
            which would flip the comparison the report is for.
        n_jobs: XGBoost threads for training the model and the plain XGBoost baseline (0:
            every core). The trees are identical whatever the count; on a 2-core machine at a
            million customers, both cores cut the search from 44 to 31 s, the final fit from
            43 to 32 s and the plain XGBoost baseline from 102 to 64 s.
    """

    search_trials: int = Field(default=20, ge=0)
    search_timeout: float | None = Field(default=600.0, gt=0)
    max_train_snapshots: int | None = Field(default=12, ge=1)
    evaluate_budget_seconds: float = Field(default=60.0, ge=0)
    evaluate_max_trials: int = Field(default=100, ge=0)
    isotonic_min_rows: int = Field(default=50_000, ge=1)
    isotonic_min_per_class: int = Field(default=1_000, ge=1)
    selection_standard_errors: float = Field(default=1.0, ge=0.0)
    candidates: list[BoosterSettings] = Field(default_factory=_default_candidates)
    search_space: SearchSpaceSettings = SearchSpaceSettings()
    max_train_rows: int | None = Field(default=300_000, ge=1_000)
    max_evaluation_rows: int | None = Field(default=300_000, ge=1_000)
    search_max_rows: int | None = Field(default=50_000, ge=1_000)
    baseline_max_rows: int | None = Field(default=None, ge=1_000)
    n_jobs: int = Field(default=0, ge=0)

    def model_params(self) -> dict[str, Any]:
        """The `models.churn.ChurnModel` parameters this section sets."""
        return {
            "isotonic_min_rows": self.isotonic_min_rows,
            "isotonic_min_per_class": self.isotonic_min_per_class,
            "selection_standard_errors": self.selection_standard_errors,
            "candidates": [candidate.model_dump() for candidate in self.candidates],
            "search_space": self.search_space.model_dump(),
            "search_max_rows": self.search_max_rows,
        }


class CrossSellSettings(BaseModel):
    """How the cross-sell recommender is searched (`loyal train cross-sell`, `run`, `retrain`).

    Attributes:
        search_trials: ALS settings tried by the seeded search (0: the defaults, no search).
        seed: the search's seed.
        search_max_customers: the trials learn from a seeded sample of this many customers
            (None: all); the chosen settings are refit on every customer, the penalty scaled
            to their number (ALS needs more of it as each product's data grows). A trial's
            cost grows with the customers, the precision its ranking needs does not. The
            one-standard-error rule uses the error over every customer, so a sample does not
            make it pick cheaper settings. At a million customers, 100,000 gave the test
            NDCG@3 that 200,000 gave (0.5515 and 0.5516) with the search 196 s -> 102 s.
        search_standard_errors: keep the cheapest trial (fewest factors x iterations) whose
            validation metric is within this many standard errors of the best (0: the best).
    """

    search_trials: int = Field(default=12, ge=0)
    seed: int = 42
    search_max_customers: int | None = Field(default=100_000, ge=1)
    search_standard_errors: float = Field(default=1.0, ge=0.0)


class ClvSettings(BaseModel):
    """CLV economics and protocol.

    Attributes:
        horizon_months: months of future margin counted in CLV.
        monthly_discount: discount rate per month (0.01 is about 12.7% a year).
        cost_per_month: cost to serve an active customer for a month (P(alive) weighted).
        cost_per_purchase: cost of serving one purchase day.
        holdout_weeks: length of the time holdout at the end of the history.
        period: purchase occasion: "D" (a customer-day) or "W" (a customer-week).
        time_unit_days: days per BG/NBD time unit (7: weeks, which keeps the fit stable).
        monetary_cap_quantile: quantile of mean spend at which Gamma-Gamma's fitting data are
            capped (None: no cap).
        penalizer: BG/NBD L2 penalty; None tries maximum likelihood first, then small penalties.
    """

    horizon_months: int = Field(default=12, ge=1, le=120)
    monthly_discount: float = Field(default=0.01, ge=0.0, lt=1.0)
    cost_per_month: float = Field(default=0.0, ge=0.0)
    cost_per_purchase: float = Field(default=0.0, ge=0.0)
    holdout_weeks: int = Field(default=26, ge=1)
    period: Literal["D", "W"] = "D"
    time_unit_days: float = Field(default=7.0, gt=0.0)
    monetary_cap_quantile: float | None = Field(default=0.99, gt=0.5, le=1.0)
    penalizer: float | None = Field(default=None, ge=0.0)


class SegmentSettings(BaseModel):
    """How need segments are fitted.

    Attributes:
        k_min: smallest number of segments tried.
        k_max: largest number of segments tried (a marketing team acts on a handful).
        n_init: k-means restarts per fit.
        stability_runs: bootstrap refits per k for the stability measure.
        min_stability: mean ARI a k needs to count as stable.
        sample_size: rows on which silhouette and stability are computed (and logged for
            promotion).
        selection_size: rows on which the candidate k are fitted.
        channel_window_days: days of transactions behind the channel mix.
        random_state: seed of sampling and k-means.
        columns: explicit model columns (default: holdings, channel mix and age).
        max_need_columns: most product categories whose spend shares still read as needs.
        degenerate_silhouette: a silhouette at least this high at every k marks a degenerate
            segmentation (refused promotion).
        degenerate_share: a segment holding at least this share of customers marks one too.
        id_like_share: a whole-number column with distinct values on at least this share of
            rows is an id, not a need.
    """

    k_min: int = Field(default=3, ge=2)
    k_max: int = Field(default=8, ge=2)
    n_init: int = Field(default=10, ge=1)
    stability_runs: int = Field(default=2, ge=0)
    min_stability: float = Field(default=0.8, ge=0.0, le=1.0)
    sample_size: int = Field(default=5_000, ge=100)
    selection_size: int = Field(default=50_000, ge=100)
    channel_window_days: int = Field(default=365, ge=1)
    random_state: int = 0
    columns: list[str] | None = None
    max_need_columns: int = Field(default=20, ge=2)
    degenerate_silhouette: float = Field(default=0.99, gt=0.0, le=1.0)
    degenerate_share: float = Field(default=0.95, gt=0.0, le=1.0)
    id_like_share: float = Field(default=0.95, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> SegmentSettings:
        if self.k_max < self.k_min:
            raise ValueError("segments k_max must be at least k_min")
        return self


class GenerateSettings(BaseModel):
    """Defaults for the sample bank generator."""

    customers: int = Field(default=20_000, gt=0)
    seed: int = 42
    months: int = Field(default=24, ge=6)
    end_date: str = "2026-10-31"

    def overridden(self, customers: int | None = None, seed: int | None = None) -> GenerateSettings:
        """These defaults with another size or seed (None keeps the section's), as the
        `--customers` and `--seed` options give them."""
        values = {"customers": customers, "seed": seed}
        return self.model_copy(update={k: v for k, v in values.items() if v is not None})


DEFAULT_MODELS: tuple[str, ...] = ("churn", "cross_sell", "uplift")
"""Registered models the service loads at start-up (their `champion` versions); uplift, when it
has no champion, leaves retention valued by churn risk (`ModelSpec.serving_fallback`)."""


class ServingSettings(BaseModel):
    """How the next-best-action service runs.

    Attributes:
        api_key: when set, every API call must send it in `api_key_header` (401 otherwise).
        api_key_header: the header carrying the key.
        models: registered models to load (`champion` alias); a missing one degrades answers.
        feature_service: the Feast feature service the service reads online.
        feature_reader: `sqlite` reads Feast's SQLite online tables directly (the fast path,
            kept equal to Feast by a test), `feast` calls `get_online_features`, `auto` picks
            `sqlite` for the embedded profile and `feast` otherwise.
        catalog_path: your own offer catalog (YAML); wins over `catalog`.
        catalog: a shipped offer catalog by name, `bank` or `retail` (default: the one the
            loaded data calls for: its ingest preset's, else `bank` when it holds balances,
            else `retail`; `bank` before any data is loaded).
        recommendations: cross-sell products handed to the policy as candidates.
        reasons: churn reasons per customer.
        feedback_db: the feedback store (default: `<runtime_dir>/serving/feedback.db`);
            relative paths (here and in `catalog_path`) are under ``home``.
        workers: BentoML worker processes.
        tracing: keep BentoML's OpenTelemetry tracing on every request (costs ~0.5 ms each).
        require_models: readiness (`/readyz`) fails while a configured model is missing.
        feedback_max_skew_seconds: how far in the future a feedback `ts` may lie (clock skew
            between the caller and the server).
        feedback_max_age_days: how old a feedback `ts` may be.
        consent_when_unrecorded: what marketing consent is for known customers when the
            customers table records none at all (no `consent_marketing` column, or all blank):
            `deny` (default: service actions only) or `allow`, the business's statement that its
            existing customers may be marketed to (consent collected outside these tables, or
            a soft opt-in). Unknown customers (cold start, degraded answers) never get it.
    """

    api_key: SecretStr | None = None
    api_key_header: str = "X-API-Key"
    models: Annotated[tuple[str, ...], NoDecode] = DEFAULT_MODELS
    feature_service: str = "nba_v1"
    feature_reader: Literal["auto", "sqlite", "feast"] = "auto"
    catalog_path: Path | None = None
    catalog: str | None = None
    recommendations: int = Field(default=5, ge=1, le=50)
    reasons: int = Field(default=3, ge=0, le=10)
    feedback_db: Path | None = None
    workers: int = Field(default=1, ge=1, le=64)
    tracing: bool = False
    require_models: bool = True
    feedback_max_skew_seconds: float = Field(default=300.0, ge=0, le=86_400)
    feedback_max_age_days: float = Field(default=90.0, gt=0, le=3_650)
    consent_when_unrecorded: Literal["deny", "allow"] = "deny"

    @field_validator("models", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """`LOYAL_SERVING__MODELS=churn,cross_sell` (an empty string loads no model)."""
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @property
    def auth_enabled(self) -> bool:
        """Whether API calls need the key."""
        return self.api_key is not None and bool(self.api_key.get_secret_value())


class DecisionSettings(BaseModel):
    """The decision log, exploration and the learning loop (issue: close the loop).

    Attributes:
        db: the embedded log (default: `<runtime_dir>/serving/decisions.db`; relative to home).
        url: a PostgreSQL URL; the log goes there instead (default in the production profile:
            `postgresql://postgres@127.0.0.1:5432/loyal_decisions`).
        explore_share: share of customers whose decisions are randomised among the eligible
            actions in each period (0 switches exploration off).
        explore_period_days: how long a customer's exploration assignment holds.
        explore_salt: keeps the assignment unpredictable to callers.
        ignore_after_hours: a decision without an answer after this long counts as ignored.
        log_features: keep the features the policy read with each decision.
        contextual_min_answers: answers an offer needs before the acceptance model's contextual
            level (XGBoost on customer features) speaks for it (0: never).
        contextual_strength: how many answers the pseudo-count estimate is worth against the
            contextual one (the blend weight of an offer with n answers is n / (n + this)).
    """

    db: Path | None = None
    url: str | None = None
    explore_share: float = Field(default=0.05, ge=0, le=0.5)
    explore_period_days: float = Field(default=7.0, gt=0, le=366)
    explore_salt: str = "loyal"
    ignore_after_hours: float = Field(default=72.0, gt=0)
    log_features: bool = True
    contextual_min_answers: int = Field(default=300, ge=0)
    contextual_strength: float = Field(default=300.0, ge=0)


class ComputeSettings(BaseModel):
    """Where the heavy stages run: in this process, or on a Dask cluster (issue: scale).

    Attributes:
        engine: `local` (default: nothing to start) or `dask`.
        scheduler: with `dask`, `local-cluster` (a LocalCluster started for the run) or the
            address of a running scheduler, e.g. `tcp://scheduler:8786`.
        workers: worker processes of a `local-cluster`.
        threads_per_worker: threads per worker of a `local-cluster`.
        memory_limit: memory per worker of a `local-cluster` (Dask's notation, e.g. `4GiB`).
        partition_customers: customers per partition of the feature build and of batch
            scoring with `dask`: peak memory grows with this, not with the bank.
        partitions: a fixed number of partitions (0: from `partition_customers`).
        work_dir: where partition files go during a build, a path or an fsspec URL every
            worker reaches (`s3://bucket/loyal-work`); empty: `.loyal/partitions` in the home.
    """

    engine: Literal["local", "dask"] = "local"
    scheduler: str = "local-cluster"
    workers: int = Field(default=2, ge=1, le=256)
    threads_per_worker: int = Field(default=1, ge=1, le=64)
    memory_limit: str = "4GiB"
    partition_customers: int = Field(default=200_000, ge=1)
    partitions: int = Field(default=0, ge=0, le=100_000)
    work_dir: str = ""

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        if value != "local-cluster" and "://" not in value:
            raise ValueError(
                "compute.scheduler must be 'local-cluster' or a scheduler address such as "
                f"tcp://host:8786, not {value!r}"
            )
        return value


PRODUCTION_DECISIONS_URL = "postgresql://postgres@127.0.0.1:5432/loyal_decisions"
"""Where the production profile logs decisions unless `decisions.url` says otherwise."""


class Settings(BaseSettings):
    """Everything configurable in Loyal."""

    model_config = SettingsConfigDict(
        env_prefix="LOYAL_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    profile: Literal["embedded", "production"] = "embedded"
    home: Path = Field(default_factory=Path.cwd)
    log_level: str = "INFO"
    paths: PathsSettings = PathsSettings()
    feast: FeastSettings = FeastSettings()
    mlflow: MlflowSettings = MlflowSettings()
    snapshots: SnapshotSettings = SnapshotSettings()
    tiers: TierSettings = TierSettings()
    churn: ChurnSettings = ChurnSettings()
    cross_sell: CrossSellSettings = CrossSellSettings()
    clv: ClvSettings = ClvSettings()
    segments: SegmentSettings = SegmentSettings()
    generate: GenerateSettings = GenerateSettings()
    serving: ServingSettings = ServingSettings()
    decisions: DecisionSettings = DecisionSettings()
    compute: ComputeSettings = ComputeSettings()

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("log_level must be one of DEBUG, INFO, WARNING, ERROR")
        return value.upper()

    @model_validator(mode="after")
    def _anchor_paths(self) -> Settings:
        self.home = self.home.resolve()
        self.paths.data_dir = self.resolve(self.paths.data_dir)
        self.paths.runtime_dir = self.resolve(self.paths.runtime_dir)
        self.mlflow.artifact_root = self.resolve(self.mlflow.artifact_root)
        if self.serving.feedback_db is not None:
            self.serving.feedback_db = self.resolve(self.serving.feedback_db)
        if self.decisions.db is not None:
            self.decisions.db = self.resolve(self.decisions.db)
        if self.serving.catalog_path is not None:
            self.serving.catalog_path = self.resolve(self.serving.catalog_path)
        prefix = "sqlite:///"
        if self.mlflow.tracking_uri.startswith(prefix) and not self.mlflow.tracking_uri.startswith(
            prefix + "/"
        ):
            db_path = self.resolve(Path(self.mlflow.tracking_uri.removeprefix(prefix)))
            self.mlflow.tracking_uri = prefix + str(db_path)
        return self

    def resolve(self, path: Path) -> Path:
        """Anchor a relative path at ``home``."""
        return path if path.is_absolute() else self.home / path

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = _config_file()
        yaml_source = YamlConfigSettingsSource(settings_cls, yaml_file=config_file)
        return (init_settings, env_settings, yaml_source)


def _config_file() -> Path | None:
    explicit = os.environ.get("LOYAL_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"LOYAL_CONFIG points to '{path}', which is not a file")
        return path
    default = Path.cwd() / CONFIG_FILE_NAME
    return default if default.is_file() else None


def load_settings(**overrides: object) -> Settings:
    """Read settings afresh, turning validation problems into one readable ConfigError."""
    try:
        config_file = _config_file()
        if config_file is not None and "home" not in overrides and "LOYAL_HOME" not in os.environ:
            overrides["home"] = config_file.resolve().parent
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None


SectionT = TypeVar("SectionT", bound=BaseModel)


def section(settings: Any, name: str, kind: type[SectionT]) -> SectionT:
    """A model's settings section as `kind` (a subclass with training helpers), else defaults.

    Any object with the section's fields is accepted (settings of another shape, a dict).
    """
    configured = getattr(settings, name, None)
    if configured is None:
        return kind()
    if isinstance(configured, kind):
        return configured
    dumped = configured.model_dump() if isinstance(configured, BaseModel) else configured
    return kind.model_validate(dumped)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once; entry points call this explicitly."""
    return load_settings()
