"""Endpoint lifecycle on the local server: create, get, list, update, delete."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from elasticsearch import BadRequestError, ConflictError, Elasticsearch, NotFoundError

from es_inference.local import LocalServer

API_KEY = "test-api-key"
ACCESS_KEY = "AKIDLOCALSERVERTEST"
SECRET_KEY = "local-server-secret-key-do-not-echo"
TITAN = "amazon.titan-embed-text-v2:0"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


def bedrock(provider: str = "amazontitan", model: str = TITAN, **extra: Any) -> dict:
    settings = {
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "region": "us-east-1",
        "provider": provider,
        "model": model,
        **extra,
    }
    return {"service": "amazonbedrock", "service_settings": settings}


@pytest.fixture
def es(local_server: LocalServer) -> Iterator[Elasticsearch]:
    with Elasticsearch(local_server.url, api_key=API_KEY) as client:
        yield client


@pytest.fixture
def http(local_server: LocalServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"ApiKey {API_KEY}"}
    with httpx.Client(base_url=local_server.url, headers=headers) as client:
        yield client


def _client(server: LocalServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"ApiKey {API_KEY}"}
    )


def test_put_returns_the_endpoint_with_defaults_and_without_secrets(
    es: Elasticsearch,
) -> None:
    created = es.inference.put(
        inference_id="titan", task_type="text_embedding", inference_config=bedrock()
    )
    assert created.body == {
        "inference_id": "titan",
        "task_type": "text_embedding",
        "service": "amazonbedrock",
        "service_settings": {
            "region": "us-east-1",
            "model": TITAN,
            "provider": "AMAZONTITAN",
            "rate_limit": {"requests_per_minute": 240},
            "dimensions": 1024,
            "similarity": "cosine",
        },
        "chunking_settings": {
            "strategy": "sentence",
            "max_chunk_size": 250,
            "sentence_overlap": 1,
        },
    }
    assert list(created.body["service_settings"]) == [
        "region",
        "model",
        "provider",
        "rate_limit",
        "dimensions",
        "similarity",
    ]


def test_get_and_list_never_show_secrets(
    es: Elasticsearch, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="es_inference.local")
    es.inference.put(
        inference_id="titan", task_type="text_embedding", inference_config=bedrock()
    )
    es.inference.put(
        inference_id="chat",
        task_type="completion",
        inference_config=bedrock("anthropic", HAIKU),
    )
    texts = [
        http.get("/_inference/titan").text,
        http.get("/_inference").text,
        http.get("/_inference/_all").text,
        http.get("/_inference/completion/_all").text,
        caplog.text,
    ]
    for text in texts:
        assert ACCESS_KEY not in text and SECRET_KEY not in text
        assert "access_key" not in text and "secret_key" not in text


def test_listing_is_sorted_and_filtered_by_task_type(es: Elasticsearch) -> None:
    for name in ("b-embed", "a-embed"):
        es.inference.put(
            inference_id=name, task_type="text_embedding", inference_config=bedrock()
        )
    es.inference.put(
        inference_id="chat",
        task_type="completion",
        inference_config=bedrock("anthropic", HAIKU),
    )
    ids = [e["inference_id"] for e in es.inference.get()["endpoints"]]
    assert ids == ["a-embed", "b-embed", "chat"]
    chats = es.inference.get(task_type="completion", inference_id="_all")
    assert [e["inference_id"] for e in chats["endpoints"]] == ["chat"]
    assert es.inference.get(task_type="rerank", inference_id="_all").body == {
        "endpoints": []
    }


def test_provider_is_echoed_upper_case_and_task_settings_in_es_order(
    es: Elasticsearch,
) -> None:
    config = bedrock("Anthropic", HAIKU)
    config["task_settings"] = {"max_new_tokens": 256, "temperature": 0.2}
    created = es.inference.put(
        inference_id="chat", task_type="completion", inference_config=config
    )
    assert created.body == {
        "inference_id": "chat",
        "task_type": "completion",
        "service": "amazonbedrock",
        "service_settings": {
            "region": "us-east-1",
            "model": HAIKU,
            "provider": "ANTHROPIC",
            "rate_limit": {"requests_per_minute": 240},
        },
        "task_settings": {"temperature": 0.2, "max_new_tokens": 256},
    }


@pytest.mark.parametrize(
    ("model", "dims"),
    [
        (TITAN, 1024),
        ("cohere.embed-english-v3", 1024),
        ("cohere.embed-multilingual-v3", 1024),
        ("amazon.titan-embed-text-v1", 1536),
        ("amazon.titan-embed-image-v1", 1024),
    ],
)
def test_reported_dimensions_equal_the_vector_length(
    es: Elasticsearch, model: str, dims: int
) -> None:
    provider = "cohere" if model.startswith("cohere") else "amazontitan"
    created = es.inference.put(
        inference_id="e",
        task_type="text_embedding",
        inference_config=bedrock(provider, model),
    )
    assert created["service_settings"]["dimensions"] == dims
    result = es.inference.text_embedding(inference_id="e", input="hello")
    assert len(result["text_embedding"][0]["embedding"]) == dims


def test_put_with_the_task_type_only_in_the_body(http: httpx.Client) -> None:
    response = http.put(
        "/_inference/titan", json={**bedrock(), "task_type": "text_embedding"}
    )
    assert response.status_code == 200
    assert response.json()["task_type"] == "text_embedding"


def test_put_of_an_existing_id_is_rejected(es: Elasticsearch) -> None:
    es.inference.put(
        inference_id="titan", task_type="text_embedding", inference_config=bedrock()
    )
    with pytest.raises(BadRequestError) as info:
        es.inference.put(
            inference_id="titan", task_type="text_embedding", inference_config=bedrock()
        )
    assert info.value.body["error"]["type"] == "resource_already_exists_exception"
    assert (
        info.value.body["error"]["reason"]
        == "Inference endpoint [titan] already exists"
    )


def test_concurrent_puts_of_one_id_create_it_exactly_once(
    local_server: LocalServer,
) -> None:
    barrier = threading.Barrier(8)
    statuses: list[int] = []
    lock = threading.Lock()

    def create() -> None:
        with _client(local_server) as client:
            barrier.wait()
            response = client.put(
                "/_inference/text_embedding/race", json=bedrock(), timeout=10
            )
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [400] * 7


def test_delete_answers_acknowledged_with_empty_lists(es: Elasticsearch) -> None:
    es.inference.put(
        inference_id="titan", task_type="text_embedding", inference_config=bedrock()
    )
    deleted = es.inference.delete(inference_id="titan")
    assert deleted.body == {"acknowledged": True, "pipelines": [], "indexes": []}
    with pytest.raises(NotFoundError) as info:
        es.inference.get(inference_id="titan")
    assert info.value.body["error"] == {
        "root_cause": [
            {
                "type": "resource_not_found_exception",
                "reason": "Inference endpoint not found [titan]",
            }
        ],
        "type": "resource_not_found_exception",
        "reason": "Inference endpoint not found [titan]",
    }


def test_delete_of_a_referenced_endpoint_needs_force(
    local_server: LocalServer, es: Elasticsearch
) -> None:
    es.inference.put(
        inference_id="titan", task_type="text_embedding", inference_config=bedrock()
    )
    local_server.mark_in_use("titan", pipelines=["ingest-docs"], indexes=["docs"])
    expected = (
        "Inference endpoint titan is referenced by pipelines: [ingest-docs]. Ensure "
        "that no pipelines are using this inference endpoint, or use force to ignore "
        "this warning and delete the inference endpoint. Inference endpoint titan is "
        "being used in the mapping for indexes: [docs]. Ensure that no index "
        "mappings are using this inference endpoint, or use force to ignore this "
        "warning and delete the inference endpoint."
    )
    with pytest.raises(ConflictError) as info:
        es.inference.delete(inference_id="titan")
    assert info.value.body["error"]["type"] == "status_exception"
    assert info.value.body["error"]["reason"] == expected

    dry = es.inference.delete(inference_id="titan", dry_run=True)
    assert dry.body == {
        "acknowledged": False,
        "pipelines": ["ingest-docs"],
        "indexes": ["docs"],
        "error_message": expected,
    }
    assert es.inference.get(inference_id="titan")["endpoints"]
    assert es.inference.delete(inference_id="titan", force=True)["acknowledged"]
    assert es.inference.get()["endpoints"] == []


def test_only_index_references_start_the_message_with_a_space(
    local_server: LocalServer, http: httpx.Client
) -> None:
    http.put("/_inference/text_embedding/titan", json=bedrock())
    local_server.mark_in_use("titan", indexes=["docs"])
    reason = http.delete("/_inference/titan").json()["error"]["reason"]
    assert reason.startswith(" Inference endpoint titan is being used in the mapping")


def test_task_type_in_the_path_must_match_the_endpoint(
    es: Elasticsearch, http: httpx.Client
) -> None:
    es.inference.put(
        inference_id="titan", task_type="text_embedding", inference_config=bedrock()
    )
    for method in ("GET", "DELETE"):
        response = http.request(method, "/_inference/completion/titan")
        assert response.status_code == 400
        assert response.json()["error"]["reason"] == (
            "Requested task type [completion] does not match the inference "
            "endpoint's task type [text_embedding]"
        )


def test_update_changes_rate_limit_and_rotates_keys(
    local_server: LocalServer, http: httpx.Client
) -> None:
    http.put("/_inference/text_embedding/titan", json=bedrock())
    response = http.put(
        "/_inference/text_embedding/titan/_update",
        json={
            "service_settings": {
                "access_key": "AKIDROTATED",
                "secret_key": "rotated-secret",
                "rate_limit": {"requests_per_minute": 30},
            }
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["service_settings"]["rate_limit"] == {"requests_per_minute": 30}
    assert "rotated" not in response.text
    assert local_server._app.store.secrets("titan") == {
        "access_key": "AKIDROTATED",
        "secret_key": "rotated-secret",
    }


def test_update_with_the_single_segment_path_updates_task_settings(
    http: httpx.Client,
) -> None:
    http.put("/_inference/completion/chat", json=bedrock("cohere", "cohere.command"))
    response = http.put(
        "/_inference/chat/_update",
        json={"task_settings": {"top_k": 0.5, "temperature": 0.1}},
    )
    assert response.json()["task_settings"] == {"temperature": 0.1, "top_k": 0.5}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            {"service_settings": {"access_key": "AKIDONLY"}},
            "Validation Failed: 1: [service_settings] [access_key] and [secret_key] "
            "must be updated together; missing: [secret_key];",
        ),
        (
            {"service_settings": {"region": "eu-west-1"}},
            "Validation Failed: 1: [service_settings] does not allow the setting "
            "[region];",
        ),
        ({}, "Request body is empty"),
        (
            {"service": "amazonbedrock"},
            "Request contained fields which cannot be updated, remove these fields "
            "and try again [{service=amazonbedrock}]",
        ),
    ],
)
def test_update_rejects_what_cannot_change(
    http: httpx.Client, body: dict[str, Any], reason: str
) -> None:
    http.put("/_inference/text_embedding/titan", json=bedrock())
    response = http.put("/_inference/text_embedding/titan/_update", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["reason"] == reason


def test_update_errors_mask_secrets(http: httpx.Client) -> None:
    http.put("/_inference/text_embedding/titan", json=bedrock())
    response = http.put(
        "/_inference/text_embedding/titan/_update",
        json={"service_settings": {"secret_key": SECRET_KEY}, "task_settings": "x"},
    )
    assert response.status_code == 400
    assert SECRET_KEY not in response.text
    assert "::es_redacted::" in response.text


def test_legacy_versions_use_models_and_model_id(
    local_server_factory: Callable[..., LocalServer],
) -> None:
    server = local_server_factory(es_version="8.14.0")
    with _client(server) as client:
        created = client.put("/_inference/text_embedding/titan", json=bedrock())
        assert created.json() == {
            "model_id": "titan",
            "task_type": "text_embedding",
            "service": "amazonbedrock",
            "service_settings": {
                "region": "us-east-1",
                "model": TITAN,
                "provider": "AMAZONTITAN",
                "rate_limit": {"requests_per_minute": 240},
                "dimensions": 1024,
                "similarity": "cosine",
            },
            "task_settings": {},
        }
        listed = client.get("/_inference").json()
        assert list(listed) == ["models"]
        assert listed["models"][0]["model_id"] == "titan"
        missing = client.get("/_inference/nothing").json()
        assert missing["error"]["reason"] == "Model not found [nothing]"
        assert client.delete("/_inference/titan").json() == {"acknowledged": True}
        update = client.put("/_inference/text_embedding/titan/_update", json={})
        assert update.json() == {
            "error": "no handler found for uri [/_inference/text_embedding/titan/"
            "_update] and method [PUT]",
            "status": 400,
        }


def test_version_8_16_prints_empty_task_settings_and_default_chunking(
    local_server_factory: Callable[..., LocalServer],
) -> None:
    server = local_server_factory(es_version="8.16.0")
    with _client(server) as client:
        body = client.put("/_inference/text_embedding/titan", json=bedrock()).json()
        assert body["task_settings"] == {}
        assert body["chunking_settings"]["strategy"] == "sentence"
        single = client.put("/_inference/titan/_update", json={})
        assert single.json()["error"]["reason"] == "Unknown task_type [titan]"


def test_version_8_15_deletes_with_pipelines_only(
    local_server_factory: Callable[..., LocalServer],
) -> None:
    server = local_server_factory(es_version="8.15.1")
    with _client(server) as client:
        client.put("/_inference/text_embedding/titan", json=bedrock())
        server.mark_in_use("titan", pipelines=["p"])
        refused = client.delete("/_inference/titan")
        assert refused.status_code == 409
        assert refused.json()["error"]["reason"] == (
            "Inference endpoint titan is referenced by pipelines and cannot be "
            "deleted. Use `force` to delete it anyway, or use `dry_run` to list the "
            "pipelines that reference it."
        )
        forced = client.delete("/_inference/titan", params={"force": "true"})
        assert forced.json() == {"acknowledged": True, "pipelines": []}
