"""Churn trained on the local engine and on a 2-worker Dask LocalCluster: the same model.

The Dask run starts its own LocalCluster through `loyal.compute.dask_client`, so the test needs
nothing beyond the lock file. Both runs share the frame, split, settings and calibration; only
the final booster is boosted by `xgboost.dask` over the workers, whose quantile sketch is merged
across partitions, so the trees may differ slightly: the test ROC-AUC must agree within 0.005.
Row and column sampling are off here, and the histograms hold every distinct value (`max_bin`
above the row count): each worker draws its own rows, and a sketch merged across partitions
cuts elsewhere than one over all rows, so otherwise the two engines grow different (equally
good) trees, a noise that swamps 0.005 on a 2,000-customer bank whose test ROC-AUC is 0.56-0.59.
"""

from __future__ import annotations

import pytest

from loyal.settings import ComputeSettings, Settings

pytestmark = pytest.mark.pipeline

DETERMINISTIC = {"subsample": 1.0, "colsample_bynode": 1.0, "max_bin": 32_768}


def test_churn_on_dask_matches_the_local_engine(bank_home: Settings) -> None:
    from models.churn import ChurnModel
    from training.churn import train_churn_bank

    options = {"search_trials": 0, "params": DETERMINISTIC, "register": False, "plots": False}
    local = train_churn_bank(bank_home, **options)
    dask = bank_home.model_copy(
        update={"compute": ComputeSettings(engine="dask", workers=2, memory_limit="1GiB")}
    )
    distributed = train_churn_bank(dask, **options)

    assert distributed.split.description == local.split.description
    assert distributed.model.best_params_ == local.model.best_params_
    assert len(distributed.model.boosters_) == 1
    assert distributed.metrics["roc_auc"] == pytest.approx(local.metrics["roc_auc"], abs=0.005)
    holdout = distributed.holdout[list(distributed.model.feature_names_in_)]
    saved = ChurnModel.from_state(distributed.model.to_state())
    assert saved.predict_proba(holdout) == pytest.approx(distributed.model.predict_proba(holdout))
