"""Input checks: what is taken, and one error naming every problem with its indices."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from es_inference import InputError
from es_inference._batch import check_texts

GENERATOR_HINT = (
    "pass list(...) of it, so that the inputs can be checked and counted before any "
    "request"
)


def refused(texts: Any, max_chars: int | None = None) -> InputError:
    with pytest.raises(InputError) as info:
        check_texts(texts, max_chars)
    return info.value


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (
            "one text",
            "expected a list of strings, got str; wrap a single text in a list",
        ),
        (
            b"bytes",
            "expected a list of strings, got bytes; wrap a single text in a list",
        ),
        (
            (text for text in ["a", "b"]),
            f"expected a list of strings, got generator; {GENERATOR_HINT}",
        ),
        (
            iter(["a"]),
            f"expected a list of strings, got list_iterator; {GENERATOR_HINT}",
        ),
        ({"a", "b"}, f"expected a list of strings, got set; {GENERATOR_HINT}"),
        (None, "expected a list of strings, got NoneType"),
        (
            np.array([0.5, 1.5]),
            "expected a list of strings, got a numpy array of float64",
        ),
        (
            np.array([["a", "b"]]),
            "expected a list of strings, got a 2-D numpy array of shape (1, 2); pass a "
            "1-D array or a list",
        ),
    ],
)
def test_a_wrong_container_gets_a_hint_that_fits_it(texts: Any, message: str) -> None:
    error = refused(texts)
    assert str(error) == message
    assert error.indices == [] and error.problems == {}


def test_sequences_and_numpy_arrays_of_strings_are_taken() -> None:
    assert check_texts(("a", "b"), None) == ["a", "b"]
    taken = check_texts(np.array(["Elastic", "Kibana"]), None)
    assert taken == ["Elastic", "Kibana"]
    assert all(type(text) is str for text in taken)
    assert check_texts(np.array(["a", "b"], dtype=object), None) == ["a", "b"]
    assert check_texts(np.array([], dtype=str), None) == []


def test_one_bad_input_is_named_in_the_singular() -> None:
    assert str(refused(["ok", ""])) == (
        "the input at index 1 is empty or whitespace only (Bedrock rejects empty text)"
    )
    assert str(refused(["abcd"], 3)) == (
        "the input at index 0 is longer than 3 characters (split it or raise "
        "max_input_chars)"
    )
    assert str(refused(np.array(["ok", None], dtype=object))) == (
        "the input at index 1 is not a string (NoneType)"
    )


def test_every_kind_of_problem_is_reported_at_once() -> None:
    texts = ["ok", None, "", "x" * 11, " \n", 3, "bad \ud83d", "bad \udc00 too long"]
    error = refused(texts, 10)

    assert str(error) == (
        "7 inputs cannot be sent: the inputs at indices 1, 5 are not strings "
        "(NoneType, int); the inputs at indices 6, 7 hold lone surrogates, which "
        "UTF-8 cannot encode (often left by a broken PDF or JSON extraction; repair "
        "them, e.g. with text.encode('utf-8', 'replace').decode()); the inputs at "
        "indices 2, 4 are empty or whitespace only (Bedrock rejects empty text); the "
        "inputs at indices 3, 7 are longer than 10 characters (split them or raise "
        "max_input_chars)"
    )
    assert error.indices == [1, 2, 3, 4, 5, 6, 7]
    assert error.problems == {
        "not strings (NoneType, int)": [1, 5],
        "lone surrogates": [6, 7],
        "empty or whitespace only": [2, 4],
        "longer than 10 characters": [3, 7],
    }
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.indices, copy.problems, str(copy)) == (
        error.indices,
        error.problems,
        str(error),
    )


def test_many_bad_indices_are_shortened_but_all_kept() -> None:
    error = refused([""] * 25)
    assert str(error).startswith("the inputs at indices 0, 1, 2, ")
    assert ", 19, … (5 more) are empty or whitespace only" in str(error)
    assert error.indices == list(range(25))
