"""Query-string parameters the Elasticsearch REST layer understands.

Elasticsearch rejects parameters a route does not consume, reads flags such as
``?force`` (empty value) as true, and parses durations as time values (``30s``,
``500ms``, ``2m``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from ._errors import illegal_argument

#: Parameters every route accepts.
GLOBAL_PARAMS = frozenset({"pretty", "human", "error_trace", "filter_path", "format"})

_TIME = re.compile(r"^(-?\d+(?:\.\d+)?)\s*([a-z]*)$")
_UNITS_NS = {
    "nanos": 1,
    "micros": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}
_DISPLAY_UNITS = (
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("micros", 1_000),
)


def check_params(path: str, query: Mapping[str, str], allowed: Iterable[str]) -> None:
    """Raise the 400 Elasticsearch sends for parameters the route does not use."""
    known = GLOBAL_PARAMS.union(allowed)
    unknown = [name for name in query if name not in known]
    if not unknown:
        return
    noun = "parameters" if len(unknown) > 1 else "parameter"
    listed = ", ".join(f"[{name}]" for name in unknown)
    raise illegal_argument(f"request [{path}] contains unrecognized {noun}: {listed}")


def bool_param(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    """Read a boolean flag; an empty value (``?force``) means true."""
    raw = query.get(name)
    if raw is None:
        return default
    if raw in ("", "true"):
        return True
    if raw == "false":
        return False
    raise illegal_argument(
        f"Failed to parse value [{raw}] as only [true] or [false] are allowed."
    )


def parse_time_value(raw: str, setting: str) -> float:
    """Parse an Elasticsearch time value into seconds (``-1`` means no limit).

    Raises:
        EsError: 400 ``illegal_argument_exception`` with Elasticsearch's wording.
    """
    text = raw.strip().lower()
    if text in ("-1", "0"):
        return math.inf if text == "-1" else 0.0
    match = _TIME.match(text)
    prefix = f"failed to parse setting [{setting}] with value [{raw}] as a time value"
    if match is None or match.group(2) not in _UNITS_NS:
        raise illegal_argument(f"{prefix}: unit is missing or unrecognized")
    number = float(match.group(1))
    if number < 0:
        raise illegal_argument(f"{prefix}: negative durations are not supported")
    return number * _UNITS_NS[match.group(2)] / 1e9


def format_time_value(seconds: float) -> str:
    """Print a duration like Elasticsearch's ``TimeValue.toString()`` (``30s``)."""
    if math.isinf(seconds):
        return "-1"
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    for suffix, size in _DISPLAY_UNITS:
        if nanos >= size:
            return _one_decimal(nanos / size) + suffix
    return f"{nanos}nanos"


def _one_decimal(value: float) -> str:
    whole = math.floor(value)
    tenth = math.floor(round((value - whole) * 10, 6))
    return str(whole) if tenth == 0 else f"{whole}.{tenth}"


def time_param(query: Mapping[str, str], name: str) -> float | None:
    """Read an optional time-value parameter in seconds (absent → ``None``)."""
    raw = query.get(name)
    return None if raw is None else parse_time_value(raw, name)


__all__ = [
    "GLOBAL_PARAMS",
    "bool_param",
    "check_params",
    "format_time_value",
    "parse_time_value",
    "time_param",
]
