"""Input checks, request planning and result assembly."""

from __future__ import annotations

import numpy as np
import pytest

from es_inference import AuthenticationError, InputError, PartialResultError
from es_inference._batch import Assembly, check_texts, plan


def test_plan_covers_every_input_once_in_order() -> None:
    assert plan(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert plan(0, 96) == []


def test_check_texts_names_bad_indices() -> None:
    with pytest.raises(InputError, match=r"indices 1, 3 are empty") as info:
        check_texts(["a", "", "b", "  \n"], None)
    assert info.value.indices == [1, 3]
    with pytest.raises(InputError, match=r"index 1 is not a string \(NoneType\)"):
        check_texts(["a", None], None)
    with pytest.raises(InputError, match="longer than 3 characters"):
        check_texts(["abcd"], 3)
    with pytest.raises(InputError, match="wrap a single text in a list"):
        check_texts("just a string", None)


def test_assembly_returns_array_when_complete() -> None:
    assembly = Assembly(3)
    assembly.rows(0, 2, 2)[:] = [[1, 2], [3, 4]]
    assembly.succeed(0, 2)
    assembly.rows(2, 3, 2)[:] = [[5, 6]]
    assembly.succeed(2, 3)
    assert assembly.result().tolist() == [[1, 2], [3, 4], [5, 6]]


def test_assembly_keeps_successes_and_names_failures() -> None:
    assembly = Assembly(4)
    assembly.rows(0, 2, 2)[:] = [[1, 2], [3, 4]]
    assembly.succeed(0, 2)
    assembly.fail(2, 4, ValueError("boom"))
    with pytest.raises(
        PartialResultError, match=r"2 of 4 inputs failed \(indices 2, 3\)"
    ) as info:
        assembly.result()
    error = info.value
    assert error.failed_indices == [2, 3]
    assert error.succeeded.tolist() == [True, True, False, False]
    assert error.vectors is not None
    np.testing.assert_array_equal(error.vectors[:2], [[1, 2], [3, 4]])


def test_fatal_error_with_nothing_done_is_raised_as_itself() -> None:
    assembly = Assembly(2)
    fatal = AuthenticationError(401, "security_exception", "no")
    assembly.fail(0, 1, fatal)
    assembly.fail(1, 2, fatal)
    assert assembly.stopped
    with pytest.raises(AuthenticationError):
        assembly.result()


def test_lone_surrogates_are_named_before_sending() -> None:
    with pytest.raises(InputError, match=r"index 1 holds lone surrogates") as info:
        check_texts(["ok é", "bad \ud83d"], None)
    assert info.value.indices == [1]


def test_a_cancelled_assembly_hands_out_no_more_batches() -> None:
    assembly = Assembly(4)
    assert not assembly.stopped
    assembly.cancel()
    assert assembly.stopped
