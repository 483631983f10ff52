"""When to send a failed request again, how fast to send at all, and what to log.

The decisions are pure; the sync and async transports only differ in how they wait.

Retries are logged per request target (method and path) in stretches: a stretch
starts with a retry while no request to that target is retrying, and ends when the
last request that retried in it has finished. The first retry of a stretch is a
WARNING line, then one a minute while the stretch lasts; the others are DEBUG lines.
A stretch that had DEBUG lines ends with one WARNING that sums it up::

    POST /_inference/text_embedding/e: 87 requests retried 1,234 times in 41.3 s
    (429 ×1,000, timeout ×234); 2 of them gave up
"""

from __future__ import annotations

import collections
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from ._errors import (
    ApiError,
    ConnectionError,
    EsInferenceError,
    RequestTimeout,
    ResponseDecodeError,
    TransportError,
)

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


#: While a stretch of retries lasts, a retry is logged at WARNING once this often.
WARN_EVERY = 60.0


def failure_kind(error: BaseException) -> str:
    """A short name for what failed, for the summary of a stretch of retries."""
    if isinstance(error, ApiError):
        if error.status in (429, 502, 503, 504):
            return str(error.status)
        cause = str((error.caused_by or {}).get("type", "")) or error.error_type
        return f"{error.status} {cause}".strip()
    if isinstance(error, RequestTimeout):
        return "timeout"
    if isinstance(error, ConnectionError):
        return "connection dropped" if error.opened else "no connection"
    if isinstance(error, ResponseDecodeError):
        return "body cut off"
    return type(error).__name__


class _Stretch:
    __slots__ = (
        "active",
        "debug",
        "gave_up",
        "kinds",
        "requests",
        "retries",
        "started",
        "warned",
    )

    def __init__(self, now: float) -> None:
        self.started = now
        self.warned: float | None = None  # when a retry was last a WARNING
        self.active = self.requests = self.retries = self.debug = self.gave_up = 0
        self.kinds: collections.Counter[str] = collections.Counter()


class RetryLog:
    """Writes retry lines by stretches (see the module docstring); threads may share it.

    A request joins the stretch of its target at its first retry and leaves it when
    it ends. Leaving may also happen when the garbage collector frees a request
    nobody closed (a stream its reader abandoned); such leaves are queued and
    applied by the next call, so the collector never waits for the lock.
    """

    def __init__(
        self,
        log: logging.Logger = logger,
        clock: Callable[[], float] = time.monotonic,
        warn_every: float = WARN_EVERY,
    ) -> None:
        self._log = log
        self._clock = clock
        self._warn_every = warn_every
        self._stretches: dict[str, _Stretch] = {}
        self._lock = threading.Lock()
        self._dropped: collections.deque[str] = collections.deque()

    def join(self, target: str) -> None:
        """A request to ``target`` is about to be retried for the first time."""
        with self._lock:
            ended = self._apply_dropped()
            stretch = self._stretches.get(target)
            if stretch is None:
                stretch = self._stretches[target] = _Stretch(self._clock())
            stretch.active += 1
            stretch.requests += 1
        self._summarize(ended)

    def retry(
        self, target: str, attempt: int, error: BaseException, delay: float
    ) -> None:
        """Log one retry of a request that joined ``target``'s stretch."""
        now = self._clock()
        with self._lock:
            ended = self._apply_dropped()
            stretch = self._stretches.get(target)
            if stretch is None:  # joined, then dropped: count it in a new stretch
                stretch = self._stretches[target] = _Stretch(now)
                stretch.active = stretch.requests = 1
            stretch.retries += 1
            stretch.kinds[failure_kind(error)] += 1
            warned = stretch.warned
            loud = warned is None or now - warned >= self._warn_every
            if loud:
                stretch.warned = now
            else:
                stretch.debug += 1
            retries, elapsed = stretch.retries, now - stretch.started
        self._summarize(ended)
        level = logging.WARNING if loud else logging.DEBUG
        if not self._log.isEnabledFor(level):
            return
        so_far = ""
        if retries > 1:
            so_far = f"; {retries:,} retries of it in {elapsed:.0f} s so far"
            if loud:
                so_far += ", the others logged at DEBUG"
        self._log.log(
            level,
            "retrying %s (attempt %d failed: %s) in %.2fs%s",
            target,
            attempt,
            error,
            delay,
            so_far,
        )

    def leave(self, target: str, gave_up: bool = False) -> None:
        """A request that joined ``target``'s stretch has ended."""
        with self._lock:
            ended = self._apply_dropped()
            ended += self._leave(target, gave_up)
        self._summarize(ended)

    def dropped(self, target: str) -> None:
        """Queue the leave of a request that was freed without being closed."""
        self._dropped.append(target)

    def _apply_dropped(self) -> list[tuple[str, _Stretch]]:
        ended: list[tuple[str, _Stretch]] = []
        while self._dropped:
            ended += self._leave(self._dropped.popleft(), False)
        return ended

    def _leave(self, target: str, gave_up: bool) -> list[tuple[str, _Stretch]]:
        stretch = self._stretches.get(target)
        if stretch is None:
            return []
        stretch.active -= 1
        stretch.gave_up += gave_up
        if stretch.active > 0:
            return []
        del self._stretches[target]
        return [(target, stretch)]

    def _summarize(self, ended: list[tuple[str, _Stretch]]) -> None:
        for target, stretch in ended:
            if stretch.debug and self._log.isEnabledFor(logging.WARNING):
                self._log.warning("%s: %s", target, _summary(stretch, self._clock()))


def _summary(stretch: _Stretch, now: float) -> str:
    kinds = ", ".join(f"{kind} ×{n:,}" for kind, n in stretch.kinds.most_common())
    requests = stretch.requests
    text = (
        f"{requests:,} request{'s' if requests != 1 else ''} retried "
        f"{stretch.retries:,} times in {now - stretch.started:.1f} s ({kinds})"
    )
    if requests == 1:
        return text + (" and gave up" if stretch.gave_up else "")
    if stretch.gave_up:
        text += f"; {stretch.gave_up:,} of them gave up"
    return text


RETRY_LOG = RetryLog()


def _after_fork_in_child() -> None:
    """Start the child with fresh locks, pacing buckets and retry stretches.

    A thread of the parent may have held one of the locks at the fork; that thread
    does not exist in the child, so the lock would never be released. The child's
    requests are its own, so its buckets and stretches start empty.
    """
    global _limiters_lock, RETRY_LOG
    _limiters_lock = threading.Lock()
    _limiters.clear()
    RETRY_LOG = RetryLog()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Attempts:
    """The pacing and retry decisions of one request, shared by every sender.

    Senders differ only in how they wait: they call :meth:`next_wait` before each
    attempt, :meth:`failed` after a failure (a delay, or ``None`` to give up) and
    :meth:`succeeded` once it worked; :meth:`close` when the request ended in any
    other way (cancelled, interrupted), so that its stretch in the retry log can
    end. ``limiter`` may change between attempts, e.g. when the endpoint was
    ensured again.
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
        self._joined: weakref.finalize[..., Attempts] | None = None
        self._target = where

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
        delay = None
        if may_retry:
            elapsed = time.monotonic() - self.started
            delay = self.retry.delay(self.count, error, elapsed)
        if delay is None:
            self._leave(gave_up=True)
            return None
        if self._joined is None or not self._joined.alive:
            self._target = self.where
            RETRY_LOG.join(self._target)
            self._joined = weakref.finalize(self, RETRY_LOG.dropped, self._target)
            self._joined.atexit = False
        RETRY_LOG.retry(self._target, self.count, error, delay)
        return delay

    def succeeded(self) -> None:
        """Let the pacing recover towards the configured rate."""
        if self.limiter is not None:
            self.limiter.on_success()
        self._leave(gave_up=False)

    def close(self) -> None:
        """The request has ended, however; idempotent."""
        self._leave(gave_up=False)

    def _leave(self, *, gave_up: bool) -> None:
        if self._joined is not None and self._joined.detach() is not None:
            RETRY_LOG.leave(self._target, gave_up)
