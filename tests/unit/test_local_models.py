"""The local embedding models."""

from __future__ import annotations

import numpy as np
import pytest

from es_inference.local._models import (
    EmbeddingModel,
    HashingModel,
    dims_for_model,
    get_model,
)


def test_dimensions_per_model_id() -> None:
    assert dims_for_model("amazon.titan-embed-text-v2:0") == 1024
    assert dims_for_model("cohere.embed-english-v3") == 1024
    assert dims_for_model("cohere.embed-multilingual-v3") == 1024
    assert dims_for_model("amazon.titan-embed-text-v1") == 1536
    assert dims_for_model(".multilingual-e5-small") == 384
    assert dims_for_model("anything.else") == 1024


@pytest.mark.parametrize("dims", [256, 384, 1024, 1536])
def test_wordllama_vectors_are_normalised_float32(
    local_model: EmbeddingModel, dims: int
) -> None:
    vectors = local_model.embed(["a short text", "", "   ", "another one"], dims)
    assert vectors.dtype == np.float32 and vectors.shape == (4, dims)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(vectors[1], local_model.embed([""], dims)[0])


def test_wordllama_is_deterministic_and_batch_independent(
    local_model: EmbeddingModel,
) -> None:
    texts = [f"passage {i} about topic {i % 3}" for i in range(20)]
    batch = local_model.embed(texts, 1024)
    for i in (0, 7, 19):
        np.testing.assert_array_equal(batch[i], local_model.embed([texts[i]], 1024)[0])
    assert len({row.tobytes() for row in batch}) == 20


def test_wordllama_ranks_related_texts_higher(local_model: EmbeddingModel) -> None:
    query, near, far = local_model.embed(
        [
            "with statement context manager",
            "The with statement calls the context manager's enter and exit methods.",
            "Floating point arithmetic has rounding errors.",
        ],
        256,
    )
    assert float(query @ near) > float(query @ far)


def test_hashing_model_needs_no_files() -> None:
    model = HashingModel()
    a, b, empty = model.embed(["Hello world", "hello, WORLD!", ""], 64)
    np.testing.assert_array_equal(a, b)
    assert empty[0] == 1.0 and float(np.linalg.norm(a)) == pytest.approx(1.0)
    assert get_model("hashing") is get_model("hashing")


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match="unknown local model"):
        get_model("gpt")


def test_seeded_model_is_dense_normalised_and_deterministic() -> None:
    model = get_model("seeded")
    a, b, c = model.embed(["Hello world", "Hello world", "hello world"], 256)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and np.count_nonzero(a) == 256
    assert float(np.linalg.norm(a)) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_array_equal(model.embed(["Hello world"], 256)[0], a)
