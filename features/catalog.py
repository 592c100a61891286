"""The feature catalog: every feature view, its features, types and plain-language descriptions.

One source of truth for feature engineering (which columns each view table has), the Feast
definitions (generated from here) and model explanations (reason sentences).

Conventions every view table follows (see `features.engineering`):

- one row per (customer, snapshot) for customers who signed up before the snapshot and had not
  closed before it; `customer_id` (str), `event_timestamp` (UTC), then the view's features in
  catalog order with the catalog types;
- point in time: a feature at snapshot `t` only uses events with `ts < t`; "the last N days"
  is the window `[t - N days, t)`;
- `int` and `bool` columns never hold nulls (zero is the truth when nothing happened); `float`
  columns hold NaN where a value is undefined (no balance of that kind, no purchase yet).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from loyal.products import BALANCE_TYPES as BALANCE_TYPES
from loyal.products import SAMPLE_BANK_PRODUCTS as SAMPLE_BANK_PRODUCTS

FeatureType = Literal["float", "int", "str", "bool"]

ENTITY_KEY = "customer_id"
TIMESTAMP_FIELD = "event_timestamp"

PANDAS_DTYPES: dict[FeatureType, str] = {
    "float": "float64",
    "int": "int64",
    "str": "object",
    "bool": "bool",
}
"""The pandas dtype of each feature type in the view tables."""

DEPOSIT_TYPES: tuple[str, ...] = ("checking", "savings", "high_yield_savings")
"""Account types summed into `total_deposits`."""
LOAN_TYPES: tuple[str, ...] = ("mortgage", "personal_loan")
"""Account types whose balance the customer owes."""

IDLE_CASH_BUFFER = 1_000.0
"""Checking balance a customer keeps for day-to-day spending; what lies above it is idle cash."""

DIGITAL_CHANNELS: frozenset[str] = frozenset({"online", "mobile", "web", "app", "internet"})
"""Transaction channels counted as digital by `digital_share` (compared lower-case)."""

HOLDING_WINDOW_DAYS = 90
"""A product is held if it had a transaction in the last this-many days (or a balance)."""

LIFECYCLE_STATES: tuple[str, ...] = ("new", "active", "repeat", "at_risk", "lapsed", "lost")
"""Values of `lifecycle.state`, from the rules in `features.engineering.lifecycle_state`."""

SPEND_TREND_CAP = 5.0
"""Upper clip of `spend_trend` (+500%), also its value when spending starts from zero."""


@dataclass(frozen=True)
class Feature:
    """One feature column.

    Attributes:
        name: column name in the view table and in Feast.
        type: value type.
        description: what it measures, for people (docs, `loyal features show`).
        reason: sentence template used when this feature drives a prediction; `{value}` is the
            customer's value, e.g. "{value:.0f} complaints in the last 90 days".
        missing: the sentence when the value is missing (NaN) and that drives a prediction,
            e.g. "no purchase yet"; without it, "<description>: missing".
    """

    name: str
    type: FeatureType
    description: str
    reason: str = ""
    missing: str = ""

    def sentence(self, value: object) -> str:
        """Render the reason sentence for a value, falling back to the description."""
        if value is None or (isinstance(value, float) and value != value):
            return self.missing or f"{self.description}: missing"
        template = self.reason or f"{self.description}: {{value}}"
        try:
            return template.format(value=value)
        except (ValueError, TypeError):
            return f"{self.description}: {value}"


@dataclass(frozen=True)
class View:
    """One feature view: a snapshot table keyed by customer and event timestamp."""

    name: str
    description: str
    features: tuple[Feature, ...]
    ttl_days: int = 62

    @property
    def feature_names(self) -> list[str]:
        """Names of the view's features, in order."""
        return [f.name for f in self.features]

    @property
    def dtypes(self) -> dict[str, str]:
        """The pandas dtype of each feature column, in order."""
        return {f.name: PANDAS_DTYPES[f.type] for f in self.features}


def _windowed(
    name: str, type_: FeatureType, description: str, reason: str, windows: Iterable[int]
) -> tuple[Feature, ...]:
    """One feature per window of days; `{days}` in the texts is the window."""
    return tuple(
        Feature(
            name.replace("{days}", str(days)),
            type_,
            description.replace("{days}", str(days)),
            reason=reason.replace("{days}", str(days)),
        )
        for days in windows
    )


def _counts(kind: str, plural: str, windows: Iterable[int]) -> tuple[Feature, ...]:
    """Count features `<kind>_<N>d` of one interaction kind over several windows."""
    in_window = plural + " in the last {days} days"
    return _windowed(kind + "_{days}d", "int", in_window, "{value:.0f} " + in_window, windows)


PROFILE = View(
    name="profile",
    description="Who the customer is: tenure, age, region, consent and breadth of relationship.",
    ttl_days=366,
    features=(
        Feature(
            "tenure_days",
            "int",
            "days since signup",
            reason="customer for {value:,.0f} days",
        ),
        Feature(
            "age",
            "float",
            "age in years (NaN when unknown)",
            reason="aged {value:.0f}",
            missing="age unknown",
        ),
        Feature(
            "age_band",
            "str",
            "age band: <25, 25-34, 35-44, 45-54, 55-64, 65+ or unknown",
            reason="in the {value} age band",
        ),
        Feature("region", "str", "region ('unknown' when missing)", reason="lives in {value}"),
        Feature(
            "consent_marketing",
            "bool",
            "agreed to marketing contact (False when not recorded)",
            reason="marketing consent: {value}",
        ),
        Feature(
            "n_products_held",
            "int",
            "number of distinct products held (see the holdings view for the rule)",
            reason="holds {value:.0f} products",
        ),
    ),
)

RFM = View(
    name="rfm",
    description=(
        "Recency, frequency, monetary value and trends. A purchase is a customer-day with at "
        "least one non-refund transaction (amount >= 0); money sums are net of refunds."
    ),
    features=(
        Feature(
            "recency_days",
            "float",
            "days since the last purchase (NaN if none yet)",
            reason="last purchase {value:.0f} days ago",
            missing="no purchase yet",
        ),
        *_windowed(
            "frequency_{days}d",
            "int",
            "purchase days in the last {days} days",
            "bought on {value:.0f} days in the last {days} days",
            (30, 90, 365),
        ),
        *_windowed(
            "monetary_{days}d",
            "float",
            "net revenue in the last {days} days",
            "spent {value:,.2f} in the last {days} days",
            (30, 90, 365),
        ),
        Feature(
            "avg_basket_365d",
            "float",
            "net revenue per purchase day over the last 365 days (NaN if no purchase)",
            reason="average purchase of {value:,.2f} over the last year",
            missing="no purchase in the last year",
        ),
        Feature(
            "margin_365d",
            "float",
            "margin in the last 365 days (a transaction's margin, else amount x the product's "
            "margin_rate, else 0)",
            reason="brought {value:,.2f} of margin over the last year",
        ),
        Feature(
            "spend_trend",
            "float",
            "relative change of net revenue, last 90 days vs the 90 days before: "
            "(last - before) / before, clipped to [-1, +5]; 0 when both are zero or less, "
            "+5 when spending starts from zero",
            reason="spending changed {value:+.0%} on the quarter before",
        ),
        Feature(
            "distinct_categories_365d",
            "int",
            "product categories bought in the last 365 days",
            reason="bought from {value:.0f} product categories in the last year",
        ),
    ),
)


MAX_NAMED_PRODUCTS = 20
"""Largest catalog whose products read as needs and as reasons (a bank's ten products); a
retailer's thousands of product codes are described by categories or behaviour instead."""


def products_read_as_words(product_ids: Iterable[str]) -> bool:
    """Whether holdings of these products can name segments and word reasons.

    True for a small catalog (2 to `MAX_NAMED_PRODUCTS` products) whose ids are words (the
    bank's `savings`, `mortgage`); False for product codes (`22086`, `P01`) or a large catalog.
    """
    ids = [str(p) for p in product_ids]
    return 2 <= len(ids) <= MAX_NAMED_PRODUCTS and not any(re.search(r"\d", p) for p in ids)


def holding_column(product_id: str) -> str:
    """The holdings column of a product: `holds_` + the id with non-word characters as `_`."""
    return "holds_" + re.sub(r"\W", "_", str(product_id))


def holdings_view(product_ids: Iterable[str]) -> View:
    """The holdings view for a product list: one bool column `holds_<product_id>` each.

    Args:
        product_ids: products to give a column, in column order; ids that map to a column
            already taken (they differ only in punctuation) are skipped.
    """
    columns: dict[str, str] = {}
    for product_id in product_ids:
        columns.setdefault(holding_column(product_id), str(product_id))
    return View(
        name="holdings",
        description=(
            "Which products the customer holds: a transaction of the product in the last "
            f"{HOLDING_WINDOW_DAYS} days, or a non-zero balance of that account type in its "
            "latest balance row before the snapshot."
        ),
        features=tuple(
            Feature(
                column,
                "bool",
                f"holds {product_id}",
                reason=f"holds {product_id}: {{value}}",
            )
            for column, product_id in columns.items()
        ),
    )


ENGAGEMENT = View(
    name="engagement",
    description=(
        "Engagement and service from interactions (kinds login, call, complaint, atm_visit, "
        "branch_visit, email_open) and transaction channels; counts are 0 without interactions."
    ),
    features=(
        *_counts("logins", "logins", (30, 90)),
        *_counts("calls", "calls", (30, 90)),
        *_counts("complaints", "complaints", (30, 90)),
        Feature(
            "last_satisfaction",
            "float",
            "latest satisfaction score (1-5) given in the last 365 days (NaN if none)",
            reason="last satisfaction score {value:.0f} of 5",
            missing="no satisfaction score in the last year",
        ),
        Feature(
            "low_satisfaction_90d",
            "int",
            "satisfaction scores of 2 or less (of 5) given in the last 90 days",
            reason="{value:.0f} low satisfaction scores in the last 90 days",
        ),
        Feature(
            "activity_trend",
            "float",
            "relative change of activity, (a + 1) / (b + 1) - 1, where a counts logins, ATM "
            "and branch visits, e-mails opened and transactions in the last 90 days and b the "
            "same in the 90 days before; NaN for customers who signed up less than 180 days ago",
            reason="activity (logins, visits, transactions) {value:+.0%} on the quarter before",
            missing="a new customer (under 180 days): no activity trend yet",
        ),
        *_counts("atm_visits", "ATM visits", (90,)),
        *_counts("branch_visits", "branch visits", (90,)),
        *_counts("email_opens", "e-mails opened", (90,)),
        Feature(
            "digital_share",
            "float",
            "share of transactions in the last 90 days on digital channels (online, mobile, "
            "web, app); NaN without transactions or without a channel column",
            reason="{value:.0%} of transactions in the last 90 days were digital",
            missing="no transactions in the last 90 days",
        ),
    ),
)


def _balance_features() -> tuple[Feature, ...]:
    """balance_<type> and rate_<type> for every account type of `BALANCE_TYPES`."""
    features: list[Feature] = []
    for kind in BALANCE_TYPES:
        label = kind.replace("_", " ")
        features.append(
            Feature(
                f"balance_{kind}",
                "float",
                f"{label} balance in the latest balance row (NaN without that account)",
                reason=(
                    f"owes {{value:,.0f}} on the {label}"
                    if kind in LOAN_TYPES
                    else f"keeps {{value:,.0f}} in {label}"
                ),
                missing=f"no {label} account",
            )
        )
        features.append(
            Feature(
                f"rate_{kind}",
                "float",
                f"{label} annual rate in the latest balance row (NaN if unknown)",
                reason=f"{label} rate of {{value:.2%}}",
                missing=f"no {label} rate on record",
            )
        )
    return tuple(features)


BALANCES = View(
    name="balances",
    description=(
        "Latest balance and rate per account type before the snapshot, total deposits and idle "
        "cash; NaN when the customer has no such account or the data has no balances. Fresh "
        "values arrive through a push source between batch runs."
    ),
    features=(
        *_balance_features(),
        Feature(
            "total_deposits",
            "float",
            "sum of the latest checking, savings and high-yield savings balances (NaN without "
            "any balance row)",
            reason="keeps {value:,.0f} in deposits",
            missing="no deposit accounts",
        ),
        Feature(
            "idle_cash",
            "float",
            f"checking balance above a {IDLE_CASH_BUFFER:,.0f} buffer, at least 0 (NaN without "
            "a checking balance)",
            reason="keeps {value:,.0f} of idle cash in checking",
            missing="no checking account",
        ),
    ),
)

LIFECYCLE = View(
    name="lifecycle",
    description="Lifecycle state and loyalty: repeat purchases, regularity, product adoption.",
    features=(
        Feature(
            "state",
            "str",
            "lifecycle state, first rule that applies: new (signed up < 90 days ago); then by "
            "days since the last purchase (since signup if none): < 90 repeat (also bought in "
            "the 275 days before those 90) or active (did not), < 180 at_risk, < 365 lapsed, "
            "else lost",
            reason="lifecycle state: {value}",
        ),
        Feature(
            "repeat_purchase_count",
            "int",
            "purchase days before the snapshot after the first one (BG/NBD frequency)",
            reason="{value:.0f} repeat purchases",
        ),
        Feature(
            "purchase_regularity",
            "float",
            "share of the last 12 calendar months (counted back from the snapshot, only months "
            "ending after signup) with at least one purchase",
            reason="bought in {value:.0%} of the last 12 months",
        ),
        Feature(
            "months_since_last_new_product",
            "float",
            "months (of 30.44 days) since the customer first used a product they had not used "
            "before, by transaction or balance (NaN if none)",
            reason="last new product {value:.0f} months ago",
            missing="never added a product",
        ),
    ),
)


SCORE_FEATURES: tuple[Feature, ...] = (
    Feature(
        "clv",
        "float",
        "customer lifetime value: discounted expected margin over the CLV horizon (default "
        "12 months) minus the cost to serve (NaN without a purchase to learn from)",
        reason="expected to bring {value:,.0f} of margin over the next year",
    ),
    Feature(
        "p_alive",
        "float",
        "probability the customer is still an active buyer (BG/NBD; NaN without a purchase)",
        reason="{value:.0%} likely to still be an active customer",
    ),
    Feature(
        "expected_purchases_12m",
        "float",
        "expected purchase days in the next 12 months (BG/NBD; NaN without a purchase)",
        reason="expected to buy on {value:.0f} days in the next 12 months",
    ),
    Feature(
        "tier",
        "str",
        "value tier of the customer pyramid: platinum (top 1% by CLV), gold (next 4%), iron "
        "(next 15%), lead (the rest); trailing 12-month margin where CLV is unknown",
        reason="{value} tier customer",
    ),
    Feature(
        "segment_id",
        "int",
        "need segment id, kept stable across retrains (-1 when no segment model exists)",
        reason="in need segment {value}",
    ),
    Feature(
        "segment_name",
        "str",
        "generated name of the need segment ('' when no segment model exists)",
        reason="belongs to the '{value}' segment",
    ),
    Feature(
        "churn_probability",
        "float",
        "calibrated churn probability of the churn champion (NaN without a champion)",
        reason="churn risk of {value:.0%}",
    ),
    *(
        Feature(
            f"recommendation_{rank}",
            "str",
            f"cross-sell product ranked {rank} by the cross-sell champion among products the "
            "customer does not hold ('' when none)",
            reason=f"recommended product {rank}: {{value}}",
        )
        for rank in (1, 2, 3)
    ),
)
"""How each score field a model may publish reads, in the scores table's column order."""

SCORES_DESCRIPTION = (
    "Batch scores written back by `loyal score` at the latest snapshot: lifetime value, "
    "P(alive), value tier, need segment and churn probability of the champion models. Not "
    "built from the contract tables (so not in `VIEWS`): its table lives apart from the "
    "feature tables and is registered once it exists."
)


def scores_view() -> View:
    """The batch scores view, generated from the model specs.

    Its fields are the `score_fields` of every registered model the scores table computes
    (specs without a `batch_scorer` of their own), described by `SCORE_FEATURES`.

    Raises:
        LoyalError: a spec publishes a field `SCORE_FEATURES` does not describe.
    """
    from loyal.errors import LoyalError
    from loyal.specs import MODELS

    published = {
        name: spec.name
        for spec in MODELS.values()
        if spec.batch_scorer is None
        for name in spec.score_fields
    }
    known = {feature.name for feature in SCORE_FEATURES}
    unknown = [f"{model}.{name}" for name, model in published.items() if name not in known]
    if unknown:
        raise LoyalError(
            f"score fields without a description in features.catalog.SCORE_FEATURES: "
            f"{', '.join(unknown)}"
        )
    return View(
        name="scores",
        description=SCORES_DESCRIPTION,
        features=tuple(f for f in SCORE_FEATURES if f.name in published),
    )


SCORES = scores_view()
"""The batch scores view (`pipelines.scores` writes it; the API reads tier, segment and CLV)."""


def views_for(product_ids: Iterable[str] = SAMPLE_BANK_PRODUCTS) -> dict[str, View]:
    """The catalog with the holdings view built for a product list.

    Args:
        product_ids: products that get a `holds_<product_id>` column.
    """
    return {
        "profile": PROFILE,
        "rfm": RFM,
        "holdings": holdings_view(product_ids),
        "engagement": ENGAGEMENT,
        "balances": BALANCES,
        "lifecycle": LIFECYCLE,
    }


VIEWS: dict[str, View] = views_for(SAMPLE_BANK_PRODUCTS)
"""Every view by name; holdings registered for the sample bank's products."""


def feature(name: str) -> Feature:
    """Look a feature up by name across all views."""
    for view in VIEWS.values():
        for f in view.features:
            if f.name == name:
                return f
    raise KeyError(name)
