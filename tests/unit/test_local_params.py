"""Query parameters of the local server: flags, time values, unknown names."""

from __future__ import annotations

import math

import pytest

from es_inference.local._errors import EsError
from es_inference.local._params import (
    bool_param,
    check_params,
    format_time_value,
    parse_time_value,
)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("30s", 30.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("0", 0.0),
        ("-1", math.inf),
        ("10000micros", 0.01),
    ],
)
def test_time_values_parse(raw: str, seconds: float) -> None:
    assert parse_time_value(raw, "timeout") == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("30", "unit is missing or unrecognized"),
        ("soon", "unit is missing or unrecognized"),
        ("-5s", "negative durations are not supported"),
    ],
)
def test_bad_time_values_name_the_setting(raw: str, problem: str) -> None:
    with pytest.raises(EsError) as info:
        parse_time_value(raw, "timeout")
    assert info.value.error_type == "illegal_argument_exception"
    assert info.value.reason == (
        f"failed to parse setting [timeout] with value [{raw}] as a time value: "
        f"{problem}"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (30, "30s"),
        (0.3, "300ms"),
        (90, "1.5m"),
        (2.25, "2.2s"),
        (0, "0s"),
        (7200, "2h"),
        (math.inf, "-1"),
    ],
)
def test_time_values_print_like_elasticsearch(seconds: float, text: str) -> None:
    assert format_time_value(seconds) == text


def test_flags() -> None:
    assert bool_param({"force": ""}, "force") is True
    assert bool_param({"force": "false"}, "force") is False
    assert bool_param({}, "force", default=True) is True
    with pytest.raises(EsError):
        bool_param({"force": "yes"}, "force")


def test_unknown_parameters() -> None:
    check_params("/p", {"pretty": "", "timeout": "1s"}, ["timeout"])
    with pytest.raises(EsError) as info:
        check_params("/p", {"bogus": "1"}, [])
    assert info.value.reason == "request [/p] contains unrecognized parameter: [bogus]"
