"""Ingestion: read a folder of tables (or a public log via a preset), validate, load atomically."""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from pyarrow import ArrowException
from rich.console import Console
from rich.table import Table

from features.contract import TABLES
from features.presets import Preset, apply_preset, get_preset
from features.tables_io import MANIFEST_FILE, read_contract, staged_folder
from loyal.errors import DataContractError, LoyalError, NotReadyError
from loyal.logs import console
from loyal.settings import Settings
from pipelines.ingest_stream import CHUNK_ROWS, Chunks, LoadedTables, load_tables

log = logging.getLogger(__name__)

TABLE_SUFFIXES = (".csv.gz", ".csv", ".parquet")
"""File endings read as tables; the name before the ending is the table name."""

_READ_ERRORS = (OSError, ValueError, UnicodeDecodeError, EOFError, zlib.error, ArrowException)


@dataclass(frozen=True)
class IngestReport:
    """What one `loyal ingest` loaded.

    Attributes:
        source: the folder read.
        preset: the preset applied, if any.
        contract_dir: where the normalized tables now are.
        rows: rows per table written.
        warnings: what was accepted with a warning (unknown columns, ignored files).
        dropped: source rows dropped per preset filter.
        manifest: the content of `_manifest.json`.
    """

    source: Path
    preset: str | None
    contract_dir: Path
    rows: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def snapshot_id(self) -> str:
        """Content hash of the loaded tables."""
        return str(self.manifest.get("snapshot_id", ""))


def ingest_folder(
    settings: Settings, path: Path, preset: str | None = None, date_format: str | None = None
) -> IngestReport:
    """Validate a folder of contract tables and replace the loaded data with it, atomically.

    Reads `<table>.csv`, `<table>.csv.gz` or `<table>.parquet` for every contract table (or,
    with a preset, the public log the preset names), validates everything, then writes
    normalized Parquet and `_manifest.json` to a staging folder beside
    `settings.paths.contract_dir` and swaps it in. Nothing is written before validation passes,
    and on any error the previously loaded data is left as it was.

    Args:
        settings: where the contract folder is.
        path: the folder to read.
        preset: name of a preset mapping a known public dataset (`online-retail`, `cdnow`);
            a preset names the date format of its source itself.
        date_format: `strptime` format of the tables' text dates (e.g. `%d/%m/%Y`); None
            reads ISO 8601 only and rejects any other format (ambiguous ones by name).

    Returns:
        Rows per table, warnings and the manifest written.

    Raises:
        DataContractError: a file is unreadable or the data breaks the contract.
        LoyalError: the folder does not exist or holds no tables.
    """
    folder = _existing_folder(Path(path))
    notes: list[str] = []
    dropped: dict[str, int] = {}
    if preset:
        raw, dropped = read_preset(folder, get_preset(preset))
        sources = {name: _whole(frame) for name, frame in raw.items()}
    else:
        sources, notes = table_sources(folder)
    target = settings.paths.contract_dir
    cutoff = pd.Timestamp.now(tz="UTC").tz_localize(None)
    with (
        console.status(f"Validating and writing the tables to {target}"),
        staged_folder(target) as staging,
    ):
        loaded = load_tables(sources, staging, cutoff, date_format)
        notes += loaded.warnings
        manifest = build_manifest(folder, preset, loaded, dropped, notes)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    _log_result(loaded.rows, dropped, notes, target)
    return IngestReport(folder, preset, target, loaded.rows, notes, dropped, manifest)


def _whole(frame: pd.DataFrame) -> Chunks:
    return lambda: iter([frame])


# ------------------------------------------------------------------------------------- reading


def table_sources(folder: Path) -> tuple[dict[str, Chunks], list[str]]:
    """Every contract table file of a folder, as chunk readers (see `table_chunks`).

    Returns:
        Chunk readers by table name and warnings on ignored files.

    Raises:
        DataContractError: one table has two files.
        LoyalError: the folder holds no table file at all.
    """
    files, notes = _table_files(folder)
    if not files:
        raise LoyalError(
            f"no table files in {folder}: expected customers, transactions and products as "
            ".csv, .csv.gz or .parquet; for a known public dataset pass --preset "
            "(online-retail, cdnow)"
        )
    return {name: _file_chunks(file, name) for name, file in files.items()}, notes


def _file_chunks(file: Path, table: str) -> Chunks:
    return lambda: table_chunks(file, table)


def table_chunks(file: Path, table: str, chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """One table file's rows, `chunk_rows` (default `CHUNK_ROWS`) at a time; CSV values as
    text, so validation sees them as written. Each chunk is indexed by its rows' positions in
    the file (row numbers).

    Raises:
        DataContractError: naming the table and the file when it cannot be read.
    """
    chunk_rows = chunk_rows or CHUNK_ROWS
    with _read_errors(file, table):
        if file.name.endswith(".parquet"):
            yield from _parquet_chunks(file, chunk_rows)
        else:
            yield from _csv_chunks(file, chunk_rows)


def _parquet_chunks(file: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    source = pq.ParquetFile(file)
    start = 0
    for batch in source.iter_batches(batch_size=chunk_rows):
        frame = batch.to_pandas()
        if isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0:
            frame.index = pd.RangeIndex(start, start + len(frame))
        start += len(frame)
        yield frame
    if not start:
        yield source.schema_arrow.empty_table().to_pandas()


def _csv_chunks(file: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    empty = True
    with pd.read_csv(file, dtype=str, encoding="utf-8-sig", chunksize=chunk_rows) as reader:
        for frame in reader:
            empty = False
            yield frame
    if empty:  # a header without rows
        yield pd.read_csv(file, dtype=str, encoding="utf-8-sig", nrows=0)


@contextmanager
def _read_errors(file: Path, table: str) -> Iterator[None]:
    try:
        yield
    except pd.errors.EmptyDataError:
        raise DataContractError(
            table, "empty file: no header and no rows", detail=f"file {file.name}"
        ) from None
    except UnicodeDecodeError as exc:
        raise DataContractError(
            table, "unreadable file", detail=f"file {file.name} is not UTF-8 text; save it as UTF-8"
        ) from exc
    except _READ_ERRORS as exc:
        raise DataContractError(
            table, "unreadable file", detail=f"file {file.name}: {_first_line(exc)}"
        ) from exc


def read_preset(folder: Path, preset: Preset) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """Read a preset's source log from a folder and map it to raw contract tables.

    Returns:
        Raw tables and source rows dropped per preset filter.

    Raises:
        LoyalError: the folder lacks the preset's source file.
        DataContractError: the source file cannot be read.
    """
    file = folder / preset.source_file
    if not file.is_file():
        raise LoyalError(
            f"preset '{preset.name}' reads {preset.source_file}, which is not in {folder}"
        )
    with console.status(f"Reading {file.name} ({preset.description})"):
        try:
            source = pd.read_csv(file, **preset.read_options)
        except _READ_ERRORS as exc:
            raise DataContractError(
                preset.source_file, "unreadable file", detail=_first_line(exc)
            ) from exc
    log.info("%s: %s source rows", file.name, f"{len(source):,}")
    mapped = apply_preset(preset, source)
    return mapped.tables, mapped.dropped


def _table_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    files: dict[str, Path] = {}
    ignored = []
    for file in sorted(folder.iterdir()):
        name = _table_name(file)
        if name is None:
            continue
        if name not in TABLES:
            ignored.append(file.name)
            continue
        if name in files:
            raise DataContractError(
                name, "two files for one table", detail=f"{files[name].name} and {file.name}"
            )
        files[name] = file
    notes = []
    if ignored:
        notes.append(f"ignored files that are not contract tables: {', '.join(ignored)}")
    return files, notes


def _table_name(file: Path) -> str | None:
    if not file.is_file() or file.name.startswith((".", "_")):
        return None
    for suffix in TABLE_SUFFIXES:
        if file.name.endswith(suffix):
            return file.name.removesuffix(suffix)
    return None


# ------------------------------------------------------------------------------------ manifest


def build_manifest(
    source: Path,
    preset: str | None,
    loaded: LoadedTables,
    dropped: Mapping[str, int],
    warnings: list[str],
) -> dict[str, Any]:
    """The `_manifest.json` content describing one load.

    Args:
        source: the folder read.
        preset: the preset applied, if any.
        loaded: the tables written (rows, `ts` ranges, content hash).
        dropped: source rows dropped per preset filter.
        warnings: what was accepted with a warning.

    Returns:
        A JSON-ready dict: snapshot_id, source, preset, ingested_at (UTC), rows, date_range
        (first and last `ts` of each table that has one), dropped_by_preset, warnings.
    """
    return {
        "snapshot_id": loaded.snapshot_id,
        "source": str(source.resolve()),
        "preset": preset,
        "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": loaded.rows,
        "date_range": loaded.date_ranges,
        "dropped_by_preset": dict(dropped),
        "warnings": list(warnings),
    }


def read_manifest(settings: Settings) -> dict[str, Any]:
    """The manifest of the loaded contract data.

    Raises:
        NotReadyError: nothing was ingested yet.
    """
    file = settings.paths.contract_dir / MANIFEST_FILE
    if not file.is_file():
        raise NotReadyError(_NOT_READY.format(folder=settings.paths.contract_dir))
    return dict(json.loads(file.read_text()))


_NOT_READY = (
    "no ingested data in {folder}: run `loyal ingest PATH` with your tables, or "
    "`loyal generate` and then `loyal ingest` on the folder it prints"
)


# ------------------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class ContractSummary:
    """Headline figures of the loaded data.

    Attributes:
        rows: rows per table.
        customers: number of customers.
        first_ts: first transaction time.
        last_ts: last transaction time.
        closed_share: share of customers with a `closed_at` (None without closures).
        monthly_closure_rate: mean over months of closures / customers open at the month start.
        inactive_share: share of buying customers with no transaction in the last
            `horizon_days` of the data (the non-contractual view of churn).
        horizon_days: the inactivity window used.
        top_products: the 5 products with the most revenue: product_id, name, revenue, share.
    """

    rows: dict[str, int]
    customers: int
    first_ts: pd.Timestamp | None
    last_ts: pd.Timestamp | None
    closed_share: float | None
    monthly_closure_rate: float | None
    inactive_share: float | None
    horizon_days: int
    top_products: pd.DataFrame


def summarize(tables: Mapping[str, pd.DataFrame], horizon_days: int = 90) -> ContractSummary:
    """Compute the headline figures of validated contract tables."""
    customers, transactions = tables["customers"], tables["transactions"]
    has_tx = not transactions.empty
    first_ts = transactions["ts"].min() if has_tx else None
    last_ts = transactions["ts"].max() if has_tx else None
    return ContractSummary(
        rows={name: len(frame) for name, frame in tables.items()},
        customers=len(customers),
        first_ts=first_ts,
        last_ts=last_ts,
        closed_share=_closed_share(customers),
        monthly_closure_rate=_monthly_closure_rate(customers, first_ts, last_ts),
        inactive_share=_inactive_share(transactions, horizon_days) if has_tx else None,
        horizon_days=horizon_days,
        top_products=_top_products(transactions, tables.get("products")),
    )


def print_summary(settings: Settings) -> ContractSummary:
    """Print rows per table, date range, customers, churn and top products of the loaded data.

    Raises:
        NotReadyError: nothing was ingested yet.
    """
    manifest = read_manifest(settings)
    tables = read_contract(settings)
    summary = summarize(tables, settings.snapshots.horizon_days)
    out = Console()
    out.print(_figures_table(summary, manifest))
    out.print(_products_table(summary))
    return summary


def _closed_share(customers: pd.DataFrame) -> float | None:
    if "closed_at" not in customers.columns or customers["closed_at"].isna().all():
        return None
    return float(customers["closed_at"].notna().mean())


def _monthly_closure_rate(
    customers: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None
) -> float | None:
    """Mean over calendar months of closures in the month / customers open at its start."""
    if _closed_share(customers) is None:
        return None
    signup, closed = customers["signup_date"], customers["closed_at"]
    start = signup.min() if start is None else start
    end = closed.max() if end is None else end
    rates = []
    for month in pd.period_range(start, end, freq="M"):
        begin, stop = month.start_time, (month + 1).start_time
        at_risk = (signup < begin) & (closed.isna() | (closed >= begin))
        if at_risk.any():
            leaving = at_risk & (closed < stop)
            rates.append(leaving.sum() / at_risk.sum())
    return float(sum(rates) / len(rates)) if rates else None


def _inactive_share(transactions: pd.DataFrame, horizon_days: int) -> float:
    last = transactions.groupby("customer_id")["ts"].max()
    cutoff = transactions["ts"].max() - pd.Timedelta(days=horizon_days)
    return float((last < cutoff).mean())


def _top_products(
    transactions: pd.DataFrame, products: pd.DataFrame | None, n: int = 5
) -> pd.DataFrame:
    revenue = transactions.groupby("product_id")["amount"].sum().nlargest(n)
    top = revenue.rename("revenue").reset_index()
    total = transactions["amount"].sum()
    top["share"] = top["revenue"] / total if total else float("nan")
    names = products.set_index("product_id")["name"] if products is not None else pd.Series()
    top["name"] = top["product_id"].map(names).fillna("")
    return top[["product_id", "name", "revenue", "share"]]


def _figures_table(summary: ContractSummary, manifest: Mapping[str, Any]) -> Table:
    preset = f", preset {manifest['preset']}" if manifest.get("preset") else ""
    table = Table(
        title="Loaded data",
        caption=f"{manifest.get('source', '?')}{preset}; snapshot {manifest.get('snapshot_id')}, "
        f"ingested {manifest.get('ingested_at')}",
        show_header=False,
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("what", style="bold")
    table.add_column("value")
    for name, count in summary.rows.items():
        table.add_row(f"{name} rows", f"{count:,}")
    if summary.first_ts is not None and summary.last_ts is not None:
        span = f"{summary.first_ts:%Y-%m-%d} to {summary.last_ts:%Y-%m-%d}"
        table.add_row("transactions from", span)
    table.add_row("customers", f"{summary.customers:,}")
    if summary.closed_share is not None:
        table.add_row("closed accounts (all time)", f"{summary.closed_share:.1%}")
    if summary.monthly_closure_rate is not None:
        table.add_row("churn: mean monthly closure rate", f"{summary.monthly_closure_rate:.2%}")
    if summary.inactive_share is not None:
        label = f"churn: no purchase in the last {summary.horizon_days} days"
        table.add_row(label, f"{summary.inactive_share:.1%} of buying customers")
    return table


def _products_table(summary: ContractSummary) -> Table:
    table = Table(title="Top products by revenue", title_justify="left")
    table.add_column("product")
    table.add_column("name")
    table.add_column("revenue", justify="right")
    table.add_column("share", justify="right")
    for row in summary.top_products.itertuples(index=False):
        table.add_row(str(row.product_id), str(row.name), f"{row.revenue:,.0f}", f"{row.share:.1%}")
    return table


# ------------------------------------------------------------------------------------- helpers


def _existing_folder(path: Path) -> Path:
    if not path.exists():
        raise LoyalError(f"no such folder: {path}")
    if not path.is_dir():
        raise LoyalError(f"{path} is a file; pass the folder that holds the table files")
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _log_result(
    rows: Mapping[str, int], dropped: Mapping[str, int], notes: list[str], target: Path
) -> None:
    for reason, count in dropped.items():
        log.info("preset dropped %s rows: %s", f"{count:,}", reason)
    for note in notes:
        log.warning(note)
    for name, count in rows.items():
        log.info("%-13s %12s rows", name, f"{count:,}")
    log.info("Loaded into %s", target)
