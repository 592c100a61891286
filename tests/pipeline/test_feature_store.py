"""The feature store end to end: Feast training frames, online reads and pushes match the tables."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from features.frames import read_labels, training_frame
from features.store import built_views, online_features, open_store, push_view
from features.tables_io import read_contract
from loyal.settings import Settings, load_settings
from pipelines.features import apply_features, build_features, materialize_features
from pipelines.ingest import ingest_folder

pytestmark = pytest.mark.pipeline

KEYS = [ENTITY_KEY, TIMESTAMP_FIELD]


def view_tables(settings: Settings) -> pd.DataFrame:
    """Every built view table joined on customer and snapshot."""
    merged: pd.DataFrame | None = None
    for name in built_views(settings):
        table = pd.read_parquet(settings.paths.features_dir / f"{name}.parquet")
        merged = table if merged is None else merged.merge(table, on=KEYS, how="outer")
    assert merged is not None
    return merged


def assert_same_values(actual: pd.DataFrame, expected: pd.DataFrame, columns: list[str]) -> None:
    """Equal column by column; Feast returns None where the tables hold NaN."""
    for column in columns:
        a, b = actual[column].to_numpy(), expected[column].to_numpy()
        if pd.api.types.is_numeric_dtype(expected[column]):
            np.testing.assert_allclose(
                a.astype(float), b.astype(float), equal_nan=True, err_msg=column
            )
        else:
            assert [str(v) for v in a] == [str(v) for v in b], column


def test_training_frame_equals_the_feature_tables_at_the_same_timestamps(
    feature_bank: Settings,
) -> None:
    labels = read_labels(feature_bank)
    sample = labels.sample(60, random_state=0)[KEYS]
    frame = training_frame(feature_bank, "churn_v1", entities=sample)
    tables = view_tables(feature_bank)
    tables[TIMESTAMP_FIELD] = pd.to_datetime(tables[TIMESTAMP_FIELD], utc=True)
    expected = frame[KEYS].merge(tables, on=KEYS, how="left")
    feature_columns = [c for c in tables.columns if c not in KEYS]
    assert len(frame) == 60
    assert_same_values(frame, expected, feature_columns)
    truth = frame[KEYS].merge(
        labels.assign(**{TIMESTAMP_FIELD: pd.to_datetime(labels[TIMESTAMP_FIELD], utc=True)}),
        on=KEYS,
    )
    assert frame["churned"].tolist() == truth["churned"].tolist()


def test_online_features_equal_the_latest_snapshot(feature_bank: Settings) -> None:
    tables = view_tables(feature_bank)
    latest = tables[tables[TIMESTAMP_FIELD] == tables[TIMESTAMP_FIELD].max()]
    sample = latest.sample(25, random_state=1).reset_index(drop=True)
    online = online_features(open_store(feature_bank), "churn_v1", sample[ENTITY_KEY].tolist())
    feature_columns = [c for c in online.columns if c != ENTITY_KEY]
    assert len(feature_columns) > 40
    assert_same_values(online, sample, feature_columns)


def test_unknown_customer_gets_empty_online_features(feature_bank: Settings) -> None:
    online = online_features(open_store(feature_bank), "churn_v1", ["NO-SUCH-CUSTOMER"])
    values = online.drop(columns=[ENTITY_KEY]).iloc[0]
    assert values.isna().all()


def test_pushed_balance_shows_up_online_without_a_rebuild(
    feature_bank: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("push")
    settings = load_settings(home=home)
    _copy_state(feature_bank, settings)
    store = open_store(settings)
    customer = read_contract(settings)["customers"][ENTITY_KEY].iloc[0]
    before = online_features(store, "churn_v1", [customer])["balance_checking"].iloc[0]
    fresh = _balance_row(settings, customer, balance_checking=123_456.0)
    push_view(store, "balances", fresh)
    after = online_features(store, "churn_v1", [customer])
    assert after["balance_checking"].iloc[0] == 123_456.0
    assert before != 123_456.0
    assert after["total_deposits"].iloc[0] == fresh["total_deposits"].iloc[0]


def _balance_row(settings: Settings, customer: str, **values: float) -> pd.DataFrame:
    """The customer's latest balances row with some values replaced and a fresh timestamp."""
    table = pd.read_parquet(settings.paths.features_dir / "balances.parquet")
    row = table[table[ENTITY_KEY] == customer].tail(1).copy()
    for name, value in values.items():
        row[name] = value
    row[TIMESTAMP_FIELD] = pd.Timestamp(datetime.now(UTC))
    return row.reset_index(drop=True)


def _copy_state(source: Settings, target: Settings) -> None:
    """A private copy of a built store, so a test may change it."""
    import shutil

    shutil.copytree(source.paths.data_dir, target.paths.data_dir)
    build_features(target)
    apply_features(target)
    materialize_features(target)


def test_online_retail_preset_builds_features_end_to_end(tmp_path, shared_data) -> None:
    settings = load_settings(home=tmp_path)
    ingest_folder(settings, shared_data / "online_retail", preset="online-retail")
    counts = build_features(settings, last_n=3)
    apply_features(settings)
    materialize_features(settings)
    assert counts["rfm.parquet"] > 3 * 3000
    labels = read_labels(settings, complete_only=False)
    assert labels["churned"].isin([0, 1]).all()
    tables = view_tables(settings)
    latest = tables[tables[TIMESTAMP_FIELD] == tables[TIMESTAMP_FIELD].max()]
    buyer = latest.sort_values("monetary_365d").iloc[-1]
    online = online_features(open_store(settings), "churn_v1", [buyer[ENTITY_KEY]])
    assert online["monetary_365d"].iloc[0] == pytest.approx(buyer["monetary_365d"])
    assert online["frequency_365d"].iloc[0] > 0
