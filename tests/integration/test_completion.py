"""Completions end to end over loopback HTTP against the local server.

The local server answers a prompt ``<context>\\nQuestion: <question>`` with the
context sentences nearest to the question, so a context of one sentence is answered
with exactly that sentence. Its streams carry the same text as word-sized deltas.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.prompts import PromptTemplate
from llama_index.core import Document, VectorStoreIndex
from llama_index.core import PromptTemplate as LlamaPromptTemplate
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.base.response.schema import StreamingResponse
from llama_index.core.callbacks import CallbackManager
from pydantic import SecretStr

from es_inference import (
    ApiError,
    ConfigurationError,
    EndpointMismatchError,
    InputError,
    NotFoundError,
    PartialCompletionError,
    ResponseDecodeError,
    ServerError,
    StreamError,
)
from es_inference._wire import infer
from es_inference.langchain import ElasticInferenceLLM
from es_inference.llama_index import ElasticInferenceEmbedding
from es_inference.llama_index import ElasticInferenceLLM as LlamaLLM
from es_inference.local import FaultConfig, LocalServer

from .helpers import API_KEY, TITAN, bedrock
from .payloads import LlamaPayloads as Payloads

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN_TEXT = "amazon.titan-text-express-v1"
AWS_ACCESS = "test-access-key"
AWS_SECRET = "test-secret-access-key-0123456789"
FAST = {"rate_limit": {"requests_per_minute": 60000}}

PROMPT = (
    "Elastic makes Elasticsearch, a search engine, and Kibana.\n"
    "Question: What does Elastic make?"
)
ANSWER = "Elastic makes Elasticsearch, a search engine, and Kibana."
STREAM = "/_inference/completion/"


def args(url: str, **overrides: Any) -> dict[str, Any]:
    """Adapter arguments for a Claude completion endpoint on the local server."""
    return bedrock(url, **{"model": HAIKU, **overrides})


def one_fact(i: int) -> str:
    return f"The code word of item {i} is word{i}.\nQuestion: What is the code word?"


def posts(server: LocalServer, suffix: str = "") -> list[Any]:
    return [
        r
        for r in server.requests
        if r.method == "POST" and r.path.startswith(STREAM) and r.path.endswith(suffix)
    ]


def streams(server: LocalServer) -> int:
    return len(posts(server, "/_stream"))


Adapter = ElasticInferenceLLM | LlamaLLM | ElasticInferenceEmbedding


@pytest.fixture
async def closing() -> AsyncIterator[Callable[[Any], Any]]:
    """Registers adapters whose connections (sync and async) close at teardown."""
    held: list[Adapter] = []

    def hold(adapter: Any) -> Any:
        held.append(adapter)
        return adapter

    yield hold
    for adapter in held:
        if isinstance(adapter, ElasticInferenceEmbedding):
            service: Any = adapter.embedding_service()
        else:
            service = adapter.completion_service()
        await service.async_transport.aclose()
        service.close()


@pytest.fixture
def make_llm(
    local_server: LocalServer, closing: Callable[[Any], Any]
) -> Callable[..., ElasticInferenceLLM]:
    """LangChain LLMs on the local server, closed at teardown."""

    def make(**overrides: Any) -> ElasticInferenceLLM:
        llm: ElasticInferenceLLM = closing(
            ElasticInferenceLLM(**args(local_server.url, **overrides))
        )
        return llm

    return make


# LangChain: invoke, batch, stream ---------------------------------------------------


def test_invoke_creates_the_endpoint_and_answers(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    llm = make_llm(inference_id="claude")
    assert llm.invoke(one_fact(1)) == "The code word of item 1 is word1."
    assert local_server.count("PUT", "/_inference/completion/claude") == 1
    [record] = posts(local_server)
    assert (record.path, record.n_inputs) == ("/_inference/completion/claude", 1)


def test_batch_sends_one_request_per_prompt_and_keeps_order(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    llm = make_llm(concurrency=4)
    answers = llm.batch([one_fact(i) for i in range(9)])
    assert answers == [f"The code word of item {i} is word{i}." for i in range(9)]
    records = posts(local_server)
    assert len(records) == 9
    assert all(r.n_inputs == 1 for r in records)
    assert local_server.count("PUT") == 1


class InFlight:
    """Wraps a transport's ``perform`` to see how many requests overlap."""

    def __init__(self, transport: Any) -> None:
        self.now = 0
        self.most = 0
        self._lock = threading.Lock()
        self._perform = transport.perform
        transport.perform = self.perform

    def _enter(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def _leave(self) -> None:
        with self._lock:
            self.now -= 1

    def perform(self, *args: Any) -> Any:
        self._enter()
        try:
            return self._perform(*args)
        finally:
            self._leave()

    async def aperform(self, *args: Any) -> Any:
        self._enter()
        try:
            return await self._perform(*args)
        finally:
            self._leave()


def test_batch_concurrency_is_bounded(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    llm = make_llm(concurrency=3)
    llm.invoke(PROMPT)  # ensure the endpoint first
    local_server.set_faults(FaultConfig(latency_ms=40))
    watch = InFlight(llm.completion_service().sync_transport)
    assert len(llm.batch([one_fact(i) for i in range(9)])) == 9
    assert 2 <= watch.most <= 3


async def test_abatch_concurrency_is_bounded(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    llm = make_llm(concurrency=3)
    await llm.ainvoke(PROMPT)
    local_server.set_faults(FaultConfig(latency_ms=40))
    transport = llm.completion_service().async_transport
    watch = InFlight(transport)
    transport.perform = watch.aperform  # type: ignore[method-assign, assignment]
    assert len(await llm.abatch([one_fact(i) for i in range(9)])) == 9
    assert 2 <= watch.most <= 3


def test_stream_joins_to_the_whole_answer(
    make_llm: Callable[..., ElasticInferenceLLM], local_server: LocalServer
) -> None:
    llm = make_llm()
    pieces = list(llm.stream(PROMPT))
    assert len(pieces) > 3
    assert "".join(pieces) == llm.invoke(PROMPT) == ANSWER
    assert streams(local_server) == 1


def test_chain_with_a_prompt_template(
    make_llm: Callable[..., ElasticInferenceLLM],
) -> None:
    template = PromptTemplate.from_template("{context}\nQuestion: {question}")
    chain = template | make_llm()
    answer = chain.invoke(
        {"context": "Paris is the capital of France.", "question": "Capital?"}
    )
    assert answer == "Paris is the capital of France."
    pieces = list(chain.stream({"context": "Rome is in Italy.", "question": "Where?"}))
    assert "".join(pieces) == "Rome is in Italy."


async def test_async_twins_match_sync(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    llm = make_llm(concurrency=3)
    assert await llm.ainvoke(one_fact(7)) == "The code word of item 7 is word7."
    answers = await llm.abatch([one_fact(i) for i in range(6)])
    assert answers == [f"The code word of item {i} is word{i}." for i in range(6)]
    pieces = [piece async for piece in llm.astream(PROMPT)]
    assert len(pieces) > 3
    assert "".join(pieces) == await llm.ainvoke(PROMPT)
    assert len(posts(local_server)) == 1 + 6 + 1 + 1


def test_empty_prompt_fails_before_any_request(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    llm = make_llm()
    with pytest.raises(InputError, match="empty or whitespace"):
        llm.invoke("   ")
    with pytest.raises(InputError, match="index 1 is empty or whitespace only"):
        llm.batch(["fine", ""])
    assert local_server.count("*") == 0


# Callbacks and secrets --------------------------------------------------------------


class Collector(BaseCallbackHandler):
    """Keeps what the LLM callbacks receive."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.started: list[dict[str, Any]] = []

    def on_llm_start(
        self, serialized: dict[str, Any], prompts: list[str], **kwargs: Any
    ) -> None:
        self.started.append({"serialized": serialized, **kwargs})

    def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
        self.tokens.append(token)


def test_callbacks_receive_each_token_as_it_arrives(
    make_llm: Callable[..., ElasticInferenceLLM],
) -> None:
    collector = Collector()
    pieces = list(make_llm().stream(PROMPT, config={"callbacks": [collector]}))
    assert collector.tokens == pieces
    assert len(pieces) > 3


async def test_async_callbacks_receive_each_token(
    make_llm: Callable[..., ElasticInferenceLLM],
) -> None:
    collector = Collector()
    llm = make_llm()
    pieces = [p async for p in llm.astream(PROMPT, config={"callbacks": [collector]})]
    assert collector.tokens == pieces


def test_streaming_flag_sends_invoke_tokens_to_callbacks(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    collector = Collector()
    answer = make_llm(streaming=True).invoke(PROMPT, config={"callbacks": [collector]})
    assert "".join(collector.tokens) == answer
    assert len(collector.tokens) > 3
    assert streams(local_server) == 1


def test_no_secret_reaches_callbacks_repr_or_params(
    make_llm: Callable[..., ElasticInferenceLLM],
) -> None:
    collector = Collector()
    llm = make_llm(temperature=0.3)
    llm.invoke(PROMPT, config={"callbacks": [collector]})
    shown = json.dumps(collector.started, default=str) + repr(llm) + str(llm)
    shown += json.dumps(dict(llm._identifying_params))
    for secret in (API_KEY, AWS_ACCESS, AWS_SECRET):
        assert secret not in shown
    assert collector.started[0]["invocation_params"]["temperature"] == 0.3


# Task settings --------------------------------------------------------------------


def words(text: str) -> int:
    return len(text.split())


def test_task_settings_are_sent_and_merged_over_the_stored_ones(
    make_llm: Callable[..., ElasticInferenceLLM],
) -> None:
    # The local model cuts its answer after max_new_tokens words.
    stored = make_llm(inference_id="short", task_settings={"max_new_tokens": 4})
    assert words(stored.invoke(PROMPT)) == 4
    assert words(stored.invoke(PROMPT, max_new_tokens=2)) == 2
    assert words("".join(stored.stream(PROMPT, max_new_tokens=3))) == 3

    field = make_llm(inference_id="short", max_new_tokens=5, temperature=0.1)
    assert words(field.invoke(PROMPT)) == 5
    answer = field.invoke(PROMPT, task_settings={"max_new_tokens": 1})
    assert words(answer) == 1
    service = field.completion_service()
    assert service.effective_task_settings({"top_p": 0.5}) == {
        "max_new_tokens": 4,
        "top_p": 0.5,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 1.5}, "temperature=1.5 is invalid"),
        ({"max_new_tokens": 0}, "max_new_tokens=0 is invalid"),
        ({"top_p": -0.5}, "top_p=-0.5 is invalid"),
        ({"task_settings": {"top_k": 9}}, "top_k=9 is invalid"),
        ({"max_tokens": 9}, "unknown keyword arguments max_tokens"),
    ],
)
def test_invalid_call_settings_fail_before_any_request(
    local_server: LocalServer,
    make_llm: Callable[..., ElasticInferenceLLM],
    kwargs: dict[str, Any],
    message: str,
) -> None:
    llm = make_llm()
    with pytest.raises(ConfigurationError, match=message):
        llm.invoke(PROMPT, **kwargs)
    with pytest.raises(ConfigurationError, match=message):
        list(llm.stream(PROMPT, **kwargs))
    with pytest.raises(ConfigurationError, match=message):
        llm.batch([PROMPT, PROMPT], **kwargs)
    assert local_server.count("*") == 0


async def test_invalid_async_settings_fail_before_any_request(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    llm = make_llm(model=TITAN_TEXT)
    with pytest.raises(ConfigurationError, match="provider amazontitan"):
        await llm.ainvoke(PROMPT, top_k=0.5)
    with pytest.raises(ConfigurationError, match="provider amazontitan"):
        [p async for p in llm.astream(PROMPT, top_k=0.5)]
    assert local_server.count("*") == 0


def test_top_k_of_an_existing_endpoint_is_checked_before_post(
    local_server: LocalServer,
    make_llm: Callable[..., ElasticInferenceLLM],
    closing: Callable[[Any], Any],
) -> None:
    make_llm(model=TITAN_TEXT, inference_id="titan-text").invoke(PROMPT)
    local_server.clear_requests()
    existing = closing(
        ElasticInferenceLLM(
            inference_id="titan-text",
            es_url=local_server.url,
            es_api_key=SecretStr(API_KEY),
        )
    )
    with pytest.raises(ConfigurationError, match="provider amazontitan"):
        existing.invoke(PROMPT, top_k=0.5)
    assert local_server.count("GET") == 1
    assert local_server.count("POST") == 0


# Stop sequences -------------------------------------------------------------------


def test_stop_sequences_cut_whole_and_streamed_answers(
    make_llm: Callable[..., ElasticInferenceLLM],
) -> None:
    llm = make_llm()
    assert (
        llm.invoke(PROMPT, stop=["engine"]) == "Elastic makes Elasticsearch, a search "
    )
    # "search eng" spans two deltas; "Elasticsearch," holds only its start.
    assert "".join(llm.stream(PROMPT, stop=["search eng"])) == (
        "Elastic makes Elasticsearch, a "
    )
    assert llm.batch([PROMPT, one_fact(2)], stop=[" is", " makes"]) == [
        "Elastic",
        "The code word of item 2",
    ]
    fielded = make_llm(stop=["makes"])
    assert fielded.invoke(PROMPT) == "Elastic "
    assert fielded.invoke(PROMPT, stop=["search"]) == "Elastic makes Elastic"


def test_stop_at_the_start_gives_an_empty_answer(
    make_llm: Callable[..., ElasticInferenceLLM],
) -> None:
    llm = make_llm()
    assert llm.invoke(PROMPT, stop=["Elastic"]) == ""
    assert list(llm.stream(PROMPT, stop=["Elastic"])) == [""]


# Event stream edge cases ----------------------------------------------------------


@pytest.mark.parametrize(
    "mode",
    [
        {"split_events": True},
        {"multi_delta": False},
        {"multi_delta": True, "split_events": True},
    ],
)
def test_stream_survives_split_and_multi_delta_events(
    local_server: LocalServer,
    make_llm: Callable[..., ElasticInferenceLLM],
    mode: dict[str, Any],
) -> None:
    llm = make_llm()
    whole = llm.invoke(PROMPT)
    local_server.set_stream_mode(**mode)
    assert "".join(llm.stream(PROMPT)) == whole


def test_error_event_after_text_raises_with_the_partial_text(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    llm = make_llm()
    whole = llm.invoke(PROMPT)
    local_server.set_stream_mode(error_after=2, multi_delta=False)
    received: list[str] = []
    with pytest.raises(StreamError) as info:
        for piece in llm.stream(PROMPT):
            received.append(piece)
    error = info.value
    assert "".join(received) == error.partial == "Elastic makes"
    assert whole.startswith(error.partial)
    assert isinstance(error.cause, ServerError)
    assert "error_after switch" in error.cause.reason
    assert streams(local_server) == 1  # text was passed on: never sent again


def test_error_event_before_text_is_not_retried_when_not_retryable(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    local_server.set_stream_mode(error_after=0)
    with pytest.raises(StreamError) as info:
        list(make_llm().stream(PROMPT))
    assert info.value.partial == ""
    assert isinstance(info.value.cause, ServerError)
    assert streams(local_server) == 1


def test_cut_stream_after_text_raises_and_is_not_resent(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    local_server.set_stream_mode(cut_after=3, multi_delta=False)
    with pytest.raises(StreamError, match="without the \\[DONE\\] marker") as info:
        list(make_llm().stream(PROMPT))
    assert info.value.partial == "Elastic makes Elasticsearch,"
    assert isinstance(info.value.__cause__, ResponseDecodeError)
    assert streams(local_server) == 1


def test_cut_stream_before_text_is_retried_then_raises(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    local_server.set_stream_mode(cut_after=0)
    with pytest.raises(StreamError) as info:
        list(make_llm(max_retries=2).stream(PROMPT))
    assert info.value.partial == ""
    assert streams(local_server) == 3


def first_fault_then_none(kind: str) -> int:
    """A seed whose first draw is a fault and whose second is not."""
    from es_inference.local._faults import FaultPlan

    for seed in range(1000):
        plan = FaultPlan(FaultConfig(p_503=0.5, seed=seed))
        if plan.draw()[1] == kind and plan.draw()[1] is None:
            return seed
    raise AssertionError("no such seed")


def test_stream_failing_before_text_is_retried_and_succeeds(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    llm = make_llm()
    whole = llm.invoke(PROMPT)
    local_server.set_faults(FaultConfig(p_503=0.5, seed=first_fault_then_none("503")))
    assert "".join(llm.stream(PROMPT)) == whole
    assert [r.status for r in posts(local_server, "/_stream")] == [503, 200]


async def test_async_stream_errors(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    llm = make_llm()
    local_server.set_stream_mode(error_after=1, multi_delta=False)
    with pytest.raises(StreamError) as info:
        [piece async for piece in llm.astream(PROMPT)]
    assert info.value.partial == "Elastic"
    local_server.set_stream_mode(cut_after=0)
    with pytest.raises(StreamError):
        [piece async for piece in llm.astream(PROMPT)]
    assert streams(local_server) == 1 + 3


def test_cluster_that_cannot_stream_answers_405(
    local_server_factory: Callable[..., LocalServer], closing: Callable[[Any], Any]
) -> None:
    server = local_server_factory(es_version="8.16.0")
    llm = closing(ElasticInferenceLLM(**args(server.url)))
    assert llm.invoke(one_fact(3)) == "The code word of item 3 is word3."
    with pytest.raises(StreamError) as info:
        list(llm.stream(one_fact(3)))
    cause = info.value.cause
    assert cause is not None
    assert (cause.status, cause.error_type) == (405, "status_exception")
    assert cause.reason.startswith(
        "Streaming is not allowed for service [amazonbedrock]"
    )
    assert server.count("POST", STREAM) == 2


def test_stream_errors_before_start_are_parsed_from_their_event(
    local_server: LocalServer, embedding: ElasticInferenceEmbedding
) -> None:
    # Elasticsearch answers a stream that cannot start with the error status and
    # one error event; the transport reads the envelope out of that event.
    embedding.get_text_embedding("hello")
    vectors_id = embedding.embedding_service().endpoint().info.inference_id
    transport = embedding.embedding_service().sync_transport
    request = infer("text_embedding", vectors_id, "x", stream=True)
    with pytest.raises(ApiError) as info, transport.stream(request):
        pass
    assert (info.value.status, info.value.error_type) == (405, "status_exception")
    assert info.value.reason == (
        "Streaming is not allowed for service [amazonbedrock] and task "
        "[text_embedding]. Supported tasks: [completion]"
    )
    request = infer("completion", "missing", "x", stream=True)
    with pytest.raises(NotFoundError) as missing, transport.stream(request):
        pass
    assert missing.value.error_type == "resource_not_found_exception"
    assert missing.value.reason == "Inference endpoint not found [missing]"


def test_deleted_endpoint_is_recreated_for_a_stream(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    llm = make_llm(inference_id="gone")
    whole = llm.invoke(PROMPT)
    transport = llm.completion_service().sync_transport
    from es_inference._wire import delete_endpoint

    transport.send(delete_endpoint("gone"))
    assert "".join(llm.stream(PROMPT)) == whole
    statuses = [r.status for r in posts(local_server, "/_stream")]
    assert statuses == [404, 200]
    assert local_server.count("PUT") == 2


def test_unknown_endpoint_without_a_model_is_named(
    local_server: LocalServer, closing: Callable[[Any], Any]
) -> None:
    llm = closing(
        ElasticInferenceLLM(
            inference_id="nothing-here",
            es_url=local_server.url,
            es_api_key=SecretStr(API_KEY),
        )
    )
    with pytest.raises(ConfigurationError, match=r"\[nothing-here\] does not exist"):
        list(llm.stream(PROMPT))
    assert local_server.count("POST") == 0


# Bulk failures --------------------------------------------------------------------


def test_partial_failure_keeps_the_other_answers(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    llm = make_llm(concurrency=1, max_retries=0)
    seed = first_fault_then_none("503")
    local_server.set_faults(FaultConfig(p_503=0.5, seed=seed))
    service = llm.completion_service()
    with pytest.raises(PartialCompletionError) as info:
        service.complete_many([one_fact(0), one_fact(1)])
    error = info.value
    assert error.failed_indices == [0]
    assert error.texts == [None, "The code word of item 1 is word1."]
    assert isinstance(error.errors[0][1], ServerError)
    assert str(error).startswith("1 of 2 inputs failed (indices 0); first error: [503]")


def test_single_failure_of_a_batch_is_raised_as_itself(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    llm = make_llm(max_retries=0)
    llm.invoke(PROMPT)
    local_server.set_faults(FaultConfig(p_503=1.0))
    with pytest.raises(ServerError):
        llm.batch([PROMPT])
    with pytest.raises(PartialCompletionError) as info:
        llm.batch([PROMPT, PROMPT])
    assert info.value.texts == [None, None]


# Lifecycle ------------------------------------------------------------------------


def test_second_adapter_with_the_same_settings_reuses_the_endpoint(
    local_server: LocalServer, make_llm: Callable[..., ElasticInferenceLLM]
) -> None:
    make_llm(temperature=0.1).invoke(PROMPT)
    second = make_llm(temperature=0.9, max_new_tokens=3)
    assert words(second.invoke(PROMPT)) == 3
    assert local_server.count("PUT") == 1
    assert second.completion_service().endpoint().created is False


def test_same_id_with_another_model_names_both(
    make_llm: Callable[..., ElasticInferenceLLM],
) -> None:
    make_llm(inference_id="chat").invoke(PROMPT)
    other = make_llm(
        inference_id="chat", model="anthropic.claude-3-5-sonnet-20240620-v1:0"
    )
    with pytest.raises(EndpointMismatchError) as info:
        other.invoke(PROMPT)
    message = str(info.value)
    assert "[chat]" in message
    assert "wanted 'anthropic.claude-3-5-sonnet-20240620-v1:0'" in message
    assert f"found '{HAIKU}'" in message


def test_completion_service_on_an_embedding_endpoint_is_refused(
    local_server: LocalServer,
    embedding: ElasticInferenceEmbedding,
    closing: Callable[[Any], Any],
) -> None:
    embedding.get_text_embedding("hello")
    vectors_id = embedding.embedding_service().endpoint().info.inference_id
    llm = closing(
        ElasticInferenceLLM(
            inference_id=vectors_id,
            es_url=local_server.url,
            es_api_key=SecretStr(API_KEY),
        )
    )
    with pytest.raises(EndpointMismatchError, match="task_type: wanted 'completion'"):
        llm.invoke(PROMPT)
    assert posts(local_server) == []


# LlamaIndex -----------------------------------------------------------------------


@pytest.fixture
def llama_llm(local_server: LocalServer, closing: Callable[[Any], Any]) -> LlamaLLM:
    llm: LlamaLLM = closing(LlamaLLM(**args(local_server.url)))
    return llm


def test_llama_complete_and_stream(llama_llm: LlamaLLM) -> None:
    whole = llama_llm.complete(PROMPT)
    assert whole.text == ANSWER
    responses = list(llama_llm.stream_complete(PROMPT))
    assert len(responses) > 3
    assert responses[-1].text == whole.text
    assert "".join(r.delta or "" for r in responses) == whole.text
    chat = llama_llm.chat([ChatMessage(role="user", content=PROMPT)])
    assert chat.message.content


async def test_llama_async_is_native(
    local_server: LocalServer, closing: Callable[[Any], Any]
) -> None:
    llm = closing(LlamaLLM(**args(local_server.url, stop=["Kibana"])))
    whole = await llm.acomplete(PROMPT)
    assert whole.text == "Elastic makes Elasticsearch, a search engine, and "
    pieces = [r.delta async for r in await llm.astream_complete(PROMPT)]
    assert "".join(p or "" for p in pieces) == whole.text
    message = ChatMessage(role="user", content=PROMPT)
    chat = await llm.achat([message])
    assert chat.message.content
    chunks = [c async for c in await llm.astream_chat([message])]
    assert chunks[-1].message.content == chat.message.content


def test_llama_call_options_override_the_fields(llama_llm: LlamaLLM) -> None:
    assert llama_llm.complete(PROMPT, stop=["search"]).text == "Elastic makes Elastic"
    assert words(llama_llm.complete(PROMPT, max_new_tokens=2).text) == 2
    pieces = [r.delta for r in llama_llm.stream_complete(PROMPT, stop=[", a"])]
    assert "".join(p or "" for p in pieces) == "Elastic makes Elasticsearch"
    with pytest.raises(ConfigurationError, match="temperature=7 is invalid"):
        llama_llm.complete(PROMPT, temperature=7)


def test_llama_metadata_defaults_and_overrides(local_server: LocalServer) -> None:
    meta = LlamaLLM(**args(local_server.url)).metadata
    assert (meta.context_window, meta.num_output) == (200_000, 512)
    assert (meta.is_chat_model, meta.model_name) == (False, HAIKU)
    meta = LlamaLLM(**args(local_server.url, max_new_tokens=300)).metadata
    assert meta.num_output == 300
    llm = LlamaLLM(**args(local_server.url, context_window=8192, num_output=64))
    assert (llm.metadata.context_window, llm.metadata.num_output) == (8192, 64)


def test_llama_secrets_stay_out_of_payloads_and_dumps(
    local_server: LocalServer, closing: Callable[[Any], Any]
) -> None:
    payloads = Payloads()
    llm = closing(
        LlamaLLM(**args(local_server.url), callback_manager=CallbackManager([payloads]))
    )
    llm.complete(PROMPT)
    shown = repr(payloads.seen) + repr(llm) + json.dumps(llm.to_dict(), default=str)
    shown += llm.to_json() + repr(llm.to_payload())
    for secret in (API_KEY, AWS_ACCESS, AWS_SECRET):
        assert secret not in shown
    assert any(p and "serialized" in p for p in payloads.seen)


DOCS = [
    "The Eiffel Tower is in Paris. It was finished in 1889.",
    "Mount Fuji is the highest mountain in Japan.",
    "The Nile flows north into the Mediterranean Sea.",
]
QA = LlamaPromptTemplate("{context_str}\nQuestion: {query_str}")


@pytest.fixture
def embedding(
    local_server: LocalServer, closing: Callable[[Any], Any]
) -> ElasticInferenceEmbedding:
    model = ElasticInferenceEmbedding(
        model=TITAN,
        region="us-east-1",
        es_url=local_server.url,
        es_api_key=SecretStr(API_KEY),
        aws_access_key_id=AWS_ACCESS,
        aws_secret_access_key=AWS_SECRET,
        service_settings=dict(FAST),
    )
    held: ElasticInferenceEmbedding = closing(model)
    return held


@pytest.fixture
def index(embedding: ElasticInferenceEmbedding) -> VectorStoreIndex:
    documents = [Document(text=text) for text in DOCS]
    return VectorStoreIndex.from_documents(documents, embed_model=embedding)


def test_llama_query_engine_answers_from_the_documents(
    index: VectorStoreIndex, llama_llm: LlamaLLM
) -> None:
    engine = index.as_query_engine(
        llm=llama_llm, text_qa_template=QA, similarity_top_k=1
    )
    answer = str(engine.query("Which is the highest mountain in Japan?"))
    assert answer == "Mount Fuji is the highest mountain in Japan."

    streaming = index.as_query_engine(
        llm=llama_llm, text_qa_template=QA, similarity_top_k=1, streaming=True
    )
    response = streaming.query("Which is the highest mountain in Japan?")
    assert isinstance(response, StreamingResponse)
    assert "".join(response.response_gen) == answer


async def test_llama_query_engine_async(
    index: VectorStoreIndex, llama_llm: LlamaLLM
) -> None:
    llm = llama_llm
    engine = index.as_query_engine(llm=llm, text_qa_template=QA, similarity_top_k=1)
    answer = await engine.aquery("Where does the Nile flow?")
    assert str(answer) == "The Nile flows north into the Mediterranean Sea."
