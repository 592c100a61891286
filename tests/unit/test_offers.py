"""Offer catalog: the shipped catalog, conditions, templates and every validation error named."""

from __future__ import annotations

import ast
import copy
import math
from pathlib import Path
from typing import Any

import pytest

from models import nba, offers
from models.offers import (
    DEFAULT_CATALOG_PATH,
    OPS,
    CatalogError,
    Condition,
    TemplateError,
    TemplateFunction,
    Values,
    Vocabulary,
    catalog_from_dict,
    catalog_from_yaml,
    format_money,
    format_percent,
    load_catalog,
    parse_template,
    register_function,
)

pytestmark = pytest.mark.unit


def offer(**overrides: Any) -> dict[str, Any]:
    """A minimal valid offer as plain data."""
    base: dict[str, Any] = {
        "id": "o1",
        "kind": "cross_sell",
        "product_id": "savings",
        "channels": ["web"],
        "cost": 1,
        "value": {"model": "fixed", "amount": 50},
        "p_accept": 0.1,
        "message": "Open savings.",
    }
    base.update(overrides)
    return base


def catalog(*offer_dicts: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A minimal catalog as plain data."""
    data: dict[str, Any] = {"constants": {"high_yield_savings_rate": 0.041}}
    data.update(top)
    data["offers"] = list(offer_dicts) or [offer()]
    return data


# --- the shipped catalog -------------------------------------------------------------------------


def test_shipped_catalog_loads_next_to_the_code() -> None:
    loaded = load_catalog()
    assert DEFAULT_CATALOG_PATH.parent == Path(offers.__file__).parent
    assert len(loaded.offers) >= 10
    assert loaded.offer("hys_move_idle_cash") is not None
    assert loaded.offer("mortgage_refi") is not None


def test_shipped_catalog_uses_only_features_of_the_feature_catalog() -> None:
    from features.catalog import VIEWS

    names = frozenset(f.name for view in VIEWS.values() for f in view.features)
    if not names:
        pytest.skip("the feature catalog is still empty")
    load_catalog(vocabulary=Vocabulary(names))  # raises CatalogError naming any unknown field


def test_default_feature_names_are_served_by_the_feature_catalog() -> None:
    from features.catalog import VIEWS

    names = {f.name for view in VIEWS.values() for f in view.features}
    if not names:
        pytest.skip("the feature catalog is still empty")
    assert names >= offers.DEFAULT_FEATURE_NAMES


def test_shipped_catalog_has_an_als_offer_for_every_sample_bank_product() -> None:
    loaded = load_catalog()
    for product in offers.SAMPLE_BANK_PRODUCTS:
        assert any(o.trigger == "als" for o in loaded.selling(product)), product


def test_cold_start_offers_exist_for_the_self_service_channels() -> None:
    loaded = load_catalog()
    for channel in ("atm", "web", "mobile"):
        assert any(o.cold_start and channel in o.channels for o in loaded.offers), channel


# --- no eval: the operator table is explicit -----------------------------------------------------


def test_operators_are_an_explicit_table() -> None:
    assert set(OPS) == {"==", "!=", "<", "<=", ">", ">=", "in", "not_in", "is_true", "is_false"}
    assert all(callable(fn) for fn in OPS.values())


@pytest.mark.parametrize("module", [offers, nba])
def test_no_eval_exec_or_compile_in_the_policy_code(module: Any) -> None:
    tree = ast.parse(Path(module.__file__).read_text())
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not called & {"eval", "exec", "compile", "__import__"}


def test_a_condition_never_evaluates_code_in_values() -> None:
    cond = Condition(field="region", op="==", value="__import__('os').system('echo hi')")
    held, _ = cond.evaluate({"region": "north"})
    assert held is False


# --- conditions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "actual", "expected"),
    [
        ("==", "north", "north", True),
        ("==", "north", "south", False),
        ("!=", "north", "south", True),
        ("<", 10, 5, True),
        ("<", 10, 10, False),
        ("<=", 10, 10, True),
        (">", 10, 11, True),
        (">", 10, 10, False),
        (">=", 10, 10, True),
        ("in", ["north", "east"], "east", True),
        ("in", ["north", "east"], "west", False),
        ("not_in", ["north", "east"], "west", True),
        ("not_in", ["north", "east"], "north", False),
        ("is_true", None, True, True),
        ("is_true", None, 0, False),
        ("is_false", None, False, True),
        ("is_false", None, 1, False),
    ],
)
def test_each_operator(op: str, value: Any, actual: Any, expected: bool) -> None:
    held, words = Condition(field="x", op=op, value=value).evaluate({"x": actual})
    assert held is expected
    assert words.startswith("x ")


@pytest.mark.parametrize("missing", [None, math.nan, float("nan")])
@pytest.mark.parametrize("op", ["<", ">=", "!=", "not_in", "is_false"])
def test_missing_values_never_satisfy_a_condition(missing: Any, op: str) -> None:
    value = {"not_in": [1], "is_false": None}.get(op, 1)
    held, words = Condition(field="x", op=op, value=value).evaluate({"x": missing})
    assert held is False
    assert words == "x is missing"


def test_field_ref_with_offset_compares_two_named_values() -> None:
    cond = Condition(field="rate_mortgage", op=">", field_ref="mortgage_rate_now", offset=0.01)
    values = Values({"rate_mortgage": 0.07}, {"mortgage_rate_now": 0.055})
    held, words = cond.evaluate(values)
    assert held
    assert "mortgage_rate_now 0.055 + 0.01" in words
    assert not cond.evaluate(Values({"rate_mortgage": 0.06}, {"mortgage_rate_now": 0.055}))[0]


def test_says_renders_the_fact_in_words_when_it_holds() -> None:
    cond = Condition(field="idle_cash", op=">=", value=2000, says="keeps {idle_cash:$} idle")
    assert cond.evaluate({"idle_cash": 5000.0}) == (True, "keeps $5,000 idle")
    held, words = cond.evaluate({"idle_cash": 100.0})
    assert not held
    assert words == "idle_cash = 100 not >= 2,000"


def test_comparing_incompatible_types_fails_instead_of_raising() -> None:
    held, words = Condition(field="x", op="<", value=3).evaluate({"x": "north"})
    assert not held
    assert "cannot be compared" in words


# --- templates and formats -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [(5000, "$5,000"), (5000 * 0.041, "$205"), (2000.4, "$2,000"), (12.5, "$13"), (-12.5, "-$13")],
)
def test_money_is_whole_dollars_rounded_half_up(value: float, text: str) -> None:
    assert format_money(value) == text


@pytest.mark.parametrize(
    ("value", "text"), [(0.041, "4.1%"), (0.01, "1%"), (0.065 - 0.055, "1%"), (0.12345, "12.35%")]
)
def test_percent_of_a_fraction(value: float, text: str) -> None:
    assert format_percent(value) == text


def test_template_renders_named_fields_with_formats() -> None:
    template = parse_template("{n:n} calls, {r:%} rate, {m:$} saved, {s}")
    assert template.fields == ("n", "r", "m", "s")
    text = template.render({"n": 3.0, "r": 0.041, "m": 2000.0, "s": "gold"})
    assert text == "3 calls, 4.1% rate, $2,000 saved, gold"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{a.b}", "not a plain name"),
        ("{a[0]}", "not a plain name"),
        ("{}", "not a plain name"),
        ("{a!r}", "conversions are not allowed"),
        ("{a:.2f}", "unknown format '.2f'"),
        ("{a", "malformed template"),
    ],
)
def test_malformed_templates_are_rejected(text: str, problem: str) -> None:
    with pytest.raises(TemplateError, match=problem.replace("[", r"\[").replace(".", r"\.")):
        parse_template(text)


def test_registered_functions_compute_template_fields() -> None:
    values = Values(
        {"idle_cash": 5000.0, "rate_mortgage": 0.065, "balance_mortgage": 200_000.0},
        {"high_yield_savings_rate": 0.041, "mortgage_rate_now": 0.055},
    )
    assert values.get("annual_interest") == pytest.approx(205.0)
    assert values.get("rate_drop") == pytest.approx(0.01)
    assert values.get("refi_saving") == pytest.approx(2000.0)
    assert Values({}, {"high_yield_savings_rate": 0.041}).get("annual_interest") is None


def test_a_custom_function_registry_is_validated_and_used() -> None:
    registry = dict(offers.FUNCTIONS)

    @register_function("double_idle", registry=registry)
    def double_idle(values: Any, constants: Any) -> float | None:
        idle = offers.number(values.get("idle_cash"))
        return None if idle is None else 2 * idle

    data = catalog(offer(message="{double_idle:$}"))
    with pytest.raises(CatalogError, match="unknown field 'double_idle'"):
        catalog_from_dict(data)
    loaded = catalog_from_dict(data, vocabulary=Vocabulary(functions=registry))
    assert loaded.offers[0].template.render(Values({"idle_cash": 10.0}, {}, registry)) == "$20"
    assert isinstance(registry["double_idle"], TemplateFunction)


# --- validation errors: each names the offer and the field ---------------------------------------


def _error(data: Any, **kwargs: Any) -> str:
    with pytest.raises(CatalogError) as info:
        catalog_from_dict(data, **kwargs)
    return str(info.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {
                "eligibility": [
                    {"field": "idle_cash", "op": ">", "value": 1},
                    {"field": "idle_cash", "op": "=~", "value": 1},
                ]
            },
            "offer 'o1' condition 2 (op): unknown operator '=~' (allowed: ==, !=, <, <=, >, >=, "
            "in, not_in, is_true, is_false)",
        ),
        (
            {"channels": ["web", "fax"]},
            "offer 'o1' channels: 'fax' not among the catalog's channels (atm, web, mobile, "
            "call_center, branch, email)",
        ),
        ({"channels": ["web", "f ax"]}, "offer 'o1' channels #2: String should match pattern"),
        ({"cost": -5}, "offer 'o1' cost: Input should be greater than or equal to 0 (got -5)"),
        ({"p_accept": 1.5}, "offer 'o1' p_accept: Input should be less than or equal to 1"),
        ({"kind": "bribe"}, "offer 'o1' kind: Input should be 'cross_sell'"),
        ({"chanels": ["web"]}, "offer 'o1': unknown key 'chanels'"),
        ({"message": None}, "offer 'o1' message: Input should be a valid string"),
        ({"channels": []}, "offer 'o1' channels: Tuple should have at least 1 item"),
        ({"channels": ["web", "web"]}, "offer 'o1' channels: channel listed twice: web"),
        ({"id": "bad id!"}, "offer 'bad id!' id: id 'bad id!' may only hold"),
        ({"product_id": None}, "offer 'o1': a cross_sell offer needs a product_id"),
        ({"kind": "service", "trigger": "als"}, "offer 'o1': trigger 'als' needs a cross_sell"),
        ({"value": {"model": "magic"}}, "offer 'o1' value: Input tag 'magic'"),
        ({"value": {"model": "fixed", "amount": -1}}, "offer 'o1' value amount: Input should be"),
        ({"segment_weights": {"savers": -1}}, "offer 'o1' segment_weights savers: Input should"),
        ({"contact": {"cooldown_days": -1}}, "offer 'o1' contact cooldown_days: Input should be"),
        ({"min_tier": "diamond"}, "offer 'o1' min_tier: Input should be 'platinum'"),
        (
            {"message": "You keep {idle_cashh:$}"},
            "offer 'o1' message: unknown field 'idle_cashh' (not a feature, score, constant, "
            "product field or registered function; did you mean 'idle_cash'?)",
        ),
        (
            {"message": "{idle_cash:.2f}"},
            "offer 'o1' message: field {idle_cash}: unknown format '.2f' "
            "(allowed: '', '$', '%', 'n')",
        ),
        (
            {"message": "{idle_cash"},
            "offer 'o1' message: malformed template (expected '}' before end of string)",
        ),
        (
            {"eligibility": [{"field": "idel_cash", "op": ">", "value": 1}]},
            "offer 'o1' condition 1 (field): unknown field 'idel_cash'",
        ),
        (
            {"eligibility": [{"field": "rate_mortgage", "op": ">", "field_ref": "market_rate"}]},
            "offer 'o1' condition 1 (field_ref): unknown field 'market_rate'",
        ),
        (
            {"eligibility": [{"field": "x", "op": ">", "value": 1, "says": "{nope}"}]},
            "offer 'o1' condition 1 (field): unknown field 'x'",
        ),
        (
            {"eligibility": [{"field": "idle_cash", "op": ">", "value": 1, "says": "{nope}"}]},
            "offer 'o1' condition 1 (says): unknown field 'nope'",
        ),
        (
            {"eligibility": [{"field": "region", "op": "in", "value": "north"}]},
            "offer 'o1' condition 1: operator 'in' needs a non-empty list as value",
        ),
        (
            {"eligibility": [{"field": "holds_savings", "op": "is_true", "value": True}]},
            "offer 'o1' condition 1: operator 'is_true' takes no value or field_ref",
        ),
        (
            {"eligibility": [{"field": "idle_cash", "op": ">", "value": "lots"}]},
            "offer 'o1' condition 1: operator '>' needs a number as value, got 'lots'",
        ),
        (
            {"eligibility": [{"field": "idle_cash", "op": ">"}]},
            "offer 'o1' condition 1: operator '>' needs exactly one of value or field_ref",
        ),
        (
            {"eligibility": [{"field": "idle_cash", "op": ">", "value": 1, "offset": 2}]},
            "offer 'o1' condition 1: offset only applies with field_ref",
        ),
        (
            {"value": {"model": "margin_rate", "field": "idle_cas", "rate": 0.02}},
            "offer 'o1' value: unknown field 'idle_cas'",
        ),
        (
            {"message": "Rates fell {rate_drop:%}"},
            "offer 'o1' message: function 'rate_drop' needs constant 'mortgage_rate_now'",
        ),
        (
            {"product_id": "yacht"},
            "offer 'o1' product_id: no holdings feature 'holds_yacht'",
        ),
        (
            {"cold_start": True, "message": "You keep {idle_cash:$}"},
            "offer 'o1' message: a cold-start offer cannot use customer data, uses 'idle_cash'",
        ),
        (
            {"cold_start": True, "value": {"model": "retention"}, "kind": "retention"},
            "offer 'o1' value: a cold-start offer needs a fixed value",
        ),
    ],
)
def test_offer_errors_name_the_offer_and_the_field(change: dict[str, Any], expected: str) -> None:
    assert _error(catalog(offer(**change))).startswith(expected)


def test_duplicate_ids_are_named() -> None:
    message = _error(catalog(offer(), offer(product_id="checking"), offer(product_id="insurance")))
    assert message == "offer 'o1' id: duplicate offer id (offers #1 and #2)"


def test_an_offer_without_id_is_named_by_position() -> None:
    bad = offer()
    del bad["id"]
    assert _error(catalog(offer(), bad)) == "offer '#2' id: is required"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (["not", "a", "mapping"], "catalog: must be a mapping with 'offers', got list"),
        ({"offers": []}, "catalog offers: must be a non-empty list of offers"),
        ({"offers": ["text"]}, "catalog offers #1: must be a mapping"),
        (catalog(spend={"caps": {"diamond": 9}}), "catalog spend caps diamond: Input should be"),
        (catalog(spend={"caps": {"gold": -1}}), "catalog spend caps gold: Input should be greater"),
        (catalog(contact={"max_per_period": 0}), "catalog contact max_per_period: Input should"),
        (catalog(als={"lift_by_rank": [0]}), "catalog als lift_by_rank #1: Input should be"),
        (catalog(constants={"rate": "high"}), "catalog constants rate: Input should be a valid"),
        (
            catalog(constants={"idle_cash": 1.0}),
            "catalog constants.idle_cash: has the name of a feature",
        ),
        (catalog(constants={"tier": 1.0}), "catalog constants.tier: has the name of a score"),
        (catalog(colour="red"), "catalog: unknown key 'colour'"),
    ],
)
def test_catalog_level_errors_are_named(data: Any, expected: str) -> None:
    assert _error(data).startswith(expected)


def test_bad_yaml_is_a_catalog_error_with_its_line() -> None:
    with pytest.raises(
        CatalogError, match=r"catalog yaml: not valid YAML at line 3, column 15: mapping values"
    ):
        catalog_from_yaml("offers:\n  - id: x\n    message: a: b\n")


def test_unreadable_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="catalog file: cannot read"):
        load_catalog(tmp_path / "missing.yaml")


def test_catalog_validated_against_given_feature_names() -> None:
    data = catalog(offer(eligibility=[{"field": "churn_flag", "op": "is_true"}]))
    with pytest.raises(CatalogError, match="unknown field 'churn_flag'"):
        catalog_from_dict(data)
    names = frozenset({*offers.DEFAULT_FEATURE_NAMES, "churn_flag"})
    assert catalog_from_dict(data, vocabulary=Vocabulary(names)).offers[0].id == "o1"


def test_loading_does_not_change_the_data() -> None:
    data = catalog(offer(eligibility=[{"field": "region", "op": "in", "value": ["north"]}]))
    before = copy.deepcopy(data)
    catalog_from_dict(data)
    assert data == before


def test_every_shipped_offer_id_is_unique_and_every_message_parses() -> None:
    loaded = load_catalog()
    ids = [o.id for o in loaded.offers]
    assert len(ids) == len(set(ids))
    for o in loaded.offers:
        assert isinstance(o.template.fields, tuple)


def test_segment_weight_matches_id_name_or_words() -> None:
    o = catalog_from_dict(
        catalog(offer(segment_weights={"affluent": 1.5, "savers": 2.0, "7": 3.0}))
    ).offers[0]
    assert o.segment_weight(7, "mainstream customers") == 3.0
    assert o.segment_weight(1, "affluent savers") == pytest.approx(3.0)
    assert o.segment_weight(1, "low-balance savers") == 2.0
    assert o.segment_weight(1, "digital card users") == 1.0
    assert o.segment_weight(None, None) == 1.0


def test_a_channel_reads_churn_reasons_only_if_one_of_its_offers_can_show_them() -> None:
    def offer(
        offer_id: str, channel: str, message: str, says: str | None = None
    ) -> dict[str, object]:
        condition: dict[str, object] = {"field": "churn_probability", "op": ">=", "value": 0.1}
        if says is not None:
            condition["says"] = says
        return {
            "id": offer_id,
            "kind": "service",
            "channels": [channel],
            "cost": 1,
            "p_accept": 0.5,
            "value": {"model": "fixed", "amount": 10},
            "eligibility": [condition],
            "message": message,
        }

    catalog = catalog_from_dict(
        {
            "offers": [
                offer("plain", "atm", "Hello."),
                offer("in_message", "web", "Because {top_churn_reason}."),
                offer("in_says", "email", "Hi.", says="risk: {top_churn_reason}"),
            ]
        }
    )
    assert not catalog.reads_churn_reasons("atm")
    assert catalog.reads_churn_reasons("web") and catalog.reads_churn_reasons("email")
    assert not catalog.reads_churn_reasons("branch")  # no offer there at all


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("tier", "callers may never set it"),
        ("clv", "callers may never set it"),
        ("segment_name", "callers may never set it"),
        ("consent_marketing", "callers may never set it"),
        ("holds_mortgage", "callers may never set it"),
        ("shoe_size", "not an online feature name"),
    ],
)
def test_catalog_context_fields_exclude_scores_consent_and_unknown_names(
    name: str, problem: str
) -> None:
    with pytest.raises(CatalogError, match=f"catalog context.{name}: .*{problem}"):
        catalog_from_dict(catalog(offer(), context={name: {"type": "number"}}))
    fine = catalog_from_dict(catalog(offer(), context={"idle_cash": {"type": "number", "min": 0}}))
    assert fine.context["idle_cash"].check(-1) == "must be at least 0"
    assert fine.context["idle_cash"].check(10) is None
