"""The deterministic stand-in chat model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from es_inference.local._models import HashingModel
from es_inference.local._responder import (
    NO_CONTEXT_PREFIX,
    answer,
    split_prompt,
    truncate_tokens,
)


def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
    return HashingModel().embed(texts, 512)


def test_split_at_the_last_question_marker() -> None:
    prompt = "Context: A. B.\nQuestion: first?\nMore. Question: second?\nAnswer:"
    assert split_prompt(prompt) == (
        "Context: A. B.\nQuestion: first?\nMore.",
        "second?",
    )


def test_split_without_marker_uses_the_last_line_or_sentence() -> None:
    assert split_prompt("One. Two.\nWhat?") == ("One. Two.", "What?")
    assert split_prompt("One fact. Another fact? Last one") == (
        "One fact. Another fact?",
        "Last one",
    )
    assert split_prompt("Just a question") == ("", "Just a question")


def test_the_two_closest_sentences_in_document_order() -> None:
    prompt = (
        "Cats purr when content. Paris is the capital of France. Dogs bark at "
        "strangers. The capital city Paris has museums.\n"
        "Question: What is the capital of France?"
    )
    assert answer(prompt, embed) == (
        "Paris is the capital of France. The capital city Paris has museums."
    )
    assert answer(prompt, embed) == answer(prompt, embed)


def test_no_context() -> None:
    assert answer("Why?", embed) == NO_CONTEXT_PREFIX + "Why?"


def test_token_cap_keeps_original_spacing() -> None:
    assert truncate_tokens("a  b\nc d", 3) == "a  b\nc"
    assert truncate_tokens("a b", 5) == "a b"
    assert truncate_tokens("a b", None) == "a b"
    assert answer("A b c d.\nQuestion: q", embed, max_new_tokens=2) == "A b"
