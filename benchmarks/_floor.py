"""The parsing floor: the least CPU that turning answers into float32 can take.

Answers captured from the server are parsed in this process with the fastest JSON
parser available and converted to float32 with numpy, nothing else: no HTTP, no
checks. A client cannot spend less than this on the same bytes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    import orjson

    loads: Callable[[bytes], Any] = orjson.loads
    PARSER = f"orjson {orjson.__version__}"
except ImportError:  # pragma: no cover - orjson is in the test extra
    loads = json.loads
    PARSER = "json (standard library)"


def _as_array(body: bytes) -> np.ndarray:
    rows = loads(body)["text_embedding"]
    return np.asarray([row["embedding"] for row in rows], dtype=np.float32)


def _into_rows(body: bytes) -> np.ndarray:
    rows = loads(body)["text_embedding"]
    out = np.empty((len(rows), len(rows[0]["embedding"])), dtype=np.float32)
    for i, row in enumerate(rows):
        out[i] = row["embedding"]
    return out


_WAYS = (_as_array, _into_rows)


@dataclass(frozen=True)
class Floor:
    """CPU seconds per million floats, and what they were measured on."""

    seconds_per_mfloat: float
    bodies: int
    floats: int
    bytes_per_float: float


def measure(bodies: list[bytes], min_seconds: float = 0.3) -> Floor:
    """Time the fastest way over ``bodies``; repeated until ``min_seconds`` of CPU."""
    floats = sum(_as_array(body).size for body in bodies)
    best = float("inf")
    for way in _WAYS:
        for body in bodies[:2]:
            way(body)  # warm caches and code paths
        rounds = 0
        started = time.process_time()
        while True:
            for body in bodies:
                way(body)
            rounds += 1
            spent = time.process_time() - started
            if spent >= min_seconds:
                break
        best = min(best, spent / (rounds * floats) * 1e6)
    size = sum(len(body) for body in bodies)
    return Floor(best, len(bodies), floats, size / floats)
