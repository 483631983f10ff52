"""Inputs through the adapters: numpy arrays of strings are embedded, and every bad
input of a call is reported in one error before any request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from es_inference import InputError
from es_inference.langchain import ElasticInferenceEmbeddings
from es_inference.local import LocalServer

from .helpers import (
    bedrock,
    completion_service,
)

TEXTS = ["Elastic makes Elasticsearch.", "Kibana shows the data."]


def test_a_numpy_array_of_strings_is_embedded_like_a_list(
    local_server: LocalServer,
) -> None:
    embeddings = ElasticInferenceEmbeddings(**bedrock(local_server.url))
    from_list = embeddings.embed_array(TEXTS)
    from_array = embeddings.embed_array(np.array(TEXTS))  # type: ignore[arg-type]
    np.testing.assert_array_equal(from_array, from_list)
    assert from_array.shape == (2, 1024)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_every_bad_input_is_named_before_any_request(
    local_server: LocalServer, mode: str
) -> None:
    embeddings = ElasticInferenceEmbeddings(
        **bedrock(local_server.url, max_input_chars=20)
    )
    texts: Any = ["ok", None, "", "a text of more than twenty characters"]
    embed: Callable[[Any], Any] = embeddings.embed_array
    if mode == "async":

        def embed(texts: Any) -> Any:
            return asyncio.run(embeddings.aembed_array(texts))

    with pytest.raises(InputError) as info:
        embed(texts)
    assert str(info.value) == (
        "3 inputs cannot be sent: the input at index 1 is not a string (NoneType); "
        "the input at index 2 is empty or whitespace only (Bedrock rejects empty "
        "text); the input at index 3 is longer than 20 characters (split it or raise "
        "max_input_chars)"
    )
    assert info.value.indices == [1, 2, 3]

    with pytest.raises(InputError, match="got generator; pass list"):
        embed(text for text in TEXTS)
    assert local_server.requests == []


def test_prompts_are_checked_the_same_way(local_server: LocalServer) -> None:
    service = completion_service(local_server.url)
    with service, pytest.raises(InputError) as info:
        service.complete_many(["What is Elastic?", " ", 7])
    assert str(info.value) == (
        "2 inputs cannot be sent: the input at index 2 is not a string (int); the "
        "input at index 1 is empty or whitespace only (Bedrock rejects empty text)"
    )
    assert local_server.requests == []
