"""Retries, pacing, endpoint loss and input checks, over loopback with injected faults.

The local server injects the faults; the adapters run with retry waits of at most
50 ms so that the tests stay quick.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
import re
import signal
import threading
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from es_inference import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConnectionError,
    EmbeddingService,
    EndpointSpec,
    InputError,
    NotFoundError,
    PartialResultError,
    ResponseDecodeError,
    RetryPolicy,
    ServerError,
    TooManyRequestsError,
    UnexpectedResponseError,
    bedrock_spec,
    resolve_connection,
)
from es_inference._wire import infer
from es_inference.langchain import ElasticInferenceEmbeddings, ElasticInferenceLLM
from es_inference.llama_index import ElasticInferenceEmbedding
from es_inference.local import FaultConfig, LocalServer

from .helpers import API_KEY, AWS_ACCESS, AWS_SECRET, HAIKU, TITAN, bedrock
from .support import QUICK_RETRY, StubServer, create_and_embed

TEXTS = [f"passage {i} on subject {i % 11}, with words {i * 7}" for i in range(300)]
AUTH = {"Authorization": f"ApiKey {API_KEY}"}

Make = Callable[..., ElasticInferenceEmbeddings]


@pytest.fixture
def make(local_server: LocalServer) -> Make:
    """LangChain embeddings on ``local_server`` with quick retries."""

    def build(**overrides: Any) -> ElasticInferenceEmbeddings:
        settings = {**QUICK_RETRY, **overrides}
        return ElasticInferenceEmbeddings(**bedrock(local_server.url, **settings))

    return build


def retry_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "es_inference.retry" and r.levelno == logging.WARNING
    ]


def posts(server: LocalServer) -> int:
    return server.count("POST")


def faults(server: LocalServer, kind: str) -> int:
    return sum(1 for r in server.requests if r.fault == kind)


# Retry policy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "error", "label"),
    [
        ("429", TooManyRequestsError, "429"),
        ("timeout", TooManyRequestsError, "429"),  # 9.x answers queue timeouts so
        ("throttle", ServerError, "500 throttling_exception"),
        ("503", ServerError, "503"),
        ("reset", ConnectionError, "connection dropped"),
        ("truncate", ResponseDecodeError, "body cut off"),
    ],
)
def test_retryable_failure_is_retried_up_to_max_retries_with_one_warning_and_a_sum(
    local_server: LocalServer,
    make: Make,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    error: type[Exception],
    label: str,
) -> None:
    embeddings = make(max_retries=2)
    embeddings.embed_query("warm up")  # creates the endpoint, fault-free
    local_server.set_faults(FaultConfig(**{f"p_{kind}": 1.0}))
    local_server.clear_requests()
    caplog.set_level(logging.DEBUG, logger="es_inference.retry")
    with pytest.raises(error):
        embeddings.embed_query("always fails")
    assert posts(local_server) == 3
    assert faults(local_server, kind) == 3
    target = "POST /_inference/text_embedding/amazonbedrock-text-embedding-"
    first, summary = retry_lines(caplog)
    assert first.startswith(f"retrying {target}")
    assert "(attempt 1 failed: " in first
    assert first.endswith("s") and " in 0.0" in first
    assert re.fullmatch(
        rf"{target}\S+: 1 request retried 2 times in \d+\.\d s \({label} ×2\) "
        "and gave up",
        summary,
    )
    debug = [
        r.getMessage()
        for r in caplog.records
        if r.name == "es_inference.retry" and r.levelno == logging.DEBUG
    ]
    assert len(debug) == 1 and "(attempt 2 failed: " in debug[0]


def test_a_throttled_bulk_call_logs_a_few_warnings_and_sums_up_every_retry(
    local_server: LocalServer, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    embeddings = make(max_retries=5)
    embeddings.embed_query("warm up")
    local_server.set_faults(FaultConfig(p_429=1.0))
    caplog.set_level(logging.DEBUG, logger="es_inference.retry")
    with pytest.raises(PartialResultError):
        embeddings.embed_array(TEXTS[:64])  # Titan: one request per text
    retried = [r for r in caplog.records if r.getMessage().startswith("retrying POST ")]
    assert len(retried) == 64 * 5 == faults(local_server, "429") - 64
    sums = [
        re.fullmatch(
            r"POST /_inference/text_embedding/\S+: (\d+) requests? retried "
            r"([\d,]+) times in [\d.]+ s \(429 ×([\d,]+)\)(?:; (\d+) of them "
            r"gave up| and gave up)",
            line,
        )
        for line in retry_lines(caplog)
        if not line.startswith("retrying ")
    ]
    found = [match for match in sums if match is not None]
    assert len(found) == len(sums) >= 1
    assert sum(int(match[1]) for match in found) == 64
    assert sum(int(match[2].replace(",", "")) for match in found) == 320
    warnings = [r for r in retried if r.levelno == logging.WARNING]
    # One per stretch of retries; the 16 workers keep one stretch going.
    assert len(warnings) <= 5 < len(retried)


def test_queue_timeout_500_of_8x_is_retried(local_server_factory: Any) -> None:
    server = local_server_factory(es_version="8.15.0")
    embeddings = ElasticInferenceEmbeddings(
        **bedrock(server.url, max_retries=1, **QUICK_RETRY)
    )
    embeddings.embed_query("warm up")
    server.set_faults(FaultConfig(p_timeout=1.0))
    with pytest.raises(ServerError) as info:
        embeddings.embed_query("x")
    assert (info.value.status, info.value.error_type) == (500, "timeout_exception")
    assert [r.status for r in server.requests if r.method == "POST"][-2:] == [500, 500]


def test_transient_failures_are_retried_until_the_call_succeeds(
    local_server: LocalServer, make: Make
) -> None:
    embeddings = make(max_retries=20)
    expected = embeddings.embed_array(TEXTS[:40])
    local_server.set_faults(
        FaultConfig(p_429=0.15, p_503=0.15, p_reset=0.15, p_truncate=0.15, seed=5)
    )
    np.testing.assert_array_equal(embeddings.embed_array(TEXTS[:40]), expected)
    assert sum(1 for r in local_server.requests if r.fault) > 0


def test_client_errors_are_never_retried(local_server: LocalServer, make: Make) -> None:
    with pytest.raises(AuthenticationError):
        make(es_api_key="not-the-key", max_retries=5).embed_query("x")
    assert len(local_server.requests) == 1

    service = make(max_retries=5).embedding_service()
    ready = service.endpoint()
    local_server.clear_requests()
    bogus = infer("text_embedding", ready.info.inference_id, ["x"], input_type="bogus")
    with pytest.raises(BadRequestError) as info:
        service.sync_transport.perform(bogus, service.options.retry, bytes)
    assert info.value.status == 400
    with pytest.raises(BadRequestError):
        asyncio.run(
            service.async_transport.perform(bogus, service.options.retry, bytes)
        )
    assert posts(local_server) == 2


def test_a_500_that_is_not_transient_is_not_retried(
    local_server: LocalServer, make: Make
) -> None:
    # Titan takes one text per request; Elasticsearch fails a batch of two with a
    # plain 500 that no retry can fix.
    embeddings = make(max_retries=5, batch_size=2)
    with pytest.raises(ServerError, match="cannot contain more than one string"):
        embeddings.embed_documents(["one", "two"])
    assert posts(local_server) == 1


def test_an_answer_with_the_wrong_count_is_not_retried() -> None:
    endpoint = {
        "inference_id": "stub",
        "task_type": "text_embedding",
        "service": "amazonbedrock",
        "service_settings": {"provider": "cohere", "dimensions": 2},
    }

    def answer(method: str, path: str) -> tuple[int, Any]:
        if method == "GET":
            return 200, {"endpoints": [endpoint]}
        return 200, {"text_embedding": [{"embedding": [0.5, 0.5]}]}

    stub = StubServer(answer)
    try:
        service = EmbeddingService(
            resolve_connection(es_url=stub.url, es_api_key=API_KEY),
            EndpointSpec(task_type="text_embedding", inference_id="stub"),
        )
        with pytest.raises(
            UnexpectedResponseError, match="asked for 2 embeddings, got 1"
        ):
            service.embed(["one", "two"])
        with pytest.raises(
            UnexpectedResponseError, match="asked for 2 embeddings, got 1"
        ):
            asyncio.run(service.aembed(["one", "two"]))
    finally:
        stub.stop()
    assert [method for method, _ in stub.calls].count("POST") == 2


def test_retry_after_sets_the_least_wait_up_to_max_backoff(
    local_server: LocalServer, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    embeddings = make(max_retries=1, initial_backoff=0.0, max_backoff=0.2)
    embeddings.embed_query("warm up")
    local_server.set_faults(FaultConfig(p_429=1.0))  # answers carry Retry-After: 1
    caplog.set_level(logging.WARNING, logger="es_inference.retry")
    with pytest.raises(TooManyRequestsError) as info:
        embeddings.embed_query("x")
    assert info.value.retry_after == 1.0
    lines = retry_lines(caplog)
    assert len(lines) == 1 and lines[0].endswith(" in 0.20s")


def test_max_elapsed_stops_retries_before_max_retries(
    local_server: LocalServer, make: Make
) -> None:
    embeddings = make(
        max_retries=1000, initial_backoff=0.02, max_backoff=0.02, max_elapsed=0.1
    )
    embeddings.embed_query("warm up")
    local_server.set_faults(FaultConfig(p_503=1.0))
    local_server.clear_requests()
    with pytest.raises(ServerError):
        embeddings.embed_query("x")
    assert 1 <= posts(local_server) < 1001


def test_retry_defaults_are_documented_values() -> None:
    embeddings = ElasticInferenceEmbeddings(
        es_url="http://127.0.0.1:9", model=TITAN, region="us-east-1"
    )
    policy = embeddings._options().retry
    assert policy == RetryPolicy(
        max_attempts=8, initial_backoff=0.25, max_backoff=20.0, max_elapsed=300.0
    )
    assert embeddings.max_retries == 7


# Pacing ---------------------------------------------------------------------------


def test_paced_bulk_run_has_no_rate_limit_timeouts_where_unpaced_has(
    local_server_factory: Any,
) -> None:
    # 3000 requests per minute: one each 20 ms. The server-side timeout of 250 ms
    # lets about 12 requests wait in Elasticsearch's queue; 16 at once overflow it.
    server = local_server_factory(faults=FaultConfig(rate_limit=True))
    texts = TEXTS[:40]

    def run(inference_id: str, pace: bool) -> tuple[np.ndarray, int]:
        embeddings = ElasticInferenceEmbeddings(
            **bedrock(
                server.url,
                inference_id=inference_id,
                service_settings={"rate_limit": {"requests_per_minute": 3000}},
                request_timeout=0.25,
                pace=pace,
                concurrency=16,
                max_retries=30,
                **QUICK_RETRY,
            )
        )
        before = faults(server, "rate_limit_timeout")
        vectors = embeddings.embed_array(texts)
        return vectors, faults(server, "rate_limit_timeout") - before

    unpaced, unpaced_timeouts = run("unpaced", pace=False)
    paced, paced_timeouts = run("paced", pace=True)
    assert unpaced_timeouts > 0
    assert paced_timeouts == 0
    np.testing.assert_array_equal(paced, unpaced)


def test_pacing_reads_the_endpoint_rate_limit_and_shares_one_bucket(
    local_server: LocalServer,
) -> None:
    settings = bedrock(
        local_server.url,
        inference_id="shared",
        service_settings={"rate_limit": {"requests_per_minute": 1234}},
    )
    first = ElasticInferenceEmbeddings(**settings)
    second = ElasticInferenceEmbedding(**settings)
    first.embed_query("x")
    second.get_query_embedding("x")
    one = first.embedding_service()
    two = second.embedding_service()
    bucket = one.limiter(one.endpoint())
    assert bucket is not None and bucket.configured_rate * 60 == 1234
    assert two.limiter(two.endpoint()) is bucket


def test_throttling_slows_the_shared_bucket(
    local_server: LocalServer, make: Make
) -> None:
    embeddings = make(max_retries=2, inference_id="slowed")
    embeddings.embed_query("warm up")
    service = embeddings.embedding_service()
    bucket = service.limiter(service.endpoint())
    assert bucket is not None
    configured = bucket.requests_per_minute
    local_server.set_faults(FaultConfig(p_throttle=1.0))
    with pytest.raises(ServerError):
        embeddings.embed_query("x")
    assert bucket.requests_per_minute == pytest.approx(configured * (2 / 3) ** 3)


# Endpoint loss --------------------------------------------------------------------


def _deleting_sync(
    service: EmbeddingService, url: str, inference_id: str, at: set[int]
) -> None:
    """Delete the endpoint right before the POSTs numbered in ``at`` (1-based)."""
    transport = service.sync_transport
    original = transport.send
    lock = threading.Lock()
    seen = [0]

    def send(request: Any, *parse: Any) -> Any:
        if request.method == "POST":
            with lock:
                seen[0] += 1
                number = seen[0]
            if number in at:
                response = httpx.delete(
                    f"{url}/_inference/{inference_id}", headers=AUTH
                )
                assert response.status_code == 200
        return original(request, *parse)

    transport.send = send  # type: ignore[method-assign]


def _deleting_async(
    service: EmbeddingService, url: str, inference_id: str, at: set[int]
) -> None:
    transport = service.async_transport
    original = transport.send
    seen = [0]

    async def send(request: Any, *parse: Any) -> Any:
        if request.method == "POST":
            seen[0] += 1
            if seen[0] in at:
                async with httpx.AsyncClient() as client:
                    response = await client.delete(
                        f"{url}/_inference/{inference_id}", headers=AUTH
                    )
                assert response.status_code == 200
        return await original(request, *parse)

    transport.send = send  # type: ignore[method-assign]


def _created(server: LocalServer) -> int:
    return sum(1 for r in server.requests if r.method == "PUT" and r.status == 200)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_endpoint_lost_mid_run_is_created_again_once_and_the_run_completes(
    local_server: LocalServer, make: Make, mode: str
) -> None:
    embeddings = make(inference_id="lost", concurrency=8)
    expected = embeddings.embed_array(TEXTS[:120])
    service = embeddings.embedding_service()
    if mode == "sync":
        _deleting_sync(service, local_server.url, "lost", {50})
        vectors = embeddings.embed_array(TEXTS[:120])
    else:
        _deleting_async(service, local_server.url, "lost", {50})
        vectors = asyncio.run(embeddings.aembed_array(TEXTS[:120]))
    np.testing.assert_array_equal(vectors, expected)
    assert local_server.count("DELETE") == 1
    assert _created(local_server) == 2  # the first creation and one re-creation
    assert [r.status for r in local_server.requests if r.method == "POST"].count(
        404
    ) >= 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_endpoint_lost_twice_in_one_call_raises(
    local_server: LocalServer, make: Make, mode: str
) -> None:
    embeddings = make(inference_id="lost-twice")
    embeddings.embed_query("create it")
    service = embeddings.embedding_service()
    if mode == "sync":
        _deleting_sync(service, local_server.url, "lost-twice", {1, 2})
        with pytest.raises(NotFoundError, match=r"\[lost-twice\]"):
            embeddings.embed_query("x")
    else:
        _deleting_async(service, local_server.url, "lost-twice", {1, 2})
        with pytest.raises(NotFoundError, match=r"\[lost-twice\]"):
            asyncio.run(embeddings.aembed_query("x"))
    assert _created(local_server) == 2
    assert [r.status for r in local_server.requests if r.method == "POST"] == [
        200,
        404,
        404,
    ]


def test_lost_endpoint_given_only_by_id_is_not_created(
    local_server: LocalServer, make: Make
) -> None:
    make(inference_id="external").embed_query("create it")
    user = ElasticInferenceEmbeddings(
        inference_id="external", es_url=local_server.url, es_api_key=API_KEY
    )
    user.embed_query("x")
    _deleting_sync(user.embedding_service(), local_server.url, "external", {1})
    with pytest.raises(ConfigurationError, match=r"\[external\] does not exist"):
        user.embed_query("x")
    assert _created(local_server) == 1


# Input hygiene --------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_id", ["Upper", "a/b", "../x", "-lead", "trail_", "a b", "", "a%2fb", "é"]
)
@pytest.mark.parametrize(
    "adapter", [ElasticInferenceEmbeddings, ElasticInferenceEmbedding]
)
def test_invalid_inference_id_is_refused_at_construction(
    local_server: LocalServer, adapter: type[Any], bad_id: str
) -> None:
    with pytest.raises(ValueError, match=r"Invalid inference_id .*lowercase"):
        adapter(**bedrock(local_server.url, inference_id=bad_id))
    with pytest.raises(ConfigurationError, match="Invalid inference_id"):
        bedrock_spec("text_embedding", model=TITAN, inference_id=bad_id)
    assert local_server.requests == []


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_bad_inputs_are_refused_before_any_request(
    local_server: LocalServer, make: Make, mode: str
) -> None:
    embeddings = make()

    def embed(texts: Any) -> Any:
        if mode == "sync":
            return embeddings.embed_array(texts)
        return asyncio.run(embeddings.aembed_array(texts))

    too_long = "x" * 50_001
    cases: list[tuple[Any, str, list[int]]] = [
        (["ok", 3, b"bytes"], r"indices 1, 2 are not strings \(bytes, int\)", [1, 2]),
        (["ok", None], r"index 1 is not a string \(NoneType\)", [1]),
        (["ok", too_long], r"index 1 is longer than 50000 characters", [1]),
        (["", "ok", " \t"], r"indices 0, 2 are empty or whitespace only", [0, 2]),
        ("a single string", "wrap a single text in a list", []),
    ]
    for texts, message, indices in cases:
        with pytest.raises(InputError, match=message) as info:
            embed(texts)
        assert info.value.indices == indices
    with pytest.raises(InputError, match="longer than 10 characters"):
        make(max_input_chars=10).embed_query("eleven char")
    assert local_server.requests == []


def test_exactly_max_input_chars_is_sent(local_server: LocalServer, make: Make) -> None:
    assert len(make().embed_query("y" * 50_000)) == 1024
    assert posts(local_server) == 1


# Several processes ----------------------------------------------------------------


def test_creators_in_separate_processes_end_with_one_endpoint(
    local_server: LocalServer,
) -> None:
    settings = {
        "es_api_key": API_KEY,
        "model": TITAN,
        "region": "us-east-1",
        "aws_access_key_id": AWS_ACCESS,
        "aws_secret_access_key": AWS_SECRET,
        "inference_id": "from-processes",
        "service_settings": {"rate_limit": {"requests_per_minute": 600_000}},
    }
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    results = context.Queue()
    workers = [
        context.Process(
            target=create_and_embed, args=(local_server.url, settings, barrier, results)
        )
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    assert all(created in (True, False) for created, _ in outcomes), outcomes
    assert sorted(created for created, _ in outcomes) == [False, False, False, True]
    assert len({vector for _, vector in outcomes}) == 1

    listed = httpx.get(f"{local_server.url}/_inference/_all", headers=AUTH).json()
    assert [e["inference_id"] for e in listed["endpoints"]] == ["from-processes"]
    assert _created(local_server) == 1


@pytest.mark.parametrize("kind", ["embed", "complete"])
def test_ctrl_c_in_a_paced_sync_call_sends_none_of_the_waiting_requests(
    local_server: LocalServer, kind: str
) -> None:
    # 120 requests per minute: after the first, one each 0.5 s. Sixteen threads
    # take a batch each and wait for their slots; Ctrl-C comes after about two.
    paced = {"rate_limit": {"requests_per_minute": 120}}
    bulk: Callable[[], object]
    if kind == "embed":
        embeddings = ElasticInferenceEmbeddings(
            **bedrock(local_server.url, inference_id="paced", service_settings=paced)
        )
        embeddings.embed_query("create the endpoint first")
        bulk = functools.partial(embeddings.embed_array, TEXTS[:40])
    else:
        llm = ElasticInferenceLLM(
            **bedrock(local_server.url, model=HAIKU, service_settings=paced)
        )
        service = llm.completion_service()
        service.complete("create the endpoint first")
        bulk = functools.partial(service.complete_many, TEXTS[:40])
    local_server.clear_requests()
    timer = threading.Timer(0.7, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            bulk()
    finally:
        timer.cancel()
    sent = local_server.count("POST", "/_inference")
    # Long enough for a few more slots to come, had the waiting threads gone on.
    threading.Event().wait(1.6)
    assert local_server.count("POST", "/_inference") == sent
    assert sent <= 3
