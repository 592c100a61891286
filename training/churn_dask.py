"""Churn's final booster trained on a Dask cluster with `xgboost.dask` (`compute.engine: dask`).

Everything else is the local path's (`training.churn.train_from_frame`): the same frame,
features, time split, encoding, search (on its bounded sample, in this process) and calibration
(on the validation snapshot's log-odds). Only the final booster, the one step whose cost grows
with the training rows, runs over the workers: the encoded training rows become a Dask DataFrame
split across them, `xgboost.dask` builds its quantile sketch and every boosting round through
XGBoost's collective, early-stopped on the validation snapshot, and hands back a plain
`xgboost.Booster`, saved and served exactly like a locally trained one.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xgboost as xgb
from numpy.typing import NDArray

from models.churn import BoosterJob, BoosterTrainer

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)


def dask_trainer(client: Client) -> BoosterTrainer:
    """A `ChurnModel.fit` trainer that boosts on `client`'s workers (one partition each)."""

    def train(job: BoosterJob) -> xgb.Booster:
        from xgboost import dask as dxgb

        workers = max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
        started = time.perf_counter()
        common: dict[str, Any] = {
            "feature_types": job.feature_types,
            "enable_categorical": True,
            "max_bin": job.params.get("max_bin", 256),
        }
        train_rows = _partitioned(job.rows, job.labels, job.feature_names, workers)
        valid_rows = _partitioned(job.valid_rows, job.valid_labels, job.feature_names, workers)
        dtrain = dxgb.DaskQuantileDMatrix(client, *train_rows, **common)
        dvalid = dxgb.DaskQuantileDMatrix(client, *valid_rows, ref=dtrain, **common)
        output = dxgb.train(
            client,
            job.params,
            dtrain,
            num_boost_round=job.max_rounds,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=job.early_stopping_rounds,
            verbose_eval=False,
        )
        booster: xgb.Booster = output["booster"]
        log.info(
            "churn booster on Dask: %d rows over %d workers, %d rounds in %.1f s",
            len(job.labels),
            workers,
            booster.best_iteration + 1,
            time.perf_counter() - started,
        )
        return booster[: booster.best_iteration + 1]

    return train


def _partitioned(
    rows: NDArray[np.float32], labels: NDArray[np.int64], names: list[str], partitions: int
) -> tuple[Any, Any]:
    """Encoded rows and labels as a Dask DataFrame and Series split into `partitions`."""
    import dask.dataframe as dd

    frame = pd.DataFrame(rows, columns=names, copy=False)
    data = dd.from_pandas(frame, npartitions=partitions, sort=False)
    label = dd.from_pandas(pd.Series(labels, name="churned"), npartitions=partitions, sort=False)
    return data, label
