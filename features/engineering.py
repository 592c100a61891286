"""Feature engineering: contract tables to point-in-time snapshot feature tables, one per view.

Point in time. A feature at snapshot ``t`` only uses events with ``ts < t`` (strictly before);
"the last N days" is the window ``[t - N days, t)``, exact to the second. Snapshot times are
floored to whole seconds first, so the comparison can run on whole seconds without changing its
meaning. Customer attributes (region, age, consent) are the values as delivered: the contract
keeps no history of them.

How it scales. Every event table is turned once into numpy arrays sorted by time (customer,
product and kind as integer codes). Snapshots are then visited in time order: window sums are
``np.bincount`` over the contiguous slice of events inside the window, and "latest event before
``t``" states (recency, holdings, latest balance) are carried forward from one snapshot to the
next, so each event is visited once for them. No loop runs over customers.

Missing optional data. Without interactions the engagement counts are 0 and the last
satisfaction NaN; without balances (or a channel column) the balance columns (digital share)
are NaN. Every view therefore keeps its full catalog column set, whatever the data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.catalog import (
    BALANCE_TYPES,
    DEPOSIT_TYPES,
    DIGITAL_CHANNELS,
    ENTITY_KEY,
    HOLDING_WINDOW_DAYS,
    IDLE_CASH_BUFFER,
    SPEND_TREND_CAP,
    TIMESTAMP_FIELD,
    View,
    holding_column,
    views_for,
)
from loyal.errors import DataContractError

log = logging.getLogger(__name__)

Tables = Mapping[str, pd.DataFrame]

DAY = 86_400
"""Seconds per day: event streams keep time in whole seconds (since a UTC midnight)."""

MONTH_DAYS = 30.4375
NEVER = np.int64(np.iinfo(np.int64).min)
"""Time of an event that did not happen."""

FOREVER = np.int64(np.iinfo(np.int64).max)
"""Closure time of a customer who never closed."""

MAX_HOLDING_COLUMNS = 50
"""Products with a holdings column when the products table is larger: the most held ones."""

DENSE_PAIR_LIMIT = 2**25
"""Largest customers x items grid kept dense (if also at most 4 slots per event); sparser data
is factorized into the pairs present."""

CHUNK = 2**22
"""Events per step where a step would otherwise allocate an event-sized temporary."""

NEW_CUSTOMER_DAYS = 90
ACTIVE_DAYS = 90
AT_RISK_DAYS = 180
LAPSED_DAYS = 365
SATISFACTION_DAYS = 365
LOW_SATISFACTION = 2.0
"""Satisfaction scores at or below this (of 5) count as low."""
TREND_DAYS = 90
"""Activity trend: the last TREND_DAYS against the TREND_DAYS before them."""
ENGAGED_KINDS = ("login", "atm_visit", "branch_visit", "email_open")
"""Interaction kinds a customer starts (service calls and complaints are not engagement)."""
REGULARITY_MONTHS = 12

INTERACTION_KINDS: dict[str, str] = {
    "login": "logins",
    "call": "calls",
    "complaint": "complaints",
    "atm_visit": "atm_visits",
    "branch_visit": "branch_visits",
    "email_open": "email_opens",
}
"""Contract interaction kinds (compared lower-case) and the feature prefix they count into."""

AGE_BANDS: tuple[tuple[float, str], ...] = (
    (25, "<25"),
    (35, "25-34"),
    (45, "35-44"),
    (55, "45-54"),
    (65, "55-64"),
    (np.inf, "65+"),
)


# ------------------------------------------------------------------------------ snapshot times


def normalize_snapshots(snapshots: Iterable[object]) -> pd.DatetimeIndex:
    """Snapshot times as sorted, unique, naive UTC timestamps floored to whole seconds.

    Args:
        snapshots: timestamps (naive UTC or tz-aware, any precision).
    """
    stamps = pd.to_datetime(pd.Series(list(snapshots), dtype=object), utc=True)
    index = pd.DatetimeIndex(stamps.dt.tz_localize(None).astype("datetime64[ns]"))
    floored = index.floor("s")
    if (floored != index).any():
        log.info("Snapshot times floored to whole seconds")
    return pd.DatetimeIndex(floored.unique().sort_values())


def observed_until(tables: Tables) -> pd.Timestamp:
    """End of the observed data: midnight after the latest day holding any event or date.

    Args:
        tables: contract tables; every timestamp and date column of the event tables and of
            customers (signup, closure) counts.
    """
    latest = [_latest_time(tables["transactions"], "ts")]
    for name in ("interactions", "balances"):
        if name in tables:
            latest.append(_latest_time(tables[name], "ts"))
    latest.append(_latest_time(tables["customers"], "signup_date"))
    latest.append(_latest_time(tables["customers"], "closed_at"))
    known = [t for t in latest if t is not None]
    if not known:
        raise DataContractError("transactions", "needs at least one row to place snapshots")
    return max(known).normalize() + pd.Timedelta(days=1)


def snapshot_times(
    data: Tables | pd.DataFrame,
    frequency: str = "MS",
    start: object | None = None,
    end: object | None = None,
    last_n: int | None = None,
) -> pd.DatetimeIndex:
    """Snapshot times on a regular grid over the data's history.

    Args:
        data: the contract tables, or just the transactions.
        frequency: pandas offset alias of the grid; "MS" = month starts (midnight UTC).
        start: first possible snapshot (default: midnight of the first transaction's day).
        end: last possible snapshot, inclusive (default: midnight after the last observed day,
            so the final snapshot can see every event).
        last_n: keep only the last `n` snapshots.

    Returns:
        Naive UTC timestamps, ascending.
    """
    transactions = data if isinstance(data, pd.DataFrame) else data["transactions"]
    first = _earliest_time(transactions, "ts")
    if first is None:
        raise DataContractError("transactions", "needs at least one row to place snapshots")
    if end is None:
        if isinstance(data, pd.DataFrame):
            latest = _latest_time(data, "ts")
            end = (latest or first).normalize() + pd.Timedelta(days=1)
        else:
            end = observed_until(data)
    return snapshot_grid(first, end, frequency, start, last_n)


def snapshot_grid(
    first: object,
    end: object,
    frequency: str = "MS",
    start: object | None = None,
    last_n: int | None = None,
) -> pd.DatetimeIndex:
    """The grid of `snapshot_times` from the first transaction's time and the observed end.

    Args:
        first: the first transaction's time.
        end: last possible snapshot, inclusive.
        frequency: pandas offset alias of the grid.
        start: first possible snapshot (default: midnight of `first`'s day).
        last_n: keep only the last `n` snapshots.
    """
    grid = pd.date_range(
        start=_naive(start) if start is not None else _naive(first).normalize(),
        end=_naive(end),
        freq=frequency,
    )
    snapshots = normalize_snapshots(grid)
    if last_n is not None:
        snapshots = snapshots[-last_n:] if last_n > 0 else snapshots[:0]
    return snapshots


def latest_snapshot(tables: Tables, at: object | None = None) -> pd.DatetimeIndex:
    """A single snapshot for the online "now" build.

    Args:
        tables: the contract tables.
        at: the moment to build for (default: one second after the latest event, so every
            event counts and the snapshot never lies ahead of the data).

    Returns:
        One naive UTC timestamp, floored to the second.
    """
    if at is not None:
        return normalize_snapshots([_naive(at)])
    latest = [_latest_time(tables["transactions"], "ts")]
    for name in ("interactions", "balances"):
        if name in tables:
            latest.append(_latest_time(tables[name], "ts"))
    known = [t for t in latest if t is not None]
    if not known:
        raise DataContractError("transactions", "needs at least one row to place snapshots")
    return normalize_snapshots([max(known).floor("s") + pd.Timedelta(seconds=1)])


# ------------------------------------------------------------------------- catalog for the data


def holding_products(tables: Tables, max_columns: int = MAX_HOLDING_COLUMNS) -> list[str]:
    """Products that get a holdings column: all of them, or the most held when there are many.

    Args:
        tables: the contract tables.
        max_columns: most columns; a larger catalog keeps the products bought by the most
            customers over the whole history (only the column set depends on it, no value).
    """
    products = [str(p) for p in tables["products"]["product_id"]]
    if len(products) <= max_columns:
        return products
    return most_held(products, product_buyers(tables["transactions"]), max_columns)


def product_buyers(transactions: pd.DataFrame) -> pd.Series:
    """Distinct buyers per product id (sums over disjoint groups of customers)."""
    pairs = transactions[[ENTITY_KEY, "product_id"]].drop_duplicates()
    return pairs["product_id"].value_counts()


def most_held(
    products: Sequence[str], buyers: pd.Series, max_columns: int = MAX_HOLDING_COLUMNS
) -> list[str]:
    """The `max_columns` products with the most buyers, ties in catalog order.

    Args:
        products: the catalog's product ids, in its order.
        buyers: distinct buyers per product id (`product_buyers`).
        max_columns: how many to keep.
    """
    if len(products) <= max_columns:
        return list(products)
    counts = buyers.reindex(list(products), fill_value=0)
    ranked = counts.sort_values(ascending=False, kind="stable")
    log.info("Holdings columns for the %d most held of %d products", max_columns, len(products))
    return [str(p) for p in ranked.index[:max_columns]]


def feature_views(tables: Tables, products: Sequence[str] | None = None) -> dict[str, View]:
    """The catalog for this data: every view, holdings with a column per product held.

    Args:
        tables: the contract tables.
        products: products for the holdings columns (default: `holding_products(tables)`).
    """
    return views_for(holding_products(tables) if products is None else products)


# ------------------------------------------------------------------------------------ building


def build_feature_tables(
    tables: Tables,
    snapshots: Iterable[object],
    products: Sequence[str] | None = None,
    idle_cash_buffer: float = IDLE_CASH_BUFFER,
) -> dict[str, pd.DataFrame]:
    """Point-in-time feature tables, one per catalog view, for every snapshot.

    Args:
        tables: validated, normalized contract tables (customers, transactions, products;
            interactions and balances optional).
        snapshots: snapshot times (e.g. from `snapshot_times` or `latest_snapshot`).
        products: products for the holdings columns (default: `holding_products(tables)`).
        idle_cash_buffer: checking balance not counted as idle cash.

    Returns:
        View name -> frame with `customer_id`, `event_timestamp` (UTC) and the view's features
        in catalog order and types; one row per customer alive at each snapshot (signed up
        before it, not closed before it), ordered by snapshot then customer.

    Every row stays in memory (about 0.5 KB per customer and snapshot over all views); for
    millions of customers write snapshot by snapshot with `iter_feature_tables` instead.
    """
    chosen = holding_products(tables) if products is None else list(products)
    views = views_for(chosen)
    builder = _Builder(tables, chosen, idle_cash_buffer)
    times = normalize_snapshots(snapshots)
    counts = [builder.population(t).size for t in _seconds(times)]
    total = sum(counts)
    columns = {name: _allocate(view, total) for name, view in views.items()}
    ids = np.empty(total, dtype=object)
    stamps = np.empty(total, dtype=np.int64)
    row = 0
    for t, n in zip(_seconds(times), counts, strict=True):
        snap = builder.snapshot(t)
        ids[row : row + n] = snap.ids
        stamps[row : row + n] = t
        for name, view in views.items():
            for feature_name in view.feature_names:
                columns[name][feature_name][row : row + n] = snap.columns[feature_name]
        row += n
    frames = {name: _frame(ids, stamps, columns[name]) for name in views}
    for name, frame in frames.items():
        log.info("View %s: %d rows x %d features", name, len(frame), len(views[name].features))
    return frames


def iter_feature_tables(
    tables: Tables,
    snapshots: Iterable[object],
    products: Sequence[str] | None = None,
    idle_cash_buffer: float = IDLE_CASH_BUFFER,
    has_channel: bool | None = None,
) -> Iterator[dict[str, pd.DataFrame]]:
    """The tables of `build_feature_tables`, one snapshot at a time, for bounded memory.

    Writers that append each snapshot to their files (e.g. a Parquet row group per snapshot)
    hold one snapshot's rows at a time instead of the whole history.

    Args:
        tables: validated, normalized contract tables.
        snapshots: snapshot times.
        products: products for the holdings columns (default: `holding_products(tables)`).
        idle_cash_buffer: checking balance not counted as idle cash.
        has_channel: whether the whole data records channels (default: whether these tables
            do); a partition of customers whose channels are all blank still gets a digital
            share of 0, not NaN, when other customers' channels are known.

    Yields:
        View name -> frame of one snapshot, in snapshot order.
    """
    chosen = holding_products(tables) if products is None else list(products)
    views = views_for(chosen)
    builder = _Builder(tables, chosen, idle_cash_buffer, has_channel)
    for t in _seconds(normalize_snapshots(snapshots)):
        snap = builder.snapshot(t)
        stamps = np.full(snap.ids.size, t, dtype=np.int64)
        yield {
            name: _frame(snap.ids, stamps, {f: snap.columns[f] for f in view.feature_names})
            for name, view in views.items()
        }


# ------------------------------------------------------------------------------ pure feature math


def spend_trend(last: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Relative change of spend, `(last - before) / before`, clipped to [-1, SPEND_TREND_CAP].

    Negative sums (net refunds) count as zero spend. Zero in both periods is no change (0);
    spending that starts from zero is the cap.

    Args:
        last: spend in the recent period.
        before: spend in the period before it.
    """
    last = np.clip(np.asarray(last, dtype=np.float64), 0.0, None)
    before = np.clip(np.asarray(before, dtype=np.float64), 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = (last - before) / before
    change = np.where(before > 0, change, np.where(last > 0, SPEND_TREND_CAP, 0.0))
    return np.clip(change, -1.0, SPEND_TREND_CAP)


def lifecycle_state(
    tenure_days: np.ndarray, recency_days: np.ndarray, bought_earlier: np.ndarray
) -> np.ndarray:
    """Lifecycle state per customer; the first rule that applies wins.

    - new: signed up less than 90 days ago;
    - then by days since the last purchase (since signup when there is none yet):
      under 90 days: repeat if the customer also bought in the 275 days before those 90,
      else active; under 180: at_risk; under 365: lapsed; else lost.

    Args:
        tenure_days: days since signup.
        recency_days: days since the last purchase, NaN if none.
        bought_earlier: whether there was a purchase in `[t - 365 days, t - 90 days)`.
    """
    tenure = np.asarray(tenure_days, dtype=np.float64)
    quiet = np.asarray(recency_days, dtype=np.float64)
    quiet = np.where(np.isnan(quiet), tenure, quiet)
    conditions = [
        tenure < NEW_CUSTOMER_DAYS,
        (quiet < ACTIVE_DAYS) & np.asarray(bought_earlier, dtype=bool),
        quiet < ACTIVE_DAYS,
        quiet < AT_RISK_DAYS,
        quiet < LAPSED_DAYS,
    ]
    choices = ["new", "repeat", "active", "at_risk", "lapsed"]
    return np.select(conditions, choices, default="lost").astype(object)


def age_band(age: np.ndarray) -> np.ndarray:
    """Age bands <25, 25-34, 35-44, 45-54, 55-64, 65+; "unknown" where age is NaN."""
    age = np.asarray(age, dtype=np.float64)
    bounds = np.array([b for b, _ in AGE_BANDS])
    labels = np.array([label for _, label in AGE_BANDS] + ["unknown"], dtype=object)
    position = np.searchsorted(bounds, age, side="right")
    return labels[np.where(np.isnan(age), len(AGE_BANDS), position)]


# ------------------------------------------------------------------------ shared building blocks


def to_seconds(values: pd.Series) -> np.ndarray:
    """Whole seconds since the epoch (floored) of a datetime column; NaT becomes `NEVER`."""
    stamps = pd.to_datetime(values)
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    ns = stamps.to_numpy(dtype="datetime64[ns]").view(np.int64)
    seconds = np.floor_divide(ns, 10**9)
    missing = ns == NEVER
    if missing.any():
        seconds[missing] = NEVER
    return seconds


def codes_in(values: pd.Series, index: pd.Index) -> np.ndarray:
    """Position of each value in a unique index, -1 where absent (int64).

    Categorical and Arrow-backed columns map their categories once, which is much faster on
    tens of millions of rows than hashing every string.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        categories = pd.Index(values.cat.categories.astype(object))
        lookup = np.append(index.get_indexer(categories), -1)  # code -1 (missing) -> last
        return lookup[values.cat.codes.to_numpy()]
    return index.get_indexer(pd.Index(values))


def customer_index(customers: pd.DataFrame) -> pd.Index:
    """The customer ids as a unique index: a customer's position is its code everywhere."""
    index = pd.Index(customers[ENTITY_KEY].to_numpy(dtype=object))
    if not index.is_unique:
        raise DataContractError("customers", "customer ids must be unique", ENTITY_KEY)
    return index


def time_order(seconds: np.ndarray) -> np.ndarray | None:
    """Indices sorting event times ascending (ties keep input order); None if already sorted."""
    if seconds.size < 2 or bool(np.all(seconds[1:] >= seconds[:-1])):
        return None
    low = int(seconds.min())
    if int(seconds.max()) - low < 2**32 and seconds.size < 2**32:
        # One in-place sort of packed (time, position) keys: several times faster than an
        # argsort, and the result reuses the keys' memory.
        packed = (seconds - low).astype(np.uint64)
        packed <<= np.uint64(32)
        for lo in range(0, seconds.size, CHUNK):
            hi = min(lo + CHUNK, seconds.size)
            packed[lo:hi] |= np.arange(lo, hi, dtype=np.uint64)
        packed.sort()
        packed &= np.uint64(0xFFFFFFFF)
        return packed.view(np.int64)
    return np.argsort(seconds, kind="stable")


def purchase_mask(transactions: pd.DataFrame) -> np.ndarray:
    """Which transactions are purchases: every non-refund row (amount >= 0)."""
    return transactions["amount"].to_numpy(dtype=np.float64) >= 0


# -------------------------------------------------------------------------------- internals


def _naive(moment: object) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)  # type: ignore[arg-type]
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tz is not None else stamp


def _latest_time(frame: pd.DataFrame, column: str) -> pd.Timestamp | None:
    if column not in frame.columns or frame[column].isna().all():
        return None
    return _naive(frame[column].max())


def _earliest_time(frame: pd.DataFrame, column: str) -> pd.Timestamp | None:
    if column not in frame.columns or frame[column].isna().all():
        return None
    return _naive(frame[column].min())


def _seconds(times: pd.DatetimeIndex) -> list[int]:
    return [int(v) for v in times.asi8 // 10**9]


def _allocate(view: View, rows: int) -> dict[str, np.ndarray]:
    return {name: np.empty(rows, dtype=dtype) for name, dtype in view.dtypes.items()}


def _frame(ids: np.ndarray, stamps: np.ndarray, columns: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """A view table from column arrays (seconds for the timestamps), without extra copies."""
    event_time = pd.DatetimeIndex((stamps * 10**9).view("datetime64[ns]")).tz_localize("UTC")
    data = {ENTITY_KEY: ids, TIMESTAMP_FIELD: event_time, **columns}
    return pd.DataFrame(data, copy=False)


def _column(frame: pd.DataFrame | None, name: str) -> pd.Series | None:
    """A column that exists and holds at least one value, else None."""
    if frame is None or name not in frame.columns or frame[name].isna().all():
        return None
    return frame[name]


def _sorted_by_time(seconds: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    order = time_order(seconds)
    if order is None:
        return [seconds, *arrays]
    return [seconds[order], *(a[order] for a in arrays)]


def _event_order(seconds: np.ndarray, keep: np.ndarray, table: str) -> np.ndarray | None:
    """Positions of the kept events in time order; None when all are kept and already sorted."""
    if keep.all():
        return time_order(seconds)
    log.warning("Ignoring %d %s rows of unknown customers", int((~keep).sum()), table)
    rows = np.flatnonzero(keep)
    order = time_order(seconds[rows])
    return rows if order is None else rows[order]


def _find(seconds: np.ndarray, cuts: Sequence[int] | int) -> np.ndarray:
    """`np.searchsorted(seconds, cuts)` with the cuts cast to the stream's dtype.

    Without the cast NumPy would upcast a whole int32 stream to int64 on every call.
    """
    info = np.iinfo(seconds.dtype)
    values = np.clip(np.asarray(cuts, dtype=np.int64), info.min, info.max).astype(seconds.dtype)
    return np.searchsorted(seconds, values, side="left")


def _gather(values: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """Values in event order (the array itself when no reordering is needed)."""
    return values if order is None else values[order]


def _fresh(values: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """Values in event order, always in a new array (safe to modify in place)."""
    return values.copy() if order is None else values[order]


def _lower_codes(values: pd.Series, vocabulary: Sequence[str]) -> np.ndarray:
    """Position of each value (stripped, lower-case) in a vocabulary, -1 if absent (int32)."""
    codes, uniques = pd.factorize(values)
    wanted = {v: i for i, v in enumerate(vocabulary)}
    found = [wanted.get(str(u).strip().lower(), -1) for u in uniques]
    lookup = np.array([*found, -1], dtype=np.int32)  # code -1 (missing) -> last
    return lookup[codes]


def _first_of_day(seconds: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """True at the first event of each (group, UTC day), for events sorted by time.

    Works on a few days at a time with a scratch table of about 8M slots, so no event-sized
    temporary is needed. `seconds` must count from a UTC midnight.
    """
    first = np.zeros(seconds.size, dtype=bool)
    if seconds.size == 0:
        return first
    span = max(1, 2**23 // max(n_groups, 1))  # days per step
    scratch = np.full(span * n_groups, FOREVER, dtype=np.int64)
    for start in range(int(seconds[0]) // DAY, int(seconds[-1]) // DAY + 1, span):
        lo, hi = (int(i) for i in _find(seconds, [start * DAY, (start + span) * DAY]))
        if lo == hi:
            continue
        key = (seconds[lo:hi].astype(np.int64) // DAY - start) * n_groups + group[lo:hi]
        position = np.arange(lo, hi, dtype=np.int64)
        np.minimum.at(scratch, key, position)
        first[lo:hi] = scratch[key] == position
        scratch[key] = FOREVER
    return first


@dataclass(frozen=True)
class _Pairs:
    """(customer, item) pairs seen in the data, with an id each; ids run per customer."""

    customer: np.ndarray
    item: np.ndarray
    width: int | None = None
    """Items per customer when the pairs form the full customers x items grid."""

    @property
    def size(self) -> int:
        return int(self.customer.size)


def _per_customer_max(values: np.ndarray, pairs: _Pairs, n: int) -> np.ndarray:
    """Largest value over each customer's pairs, `NEVER` for customers without any."""
    if pairs.width is not None:
        if pairs.width == 0:
            return np.full(n, NEVER, dtype=np.int64)
        return values.reshape(n, pairs.width).max(axis=1)
    out = np.full(n, NEVER, dtype=np.int64)
    np.maximum.at(out, pairs.customer, values)
    return out


def _pair_ids(
    customer: np.ndarray, item: np.ndarray, n_customers: int, n_items: int
) -> tuple[np.ndarray, _Pairs]:
    """Pair id of every event (`pairs.size` where item < 0) and the pair table."""
    valid = item >= 0
    key = customer.astype(np.int64) * n_items + item
    n = n_customers * n_items
    if n <= min(DENSE_PAIR_LIMIT, 4 * customer.size + 1024):
        grid = np.arange(n, dtype=np.int64)
        pairs = _Pairs(_narrow(grid // max(n_items, 1)), _narrow(grid % max(n_items, 1)), n_items)
        return _narrow(np.where(valid, key, n)), pairs
    codes, uniques = pd.factorize(key[valid], sort=True)
    ids = np.full(key.size, uniques.size, dtype=np.int64)
    ids[valid] = codes
    pairs = _Pairs(_narrow(uniques // n_items), _narrow(uniques % n_items))
    return _narrow(ids), pairs


def _narrow(codes: np.ndarray) -> np.ndarray:
    """Integer codes as int32 when they fit (halves the memory of event-sized arrays)."""
    if codes.size == 0 or int(codes.max()) < np.iinfo(np.int32).max:
        return codes.astype(np.int32)
    return codes


class _Latest:
    """Position of each group's latest event before a cut-off that only moves forward.

    Events are sorted by time; group `n_groups` collects events to ignore.
    """

    def __init__(self, seconds: np.ndarray, group: np.ndarray, n_groups: int) -> None:
        self._seconds = seconds
        self._group = group
        self._done = 0
        self._position = np.full(n_groups + 1, -1, dtype=np.int64)

    def advance(self, cut: int) -> np.ndarray:
        """Positions of the latest event with time < `cut` per group, -1 where none."""
        end = int(_find(self._seconds, cut))
        if end < self._done:
            raise ValueError("snapshots must be visited in increasing time order")
        for lo in range(self._done, end, CHUNK):
            hi = min(lo + CHUNK, end)
            positions = np.arange(lo, hi, dtype=np.int64)
            np.maximum.at(self._position, self._group[lo:hi], positions)
        self._done = max(self._done, end)
        return self._position[:-1]

    def times(self, cut: int) -> np.ndarray:
        """Time of the latest event before `cut` per group, `NEVER` where none."""
        position = self.advance(cut)
        if self._seconds.size == 0:
            return np.full(position.size, NEVER, dtype=np.int64)
        seen = self._seconds[np.maximum(position, 0)].astype(np.int64)
        return np.where(position >= 0, seen, np.int64(NEVER))


class _Tally:
    """Running count of events per group before a cut-off that only moves forward."""

    def __init__(self, seconds: np.ndarray, group: np.ndarray, n_groups: int) -> None:
        self._seconds = seconds
        self._group = group
        self._done = 0
        self._count = np.zeros(n_groups + 1, dtype=np.int64)

    def advance(self, cut: int) -> np.ndarray:
        """Events with time < `cut` per group."""
        end = int(_find(self._seconds, cut))
        if end > self._done:
            self._count += np.bincount(self._group[self._done : end], minlength=self._count.size)
            self._done = end
        return self._count[:-1]


@dataclass(frozen=True)
class _Snapshot:
    ids: np.ndarray
    columns: dict[str, np.ndarray]


def _counts(group: np.ndarray, lo: int, hi: int, n: int) -> np.ndarray:
    """Events per group in positions [lo, hi); group `n` is ignored."""
    return np.bincount(group[lo:hi], minlength=n + 1)[:n]


def _sums(group: np.ndarray, weights: np.ndarray, lo: int, hi: int, n: int) -> np.ndarray:
    """Sum of weights per group in positions [lo, hi); group `n` is ignored."""
    return np.bincount(group[lo:hi], weights=weights[lo:hi], minlength=n + 1)[:n]


class _Builder:
    """Prepared event streams and running state; `snapshot(t)` must be called with rising t."""

    def __init__(
        self,
        tables: Tables,
        products: Sequence[str],
        idle_cash_buffer: float,
        has_channel: bool | None = None,
    ) -> None:
        self.idle_cash_buffer = idle_cash_buffer
        self.holding_products = [str(p) for p in products]
        self._prepare_customers(tables["customers"])
        self._prepare_clock(tables)
        self._prepare_items(tables["products"], tables.get("balances"))
        self._prepare_transactions(tables["transactions"], has_channel)
        self._prepare_interactions(tables.get("interactions"))
        self._prepare_balances(tables.get("balances"))

    # ---------------------------------------------------------------------------- preparation

    def _prepare_customers(self, customers: pd.DataFrame) -> None:
        self.index = customer_index(customers)
        self.n = len(self.index)
        self.ids = self.index.to_numpy(dtype=object)
        self.signup = to_seconds(customers["signup_date"])
        closed = _column(customers, "closed_at")
        closed_at = to_seconds(closed) if closed is not None else np.full(self.n, NEVER)
        self.closed = np.where(closed_at == NEVER, FOREVER, closed_at)
        age = _column(customers, "age")
        self.age = (
            pd.to_numeric(age).to_numpy(dtype=np.float64)
            if age is not None
            else np.full(self.n, np.nan)
        )
        self.age_band = age_band(self.age)
        region = _column(customers, "region")
        self.region = (
            region.astype(object).where(region.notna(), "unknown").astype(str).to_numpy(object)
            if region is not None
            else np.full(self.n, "unknown", dtype=object)
        )
        consent = _column(customers, "consent_marketing")
        self.consent = (
            consent.astype(object).where(consent.notna(), False).astype(bool).to_numpy()
            if consent is not None
            else np.zeros(self.n, dtype=bool)
        )

    def _prepare_clock(self, tables: Tables) -> None:
        """Event times are kept as seconds since `base` (a UTC midnight), int32 when they fit."""
        present = [tables[n] for n in ("transactions", "interactions", "balances") if n in tables]
        first = [t for t in (_earliest_time(f, "ts") for f in present) if t is not None]
        last = [t for t in (_latest_time(f, "ts") for f in present) if t is not None]
        self.base = int(min(first).normalize().value // 10**9) if first else 0
        span = int(max(last).value // 10**9) - self.base if last else 0
        self.time_dtype = np.int32 if span < np.iinfo(np.int32).max else np.int64
        self.signup = self.signup - self.base
        self.closed = np.where(self.closed == FOREVER, FOREVER, self.closed - self.base)

    def _event_times(self, values: pd.Series) -> np.ndarray:
        seconds = to_seconds(values)
        seconds -= self.base
        return seconds.astype(self.time_dtype)

    def _prepare_items(self, products: pd.DataFrame, balances: pd.DataFrame | None) -> None:
        """Items = products plus balance account types; each item has a category."""
        product_ids = [str(p) for p in products["product_id"]]
        self.balance_kind = np.zeros(0, dtype=np.int64)
        account_types: list[str] = []
        if balances is not None and len(balances):
            kind, uniques = pd.factorize(balances["account_type"])
            self.balance_kind = _narrow(kind)
            account_types = [str(a) for a in uniques]
        known = set(product_ids)
        extra = [a for a in account_types if a not in known]
        self.items = pd.Index(product_ids + extra)
        category = _column(products, "category")
        names = (
            category.astype(object).where(category.notna(), products["product_id"])
            if category is not None
            else products["product_id"]
        )
        codes, uniques = pd.factorize(pd.Series([str(c) for c in names] + extra, dtype=object))
        self.item_category = codes.astype(np.int64)
        self.n_categories = len(uniques)
        rate = _column(products, "margin_rate")
        rates = (
            rate.to_numpy(dtype=np.float64) if rate is not None else np.full(len(products), np.nan)
        )
        self.item_margin_rate = np.append(rates, np.full(len(extra) + 1, np.nan))  # last: unknown
        self.balance_types = pd.Index(account_types)
        self.item_balance_type = self.balance_types.get_indexer(self.items).astype(np.int64)
        self.holding_codes = self.items.get_indexer(pd.Index(self.holding_products))

    def _prepare_transactions(self, tx: pd.DataFrame, has_channel: bool | None) -> None:
        """Transactions as time-sorted arrays; each column is gathered once, then freed."""
        n = self.n
        codes = _narrow(codes_in(tx[ENTITY_KEY], self.index))
        order = _event_order(self._event_times(tx["ts"]), codes >= 0, "transactions")
        customer = _gather(codes, order)
        del codes
        seconds = _gather(self._event_times(tx["ts"]), order)
        item = _gather(_narrow(codes_in(tx["product_id"], self.items)), order)
        amount = _gather(tx["amount"].to_numpy(dtype=np.float64), order)
        given = _column(tx, "margin")
        margin = self._margins(
            item, amount, None if given is None else _fresh(given.to_numpy(np.float64), order)
        )
        channel = _column(tx, "channel")
        if channel is None and has_channel and "channel" in tx.columns:
            channel = tx["channel"]
        self.has_channel = channel is not None
        self.tx_digital = np.zeros(0, dtype=np.int32)
        if channel is not None:
            digital = _gather(_lower_codes(channel, sorted(DIGITAL_CHANNELS)) >= 0, order)
            self.tx_digital = np.where(digital, customer, n).astype(np.int32)
            del digital
        del order
        purchase = amount >= 0
        self.tx_seconds, self.tx_customer = seconds, customer
        self.tx_amount, self.tx_margin = amount, margin
        # A purchase day is a customer-day with at least one non-refund transaction, counted at
        # its first such transaction (refunds go to the sink group n).
        purchase_day = np.where(purchase, customer, n).astype(np.int32)
        purchase_day[~_first_of_day(seconds, purchase_day, n + 1)] = n
        self.tx_purchase_day = purchase_day
        # Holdings: any transaction of the item; categories (and recency): purchases only.
        self.tx_holding, self.holding_pairs = _pair_ids(customer, item, n, len(self.items))
        category = np.append(self.item_category, -1).astype(np.int32)[item]  # item -1 -> -1
        category[~purchase] = -1
        del item, purchase
        self.tx_category, self.category_pairs = _pair_ids(customer, category, n, self.n_categories)
        del category
        self.purchase_days = _Tally(seconds, self.tx_purchase_day, n)
        self.latest_holding = _Latest(seconds, self.tx_holding, self.holding_pairs.size)
        self.latest_category = _Latest(seconds, self.tx_category, self.category_pairs.size)
        self.new_product = self._new_product_stream()

    def _margins(
        self, item: np.ndarray, amount: np.ndarray, given: np.ndarray | None
    ) -> np.ndarray:
        """A transaction's margin, else amount x its product's margin_rate, else 0."""
        rates = np.where(np.isnan(self.item_margin_rate), 0.0, self.item_margin_rate)
        unknown_rate = np.isnan(self.item_margin_rate)
        if given is None:
            missing = np.ones(item.size, dtype=bool)
            margin = amount * rates[item]  # item -1 (unknown) -> the last rate, NaN -> 0
        else:
            missing = np.isnan(given)
            margin = given
            margin[missing] = amount[missing] * rates[item[missing]]
        unknown = int(np.count_nonzero(unknown_rate[item[missing]]))
        if unknown:
            log.warning("%d transactions have no margin and no margin_rate: margin 0", unknown)
        return margin

    def _new_product_stream(self) -> _Latest:
        """First use of each (customer, item) pair as a time-sorted stream per customer."""
        pairs, size = self.holding_pairs, self.tx_seconds.size
        first = np.full(pairs.size + 1, size, dtype=np.int64)
        for lo in range(0, size, CHUNK):
            hi = min(lo + CHUNK, size)
            np.minimum.at(first, self.tx_holding[lo:hi], np.arange(lo, hi, dtype=np.int64))
        used = np.flatnonzero(first[:-1] < size)
        seconds, customer = _sorted_by_time(
            self.tx_seconds[first[used]], pairs.customer[used].astype(np.int32)
        )
        return _Latest(seconds, customer, self.n)

    def _prepare_interactions(self, interactions: pd.DataFrame | None) -> None:
        n = self.n
        self.kinds = list(INTERACTION_KINDS)
        k = len(self.kinds)
        empty = np.zeros(0, dtype=np.int64)
        self.in_seconds, self.in_group = empty, empty.astype(np.int32)
        self.rating_value = np.zeros(0)
        self.latest_rating = _Latest(empty, empty, n)
        self.low_seconds, self.low_customer = empty, empty.astype(np.int32)
        if interactions is None or interactions.empty:
            return
        customer = codes_in(interactions[ENTITY_KEY], self.index)
        order = _event_order(self._event_times(interactions["ts"]), customer >= 0, "interactions")
        self.in_seconds = _gather(self._event_times(interactions["ts"]), order)
        customer = _gather(customer, order)
        kind = _gather(_lower_codes(interactions["kind"], self.kinds), order)
        self.in_group = _narrow(np.where(kind >= 0, customer * k + kind, n * k))
        del kind
        score = _column(interactions, "satisfaction")
        if score is not None:
            satisfaction = _gather(score.to_numpy(dtype=np.float64), order)
            rated = np.flatnonzero(~np.isnan(satisfaction))
            self.rating_value = satisfaction[rated]
            self.latest_rating = _Latest(
                self.in_seconds[rated], customer[rated].astype(np.int32), n
            )
            low = rated[self.rating_value <= LOW_SATISFACTION]
            self.low_seconds = self.in_seconds[low]
            self.low_customer = customer[low].astype(np.int32)

    def _prepare_balances(self, balances: pd.DataFrame | None) -> None:
        n, b = self.n, len(self.balance_types)
        self.has_balances = balances is not None and not balances.empty and b > 0
        if balances is None or not self.has_balances:
            empty = np.zeros(0, dtype=np.int64)
            self.bal_balance, self.bal_rate = np.zeros(0), np.zeros(0)
            self.latest_balance = _Latest(empty, empty, n * b)
            return
        customer = codes_in(balances[ENTITY_KEY], self.index)
        order = _event_order(self._event_times(balances["ts"]), customer >= 0, "balances")
        seconds = _gather(self._event_times(balances["ts"]), order)
        group = _narrow(_gather(customer, order) * b + _gather(self.balance_kind, order))
        del customer
        self.balance_kind = np.zeros(0, dtype=np.int64)
        balance = _gather(balances["balance"].to_numpy(dtype=np.float64), order)
        rate = _column(balances, "rate")
        rates = (
            _gather(rate.to_numpy(dtype=np.float64), order)
            if rate is not None
            else np.full(seconds.size, np.nan)
        )
        self.bal_balance, self.bal_rate = balance, rates
        self.latest_balance = _Latest(seconds, group, n * b)
        self.deposit_columns = [
            j for j in self.balance_types.get_indexer(pd.Index(DEPOSIT_TYPES)) if j >= 0
        ]

    # ------------------------------------------------------------------------------ snapshots

    def population(self, moment: int) -> np.ndarray:
        """Codes of customers signed up before `moment` and not closed before it."""
        t = moment - self.base
        return np.flatnonzero((self.signup < t) & (self.closed >= t))

    def snapshot(self, moment: int) -> _Snapshot:
        """Every feature column for the customers alive at `moment` (seconds since the epoch).

        Inside, times count from `base`: `t = moment - base`.
        """
        alive = self.population(moment)
        t = moment - self.base
        columns: dict[str, np.ndarray] = {}
        tenure = (t - self.signup) // DAY
        rfm = self._rfm(t)
        balances, balance_held = self._balances(t)
        holdings, held = self._holdings(t, balance_held)
        columns.update(
            tenure_days=tenure.astype(np.int64),
            age=self.age,
            age_band=self.age_band,
            region=self.region,
            consent_marketing=self.consent,
            n_products_held=held,
        )
        columns.update(rfm)
        columns.update(holdings)
        columns.update(self._engagement(t))
        columns.update(balances)
        columns.update(self._lifecycle(t, tenure, rfm))
        stamp = pd.Timestamp(moment, unit="s").isoformat()
        log.info("Features at %s: %d customers", stamp, alive.size)
        return _Snapshot(
            ids=self.ids[alive],
            columns={name: values[alive] for name, values in columns.items()},
        )

    def _positions(self, seconds: np.ndarray, t: int, days: Iterable[int]) -> dict[int, int]:
        """Stream position of `t - d days` for each d (0 gives `t` itself)."""
        found = _find(seconds, [t - d * DAY for d in days])
        return {d: int(p) for d, p in zip(days, found, strict=True)}

    def _rfm(self, t: int) -> dict[str, np.ndarray]:
        n, s = self.n, self.tx_seconds
        p = self._positions(s, t, (0, 30, 90, 180, 365))
        customer, amount, days = self.tx_customer, self.tx_amount, self.tx_purchase_day
        spend_30 = _sums(customer, amount, p[30], p[0], n)
        spend_90 = spend_30 + _sums(customer, amount, p[90], p[30], n)
        spend_before = _sums(customer, amount, p[180], p[90], n)
        spend_365 = spend_90 + spend_before + _sums(customer, amount, p[365], p[180], n)
        freq_30 = _counts(days, p[30], p[0], n)
        freq_90 = freq_30 + _counts(days, p[90], p[30], n)
        freq_365 = freq_90 + _counts(days, p[365], p[90], n)
        seen = self.latest_category.times(t)  # latest purchase per (customer, category)
        last = _per_customer_max(seen, self.category_pairs, n)
        recency = np.where(last == NEVER, np.nan, (t - last) / DAY)
        with np.errstate(divide="ignore", invalid="ignore"):
            basket = np.where(freq_365 > 0, spend_365 / freq_365, np.nan)
        in_year = seen >= t - 365 * DAY
        categories = np.bincount(self.category_pairs.customer, weights=in_year, minlength=n)
        return {
            "recency_days": recency,
            "frequency_30d": freq_30,
            "frequency_90d": freq_90,
            "frequency_365d": freq_365,
            "monetary_30d": spend_30,
            "monetary_90d": spend_90,
            "monetary_365d": spend_365,
            "avg_basket_365d": basket,
            "margin_365d": _sums(customer, self.tx_margin, p[365], p[0], n),
            "spend_trend": spend_trend(spend_90, spend_before),
            "distinct_categories_365d": categories.astype(np.int64),
        }

    def _holdings(
        self, t: int, balance_held: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """holds_<product> columns and the number of distinct products held per customer."""
        n, pairs = self.n, self.holding_pairs
        recent = self.latest_holding.times(t) >= t - HOLDING_WINDOW_DAYS * DAY
        kind = self.item_balance_type[pairs.item]
        also_balance = np.zeros(pairs.size, dtype=bool)
        if balance_held.size:
            has_kind = kind >= 0
            also_balance[has_kind] = balance_held[pairs.customer[has_kind], kind[has_kind]]
        held = np.bincount(pairs.customer, weights=recent & ~also_balance, minlength=n)
        if balance_held.size:
            held = held + balance_held.sum(axis=1)
        columns: dict[str, np.ndarray] = {}
        for product, code in zip(self.holding_products, self.holding_codes, strict=True):
            holds = np.zeros(n, dtype=bool)
            if code >= 0:
                rows = pairs.item == code
                holds[pairs.customer[rows]] = recent[rows]
                if balance_held.size and self.item_balance_type[code] >= 0:
                    holds |= balance_held[:, self.item_balance_type[code]]
            columns[holding_column(product)] = holds
        return columns, held.astype(np.int64)

    def _engagement(self, t: int) -> dict[str, np.ndarray]:
        n, k = self.n, len(self.kinds)
        p = self._positions(self.in_seconds, t, (0, 30, 90))
        last_30 = _counts(self.in_group, p[30], p[0], n * k).reshape(n, k)
        last_90 = last_30 + _counts(self.in_group, p[90], p[30], n * k).reshape(n, k)
        columns: dict[str, np.ndarray] = {}
        for j, kind in enumerate(self.kinds):
            prefix = INTERACTION_KINDS[kind]
            columns[f"{prefix}_30d"] = last_30[:, j]
            columns[f"{prefix}_90d"] = last_90[:, j]
        rated_at = self.latest_rating.times(t)
        position = self.latest_rating.advance(t)
        fresh = rated_at >= t - SATISFACTION_DAYS * DAY
        rating = np.full(n, np.nan)
        if self.rating_value.size:
            rating = np.where(fresh, self.rating_value[np.maximum(position, 0)], np.nan)
        columns["last_satisfaction"] = rating
        low = self._positions(self.low_seconds, t, (0, 90))
        columns["low_satisfaction_90d"] = _counts(self.low_customer, low[90], low[0], n)
        columns["activity_trend"] = self._activity_trend(t)
        columns["digital_share"] = self._digital_share(t)
        return columns

    def _activity_trend(self, t: int) -> np.ndarray:
        """(recent + 1) / (earlier + 1) - 1 of engaged interactions plus transactions.

        Recent is [t - 90d, t), earlier the 90 days before; NaN for customers who signed up
        inside those 180 days, whose "earlier" window is partly before they existed.
        """
        n, k = self.n, len(self.kinds)
        engaged = [j for j, kind in enumerate(self.kinds) if kind in ENGAGED_KINDS]
        windows = (0, TREND_DAYS, 2 * TREND_DAYS)
        p = self._positions(self.in_seconds, t, windows)
        q = self._positions(self.tx_seconds, t, windows)
        recent = _counts(self.in_group, p[TREND_DAYS], p[0], n * k).reshape(n, k)[:, engaged]
        earlier = _counts(self.in_group, p[2 * TREND_DAYS], p[TREND_DAYS], n * k)
        earlier = earlier.reshape(n, k)[:, engaged]
        active_recent = recent.sum(axis=1) + _counts(self.tx_customer, q[TREND_DAYS], q[0], n)
        active_earlier = earlier.sum(axis=1) + _counts(
            self.tx_customer, q[2 * TREND_DAYS], q[TREND_DAYS], n
        )
        trend = (active_recent + 1.0) / (active_earlier + 1.0) - 1.0
        return np.where(self.signup <= t - 2 * TREND_DAYS * DAY, trend, np.nan)

    def _digital_share(self, t: int) -> np.ndarray:
        if not self.has_channel:
            return np.full(self.n, np.nan)
        p = self._positions(self.tx_seconds, t, (0, 90))
        rows = _counts(self.tx_customer, p[90], p[0], self.n)
        digital = _counts(self.tx_digital, p[90], p[0], self.n)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(rows > 0, digital / rows, np.nan)

    def _balances(self, t: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Balance columns and which (customer, account type) hold a non-zero latest balance."""
        n, b = self.n, len(self.balance_types)
        columns: dict[str, np.ndarray] = {}
        if not self.has_balances:
            for kind in BALANCE_TYPES:
                columns[f"balance_{kind}"] = np.full(n, np.nan)
                columns[f"rate_{kind}"] = np.full(n, np.nan)
            columns["total_deposits"] = np.full(n, np.nan)
            columns["idle_cash"] = np.full(n, np.nan)
            return columns, np.zeros((0, 0), dtype=bool)
        position = self.latest_balance.advance(t).reshape(n, b)
        present = position >= 0
        safe = np.maximum(position, 0)
        balance = np.where(present, self.bal_balance[safe], np.nan)
        rate = np.where(present, self.bal_rate[safe], np.nan)
        for kind in BALANCE_TYPES:
            j = self.balance_types.get_indexer(pd.Index([kind]))[0]
            columns[f"balance_{kind}"] = balance[:, j] if j >= 0 else np.full(n, np.nan)
            columns[f"rate_{kind}"] = rate[:, j] if j >= 0 else np.full(n, np.nan)
        deposits = self.deposit_columns
        total = np.nansum(balance[:, deposits], axis=1) if deposits else np.zeros(n)
        columns["total_deposits"] = np.where(present.any(axis=1), total, np.nan)
        checking = columns["balance_checking"]
        columns["idle_cash"] = np.where(
            np.isnan(checking), np.nan, np.maximum(checking - self.idle_cash_buffer, 0.0)
        )
        return columns, present & (balance != 0)

    def _lifecycle(
        self, t: int, tenure: np.ndarray, rfm: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        n = self.n
        bought_earlier = rfm["frequency_365d"] > rfm["frequency_90d"]
        state = lifecycle_state(tenure, rfm["recency_days"], bought_earlier)
        repeat = np.maximum(self.purchase_days.advance(t) - 1, 0)
        stamp = pd.Timestamp(t + self.base, unit="s")
        bounds = [
            int((stamp - pd.DateOffset(months=k)).value // 10**9) - self.base
            for k in range(REGULARITY_MONTHS + 1)
        ]
        found = _find(self.tx_seconds, bounds)
        active = np.zeros(n, dtype=np.int64)
        eligible = np.zeros(n, dtype=np.int64)
        for k in range(REGULARITY_MONTHS):
            bought = _counts(self.tx_purchase_day, int(found[k + 1]), int(found[k]), n) > 0
            ends_after_signup = self.signup < bounds[k]
            active += bought & ends_after_signup
            eligible += ends_after_signup
        with np.errstate(divide="ignore", invalid="ignore"):
            regularity = np.where(eligible > 0, active / eligible, 0.0)
        latest_new = self.new_product.times(t)
        months = np.where(latest_new == NEVER, np.nan, (t - latest_new) / (MONTH_DAYS * DAY))
        return {
            "state": state,
            "repeat_purchase_count": repeat.astype(np.int64),
            "purchase_regularity": regularity,
            "months_since_last_new_product": months,
        }
