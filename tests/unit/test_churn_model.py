"""The churn model's behaviour on tiny known-answer frames, and bring-your-own table typing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from loyal.errors import DataContractError, NotReadyError
from models.baselines import BASELINES, baseline
from models.churn import (
    ChurnModel,
    ChurnPyfunc,
    _simplest_within_noise,
    choose_calibration,
    default_sentence,
    template_sentence,
)
from models.metrics import roc_auc
from models.tabular import infer_roles, parse_label, prepare_table
from training.churn import (
    catalog_sentence,
    catalog_templates,
    cross_validate,
    read_table,
    sniff_separator,
    time_split,
)

pytestmark = pytest.mark.unit

FAST: dict[str, Any] = {
    "cv_folds": 3,
    "learning_rate": 0.2,
    "early_stopping_rounds": 20,
    "max_rounds": 300,
}


def _decided_by_one_feature(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "signal": rng.uniform(0, 1, n),
            "noise": rng.normal(size=n),
            "region": pd.Categorical(rng.choice(["north", "south", "east"], n)),
        }
    )
    return frame, (frame["signal"] > 0.5).to_numpy(int)


def _complaints_drive_risk(n: int = 1500, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "complaints_90d": rng.poisson(0.7, n),
            "tenure_months": rng.integers(1, 120, n).astype(float),
            "channel": rng.choice(["web", "branch", "phone"], n),
        }
    )
    logit = -2.5 + 1.6 * frame["complaints_90d"]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, y


@pytest.fixture(scope="module")
def complaints_model() -> tuple[ChurnModel, pd.DataFrame]:
    X, y = _complaints_drive_risk()
    return ChurnModel(**FAST).fit(X, y), X


def test_one_feature_deciding_the_label_reaches_auc_one() -> None:
    X, y = _decided_by_one_feature()
    model = ChurnModel(**FAST).fit(X, y)
    test_X, test_y = _decided_by_one_feature(seed=1)
    assert roc_auc(test_y, model.predict_proba(test_X)[:, 1]) == 1.0
    assert model.calibrator_.method == "platt"
    assert len(model.boosters_) == 3


def test_reasons_name_the_feature_that_drives_risk(
    complaints_model: tuple[ChurnModel, pd.DataFrame],
) -> None:
    model, _ = complaints_model
    customer = pd.DataFrame(
        {"complaints_90d": [4], "tenure_months": [60.0], "channel": ["web"]}, index=["c1"]
    )
    templates = {"complaints_90d": {"reason": "{value:.0f} complaints in the last 90 days"}}
    reasons = model.explain(customer, top=3, sentence=template_sentence(templates))[0]
    assert reasons[0].feature == "complaints_90d"
    assert reasons[0].sentence == "4 complaints in the last 90 days"
    assert all(r.contribution > 0 for r in reasons)
    assert [r.contribution for r in reasons] == sorted(
        (r.contribution for r in reasons), reverse=True
    )


def test_reasons_only_push_risk_up(complaints_model: tuple[ChurnModel, pd.DataFrame]) -> None:
    model, _ = complaints_model
    calm = pd.DataFrame({"complaints_90d": [0], "tenure_months": [60.0], "channel": ["web"]})
    reasons = model.explain(calm, top=3)[0]
    assert "complaints_90d" not in [r.feature for r in reasons]
    assert model.predict_proba(calm)[0, 1] < 0.15


def test_default_sentence_falls_back_to_column_and_value() -> None:
    assert default_sentence("tenure", 70.6999) == "tenure = 70.7"
    assert default_sentence("Contract", "Month-to-month") == "Contract = Month-to-month"
    assert default_sentence("x", float("nan")) == "x = missing"
    render = template_sentence({"spend_trend": {"description": "spend trend"}})
    assert render("spend_trend", -0.45) == "spend trend: -0.45"
    assert render("unknown", 3) == "unknown = 3"


def test_probabilities_are_calibrated_on_held_out_rows(
    complaints_model: tuple[ChurnModel, pd.DataFrame],
) -> None:
    model, _ = complaints_model
    test_X, test_y = _complaints_drive_risk(n=4000, seed=7)
    probability = model.predict_proba(test_X)[:, 1]
    assert abs(probability.mean() - test_y.mean()) < 0.03


def test_clone_keeps_parameters_and_drops_the_fit(
    complaints_model: tuple[ChurnModel, pd.DataFrame],
) -> None:
    model, _ = complaints_model
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert not hasattr(copy, "boosters_")
    assert clone(ChurnModel(max_depth=3, search_trials=2)).get_params()["max_depth"] == 3


def test_fast_single_row_path_is_exact(complaints_model: tuple[ChurnModel, pd.DataFrame]) -> None:
    model, X = complaints_model
    rows = X.head(20)
    expected = model.predict_proba(rows)[:, 1]
    fast = [model.score_one({str(k): v for k, v in r.items()}) for r in rows.to_dict("records")]
    np.testing.assert_allclose(fast, expected, rtol=1e-6)
    unseen = {"complaints_90d": 2, "channel": "carrier pigeon"}  # tenure absent, unseen channel
    batch = pd.DataFrame({"complaints_90d": [2], "tenure_months": [np.nan], "channel": ["?"]})
    assert model.score_one(unseen) == pytest.approx(model.predict_proba(batch)[0, 1], rel=1e-6)


def test_state_round_trip_and_pyfunc(complaints_model: tuple[ChurnModel, pd.DataFrame]) -> None:
    model, X = complaints_model
    rebuilt = ChurnModel.from_state(model.to_state())
    np.testing.assert_allclose(rebuilt.predict_proba(X.head(50)), model.predict_proba(X.head(50)))
    output = ChurnPyfunc.from_model(rebuilt).predict(None, X.head(3), params={"top": 2})
    assert list(output.columns) == ["churn_probability", "reasons"]
    assert all(len(r) <= 2 for r in output["reasons"])
    silent = ChurnPyfunc.from_model(rebuilt).predict(None, X.head(3), params={"top": 0})
    assert all(r == [] for r in silent["reasons"])


def test_eval_set_and_search_fit() -> None:
    X, y = _decided_by_one_feature(n=300)
    valid_X, valid_y = _decided_by_one_feature(n=200, seed=3)
    model = ChurnModel(**FAST, search_trials=3).fit(X, y, eval_set=(valid_X, valid_y))
    assert len(model.boosters_) == 1
    assert model.search_summary_ is not None and model.search_summary_["trials"] == 3
    assert set(model.best_params_) >= {"max_depth", "learning_rate"}


def test_missing_feature_column_is_an_error(
    complaints_model: tuple[ChurnModel, pd.DataFrame],
) -> None:
    model, X = complaints_model
    with pytest.raises(ValueError, match="tenure_months"):
        model.predict_proba(X.drop(columns="tenure_months"))


def test_calibration_method_follows_data_size() -> None:
    assert choose_calibration(np.r_[np.ones(300), np.zeros(5000)].astype(int)) == "platt"
    assert choose_calibration(np.r_[np.ones(2000), np.zeros(20000)].astype(int)) == "platt"
    assert choose_calibration(np.r_[np.ones(5000), np.zeros(60000)].astype(int)) == "isotonic"
    assert choose_calibration(np.zeros(10), "isotonic") == "isotonic"


# ------------------------------------------------------------------ bring-your-own tables
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (["Yes", "no", " YES ", "No"], [1, 0, 1, 0]),
        ([1, 0, 0, 1], [1, 0, 0, 1]),
        ([1.0, 0.0, 1.0, 0.0], [1, 0, 1, 0]),
        ([True, False, False, True], [1, 0, 0, 1]),
        (["churned", "stayed", "stayed", "churned"], [1, 0, 0, 1]),
        (["true", "false", "false", "false"], [1, 0, 0, 0]),
    ],
)
def test_labels_parse_to_zero_one(raw: list[object], expected: list[int]) -> None:
    assert parse_label(pd.Series(raw, name="Churn")).tolist() == expected


def test_constant_label_is_a_clear_error() -> None:
    with pytest.raises(DataContractError, match="constant"):
        parse_label(pd.Series(["No", "No", "No"], name="Churn"), table="extract.csv")


def test_unknown_and_missing_labels_are_clear_errors() -> None:
    with pytest.raises(DataContractError, match="maybe"):
        parse_label(pd.Series(["yes", "maybe", "no"], name="Churn"))
    with pytest.raises(DataContractError, match="missing"):
        parse_label(pd.Series(["yes", None, "no"], name="Churn"))


def _extract(n: int = 240) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "RowNumber": np.arange(1, n + 1),
            "customerID": [f"C-{i:04d}" for i in range(n)],
            "Email": [
                f"user{i}@example.com" if i % 10 else f"shared{i % 3}@x.org" for i in range(n)
            ],
            "Surname": [f"name{i % 40}" for i in range(n)],
            "Notes": [f"called on day {i} about the bill, wants a better offer" for i in range(n)],
            "Signed": [str(pd.Timestamp("2024-01-01") + pd.Timedelta(days=i)) for i in range(n)],
            "Contract": rng.choice(["Month-to-month", "One year", "Two year"], n),
            "tenure": rng.integers(0, 72, n),
            "TotalCharges": [" " if i % 20 == 0 else f"{10.5 * i:.2f}" for i in range(n)],
            "Country": "FR",
            "Churn": np.where(np.arange(n) % 3 == 0, "Yes", "No"),
        }
    )


def test_roles_drop_identifiers_and_free_text_and_parse_numbers() -> None:
    table = prepare_table(_extract(), "customerID", "Churn", table="extract.csv")
    assert table.roles.numeric == ("tenure", "TotalCharges")
    assert table.roles.categorical == ("Surname", "Contract")
    assert set(table.roles.dropped) == {"RowNumber", "Email", "Notes", "Signed", "Country"}
    assert "identifier" in table.roles.dropped["RowNumber"]
    assert "identifier-like" in table.roles.dropped["Email"]
    assert "free text" in table.roles.dropped["Notes"]
    assert "dates" in table.roles.dropped["Signed"]
    assert table.roles.coerced == {"TotalCharges": 12}
    assert table.X["TotalCharges"].isna().sum() == 12
    assert isinstance(table.X["Surname"].dtype, pd.CategoricalDtype)
    assert any("Notes" in line and "dropped" in line for line in table.roles.warnings())
    assert table.ids.iloc[0] == "C-0000"


def test_a_table_without_an_id_column_numbers_its_rows() -> None:
    table = prepare_table(_extract().drop(columns="customerID"), None, "Churn")
    assert table.ids.tolist()[:3] == [1, 2, 3]
    assert "customerID" not in table.X


def test_missing_label_or_id_column_is_a_clear_error() -> None:
    with pytest.raises(DataContractError, match=r"Churned.*label column is missing"):
        infer_roles(_extract(), "customerID", "Churned")
    with pytest.raises(DataContractError, match="id column"):
        infer_roles(_extract(), "id", "Churn")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["Yes"] * 49 + ["No"] * 200, r"'Churn'.*only 49 row\(s\) have the label 'Yes'"),
        (["No"] * 249, r"'Churn'.*constant"),
        (["yes", "no", "maybe"] * 83, r"'Churn'.*binary.*3 values.*'maybe'"),
        (["A", "B"] * 124 + ["A"], r"'Churn'.*must be yes/no.*'A', 'B'"),
    ],
)
def test_unusable_labels_stop_with_a_message_naming_the_column(
    labels: list[str], message: str
) -> None:
    frame = pd.DataFrame({"x": np.arange(len(labels), dtype=float) % 7, "Churn": labels})
    with pytest.raises(DataContractError, match=message):
        prepare_table(frame, None, "Churn", table="extract.csv")


def test_rare_categories_are_read_as_missing() -> None:
    rng = np.random.default_rng(3)
    n = 600
    zips = np.where(
        np.arange(n) < 500, rng.choice(["10115", "75001"], n), [f"z{i}" for i in range(n)]
    )
    X = pd.DataFrame({"zip": pd.Series(zips).astype("category"), "x": rng.normal(size=n)})
    y = (X["x"] > 0).to_numpy(int)
    model = ChurnModel(**FAST, min_category_rows=10).fit(X, y)
    assert model.categories_["zip"] == ["10115", "75001"]


# --------------------------------------------------------------------- reading tables
@pytest.mark.parametrize(
    ("text", "separator"),
    [
        ('"age";"job";"y"\n58;"management";"no"\n44;"technician";"yes"\n', ";"),
        ("age\tjob\ty\n58\tmanagement\tno\n44\ttechnician\tyes\n", "\t"),
        ('\ufeff"age","job, title","y"\n58,"management, senior",no\n44,technician,yes\n', ","),
    ],
)
def test_read_table_sniffs_separators_and_quoted_headers(
    tmp_path: Path, text: str, separator: str
) -> None:
    path = tmp_path / "extract.csv"
    path.write_text(text, encoding="utf-8")
    assert sniff_separator(text.lstrip("\ufeff")) == separator
    frame = read_table(path)
    assert (frame.columns[0], frame.columns[-1]) == ("age", "y")
    assert frame.shape == (2, 3)
    assert frame["age"].tolist() == [58, 44]


def test_read_table_reads_latin1_and_strips_header_spaces(tmp_path: Path) -> None:
    path = tmp_path / "extract.txt"
    path.write_bytes(" région ; churn \nSaint-Étienne;oui\n".encode("latin-1"))
    frame = read_table(path)
    assert list(frame.columns) == ["région", "churn"]
    assert frame.iloc[0, 0] == "Saint-Étienne"


# ------------------------------------------------------------------ capacity and baselines
def _xor(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Churn decided by the interaction of two columns only: each alone carries no signal."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.uniform(-1, 1, n), "b": rng.uniform(-1, 1, n)})
    for i in range(3):
        frame[f"noise_{i}"] = rng.normal(size=n)
    signal = (frame["a"] > 0) != (frame["b"] > 0)
    flip = rng.uniform(size=n) < 0.05
    return frame, (signal ^ flip).to_numpy(int)


def test_the_search_finds_an_interaction_that_stumps_cannot_see() -> None:
    X, y = _xor(2000, seed=0)
    test_X, test_y = _xor(2000, seed=1)
    stumps = ChurnModel(**{**FAST, "max_depth": 1}).fit(X, y)
    searched = ChurnModel(**{**FAST, "max_depth": 1}, search_trials=8, search_timeout=30).fit(X, y)
    assert abs(roc_auc(test_y, stumps.predict_proba(test_X)[:, 1]) - 0.5) < 0.05
    assert roc_auc(test_y, searched.predict_proba(test_X)[:, 1]) > 0.9
    assert searched.best_params_["max_depth"] >= 2
    reasons = searched.explain(test_X.head(20), top=2)
    named = {r.feature for row in reasons for r in row}
    assert named <= {"a", "b", "noise_0", "noise_1", "noise_2"} and named & {"a", "b"}


def test_contributions_add_up_to_the_log_odds_at_any_depth() -> None:
    X, y = _xor(800, seed=2)
    for depth in (1, 6):
        model = ChurnModel(**{**FAST, "max_depth": depth}).fit(X, y)
        total = model.contributions(X.head(50)).sum(axis=1).to_numpy()
        np.testing.assert_allclose(total, model.decision_function(X.head(50)), atol=1e-4)


def test_search_keeps_the_shallower_settings_when_deeper_ones_win_only_by_noise() -> None:
    rng = np.random.default_rng(5)
    y = (rng.uniform(size=4000) < 0.3).astype(np.int64)
    shallow = np.where(y == 1, 0.2, -1.2) + rng.normal(0, 1, 4000)

    def trial(depth: int, margin: np.ndarray) -> tuple[float, dict[str, Any], Any]:
        loss = float(np.mean(np.logaddexp(0, margin) - y * margin))
        return loss, {"max_depth": depth}, ([], margin, y)

    toward = np.where(y == 1, 1.0, -1.0)
    helped = np.random.default_rng(6).uniform(size=4000) < 0.54
    slightly = shallow + 0.3 * toward * np.where(helped, 1, -1)  # better on 54% of rows: noise
    clearly = shallow + toward  # better on every row
    noisy = [trial(6, slightly), trial(1, shallow)]
    assert noisy[0][0] < noisy[1][0]
    assert _simplest_within_noise(noisy)[1]["max_depth"] == 1
    assert _simplest_within_noise([trial(6, clearly), trial(1, shallow)])[1]["max_depth"] == 6


def test_search_stays_within_its_time_budget() -> None:
    X, y = _xor(3000, seed=4)
    params = {**FAST, "learning_rate": 0.02, "max_rounds": 3000, "early_stopping_rounds": 200}
    model = ChurnModel(**params, search_trials=500, search_timeout=2.0).fit(X, y)
    assert model.search_summary_ is not None
    assert 1 <= model.search_summary_["trials"] < 500
    # the first trial always finishes; later ones stop or are cut once the budget is spent
    assert model.search_summary_["seconds"] < 2.0 + 3 * model.search_summary_["first_trial_seconds"]


@pytest.mark.filterwarnings("error::UserWarning")
def test_baselines_fit_mixed_columns_with_missing_values() -> None:
    X, y = _complaints_drive_risk()
    X = X.assign(channel=X["channel"].where(np.arange(len(X)) % 9 != 0), empty=np.nan)
    X.loc[X.index[::11], "tenure_months"] = np.nan
    for name in BASELINES:
        model = baseline(name, X).fit(X, y)
        assert roc_auc(y, model.predict_proba(X)[:, 1]) > 0.7
    with pytest.raises(ValueError, match="baseline must be one of"):
        baseline("forest", X)


def test_cross_validation_reports_baselines_and_chosen_settings() -> None:
    X, y = _complaints_drive_risk(n=600)
    result = cross_validate(X, y, ChurnModel(**FAST), folds=3)
    summary = result.summary()
    for key in ("roc_auc", "ece", "brier", "baseline_xgboost_roc_auc", "baseline_logistic_roc_auc"):
        assert 0.0 <= summary[key] <= 1.0
    assert len(summary["chosen"]) == 3
    assert summary["chosen"][0]["max_depth"] == 3 and summary["chosen"][0]["trials"] == 0
    assert summary["roc_auc"] > 0.75


# --------------------------------------------------------------------- training helpers
def test_time_split_keeps_a_label_horizon_between_parts() -> None:
    months = pd.Series(pd.date_range("2025-01-01", periods=12, freq="MS").repeat(3))
    split = time_split(months, horizon_days=90)
    assert split.valid is not None
    train, valid, test = (months.iloc[p] for p in (split.train, split.valid, split.test))
    assert test.unique().tolist() == [pd.Timestamp("2025-12-01")]
    assert valid.unique().tolist() == [pd.Timestamp("2025-09-01")]
    assert train.max() == pd.Timestamp("2025-06-01")
    assert (valid.min() - train.max()).days >= 90 and (test.min() - valid.max()).days >= 90
    no_gap = time_split(months)
    assert no_gap.valid is not None
    assert months.iloc[no_gap.valid].unique().tolist() == [pd.Timestamp("2025-11-01")]
    with pytest.raises(NotReadyError, match="snapshot"):
        time_split(months.head(9), horizon_days=90)


def test_catalog_sentences_fall_back_to_the_column_name() -> None:
    from features.catalog import VIEWS

    assert catalog_sentence("not_a_catalog_feature", 3) == "not_a_catalog_feature = 3"
    worded = [f for view in VIEWS.values() for f in view.features if f.reason]
    if worded:
        entry = worded[0]
        assert catalog_sentence(entry.name, 3) == entry.sentence(3)
        assert catalog_sentence(entry.name, float("nan")) == f"{entry.description}: missing"
        stored = catalog_templates([entry.name, "not_a_catalog_feature"])
        assert list(stored) == [entry.name]
        assert template_sentence(stored)(entry.name, 3) == entry.sentence(3)


def test_evaluate_budget_grows_with_the_table_and_folds_are_checked(tmp_path: Path) -> None:
    from loyal.errors import LoyalError
    from training.churn import DEFAULTS, default_budget, evaluate_table

    assert default_budget(3_000) == DEFAULTS.evaluate_budget_seconds == 60.0
    assert default_budget(45_000) == pytest.approx(4.5 * DEFAULTS.evaluate_budget_seconds)
    path = tmp_path / "extract.csv"
    _extract().to_csv(path, index=False)
    with pytest.raises(LoyalError, match="--folds must be between 2 and 20"):
        evaluate_table(path, "customerID", "Churn", folds=1)


def test_the_churn_sections_model_settings_default_to_the_models_own() -> None:
    from loyal.settings import ChurnSettings

    configured = ChurnSettings().model_params()
    own = ChurnModel().get_params()
    searched = ("candidates", "search_space")  # None in the model: read from the section
    assert all(own[name] is None for name in searched)
    plain = {name: value for name, value in configured.items() if name not in searched}
    assert plain == {name: own[name] for name in plain}


def test_the_churn_search_space_comes_from_the_section_and_is_checked() -> None:
    from loyal.errors import ConfigError
    from loyal.settings import ChurnSettings, load_settings

    stumps = {"max_depth": 1, "learning_rate": 0.2, "min_child_weight": 1.0, "reg_lambda": 1.0}
    settings = load_settings(churn={"candidates": [stumps]})
    model = ChurnModel(**settings.churn.model_params(), search_trials=2)
    tried_first = model._candidates()
    assert tried_first[1:] == [{**stumps, "subsample": 0.8, "colsample_bynode": 0.8}]
    assert len(ChurnModel()._candidates()) == 1 + len(ChurnSettings().candidates)
    with pytest.raises(ConfigError, match=r"churn\.search_space: .*max_depth: a range needs"):
        load_settings(churn={"search_space": {"max_depth": [4, 2]}})
    with pytest.raises(ConfigError, match=r"churn\.candidates\.0\.max_depth"):
        load_settings(churn={"candidates": [{"learning_rate": 0.1}]})
