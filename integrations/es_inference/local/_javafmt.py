"""Render values the way Elasticsearch's Java code prints them in error messages.

Several Elasticsearch messages embed a parsed request map with Java's ``toString``:
``{key=value, other=[a, b]}``. The maps come from the JSON parser as
``java.util.HashMap`` objects, so their keys appear in hash-bucket order rather than
in request order. Doubles print as ``Double.toString`` does (``1.0E-5``, ``100.0``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal
from typing import Any

_LOAD_FACTOR = 0.75

#: What a secret value is printed as.
REDACTED = "::es_redacted::"

_masked: ContextVar[frozenset[str]] = ContextVar("masked", default=frozenset())


@contextmanager
def masking(secrets: Collection[str]) -> Iterator[None]:
    """Print these string values as :data:`REDACTED` while the block runs.

    Elasticsearch echoes parsed request values in some messages (unknown settings,
    invalid values); the local server never echoes a request's secrets.
    """
    token = _masked.set(frozenset(s for s in secrets if s))
    try:
        yield
    finally:
        _masked.reset(token)


def _string_hash(text: str) -> int:
    """Java's ``String.hashCode`` over UTF-16 code units, as an unsigned 32-bit int."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h


def _bucket(key: str, capacity: int) -> int:
    h = _string_hash(key)
    return (h ^ (h >> 16)) & (capacity - 1)


def grown_capacity(size: int) -> int:
    """Table size of a default ``HashMap`` after ``size`` insertions."""
    capacity = 16
    while size > capacity * _LOAD_FACTOR:
        capacity *= 2
    return capacity


def copied_capacity(size: int) -> int:
    """Table size of ``new HashMap<>(other)`` for a source map of ``size`` entries."""
    wanted = int(size / _LOAD_FACTOR + 1.0)
    capacity = 1
    while capacity < wanted:
        capacity *= 2
    return max(capacity, 1)


def hash_order(keys: Iterable[str], capacity: int) -> list[str]:
    """Keys in the iteration order of a Java ``HashMap`` with ``capacity`` buckets.

    Keys sharing a bucket keep their insertion order, which the stable sort gives.
    """
    return sorted(keys, key=lambda key: _bucket(key, capacity))


def java_double(value: float) -> str:
    """Format ``value`` like ``Double.toString``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e7:
        text = repr(value)
        return text if "." in text else text + ".0"
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    numerals = "".join(str(d) for d in digits).rstrip("0") or "0"
    power = len(digits) + exponent - 1
    mantissa = numerals[0] + "." + (numerals[1:] or "0")
    return ("-" if sign else "") + mantissa + "E" + str(power)


def java_str(value: Any, *, capacity: int | None = None) -> str:
    """Format a parsed JSON value like Java's ``String.valueOf`` on the parsed object.

    Args:
        value: A value as produced by a JSON parser.
        capacity: For a mapping, the bucket count of the Java map it stands for;
            by default the capacity a parser would have grown it to.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return java_double(value)
    if isinstance(value, str):
        return REDACTED if value in _masked.get() else value
    if isinstance(value, Mapping):
        size = capacity if capacity is not None else grown_capacity(len(value))
        keys = hash_order([str(k) for k in value], size)
        return "{" + ", ".join(f"{k}={java_str(value[k])}" for k in keys) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(java_str(v) for v in value) + "]"
    return str(value)


def java_list(items: Sequence[Any]) -> str:
    """Format a list like ``List.toString`` / ``Arrays.toString``."""
    return "[" + ", ".join(java_str(v) for v in items) + "]"
