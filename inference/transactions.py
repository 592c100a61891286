"""Per-customer aggregates of the contract transactions in one streaming pass (pyarrow, numpy).

Batch scoring needs, for every customer of a population, three things from the whole log: the
CLV model's RFM summary (`features.clv_inputs.rfm_summary`: purchases netted per period,
frequency, recency, T, mean repeat spend and margin), the trailing 365-day margin that ranks
tiers where CLV is unknown (`features.clv_inputs.trailing_margins`) and the channel mix of the need
segments (`training.segments.channel_mix`). `aggregate_transactions` computes all three in one
pass over the Parquet log, a batch of rows at a time, with the same rules as those pandas
functions, so the numbers agree (up to the order of floating-point additions).

Memory. A batch is reduced to (customer, period) pairs by sorting packed integer keys. A pair
is final once no later row can fall into its period; the Parquet statistics give the earliest
timestamp still to come, so for a log in time order (as `loyal ingest` and the generator write
it) only the pairs of the last period or two wait for the next batch. Final pairs update a few
numbers per customer (purchase periods, first and last period, first and repeat sums). A log
in no time order stays exact; its pending pairs then grow with the log.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray

from features.clv_inputs import MARGIN_COLUMN, REVENUE_COLUMN
from features.contract import has_values
from features.latest import NANOS_PER_DAY, IdIndex
from loyal.errors import DataContractError

log = logging.getLogger(__name__)

BATCH_ROWS = 1 << 20
CHANNEL_PREFIX = "channel_"
CHANNEL_SUFFIX = "_share"
_NEVER = np.iinfo(np.int64).min
_LAST = np.iinfo(np.int64).max

Progress = Callable[[int], None]
"""Called with the number of log rows just read."""


@dataclass
class PurchasePeriods:
    """Per-customer purchase periods up to the observation end: the inputs of the RFM summary.

    Attributes:
        purchases: purchase periods (0: no purchase).
        first: start day (days since the epoch) of the first purchase period.
        last: start day of the last purchase period.
        repeat_amount: net revenue of the repeat purchase periods (all but the first).
        repeat_margin: net margin of the repeat purchase periods.
    """

    purchases: NDArray[np.int64]
    first: NDArray[np.int64]
    last: NDArray[np.int64]
    repeat_amount: NDArray[np.float64]
    repeat_margin: NDArray[np.float64]

    def summary(self, end: pd.Timestamp, time_unit_days: float, margins: bool) -> pd.DataFrame:
        """The RFM summary of the customers with a purchase, indexed by population position.

        Columns as `features.clv_inputs.rfm_summary`: frequency, recency, T, monetary_value and,
        with `margins`, monetary_margin (the mean over the repeat purchase periods, 0 without).
        """
        buyers = np.flatnonzero(self.purchases > 0)
        repeats = self.purchases[buyers] - 1
        first = self.first[buyers]
        end_day = _day(end)
        frame = pd.DataFrame(
            {
                "frequency": repeats,
                "recency": (self.last[buyers] - first) / time_unit_days,
                "T": (end_day - first) / time_unit_days,
                REVENUE_COLUMN: _mean(self.repeat_amount[buyers], repeats),
            },
            index=pd.Index(buyers, name="position"),
        )
        if margins:
            frame[MARGIN_COLUMN] = _mean(self.repeat_margin[buyers], repeats)
        return frame


@dataclass
class TransactionAggregates:
    """Per-customer aggregates, aligned with the population (`IdIndex` positions).

    Attributes:
        periods: the purchase periods up to the observation end.
        trailing: net margin (revenue without margins) of the trailing window.
        channels: channel names seen in the channel window, sorted.
        channel_counts: transactions per customer and channel (one array per channel).
        margins: whether the log has margins (a column, or product margin rates).
        rows: log rows read.
    """

    periods: PurchasePeriods
    trailing: NDArray[np.float64]
    channels: list[str] = field(default_factory=list)
    channel_counts: dict[str, NDArray[np.int64]] = field(default_factory=dict)
    margins: bool = True
    rows: int = 0

    @property
    def value_column(self) -> str:
        """The summary column CLV models: margin when the log has margins, else revenue."""
        return MARGIN_COLUMN if self.margins else REVENUE_COLUMN

    def summary(self, end: pd.Timestamp, time_unit_days: float) -> pd.DataFrame:
        """`PurchasePeriods.summary`, with monetary_margin when the log has margins."""
        return self.periods.summary(end, time_unit_days, self.margins)

    def channel_shares(self, positions: NDArray[np.int64]) -> dict[str, NDArray[np.float64]]:
        """`channel_<name>_share` of each customer at `positions` (NaN without a transaction)."""
        if not self.channels:
            return {}
        counts = np.column_stack([self.channel_counts[c][positions] for c in self.channels])
        total = counts.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = np.where(total > 0, counts / total, np.nan)
        return {
            f"{CHANNEL_PREFIX}{name}{CHANNEL_SUFFIX}": shares[:, j]
            for j, name in enumerate(self.channels)
        }


def _mean(total: NDArray[np.float64], count: NDArray[np.int64]) -> NDArray[np.float64]:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def _day(moment: pd.Timestamp) -> int:
    """Days since the epoch of a (naive UTC) timestamp's day."""
    return int(pd.Timestamp(moment).value // NANOS_PER_DAY)


# ------------------------------------------------------------------------------ periods
class _Periods:
    """Start day of the purchase period (pandas alias: "D", "W", ...) holding each day."""

    def __init__(self, period: str) -> None:
        self.period = period
        self._low = 0
        self._table = np.zeros(0, dtype=np.int64)

    def starts(self, days: NDArray[np.int64]) -> NDArray[np.int64]:
        if self.period == "D" or days.size == 0:
            return days
        low, high = int(days.min()), int(days.max())
        if low < self._low or high >= self._low + len(self._table):
            self._extend(min(low, self._low) if len(self._table) else low, high)
        return self._table[days - self._low]

    def _extend(self, low: int, high: int) -> None:
        high = max(high, self._low + len(self._table) - 1)
        span = pd.to_datetime(np.arange(low, high + 1), unit="D")
        starts = pd.DatetimeIndex(span.to_period(self.period).start_time).normalize()
        self._low = low
        self._table = np.asarray(starts.asi8 // NANOS_PER_DAY, dtype=np.int64)

    def start_of(self, day: int) -> int:
        return int(self.starts(np.array([day], dtype=np.int64))[0])


# ------------------------------------------------------------------------------- batches
@dataclass
class _Rows:
    """(customer, period start) keys with their net amount, net margin and refund lines.

    Rows of the log, or sums per pair. Separate 1-D arrays and `np.take`/`np.compress`:
    gathering rows of a 2-D array is several times slower.
    """

    code: NDArray[np.int64]
    start: NDArray[np.int64]
    amount: NDArray[np.float64]
    margin: NDArray[np.float64]
    refunds: NDArray[np.float64]

    @classmethod
    def empty(cls) -> _Rows:
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none, np.zeros(0), np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return len(self.code)

    def arrays(self) -> tuple[NDArray[Any], ...]:
        return self.code, self.start, self.amount, self.margin, self.refunds

    def compress(self, keep: NDArray[np.bool_]) -> _Rows:
        return _Rows(*(np.compress(keep, a) for a in self.arrays()))

    @staticmethod
    def concat(first: _Rows, second: _Rows) -> _Rows:
        if not len(first):
            return second
        return _Rows(
            *(np.concatenate([x, y]) for x, y in zip(first.arrays(), second.arrays(), strict=True))
        )


def _sort_order(key: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Order of non-negative keys (ties in row order) and the sorted keys.

    One in-place sort of (key, row) packed into one int64 when they fit: several times faster
    than a stable argsort.
    """
    bits = max(1, (len(key) - 1).bit_length())
    if len(key) and (int(key.max()) + 1) < (1 << (62 - bits)):
        packed = key << bits
        packed |= np.arange(len(key), dtype=np.int64)
        packed.sort()
        return packed & ((1 << bits) - 1), packed >> bits
    order = np.argsort(key, kind="stable")
    return order, np.take(key, order)


def _starts(keys: NDArray[np.int64]) -> NDArray[np.bool_]:
    """True where a run of equal (sorted) keys starts."""
    change = np.empty(len(keys), dtype=bool)
    change[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=change[1:])
    return change


def _heads(keys: NDArray[np.int64]) -> NDArray[np.int64]:
    """Positions where a run of equal keys starts."""
    return np.flatnonzero(_starts(keys))


def _reduce(rows: _Rows) -> _Rows:
    """Sum rows per (customer, period start); the result is sorted by customer, then period.

    Each row's pair number is scattered back to the row, so the sums are `np.bincount` over
    the rows as they are (in row order, like a stable group-by) without gathering them.
    """
    if not len(rows):
        return rows
    base = int(rows.start.min())
    span = int(rows.start.max()) - base + 1
    order, keys = _sort_order(rows.code * span + (rows.start - base))
    change = _starts(keys)
    pair = np.empty(len(rows), dtype=np.int64)
    np.put(pair, order, np.cumsum(change) - 1)
    unique = np.compress(change, keys)
    amount, margin, refunds = (
        np.bincount(pair, weights=a, minlength=len(unique)).astype(np.float64, copy=False)
        for a in (rows.amount, rows.margin, rows.refunds)
    )
    return _Rows(unique // span, unique % span + base, amount, margin, refunds)


class _Accumulator:
    """Per-customer purchase periods, updated from final (customer, period) pairs.

    Besides the periods, it keeps the amount and margin of each customer's first purchase
    period: they move to the repeat sums when an earlier period turns up.
    """

    def __init__(self, n: int) -> None:
        self.periods = PurchasePeriods(
            purchases=np.zeros(n, dtype=np.int64),
            first=np.full(n, _LAST, dtype=np.int64),
            last=np.full(n, _NEVER, dtype=np.int64),
            repeat_amount=np.zeros(n),
            repeat_margin=np.zeros(n),
        )
        self.first_amount = np.zeros(n)
        self.first_margin = np.zeros(n)

    def add(self, pairs: _Rows, final: NDArray[np.bool_] | None = None) -> None:
        """Count the purchase periods among final pairs (sorted by customer, then period).

        Args:
            pairs: (customer, period) sums, sorted by customer, then period.
            final: which pairs are final (default: all).
        """
        amount = pairs.amount
        purchase = (amount > 0) | ((amount == 0) & (pairs.refunds == 0))
        buys = pairs.compress(purchase if final is None else purchase & final)
        if not len(buys):
            return
        change = _starts(buys.code)
        heads = np.flatnonzero(change)
        run = np.cumsum(change) - 1
        tails = np.append(heads[1:], len(buys)) - 1
        who = np.take(buys.code, heads)
        head_start = np.take(buys.start, heads)
        periods = self.periods
        earlier = head_start < np.take(periods.first, who)
        had = np.take(periods.purchases, who) > 0
        for total, values, first_value in (
            (periods.repeat_amount, buys.amount, self.first_amount),
            (periods.repeat_margin, buys.margin, self.first_margin),
        ):
            head_value = np.take(values, heads)
            rest = values.copy()
            rest[heads] = 0.0
            old_first = np.take(first_value, who)
            moved = np.where(earlier, np.where(had, old_first, 0.0), head_value)
            total[who] += np.bincount(run, weights=rest, minlength=len(heads)) + moved
            first_value[who] = np.where(earlier, head_value, old_first)
        periods.first[who] = np.where(earlier, head_start, np.take(periods.first, who))
        periods.last[who] = np.maximum(np.take(periods.last, who), np.take(buys.start, tails))
        periods.purchases[who] += tails - heads + 1


class _Channels:
    """Transactions per customer and channel (lower-cased, stripped; nulls are "unknown")."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.names: dict[str, int] = {}
        self.table = np.zeros((n, 8), dtype=np.int64)

    def add(self, codes: NDArray[np.int64], channel: pa.Array) -> None:
        encoded = channel if pa.types.is_dictionary(channel.type) else pc.dictionary_encode(channel)
        names = [
            "unknown" if v is None else str(v).strip().lower()
            for v in encoded.dictionary.to_pylist()
        ]
        names.append("unknown")
        slots = np.array([self._slot(name) for name in names], dtype=np.int64)
        local = np.asarray(pc.fill_null(encoded.indices, len(names) - 1), dtype=np.int64)
        known = codes >= 0
        width = self.table.shape[1]
        np.add.at(self.table.reshape(-1), codes[known] * width + slots[local[known]], 1)

    def _slot(self, name: str) -> int:
        if name not in self.names:
            self.names[name] = len(self.names)
            if len(self.names) > self.table.shape[1]:
                grown = np.zeros((self.n, 2 * self.table.shape[1]), dtype=np.int64)
                grown[:, : self.table.shape[1]] = self.table
                self.table = grown
        return self.names[name]

    def counts(self) -> dict[str, NDArray[np.int64]]:
        """Name -> transactions per customer."""
        return {name: self.table[:, slot] for name, slot in self.names.items()}


# --------------------------------------------------------------------------------- inputs
def margin_rates(products: pd.DataFrame | None) -> pd.Series | None:
    """Each product's margin_rate (index product_id as text), None without a known rate."""
    if products is None or not has_values(products, "margin_rate"):
        return None
    return products.set_index(products["product_id"].astype(str))["margin_rate"].astype(float)


def _floats(column: pa.Array) -> NDArray[np.float64]:
    """A numeric column as float64 (nulls as NaN), without a copy when it already is."""
    if not pa.types.is_float64(column.type):
        column = column.cast(pa.float64())
    if column.null_count:
        column = pc.fill_null(column, np.nan)
    return np.asarray(column, dtype=np.float64)


def _margins(
    batch: pa.RecordBatch, amount: NDArray[np.float64], rates: pd.Series | None
) -> NDArray[np.float64]:
    """A transaction's margin, else amount x its product's margin_rate, else 0."""
    names = batch.schema.names
    given = _floats(batch.column("margin")) if "margin" in names else None
    if given is not None and not np.isnan(given).any():
        return given
    derived = np.zeros(len(amount))
    if rates is not None and "product_id" in names:
        product = batch.column("product_id")
        encoded = product if pa.types.is_dictionary(product.type) else pc.dictionary_encode(product)
        table = rates.reindex([str(v) for v in encoded.dictionary.to_pylist()]).to_numpy(float)
        codes = np.asarray(pc.fill_null(encoded.indices, -1), dtype=np.int64)
        rate = np.where(codes >= 0, np.append(table, np.nan)[codes], np.nan)
        derived = np.nan_to_num(amount * rate, nan=0.0)
    return derived if given is None else np.where(np.isnan(given), derived, given)


def _has_values(file: pq.ParquetFile, column: str) -> bool:
    """Whether a Parquet column holds any value (from the row-group statistics when present)."""
    position = file.schema_arrow.get_field_index(column)
    for index in range(file.metadata.num_row_groups):
        meta = file.metadata.row_group(index)
        stats = meta.column(position).statistics
        if stats is None or not stats.has_null_count or stats.null_count < meta.num_rows:
            return True
    return False


def _floors(file: pq.ParquetFile, batch_rows: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(row ends, earliest ts from each segment on): segments of the log in row order.

    From the row-group statistics where every row group has them and none is much larger than
    a batch; otherwise from one pass over the timestamps alone.
    """
    position = file.schema_arrow.get_field_index("ts")
    ends: list[int] = []
    lows: list[int] = []
    row = 0
    usable = True
    for index in range(file.metadata.num_row_groups):
        meta = file.metadata.row_group(index)
        stats = meta.column(position).statistics
        if stats is None or not stats.has_min_max or meta.num_rows > 2 * batch_rows:
            usable = False
            break
        row += meta.num_rows
        ends.append(row)
        lows.append(pd.Timestamp(stats.min).value)
    if not usable:
        ends, lows, row = [], [], 0
        for batch in _batches(file, ["ts"], batch_rows):
            stamps = _nanos(batch.column(0))
            row += len(stamps)
            ends.append(row)
            lows.append(int(stamps.min()) if stamps.size else _LAST)
    suffix = np.minimum.accumulate(np.array(lows[::-1] or [_LAST], dtype=np.int64))[::-1]
    return np.array(ends or [0], dtype=np.int64), suffix


def _nanos(column: pa.Array | pa.ChunkedArray) -> NDArray[np.int64]:
    """Timestamps as int64 ns since the epoch (a naive UTC wall time, as in the contract)."""
    kind = column.type
    if not pa.types.is_timestamp(kind):
        raise DataContractError("transactions", "ts must be a timestamp", "ts")
    if kind.unit != "ns":
        column = pc.cast(column, pa.timestamp("ns", tz=kind.tz))
    as_int = column.view(pa.int64()) if isinstance(column, pa.Array) else column.cast(pa.int64())
    if as_int.null_count:
        as_int = pc.fill_null(as_int, _LAST)
    return np.asarray(as_int, dtype=np.int64)


def _batches(file: pq.ParquetFile, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The log's batches, read with one reader per row group.

    A single reader over many row groups keeps memory from every group it has passed (about
    16 MB per million-row group with pyarrow 25): at 57 million rows, most of a gigabyte.
    """
    for group in range(file.metadata.num_row_groups):
        yield from file.iter_batches(
            batch_size=batch_rows, row_groups=[group], columns=columns, use_threads=False
        )


def _prefetched(batches: Iterator[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """The batches, read ahead in a thread: Parquet decoding overlaps the numpy work."""
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def read() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    return
                buffer.put(batch)
            buffer.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            buffer.put(exc)

    reader = threading.Thread(target=read, name="transactions-reader", daemon=True)
    reader.start()
    try:
        while (item := buffer.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full buffer
            with contextlib.suppress(queue.Empty):
                buffer.get(timeout=0.05)


# ------------------------------------------------------------------------------ the pass
@dataclass(frozen=True)
class PassWindows:
    """What one pass computes, in days and times of the contract's (naive UTC) clock.

    Attributes:
        end: the observation end (the last day counted into the RFM summary).
        snapshot: the snapshot time (the channel window ends just before it).
        period: purchase-occasion period ("D" days, "W" weeks, ...).
        trailing_days: days up to `end` of the trailing margin.
        channel_days: days before `snapshot` of the channel mix (None: no channel mix).
    """

    end: pd.Timestamp
    snapshot: pd.Timestamp
    period: str = "D"
    trailing_days: int = 365
    channel_days: int | None = 365


def aggregate_transactions(
    path: Path,
    index: IdIndex,
    windows: PassWindows,
    products: pd.DataFrame | None = None,
    batch_rows: int = BATCH_ROWS,
    progress: Progress | None = None,
) -> TransactionAggregates:
    """One streaming pass over the contract transactions (see the module docstring).

    Args:
        path: the contract's transactions Parquet table.
        index: the population's ids.
        windows: observation end, snapshot, period and windows.
        products: the contract's products (margin rates), if any.
        batch_rows: rows read at a time.
        progress: called after every batch with its row count.

    Returns:
        The aggregates of the population's customers (others are skipped).
    """
    file = pq.ParquetFile(path)
    names = file.schema_arrow.names
    missing = [c for c in ("customer_id", "ts", "amount") if c not in names]
    if missing:
        raise DataContractError("transactions", "required column missing", missing[0])
    rates = margin_rates(products)
    given = "margin" in names and _has_values(file, "margin")
    margins = given or rates is not None
    if not margins:
        log.warning("no margin and no product margin_rate: CLV is revenue-based")
    channels_on = windows.channel_days is not None and "channel" in names
    columns = ["customer_id", "ts", "amount", *(["margin"] if given else [])]
    columns += ["product_id"] if rates is not None and "product_id" in names else []
    columns += ["channel"] if channels_on else []
    state = _Pass(index.size, windows, rates, margins, channels_on)
    ends, floors = _floors(file, batch_rows)
    consumed = 0
    for batch in _prefetched(_batches(file, columns, batch_rows)):
        consumed += batch.num_rows
        codes = index.positions(batch.column("customer_id"))
        later = int(np.searchsorted(ends, consumed, side="right"))
        state.add(batch, codes, int(floors[later]) if later < len(floors) else _LAST)
        if progress is not None:
            progress(batch.num_rows)
    return state.finish(consumed)


class _Pass:
    """The running state of `aggregate_transactions`."""

    def __init__(
        self,
        n: int,
        windows: PassWindows,
        rates: pd.Series | None,
        margins: bool,
        channels_on: bool,
    ) -> None:
        self.n = n
        self.windows = windows
        self.rates = rates
        self.margins = margins
        self.periods = _Periods(windows.period)
        self.end_day = _day(windows.end)
        self.snapshot_ns = pd.Timestamp(windows.snapshot).value
        self.accumulator = _Accumulator(n)
        self.pending = _Rows.empty()
        self.trailing = np.zeros(n)
        self.channels = _Channels(n) if channels_on else None

    def add(self, batch: pa.RecordBatch, codes: NDArray[np.int64], floor_ns: int) -> None:
        """Fold one batch in; pairs before the period of `floor_ns` (rows still to come) close."""
        stamps = _nanos(batch.column("ts"))
        days = stamps // NANOS_PER_DAY
        amount = _floats(batch.column("amount"))
        margin = _margins(batch, amount, self.rates) if self.margins else amount
        known = codes >= 0
        self._trail(codes, days, margin, known)
        if self.channels is not None:
            self._channel(batch, codes, stamps)
        starts = self.periods.starts(days)
        keep = known & (starts <= self.end_day)
        kept_amount = np.compress(keep, amount)
        rows = _Rows(
            np.compress(keep, codes), np.compress(keep, starts), kept_amount,
            np.nan_to_num(np.compress(keep, margin), copy=False, nan=0.0),
            (kept_amount < 0).astype(np.float64),
        )  # fmt: skip
        pairs = _reduce(_Rows.concat(self.pending, rows))
        threshold = self.periods.start_of(floor_ns // NANOS_PER_DAY) if floor_ns < _LAST else _LAST
        open_ = pairs.start >= threshold
        if open_.any():
            self.pending = pairs.compress(open_)
            self.accumulator.add(pairs, ~open_)
        else:
            self.pending = _Rows.empty()
            self.accumulator.add(pairs)

    def _trail(
        self,
        codes: NDArray[np.int64],
        days: NDArray[np.int64],
        money: NDArray[np.float64],
        known: NDArray[np.bool_],
    ) -> None:
        window = known & (days > self.end_day - self.windows.trailing_days)
        window &= days <= self.end_day
        self.trailing += np.bincount(codes[window], weights=money[window], minlength=self.n)

    def _channel(
        self, batch: pa.RecordBatch, codes: NDArray[np.int64], stamps: NDArray[np.int64]
    ) -> None:
        assert self.channels is not None and self.windows.channel_days is not None
        start = self.snapshot_ns - self.windows.channel_days * NANOS_PER_DAY
        window = (stamps >= start) & (stamps < self.snapshot_ns)
        if window.all():
            self.channels.add(codes, batch.column("channel"))
        elif window.any():
            self.channels.add(codes[window], pc.filter(batch.column("channel"), pa.array(window)))

    def finish(self, rows: int) -> TransactionAggregates:
        """Close the pending pairs and hand the aggregates over."""
        self.accumulator.add(self.pending)
        self.pending = _Rows.empty()
        counts = self.channels.counts() if self.channels is not None else {}
        return TransactionAggregates(
            periods=self.accumulator.periods,
            trailing=self.trailing,
            channels=sorted(counts),
            channel_counts=counts,
            margins=self.margins,
            rows=rows,
        )
