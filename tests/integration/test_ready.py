"""Waiting for endpoints backed by an in-cluster model."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from es_inference import EndpointNotReadyError
from es_inference.langchain import ElasticInferenceEmbeddings

from .helpers import API_KEY

E5_SETTINGS = {
    "model_id": ".multilingual-e5-small",
    "num_allocations": 1,
    "num_threads": 1,
}


def _adapter(url: str, **extra: Any) -> ElasticInferenceEmbeddings:
    return ElasticInferenceEmbeddings(
        inference_id="my-e5",
        es_url=url,
        es_api_key=API_KEY,
        service="elasticsearch",
        service_settings=E5_SETTINGS,
        poll_interval=0.05,
        **extra,
    )


def test_waits_until_fully_allocated(
    local_server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = local_server_factory(allocation_delay_s=0.4)
    embeddings = _adapter(server.url)
    assert server.requests == []  # construction sends nothing
    with caplog.at_level(logging.INFO, logger="es_inference"):
        vector = embeddings.embed_query("hello")
    assert len(vector) == 384
    assert server.count("GET", "/_ml/trained_models/") >= 2
    states = [
        r.getMessage() for r in caplog.records if "model deployment" in r.getMessage()
    ]
    assert "fully_allocated" in states[-1]
    assert len(states) == len(set(states))  # one line per state change


def test_failed_deployment_raises_at_once(local_server_factory: Any) -> None:
    server = local_server_factory(allocation_delay_s=60)
    response = httpx.put(
        f"{server.url}/_inference/text_embedding/my-e5",
        json={"service": "elasticsearch", "service_settings": E5_SETTINGS},
        headers={"Authorization": f"ApiKey {API_KEY}"},
    )
    assert response.status_code == 200
    server.set_allocation_state("my-e5", "failed")
    with pytest.raises(EndpointNotReadyError, match=r"\[my-e5\] failed"):
        _adapter(server.url).embed_query("x")


def test_deadline_gives_a_clear_timeout(local_server_factory: Any) -> None:
    server = local_server_factory(allocation_delay_s=60)
    embeddings = _adapter(server.url, wait_timeout=0.3)
    with pytest.raises(EndpointNotReadyError, match=r"not ready after 0.3s"):
        embeddings.embed_query("x")
