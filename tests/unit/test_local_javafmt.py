"""How the local server prints values the way Elasticsearch's Java code does."""

from __future__ import annotations

import pytest

from es_inference.local._javafmt import (
    REDACTED,
    copied_capacity,
    grown_capacity,
    hash_order,
    java_double,
    java_list,
    java_str,
    masking,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (1.0, "1.0"),
        (1.5, "1.5"),
        (100.0, "100.0"),
        (0.001, "0.001"),
        (1e-5, "1.0E-5"),
        (0.00012, "1.2E-4"),
        (1e7, "1.0E7"),
        (12345678.9, "1.23456789E7"),
        (-2.5e-4, "-2.5E-4"),
    ],
)
def test_doubles_print_like_double_to_string(value: float, text: str) -> None:
    assert java_double(value) == text


def test_hash_map_order_follows_java_buckets() -> None:
    # java.util.HashMap puts "bar" (bucket 2) before "foo" (bucket 7).
    assert hash_order(["foo", "bar"], 16) == ["bar", "foo"]
    assert java_str({"foo": 1, "bar": "x"}) == "{bar=x, foo=1}"


def test_capacities_grow_like_hash_map() -> None:
    assert [grown_capacity(n) for n in (0, 12, 13, 24, 25)] == [16, 16, 32, 32, 64]
    assert [copied_capacity(n) for n in (1, 3, 4, 12)] == [2, 8, 8, 32]


def test_nested_values() -> None:
    value = {"a": [1, True, None], "b": {"c": 0.5}}
    assert java_str(value) == "{a=[1, true, null], b={c=0.5}}"
    assert java_list(["x", 2]) == "[x, 2]"


def test_masked_values_print_redacted() -> None:
    with masking(["s3cret"]):
        assert java_str({"key": "s3cret"}) == "{key=" + REDACTED + "}"
        assert java_str("s3cret-but-longer") == "s3cret-but-longer"
    assert java_str("s3cret") == "s3cret"
