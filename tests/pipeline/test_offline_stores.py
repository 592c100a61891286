"""DuckDB and Feast's file offline store give the same point-in-time training frame."""

from __future__ import annotations

import pandas as pd
import pytest
from test_feature_store import assert_same_values

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from features.frames import read_labels, training_frame
from loyal.settings import Settings

pytestmark = pytest.mark.pipeline

KEYS = [ENTITY_KEY, TIMESTAMP_FIELD]


def test_duckdb_and_file_offline_stores_return_the_same_values(feature_bank: Settings) -> None:
    labels = read_labels(feature_bank)
    sample = labels.sample(80, random_state=3)[KEYS]
    # a timestamp between snapshots reads the snapshot before it (as of, never after)
    between = sample.head(5).assign(
        **{TIMESTAMP_FIELD: pd.to_datetime(sample.head(5)[TIMESTAMP_FIELD]) + pd.Timedelta(days=3)}
    )
    entities = pd.concat([sample, between], ignore_index=True)
    duck = feature_bank.model_copy(deep=True)
    duck.feast.offline_store = "duckdb"
    file = feature_bank.model_copy(deep=True)
    file.feast.offline_store = "file"

    by_duckdb = training_frame(duck, "churn_v1", entities=entities, with_labels=False)
    by_file = training_frame(file, "churn_v1", entities=entities, with_labels=False)

    assert len(by_duckdb) == len(entities) == len(by_file)
    assert by_duckdb[ENTITY_KEY].tolist() == by_file[ENTITY_KEY].tolist()
    columns = [c for c in by_file.columns if c not in KEYS]
    assert sorted(columns) == sorted(c for c in by_duckdb.columns if c not in KEYS)
    assert len(columns) > 40
    assert_same_values(by_duckdb, by_file, columns)
