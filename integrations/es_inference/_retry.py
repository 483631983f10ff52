"""When to send a failed request again, and how fast to send at all.

Both are pure decisions; the sync and async transports only differ in how they wait.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass

from ._errors import ApiError, EsInferenceError, TransportError

logger = logging.getLogger("es_inference.retry")

#: The longest wait before the one retry of a ``first_contact`` failure.
FIRST_CONTACT_WAIT = 0.1


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter for requests that may succeed later.

    Retried: 429, 502, 503, 504, connection errors, timeouts, bodies cut off,
    ``timeout_exception`` and 500s caused by upstream throttling or a transient
    upstream failure. Never: other 4xx (validation, auth), other 500s, TLS failures
    and answers that do not fit the request. The wait before retry *n* is drawn
    uniformly from ``[0, min(max_backoff, initial_backoff * 2 ** (n - 1))]``; a
    ``Retry-After`` header sets the least wait, up to ``max_backoff``. A failure to
    reach a cluster that never answered yet (``first_contact``) is retried once
    at most, within ``FIRST_CONTACT_WAIT``: a wrong URL fails in well under a
    second, while a cluster that answered before and restarts is waited for.

    Attributes:
        max_attempts: Attempts in all, the first included (1 disables retries);
            default 8.
        initial_backoff: Upper bound of the first wait, in seconds; default 0.25.
        max_backoff: Upper bound of any one wait; default 20.
        max_elapsed: No retry starts after this many seconds since the first
            attempt; default 300.
    """

    max_attempts: int = 8
    initial_backoff: float = 0.25
    max_backoff: float = 20.0
    max_elapsed: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(
                f"max_attempts must be at least 1, got {self.max_attempts}"
            )
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.max_elapsed < 0:
            raise ValueError("backoff and elapsed limits must not be negative")

    def delay(
        self,
        attempt: int,
        error: EsInferenceError,
        elapsed: float,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up."""
        if not error.retryable or attempt >= self.max_attempts:
            return None
        ceiling = min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))
        if isinstance(error, TransportError) and error.first_contact:
            if attempt > 1:
                return None
            ceiling = min(ceiling, FIRST_CONTACT_WAIT)
        wait = (rng or random).uniform(0, ceiling)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_backoff))
        if elapsed + wait > self.max_elapsed:
            return None
        return wait


NO_RETRY = RetryPolicy(max_attempts=1)


def is_throttle(error: BaseException) -> bool:
    """True for errors that mean "slow down" rather than "try again"."""
    if not isinstance(error, ApiError):
        return False
    if error.status == 429 or error.error_type == "timeout_exception":
        return True
    cause = str((error.caused_by or {}).get("type", "")).lower()
    return "throttl" in cause or "throttl" in error.reason.lower()


class RateLimiter:
    """A token bucket shared by every call to one endpoint in this process.

    ``reserve()`` books the next send slot and says how long to wait for it, so
    callers are served in order. After a throttling answer the rate drops by a third
    and then recovers a little with each success.
    """

    def __init__(self, requests_per_minute: float, burst: float = 1.0) -> None:
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        self.configured_rate = requests_per_minute / 60.0
        self.rate = self.configured_rate
        self.burst = max(1.0, burst)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    @property
    def requests_per_minute(self) -> float:
        """The pace in force now."""
        return self.rate * 60.0

    def reserve(self) -> float:
        """Take one token; return the seconds to wait before sending."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(
                self.burst, self._tokens + (now - self._stamp) * self.rate
            )
            self._stamp = now
            self._tokens -= 1.0
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.rate

    def on_throttle(self) -> None:
        """Slow down after Elasticsearch or the provider said "too many"."""
        with self._lock:
            floor = self.configured_rate / 16
            self.rate = max(floor, self.rate * (2 / 3))

    def on_success(self) -> None:
        """Recover towards the configured rate."""
        if self.rate < self.configured_rate:
            with self._lock:
                step = self.configured_rate / 50
                self.rate = min(self.configured_rate, self.rate + step)


_limiters: dict[tuple[str, str], RateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_limiter(
    url: str, inference_id: str, requests_per_minute: float
) -> RateLimiter:
    """The process-wide limiter of one endpoint, created on first use."""
    key = (url, inference_id)
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None or limiter.configured_rate * 60 != requests_per_minute:
            limiter = RateLimiter(requests_per_minute)
            _limiters[key] = limiter
        return limiter


def log_retry(
    request_desc: str, attempt: int, error: BaseException, delay: float
) -> None:
    """The WARNING line written before every retry."""
    logger.warning(
        "retrying %s (attempt %d failed: %s) in %.2fs",
        request_desc,
        attempt,
        error,
        delay,
    )


class Attempts:
    """The pacing and retry decisions of one request, shared by every sender.

    Senders differ only in how they wait: they call :meth:`next_wait` before each
    attempt, :meth:`failed` after a failure (a delay, or ``None`` to give up) and
    :meth:`succeeded` once it worked. ``limiter`` may change between attempts, e.g.
    when the endpoint was ensured again.
    """

    def __init__(
        self,
        where: str,
        retry: RetryPolicy,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.where = where
        self.retry = retry
        self.limiter = limiter
        self.count = 0
        self.started = time.monotonic()

    def next_wait(self) -> float:
        """Count a new attempt; seconds to wait for its pacing slot."""
        self.count += 1
        return self.limiter.reserve() if self.limiter is not None else 0.0

    def failed(
        self, error: EsInferenceError, *, may_retry: bool = True
    ) -> float | None:
        """Slow down after throttling; the wait before retrying, or ``None``."""
        if self.limiter is not None and is_throttle(error):
            self.limiter.on_throttle()
        if not may_retry:
            return None
        elapsed = time.monotonic() - self.started
        delay = self.retry.delay(self.count, error, elapsed)
        if delay is not None:
            log_retry(self.where, self.count, error, delay)
        return delay

    def succeeded(self) -> None:
        """Let the pacing recover towards the configured rate."""
        if self.limiter is not None:
            self.limiter.on_success()
