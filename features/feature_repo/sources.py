"""Sources: one Parquet snapshot table per view, plus push sources for fresh values."""

from __future__ import annotations

from pathlib import Path

from feast import FileSource, PushSource

from features.catalog import TIMESTAMP_FIELD, View


def view_table_path(offline_dir: Path, view: View) -> Path:
    """Where the snapshot table of `view` lives in the offline store."""
    return offline_dir / f"{view.name}.parquet"


def batch_source(view: View, offline_dir: Path) -> FileSource:
    """The offline (batch) source of a view: its snapshot Parquet table."""
    return FileSource(
        name=f"{view.name}_source",
        path=str(view_table_path(offline_dir, view)),
        timestamp_field=TIMESTAMP_FIELD,
        description=f"Snapshot table of the {view.name} view.",
    )


def push_source(view: View, batch: FileSource) -> PushSource:
    """A push source so fresh values (today's balance) reach the online store between batches."""
    return PushSource(
        name=f"{view.name}_push",
        batch_source=batch,
        description=f"Fresh {view.name} values pushed by channel systems between batch runs.",
    )
