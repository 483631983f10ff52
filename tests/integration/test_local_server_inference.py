"""Inference on the local server: embeddings, completions and in-cluster models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from elasticsearch import ApiError, BadRequestError, Elasticsearch, NotFoundError

from es_inference.local import LocalServer

API_KEY = "test-api-key"
TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
CONTEXT = (
    "Elastic is a search company. The with statement wraps a block in a context "
    "manager. Floating point numbers are binary fractions."
)
PROMPT = CONTEXT + "\nQuestion: What does the with statement use?"


def bedrock(provider: str, model: str, **task_settings: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "service": "amazonbedrock",
        "service_settings": {
            "access_key": "AKIDINFERENCE",
            "secret_key": "inference-secret",
            "region": "us-east-1",
            "provider": provider,
            "model": model,
        },
    }
    if task_settings:
        config["task_settings"] = task_settings
    return config


def http_client(server: LocalServer) -> httpx.Client:
    headers = {"Authorization": f"ApiKey {API_KEY}"}
    return httpx.Client(base_url=server.url, headers=headers)


@pytest.fixture
def es(local_server: LocalServer) -> Iterator[Elasticsearch]:
    with Elasticsearch(local_server.url, api_key=API_KEY) as client:
        client.inference.put(
            inference_id="titan",
            task_type="text_embedding",
            inference_config=bedrock("amazontitan", TITAN),
        )
        client.inference.put(
            inference_id="cohere",
            task_type="text_embedding",
            inference_config=bedrock("cohere", COHERE),
        )
        client.inference.put(
            inference_id="chat",
            task_type="completion",
            inference_config=bedrock("anthropic", HAIKU),
        )
        yield client


@pytest.fixture
def http(local_server: LocalServer, es: Elasticsearch) -> Iterator[httpx.Client]:
    with http_client(local_server) as client:
        yield client


def vectors(body: Any) -> np.ndarray:
    return np.array([row["embedding"] for row in body["text_embedding"]], np.float32)


def test_embeddings_come_back_in_input_order_and_normalised(es: Elasticsearch) -> None:
    texts = ["alpha particle", "beta decay", "gamma ray", "delta function"]
    batch = vectors(es.inference.text_embedding(inference_id="cohere", input=texts))
    assert batch.shape == (4, 1024)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, rtol=1e-5)
    for i, text in enumerate(texts):
        single = es.inference.inference(inference_id="cohere", input=text)
        np.testing.assert_array_equal(vectors(single.body)[0], batch[i])


def test_embeddings_are_semantically_meaningful(es: Elasticsearch) -> None:
    texts = [
        "with statement context manager",
        "The with statement wraps the execution of a block with methods defined by "
        "a context manager.",
        "Floating point numbers are represented in hardware as base 2 fractions.",
    ]
    batch = vectors(es.inference.text_embedding(inference_id="cohere", input=texts))
    query, about_with, about_floats = batch
    assert float(query @ about_with) > float(query @ about_floats) + 0.2


def test_floats_survive_the_round_trip_as_float32(http: httpx.Client) -> None:
    raw = http.post("/_inference/titan", json={"input": "round trip"}).text
    values = vectors(
        http.post("/_inference/titan", json={"input": "round trip"}).json()
    )
    numbers = raw.split("[", 2)[2].split("]")[0].split(",")
    assert [str(np.float32(v)) for v in values[0]][:5] == [
        str(np.float32(n)) for n in numbers[:5]
    ]
    assert all(len(n.lstrip("-")) <= 14 for n in numbers)


def test_titan_takes_one_input_per_request(es: Elasticsearch) -> None:
    with pytest.raises(ApiError) as info:
        es.inference.text_embedding(inference_id="titan", input=["one", "two"])
    assert info.value.meta.status == 500
    assert info.value.body["error"]["type"] == "exception"
    assert info.value.body["error"]["reason"] == (
        "[input] cannot contain more than one string"
    )


def test_cohere_rejects_more_than_96_inputs(http: httpx.Client) -> None:
    ok = http.post("/_inference/cohere", json={"input": ["x"] * 96})
    assert ok.status_code == 200
    response = http.post("/_inference/cohere", json={"input": ["x"] * 97})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "exception"
    assert error["reason"].startswith("AmazonBedrock invoke model failure: [")
    assert "expected maximum item count: 96, found: 97" in error["reason"]
    assert error["caused_by"]["type"] == "validation_exception"
    assert "Status Code: 400" in error["caused_by"]["reason"]


@pytest.mark.parametrize(
    ("endpoint", "text", "fragment"),
    [
        ("titan", "", "#/inputText: expected minLength: 1, actual: 0"),
        ("titan", "   ", "#/inputText: expected a string with at least one"),
        ("cohere", "\n", "#/texts/0: expected a string with at least one"),
        (
            "titan",
            "a" * 50_001,
            "#/inputText: expected maxLength: 50000, actual: 50001",
        ),
    ],
)
def test_inputs_bedrock_rejects_fail_upstream(
    http: httpx.Client, endpoint: str, text: str, fragment: str
) -> None:
    response = http.post(f"/_inference/{endpoint}", json={"input": [text]})
    assert response.status_code == 500
    assert fragment in response.json()["error"]["reason"]
    assert response.json()["error"]["caused_by"]["type"] == "validation_exception"


def test_titan_accepts_exactly_50000_characters(http: httpx.Client) -> None:
    response = http.post("/_inference/titan", json={"input": "a" * 50_000})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("path", "payload", "error_type", "reason"),
    [
        (
            "/_inference/titan",
            {},
            "action_request_validation_exception",
            "Validation Failed: 1: Field [input] cannot be null;",
        ),
        (
            "/_inference/titan",
            {"input": None},
            "action_request_validation_exception",
            "Validation Failed: 1: Field [input] cannot be null;",
        ),
        (
            "/_inference/titan",
            {"input": []},
            "action_request_validation_exception",
            "Validation Failed: 1: Field [input] cannot be an empty array;",
        ),
        (
            "/_inference/text_embedding/titan",
            {"input": "x", "query": "q"},
            "action_request_validation_exception",
            "Validation Failed: 1: Field [query] cannot be specified for task type "
            "[text_embedding];",
        ),
        (
            "/_inference/completion/chat",
            {"input": "x", "input_type": "search"},
            "action_request_validation_exception",
            "Validation Failed: 1: Field [input_type] cannot be specified for task "
            "type [completion];",
        ),
        (
            "/_inference/completion/titan",
            {"input": "x"},
            "status_exception",
            "Incompatible task_type, the requested type [completion] does not match "
            "the model type [text_embedding]",
        ),
        (
            "/_inference/nope/titan",
            {"input": "x"},
            "status_exception",
            "Unknown task_type [nope]",
        ),
        (
            "/_inference/titan",
            {"input": "x", "colour": "red"},
            "x_content_parse_exception",
            "[1:14] [cluster:monitor/xpack/inference] unknown field [colour]",
        ),
        (
            "/_inference/completion/chat",
            {"input": "x", "task_settings": {"temperature": 2.0}},
            "validation_exception",
            "Validation Failed: 1: [task_settings] Invalid value [2.0]. [temperature] "
            "must be a less than or equal to [1.0];",
        ),
    ],
)
def test_invalid_inference_requests(
    http: httpx.Client, path: str, payload: Any, error_type: str, reason: str
) -> None:
    response = http.post(path, json=payload)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["reason"]) == (error_type, reason)


def test_input_type_is_case_insensitive_and_validated(http: httpx.Client) -> None:
    for value in ("ingest", "SEARCH", "Classification", "clustering"):
        payload = {"input": "x", "input_type": value}
        assert http.post("/_inference/cohere", json=payload).status_code == 200
    response = http.post(
        "/_inference/cohere", json={"input": "x", "input_type": "internal_ingest"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "x_content_parse_exception"
    assert error["reason"].endswith("failed to parse field [input_type]")
    assert error["caused_by"] == {
        "type": "illegal_argument_exception",
        "reason": "Unrecognized input_type [internal_ingest]",
    }


def test_unknown_endpoint_is_a_404(es: Elasticsearch) -> None:
    with pytest.raises(NotFoundError) as info:
        es.inference.inference(inference_id="missing", input="x")
    assert (
        info.value.body["error"]["reason"] == "Inference endpoint not found [missing]"
    )


def test_timeout_is_accepted_in_query_and_body(http: httpx.Client) -> None:
    assert (
        http.post("/_inference/titan?timeout=5s", json={"input": "x"}).status_code
        == 200
    )
    payload = {"input": "x", "timeout": "2m"}
    assert http.post("/_inference/titan", json=payload).status_code == 200
    bad = http.post("/_inference/titan?timeout=soon", json={"input": "x"})
    assert bad.json()["error"]["reason"] == (
        "failed to parse setting [timeout] with value [soon] as a time value: unit "
        "is missing or unrecognized"
    )


def test_max_input_tokens_truncates_before_embedding(
    local_server: LocalServer, http: httpx.Client
) -> None:
    config = bedrock("amazontitan", TITAN)
    config["service_settings"]["max_input_tokens"] = 2
    created = http.put("/_inference/text_embedding/short", json=config).json()
    assert list(created["service_settings"])[-2:] == ["max_input_tokens", "similarity"]
    long = http.post("/_inference/short", json={"input": "abcdef and more"}).json()
    cut = http.post("/_inference/short", json={"input": "abcdef"}).json()
    assert long == cut


@pytest.mark.parametrize("fmt", ["bytes", "bits"])
def test_byte_and_bit_switches_change_the_result_shape(
    local_server: LocalServer, http: httpx.Client, fmt: str
) -> None:
    floats = vectors(http.post("/_inference/cohere", json={"input": "x"}).json())[0]
    local_server.set_embedding_format(fmt)
    body = http.post("/_inference/cohere", json={"input": "x"}).json()
    row = np.array(body[f"text_embedding_{fmt}"][0]["embedding"])
    assert row.min() >= -128 and row.max() <= 127
    if fmt == "bytes":
        assert row.size == 1024
        np.testing.assert_allclose(row / 127.0, floats, atol=0.01)
    else:
        assert row.size * 8 == 1024
        bits = np.unpackbits(row.astype(np.int8).view(np.uint8))
        np.testing.assert_array_equal(bits, (floats > 0).astype(np.uint8))


def test_completion_answers_from_the_closest_context(es: Elasticsearch) -> None:
    result = es.inference.completion(inference_id="chat", input=PROMPT)
    text = result["completion"][0]["result"]
    assert "The with statement wraps a block in a context manager." in text
    assert "Floating point" not in text
    again = es.inference.inference(inference_id="chat", input=PROMPT)
    assert again.body == result.body


def test_completion_without_context_says_it_is_a_stand_in(es: Elasticsearch) -> None:
    text = es.inference.completion(inference_id="chat", input="What is Elastic?")
    assert text["completion"][0]["result"] == (
        "The local stand-in model found no context to answer from: What is Elastic?"
    )


def test_max_new_tokens_caps_the_answer(es: Elasticsearch, http: httpx.Client) -> None:
    capped = http.post(
        "/_inference/completion/chat",
        json={"input": PROMPT, "task_settings": {"max_new_tokens": 3}},
    ).json()
    assert capped == {"completion": [{"result": "Elastic is a"}]}
    es.inference.put(
        inference_id="short",
        task_type="completion",
        inference_config=bedrock("mistral", "mistral.small", max_new_tokens=2),
    )
    stored = es.inference.completion(inference_id="short", input=PROMPT)
    assert stored["completion"][0]["result"] == "Elastic is"


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("amazontitan", "amazon.titan-text-express-v1"),
        ("anthropic", HAIKU),
        ("ai21labs", "ai21.jamba-instruct-v1:0"),
        ("cohere", "cohere.command-r-v1:0"),
        ("meta", "meta.llama3-8b-instruct-v1:0"),
        ("mistral", "mistral.mistral-large-2402-v1:0"),
    ],
)
def test_every_provider_completes(es: Elasticsearch, provider: str, model: str) -> None:
    es.inference.put(
        inference_id="p",
        task_type="completion",
        inference_config=bedrock(provider, model),
    )
    result = es.inference.completion(inference_id="p", input=PROMPT)
    assert result["completion"][0]["result"]


def test_blank_completion_input_fails_like_converse(http: httpx.Client) -> None:
    response = http.post("/_inference/completion/chat", json={"input": " "})
    assert response.status_code == 500
    assert response.json()["error"]["reason"] == (
        "AmazonBedrock converse failure: [The text field in the ContentBlock object "
        "at messages.0.content.0 is blank. Add text to the text field, and try again.]"
    )


def test_per_request_top_k_follows_the_provider_rules(
    es: Elasticsearch, http: httpx.Client
) -> None:
    es.inference.put(
        inference_id="titan-text",
        task_type="completion",
        inference_config=bedrock("amazontitan", "amazon.titan-text-express-v1"),
    )
    ok = http.post(
        "/_inference/chat", json={"input": PROMPT, "task_settings": {"top_k": 0.5}}
    )
    assert ok.status_code == 200
    with pytest.raises(BadRequestError) as info:
        es.inference.completion(
            inference_id="titan-text", input=PROMPT, task_settings={"top_k": 0.5}
        )
    assert info.value.body["error"]["reason"] == (
        "The [top_k] task parameter is not available for provider [amazontitan]"
    )


E5 = {"model_id": ".multilingual-e5-small", "num_allocations": 2, "num_threads": 1}


def stats(client: httpx.Client, ident: str, **params: str) -> httpx.Response:
    return client.get(f"/_ml/trained_models/{ident}/_stats", params=params)


def test_in_cluster_model_becomes_allocated_after_polls(
    local_server_factory: Callable[..., LocalServer],
) -> None:
    server = local_server_factory(allocation_polls=2)
    with http_client(server) as client:
        created = client.put(
            "/_inference/text_embedding/my-e5",
            json={"service": "elasticsearch", "service_settings": E5},
        )
        assert created.json()["service_settings"] == {
            "num_allocations": 2,
            "num_threads": 1,
            "model_id": ".multilingual-e5-small",
        }
        blocked = client.post("/_inference/my-e5", json={"input": "x"})
        assert blocked.status_code == 409
        assert blocked.json()["error"]["reason"] == (
            "Trained model deployment [my-e5] is not allocated to any nodes"
        )

        states = []
        for _ in range(3):
            entry = stats(client, "my-e5").json()["trained_model_stats"][0]
            deployment = entry["deployment_stats"]
            states.append(deployment["allocation_status"]["state"])
        assert states == ["starting", "starting", "fully_allocated"]
        assert deployment["deployment_id"] == "my-e5"
        assert deployment["allocation_status"] == {
            "allocation_count": 2,
            "target_allocation_count": 2,
            "state": "fully_allocated",
        }
        assert deployment["nodes"][0]["routing_state"]["routing_state"] == "started"

        result = client.post("/_inference/my-e5", json={"input": ["a", "b"]}).json()
        assert len(result["text_embedding"][0]["embedding"]) == 384
        by_model = stats(client, ".multilingual-e5-small").json()
        assert by_model["count"] == 1
        assert (
            by_model["trained_model_stats"][0]["inference_stats"]["inference_count"]
            == 2
        )


def test_in_cluster_deployment_states_can_be_forced(
    local_server_factory: Callable[..., LocalServer],
) -> None:
    server = local_server_factory(allocation_delay_s=60)
    with http_client(server) as client:
        settings = {**E5, "num_allocations": 1}
        client.put(
            "/_inference/text_embedding/e5",
            json={"service": "elasticsearch", "service_settings": settings},
        )
        server.set_allocation_state("e5", "failed")
        deployment = stats(client, "e5").json()["trained_model_stats"][0][
            "deployment_stats"
        ]
        assert deployment["state"] == "failed" and deployment["reason"]
        server.set_allocation_state("e5", "fully_allocated")
        assert client.post("/_inference/e5", json={"input": "x"}).status_code == 200
        server.set_allocation_state("e5", None)
        assert client.post("/_inference/e5", json={"input": "x"}).status_code == 409


def test_trained_model_stats_for_unknown_ids(local_server: LocalServer) -> None:
    with http_client(local_server) as client:
        assert stats(client, "nothing").json() == {
            "count": 0,
            "trained_model_stats": [],
        }
        missing = stats(client, "nothing", allow_no_match="false")
        assert missing.status_code == 404
        assert missing.json()["error"]["reason"] == (
            "No known trained model with model_id [nothing]"
        )


def test_in_cluster_models_need_their_settings(local_server: LocalServer) -> None:
    with http_client(local_server) as client:
        response = client.put(
            "/_inference/text_embedding/e5",
            json={
                "service": "elasticsearch",
                "service_settings": {"model_id": ".multilingual-e5-small"},
            },
        )
        assert response.json()["error"]["reason"] == (
            "Validation Failed: 1: [service_settings] does not contain the required "
            "setting [num_threads];"
        )
        adaptive = client.put(
            "/_inference/text_embedding/e5",
            json={
                "service": "elasticsearch",
                "service_settings": {
                    "model_id": ".multilingual-e5-small",
                    "num_threads": 1,
                    "adaptive_allocations": {
                        "enabled": True,
                        "min_number_of_allocations": 1,
                        "max_number_of_allocations": 4,
                    },
                },
            },
        )
        assert adaptive.status_code == 200
        assert "adaptive_allocations" in adaptive.json()["service_settings"]
