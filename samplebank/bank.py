"""Sample bank: a vectorized generator of a retail bank's contract tables and their ground truth."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from loyal.products import BALANCE_TYPES
from samplebank.retention_sim import CampaignSimulation, current_effects

REGIONS = ("north", "south", "east", "west", "capital")
CHANNELS = ("mobile", "online", "branch", "atm", "phone")
INTERACTION_KINDS = ("login", "call", "complaint", "atm_visit", "branch_visit", "email_open")
BALANCE_PRODUCTS = BALANCE_TYPES
SAVINGS_PRODUCTS = ("savings", "high_yield_savings")
CARD_PRODUCTS = ("credit_card", "premium_card")

NEVER = np.iinfo(np.int16).max
"""Month index meaning 'never' (a product not held, a customer not closed)."""
NOT_CLOSED_NS = np.iinfo(np.int64).max
NS_PER_DAY = 86_400 * 10**9
NS_PER_SECOND = 10**9
AVERAGE_MONTH_DAYS = 30.4375

DEPOSIT_RATES_BEFORE_CUT = {"checking": 0.0, "savings": 0.010, "high_yield_savings": 0.046}
DEPOSIT_RATES_AFTER_CUT = {"checking": 0.0, "savings": 0.005, "high_yield_savings": 0.041}
MORTGAGE_RATE_BY_YEAR = {
    2008: 0.060, 2009: 0.050, 2010: 0.047, 2011: 0.045, 2012: 0.037, 2013: 0.040,
    2014: 0.042, 2015: 0.039, 2016: 0.037, 2017: 0.040, 2018: 0.045, 2019: 0.039,
    2020: 0.031, 2021: 0.030, 2022: 0.053, 2023: 0.068, 2024: 0.066, 2025: 0.064,
    2026: 0.061,
}  # fmt: skip
"""Typical fixed mortgage rate by origination year: older loans at 3% are refinance-proof,
2023-2024 loans near 7% are refinance candidates."""


@dataclass(frozen=True)
class Product:
    """One product of the bank's catalog and how it earns money."""

    product_id: str
    name: str
    category: str
    margin_rate: float
    events_per_month: float
    open_delay_months: float


PRODUCTS: tuple[Product, ...] = (
    Product("checking", "Checking Account", "deposits", 0.85, 1.0, 0.0),
    Product("savings", "Savings Account", "deposits", 0.60, 1.0, 6.0),
    Product("high_yield_savings", "High-Yield Savings", "deposits", 0.35, 1.0, 10.0),
    Product("credit_card", "Credit Card", "cards", 0.45, 1.0, 6.0),
    Product("premium_card", "Premium Card", "cards", 0.55, 1.0, 8.0),
    Product("mortgage", "Mortgage", "lending", 0.30, 1.0, 12.0),
    Product("personal_loan", "Personal Loan", "lending", 0.40, 1.0, 18.0),
    Product("investment_fund", "Investment Fund", "wealth", 0.70, 1.0, 12.0),
    Product("insurance", "Home & Life Insurance", "protection", 0.25, 1.0, 10.0),
    Product("overdraft_protection", "Overdraft Protection", "protection", 0.80, 0.35, 4.0),
)
PRODUCT_IDS = tuple(p.product_id for p in PRODUCTS)
LOAN_TERM_MONTHS = {"mortgage": 300, "personal_loan": 60}


SEGMENTS_FILE = Path(__file__).with_name("segments.csv")
"""The calibration of the latent need segments (who the bank's customers are and how they
bank): one column per segment, one row per parameter. Rows without a prefix hold one number
per segment: its share of the customers, age (mean, sd), marketing consent rate, mean tenure
in months, mean log wealth, e-mail opens, complaint rate, sensitivity to deposit rates and
offset of the churn logit. Prefixed rows form a matrix: `region:` where each segment lives,
`channel:` its typical channel mix (each customer's own is drawn around it), `holding:` the
share of its customers holding each product, `opening_balance:` the median opening balance
of each balance product before the customer's wealth scales it."""


def _read_segments(path: Path) -> tuple[tuple[str, ...], dict[str, tuple[float, ...]]]:
    """The segment names (the header after `parameter`) and each row's values by parameter."""
    with path.open(newline="") as file:
        header, *rows = csv.reader(file)
    return tuple(header[1:]), {row[0]: tuple(float(value) for value in row[1:]) for row in rows}


SEGMENT_NAMES, SEGMENT_PARAMETERS = _read_segments(SEGMENTS_FILE)
SEGMENT_SHARES = dict(zip(SEGMENT_NAMES, SEGMENT_PARAMETERS["share"], strict=True))


@dataclass(frozen=True)
class ChurnModel:
    """Coefficients of the true monthly closure hazard, a logistic model of visible causes.

    The hazard of month m reads only what the customer's data showed before m: complaints and
    low satisfaction scores in months m-3..m-1, the activity trend (last 3 months against the 3
    before), products held, tenure, and whether they hold savings after the rate cut (scaled by
    their rate sensitivity). A hidden per-customer frailty and the Bernoulli draw add noise.
    """

    intercept: float = -4.6
    per_recent_complaint: float = 0.45
    max_recent_complaints: int = 4
    low_satisfaction: float = 0.55
    activity_trend: float = -0.8
    single_product: float = 0.8
    two_products: float = 0.35
    many_products: float = -0.3
    first_year: float = 0.7
    second_year: float = 0.3
    rate_cut: float = 1.1
    rate_cut_decay_months: float = 4.0
    frailty_sd: float = 0.5


CHURN = ChurnModel()
NEW_CUSTOMER_SHARE = 0.30
"""Share of customers who sign up during the generated window (the rest joined before it)."""
WEALTH_LOG_SD = 0.7
REFUND_SHARE = 0.02


@dataclass
class SampleBank:
    """A generated bank: contract tables a user would bring, and the truth only evaluation reads.

    `customer_id` columns are pandas strings. Low-cardinality text columns (region, product_id,
    channel, kind, account_type, true_segment) are categoricals, one byte a row, so a million
    customers fit in memory: group by them with ``observed=True``. The Parquet files written by
    `samplebank.generate` store every text column as plain strings.
    """

    tables: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]

    def rows(self) -> dict[str, int]:
        """Row count of every table, contract tables first, truth tables prefixed ``truth/``."""
        counts = {name: len(frame) for name, frame in self.tables.items()}
        counts.update({f"truth/{name}": len(frame) for name, frame in self.truth.items()})
        return counts


@dataclass(frozen=True)
class _Calendar:
    """Month boundaries of the window in nanoseconds; the last boundary is the end of end_date."""

    bounds: np.ndarray
    first_year: int
    first_month: int

    @property
    def months(self) -> int:
        return len(self.bounds) - 1

    def month_start(self, m: int) -> pd.Timestamp:
        return pd.Timestamp(int(self.bounds[m]))

    def month_end_date_ns(self, m: int) -> int:
        return int(self.bounds[m + 1]) - NS_PER_DAY

    def calendar_year(self, month_index: np.ndarray) -> np.ndarray:
        return self.first_year + (self.first_month - 1 + month_index) // 12


@dataclass
class _Population:
    """Per-customer latent and observable attributes, one row per customer (numpy arrays)."""

    segment: np.ndarray
    age: np.ndarray
    region: np.ndarray
    consent: np.ndarray
    signup_month: np.ndarray
    signup_ns: np.ndarray
    wealth: np.ndarray
    channel_probs: np.ndarray
    channel_cumulative: np.ndarray
    open_month: np.ndarray
    end_month: np.ndarray
    opening_balance: np.ndarray
    mortgage_rate: np.ndarray
    loan_rate: np.ndarray
    activity: np.ndarray
    email_rate: np.ndarray
    complaint_rate: np.ndarray
    satisfaction_base: np.ndarray
    rate_sensitivity: np.ndarray
    churn_base: np.ndarray


@dataclass
class _State:
    """What changes month by month, including the short memory the churn hazard reads."""

    closed_month: np.ndarray
    closed_ns: np.ndarray
    engagement: np.ndarray
    disengaging: np.ndarray
    incident: np.ndarray
    balance_noise: np.ndarray
    complaints: np.ndarray
    low_satisfaction: np.ndarray
    activity: np.ndarray
    market_index: float = 1.0


class _GrowingColumn:
    """An append-only array; spare capacity is reserved but never touched, so costs no memory."""

    def __init__(self, first: np.ndarray, capacity: int) -> None:
        self.data = np.empty(max(capacity, len(first)), first.dtype)
        self.size = 0
        self.extend(first)

    def extend(self, values: np.ndarray) -> None:
        end = self.size + len(values)
        if end > len(self.data):
            bigger = np.empty(max(end, 2 * len(self.data)), self.data.dtype)
            bigger[: self.size] = self.data[: self.size]
            self.data = bigger
        self.data[self.size : end] = values
        self.size = end

    def values(self) -> np.ndarray:
        return self.data[: self.size]


class _Chunks:
    """Month-by-month pieces of the event tables, appended in place as compact codes.

    Appending into one generously reserved buffer per column (instead of keeping a list of
    monthly pieces and concatenating them) keeps the peak memory close to the final tables.
    """

    def __init__(self, months: int) -> None:
        self.months = months
        self.columns: dict[tuple[str, str], _GrowingColumn] = {}

    def add(self, table: str, **columns: np.ndarray) -> None:
        for name, values in columns.items():
            column = self.columns.get((table, name))
            if column is None:
                capacity = 2 * self.months * len(values) + 1024
                self.columns[(table, name)] = _GrowingColumn(values, capacity)
            else:
                column.extend(values)

    def take(self, table: str, column: str) -> np.ndarray:
        """Hand over one column's values and forget them."""
        return self.columns.pop((table, column)).values()


BLOCK_CUSTOMERS = 100_000
"""Customers simulated together: the generator's memory is bounded by one block, not the bank."""
BLOCK_SEED_SALT = 18
"""Mixed into the seed of every block after the first (the first block draws from `seed` itself)."""

ShiftHook = Callable[[np.random.Generator, "_Population", "_State", int], None]


class GeneratorOptions(TypedDict, total=False):
    """What `generate_bank` passes on to `generate_blocks` (documented there, with defaults)."""

    months: int
    end_date: str
    on_month: Callable[[int, int], None] | None
    with_campaigns: bool


def generate_bank(
    customers: int,
    seed: int,
    *,
    shift: ShiftHook | None = None,
    **options: Unpack[GeneratorOptions],
) -> SampleBank:
    """Generate a retail bank's contract tables and the ground truth behind them, in memory.

    One block of customers: `generate_blocks` with every customer in its first block (see it
    for banks too large to hold at once, and for the options: `months`, `end_date`,
    `on_month`, `with_campaigns`).

    Args:
        customers: number of customers (open at the window start or joining during it).
        seed: random seed; the same seed gives identical frames.
        shift: optional hook changing the latent population and state at the start of each
            month (`monitoring.shift`: a shifted future); None leaves the draws unchanged.
        **options: the history window, progress callback and campaigns of `generate_blocks`.

    Returns:
        The contract tables (customers, transactions, products, interactions, balances) and the
        truth tables (customers_truth, monthly_churn, rate_changes).
    """
    hook = None if shift is None else lambda _block: shift
    return next(generate_blocks(customers, seed, shift=hook, block_customers=customers, **options))


def generate_blocks(
    customers: int,
    seed: int,
    months: int = 24,
    end_date: str = "2026-10-31",
    on_month: Callable[[int, int], None] | None = None,
    shift: Callable[[int], ShiftHook | None] | None = None,
    with_campaigns: bool = True,
    block_customers: int = BLOCK_CUSTOMERS,
) -> Iterator[SampleBank]:
    """The bank of `generate_bank`, `block_customers` customers at a time (ids in order).

    Customers of different blocks never interact in the simulation, so each block is simulated
    alone; what the whole bank shares (the calendar, the rate cut, the campaign months, the
    investment market's path) is the same in every block. The first block draws from `seed`
    exactly as `generate_bank` does, so a bank of at most `block_customers` is identical to
    `generate_bank`'s; each later block draws from its own stream (`seed`, a salt, its index).
    Customer ids follow the signup order within a block. The shared tables (`products`,
    `rate_changes`) come with every block.

    Args:
        customers: number of customers in the whole bank.
        seed: random seed; the same seed gives identical frames.
        months: length of the history window in months, ending with the month of `end_date`.
        end_date: last day of the history (no event after it).
        on_month: optional progress callback, called with (months done, months) after each
            month, across all blocks.
        shift: the shifted future's hook for each block index (None: no shift).
        with_campaigns: simulate past retention campaigns (`samplebank.retention_sim`).
        block_customers: customers per block.
    """
    _check_size(customers, months)
    market = _Market()
    starts = range(0, customers, block_customers)
    total_months = months * len(starts)
    for index, start in enumerate(starts):
        block = _Block(index, start + 1, min(block_customers, customers - start), customers)

        def progress(done: int, _months: int, offset: int = index * months) -> None:
            if on_month is not None:
                on_month(offset + done, total_months)

        hook = shift(index) if shift is not None else None
        yield _generate_block(block, seed, months, end_date, progress, hook, with_campaigns, market)


def _check_size(customers: int, months: int) -> None:
    if customers <= 0:
        raise ValueError("customers must be positive")
    if months < 6:
        raise ValueError("months must be at least 6")


@dataclass(frozen=True)
class _Block:
    """Which customers one block simulates: `customers` ids from `first_id`, of `total`."""

    index: int
    first_id: int
    customers: int
    total: int

    def rng(self, seed: int) -> np.random.Generator:
        if self.index == 0:
            return np.random.default_rng(seed)
        return np.random.default_rng([seed, BLOCK_SEED_SALT, self.index])


@dataclass
class _Market:
    """The investment market's index month by month: drawn once, by the first block simulated,
    then replayed, so every block of a bank lives in the same market."""

    path: list[float] = field(default_factory=list)

    def index(self, rng: np.random.Generator, m: int) -> float:
        if m < len(self.path):
            return self.path[m]
        value = self.path[-1] if self.path else 1.0
        if m > 0:
            value *= float(np.exp(rng.normal(0.005, 0.03)))
        self.path.append(value)
        return value


def _generate_block(
    block: _Block,
    seed: int,
    months: int,
    end_date: str,
    on_month: Callable[[int, int], None] | None,
    shift: ShiftHook | None,
    with_campaigns: bool,
    market: _Market,
) -> SampleBank:
    rng = block.rng(seed)
    calendar = _calendar(end_date, months)
    rate_cut_month = round(months * 2 / 3)
    population = _draw_population(rng, block.customers, calendar)
    state = _initial_state(block.customers)
    chunks = _Chunks(months)
    campaigns = (
        CampaignSimulation(seed, months, rate_cut_month, block=block.index)
        if with_campaigns
        else None
    )
    run = _Run(rng, population, state, calendar, rate_cut_month, chunks)
    for m in range(months):
        _advance_latent_state(rng, state, m)
        state.market_index = market.index(rng, m)
        if shift is not None:
            shift(rng, population, state, m)
        _churn_step(run, m, campaigns)
        _events_for_month(run, m)
        if on_month is not None:
            on_month(m + 1, months)
    ids = _customer_ids(block.first_id, block.customers, block.total)
    tables = {
        "customers": _customers_frame(population, state, ids),
        "transactions": _event_frame(
            chunks,
            ids,
            "transactions",
            {"product_id": "product", "amount": "amount", "margin": "margin", "channel": "channel"},
        ),
        "products": products_frame(),
        "interactions": _event_frame(
            chunks, ids, "interactions", {"kind": "kind", "satisfaction": "satisfaction"}
        ),
        "balances": _event_frame(
            chunks,
            ids,
            "balances",
            {"account_type": "account", "balance": "balance", "rate": "rate"},
        ),
    }
    truth = {
        "customers_truth": _customers_truth_frame(population, state, ids),
        "monthly_churn": _monthly_churn_frame(chunks, ids, calendar),
        "rate_changes": _rate_changes_frame(calendar, rate_cut_month),
    }
    if campaigns is not None:
        _add_campaigns(campaigns, population, state, calendar, ids, tables, truth)
    return SampleBank(tables=tables, truth=truth)


def _add_campaigns(
    campaigns: CampaignSimulation,
    population: _Population,
    state: _State,
    calendar: _Calendar,
    ids: pa.Array,
    tables: dict[str, pd.DataFrame],
    truth: dict[str, pd.DataFrame],
) -> None:
    """The campaigns table and its truth, plus every open customer's contact effect at the end."""
    m = calendar.months
    tables["campaigns"] = campaigns.campaigns_frame(ids, calendar.month_start)
    truth["campaigns_truth"] = campaigns.truth_frame(ids, calendar.month_start)
    open_rows = np.flatnonzero(state.closed_month == NEVER)
    cut = campaigns.rate_cut_month
    truth["retention_effects"] = current_effects(
        population, state, open_rows, m, cut,
        lambda rows, month: _contact_features(population, state, rows, month),
        lambda rows, month: _churn_probability(population, state, rows, month, cut),
        ids, pd.Timestamp(int(calendar.bounds[-1])),
    )  # fmt: skip


def _contact_features(
    population: _Population, state: _State, rows: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a contact's effect reads: activity trend, products and savings held last month."""
    held = _held(population, rows, max(m - 1, -1))
    savers = held[:, [PRODUCT_IDS.index(p) for p in SAVINGS_PRODUCTS]].any(axis=1)
    return _activity_trend(population, state, rows, m), held.sum(axis=1), np.asarray(savers)


def products_frame() -> pd.DataFrame:
    """The bank's product catalog in the contract's `products` layout."""
    return pd.DataFrame(
        {
            "product_id": pd.array(PRODUCT_IDS, dtype="string[pyarrow]"),
            "name": pd.array([p.name for p in PRODUCTS], dtype="string[pyarrow]"),
            "category": pd.array([p.category for p in PRODUCTS], dtype="string[pyarrow]"),
            "margin_rate": np.array([p.margin_rate for p in PRODUCTS], dtype=np.float64),
        }
    )


# --- calendar and population ---------------------------------------------------------------


def _calendar(end_date: str, months: int) -> _Calendar:
    end = pd.Timestamp(end_date).normalize()
    first = (end.to_period("M") - (months - 1)).to_timestamp()
    starts = pd.date_range(first, periods=months, freq="MS")
    bounds = np.append(starts.asi8, (end + pd.Timedelta(days=1)).value).astype(np.int64)
    return _Calendar(bounds=bounds, first_year=first.year, first_month=first.month)


def _segment_trait(name: str, dtype: type = np.float32) -> np.ndarray:
    """One number per segment: a row of the segments file without a prefix."""
    return np.array(SEGMENT_PARAMETERS[name], dtype=dtype)


def _segment_matrix(prefix: str, keys: tuple[str, ...]) -> np.ndarray:
    """The segments file's `prefix:key` rows as one row per segment, one column per key."""
    rows = [SEGMENT_PARAMETERS[f"{prefix}:{key}"] for key in keys]
    return np.array(rows, dtype=np.float32).T


def _draw_population(rng: np.random.Generator, n: int, calendar: _Calendar) -> _Population:
    """Every customer's segment and, driven by it, their profile, products and habits."""
    shares = _segment_trait("share", np.float64)
    segment = rng.choice(len(SEGMENT_NAMES), size=n, p=shares / shares.sum()).astype(np.int8)
    age = _draw_age(rng, segment)
    signup_month, signup_ns = _draw_signups(rng, segment, age, calendar)
    order = np.argsort(signup_ns, kind="stable")  # customer ids follow the signup order
    segment, age, signup_month, signup_ns = (
        segment[order],
        age[order],
        signup_month[order],
        signup_ns[order],
    )
    wealth = np.exp(rng.normal(_segment_trait("wealth_log_mean")[segment], WEALTH_LOG_SD)).astype(
        np.float32
    )
    channel_probs = _dirichlet_around(rng, _segment_matrix("channel", CHANNELS)[segment], 40.0)
    open_month, end_month = _draw_holdings(rng, segment, signup_month)
    complaint_rate, satisfaction_base = _draw_service_experience(rng, segment)
    return _Population(
        segment=segment,
        age=age,
        region=_categorical(rng, _segment_matrix("region", REGIONS)[segment]),
        consent=rng.random(n) < _segment_trait("consent")[segment],
        signup_month=signup_month,
        signup_ns=signup_ns,
        wealth=wealth,
        channel_probs=channel_probs,
        channel_cumulative=np.cumsum(channel_probs, axis=1),
        open_month=open_month,
        end_month=end_month,
        opening_balance=_draw_opening_balances(rng, segment, wealth),
        mortgage_rate=_draw_mortgage_rates(rng, open_month, calendar),
        loan_rate=np.clip(0.11 - 0.01 * np.log(wealth) + rng.normal(0, 0.012, n), 0.06, 0.16),
        activity=rng.lognormal(-0.08, 0.4, n).astype(np.float32),
        email_rate=(_segment_trait("email_opens")[segment] * rng.gamma(2.0, 0.5, n)).astype(
            np.float32
        ),
        complaint_rate=complaint_rate,
        satisfaction_base=satisfaction_base,
        rate_sensitivity=(
            _segment_trait("rate_sensitivity")[segment] * rng.uniform(0.3, 1.7, n)
        ).astype(np.float32),
        churn_base=(
            CHURN.intercept
            + _segment_trait("churn_offset")[segment]
            + rng.normal(0, CHURN.frailty_sd, n)
        ).astype(np.float32),
    )


def _draw_service_experience(
    rng: np.random.Generator, segment: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Monthly complaint rate and typical call satisfaction: complainers are less satisfied."""
    proneness = rng.gamma(0.6, 1 / 0.6, len(segment))
    complaint_rate = _segment_trait("complaint_rate")[segment] * proneness
    satisfaction = rng.normal(4.0, 0.5, len(segment)) - 0.35 * (proneness - 1)
    return complaint_rate.astype(np.float32), np.clip(satisfaction, 1.5, 5.0).astype(np.float32)


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """Draw one category per row from row-wise probabilities (vectorized inverse CDF)."""
    return _pick(rng, np.cumsum(probs, axis=1))


def _pick(rng: np.random.Generator, cumulative: np.ndarray) -> np.ndarray:
    """Draw one category per row from row-wise cumulative probabilities."""
    u = rng.random(len(cumulative), dtype=np.float32)[:, None] * cumulative[:, -1:]
    return np.minimum((u > cumulative).sum(axis=1), cumulative.shape[1] - 1).astype(np.int8)


def _chronological_order(ts: np.ndarray) -> np.ndarray:
    """Row order by timestamp (ties by row), via one fast sort of packed (second, row) keys."""
    row_bits = max(len(ts).bit_length(), 1)
    seconds = (ts - ts.min(initial=0)) // NS_PER_SECOND if len(ts) else ts
    keys = (seconds << row_bits) | np.arange(len(ts), dtype=np.int64)
    keys.sort()
    return keys & ((1 << row_bits) - 1)


def _dirichlet_around(
    rng: np.random.Generator, mean: np.ndarray, concentration: float
) -> np.ndarray:
    draws = rng.gamma(mean * concentration + 0.05, 1.0)
    return (draws / draws.sum(axis=1, keepdims=True)).astype(np.float32)


def _draw_age(rng: np.random.Generator, segment: np.ndarray) -> np.ndarray:
    mean = _segment_trait("age_mean")[segment]
    sd = _segment_trait("age_sd")[segment]
    return np.clip(np.round(rng.normal(mean, sd)), 18, 98).astype(np.int16)


def _draw_signups(
    rng: np.random.Generator, segment: np.ndarray, age: np.ndarray, calendar: _Calendar
) -> tuple[np.ndarray, np.ndarray]:
    """Signup month (negative: before the window) and signup date in nanoseconds."""
    n = len(segment)
    joins_in_window = rng.random(n) < NEW_CUSTOMER_SHARE
    tenure_mean = _segment_trait("tenure_months")[segment]
    adult_months = np.maximum((age.astype(np.float32) - 18) * 12, 1)
    months_before = np.minimum(rng.exponential(tenure_mean), np.minimum(adult_months, 480))
    months_before = np.ceil(months_before + 1e-3)
    in_window_month = rng.integers(0, calendar.months, n)
    day_fraction = rng.random(n)
    signup_month = np.where(joins_in_window, in_window_month, -months_before).astype(np.int32)
    window_start = calendar.bounds[0]
    in_window_ns = calendar.bounds[in_window_month] + day_fraction * (
        calendar.bounds[in_window_month + 1] - calendar.bounds[in_window_month]
    )
    before_ns = window_start - (months_before - day_fraction) * AVERAGE_MONTH_DAYS * NS_PER_DAY
    signup_ns = np.where(joins_in_window, in_window_ns, before_ns).astype(np.int64)
    return signup_month, signup_ns // NS_PER_DAY * NS_PER_DAY


def _draw_holdings(
    rng: np.random.Generator, segment: np.ndarray, signup_month: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Month each product is opened and ended (NEVER when not held / not ending)."""
    n = len(segment)
    probs = _segment_matrix("holding", PRODUCT_IDS)
    holds = rng.random((n, len(PRODUCTS)), dtype=np.float32) < probs[segment]
    holds[:, 0] |= ~holds.any(axis=1)  # everyone holds at least a checking account
    delays = np.stack(
        [
            rng.geometric(1 / (p.open_delay_months + 1), n) - 1
            for p in PRODUCTS  # a loop over the 10 products, not over customers
        ],
        axis=1,
    )
    opened = np.minimum(signup_month[:, None] + delays, NEVER - 1)
    open_month = np.where(holds, opened, NEVER).astype(np.int16)
    end_month = np.full_like(open_month, NEVER)
    for product_id, term in LOAN_TERM_MONTHS.items():
        j = PRODUCT_IDS.index(product_id)
        end_month[:, j] = np.where(holds[:, j], np.minimum(opened[:, j] + term, NEVER), NEVER)
    return open_month, end_month


def _draw_opening_balances(
    rng: np.random.Generator, segment: np.ndarray, wealth: np.ndarray
) -> np.ndarray:
    medians = _segment_matrix("opening_balance", BALANCE_PRODUCTS)[segment]
    wealth_elasticity = np.array([0.8, 1.0, 1.0, 0.5, 0.5, 1.0], np.float32)
    spread = np.array([0.6, 0.6, 0.6, 0.35, 0.5, 0.6], np.float32)
    noise = rng.normal(0.0, 1.0, medians.shape).astype(np.float32) * spread
    return (medians * wealth[:, None] ** wealth_elasticity * np.exp(noise)).astype(np.float32)


def _draw_mortgage_rates(
    rng: np.random.Generator, open_month: np.ndarray, calendar: _Calendar
) -> np.ndarray:
    years = np.array(sorted(MORTGAGE_RATE_BY_YEAR))
    opened = open_month[:, PRODUCT_IDS.index("mortgage")].astype(np.int64)
    year = np.clip(
        calendar.calendar_year(np.where(opened == NEVER, 0, opened)), years[0], years[-1]
    )
    typical = np.array([MORTGAGE_RATE_BY_YEAR[y] for y in years])[year - years[0]]
    rate = typical + rng.normal(0, 0.003, len(opened))
    return np.clip(rate, 0.025, 0.075).round(4).astype(np.float32)


def _initial_state(n: int) -> _State:
    return _State(
        closed_month=np.full(n, NEVER, np.int16),
        closed_ns=np.full(n, NOT_CLOSED_NS, np.int64),
        engagement=np.zeros(n, np.float32),
        disengaging=np.zeros(n, bool),
        incident=np.zeros(n, bool),
        balance_noise=np.zeros((n, len(BALANCE_PRODUCTS)), np.float32),
        complaints=np.zeros((n, 3), np.int8),
        low_satisfaction=np.zeros((n, 3), bool),
        activity=np.zeros((n, 6), np.int16),
    )


# --- month by month --------------------------------------------------------------------------


def _advance_latent_state(rng: np.random.Generator, state: _State, m: int) -> None:
    """Engagement drifts (some customers start disengaging), service incidents come and go.

    The market index moves after these draws (`_Market.index`), from the same stream."""
    n = len(state.engagement)
    starts = rng.random(n, dtype=np.float32) < 0.025
    stays = rng.random(n, dtype=np.float32) < 0.85
    state.disengaging = (state.disengaging & stays) | starts
    shock = rng.normal(0, 0.12, n).astype(np.float32)
    state.engagement = 0.85 * state.engagement + shock - 0.25 * state.disengaging
    new_incident = rng.random(n, dtype=np.float32) < 0.015
    lasting = rng.random(n, dtype=np.float32) < 0.4
    state.incident = new_incident | (state.incident & lasting)
    noise = rng.normal(0, 0.08, state.balance_noise.shape).astype(np.float32)
    state.balance_noise = 0.8 * state.balance_noise + noise


def _held(population: _Population, rows: np.ndarray | slice, m: int) -> np.ndarray:
    """Which products each of the given customers holds during month m."""
    return (population.open_month[rows] <= m) & (m < population.end_month[rows])


@dataclass(frozen=True)
class _Run:
    """What every month of one block's simulation reads and writes."""

    rng: np.random.Generator
    population: _Population
    state: _State
    calendar: _Calendar
    rate_cut_month: int
    chunks: _Chunks


def _churn_step(run: _Run, m: int, campaigns: CampaignSimulation | None = None) -> None:
    """Draw closures for month m from a hazard that only reads what happened before it."""
    rng, population, state, calendar = run.rng, run.population, run.state, run.calendar
    rate_cut_month, chunks = run.rate_cut_month, run.chunks
    start_ns = calendar.bounds[m]
    at_risk = np.flatnonzero((population.signup_ns < start_ns) & (state.closed_month == NEVER))
    probability = _churn_probability(population, state, at_risk, m, rate_cut_month)
    if campaigns is not None:  # past retention campaigns (samplebank.retention_sim)
        campaigns.start_month(
            population, state, at_risk, m,
            lambda rows, month: _contact_features(population, state, rows, month),
            lambda rows, month: _churn_probability(population, state, rows, month, rate_cut_month),
        )  # fmt: skip
        probability = campaigns.adjust(at_risk, m, probability)
    closes = rng.random(len(at_risk)) < probability
    days = (calendar.bounds[m + 1] - start_ns) // NS_PER_DAY
    closing = at_risk[closes]
    state.closed_month[closing] = m
    state.closed_ns[closing] = start_ns + rng.integers(0, days, len(closing)) * NS_PER_DAY
    chunks.add(
        "monthly_churn",
        customer=at_risk.astype(np.int32),
        month=np.full(len(at_risk), m, np.int16),
        probability=probability.astype(np.float32),
        closed=closes,
    )


def _churn_probability(
    population: _Population, state: _State, rows: np.ndarray, m: int, rate_cut_month: int
) -> np.ndarray:
    c = CHURN
    complaints = np.minimum(state.complaints[rows].sum(axis=1), c.max_recent_complaints)
    low_satisfaction = state.low_satisfaction[rows].any(axis=1)
    products = _held(population, rows, max(m - 1, -1)).sum(axis=1)
    tenure = m - population.signup_month[rows]
    logit = (
        population.churn_base[rows]
        + c.per_recent_complaint * complaints
        + c.low_satisfaction * low_satisfaction
        + c.activity_trend * _activity_trend(population, state, rows, m)
        + c.single_product * (products <= 1)
        + c.two_products * (products == 2)
        + c.many_products * (products >= 5)
        + c.first_year * (tenure < 12)
        + c.second_year * ((tenure >= 12) & (tenure < 24))
    )
    if m > rate_cut_month:
        saver = _held(population, rows, m - 1)[
            :, [PRODUCT_IDS.index(p) for p in SAVINGS_PRODUCTS]
        ].any(axis=1)
        decay = np.exp(-(m - rate_cut_month - 1) / c.rate_cut_decay_months)
        logit = logit + c.rate_cut * decay * population.rate_sensitivity[rows] * saver
    return 1.0 / (1.0 + np.exp(-logit))


def _activity_trend(population: _Population, state: _State, rows: np.ndarray, m: int) -> np.ndarray:
    """Log ratio of activity in the last 3 months to the 3 before; 0 without 6 full months."""
    slots = [(m - k) % 6 for k in range(1, 7)]
    history = state.activity[rows][:, slots].astype(np.float32)
    recent = history[:, :3].sum(axis=1)
    earlier = history[:, 3:].sum(axis=1)
    observed = m - np.maximum(population.signup_month[rows] + 1, 0) >= 6
    trend = np.log((recent + 1) / (earlier + 1))
    return np.where(observed, np.clip(trend, -2, 1), 0).astype(np.float32)


def _events_for_month(run: _Run, m: int) -> None:
    """Transactions, interactions and month-end balances of every customer open in month m."""
    rng, population, state, calendar = run.rng, run.population, run.state, run.calendar
    rate_cut_month, chunks = run.rate_cut_month, run.chunks
    start, stop = calendar.bounds[m], calendar.bounds[m + 1]
    lo = np.maximum(population.signup_ns, start)
    hi = np.minimum(state.closed_ns, stop)
    active = np.flatnonzero(hi > lo)
    held = _held(population, active, m)
    month = _Month(
        index=m,
        active=active,
        window=_Window(lo=lo[active], hi=hi[active], fraction=(hi - lo)[active] / (stop - start)),
        held=held,
        engagement=np.exp(state.engagement[active]),
        balances=_balances(population, state, active, held, m, rate_cut_month),
    )
    card_events = _transactions(rng, population, month, chunks)
    interactions = _interactions(rng, population, state, month, chunks)
    open_at_end = state.closed_ns[active] >= stop
    month_end = calendar.month_end_date_ns(m)
    _balance_rows(population, month, open_at_end, month_end, m >= rate_cut_month, chunks)
    _remember(state, month, interactions, card_events)


@dataclass(frozen=True)
class _Window:
    """Per active customer: the part of the month they were a customer, in nanoseconds."""

    lo: np.ndarray
    hi: np.ndarray
    fraction: np.ndarray

    def timestamps(self, rng: np.random.Generator, rows: np.ndarray) -> np.ndarray:
        """A uniform time within the window of each given row, to the second."""
        span = (self.hi - self.lo)[rows]
        offset = (rng.random(len(rows)) * span).astype(np.int64)
        return (self.lo[rows] + offset) // NS_PER_SECOND * NS_PER_SECOND


@dataclass(frozen=True)
class _Month:
    """What the event generators of one month share, one row per active customer."""

    index: int
    active: np.ndarray
    window: _Window
    held: np.ndarray
    engagement: np.ndarray
    balances: np.ndarray


def _balances(
    population: _Population,
    state: _State,
    active: np.ndarray,
    held: np.ndarray,
    m: int,
    rate_cut_month: int,
) -> np.ndarray:
    """Month-end balance of each balance product for the active customers (0 where not held)."""
    columns = [PRODUCT_IDS.index(p) for p in BALANCE_PRODUCTS]
    opening = population.opening_balance[active]
    age = (m - population.open_month[active][:, columns]).astype(np.float32)
    balance = opening * np.exp(state.balance_noise[active])
    savings = [BALANCE_PRODUCTS.index(p) for p in SAVINGS_PRODUCTS]
    balance[:, savings] *= 1.003 ** np.clip(age[:, savings], 0, 600)
    if m >= rate_cut_month:  # rate-sensitive savers move money out after the cut
        sensitivity = np.minimum(population.rate_sensitivity[active], 1.7)
        outflow = (1 - 0.07 * sensitivity) ** (m - rate_cut_month + 1)
        balance[:, savings] *= outflow[:, None]
    for product_id, term in LOAN_TERM_MONTHS.items():
        j = BALANCE_PRODUCTS.index(product_id)
        balance[:, j] = opening[:, j] * np.clip(1 - age[:, j] / term, 0.0, 1.0)
    balance[:, BALANCE_PRODUCTS.index("investment_fund")] *= state.market_index
    return np.where(held[:, columns], balance, 0).astype(np.float32)


def _monthly_revenue(population: _Population, month: _Month, rows: np.ndarray) -> np.ndarray:
    """Expected revenue this month of each product for the given active rows (active x products)."""
    balances = month.balances[rows]
    b = {p: balances[:, j] for j, p in enumerate(BALANCE_PRODUCTS)}
    wealth = population.wealth[month.active[rows]]
    spend = wealth**0.8 * month.engagement[rows]
    revenue = np.stack(
        [
            6.0 + b["checking"] * 0.02 / 12,  # account fee and deposit margin
            b["savings"] * 0.02 / 12,
            b["high_yield_savings"] * 0.008 / 12,
            20.0 * spend,  # interchange
            50.0 * spend,
            b["mortgage"] * 0.012 / 12,  # net interest margin
            b["personal_loan"] * 0.045 / 12,
            b["investment_fund"] * 0.012 / 12,  # management fee
            22.0 * wealth**0.5,  # premium
            np.full(len(rows), 30.0 * 0.35, np.float32),  # overdraft fees
        ],
        axis=1,
    )
    return revenue.astype(np.float32)


def _transactions(
    rng: np.random.Generator, population: _Population, month: _Month, chunks: _Chunks
) -> np.ndarray:
    """Revenue events of every held product; returns card events per active customer."""
    per_month = np.array([p.events_per_month for p in PRODUCTS], np.float32)
    held_rows, held_products = np.nonzero(month.held)
    rate = per_month[held_products] * month.window.fraction[held_rows].astype(np.float32)
    is_card = np.isin(held_products, [PRODUCT_IDS.index(p) for p in CARD_PRODUCTS])
    rate[is_card] *= month.engagement[held_rows[is_card]]
    counts = rng.poisson(rate)
    rows, product = np.repeat(held_rows, counts), np.repeat(held_products, counts)
    revenue = _monthly_revenue(population, month, rows)[np.arange(len(rows)), product]
    amount = revenue / per_month[product] * rng.lognormal(-0.045, 0.3, len(rows))
    refund = rng.random(len(rows)) < REFUND_SHARE
    amount[refund] *= -rng.uniform(0.1, 0.5, int(refund.sum()))
    margin_rate = np.array([p.margin_rate for p in PRODUCTS])[product]
    margin = amount * margin_rate * rng.uniform(0.8, 1.2, len(rows))
    channel = _pick(rng, population.channel_cumulative[month.active[rows]])
    ts = month.window.timestamps(rng, rows)
    order = _chronological_order(ts)
    chunks.add(
        "transactions",
        customer=month.active[rows[order]].astype(np.int32),
        ts=ts[order],
        product=product[order].astype(np.int8),
        amount=np.round(amount[order], 2),
        margin=np.round(margin[order], 2),
        channel=channel[order],
    )
    return np.bincount(held_rows[is_card], weights=counts[is_card], minlength=len(month.active))


def _interactions(
    rng: np.random.Generator,
    population: _Population,
    state: _State,
    month: _Month,
    chunks: _Chunks,
) -> np.ndarray:
    """Logins, calls, complaints, visits and email opens.

    Returns:
        Counts per active customer and kind, plus a last column counting low (<= 2) scores.
    """
    active = month.active
    channel = {c: population.channel_probs[active, j] for j, c in enumerate(CHANNELS)}
    level = population.activity[active] * month.engagement
    incident = state.incident[active].astype(np.float32)
    rate = np.stack(
        [
            3.0 * (channel["mobile"] + channel["online"]) * level,
            (0.08 + 1.2 * channel["phone"]) * (1 + 2 * incident),
            population.complaint_rate[active] * (1 + 8 * incident),
            2.5 * channel["atm"] * level,
            1.5 * channel["branch"] * level,
            population.email_rate[active] * month.engagement,
        ],
        axis=1,
    )
    counts = rng.poisson(rate * month.window.fraction[:, None].astype(np.float32))
    flat = np.repeat(np.arange(counts.size, dtype=np.int64), counts.ravel())
    rows, kind = np.divmod(flat, len(INTERACTION_KINDS))
    del flat
    satisfaction = _satisfaction(
        rng, population.satisfaction_base[active[rows]], kind, incident[rows]
    )
    ts = month.window.timestamps(rng, rows)
    order = _chronological_order(ts)
    chunks.add(
        "interactions",
        customer=active[rows[order]].astype(np.int32),
        ts=ts[order],
        kind=kind[order].astype(np.int8),
        satisfaction=satisfaction[order],
    )
    low = np.bincount(rows[satisfaction <= 2], minlength=len(active))
    return np.column_stack([counts, low])


def _satisfaction(
    rng: np.random.Generator, base: np.ndarray, kind: np.ndarray, incident: np.ndarray
) -> np.ndarray:
    """1-5 scores on calls (around the customer's level) and complaints (mostly low); else NaN."""
    noise = rng.normal(0, 0.9, len(kind)).astype(np.float32)
    call = np.clip(np.round(base + noise - 0.8 * incident), 1, 5)
    complaint = np.clip(np.round(1.7 + 0.9 * noise), 1, 5)
    is_call = kind == INTERACTION_KINDS.index("call")
    is_complaint = kind == INTERACTION_KINDS.index("complaint")
    return np.where(is_call, call, np.where(is_complaint, complaint, np.nan)).astype(np.float64)


def _balance_rows(
    population: _Population,
    month: _Month,
    open_at_end: np.ndarray,
    month_end_ns: int,
    after_rate_cut: bool,
    chunks: _Chunks,
) -> None:
    """One row per account held at month end by a customer still open then."""
    columns = [PRODUCT_IDS.index(p) for p in BALANCE_PRODUCTS]
    rows, account = np.nonzero(month.held[:, columns] & open_at_end[:, None])
    rates = _account_rates(population, month.active[rows], after_rate_cut)
    chunks.add(
        "balances",
        customer=month.active[rows].astype(np.int32),
        ts=np.full(len(rows), month_end_ns, np.int64),
        account=account.astype(np.int8),
        balance=np.round(month.balances[rows, account].astype(np.float64), 2),
        rate=rates[np.arange(len(rows)), account],
    )


def _account_rates(
    population: _Population, customers: np.ndarray, after_rate_cut: bool
) -> np.ndarray:
    """Annual rate of every balance product for the given customers (NaN: no rate)."""
    deposit_rates = DEPOSIT_RATES_AFTER_CUT if after_rate_cut else DEPOSIT_RATES_BEFORE_CUT
    rates = np.full((len(customers), len(BALANCE_PRODUCTS)), np.nan)
    for product_id, rate in deposit_rates.items():
        rates[:, BALANCE_PRODUCTS.index(product_id)] = rate
    rates[:, BALANCE_PRODUCTS.index("mortgage")] = population.mortgage_rate[customers]
    rates[:, BALANCE_PRODUCTS.index("personal_loan")] = population.loan_rate[customers]
    return rates.round(4)


def _remember(
    state: _State, month: _Month, interactions: np.ndarray, card_events: np.ndarray
) -> None:
    """Store this month's complaints, low scores and activity for the next months' hazard."""
    kinds = {k: j for j, k in enumerate(INTERACTION_KINDS)}
    slot3, slot6 = month.index % 3, month.index % 6
    state.complaints[:, slot3] = 0
    state.low_satisfaction[:, slot3] = False
    state.activity[:, slot6] = 0
    state.complaints[month.active, slot3] = np.minimum(interactions[:, kinds["complaint"]], 127)
    state.low_satisfaction[month.active, slot3] = interactions[:, -1] > 0
    engaged = [kinds[k] for k in ("login", "atm_visit", "branch_visit", "email_open")]
    activity = interactions[:, engaged].sum(axis=1) + card_events
    state.activity[month.active, slot6] = np.minimum(activity, np.iinfo(np.int16).max)


# --- assembling the frames -------------------------------------------------------------------


def _customer_ids(first: int, n: int, total: int) -> pa.LargeStringArray:
    """Ids C0000001, C0000002, ... (`n` from `first`, padded for a bank of `total`) in the
    large-string layout pandas keeps (no later cast)."""
    width = max(7, len(str(total)))
    numbers = pc.cast(pa.array(np.arange(first, first + n)), pa.large_string())
    prefix, separator = pa.scalar("C", pa.large_string()), pa.scalar("", pa.large_string())
    padded = pc.utf8_lpad(numbers, width=width, padding="0")
    return pc.binary_join_element_wise(prefix, padded, separator)


def _strings(labels: pa.Array, codes: np.ndarray) -> pd.arrays.ArrowStringArray:
    """A pandas string column of `labels` taken at `codes`, built by Arrow without Python objects.

    Arrow allocates through the system allocator so it reuses the memory numpy just released.
    """
    taken = pc.take(labels, pa.array(codes), memory_pool=pa.system_memory_pool())
    return pd.arrays.ArrowStringArray(taken)


def _categories(labels: tuple[str, ...], codes: np.ndarray) -> pd.Categorical:
    """A categorical text column (one byte a row) with every label as a category, in order."""
    return pd.Categorical.from_codes(codes, categories=pd.Index(labels, dtype=object))


def _timestamps(ns: np.ndarray) -> np.ndarray:
    return ns.view("datetime64[ns]")


def _customers_frame(population: _Population, state: _State, ids: pa.Array) -> pd.DataFrame:
    closed = np.where(state.closed_ns == NOT_CLOSED_NS, np.iinfo(np.int64).min, state.closed_ns)
    return pd.DataFrame(
        {
            "customer_id": pd.arrays.ArrowStringArray(ids),
            "signup_date": _timestamps(population.signup_ns),
            "region": _categories(REGIONS, population.region),
            "age": population.age.astype(np.int64),
            "consent_marketing": population.consent,
            "closed_at": _timestamps(closed),
        }
    )


EVENT_CODES: dict[str, tuple[str, ...]] = {
    "product": PRODUCT_IDS,
    "channel": CHANNELS,
    "kind": INTERACTION_KINDS,
    "account": BALANCE_PRODUCTS,
}
"""The labels of the event tables' coded text columns (the chunks hold one-byte codes)."""


def _event_frame(
    chunks: _Chunks, ids: pa.Array, table: str, columns: dict[str, str]
) -> pd.DataFrame:
    """One event table: customer ids and timestamps, then `columns` (frame name: chunk column),
    the coded ones (`EVENT_CODES`) as categoricals."""
    frame: dict[str, Any] = {
        "customer_id": _strings(ids, chunks.take(table, "customer")),
        "ts": _timestamps(chunks.take(table, "ts")),
    }
    for name, column in columns.items():
        values = chunks.take(table, column)
        frame[name] = _categories(EVENT_CODES[column], values) if column in EVENT_CODES else values
    return pd.DataFrame(frame, copy=False)


def _customers_truth_frame(population: _Population, state: _State, ids: pa.Array) -> pd.DataFrame:
    closed = np.where(state.closed_ns == NOT_CLOSED_NS, np.iinfo(np.int64).min, state.closed_ns)
    return pd.DataFrame(
        {
            "customer_id": pd.arrays.ArrowStringArray(ids),
            "true_segment": _categories(SEGMENT_NAMES, population.segment),
            "closed_at": _timestamps(closed),
            "wealth": population.wealth.astype(np.float64),
            "rate_sensitivity": population.rate_sensitivity.astype(np.float64),
            "churn_frailty": population.churn_base.astype(np.float64),
        }
    )


def _monthly_churn_frame(chunks: _Chunks, ids: pa.Array, calendar: _Calendar) -> pd.DataFrame:
    t = "monthly_churn"
    month = chunks.take(t, "month")
    return pd.DataFrame(
        {
            "customer_id": _strings(ids, chunks.take(t, "customer")),
            "month": _timestamps(calendar.bounds[:-1][month]),
            "churn_probability": chunks.take(t, "probability").astype(np.float64),
            "closed": chunks.take(t, "closed"),
        },
        copy=False,
    )


def _rate_changes_frame(calendar: _Calendar, rate_cut_month: int) -> pd.DataFrame:
    effective = calendar.month_start(rate_cut_month)
    return pd.DataFrame(
        {
            "account_type": pd.array(list(DEPOSIT_RATES_BEFORE_CUT), dtype="string[pyarrow]"),
            "effective_month": [effective] * len(DEPOSIT_RATES_BEFORE_CUT),
            "rate_before": list(DEPOSIT_RATES_BEFORE_CUT.values()),
            "rate_after": list(DEPOSIT_RATES_AFTER_CUT.values()),
        }
    )
