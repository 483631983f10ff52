"""The deterministic stand-in for a Bedrock chat model.

It does not generate text. It reads the prompt as context plus a question, ranks
the context's sentences by embedding similarity to the question and answers with
the two best, in their original order. The same prompt and settings always give
the same answer, so tests can compare streamed and non-streamed output exactly.

The question is the text after the last ``Question:`` marker; without a marker it
is the last non-empty line (or, for a single line, its last sentence). Everything
before it is the context.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["NO_CONTEXT_PREFIX", "answer", "split_prompt", "truncate_tokens"]

Embed = Callable[[Sequence[str]], npt.NDArray[np.float32]]

#: How the answer starts when the prompt carries no context to quote.
NO_CONTEXT_PREFIX = "The local stand-in model found no context to answer from: "

_QUESTION = re.compile(r"question\s*:", re.IGNORECASE)
_ANSWER_CUE = re.compile(r"\banswer\s*:\s*$", re.IGNORECASE)
_CONTEXT_LABEL = re.compile(r"^\s*context\s*:\s*", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_TOKEN = re.compile(r"\S+")
_TOP_SENTENCES = 2


def split_prompt(prompt: str) -> tuple[str, str]:
    """Split ``prompt`` into ``(context, question)``."""
    text = prompt.strip()
    markers = list(_QUESTION.finditer(text))
    if markers:
        last = markers[-1]
        question = _ANSWER_CUE.sub("", text[last.end() :]).strip()
        return text[: last.start()].strip(), question
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        return "\n".join(lines[:-1]), lines[-1].strip()
    sentences = _sentences(text)
    if len(sentences) > 1:
        return " ".join(sentences[:-1]), sentences[-1]
    return "", text


def _sentences(text: str) -> list[str]:
    parts = (_CONTEXT_LABEL.sub("", p).strip() for p in _SENTENCE_END.split(text))
    return [p for p in parts if p]


def truncate_tokens(text: str, max_tokens: int | None) -> str:
    """Keep the first ``max_tokens`` whitespace-separated tokens of ``text``."""
    if max_tokens is None:
        return text
    tokens = list(_TOKEN.finditer(text))
    if len(tokens) <= max_tokens:
        return text
    return text[: tokens[max_tokens - 1].end()] if max_tokens > 0 else ""


def answer(prompt: str, embed: Embed, max_new_tokens: int | None = None) -> str:
    """The stand-in model's answer to ``prompt``.

    Args:
        prompt: The whole prompt (all inputs of the request, joined by newlines).
        embed: Embeds texts into normalised rows (the server's local model).
        max_new_tokens: Cut the answer after this many whitespace tokens.
    """
    context, question = split_prompt(prompt)
    candidates = _sentences(context)
    if not candidates:
        return truncate_tokens(NO_CONTEXT_PREFIX + question, max_new_tokens)

    vectors = embed([question or prompt, *candidates])
    scores = vectors[1:] @ vectors[0]
    order = sorted(range(len(candidates)), key=lambda i: (-float(scores[i]), i))
    picked = sorted(order[:_TOP_SENTENCES])
    return truncate_tokens(" ".join(candidates[i] for i in picked), max_new_tokens)
