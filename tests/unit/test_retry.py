"""Retry decisions and pacing."""

from __future__ import annotations

import random

from es_inference import BadRequestError, RateLimiter, RetryPolicy, TooManyRequestsError
from es_inference._errors import ConnectionError
from es_inference._retry import FIRST_CONTACT_WAIT


def test_retry_only_what_can_succeed_later() -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff=1.0)
    rng = random.Random(1)
    assert policy.delay(1, BadRequestError(400, "x", "bad"), 0.0, rng) is None
    first = policy.delay(1, ConnectionError("down"), 0.0, rng)
    assert first is not None and 0 <= first <= 1.0
    assert policy.delay(3, ConnectionError("down"), 0.0, rng) is None


def test_first_contact_failures_are_retried_once_and_quickly() -> None:
    policy = RetryPolicy(max_attempts=8, initial_backoff=5.0)
    refused = ConnectionError("refused", first_contact=True)
    first = policy.delay(1, refused, 0.0)
    assert first is not None and 0 <= first <= FIRST_CONTACT_WAIT
    assert policy.delay(2, refused, 0.0) is None
    assert policy.delay(2, ConnectionError("refused"), 0.0) is not None
    assert RetryPolicy(max_attempts=1).delay(1, refused, 0.0) is None


def test_retry_after_sets_the_least_wait_and_elapsed_caps() -> None:
    policy = RetryPolicy(max_attempts=5, initial_backoff=0.01, max_elapsed=10)
    error = TooManyRequestsError(429, "x", "slow down", retry_after=3.0)
    assert policy.delay(1, error, 0.0) == 3.0
    assert policy.delay(1, error, 8.0) is None


def test_backoff_grows_exponentially_up_to_cap() -> None:
    policy = RetryPolicy(max_attempts=20, initial_backoff=0.5, max_backoff=4.0)

    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    waits = [policy.delay(n, ConnectionError("x"), 0.0, Top()) for n in range(1, 7)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_token_bucket_spaces_requests_at_the_rate() -> None:
    limiter = RateLimiter(requests_per_minute=600)  # 10 per second
    waits = [limiter.reserve() for _ in range(5)]
    assert waits[0] == 0.0
    # Each further reservation waits one more tenth of a second.
    for i, wait in enumerate(waits[1:], start=1):
        assert abs(wait - i * 0.1) < 0.01


def test_throttling_slows_and_success_recovers() -> None:
    limiter = RateLimiter(requests_per_minute=600)
    limiter.on_throttle()
    assert limiter.requests_per_minute < 600
    for _ in range(100):
        limiter.on_success()
    assert limiter.requests_per_minute == 600
