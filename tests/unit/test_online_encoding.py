"""The bulk online load encodes values exactly as Feast's protobuf `Value` serializes them."""

from __future__ import annotations

import pyarrow as pa
import pytest
from feast.protos.feast.types.Value_pb2 import Value
from feast.types import Bool, Float64, Int64, String

from features.online_load import encode_column

pytestmark = pytest.mark.unit


def test_doubles_encode_as_feast_values_and_missing_ones_as_empty() -> None:
    numbers = [0.0, 1.5, -3.25, 1e300, 5e-324, None, float("nan")]
    values, texts = encode_column(pa.chunked_array([numbers]), Float64)
    expected = [Value(double_val=x).SerializeToString() for x in numbers[:5]] + [b"", b""]
    assert values.tolist() == expected
    assert texts.tolist() == [str(x) for x in numbers[:5]] + [None, None]


def test_int64s_encode_as_varints_negatives_included() -> None:
    numbers = [0, 1, 127, 128, 300, 2**40, 2**63 - 1, -1, -(2**63), None]
    values, texts = encode_column(pa.chunked_array([numbers], type=pa.int64()), Int64)
    expected = [Value(int64_val=x).SerializeToString() for x in numbers[:-1]] + [b""]
    assert values.tolist() == expected
    assert texts.tolist() == [str(x) for x in numbers[:-1]] + [None]


def test_bools_and_strings_encode_as_feast_values() -> None:
    flags, _ = encode_column(pa.chunked_array([[True, False, None]]), Bool)
    words, texts = encode_column(pa.chunked_array([["north", "", "é", None]]), String)
    assert flags.tolist() == [
        Value(bool_val=True).SerializeToString(),
        Value(bool_val=False).SerializeToString(),
        b"",
    ]
    assert words.tolist() == [
        Value(string_val=w).SerializeToString() for w in ["north", "", "é"]
    ] + [b""]
    assert texts.tolist() == ["north", "", "é", None]


def test_entity_keys_are_feast_serialized_keys() -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey

    from features.online_load import entity_keys

    ids = ["C0000001", "C12", "", "é-42"]
    expected = [
        serialize_entity_key(
            EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=c)]),
            entity_key_serialization_version=3,
        )
        for c in ids
    ]
    assert entity_keys(ids, 3) == expected
