"""Server-sent event streams of the local server, checked byte for byte."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from elasticsearch import Elasticsearch

from es_inference.local import LocalServer

API_KEY = "test-api-key"
BOM = b"\xef\xbb\xbf"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
PROMPT = (
    "Elastic is a search company. It makes Elasticsearch and Kibana. The sky is "
    "blue on a clear day.\nQuestion: What does Elastic make?"
)
STREAM = "/_inference/completion/chat/_stream"


def bedrock(provider: str, model: str) -> dict:
    return {
        "service": "amazonbedrock",
        "service_settings": {
            "access_key": "AKIDSTREAM",
            "secret_key": "stream-secret",
            "region": "us-east-1",
            "provider": provider,
            "model": model,
        },
    }


@pytest.fixture
def http(local_server: LocalServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"ApiKey {API_KEY}"}
    with httpx.Client(base_url=local_server.url, headers=headers) as client:
        client.put("/_inference/completion/chat", json=bedrock("anthropic", HAIKU))
        client.put(
            "/_inference/text_embedding/titan",
            json=bedrock("amazontitan", "amazon.titan-embed-text-v2:0"),
        )
        yield client


def parse(raw: bytes) -> list[tuple[str, str]]:
    """Split a stream into (event, data) pairs, insisting on a BOM before each."""
    events = []
    for block in raw.split(b"\n\n")[:-1]:
        assert block.startswith(BOM), block
        lines = block[len(BOM) :].decode().split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: ")
        events.append((lines[0][7:], lines[1][6:]))
    assert raw.endswith(b"\n\n")
    return events


def deltas(events: list[tuple[str, str]]) -> str:
    text = ""
    for kind, data in events:
        if kind == "message" and data != "[DONE]":
            text += "".join(d["delta"] for d in json.loads(data)["completion"])
    return text


def completion(client: httpx.Client, prompt: str = PROMPT) -> str:
    body = client.post("/_inference/completion/chat", json={"input": prompt}).json()
    result: str = body["completion"][0]["result"]
    return result


def test_stream_framing_is_byte_exact(http: httpx.Client) -> None:
    response = http.post(STREAM, json={"input": PROMPT})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    raw = response.content
    assert raw.count(BOM) == raw.count(b"event: ")
    assert raw.endswith(BOM + b"event: message\ndata: [DONE]\n\n")
    first = raw.split(b"\n\n")[0] + b"\n\n"
    assert (
        first == BOM + b'event: message\ndata: {"completion":[{"delta":"Elastic"}]}\n\n'
    )
    events = parse(raw)
    assert any(len(json.loads(d)["completion"]) > 1 for _, d in events[:-1])
    assert deltas(events) == completion(http)


def test_streams_work_through_the_official_client(local_server: LocalServer) -> None:
    with Elasticsearch(local_server.url, api_key=API_KEY) as es:
        es.inference.put(
            inference_id="chat",
            task_type="completion",
            inference_config=bedrock("anthropic", HAIKU),
        )
        response = es.perform_request(
            "POST",
            "/_inference/chat/_stream",
            body={"input": PROMPT},
            headers={"accept": "text/event-stream", "content-type": "application/json"},
        )
        events = parse(response.body.encode())
        assert events[-1] == ("message", "[DONE]")
        answer = es.inference.completion(inference_id="chat", input=PROMPT)
        assert deltas(events) == answer["completion"][0]["result"]


def test_single_delta_mode(local_server: LocalServer, http: httpx.Client) -> None:
    local_server.set_stream_mode(multi_delta=False)
    events = parse(http.post(STREAM, json={"input": PROMPT}).content)
    assert all(len(json.loads(d)["completion"]) == 1 for _, d in events[:-1])
    assert deltas(events) == completion(http)


def test_split_events_arrive_in_pieces_and_still_parse(
    local_server: LocalServer, http: httpx.Client
) -> None:
    local_server.set_stream_mode(split_events=True)
    pieces = []
    with http.stream("POST", STREAM, json={"input": PROMPT}) as response:
        pieces = list(response.iter_raw())
    raw = b"".join(pieces)
    assert len(pieces) > len(parse(raw))
    assert BOM[:1] in pieces or any(p.endswith(BOM[:1]) for p in pieces)
    assert deltas(parse(raw)) == completion(http)


def test_error_after_ends_with_an_error_event(
    local_server: LocalServer, http: httpx.Client
) -> None:
    local_server.set_stream_mode(error_after=2)
    events = parse(http.post(STREAM, json={"input": PROMPT}).content)
    assert [kind for kind, _ in events] == ["message", "message", "error"]
    error = json.loads(events[-1][1])
    assert error["status"] == 500
    assert error["error"]["type"] == "exception"
    assert error["error"]["root_cause"][0]["type"] == "exception"


def test_cut_after_ends_cleanly_without_done(
    local_server: LocalServer, http: httpx.Client
) -> None:
    local_server.set_stream_mode(cut_after=1)
    response = http.post(STREAM, json={"input": PROMPT})
    events = parse(response.content)
    assert [kind for kind, _ in events] == ["message"]
    assert b"[DONE]" not in response.content
    assert http.get("/").status_code == 200  # the connection is still usable


def test_delay_between_events(local_server: LocalServer, http: httpx.Client) -> None:
    local_server.set_stream_mode(delay_ms=20, multi_delta=False)
    started = time.perf_counter()
    events = parse(http.post(STREAM, json={"input": PROMPT}).content)
    assert time.perf_counter() - started >= 0.02 * (len(events) - 1)


def test_stream_and_result_agree_with_max_new_tokens(http: httpx.Client) -> None:
    payload: dict[str, Any] = {"input": PROMPT, "task_settings": {"max_new_tokens": 4}}
    events = parse(http.post(STREAM, json=payload).content)
    whole = http.post("/_inference/completion/chat", json=payload).json()
    assert deltas(events) == whole["completion"][0]["result"] == "Elastic is a search"


def test_streaming_an_embedding_endpoint_is_405(http: httpx.Client) -> None:
    response = http.post("/_inference/titan/_stream", json={"input": "x"})
    assert response.status_code == 405
    events = parse(response.content)
    assert events[0][0] == "error"
    assert json.loads(events[0][1])["error"]["reason"] == (
        "Streaming is not allowed for service [amazonbedrock] and task "
        "[text_embedding]. Supported tasks: [completion]"
    )


def test_unknown_endpoint_before_streaming_is_an_error_event(
    http: httpx.Client,
) -> None:
    response = http.post("/_inference/completion/missing/_stream", json={"input": "x"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/event-stream"
    raw = response.content
    assert raw == (
        BOM + b"event: error\ndata: "
        b'{"error":{"root_cause":[{"type":"resource_not_found_exception",'
        b'"reason":"Inference endpoint not found [missing]"}],'
        b'"type":"resource_not_found_exception",'
        b'"reason":"Inference endpoint not found [missing]"},"status":404}\n\n'
    )


def test_request_errors_before_the_action_are_plain_json(http: httpx.Client) -> None:
    response = http.post(STREAM, json={"input": []})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"


def test_chat_completion_path_uses_the_openai_error_format(http: httpx.Client) -> None:
    messages = {"messages": [{"role": "user", "content": "Hi"}]}
    wrong = http.post("/_inference/chat_completion/chat/_stream", json=messages)
    assert wrong.status_code == 400
    assert json.loads(parse(wrong.content)[0][1]) == {
        "error": {
            "code": "bad_request",
            "message": "Incompatible task_type for unified API, the requested type "
            "[completion] must be one of [chat_completion]",
            "type": "status_exception",
        }
    }
    missing = http.post("/_inference/chat_completion/nope/_stream", json=messages)
    assert json.loads(parse(missing.content)[0][1])["error"]["code"] == "not_found"


def test_streaming_routes_follow_the_version(local_server_factory: Any) -> None:
    server = local_server_factory(es_version="8.15.0")
    headers = {"Authorization": f"ApiKey {API_KEY}"}
    with httpx.Client(base_url=server.url, headers=headers) as client:
        client.put("/_inference/completion/chat", json=bedrock("anthropic", HAIKU))
        response = client.post("/_inference/chat/_stream", json={"input": "x"})
        assert response.json()["error"]["reason"] == "Unknown task_type [chat]"
