"""Whether the loaded data can support a model: the checks its training makes before fitting.

Each check raises `StepSkippedError` with the reason; promotion calls the model's check when no
version is registered, so `loyal promote` after a skipped `loyal train` says why, with exit 0.
The model specs (`loyal.specs`) name them.
"""

from __future__ import annotations

from loyal.errors import StepSkippedError
from loyal.settings import Settings


def check_churn(settings: Settings) -> None:
    """Churn needs a label horizon the snapshots can support."""
    from features.frames import read_horizon

    choice = read_horizon(settings)
    if choice.chosen is None:
        raise StepSkippedError(f"churn: {choice.reason}")


def check_cross_sell(settings: Settings) -> None:
    """Cross-sell needs enough products and purchases for its split."""
    from training.cross_sell import applicable_config, bank_config, read_purchase_log

    applicable_config(read_purchase_log(settings), bank_config(n_trials=0))


def check_clv(settings: Settings) -> None:
    """CLV needs a history long enough for its holdout."""
    from features.log_aggregates import observation_end, transaction_log
    from training.clv import clv_settings, sized_holdout

    transactions = transaction_log(settings)
    sized_holdout(clv_settings(settings), transactions, observation_end(settings, transactions))
