"""`loyal models` without importing MLflow: the SQLite registry read directly, read-only.

Importing MLflow costs about 5 s on this machine (it pulls in pandas, SQLAlchemy and Alembic),
more than the listing itself. When the tracking store is the embedded SQLite file, the few
registry tables `loyal models` shows (model versions, their tags, the `champion` alias and the
runs' latest metrics) are read here with the standard library, with the rules MLflow's
`SqlAlchemyStore` applies (deleted versions hidden; a run that does not exist has no metric).
Anything unexpected (another backend, no file yet, a schema this code does not know) returns
None and the caller asks MLflow itself.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.models_admin import ModelSpec, VersionRow

log = logging.getLogger(__name__)

SQLITE = "sqlite:///"
DELETED_STAGE = "Deleted_Internal"
"""`current_stage` MLflow gives a deleted model version (kept in the table, never listed)."""
CHAMPION = "champion"


def sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` tracking URI that exists, else None."""
    if not tracking_uri.startswith(SQLITE):
        return None
    path = Path(tracking_uri.removeprefix(SQLITE))
    return path if path.is_file() else None


def read_versions(
    tracking_uri: str, specs: Sequence[ModelSpec], limit: int | None
) -> list[VersionRow] | None:
    """The rows `models_admin.list_versions` gives, or None when MLflow must be asked.

    Args:
        tracking_uri: the configured tracking store.
        specs: the models to list, in order.
        limit: newest versions kept per model besides the champion (None: all).
    """
    path = sqlite_file(tracking_uri)
    if path is None:
        return None
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            rows: list[VersionRow] = []
            for spec in specs:
                rows.extend(_model_rows(db, spec, limit))
            return rows
    except sqlite3.Error as exc:
        log.debug("registry read through MLflow instead (%s)", exc)
        return None


def _model_rows(db: sqlite3.Connection, spec: ModelSpec, limit: int | None) -> list[VersionRow]:
    """One model's versions, newest first, the champion always included."""
    found = db.execute(
        "SELECT version, creation_time, run_id FROM model_versions"
        " WHERE name = ? AND current_stage != ? ORDER BY version DESC",
        (spec.name, DELETED_STAGE),
    ).fetchall()
    alias = db.execute(
        "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
        (spec.name, CHAMPION),
    ).fetchone()
    crowned = None if alias is None else int(alias[0])
    shown = found if limit is None else found[:limit]
    shown += [v for v in found[len(shown) :] if int(v[0]) == crowned]
    return [_row(db, spec, int(v), created, run_id, crowned) for v, created, run_id in shown]


def _row(
    db: sqlite3.Connection,
    spec: ModelSpec,
    version: int,
    created: int,
    run_id: str | None,
    crowned: int | None,
) -> VersionRow:
    from training.models_admin import VersionRow

    tags = dict(
        db.execute(
            "SELECT key, value FROM model_version_tags WHERE name = ? AND version = ?",
            (spec.name, version),
        ).fetchall()
    )
    run = run_id or tags.get("run_id", "")
    return VersionRow(
        model=spec.name,
        version=version,
        created=datetime.fromtimestamp(int(created) / 1000, tz=UTC),
        run_id=run,
        metric=spec.run_metric,
        value=_run_metric(db, run, spec.run_metric),
        champion=version == crowned,
        outcome=tags.get("promotion.outcome", ""),
        reason=tags.get("promotion.reason", ""),
        rolled_back=tags.get("promotion.rollback_reason", "")
        if tags.get("promotion.rolled_back_at")
        else "",
    )


def _run_metric(db: sqlite3.Connection, run_id: str, metric: str) -> float | None:
    """A run's latest logged value of the metric (None: no run, or the metric not logged)."""
    if not run_id:
        return None
    if db.execute("SELECT 1 FROM runs WHERE run_uuid = ?", (run_id,)).fetchone() is None:
        log.warning("run %s of a registered version cannot be read", run_id)
        return None
    found = db.execute(
        "SELECT value, is_nan FROM latest_metrics WHERE run_uuid = ? AND key = ?",
        (run_id, metric),
    ).fetchone()
    if found is None:
        return None
    value, is_nan = found
    return math.nan if is_nan else float(value)
