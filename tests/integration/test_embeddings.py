"""Embeddings end to end over loopback HTTP against the local server."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import numpy as np
import pytest

from es_inference import (
    AuthenticationError,
    ConfigurationError,
    EndpointMismatchError,
    InputError,
)
from es_inference.langchain import ElasticInferenceEmbeddings
from es_inference.llama_index import ElasticInferenceEmbedding

from .helpers import COHERE, TITAN, bedrock

TEXTS = [
    "The with statement wraps a block with a context manager.",
    "Floating point numbers are approximations of real numbers.",
    "A for loop iterates over the items of any sequence.",
]


def posts(server: Any) -> int:
    return int(server.count("POST"))


def puts(server: Any) -> int:
    return int(server.count("PUT"))


def test_missing_endpoint_is_created_then_used(local_server: Any) -> None:
    embeddings = ElasticInferenceEmbeddings(
        **bedrock(local_server.url, inference_id="titan")
    )
    vectors = embeddings.embed_documents(TEXTS)
    assert len(vectors) == 3 and len(vectors[0]) == 1024
    assert puts(local_server) == 1
    assert posts(local_server) == 3  # Titan takes one text per request
    info = embeddings.embedding_service().endpoint().info
    assert (info.inference_id, info.dimensions) == ("titan", 1024)


def test_compatible_endpoint_is_reused_without_put(local_server: Any) -> None:
    first = ElasticInferenceEmbeddings(
        **bedrock(local_server.url, inference_id="titan")
    )
    first.embed_query("hello")
    second = ElasticInferenceEmbeddings(
        **bedrock(local_server.url, inference_id="titan")
    )
    second.embed_query("hello")
    assert puts(local_server) == 1
    assert second.embedding_service().endpoint().created is False


def test_different_model_under_same_id_names_both(local_server: Any) -> None:
    ElasticInferenceEmbeddings(
        **bedrock(local_server.url, inference_id="e1")
    ).embed_query("x")
    other = ElasticInferenceEmbeddings(
        **bedrock(
            local_server.url, inference_id="e1", model="amazon.titan-embed-text-v1"
        )
    )
    with pytest.raises(EndpointMismatchError) as info:
        other.embed_query("x")
    message = str(info.value)
    assert "[e1]" in message
    assert "wanted 'amazon.titan-embed-text-v1'" in message
    assert f"found '{TITAN}'" in message


def test_without_id_a_matching_endpoint_is_found_and_reused(local_server: Any) -> None:
    ElasticInferenceEmbeddings(
        **bedrock(local_server.url, inference_id="my-titan")
    ).embed_query("x")
    reused = ElasticInferenceEmbeddings(**bedrock(local_server.url))
    reused.embed_query("x")
    assert reused.embedding_service().endpoint().info.inference_id == "my-titan"
    assert puts(local_server) == 1


def test_without_id_a_readable_id_is_derived(local_server: Any) -> None:
    embeddings = ElasticInferenceEmbeddings(**bedrock(local_server.url))
    embeddings.embed_query("x")
    assert embeddings.embedding_service().endpoint().info.inference_id == (
        "amazonbedrock-text-embedding-amazon-titan-embed-text-v2-0-us-east-1"
    )


def test_only_an_id_never_creates(local_server: Any) -> None:
    embeddings = ElasticInferenceEmbeddings(
        inference_id="absent", es_url=local_server.url, es_api_key="test-api-key"
    )
    with pytest.raises(ConfigurationError, match=r"\[absent\] does not exist"):
        embeddings.embed_query("x")
    assert puts(local_server) == 0


def test_concurrent_creators_end_with_one_endpoint(local_server: Any) -> None:
    barrier = threading.Barrier(6)
    results: list[Any] = []
    errors: list[BaseException] = []

    def create() -> None:
        embeddings = ElasticInferenceEmbeddings(
            **bedrock(local_server.url, inference_id="race")
        )
        barrier.wait()
        try:
            results.append(embeddings.embed_query("same text"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == 6 and all(r == results[0] for r in results)
    created = [
        r for r in local_server.requests if r.method == "PUT" and r.status == 200
    ]
    assert len(created) == 1


def test_order_is_kept_across_a_wide_fan_out(local_server: Any) -> None:
    texts = [f"passage number {i} about topic {i % 7}" for i in range(300)]
    embeddings = ElasticInferenceEmbeddings(**bedrock(local_server.url, concurrency=12))
    forward = embeddings.embed_array(texts)
    backward = embeddings.embed_array(texts[::-1])
    assert forward.dtype == np.float32 and forward.shape == (300, 1024)
    np.testing.assert_array_equal(forward, backward[::-1])
    for i in (0, 137, 299):
        np.testing.assert_array_equal(forward[i], embeddings.embed_array([texts[i]])[0])
    assert len({row.tobytes() for row in forward}) == 300


def test_empty_list_sends_nothing(local_server: Any) -> None:
    embeddings = ElasticInferenceEmbeddings(**bedrock(local_server.url))
    assert embeddings.embed_documents([]) == []
    assert embeddings.embed_array([]).shape == (0, 0)
    assert local_server.requests == []


def test_blank_inputs_raise_before_any_request(local_server: Any) -> None:
    embeddings = ElasticInferenceEmbeddings(**bedrock(local_server.url))
    with pytest.raises(InputError, match=r"indices 1, 2 are empty or whitespace"):
        embeddings.embed_documents(["ok", "", "   "])
    with pytest.raises(InputError, match=r"index 1 is not a string \(NoneType\)"):
        embeddings.embed_documents(["ok", None])  # type: ignore[list-item]
    assert local_server.requests == []


def test_meaningful_retrieval(local_server: Any) -> None:
    embeddings = ElasticInferenceEmbeddings(**bedrock(local_server.url))
    docs = np.asarray(embeddings.embed_documents(TEXTS))
    query = np.asarray(embeddings.embed_query("context manager __enter__ __exit__"))
    scores = docs @ query / (np.linalg.norm(docs, axis=1) * np.linalg.norm(query))
    assert int(np.argmax(scores)) == 0


def test_cohere_batches_up_to_96_and_sends_input_type(local_server: Any) -> None:
    texts = [f"text {i}" for i in range(200)]
    embeddings = ElasticInferenceEmbeddings(**bedrock(local_server.url, model=COHERE))
    vectors = embeddings.embed_array(texts)
    assert vectors.shape == (200, 1024)
    sizes = sorted(r.n_inputs for r in local_server.requests if r.method == "POST")
    assert sizes == [8, 96, 96]
    query = np.asarray(embeddings.embed_query("text 3"))
    assert query.shape == (1024,)


async def test_async_twins_match_sync(local_server: Any) -> None:
    embeddings = ElasticInferenceEmbeddings(**bedrock(local_server.url))
    sync_docs = embeddings.embed_documents(TEXTS)
    async_docs = await embeddings.aembed_documents(TEXTS)
    assert np.allclose(sync_docs, async_docs)
    assert np.allclose(embeddings.embed_query("q"), await embeddings.aembed_query("q"))
    array = await embeddings.aembed_array(TEXTS * 20)
    assert array.shape == (60, 1024)


async def test_sync_call_works_inside_a_running_loop(local_server: Any) -> None:
    embeddings = ElasticInferenceEmbeddings(**bedrock(local_server.url))
    assert asyncio.get_running_loop().is_running()
    assert len(embeddings.embed_documents(TEXTS)) == 3


def test_wrong_api_key_is_an_authentication_error(local_server: Any) -> None:
    embeddings = ElasticInferenceEmbeddings(
        **bedrock(local_server.url, es_api_key="wrong-key")
    )
    with pytest.raises(AuthenticationError) as info:
        embeddings.embed_query("x")
    assert info.value.status == 401
    assert "wrong-key" not in str(info.value)


def test_llama_index_sync_async_and_batch(local_server: Any) -> None:
    model = ElasticInferenceEmbedding(**bedrock(local_server.url), embed_batch_size=4)
    texts = [f"llama text {i}" for i in range(10)]
    batch = model.get_text_embedding_batch(texts)
    assert len(batch) == 10 and len(batch[0]) == 1024
    single = model.get_text_embedding(texts[3])
    assert np.allclose(single, batch[3])
    query = model.get_query_embedding("llama")
    assert len(query) == 1024
    async_batch = asyncio.run(model.aget_text_embedding_batch(texts))
    assert np.allclose(async_batch, batch)
    assert np.allclose(asyncio.run(model.aget_query_embedding("llama")), query)
    assert np.allclose(asyncio.run(model.aget_text_embedding(texts[3])), single)


def test_llama_index_honours_embed_batch_size(local_server: Any) -> None:
    seen: list[int] = []
    model = ElasticInferenceEmbedding(
        **bedrock(local_server.url, model=COHERE), embed_batch_size=5
    )
    original = model._get_text_embeddings

    def spy(texts: list[str]) -> list[list[float]]:
        seen.append(len(texts))
        return original(texts)

    object.__setattr__(model, "_get_text_embeddings", spy)
    model.get_text_embedding_batch([f"t{i}" for i in range(12)])
    assert seen == [5, 5, 2]


@pytest.mark.parametrize("fmt", ["bytes", "bits"])
def test_byte_and_bit_results_are_decoded(local_server_factory: Any, fmt: str) -> None:
    server = local_server_factory(embedding_format=fmt)
    embeddings = ElasticInferenceEmbeddings(**bedrock(server.url))
    vectors = embeddings.embed_array(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape[0] == 3
    if fmt == "bits":
        assert set(np.unique(vectors).tolist()) <= {0.0, 1.0}
    else:
        assert np.all(vectors == np.round(vectors))
        assert vectors.min() >= -128 and vectors.max() <= 127


def _sent_bodies(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "es_inference.transport" and "body=" in r.getMessage()
    ]


def test_input_type_is_sent_for_cohere_only(
    local_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="es_inference.transport")
    cohere = ElasticInferenceEmbeddings(**bedrock(local_server.url, model=COHERE))
    cohere.embed_documents(["doc"])
    cohere.embed_query("query")
    bodies = _sent_bodies(caplog)
    assert '"input_type":"ingest"' in bodies[-2]
    assert '"input_type":"search"' in bodies[-1]
    caplog.clear()
    ElasticInferenceEmbeddings(**bedrock(local_server.url)).embed_query("query")
    assert all("input_type" not in body for body in _sent_bodies(caplog))


async def test_clusters_without_input_type_get_requests_without_it(
    local_server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = local_server_factory(es_version="8.17.0")
    embeddings = ElasticInferenceEmbeddings(**bedrock(server.url, model=COHERE))
    with caplog.at_level(logging.WARNING, logger="es_inference"):
        first = embeddings.embed_array(["a", "b"])
        second = await embeddings.aembed_array(["a", "b"])
    np.testing.assert_array_equal(first, second)
    refused = [r for r in server.requests if r.method == "POST" and r.status == 400]
    assert len(refused) == 1  # learnt once, then sent without input_type
    assert (
        sum("does not take input_type" in r.getMessage() for r in caplog.records) == 1
    )
