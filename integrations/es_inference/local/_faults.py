"""Injected faults and Elasticsearch-style rate limiting for inference requests.

A :class:`FaultConfig` describes what may go wrong; the server turns it into a
:class:`FaultPlan` that draws, for each inference request, an added latency and at
most one fault. The draws come from one seeded generator, so a given seed and a
given order of requests always produce the same faults.

Fault kinds (the names recorded in the request log):

``429``
    HTTP 429 ``es_rejected_execution_exception`` with a ``Retry-After`` header: the
    rejection Elasticsearch sends when a thread pool queue is full.
``timeout``
    ``timeout_exception`` "Request timed out waiting to be sent after [30s]": the
    request waited too long in Elasticsearch's rate-limit queue (500 before 9.0,
    429 from 9.0).
``throttle``
    HTTP 500 ``exception`` wrapping Bedrock's ``throttling_exception``, which is how
    Elasticsearch reports AWS throttling (it does not pass the 429 through).
``503``
    HTTP 503 ``cluster_block_exception``, as a cluster that has not recovered yet
    answers.
``reset``
    The connection is closed without a response, with a TCP RST where possible.
``truncate``
    The response head announces the full ``Content-Length`` but only part of the
    body is sent before the connection closes.
``rate_limit_timeout``
    Not drawn: produced by :attr:`FaultConfig.rate_limit` when a request waited
    longer than the queue timeout.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

__all__ = ["FAULT_KINDS", "FaultConfig", "FaultPlan", "RateLimiter"]

#: Fault kinds a plan can draw, in the order their probabilities are stacked.
FAULT_KINDS = ("reset", "truncate", "429", "timeout", "throttle", "503")


@dataclass
class FaultConfig:
    """What may go wrong with inference requests (``POST`` and ``_stream`` only).

    Probabilities are per request, between 0 and 1, and their sum must not exceed 1:
    each request gets at most one fault.

    Attributes:
        latency_ms: Latency of every inference request, counted from the arrival of
            its bytes (or its exit from the rate-limit queue), so the server's own
            work is part of it; waiting blocks no other request.
        latency_jitter_ms: Extra delay drawn uniformly from ``[0, jitter]``.
        p_429: Probability of a 429 ``es_rejected_execution_exception``.
        p_timeout: Probability of a queue ``timeout_exception`` (500 on 8.x, 429
            from 9.0).
        p_throttle: Probability of a 500 wrapping a Bedrock ``throttling_exception``.
        p_503: Probability of a 503 ``cluster_block_exception``.
        p_reset: Probability of closing the connection without any response.
        p_truncate: Probability of sending only part of the response body.
        seed: Seed of the fault draws; ``None`` draws from fresh entropy.
        rate_limit: Enforce each endpoint's ``rate_limit.requests_per_minute``.
        queue_timeout_s: Longest wait in the rate-limit queue before a request fails
            with ``timeout_exception`` (a request's own ``timeout`` takes precedence).

    Example:
        >>> FaultConfig(p_429=0.1, latency_ms=20, seed=7)  # doctest: +ELLIPSIS
        FaultConfig(latency_ms=20, ...)
    """

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    p_429: float = 0.0
    p_timeout: float = 0.0
    p_throttle: float = 0.0
    p_503: float = 0.0
    p_reset: float = 0.0
    p_truncate: float = 0.0
    seed: int | None = None
    rate_limit: bool = False
    queue_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("latency_ms", "latency_jitter_ms", "queue_timeout_s"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"{name} must not be negative, got {getattr(self, name)}"
                )
        total = 0.0
        for kind in FAULT_KINDS:
            value = self.probability(kind)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"p_{kind} must be between 0 and 1, got {value}")
            total += value
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault probabilities add up to {total:.3f}, more than 1")

    def probability(self, kind: str) -> float:
        """The probability of fault ``kind`` (one of :data:`FAULT_KINDS`)."""
        value: float = getattr(self, f"p_{kind}")
        return value

    @property
    def injects(self) -> bool:
        """Whether any latency or fault is configured."""
        return (
            self.latency_ms > 0
            or self.latency_jitter_ms > 0
            or any(self.probability(kind) > 0 for kind in FAULT_KINDS)
        )


class FaultPlan:
    """Draws latency and faults for successive requests from one seeded generator.

    Args:
        config: The fault configuration.
    """

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._random = random.Random(config.seed)
        self._lock = threading.Lock()
        self._thresholds: list[tuple[float, str]] = []
        cumulative = 0.0
        for kind in FAULT_KINDS:
            p = config.probability(kind)
            if p > 0:
                cumulative += p
                self._thresholds.append((cumulative, kind))

    def draw(self) -> tuple[float, str | None]:
        """The next request's added delay in seconds and fault kind (or ``None``)."""
        config = self.config
        if not config.injects:
            return 0.0, None
        with self._lock:
            roll = self._random.random()
            jitter = self._random.random() * config.latency_jitter_ms
        fault = next((kind for limit, kind in self._thresholds if roll < limit), None)
        return (config.latency_ms + jitter) / 1000.0, fault


class RateLimiter:
    """Per-endpoint pacing at ``requests_per_minute``, like Elasticsearch's sender.

    Elasticsearch queues outgoing provider requests per endpoint and releases them
    through a token bucket. This emulation holds at most one token, so requests
    leave evenly spaced at ``60 / requests_per_minute`` seconds; a request whose turn
    would come later than its timeout waits out the timeout and fails instead (it
    does not take a slot from the requests behind it).

    Not thread-safe: it is used from the server's event loop only.
    """

    def __init__(self) -> None:
        self._next: dict[str, float] = {}

    def reserve(
        self, key: str, requests_per_minute: int, now: float, timeout: float
    ) -> float | None:
        """Reserve the next slot: the wait in seconds, or ``None`` if it is too late."""
        interval = 60.0 / max(requests_per_minute, 1)
        start = max(self._next.get(key, now), now)
        wait = start - now
        if wait > timeout:
            return None
        self._next[key] = start + interval
        return wait

    def forget(self, key: str) -> None:
        """Drop the state of a deleted endpoint."""
        self._next.pop(key, None)
