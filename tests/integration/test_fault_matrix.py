"""Nothing is lost: bulk embeddings under every fault kind equal the fault-free run.

One local server serves the module. Each fault kind alone, and all of them mixed,
is injected into a bulk run of 2,000 texts through Titan (one text per request)
and Cohere (96 per request), on the sync and the async path. With retries the
result must equal the fault-free array element for element; without retries the
:class:`PartialResultError` must name exactly the inputs of the failed requests,
as the server's request log shows them, and keep every other row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from es_inference import (
    ConnectionError,
    PartialResultError,
    ResponseDecodeError,
    ServerError,
    TooManyRequestsError,
)
from es_inference.langchain import ElasticInferenceEmbeddings
from es_inference.local import FaultConfig, LocalServer
from es_inference.local._models import EmbeddingModel

from .helpers import COHERE, TITAN, bedrock
from .support import QUICK_RETRY

pytestmark = pytest.mark.slow

N_TEXTS = 2000
TEXTS = [
    f"document {i}: notes on topic {i % 17} with detail {i * 31 % 1000}"
    for i in range(N_TEXTS)
]
MODELS = {"titan": TITAN, "cohere": COHERE}

# Titan sends 2,000 requests per run, Cohere 21: Cohere gets higher rates so that
# every kind still hits several requests.
RATE = {"titan": 0.1, "cohere": 0.3}
MIXED_RATE = {"titan": 0.03, "cohere": 0.08}
FAULT_KINDS = ("429", "timeout", "throttle", "503", "reset", "truncate")

#: What each fault kind becomes once retries are exhausted.
ERROR_OF = {
    "429": TooManyRequestsError,
    "timeout": TooManyRequestsError,  # 9.x answers a queue timeout with 429
    "throttle": ServerError,
    "503": ServerError,
    "reset": ConnectionError,
    "truncate": ResponseDecodeError,
}


def fault_config(kind: str, model: str, seed: int) -> FaultConfig:
    if kind == "latency":
        return FaultConfig(latency_ms=1.0, latency_jitter_ms=4.0, seed=seed)
    if kind == "mixed":
        rate = MIXED_RATE[model]
        return FaultConfig(
            latency_ms=0.5,
            latency_jitter_ms=2.0,
            **{f"p_{name}": rate for name in FAULT_KINDS},
            seed=seed,
        )
    return FaultConfig(**{f"p_{kind}": RATE[model]}, seed=seed)


@pytest.fixture(scope="module")
def server(local_model: EmbeddingModel) -> Iterator[LocalServer]:
    with LocalServer(api_key="test-api-key", model="seeded") as running:
        yield running


@pytest.fixture(scope="module")
def reference(server: LocalServer) -> dict[str, np.ndarray]:
    """The fault-free array of each model."""
    server.set_faults(None)
    return {
        name: adapter(server, f"reference-{name}", model).embed_array(TEXTS)
        for name, model in MODELS.items()
    }


def adapter(
    server: LocalServer, inference_id: str, model: str, **overrides: Any
) -> ElasticInferenceEmbeddings:
    settings = {"max_retries": 25, **QUICK_RETRY, **overrides}
    return ElasticInferenceEmbeddings(
        **bedrock(server.url, inference_id=inference_id, model=model, **settings)
    )


def embed(embeddings: ElasticInferenceEmbeddings, mode: str, texts: list[str]) -> Any:
    if mode == "sync":
        return embeddings.embed_array(texts)
    return asyncio.run(embeddings.aembed_array(texts))


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("kind", [*FAULT_KINDS, "latency", "mixed"])
def test_bulk_embed_under_faults_equals_the_fault_free_run(
    server: LocalServer,
    reference: dict[str, np.ndarray],
    kind: str,
    model: str,
    mode: str,
) -> None:
    inference_id = f"{model}-{kind}-{mode}"
    embeddings = adapter(server, inference_id, MODELS[model])
    embeddings.embedding_service().endpoint()  # created before faults start
    server.clear_requests()
    server.set_faults(fault_config(kind, model, seed=len(inference_id)))
    try:
        vectors = embed(embeddings, mode, TEXTS)
    finally:
        server.set_faults(None)

    np.testing.assert_array_equal(vectors, reference[model])
    injected = [r.fault for r in server.requests if r.fault]
    kinds = FAULT_KINDS if kind == "mixed" else () if kind == "latency" else (kind,)
    for name in kinds:
        assert injected.count(name) >= 1, f"no {name} fault was injected"
    answered = [r for r in server.requests if r.method == "POST" and r.fault is None]
    assert sum(r.n_inputs or 0 for r in answered) == N_TEXTS


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("model", "count"), [("titan", 600), ("cohere", N_TEXTS)])
def test_exhausted_retries_name_exactly_the_failed_inputs(
    server: LocalServer,
    reference: dict[str, np.ndarray],
    model: str,
    count: int,
    mode: str,
) -> None:
    # One request at a time, so the request log lists the batches in input order.
    inference_id = f"{model}-exhausted-{mode}"
    embeddings = adapter(
        server, inference_id, MODELS[model], max_retries=0, concurrency=1
    )
    embeddings.embedding_service().endpoint()
    server.clear_requests()
    rate = 0.03 if model == "titan" else 0.05
    server.set_faults(
        FaultConfig(**{f"p_{name}": rate for name in FAULT_KINDS}, seed=11)
    )
    try:
        with pytest.raises(PartialResultError) as info:
            embed(embeddings, mode, TEXTS[:count])
    finally:
        server.set_faults(None)
    error = info.value

    batch = 1 if model == "titan" else 96
    records = [r for r in server.requests if r.method == "POST"]
    assert len(records) == -(-count // batch)  # one request per batch, no retries
    expected_failed: list[int] = []
    expected_errors: list[tuple[list[int], type[Exception]]] = []
    for number, record in enumerate(records):
        assert record.n_inputs == min(batch, count - number * batch)
        if record.fault is not None:
            indices = list(range(number * batch, number * batch + record.n_inputs))
            expected_failed.extend(indices)
            expected_errors.append((indices, ERROR_OF[record.fault]))
    assert expected_failed, "no fault was injected"
    assert error.failed_indices == expected_failed
    assert [(idx, type(exc)) for idx, exc in error.errors] == expected_errors
    assert str(error).startswith(f"{len(expected_failed)} of {count} inputs failed")

    assert error.vectors is not None
    succeeded = np.ones(count, dtype=bool)
    succeeded[expected_failed] = False
    np.testing.assert_array_equal(error.succeeded, succeeded)
    np.testing.assert_array_equal(
        error.vectors[succeeded], reference[model][:count][succeeded]
    )
    assert not error.vectors[~succeeded].any()

    # Resending only the failed inputs completes the run.
    again = embed(embeddings, mode, [TEXTS[i] for i in error.failed_indices])
    error.vectors[error.failed_indices] = again
    np.testing.assert_array_equal(error.vectors, reference[model][:count])
