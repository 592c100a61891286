"""Offer catalog: the declarative schema of next-best-action offers, its templates and validation.

A catalog is plain data (YAML): offers with eligibility conditions on named values, a value model,
a message template and a contact policy. Conditions are `{field, op, value}` triples evaluated
through the explicit `OPS` table (never `eval`); template fields are features, model scores,
catalog constants or functions registered in `FUNCTIONS`. Everything a catalog names is checked
when it is loaded, and every problem is a `CatalogError` naming the offer and the field.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import operator
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, cast, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from loyal.errors import LoyalError
from loyal.products import BALANCE_TYPES, SAMPLE_BANK_PRODUCTS

Kind = Literal["cross_sell", "up_sell", "retention", "win_back", "service"]
Tier = Literal["platinum", "gold", "iron", "lead"]
Trigger = Literal["rules", "als"]

DEFAULT_CHANNELS: tuple[str, ...] = ("atm", "web", "mobile", "call_center", "branch", "email")
"""The channels of a catalog that declares none (the sample bank's)."""
KINDS: tuple[str, ...] = get_args(Kind)
TIERS: tuple[str, ...] = get_args(Tier)
"""Value tiers, best first (the customer pyramid)."""

SELLING_KINDS = frozenset({"cross_sell", "up_sell"})
"""Kinds that sell a product: never offered to a customer who already holds it."""

SCORE_FIELDS = frozenset(
    {"churn_probability", "churn_reasons", "clv", "expected_loss", "tier", "segment", "segment_id"}
)
"""Model scores the policy adds to a customer's features under these names; `expected_loss` is
churn_probability x max(clv, 0), the value at stake (the churn list ranks by it too)."""

PRODUCT_FIELDS = frozenset({"product_id", "product_name"})
"""Names of the product an offer sells, set per candidate: the id, and its name from the
products table (the id when the table has no name for it)."""

ANY_PRODUCT = "*"
"""`product_id` of a generic cross-sell offer: any product the cross-sell model recommends that
no other offer of the catalog sells."""

PROTECTED_FIELDS = (
    SCORE_FIELDS
    | PRODUCT_FIELDS
    | frozenset({"segment_name", "p_alive", "consent_marketing", "n_products_held"})
)
"""Names a request's context may never override: scores, consent, the offered product and what
they derive from. Any name starting with `consent` or `holds_` is protected too (see
`is_protected`)."""

DEFAULT_FEATURE_NAMES: frozenset[str] = frozenset(
    {
        *(f"holds_{p}" for p in SAMPLE_BANK_PRODUCTS),
        *(f"balance_{t}" for t in BALANCE_TYPES),
        *(f"rate_{t}" for t in BALANCE_TYPES),
        "total_deposits",
        "idle_cash",
        *(f"{kind}_{days}d" for kind in ("logins", "calls", "complaints") for days in (30, 90)),
        "last_satisfaction",
        "digital_share",
        "recency_days",
        *(f"frequency_{days}d" for days in (30, 90, 365)),
        *(f"monetary_{days}d" for days in (30, 90, 365)),
        "avg_basket_365d",
        "margin_365d",
        "spend_trend",
        "distinct_categories_365d",
        "atm_visits_90d",
        "branch_visits_90d",
        "email_opens_90d",
        "repeat_purchase_count",
        "purchase_regularity",
        "months_since_last_new_product",
        "tenure_days",
        "age",
        "age_band",
        "consent_marketing",
        "n_products_held",
        "region",
        "state",
    }
)
"""Online feature names the sample bank serves; pass the feature catalog's names to override
(`Vocabulary.features`)."""

DEFAULT_CATALOG_PATH = Path(__file__).with_name("offer_catalog.yaml")
"""The catalog shipped for the sample bank."""
RETAIL_CATALOG_PATH = Path(__file__).with_name("retail_catalog.yaml")
"""The catalog shipped for retailers (any business selling products, no bank accounts)."""
SHIPPED_CATALOGS: dict[str, Path] = {"bank": DEFAULT_CATALOG_PATH, "retail": RETAIL_CATALOG_PATH}
"""Catalogs shipped with Loyal, by the name `serving.catalog` and the presets use."""
DEFAULT_CATALOG = "bank"

_VALUE_TAGS = frozenset({"fixed", "margin_rate", "retention"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OFFER_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_CHANNEL = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"

ChannelName = Annotated[str, Field(pattern=_CHANNEL)]
"""A channel name: letters, digits, '_', '.', '-' (at most 64); the catalog declares which."""


class CatalogError(LoyalError):
    """The offer catalog is invalid: the message names the offer, the field and the problem."""

    def __init__(self, offer_id: str | None, field: str, problem: str) -> None:
        self.offer_id = offer_id
        self.field = field
        self.problem = problem
        where = f"offer '{offer_id}'" if offer_id is not None else "catalog"
        super().__init__(f"{where} {field}: {problem}" if field else f"{where}: {problem}")


# --- values --------------------------------------------------------------------------------------


def is_missing(value: Any) -> bool:
    """Whether a feature value is absent: None, NaN or a pandas/numpy missing marker."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return True


def number(value: Any) -> float | None:
    """A value as a finite float, or None when it is missing or not a number."""
    if is_missing(value) or isinstance(value, str):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def truthy(value: Any) -> bool:
    """Truth of a feature value: numbers and booleans as usual, strings like 'true'/'yes'."""
    if isinstance(value, str):
        return value.strip().lower() in {"true", "t", "yes", "y", "1"}
    return bool(value)


def _in(actual: Any, allowed: Any) -> bool:
    return actual in allowed


def _not_in(actual: Any, allowed: Any) -> bool:
    return actual not in allowed


def _is_true(actual: Any, _unused: Any) -> bool:
    return truthy(actual)


def _is_false(actual: Any, _unused: Any) -> bool:
    return not truthy(actual)


OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": _in,
    "not_in": _not_in,
    "is_true": _is_true,
    "is_false": _is_false,
}
"""Every condition operator and the function that applies it: the only way a condition runs."""

UNARY_OPS = frozenset({"is_true", "is_false"})
LIST_OPS = frozenset({"in", "not_in"})
ORDER_OPS = frozenset({"<", "<=", ">", ">="})


# --- formatting and templates --------------------------------------------------------------------


def _plain(value: Any) -> str:
    """A value for people: strings as they are, numbers without noise digits."""
    if isinstance(value, (str, bool)):
        return str(value)
    x = number(value)
    if x is None:
        return str(value)
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:,.4f}".rstrip("0").rstrip(".")


def _half_up(x: float) -> int:
    """Round half away from zero, as people expect money to round."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def format_money(value: Any) -> str:
    """Whole dollars with thousands separators: 5000 -> '$5,000', -12.5 -> '-$13'."""
    x = _numeric(value)
    rounded = _half_up(x)
    return f"-${-rounded:,}" if rounded < 0 else f"${rounded:,}"


def format_percent(value: Any) -> str:
    """A fraction as a percentage with up to two decimals: 0.041 -> '4.1%', 0.01 -> '1%'."""
    x = _numeric(value) * 100
    return f"{x:.2f}".rstrip("0").rstrip(".") + "%"


def _whole(value: Any) -> str:
    """A whole number with thousands separators: 3.0 -> '3', 12345.6 -> '12,346'."""
    return f"{_half_up(_numeric(value)):,}"


def _numeric(value: Any) -> float:
    x = number(value)
    if x is None:
        raise TypeError(f"{value!r} is not a number")
    return x


FORMATS: dict[str, Callable[[Any], str]] = {
    "": _plain,
    "$": format_money,
    "%": format_percent,
    "n": _whole,
}
"""Template format specs: none (as is), `$` money, `%` percent of a fraction, `n` whole number."""


class TemplateError(ValueError):
    """A template is malformed: unbalanced braces, a field that is not a plain name, a bad spec."""


class RenderError(Exception):
    """A template field has no value for this customer (missing or not a number)."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"{name} {problem}")


@dataclass(frozen=True)
class Template:
    """A parsed message template: literal text and `{name:spec}` fields."""

    text: str
    parts: tuple[tuple[str, str | None, str], ...]

    @property
    def fields(self) -> tuple[str, ...]:
        """Names of the template's fields, in order of appearance."""
        return tuple(name for _, name, _ in self.parts if name is not None)

    def render(self, values: Mapping[str, Any]) -> str:
        """Fill the fields from `values` (missing values raise `RenderError`)."""
        out: list[str] = []
        for literal, name, spec in self.parts:
            out.append(literal)
            if name is None:
                continue
            value = values.get(name)
            if is_missing(value):
                raise RenderError(name, "is missing")
            try:
                out.append(FORMATS[spec](value))
            except (TypeError, ValueError, OverflowError):
                raise RenderError(name, f"cannot be formatted as {spec!r}: {value!r}") from None
        return "".join(out)


@lru_cache(maxsize=2048)
def parse_template(text: str) -> Template:
    """Parse a template, accepting only `{name}` and `{name:spec}` with a spec of `FORMATS`.

    Raises:
        TemplateError: unbalanced braces, positional or dotted fields, conversions, unknown specs.
    """
    try:
        raw = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"malformed template ({exc})") from None
    parts: list[tuple[str, str | None, str]] = []
    for literal, name, spec, conversion in raw:
        if name is None:
            parts.append((literal, None, ""))
            continue
        if not _NAME.match(name):
            raise TemplateError(f"field {{{name}}} is not a plain name")
        if conversion is not None:
            raise TemplateError(f"field {{{name}!{conversion}}}: conversions are not allowed")
        spec = spec or ""
        if spec not in FORMATS:
            allowed = ", ".join(repr(s) for s in FORMATS)
            raise TemplateError(f"field {{{name}}}: unknown format {spec!r} (allowed: {allowed})")
        parts.append((literal, name, spec))
    return Template(text, tuple(parts))


# --- registered template functions ---------------------------------------------------------------

ValueFunction = Callable[[Mapping[str, Any], Mapping[str, float]], Any]


@dataclass(frozen=True)
class TemplateFunction:
    """A named value computed from a customer's values and the catalog constants.

    Attributes:
        fn: `fn(values, constants)`; returns None when an input is missing.
        constants: catalog constants it reads (checked at catalog load).
        customer_data: whether it reads the customer's features or scores.
        description: what it computes, for people.
    """

    fn: ValueFunction
    constants: tuple[str, ...] = ()
    customer_data: bool = True
    description: str = ""


FUNCTIONS: dict[str, TemplateFunction] = {}
"""Registry of template/condition functions: name -> function."""


def register_function(
    name: str,
    *,
    constants: Sequence[str] = (),
    customer_data: bool = True,
    description: str = "",
    registry: dict[str, TemplateFunction] | None = None,
) -> Callable[[ValueFunction], ValueFunction]:
    """Decorator registering `fn(values, constants)` under `name` for catalogs to use."""
    target = FUNCTIONS if registry is None else registry

    def add(fn: ValueFunction) -> ValueFunction:
        if not _NAME.match(name):
            raise ValueError(f"function name {name!r} is not a plain name")
        target[name] = TemplateFunction(fn, tuple(constants), customer_data, description)
        return fn

    return add


def _all_numbers(*values: Any) -> list[float] | None:
    numbers = [number(v) for v in values]
    return None if any(x is None for x in numbers) else [x for x in numbers if x is not None]


Arithmetic = Literal["x", "-"]
ARITHMETIC: dict[Arithmetic, Callable[[float, float], float]] = {
    "x": operator.mul,
    "-": operator.sub,
}
"""Operators of a derived amount, by the symbol its description shows."""


@dataclass(frozen=True)
class DerivedAmount:
    """A template function `left <op> right` of two named numbers; None when either is missing.

    Attributes:
        left: the first operand's name.
        op: the operator, a symbol of `ARITHMETIC`.
        right: the second operand's name.
        meaning: what the amount is, for people (the description follows the formula with it).
        constants: catalog constants it reads, directly or through a function it reads; an operand
            named here is read from the constants, any other from the customer's values.
    """

    left: str
    op: Arithmetic
    right: str
    meaning: str
    constants: tuple[str, ...] = ()

    def __call__(self, values: Mapping[str, Any], constants: Mapping[str, float]) -> float | None:
        """The amount for one customer, or None when an operand is missing or not a number."""
        operands = (self.left, self.right)
        xs = _all_numbers(
            *(constants.get(n) if n in self.constants else values.get(n) for n in operands)
        )
        return None if xs is None else ARITHMETIC[self.op](xs[0], xs[1])

    @property
    def description(self) -> str:
        """The formula, then its meaning: `left op right: meaning`."""
        return f"{self.left} {self.op} {self.right}: {self.meaning}"


DERIVED_AMOUNTS: dict[str, DerivedAmount] = {
    "annual_interest": DerivedAmount(
        "idle_cash",
        "x",
        "high_yield_savings_rate",
        meaning="a year's interest on the idle cash",
        constants=("high_yield_savings_rate",),
    ),
    "rate_drop": DerivedAmount(
        "rate_mortgage",
        "-",
        "mortgage_rate_now",
        meaning="how far market rates fell below the loan's",
        constants=("mortgage_rate_now",),
    ),
    "refi_saving": DerivedAmount(
        "balance_mortgage",
        "x",
        "rate_drop",
        meaning="a year's interest saved by refinancing",
        constants=("mortgage_rate_now",),
    ),
}
"""The registered functions that are one arithmetic step on two named numbers, by name."""

for _name, _amount in DERIVED_AMOUNTS.items():
    register_function(_name, constants=_amount.constants, description=_amount.description)(_amount)


@register_function(
    "top_churn_reason",
    description="the churn model's first reason, else the churn probability in words",
)
def top_churn_reason(values: Mapping[str, Any], constants: Mapping[str, float]) -> str | None:
    """The churn model's strongest reason for this customer, in words."""
    reasons = values.get("churn_reasons")
    if isinstance(reasons, Sequence) and not isinstance(reasons, str) and reasons:
        return str(reasons[0])
    p = number(values.get("churn_probability"))
    return None if p is None else f"churn probability {format_percent(p)}"


class Values(Mapping[str, Any]):
    """A customer's named values: facts (features and scores), then constants, then functions.

    Missing facts (None, NaN) read as absent; functions are computed once, on first use.
    """

    def __init__(
        self,
        facts: Mapping[str, Any],
        constants: Mapping[str, float],
        functions: Mapping[str, TemplateFunction] | None = None,
    ) -> None:
        self._facts = facts
        self._constants = constants
        self._functions = FUNCTIONS if functions is None else functions
        self._cache: dict[str, Any] = {}
        self._busy: set[str] = set()

    def get(self, name: str, default: Any = None) -> Any:
        """The value of `name`, or `default` when it is missing or unknown."""
        if name in self._facts:
            value = self._facts[name]
            return default if is_missing(value) else value
        if name in self._constants:
            return self._constants[name]
        value = self._cache[name] if name in self._cache else self._compute(name)
        return default if is_missing(value) else value

    def _compute(self, name: str) -> Any:
        function = self._functions.get(name)
        if function is None or name in self._busy:
            return None
        self._busy.add(name)
        try:
            value = function.fn(self, self._constants)
        except (TypeError, ValueError, ArithmeticError, LookupError):
            value = None
        finally:
            self._busy.discard(name)
        self._cache[name] = value
        return value

    def __getitem__(self, name: str) -> Any:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(self._facts), **dict.fromkeys(self._constants)})

    def __len__(self) -> int:
        return len(set(self._facts) | set(self._constants))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None


# --- catalog schema ------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContextField(_Strict):
    """A fresh fact a channel may send with a request, overriding the feature store once.

    Attributes:
        type: `number` (a finite number) or `bool` (true or false).
        min: smallest number accepted (numbers only).
        max: largest number accepted (numbers only).
        says: what the fact is, for the API documentation.
    """

    type: Literal["number", "bool"] = "number"
    min: float | None = None
    max: float | None = None
    says: str = ""

    def check(self, value: Any) -> str | None:
        """None when `value` is acceptable, else what is wrong with it."""
        if self.type == "bool":
            return None if isinstance(value, bool) else "must be true or false"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
        if not math.isfinite(value):
            return "must be a finite number"
        if self.min is not None and value < self.min:
            return f"must be at least {self.min:g}"
        if self.max is not None and value > self.max:
            return f"must be at most {self.max:g}"
        return None


def is_protected(name: str) -> bool:
    """Whether a request's context may never set this name (scores, consent, holdings)."""
    return name in PROTECTED_FIELDS or name.startswith(("consent", "holds_"))


class Condition(_Strict):
    """One eligibility rule: `field op value`, or `field op field_ref + offset`.

    Attributes:
        field: a feature, score, constant or registered function.
        op: one of `OPS`.
        value: the literal to compare with: a list for `in`/`not_in`, none for `is_true` and
            `is_false`.
        field_ref: another named value to compare with instead of a literal.
        offset: added to the `field_ref` value (e.g. "rate above market + 1 point").
        says: how the fact reads when it holds, a template (default: generated from the rule).
    """

    field: str
    op: str
    value: Any = None
    field_ref: str | None = None
    offset: float = 0.0
    says: str | None = None

    @field_validator("op")
    @classmethod
    def _known_op(cls, op: str) -> str:
        if op not in OPS:
            raise ValueError(f"unknown operator {op!r} (allowed: {', '.join(OPS)})")
        return op

    @field_validator("says")
    @classmethod
    def _parsable(cls, says: str | None) -> str | None:
        if says is not None:
            parse_template(says)
        return says

    @model_validator(mode="after")
    def _operands(self) -> Condition:
        has_value, has_ref = self.value is not None, self.field_ref is not None
        if self.op in UNARY_OPS:
            if has_value or has_ref:
                raise ValueError(f"operator {self.op!r} takes no value or field_ref")
        elif self.op in LIST_OPS:
            if has_ref or not isinstance(self.value, (list, tuple)) or not self.value:
                raise ValueError(f"operator {self.op!r} needs a non-empty list as value")
            object.__setattr__(self, "value", tuple(self.value))
        elif has_value == has_ref:
            raise ValueError(f"operator {self.op!r} needs exactly one of value or field_ref")
        elif has_value and self.op in ORDER_OPS and number(self.value) is None:
            raise ValueError(f"operator {self.op!r} needs a number as value, got {self.value!r}")
        elif has_value and isinstance(self.value, (list, tuple, dict)):
            raise ValueError(f"operator {self.op!r} needs a single value, got {self.value!r}")
        if self.offset and not has_ref:
            raise ValueError("offset only applies with field_ref")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        """Named values the condition reads."""
        return (self.field,) if self.field_ref is None else (self.field, self.field_ref)

    def evaluate(self, values: Mapping[str, Any]) -> tuple[bool, str]:
        """Whether the condition holds for `values`, and the fact in words.

        Missing inputs never hold: a rule cannot be shown true without the data.
        """
        actual = values.get(self.field)
        if is_missing(actual):
            return False, f"{self.field} is missing"
        target, target_words = self._target(values)
        if target_words is None:
            return False, f"{self.field_ref} is missing"
        try:
            held = bool(OPS[self.op](actual, target))
        except (TypeError, ValueError):
            return False, f"{self.field} = {_plain(actual)} cannot be compared with {target!r}"
        if held and self.says:
            with contextlib.suppress(RenderError):
                return held, parse_template(self.says).render(values)
        return held, self._words(actual, target_words, held)

    def _target(self, values: Mapping[str, Any]) -> tuple[Any, str | None]:
        if self.op in UNARY_OPS:
            return None, ""
        if self.field_ref is None:
            if isinstance(self.value, tuple):
                return self.value, "[" + ", ".join(_plain(v) for v in self.value) + "]"
            return self.value, _plain(self.value)
        ref = values.get(self.field_ref)
        if is_missing(ref):
            return None, None
        if not self.offset:
            return ref, f"{self.field_ref} {_plain(ref)}"
        ref_number = number(ref)
        if ref_number is None:
            return None, None
        target = ref_number + self.offset
        return target, f"{_plain(target)} ({self.field_ref} {_plain(ref)} + {_plain(self.offset)})"

    def _words(self, actual: Any, target_words: str, held: bool) -> str:
        if self.op in UNARY_OPS:
            truth = "true" if truthy(actual) else "false"
            return f"{self.field} is {truth}"
        op = self.op.replace("_", " ")
        return f"{self.field} = {_plain(actual)} {'' if held else 'not '}{op} {target_words}"


class FixedValue(_Strict):
    """A fixed value to the business when the offer is accepted."""

    model: Literal["fixed"]
    amount: float = Field(ge=0)

    @property
    def names(self) -> tuple[str, ...]:
        """Named values the model reads."""
        return ()

    def compute(self, values: Mapping[str, Any]) -> float | None:
        """The value for one customer."""
        return self.amount


class MarginRateValue(_Strict):
    """A margin rate on an amount of the customer's, e.g. 2% of the idle cash moved."""

    model: Literal["margin_rate"]
    field: str
    rate: float = Field(gt=0, le=1)

    @property
    def names(self) -> tuple[str, ...]:
        """Named values the model reads."""
        return (self.field,)

    def compute(self, values: Mapping[str, Any]) -> float | None:
        """The value for one customer; None when the amount is missing."""
        amount = number(values.get(self.field))
        return None if amount is None else max(amount, 0.0) * self.rate


class RetentionValue(_Strict):
    """CLV saved: churn_probability x clv x save_rate (the share of the loss an offer saves)."""

    model: Literal["retention"]
    save_rate: float = Field(default=0.5, gt=0, le=1)

    @property
    def names(self) -> tuple[str, ...]:
        """Named values the model reads."""
        return ("churn_probability", "clv")

    def compute(self, values: Mapping[str, Any]) -> float | None:
        """The value for one customer; None without a churn probability or CLV."""
        p, clv = number(values.get("churn_probability")), number(values.get("clv"))
        if p is None or clv is None:
            return None
        return p * max(clv, 0.0) * self.save_rate


ValueModel = Annotated[FixedValue | MarginRateValue | RetentionValue, Field(discriminator="model")]


class ContactPolicy(_Strict):
    """How often one offer may reach one customer.

    Attributes:
        cooldown_days: no repeat within this many days of the last contact with the offer.
        decline_cooldown_days: suppression after a decline (default: `cooldown_days`).
        max_per_period: at most this many contacts with the offer per period (None: no cap).
        period_days: the period of `max_per_period`.
    """

    cooldown_days: float = Field(default=30, ge=0)
    decline_cooldown_days: float | None = Field(default=None, ge=0)
    max_per_period: int | None = Field(default=None, ge=1)
    period_days: float = Field(default=90, gt=0)

    @property
    def decline_days(self) -> float:
        """Days an offer stays suppressed after the customer declined it."""
        if self.decline_cooldown_days is None:
            return self.cooldown_days
        return self.decline_cooldown_days


def unique_channels(channels: tuple[str, ...]) -> tuple[str, ...]:
    """The channels as given, refused when one is listed twice (offers and catalogs alike)."""
    repeated = sorted({c for c in channels if channels.count(c) > 1})
    if repeated:
        raise ValueError(f"channel listed twice: {', '.join(repeated)}")
    return channels


class Offer(_Strict):
    """One action the policy may choose.

    Attributes:
        id: unique id, also the action id in answers and in the contact history.
        kind: cross_sell, up_sell, retention, win_back (customers already lapsed or lost,
            `models.nba.LAPSED_STATES`) or service.
        product_id: the product sold or kept (required for cross_sell and up_sell); `*` with
            trigger `als` makes a generic cross-sell offer: any recommended product no other
            offer sells, named in the message by `{product_name}`.
        title: a short label for people.
        channels: where the offer may be made (among the catalog's channels).
        cost: cost to the business of making it (incentives, fees waived, agent time).
        value: how its value to the business is computed when accepted.
        p_accept: base acceptance probability.
        segment_weights: need segment -> multiplier of the offer's worth; a key matches the
            segment id, its full name, or words of its name ("savers" matches "affluent
            savers"; several matching words multiply).
        eligibility: conditions that must all hold.
        message: template of what the channel shows or the agent says.
        contact: cooldown and per-period cap of this offer.
        tiers: tiers the offer is allowed for (None: all).
        min_tier: lowest tier allowed (None: all).
        max_clv_share: cost may be at most this share of the customer's CLV.
        trigger: `rules` (candidate when eligible) or `als` (only when the cross-sell model
            recommends its product).
        cold_start: offered to unknown customers; must not use customer data in message or value.
        marketing: needs marketing consent (default: every kind but service).
    """

    id: str
    kind: Kind
    product_id: str | None = None
    title: str = ""
    channels: tuple[ChannelName, ...] = Field(min_length=1)
    cost: float = Field(ge=0)
    value: ValueModel
    p_accept: float = Field(ge=0, le=1)
    segment_weights: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    eligibility: tuple[Condition, ...] = ()
    message: str
    contact: ContactPolicy = ContactPolicy()
    tiers: tuple[Tier, ...] | None = None
    min_tier: Tier | None = None
    max_clv_share: float | None = Field(default=None, gt=0)
    trigger: Trigger = "rules"
    cold_start: bool = False
    marketing: bool | None = None

    @field_validator("id")
    @classmethod
    def _id_chars(cls, offer_id: str) -> str:
        if not _OFFER_ID.match(offer_id):
            raise ValueError(f"id {offer_id!r} may only hold letters, digits, '_', '.', '-'")
        return offer_id

    @field_validator("message")
    @classmethod
    def _parsable(cls, message: str) -> str:
        parse_template(message)
        return message

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, channels: tuple[str, ...]) -> tuple[str, ...]:
        return unique_channels(channels)

    @model_validator(mode="after")
    def _product_rules(self) -> Offer:
        if self.kind in SELLING_KINDS and not self.product_id:
            raise ValueError(f"a {self.kind} offer needs a product_id")
        if self.trigger == "als" and (self.kind not in SELLING_KINDS or not self.product_id):
            raise ValueError("trigger 'als' needs a cross_sell or up_sell offer with a product_id")
        if self.product_id == ANY_PRODUCT and self.trigger != "als":
            raise ValueError(
                f"product_id {ANY_PRODUCT!r} (any recommended product) needs trigger 'als'"
            )
        return self

    @property
    def is_generic(self) -> bool:
        """Whether the offer sells any recommended product (`product_id: '*'`)."""
        return self.product_id == ANY_PRODUCT

    @property
    def is_marketing(self) -> bool:
        """Whether the offer needs the customer's marketing consent."""
        return self.kind != "service" if self.marketing is None else self.marketing

    @property
    def template(self) -> Template:
        """The parsed message template."""
        return parse_template(self.message)

    def segment_weight(self, segment_id: Any = None, segment_name: Any = None) -> float:
        """The weight of a need segment: exact id or name first, else matching words, else 1."""
        weights = self.segment_weights
        if not weights:
            return 1.0
        for key in (segment_id, segment_name):
            if key is not None and str(key) in weights:
                return weights[str(key)]
        if not isinstance(segment_name, str):
            return 1.0
        words = f" {_words(segment_name)} "
        weight = 1.0
        for key, factor in weights.items():
            if f" {_words(key)} " in words:
                weight *= factor
        return weight

    def allows_tier(self, tier: str | None) -> bool:
        """Whether the offer's tier rules admit `tier` (None: unknown tier)."""
        if self.tiers is None and self.min_tier is None:
            return True
        if tier not in TIERS:
            return False
        if self.tiers is not None and tier not in self.tiers:
            return False
        return self.min_tier is None or TIERS.index(tier) <= TIERS.index(self.min_tier)


def _default_caps() -> dict[Tier, float]:
    return {"platinum": 500.0, "gold": 200.0, "iron": 75.0, "lead": 25.0}


class SpendPolicy(_Strict):
    """How much may be spent on one offer to one customer, by value tier.

    Key customers' loss is fought hard, small customers' only where cheap.
    """

    caps: dict[Tier, Annotated[float, Field(ge=0)]] = Field(default_factory=_default_caps)
    unknown_tier: float = Field(default=25.0, ge=0)

    def cap(self, tier: str | None) -> float:
        """The cost cap for a tier (unknown tiers get `unknown_tier`)."""
        caps = cast(dict[str, float], self.caps)
        return caps.get(tier or "", self.unknown_tier)


class CustomerContactCaps(_Strict):
    """Marketing contacts per customer across all offers (service actions do not count)."""

    max_per_period: int | None = Field(default=None, ge=1)
    period_days: float = Field(default=7, gt=0)


class AlsPolicy(_Strict):
    """How cross-sell recommendations lift acceptance: rank 1 gets `lift_by_rank[0]`, and so on."""

    lift_by_rank: tuple[Annotated[float, Field(gt=0)], ...] = (1.5, 1.3, 1.15)

    def lift(self, rank: int | None) -> float:
        """The acceptance multiplier of an ALS rank (1-based; None or beyond the list: 1)."""
        if rank is None or rank < 1 or rank > len(self.lift_by_rank):
            return 1.0
        return self.lift_by_rank[rank - 1]


class Catalog(_Strict):
    """A validated offer catalog: its channels, constants, spend and contact rules, context
    fields, the offers.

    `context` lists the only facts a request may send fresher than the feature store (say,
    the balance an ATM just read); scores, tier, CLV, segment, holdings and consent never.

    Attributes:
        channels: where answers may be asked for; every offer's channels are among them
            (default: `DEFAULT_CHANNELS`, the sample bank's).
    """

    version: int = 1
    description: str = ""
    channels: tuple[ChannelName, ...] = Field(default=DEFAULT_CHANNELS, min_length=1)
    constants: dict[str, float] = Field(default_factory=dict)
    spend: SpendPolicy = SpendPolicy()
    contact: CustomerContactCaps = CustomerContactCaps()
    als: AlsPolicy = AlsPolicy()
    context: dict[str, ContextField] = Field(default_factory=dict)
    offers: tuple[Offer, ...] = Field(min_length=1)

    _by_id: dict[str, Offer] = PrivateAttr(default_factory=dict)
    _by_product: dict[str, tuple[Offer, ...]] = PrivateAttr(default_factory=dict)
    _generic: tuple[Offer, ...] = PrivateAttr(default=())
    _reason_channels: frozenset[str] = PrivateAttr(default_factory=frozenset)

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, channels: tuple[str, ...]) -> tuple[str, ...]:
        return unique_channels(channels)

    def model_post_init(self, context: Any, /) -> None:
        """Index the offers by id and by product, and the channels that show churn reasons."""
        self._by_id = {o.id: o for o in self.offers}
        self._reason_channels = frozenset(
            channel for o in self.offers if _reads_churn_reasons(o) for channel in o.channels
        )
        products: dict[str, list[Offer]] = {}
        for o in self.offers:
            if o.product_id and o.kind in SELLING_KINDS and not o.is_generic:
                products.setdefault(o.product_id, []).append(o)
        self._by_product = {p: tuple(os) for p, os in products.items()}
        self._generic = tuple(o for o in self.offers if o.is_generic)

    def offer(self, offer_id: str) -> Offer | None:
        """The offer with this id, or None."""
        return self._by_id.get(offer_id)

    def selling(self, product_id: str) -> tuple[Offer, ...]:
        """Cross-sell and up-sell offers of a product (generic offers left out)."""
        return self._by_product.get(product_id, ())

    @property
    def generic(self) -> tuple[Offer, ...]:
        """Generic cross-sell offers: any recommended product that no offer sells."""
        return self._generic

    def missing_names(self, available: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """Offers that read features the data does not have, and those features.

        Scores, constants, registered functions and product fields always count as present;
        a function's own inputs are not declared, so only the names an offer writes are checked.
        Such offers never hold (a condition on a missing value is false) or cannot be valued or
        worded, so the policy never chooses them.

        Args:
            available: the feature names the online store serves.

        Returns:
            Offer id -> the missing feature names, in the order the offer names them.
        """
        have = set(available) | SCORE_FIELDS | PRODUCT_FIELDS | set(self.constants)
        missing: dict[str, tuple[str, ...]] = {}
        for offer in self.offers:
            names = [n for n in _offer_names(offer) if n not in have and n not in FUNCTIONS]
            if names:
                missing[offer.id] = tuple(dict.fromkeys(names))
        return missing

    def reads_churn_reasons(self, channel: str) -> bool:
        """Whether an offer of this channel could show the churn model's reasons.

        Retention offers carry them in their reasons; any offer may name them in a condition,
        a `says` or its message. Other channels' offers never reach those stages, so a caller
        may skip computing reasons (the costly part of churn scoring) when this is False.
        """
        return channel in self._reason_channels


_CHURN_REASON_NAMES = frozenset({"churn_reasons", "top_churn_reason"})


def _reads_churn_reasons(offer: Offer) -> bool:
    if isinstance(offer.value, RetentionValue):
        return True
    return bool(set(_offer_names(offer)) & _CHURN_REASON_NAMES)


def _offer_names(offer: Offer) -> list[str]:
    """Every name an offer reads: conditions (and their `says`), value and message."""
    names: list[str] = []
    for condition in offer.eligibility:
        names.extend(condition.names)
        if condition.says is not None:
            names.extend(parse_template(condition.says).fields)
    names.extend(offer.value.names)
    names.extend(offer.template.fields)
    return names


# --- loading and validation ----------------------------------------------------------------------


@dataclass(frozen=True)
class Vocabulary:
    """The names a catalog is checked against when it is loaded.

    Attributes:
        features: online feature names conditions and templates may use (default:
            `DEFAULT_FEATURE_NAMES`); pass the feature catalog's names in production.
        functions: registered functions (default: `FUNCTIONS`).
    """

    features: frozenset[str] = DEFAULT_FEATURE_NAMES
    functions: Mapping[str, TemplateFunction] = field(default_factory=lambda: FUNCTIONS)


DEFAULT_VOCABULARY = Vocabulary()
"""The sample bank's online features and the registered functions."""


def load_catalog(
    path: str | Path | None = None, *, vocabulary: Vocabulary = DEFAULT_VOCABULARY
) -> Catalog:
    """Read and validate a YAML catalog (default: the sample bank's, shipped with the package).

    Args:
        path: the YAML file, or the name of a shipped catalog (`SHIPPED_CATALOGS`).
        vocabulary: the features and functions the catalog may name.

    Raises:
        CatalogError: unreadable file, bad YAML, or an invalid catalog.
    """
    if isinstance(path, str) and path in SHIPPED_CATALOGS:
        path = SHIPPED_CATALOGS[path]
    source = Path(path) if path is not None else DEFAULT_CATALOG_PATH
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(None, "file", f"cannot read {source}: {exc.strerror or exc}") from None
    return catalog_from_yaml(text, vocabulary=vocabulary)


def choose_catalog(
    path: Path | None, name: str | None, recorded: str | None = None
) -> tuple[Path, str]:
    """Which catalog a home uses, and why: a path, else a shipped name, else the data's choice.

    Args:
        path: `serving.catalog_path`, the user's own catalog (wins).
        name: `serving.catalog`, the name of a shipped catalog.
        recorded: the shipped catalog the loaded data calls for (its ingest preset, or the
            kind of data), if known.

    Returns:
        The catalog file and a few words on why it was chosen.

    Raises:
        CatalogError: `name` (or `recorded`) is not a shipped catalog.
    """
    if path is not None:
        return Path(path), "serving.catalog_path"
    for chosen, why in ((name, "serving.catalog"), (recorded, "the loaded data")):
        if chosen is None:
            continue
        if chosen not in SHIPPED_CATALOGS:
            known = ", ".join(SHIPPED_CATALOGS)
            raise CatalogError(None, why, f"no shipped catalog {chosen!r} (choose one of {known})")
        return SHIPPED_CATALOGS[chosen], f"{chosen} ({why})"
    return SHIPPED_CATALOGS[DEFAULT_CATALOG], f"{DEFAULT_CATALOG} (default)"


def catalog_from_yaml(text: str, *, vocabulary: Vocabulary = DEFAULT_VOCABULARY) -> Catalog:
    """Parse and validate a catalog from YAML text.

    Args:
        text: the YAML text.
        vocabulary: the features and functions the catalog may name.

    Raises:
        CatalogError: bad YAML or an invalid catalog.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CatalogError(None, "yaml", f"not valid YAML{where}: {problem}") from None
    return catalog_from_dict(data, vocabulary=vocabulary)


def catalog_from_dict(data: Any, *, vocabulary: Vocabulary = DEFAULT_VOCABULARY) -> Catalog:
    """Validate a catalog given as plain data (as parsed from YAML).

    Args:
        data: the catalog mapping.
        vocabulary: the features and functions the catalog may name.

    Raises:
        CatalogError: the first problem, naming the offer (by id) and the field.
    """
    if not isinstance(data, Mapping):
        raise CatalogError(None, "", f"must be a mapping with 'offers', got {type(data).__name__}")
    raw_offers = data.get("offers")
    if not isinstance(raw_offers, list) or not raw_offers:
        raise CatalogError(None, "offers", "must be a non-empty list of offers")
    offers = _parse_offers(raw_offers)
    try:
        catalog = Catalog.model_validate({**data, "offers": offers})
    except ValidationError as exc:
        field, problem = _explain(exc)
        raise CatalogError(None, field, problem) from None
    _check_constants(catalog, vocabulary)
    _check_context(catalog, vocabulary.features)
    for offer in catalog.offers:
        _check_offer(offer, catalog, vocabulary)
    return catalog


def _parse_offers(raw_offers: list[Any]) -> list[Offer]:
    """Validate each offer on its own so errors name it; reject duplicate ids."""
    offers: list[Offer] = []
    first_seen: dict[str, int] = {}
    for number_, raw in enumerate(raw_offers, start=1):
        if not isinstance(raw, Mapping):
            raise CatalogError(None, f"offers #{number_}", "must be a mapping")
        offer_id = raw.get("id")
        label = str(offer_id) if offer_id is not None else f"#{number_}"
        try:
            offer = Offer.model_validate(raw)
        except ValidationError as exc:
            field, problem = _explain(exc)
            raise CatalogError(label, field, problem) from None
        if offer.id in first_seen:
            raise CatalogError(
                offer.id,
                "id",
                f"duplicate offer id (offers #{first_seen[offer.id]} and #{number_})",
            )
        first_seen[offer.id] = number_
        offers.append(offer)
    return offers


def _explain(exc: ValidationError) -> tuple[str, str]:
    """The first pydantic error as (field, problem) in a user's words."""
    errors = exc.errors()
    first = errors[0]
    loc = tuple(first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        field, problem = _where(loc[:-1]), f"unknown key {loc[-1]!r}"
    elif kind == "missing":
        field, problem = _where(loc), "is required"
    else:
        field = _where(loc)
        problem = str(first["msg"]).removeprefix("Value error, ")
        if not kind.startswith("value_error") and "input" in first:
            problem += f" (got {first['input']!r})"
    if len(errors) > 1:
        problem += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return field, problem


def _where(loc: Sequence[Any]) -> str:
    """A pydantic location as words: ('eligibility', 1, 'op') -> 'condition 2 (op)'."""
    words: list[str] = []
    i = 0
    while i < len(loc):
        part = loc[i]
        if part == "eligibility" and i + 1 < len(loc) and isinstance(loc[i + 1], int):
            words.append(f"condition {loc[i + 1] + 1}")
            rest = [str(p) for p in loc[i + 2 :]]
            if rest:
                words.append(f"({'.'.join(rest)})")
            break
        if part == "value" and i + 1 < len(loc) and loc[i + 1] in _VALUE_TAGS:
            words.append("value")
            i += 2
            continue
        if part == "[key]":
            pass
        elif isinstance(part, int):
            words.append(f"#{part + 1}")
        else:
            words.append(str(part))
        i += 1
    return " ".join(words)


def _check_constants(catalog: Catalog, vocabulary: Vocabulary) -> None:
    """Constants are plain names that shadow no feature, score or function."""
    taken = (
        (vocabulary.features, "a feature"),
        (SCORE_FIELDS, "a score"),
        (vocabulary.functions, "a function"),
    )
    for name in catalog.constants:
        if not _NAME.match(name):
            raise CatalogError(None, f"constants.{name}", "is not a plain name")
        for names, what in taken:
            if name in names:
                raise CatalogError(None, f"constants.{name}", f"has the name of {what}")


def _check_context(catalog: Catalog, features: frozenset[str]) -> None:
    """Context fields are online features a caller may know fresher, never scores or consent."""
    for name in catalog.context:
        if is_protected(name):
            raise CatalogError(
                None, f"context.{name}", "is a score, consent or holding: callers may never set it"
            )
        if name not in features:
            raise CatalogError(None, f"context.{name}", "is not an online feature name")


def _check_offer(offer: Offer, catalog: Catalog, vocabulary: Vocabulary) -> None:
    """Every name an offer uses exists, and functions have their constants."""
    names = _Names(vocabulary, catalog.constants, offer.id)
    undeclared = [c for c in offer.channels if c not in catalog.channels]
    if undeclared:
        raise CatalogError(
            offer.id,
            "channels",
            f"{', '.join(repr(c) for c in undeclared)} not among the catalog's channels "
            f"({', '.join(catalog.channels)}); declare it in the catalog's `channels`",
        )
    if offer.kind in SELLING_KINDS and offer.product_id and not offer.is_generic:
        column = holding_column(offer.product_id)
        if column not in vocabulary.features:
            raise CatalogError(
                offer.id,
                "product_id",
                f"no holdings feature {column!r} tells whether the customer holds "
                f"{offer.product_id!r}",
            )
    for number_, condition in enumerate(offer.eligibility, start=1):
        where = f"condition {number_}"
        names.check(where + " (field)", condition.field)
        if condition.field_ref is not None:
            names.check(where + " (field_ref)", condition.field_ref)
        if condition.says is not None:
            names.check_template(where + " (says)", condition.says)
    for name in offer.value.names:
        names.check("value", name)
    names.check_template("message", offer.message)
    if offer.cold_start:
        _check_cold_start(offer, vocabulary)


def _check_cold_start(offer: Offer, vocabulary: Vocabulary) -> None:
    """A cold-start offer must be shown to anyone: no customer data in its message or value."""
    if not isinstance(offer.value, FixedValue):
        raise CatalogError(
            offer.id, "value", "a cold-start offer needs a fixed value (no customer data)"
        )
    for name in offer.template.fields:
        personal = name in vocabulary.features or name in SCORE_FIELDS
        function = vocabulary.functions.get(name)
        personal = personal or (function is not None and function.customer_data)
        if personal:
            raise CatalogError(
                offer.id, "message", f"a cold-start offer cannot use customer data, uses {name!r}"
            )


@dataclass(frozen=True)
class _Names:
    """The names an offer may use, and the checks that report unknown ones."""

    vocabulary: Vocabulary
    constants: Mapping[str, float]
    offer_id: str

    def check(self, where: str, name: str) -> None:
        features, functions = self.vocabulary.features, self.vocabulary.functions
        known = name in features or name in SCORE_FIELDS or name in self.constants
        known = known or name in PRODUCT_FIELDS
        if not known and name not in functions:
            pool = [*features, *SCORE_FIELDS, *self.constants, *functions]
            close = difflib.get_close_matches(name, [*pool, *PRODUCT_FIELDS], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise CatalogError(
                self.offer_id,
                where,
                f"unknown field {name!r} (not a feature, score, constant, product field or "
                f"registered function{hint})",
            )
        if name in functions and name not in features:
            for constant in functions[name].constants:
                if constant not in self.constants:
                    raise CatalogError(
                        self.offer_id,
                        where,
                        f"function {name!r} needs constant {constant!r}, which the catalog's "
                        "constants do not define",
                    )

    def check_template(self, where: str, text: str) -> None:
        try:
            template = parse_template(text)
        except TemplateError as exc:
            raise CatalogError(self.offer_id, where, str(exc)) from None
        for name in template.fields:
            self.check(where, name)


def _words(text: str) -> str:
    """Lower-case words separated by single spaces ('Affluent_savers, x' -> 'affluent savers x')."""
    return " ".join(re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower().replace("_", " ")))


def holding_column(product_id: str) -> str:
    """The holdings feature of a product: `holds_` + the id with non-word characters as `_`."""
    return "holds_" + re.sub(r"\W", "_", str(product_id))
