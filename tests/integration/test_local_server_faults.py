"""Fault injection and rate limiting on the local server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing

import httpx
import pytest

from es_inference.local import FaultConfig, LocalServer

API_KEY = "test-api-key"
HEADERS = {"Authorization": f"ApiKey {API_KEY}"}
TITAN = "amazon.titan-embed-text-v2:0"


def titan(rpm: int | None = None) -> dict:
    settings: dict = {
        "access_key": "AKIDFAULTS",
        "secret_key": "faults-secret",
        "region": "us-east-1",
        "provider": "amazontitan",
        "model": TITAN,
    }
    if rpm is not None:
        settings["rate_limit"] = {"requests_per_minute": rpm}
    return {"service": "amazonbedrock", "service_settings": settings}


def prepared(server: LocalServer, rpm: int | None = None) -> httpx.Client:
    client = httpx.Client(base_url=server.url, headers=HEADERS, timeout=10)
    client.put("/_inference/text_embedding/titan", json=titan(rpm))
    client.put(
        "/_inference/completion/chat",
        json={
            "service": "amazonbedrock",
            "service_settings": {
                **titan()["service_settings"],
                "provider": "anthropic",
                "model": "anthropic.claude-3-haiku-20240307-v1:0",
            },
        },
    )
    return client


def embed(client: httpx.Client) -> httpx.Response:
    return client.post("/_inference/titan", json={"input": "fault me"})


@pytest.fixture
def make(
    local_server_factory: Callable[..., LocalServer],
) -> Iterator[Callable[..., tuple[LocalServer, httpx.Client]]]:
    clients: list[httpx.Client] = []

    def build(**options: object) -> tuple[LocalServer, httpx.Client]:
        server = local_server_factory(**options)
        client = prepared(server)
        clients.append(client)
        return server, client

    yield build
    for client in clients:
        client.close()


def test_429_carries_retry_after(
    make: Callable[..., tuple[LocalServer, httpx.Client]],
) -> None:
    server, client = make(faults=FaultConfig(p_429=1.0))
    response = embed(client)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert error["type"] == "es_rejected_execution_exception"
    assert server.requests[-1].fault == "429"
    assert server.requests[-1].status == 429


@pytest.mark.parametrize(("version", "status"), [("9.1.0", 429), ("8.18.0", 500)])
def test_queue_timeout_status_depends_on_the_version(
    make: Callable[..., tuple[LocalServer, httpx.Client]], version: str, status: int
) -> None:
    _, client = make(es_version=version, faults=FaultConfig(p_timeout=1.0))
    response = embed(client)
    assert response.status_code == status
    assert response.json()["error"] == {
        "root_cause": [
            {
                "type": "timeout_exception",
                "reason": "Request timed out waiting to be sent after [30s]",
            }
        ],
        "type": "timeout_exception",
        "reason": "Request timed out waiting to be sent after [30s]",
    }


def test_throttling_is_a_500_with_the_aws_cause(
    make: Callable[..., tuple[LocalServer, httpx.Client]],
) -> None:
    _, client = make(faults=FaultConfig(p_throttle=1.0))
    response = embed(client)
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "exception"
    assert error["reason"] == (
        "AmazonBedrock invoke model failure: [Too many requests, please wait before "
        "trying again.]"
    )
    assert error["caused_by"]["type"] == "throttling_exception"
    chat = client.post("/_inference/chat", json={"input": "hi"}).json()
    assert chat["error"]["reason"].startswith("AmazonBedrock converse failure: [")


def test_503_is_a_cluster_block(
    make: Callable[..., tuple[LocalServer, httpx.Client]],
) -> None:
    _, client = make(faults=FaultConfig(p_503=1.0))
    response = embed(client)
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "cluster_block_exception"


def test_reset_closes_without_a_response(
    make: Callable[..., tuple[LocalServer, httpx.Client]],
) -> None:
    server, client = make(faults=FaultConfig(p_reset=1.0))
    with pytest.raises(httpx.TransportError):
        embed(client)
    assert server.requests[-1].fault == "reset"
    assert server.requests[-1].status == 0
    assert client.get("/").status_code == 200  # a new connection works


def test_truncate_sends_part_of_the_body(
    make: Callable[..., tuple[LocalServer, httpx.Client]],
) -> None:
    server, client = make(faults=FaultConfig(p_truncate=1.0))
    with pytest.raises(httpx.TransportError):
        embed(client)
    with pytest.raises(httpx.TransportError):
        client.post("/_inference/chat/_stream", json={"input": "x"})
    assert [r.fault for r in server.requests[-2:]] == ["truncate", "truncate"]


def test_faults_touch_only_inference_requests(
    make: Callable[..., tuple[LocalServer, httpx.Client]],
) -> None:
    server, client = make(faults=FaultConfig(p_503=1.0))
    assert client.get("/_inference").status_code == 200
    assert client.get("/").status_code == 200
    assert server.count("PUT") == 2
    assert all(r.fault is None for r in server.requests)


def test_stream_requests_get_faults_as_error_events(
    make: Callable[..., tuple[LocalServer, httpx.Client]],
) -> None:
    _, client = make(faults=FaultConfig(p_429=1.0))
    response = client.post("/_inference/chat/_stream", json={"input": "x"})
    assert response.status_code == 429
    assert response.content.startswith(b"\xef\xbb\xbfevent: error\ndata: ")
    data = response.content.split(b"data: ", 1)[1]
    assert json.loads(data)["error"]["type"] == "es_rejected_execution_exception"


def test_a_seed_repeats_the_same_faults(
    make: Callable[..., tuple[LocalServer, httpx.Client]],
) -> None:
    config = FaultConfig(p_429=0.3, p_503=0.3, seed=42)
    runs = []
    for _ in range(2):
        server, client = make(faults=config)
        for _ in range(30):
            embed(client)
        runs.append([r.fault for r in server.requests if r.method == "POST"])
    assert runs[0] == runs[1]
    assert {"429", "503", None} == set(runs[0])


def test_set_faults_applies_to_the_next_request(
    make: Callable[..., tuple[LocalServer, httpx.Client]],
) -> None:
    server, client = make()
    assert embed(client).status_code == 200
    server.set_faults(FaultConfig(p_503=1.0))
    assert embed(client).status_code == 503
    server.set_faults(None)
    assert embed(client).status_code == 200
    assert server.faults == FaultConfig()


def test_latency_delays_without_blocking_other_requests(
    make: Callable[..., tuple[LocalServer, httpx.Client]],
) -> None:
    server, _ = make(faults=FaultConfig(latency_ms=300))
    statuses: list[int] = []

    def call() -> None:
        with httpx.Client(base_url=server.url, headers=HEADERS) as own:
            statuses.append(embed(own).status_code)

    started = time.perf_counter()
    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    assert statuses == [200] * 4
    assert 0.3 <= elapsed < 1.0


def test_an_injected_error_also_waits_for_the_latency(
    make: Callable[..., tuple[LocalServer, httpx.Client]],
) -> None:
    _, client = make(faults=FaultConfig(latency_ms=300, p_429=1.0))
    started = time.perf_counter()
    status = embed(client).status_code
    assert status == 429 and time.perf_counter() - started >= 0.3


def test_latency_starts_when_a_request_leaves_the_rate_limit_queue(
    local_server_factory: Callable[..., LocalServer],
) -> None:
    config = FaultConfig(latency_ms=200, rate_limit=True)
    server = local_server_factory(faults=config)
    with closing(prepared(server, rpm=120)) as client:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            assert embed(client).status_code == 200
            times.append(time.perf_counter() - started)
    # One request every 0.5 s: the first goes at once, the later ones wait about
    # 0.3 s in the queue (0.5 s after the previous one left it) and then 0.2 s.
    assert times[0] >= 0.2
    assert all(elapsed >= 0.45 for elapsed in times[1:])


@pytest.mark.parametrize(("version", "status"), [("9.1.0", 429), ("8.17.0", 500)])
def test_rate_limit_queue_times_out(
    local_server_factory: Callable[..., LocalServer], version: str, status: int
) -> None:
    config = FaultConfig(rate_limit=True, queue_timeout_s=0.3)
    server = local_server_factory(es_version=version, faults=config)
    with closing(prepared(server, rpm=60)) as client:
        client.put("/_inference/text_embedding/slow", json=titan(60))
        first = client.post("/_inference/slow", json={"input": "a"})
        started = time.perf_counter()
        second = client.post("/_inference/slow", json={"input": "b"})
        waited = time.perf_counter() - started
    assert first.status_code == 200
    assert second.status_code == status
    assert second.json()["error"]["reason"] == (
        "Request timed out waiting to be sent after [300ms]"
    )
    assert 0.3 <= waited < 0.9
    assert server.requests[-1].fault == "rate_limit_timeout"


def test_rate_limit_paces_requests(
    local_server_factory: Callable[..., LocalServer],
) -> None:
    server = local_server_factory(faults=FaultConfig(rate_limit=True))
    with closing(prepared(server)) as client:
        client.put("/_inference/text_embedding/paced", json=titan(600))
        started = time.perf_counter()
        statuses = [
            client.post("/_inference/paced", json={"input": "x"}).status_code
            for _ in range(4)
        ]
        elapsed = time.perf_counter() - started
        # The request timeout bounds the wait in the queue, like Elasticsearch.
        client.post("/_inference/paced", json={"input": "x"})
        late = client.post("/_inference/paced?timeout=0s", json={"input": "x"})
    assert statuses == [200] * 4
    assert elapsed >= 0.3  # 600 per minute: one every 100 ms
    assert late.json()["error"]["reason"] == (
        "Request timed out waiting to be sent after [0s]"
    )
