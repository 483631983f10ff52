"""The request plan of a bulk call is computed on demand, not stored."""

from __future__ import annotations

import sys

import pytest

from es_inference._batch import plan


def test_plan_is_a_sequence_of_start_stop_pairs() -> None:
    batches = plan(7, 3)
    assert len(batches) == 3
    assert list(batches) == [(0, 3), (3, 6), (6, 7)]
    assert batches[-1] == (6, 7) and batches[1:] == [(3, 6), (6, 7)]
    with pytest.raises(IndexError):
        batches[3]


def test_plan_of_a_million_requests_takes_no_memory() -> None:
    assert sys.getsizeof(plan(1_000_000, 1)) < 100
