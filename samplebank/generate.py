"""The `loyal generate` stage: write the sample bank's raw tables and, kept apart, its truth."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from loyal.errors import LoyalError
from loyal.logs import progress_bar
from loyal.settings import GenerateSettings, Settings
from samplebank.bank import BLOCK_CUSTOMERS, SampleBank, generate_blocks

log = logging.getLogger(__name__)

SAMPLE_BANK_FOLDER = "sample_bank"
MANIFEST_FILE = "generator.json"
SHIFT_FILE = "shift.json"
"""Truth of a shifted future (`loyal generate --shift`): what moved, from which month."""
ROWS_PER_WRITE = 1_000_000
SHARED_TABLES = frozenset({"products", "rate_changes"})
"""Tables every generated block repeats (the catalog, the rate cut): written once."""
BLOCK_SHIFT_SEED_STEP = 1_000_003
"""A shifted future's stream of block b is seeded with seed + b * this (block 0: seed)."""


def generate_sample_bank(
    settings: Settings,
    bank: GenerateSettings | None = None,
    out: Path | None = None,
    shift: str | None = None,
) -> Path:
    """Generate the sample bank and write it as Parquet, replacing any earlier one atomically.

    The contract tables go to `out` (default ``<raw_dir>/sample_bank``); the ground truth goes to
    ``<truth_dir>/sample_bank``, where only evaluation reads it. Both folders are written in full
    beside their targets before either is swapped in, so a failure leaves the old data intact.

    Args:
        settings: Loyal settings: the folders.
        bank: the bank to generate: size, seed, months and end date (default:
            `settings.generate`; `GenerateSettings.overridden` gives another size or seed).
        out: folder for the raw tables.
        shift: a shifted future (`monitoring.shift.KINDS`); what moved goes to the truth
            folder as `shift.json`.

    Returns:
        The folder holding the raw tables, ready for `loyal ingest`.
    """
    bank = settings.generate if bank is None else bank
    if bank.customers <= 0:
        raise LoyalError(f"--customers must be a positive number, got {bank.customers}")
    raw_folder = out if out is not None else settings.paths.raw_dir / SAMPLE_BANK_FOLDER
    truth_folder = settings.paths.truth_dir / SAMPLE_BANK_FOLDER
    log.info(
        "Generating a sample bank: %d customers, seed %d, %d months to %s",
        bank.customers,
        bank.seed,
        bank.months,
        bank.end_date,
    )
    started = time.perf_counter()
    hooks, truth = _shift(shift, bank.months, bank.seed)
    manifest = {**bank.model_dump(), "shift": shift}
    with (
        progress_bar() as progress,
        _staged(raw_folder) as raw_staging,
        _staged(truth_folder) as truth_staging,
    ):
        task = progress.add_task("Simulating months", total=None)
        blocks = generate_blocks(
            bank.customers,
            bank.seed,
            months=bank.months,
            end_date=bank.end_date,
            on_month=lambda done, total: progress.update(task, completed=done, total=total),
            shift=hooks,
            block_customers=BLOCK_CUSTOMERS,
        )
        rows = write_blocks(blocks, raw_staging, truth_staging)
        (truth_staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        if truth is not None:
            (truth_staging / SHIFT_FILE).write_text(json.dumps(truth, indent=2) + "\n")
    log.info("Generated and written in %.1f s", time.perf_counter() - started)
    for name, count in rows.items():
        log.info("%-24s %12s rows", name, f"{count:,}")
    log.info("Raw tables in %s, ground truth in %s", raw_folder, truth_folder)
    return raw_folder


def _shift(
    kind: str | None, months: int, seed: int
) -> tuple[Callable[[int], Any] | None, dict[str, Any] | None]:
    """The generator hook of each block and the truth of a shifted future (None, None without)."""
    if kind is None:
        return None, None
    from dataclasses import asdict

    from monitoring.shift import shift_hook, shift_truth

    truth = asdict(shift_truth(kind, months))
    log.info("Shifted future: %s from month %d", kind, truth["start_month"])
    return lambda block: shift_hook(kind, months, seed + BLOCK_SHIFT_SEED_STEP * block), truth


def write_blocks(
    blocks: Iterable[SampleBank], raw_folder: Path, truth_folder: Path
) -> dict[str, int]:
    """Write a bank block by block, one Parquet file per table; rows written per table.

    Each table's file is appended to as the blocks come (one writer per table), so memory holds
    one block at a time. The tables every block repeats (`SHARED_TABLES`) are written once.
    """
    writers = {"tables": _TableWriters(raw_folder), "truth": _TableWriters(truth_folder)}
    rows: dict[str, int] = {}
    with writers["tables"], writers["truth"]:
        for index, bank in enumerate(blocks):
            for group, prefix in (("tables", ""), ("truth", "truth/")):
                for name, frame in getattr(bank, group).items():
                    if index > 0 and name in SHARED_TABLES:
                        continue
                    rows[prefix + name] = rows.get(prefix + name, 0) + len(frame)
                    writers[group].write(name, frame)
            log.info("Block %d written: %s customers so far", index + 1, f"{rows['customers']:,}")
    return rows


class _TableWriters:
    """One open Parquet writer per table of a folder; the schema is the first block's."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.writers: dict[str, pq.ParquetWriter] = {}

    def write(self, name: str, frame: pd.DataFrame) -> None:
        writer = self.writers.get(name)
        if writer is None:
            schema = _plain_schema(pa.Schema.from_pandas(frame.head(0), preserve_index=False))
            writer = pq.ParquetWriter(self.folder / f"{name}.parquet", schema)
            self.writers[name] = writer
        for _ in _write_slices(writer, frame):
            pass

    def __enter__(self) -> _TableWriters:
        return self

    def __exit__(self, *_: object) -> None:
        for writer in self.writers.values():
            writer.close()


def write_parquet(frame: pd.DataFrame, path: Path) -> Iterator[int]:
    """Write a frame to Parquet in slices, yielding the rows written after each slice.

    Text columns are stored as plain UTF-8 strings whatever their in-memory dtype (categorical
    or Arrow-backed), so the files look like any user's; slicing bounds the extra memory.
    """
    schema = _plain_schema(pa.Schema.from_pandas(frame.head(0), preserve_index=False))
    with pq.ParquetWriter(path, schema) as writer:
        yield from _write_slices(writer, frame)


def _write_slices(writer: pq.ParquetWriter, frame: pd.DataFrame) -> Iterator[int]:
    for start in range(0, max(len(frame), 1), ROWS_PER_WRITE):
        part = frame.iloc[start : start + ROWS_PER_WRITE]
        table = pa.Table.from_pandas(part, preserve_index=False)
        writer.write_table(table.replace_schema_metadata(None).cast(writer.schema))
        yield len(part)


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    fields = [
        pa.field(f.name, pa.string())
        if pa.types.is_dictionary(f.type) or pa.types.is_large_string(f.type)
        else f
        for f in schema
    ]
    return pa.schema(fields)


@contextmanager
def _staged(target: Path) -> Iterator[Path]:
    """A fresh folder beside `target` that replaces it when the block succeeds.

    On any error the staging folder is removed and `target` is left as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    try:
        yield staging
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, Exception) and not isinstance(exc, LoyalError):
            raise LoyalError(f"could not write the sample bank to {target}: {exc}") from exc
        raise
    _swap_in(staging, target)


def _swap_in(staging: Path, target: Path) -> None:
    """Replace `target` by `staging` with renames, so readers never see a half-written folder."""
    previous = target.with_name(f".{target.name}.previous-{staging.name.rsplit('-', 1)[-1]}")
    if target.exists():
        target.rename(previous)
    staging.rename(target)
    shutil.rmtree(previous, ignore_errors=True)
