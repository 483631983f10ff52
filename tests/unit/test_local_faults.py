"""Fault configuration, seeded draws and rate limiting."""

from __future__ import annotations

import pytest

from es_inference.local import FAULT_KINDS, FaultConfig
from es_inference.local._faults import FaultPlan, RateLimiter


def test_probabilities_are_checked() -> None:
    with pytest.raises(ValueError, match="p_429 must be between 0 and 1"):
        FaultConfig(p_429=1.5)
    with pytest.raises(ValueError, match=r"add up to 1\.200"):
        FaultConfig(p_429=0.6, p_503=0.6)
    with pytest.raises(ValueError, match="latency_ms must not be negative"):
        FaultConfig(latency_ms=-1)


def test_a_seed_fixes_the_draws() -> None:
    config = FaultConfig(p_429=0.2, p_reset=0.2, latency_jitter_ms=10, seed=3)
    first = [FaultPlan(config).draw() for _ in range(1)]
    plan_a, plan_b = FaultPlan(config), FaultPlan(config)
    draws_a = [plan_a.draw() for _ in range(200)]
    assert draws_a == [plan_b.draw() for _ in range(200)]
    assert first[0] == draws_a[0]
    kinds = {fault for _, fault in draws_a}
    assert kinds == {"429", "reset", None}
    assert all(0 <= delay <= 0.01 for delay, _ in draws_a)


def test_every_kind_can_be_certain() -> None:
    for kind in FAULT_KINDS:
        plan = FaultPlan(FaultConfig(**{f"p_{kind}": 1.0}))
        assert plan.draw() == (0.0, kind)
    assert FaultPlan(FaultConfig()).draw() == (0.0, None)


def test_rate_limiter_spaces_requests_and_refuses_late_ones() -> None:
    limiter = RateLimiter()
    assert limiter.reserve("e", 60, now=0.0, timeout=5) == 0.0
    assert limiter.reserve("e", 60, now=0.0, timeout=5) == 1.0
    assert limiter.reserve("e", 60, now=0.5, timeout=5) == 1.5
    assert limiter.reserve("e", 60, now=0.5, timeout=1.0) is None
    assert limiter.reserve("other", 60, now=0.5, timeout=0) == 0.0
    limiter.forget("e")
    assert limiter.reserve("e", 60, now=10.0, timeout=0) == 0.0
