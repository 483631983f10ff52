"""Creation requests the local server rejects, with Elasticsearch's exact messages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from es_inference.local import LocalServer

API_KEY = "test-api-key"
SECRET_KEY = "validation-secret-key-never-echoed"
TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


def settings(provider: str = "amazontitan", model: str = TITAN, **extra: Any) -> dict:
    return {
        "access_key": "AKIDVALIDATION",
        "secret_key": SECRET_KEY,
        "region": "us-east-1",
        "provider": provider,
        "model": model,
        **extra,
    }


def body(service_settings: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"service": "amazonbedrock", "service_settings": service_settings, **extra}


@pytest.fixture
def http(local_server: LocalServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"ApiKey {API_KEY}"}
    with httpx.Client(base_url=local_server.url, headers=headers) as client:
        yield client


def reject(client: httpx.Client, path: str, payload: Any) -> dict[str, Any]:
    response = client.put(path, json=payload)
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert response.json()["status"] == 400
    return error


EMBED = "/_inference/text_embedding/e"
CHAT = "/_inference/completion/c"


@pytest.mark.parametrize(
    ("path", "payload", "error_type", "reason"),
    [
        (
            EMBED,
            {"service_settings": settings()},
            "status_exception",
            "Inference endpoint configuration is missing the [service] setting",
        ),
        (
            EMBED,
            {"service": "openai", "service_settings": settings()},
            "status_exception",
            "Unknown service [openai]",
        ),
        (
            EMBED,
            {"service": "amazonbedrock"},
            "status_exception",
            "Missing required field [service_settings]",
        ),
        (
            EMBED,
            body(settings(colour="blue")),
            "status_exception",
            "Configuration contains settings [{colour=blue}] unknown to the "
            "[amazonbedrock] service",
        ),
        (
            EMBED,
            body(settings(), extra=True),
            "status_exception",
            "Configuration contains settings [{extra=true}] unknown to the "
            "[amazonbedrock] service",
        ),
        (
            EMBED,
            body({"access_key": "a", "secret_key": "b"}),
            "validation_exception",
            "Validation Failed: 1: [service_settings] does not contain the required "
            "setting [model];2: [service_settings] does not contain the required "
            "setting [region];3: [service_settings] does not contain the required "
            "setting [provider];",
        ),
        (
            EMBED,
            body({"region": "us-east-1", "provider": "amazontitan", "model": TITAN}),
            "validation_exception",
            "Validation Failed: 1: [secret_settings] does not contain the required "
            "setting [access_key];2: [secret_settings] does not contain the required "
            "setting [secret_key];",
        ),
        (
            EMBED,
            body(settings(provider="openai")),
            "validation_exception",
            "Validation Failed: 1: [service_settings] Invalid value [openai] received. "
            "[provider] must be one of [ai21labs, amazontitan, anthropic, cohere, "
            "meta, mistral];",
        ),
        (
            EMBED,
            body(settings(region="")),
            "validation_exception",
            "Validation Failed: 1: [service_settings] Invalid value empty string. "
            "[region] must be a non-empty string;",
        ),
        (
            EMBED,
            body(settings(dimensions=512)),
            "validation_exception",
            "Validation Failed: 1: [service_settings] does not allow the setting "
            "[dimensions];",
        ),
        (
            EMBED,
            body(settings(similarity="hamming")),
            "validation_exception",
            "Validation Failed: 1: [service_settings] Invalid value [hamming] "
            "received. [similarity] must be one of [cosine, dot_product, l2_norm];",
        ),
        (
            EMBED,
            body(settings(rate_limit={"requests_per_minute": 0})),
            "validation_exception",
            "Validation Failed: 1: [service_settings] Invalid value [0]. "
            "[requests_per_minute] must be a positive long;",
        ),
        (
            EMBED,
            body(settings("anthropic", HAIKU)),
            "status_exception",
            "The [text_embedding] task type for provider [anthropic] is not available",
        ),
        (
            "/_inference/rerank/r",
            body(settings()),
            "status_exception",
            "The [amazonbedrock] service does not support task type [rerank]",
        ),
        (
            "/_inference/chat_completion/r",
            body(settings("anthropic", HAIKU)),
            "status_exception",
            "The [amazonbedrock] service does not support task type [chat_completion]",
        ),
        (
            CHAT,
            body(settings("anthropic", HAIKU), task_settings={"max_new_tokens": 0}),
            "validation_exception",
            "Validation Failed: 1: [task_settings] Invalid value [0]. "
            "[max_new_tokens] must be a positive integer;",
        ),
        (
            CHAT,
            body(
                settings("anthropic", HAIKU),
                task_settings={"temperature": 1.5, "top_p": -0.25},
            ),
            "validation_exception",
            "Validation Failed: 1: [task_settings] Invalid value [1.5]. [temperature] "
            "must be a less than or equal to [1.0];2: [task_settings] Invalid value "
            "[-0.25]. [top_p] must be a greater than or equal to [0.0];",
        ),
        (
            CHAT,
            body(settings("anthropic", HAIKU), task_settings={"temperature": 1}),
            "validation_exception",
            "Validation Failed: 1: field [temperature] is not of the expected type. "
            "The value [1] cannot be converted to a [Double];",
        ),
        (
            CHAT,
            body(
                settings("amazontitan", "amazon.titan-text-express-v1"),
                task_settings={"top_k": 0.5},
            ),
            "status_exception",
            "The [top_k] task parameter is not available for provider [amazontitan]",
        ),
        (
            CHAT,
            body(settings("anthropic", HAIKU), task_settings={"seed": 1}),
            "status_exception",
            "Configuration contains settings [{seed=1}] unknown to the "
            "[amazonbedrock] service",
        ),
        (
            EMBED,
            body(settings(), task_settings={"truncate": "END"}),
            "status_exception",
            "The [text_embedding] task type for provider [amazontitan] does not "
            "allow [truncate] field",
        ),
        (
            EMBED,
            body(settings("cohere", COHERE), task_settings={"truncate": "MIDDLE"}),
            "validation_exception",
            "Validation Failed: 1: [task_settings] Invalid value [MIDDLE] received. "
            "[truncate] must be one of [end, none, start];",
        ),
        (
            EMBED,
            body(settings(), task_type="completion"),
            "status_exception",
            "Cannot resolve conflicting task_type parameter in the request URL "
            "[text_embedding] and the request body [completion]",
        ),
        (
            "/_inference/e",
            body(settings()),
            "status_exception",
            "model is missing required setting [task_type]",
        ),
        (
            "/_inference/bad/e",
            body(settings()),
            "status_exception",
            "Unknown task_type [bad]",
        ),
        (
            "/_inference/text_embedding/Bad_ID",
            body(settings()),
            "action_request_validation_exception",
            "Validation Failed: 1: Invalid inference_id; 'Bad_ID' can contain "
            "lowercase alphanumeric (a-z and 0-9), hyphens or underscores; must start "
            "and end with alphanumeric;",
        ),
        (
            "/_inference/text_embedding/-dash",
            body(settings()),
            "action_request_validation_exception",
            "Validation Failed: 1: Invalid inference_id; '-dash' can contain "
            "lowercase alphanumeric (a-z and 0-9), hyphens or underscores; must start "
            "and end with alphanumeric;",
        ),
    ],
)
def test_invalid_creation_is_rejected_with_the_es_message(
    http: httpx.Client, path: str, payload: Any, error_type: str, reason: str
) -> None:
    error = reject(http, path, payload)
    assert (error["type"], error["reason"]) == (error_type, reason)
    assert error["root_cause"] == [{"type": error_type, "reason": reason}]
    assert http.get("/_inference").json() == {"endpoints": []}


def test_chunking_settings_on_a_completion_endpoint_are_unknown(
    http: httpx.Client,
) -> None:
    payload = body(
        settings("anthropic", HAIKU),
        chunking_settings={"strategy": "word", "max_chunk_size": 100, "overlap": 10},
    )
    reason = reject(http, CHAT, payload)["reason"]
    assert reason.startswith("Configuration contains settings [{chunking_settings={")
    assert reason.endswith("}}] unknown to the [amazonbedrock] service")
    assert "strategy=word" in reason and "overlap=10" in reason


@pytest.mark.parametrize(
    ("chunking", "error_type", "reason"),
    [
        (
            {"max_chunk_size": 100},
            "illegal_argument_exception",
            "Can't generate Chunker without ChunkingStrategy provided",
        ),
        (
            {"strategy": "paragraph"},
            "illegal_argument_exception",
            "Invalid chunkingStrategy paragraph",
        ),
        (
            {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 2},
            "validation_exception",
            "Validation Failed: 1: sentence_overlap[2] must be either 0 or 1;",
        ),
        (
            {"strategy": "word", "max_chunk_size": 100},
            "validation_exception",
            "Validation Failed: 1: [chunking_settings] does not contain the required "
            "setting [overlap];",
        ),
        (
            {"strategy": "word", "max_chunk_size": 100, "overlap": 60},
            "validation_exception",
            "Validation Failed: 1: [chunking_settings] Invalid value [60.0]. "
            "[overlap] must be a less than or equal to [50.0];",
        ),
        (
            {"strategy": "sentence", "max_chunk_size": 10, "overlap": 1},
            "validation_exception",
            "Validation Failed: 1: Sentence based chunking settings can not have the "
            "following settings: [overlap];2: [chunking_settings] Invalid value "
            "[10.0]. [max_chunk_size] must be a greater than or equal to [20.0];",
        ),
    ],
)
def test_invalid_chunking_settings(
    http: httpx.Client, chunking: dict[str, Any], error_type: str, reason: str
) -> None:
    error = reject(http, EMBED, body(settings(), chunking_settings=chunking))
    assert (error["type"], error["reason"]) == (error_type, reason)


@pytest.mark.parametrize(
    ("chunking", "stored"),
    [
        ({}, {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1}),
        (
            {"strategy": "word", "max_chunk_size": 120, "overlap": 40},
            {"strategy": "word", "max_chunk_size": 120, "overlap": 40},
        ),
        ({"strategy": "none"}, {"strategy": "none"}),
        (
            {"strategy": "recursive", "max_chunk_size": 100, "separators": ["\n"]},
            {"strategy": "recursive", "max_chunk_size": 100, "separators": ["\n"]},
        ),
    ],
)
def test_valid_chunking_settings_are_stored(
    http: httpx.Client, chunking: dict[str, Any], stored: dict[str, Any]
) -> None:
    response = http.put(EMBED, json=body(settings(), chunking_settings=chunking))
    assert response.json()["chunking_settings"] == stored


def test_a_failing_validation_call_names_the_upstream_cause(
    http: httpx.Client,
) -> None:
    error = reject(http, EMBED, body(settings(access_key="invalid")))
    assert error["type"] == "status_exception"
    assert error["reason"] == (
        "Could not complete inference endpoint creation as validation call to "
        "service threw an exception."
    )
    cause = error["caused_by"]
    assert cause["type"] == "exception"
    assert cause["reason"] == (
        "AmazonBedrock invoke model failure: [The security token included in the "
        "request is invalid.]"
    )
    assert cause["caused_by"]["type"] == "bedrock_runtime_exception"
    assert "Status Code: 403" in cause["caused_by"]["reason"]
    assert error["root_cause"] == [{"type": "exception", "reason": cause["reason"]}]


@pytest.mark.parametrize(
    ("path", "changed", "cause_type", "message"),
    [
        (EMBED, {"region": "us-east"}, "sdk_client_exception", "Unable to execute"),
        (EMBED, {"region": "US-EAST-1"}, "sdk_client_exception", "Unable to execute"),
        (
            EMBED,
            {"model": "amazon.titan-text-express-v1"},
            "validation_exception",
            "model",
        ),
        (EMBED, {"model": "titan-embed-text-v2:0"}, "validation_exception", "model"),
        (EMBED, {"provider": "cohere"}, "validation_exception", "model"),
        (
            CHAT,
            {"provider": "anthropic", "model": "amazon.titan-embed-text-v2:0"},
            "validation_exception",
            "model",
        ),
        (
            CHAT,
            {"provider": "anthropic", "model": "us.anthropic.claude-3-haiku-v1:0"},
            None,
            None,
        ),
        (EMBED, {"model": "arn:aws:bedrock:us-east-1::foundation-model/x"}, None, None),
        (EMBED, {"region": "us-gov-west-1"}, None, None),
        (EMBED, {"region": "ap-southeast-2"}, None, None),
    ],
)
def test_the_validation_call_fails_for_a_region_or_model_bedrock_cannot_serve(
    http: httpx.Client,
    path: str,
    changed: dict[str, str],
    cause_type: str | None,
    message: str | None,
) -> None:
    response = http.put(path, json=body(settings(**changed)))
    if cause_type is None:
        assert response.status_code == 200, response.text
        return
    error = reject(http, path, body(settings(**changed)))
    assert error["type"] == "status_exception"
    assert error["reason"].startswith("Could not complete inference endpoint creation")
    upstream = error["caused_by"]["caused_by"]
    assert upstream["type"] == cause_type
    assert message is not None and message in upstream["reason"]
    assert http.get(path).status_code == 404


def test_errors_never_echo_the_secret_key(http: httpx.Client) -> None:
    for payload in (
        body(settings(leaked=SECRET_KEY)),
        body(settings(secret_key=12345)),
        body({**settings(), "provider": "nope", "shadow": SECRET_KEY}),
    ):
        response = http.put(EMBED, json=payload)
        assert response.status_code == 400
        assert SECRET_KEY not in response.text and "12345" not in response.text
