"""Per-customer aggregates of the contract transaction log, computed out of core by DuckDB.

CLV training, the need segments' behaviour and their value scores need a few numbers per
customer from the whole log (RFM summaries, margins in a window, channel counts, category
spend). The log itself does not fit in pandas at scale (about 1.2 GB per 100,000 customers),
so DuckDB aggregates it straight from the contract's Parquet file (only the columns a query
names, spilling to disk past `compute.memory_limit`), and only the per-customer result (about
115 MB per million customers for an RFM summary) becomes a pandas frame. A `TransactionLog`
over an in-memory frame runs the same SQL, and the rules are those of the pandas functions in
`features.clv_inputs` (tests compare them value for value).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from features.clv_inputs import MARGIN_COLUMN, REVENUE_COLUMN, REVENUE_NOTE, snapshot_time
from features.contract import has_values
from loyal.errors import DataContractError, NotReadyError
from loyal.settings import Settings

log = logging.getLogger(__name__)

_TRUNC = {"D": "day", "W": "week"}
"""DuckDB's `date_trunc` part of each purchase period (ISO weeks start on Monday, as pandas')."""


@dataclass(frozen=True)
class TransactionLog:
    """The contract transactions (a Parquet file or a frame) and how to price their margin.

    Attributes:
        source: the transactions Parquet file, or the transactions frame itself.
        products: the contract's products (small), if any.
        given_margin: whether transactions carry a `margin` of their own.
        memory_limit: DuckDB's memory limit (spills to `temp_dir` beyond it).
        temp_dir: where DuckDB spills.
    """

    source: Path | pd.DataFrame
    products: pd.DataFrame | None = None
    given_margin: bool = False
    memory_limit: str = "4GiB"
    temp_dir: Path | None = None

    @property
    def rates(self) -> pd.Series | None:
        """Each product's margin_rate (index product_id as text), None without any."""
        if self.products is None or not has_values(self.products, "margin_rate"):
            return None
        products = self.products
        return products.set_index(products["product_id"].astype(str))["margin_rate"].astype(float)

    @property
    def margins(self) -> bool:
        """Whether margins are known (given, or derived from product rates)."""
        return self.given_margin or self.rates is not None

    @property
    def value_column(self) -> str:
        """The summary column CLV models: `monetary_margin`, else `monetary_value`."""
        return MARGIN_COLUMN if self.margins else REVENUE_COLUMN

    @classmethod
    def of_frames(
        cls, transactions: pd.DataFrame, products: pd.DataFrame | None = None
    ) -> TransactionLog:
        """A log over in-memory contract tables (tests, small reference runs)."""
        _check_columns(list(transactions.columns))
        return cls(transactions, products, has_values(transactions, "margin"))

    def bounds(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """The first and last transaction times (naive UTC).

        Raises:
            NotReadyError: the log is empty.
        """
        with self._lines() as db:
            first, last = db.execute("SELECT min(ts), max(ts) FROM lines").fetchone() or (None,) * 2
        if first is None or last is None:
            raise NotReadyError("the transactions table is empty: there is nothing to fit CLV on")
        return pd.Timestamp(first), pd.Timestamp(last)

    def rfm_summary(
        self, end: pd.Timestamp, period: str = "D", time_unit_days: float = 7.0
    ) -> pd.DataFrame:
        """`features.clv_inputs.rfm_summary` of the log with its margins, at `end`."""
        with self._lines() as db:
            _periods(db, period, self.margins)
            return _summary(db, pd.Timestamp(end), time_unit_days, self.margins)

    def holdout_and_full(
        self,
        calibration_end: pd.Timestamp,
        observation_end: pd.Timestamp,
        period: str = "D",
        time_unit_days: float = 7.0,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """`features.clv_inputs.calibration_holdout` of the log with its margins, and its
        `rfm_summary` at `observation_end`, from one pass (the purchase periods built once)."""
        cal_end, obs_end = pd.Timestamp(calibration_end), pd.Timestamp(observation_end)
        if obs_end <= cal_end:
            raise ValueError("observation_end must come after calibration_end")
        with self._lines() as db:
            _periods(db, period, self.margins)
            summary = _summary(db, cal_end, time_unit_days, self.margins)
            holdout = db.execute(
                f"""SELECT customer_id, count(*) AS n, {_exact("avg", "amount")} AS mean
                   FROM periods WHERE purchase AND start > $cal AND start <= $obs
                   GROUP BY customer_id""",
                {"cal": cal_end, "obs": obs_end},
            ).df()
            full = _summary(db, obs_end, time_unit_days, self.margins)
        holdout = holdout.set_index("customer_id")
        summary["frequency_holdout"] = holdout["n"].reindex(summary.index, fill_value=0)
        summary["frequency_holdout"] = summary["frequency_holdout"].astype("int64")
        summary["monetary_value_holdout"] = holdout["mean"].reindex(summary.index, fill_value=0.0)
        summary["duration_holdout"] = (obs_end - cal_end).days / time_unit_days
        return summary, full

    def window_totals(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
        """Net margin (revenue without margins) per customer on days `(start, end]`.

        Only customers with a transaction in the window appear; see `margins_of`.
        """
        with self._lines() as db:
            money = "margin" if self.margins else "amount"
            totals = db.execute(
                f"""SELECT customer_id, {_exact("sum", money)} AS total FROM lines
                    WHERE CAST(ts AS DATE) > $start AND CAST(ts AS DATE) <= $end
                    GROUP BY customer_id""",
                {"start": pd.Timestamp(start).date(), "end": pd.Timestamp(end).date()},
            ).df()
        return totals.set_index("customer_id")["total"]

    def channel_counts(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Transactions per customer (rows) and channel (columns, lower-cased; null "unknown")
        with `start <= ts < end`; empty without a channel column or value."""
        if not self._has("channel"):
            return pd.DataFrame()
        with self._lines(["channel"]) as db:
            counts = db.execute(
                """SELECT customer_id, coalesce(lower(trim(channel)), 'unknown') AS channel,
                          count(*) AS n
                   FROM lines WHERE ts >= $start AND ts < $end GROUP BY ALL""",
                {"start": pd.Timestamp(start), "end": pd.Timestamp(end)},
            ).df()
        return counts.pivot(index="customer_id", columns="channel", values="n").fillna(0)

    def category_spend(
        self, groups: pd.Series, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        """Net spend per customer (rows) and product group (columns; unknown products
        "other") with `start <= ts < end`."""
        mapping = pd.DataFrame({"product_key": groups.index.astype(str), "category": groups})
        with self._lines(["product_id"]) as db:
            db.register("product_groups", mapping.reset_index(drop=True))
            spend = db.execute(
                f"""SELECT customer_id, coalesce(g.category, 'other') AS category,
                          {_exact("sum", "amount")} AS spend
                   FROM lines LEFT JOIN product_groups g
                        ON CAST(lines.product_id AS VARCHAR) = g.product_key
                   WHERE ts >= $start AND ts < $end GROUP BY ALL""",
                {"start": pd.Timestamp(start), "end": pd.Timestamp(end)},
            ).df()
        return spend.pivot(index="customer_id", columns="category", values="spend").fillna(0.0)

    # ------------------------------------------------------------------------------ plumbing
    def _has(self, column: str) -> bool:
        if isinstance(self.source, pd.DataFrame):
            return has_values(self.source, column)
        return column in pq.read_schema(self.source).names

    @contextmanager
    def _lines(self, extra: list[str] | None = None) -> Iterator[Any]:
        """A DuckDB connection with the view `lines` (customer_id as text, ts, amount, margin
        and the `extra` columns), the log's columns read as needed."""
        import duckdb

        db = duckdb.connect(config=self._config())
        try:
            if isinstance(self.source, pd.DataFrame):
                db.register("transactions", self.source)
                table = "transactions"
            else:
                table = f"read_parquet('{_quoted(self.source)}')"
            join = ""
            known = self.rates
            if known is not None:
                rates = pd.DataFrame(
                    {"product_key": known.index.astype(str), "rate": known.to_numpy()}
                )
                db.register("rates", rates)
                join = "LEFT JOIN rates r ON CAST(t.product_id AS VARCHAR) = r.product_key"
            columns = "".join(f", t.{name}" for name in extra or [])
            db.execute(
                f"""CREATE TEMP VIEW lines AS
                    SELECT CAST(t.customer_id AS VARCHAR) AS customer_id, t.ts,
                           CAST(t.amount AS DOUBLE) AS amount, {self._margin()} AS margin
                           {columns}
                    FROM {table} t {join}"""
            )
            yield db
        finally:
            db.close()

    def _margin(self) -> str:
        """A line's margin: its own, else amount x its product's rate, else 0 (NULL: revenue)."""
        parts = ["CAST(t.margin AS DOUBLE)"] if self.given_margin else []
        parts += ["t.amount * CAST(r.rate AS DOUBLE)"] if self.rates is not None else []
        return f"coalesce({', '.join(parts)}, 0.0)" if parts else "CAST(NULL AS DOUBLE)"

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "memory_limit": self.memory_limit,
            "preserve_insertion_order": False,
        }
        if self.temp_dir is not None:
            config["temp_directory"] = str(self.temp_dir)
        return config


def transaction_log(settings: Settings) -> TransactionLog:
    """The loaded contract's transaction log (read by DuckDB as needed), with its margins.

    Raises:
        NotReadyError: no validated transactions table.
        DataContractError: a required column is missing.
    """
    folder = settings.paths.contract_dir
    path = folder / "transactions.parquet"
    if not path.is_file():
        raise NotReadyError(
            f"no validated transactions table in {folder}: run `loyal generate` and "
            "`loyal ingest`, or `loyal ingest PATH` with your data"
        )
    names = pq.read_schema(path).names
    _check_columns(names)
    products_path = folder / "products.parquet"
    products = pd.read_parquet(products_path) if products_path.is_file() else None
    given = "margin" in names and _column_has_values(path, "margin")
    transactions_log = TransactionLog(
        path,
        products,
        given,
        memory_limit=settings.compute.memory_limit,
        temp_dir=settings.paths.runtime_dir / "duckdb",
    )
    if not transactions_log.margins:
        log.warning(REVENUE_NOTE)
    return transactions_log


def observation_end(settings: Settings, transactions: TransactionLog) -> pd.Timestamp:
    """Last day observed: the day before the latest snapshot, else the last transaction day."""
    snapshot = snapshot_time(settings)
    if snapshot is not None:
        return snapshot.normalize() - pd.Timedelta(days=1)
    return transactions.bounds()[1].normalize()


def margins_of(totals: pd.Series, customers: pd.Index) -> pd.Series:
    """Window totals (`TransactionLog.window_totals`) aligned with `customers` (0 without)."""
    ids = customers.astype(str)
    return pd.Series(totals.reindex(ids, fill_value=0.0).to_numpy(dtype=float), index=ids)


_EXACT = "DECIMAL(38, 12)"
"""Money is summed as a 128-bit decimal (exact to 1e-12), so a sum does not depend on the order
in which DuckDB's threads add up a group's rows: a double sum differs in its last bits from run
to run, and so did the CLV fits and every value built on them."""


def _exact(function: str, column: str, where: str | None = None) -> str:
    """SQL of `function` (sum or avg) of a money column, exact and order-independent, as DOUBLE."""
    filtered = f" FILTER (WHERE {where})" if where else ""
    return f"CAST({function}(CAST({column} AS {_EXACT})){filtered} AS DOUBLE)"


def _periods(db: Any, period: str, margins: bool) -> None:
    """The table `periods`: net lines per customer and purchase period, with `purchase`."""
    if period not in _TRUNC:
        raise ValueError(f"unknown purchase period {period!r}: use one of {', '.join(_TRUNC)}")
    total = _exact("sum", "amount")
    db.execute(
        f"""CREATE TEMP TABLE periods AS
            SELECT customer_id, date_trunc('{_TRUNC[period]}', ts) AS start, {total} AS amount,
                   count(*) FILTER (WHERE amount < 0) AS refunds,
                   {_exact("sum", "margin") if margins else "NULL"} AS margin,
                   ({total} > 0 OR ({total} = 0 AND count(*) FILTER (WHERE amount < 0) = 0))
                       AS purchase
            FROM lines GROUP BY customer_id, start"""
    )


def _summary(db: Any, end: pd.Timestamp, time_unit_days: float, margins: bool) -> pd.DataFrame:
    """The RFM summary (as `features.clv_inputs.rfm_summary`) of table `periods` at `end`."""
    repeat = "purchase AND start > first"
    margin = f", coalesce({_exact('avg', 'margin', repeat)}, 0.0) AS margin_mean" if margins else ""
    frame = db.execute(
        f"""WITH seen AS (SELECT * FROM periods WHERE start <= $end),
            firsts AS (SELECT customer_id, min(start) AS first FROM seen WHERE purchase
                       GROUP BY customer_id)
            SELECT customer_id,
                   count(*) FILTER (WHERE purchase AND start > first) AS frequency,
                   date_diff('day', first, max(start) FILTER (WHERE purchase)) AS recency_days,
                   date_diff('day', first, $end) AS age_days,
                   coalesce({_exact("avg", "amount", repeat)}, 0.0) AS amount_mean {margin},
                   coalesce({_exact("sum", "amount", "NOT purchase")}, 0.0) AS refund_amount,
                   first AS first_purchase
            FROM seen JOIN firsts USING (customer_id)
            GROUP BY customer_id, first ORDER BY customer_id""",
        {"end": end},
    ).df()
    summary = pd.DataFrame(
        {
            "frequency": frame["frequency"].astype("int64").to_numpy(),
            "recency": frame["recency_days"].to_numpy(dtype=float) / time_unit_days,
            "T": frame["age_days"].to_numpy(dtype=float) / time_unit_days,
            REVENUE_COLUMN: frame["amount_mean"].to_numpy(dtype=float),
        },
        index=pd.Index(frame["customer_id"].astype(object), name="customer_id"),
    )
    if margins:
        summary[MARGIN_COLUMN] = frame["margin_mean"].to_numpy(dtype=float)
    summary["refund_amount"] = frame["refund_amount"].to_numpy(dtype=float)
    summary["first_purchase"] = (
        pd.to_datetime(frame["first_purchase"]).astype("datetime64[ns]").to_numpy()
    )
    return summary


def _check_columns(names: list[str]) -> None:
    missing = [c for c in ("customer_id", "ts", "amount") if c not in names]
    if missing:
        raise DataContractError("transactions", "required column missing", column=missing[0])


def _column_has_values(path: Path, column: str) -> bool:
    """Whether a Parquet column holds a value (row-group statistics, else reading it)."""
    file = pq.ParquetFile(path)
    position = file.schema_arrow.get_field_index(column)
    for index in range(file.metadata.num_row_groups):
        meta = file.metadata.row_group(index)
        stats = meta.column(position).statistics
        if stats is None or not stats.has_null_count:
            values = pq.read_table(path, columns=[column]).column(0)
            return bool(values.null_count < len(values))
        if stats.null_count < meta.num_rows:
            return True
    return False


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")
