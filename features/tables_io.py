"""Reading and atomically replacing folders of Parquet tables (contract and feature tables)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from os import getpid
from pathlib import Path
from typing import Any

import pandas as pd

from features.contract import TABLES
from features.presets import catalog_for
from loyal.errors import LoyalError, NotReadyError
from loyal.settings import Settings

MANIFEST_FILE = "_manifest.json"
"""Written beside the contract tables: source, preset, rows, date ranges, snapshot id."""


def loaded_manifest(settings: Settings) -> dict[str, Any] | None:
    """The manifest of the loaded contract data (None: nothing loaded, or unreadable)."""
    try:
        manifest = json.loads((settings.paths.contract_dir / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def recorded_catalog(settings: Settings) -> str | None:
    """The shipped offer catalog the loaded data calls for (None: no data loaded yet)."""
    manifest = loaded_manifest(settings)
    return None if manifest is None else catalog_for(manifest)


def consent_recorded(settings: Settings) -> bool | None:
    """Whether the loaded customers table records marketing consent for anyone.

    None when no customers table is loaded. Reads only the one column.
    """
    path = settings.paths.contract_dir / "customers.parquet"
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    if "consent_marketing" not in pq.read_schema(path).names:
        return False
    column = pq.read_table(path, columns=["consent_marketing"]).column(0)
    return column.null_count < len(column)


def read_contract(
    settings: Settings,
    only: Iterable[str] | None = None,
    columns: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, pd.DataFrame]:
    """The validated contract tables written by `loyal ingest`, by table name.

    Args:
        settings: where the contract folder is.
        only: read just these tables (e.g. `["customers"]`, not the transactions).
        columns: read just these columns of the tables named here (those the file holds: an
            optional contract column may be absent); other tables are read whole.

    Raises:
        NotReadyError: a required table (among those asked for) was never ingested.
    """
    folder = settings.paths.contract_dir
    recover_folder(folder)
    wanted = TABLES if only is None else {name: TABLES[name] for name in only}
    columns = columns or {}
    tables = {
        name: _read_table(folder / f"{name}.parquet", columns.get(name))
        for name in wanted
        if (folder / f"{name}.parquet").is_file()
    }
    missing = [name for name, spec in wanted.items() if spec.required_table and name not in tables]
    if missing:
        raise NotReadyError(
            f"no validated {', '.join(missing)} table in {folder}: "
            "run `loyal generate` and `loyal ingest`, or `loyal ingest PATH` with your data"
        )
    return tables


def _read_table(path: Path, columns: Iterable[str] | None) -> pd.DataFrame:
    if columns is None:
        return pd.read_parquet(path)
    import pyarrow.parquet as pq

    present = set(pq.read_schema(path).names)
    return pd.read_parquet(path, columns=[c for c in columns if c in present])


def replace_folder(
    target: Path, frames: dict[str, pd.DataFrame], extra_files: dict[str, str] | None = None
) -> None:
    """Write frames (and small text files) into a staging folder, then swap it in.

    Readers see either the old folder or the new one, never a half-written mix; on any error
    the old folder is left untouched (or restored, if the process died between the two renames).
    """
    with staged_folder(target) as staging:
        for name, frame in frames.items():
            frame.to_parquet(staging / name, index=False)
        for name, text in (extra_files or {}).items():
            (staging / name).write_text(text)


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """A staging folder beside `target` that replaces it only if the block completes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.staging")
    previous = target.with_name(f".{target.name}.previous")
    recover_folder(target)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise LoyalError(f"could not write tables to {target}: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(previous, ignore_errors=True)
    if target.exists():
        target.rename(previous)
    try:
        staging.rename(target)
    except OSError as exc:
        previous.rename(target)
        raise LoyalError(f"could not swap in the new tables at {target}: {exc}") from exc
    shutil.rmtree(previous, ignore_errors=True)


def recover_folder(target: Path) -> None:
    """Put back the last good folder if a swap was interrupted between its two renames."""
    previous = target.with_name(f".{target.name}.previous")
    if previous.is_dir() and not target.exists():
        previous.rename(target)


@contextmanager
def staged_file(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` that is renamed over it when the block ends cleanly.

    Readers see the old file or the new one, never half of one; on any error (or interrupt)
    the temporary file is removed and `path` is left as it was. The temporary name keeps the
    suffix, for writers that choose their format by it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{getpid()}{path.suffix}")
    try:
        yield staging
        staging.replace(path)
    finally:
        staging.unlink(missing_ok=True)
