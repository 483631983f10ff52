"""Secrets under faults and failures; pickling and forking adapters.

Every log record of every logger at DEBUG, every exception (its text, its chain,
its pickle), every serialized config and every callback payload of succeeding and
failing runs with injected faults is searched for each credential in play.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import signal
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from langchain_core.load import dumpd, dumps
from llama_index.core.callbacks import CallbackManager

from es_inference import EsInferenceError, PartialResultError, StreamError, _retry
from es_inference.langchain import ElasticInferenceEmbeddings, ElasticInferenceLLM
from es_inference.llama_index import ElasticInferenceEmbedding
from es_inference.llama_index import ElasticInferenceLLM as LlamaLLM
from es_inference.local import FaultConfig, LocalServer

from .adapters import PROMPT, use
from .helpers import API_KEY, AWS_ACCESS, AWS_SECRET, bedrock
from .payloads import LangChainPayloads, LlamaPayloads
from .support import QUICK_RETRY

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
PASSWORD = "basic-auth-password-4711"
BEARER = "bearer-token-value-0815"
SECRETS = (API_KEY, AWS_ACCESS, AWS_SECRET, PASSWORD, BEARER)
TEXTS = [f"secret-free text number {i}" for i in range(120)]
MIXED = FaultConfig(
    p_429=0.05,
    p_timeout=0.05,
    p_throttle=0.05,
    p_503=0.05,
    p_reset=0.05,
    p_truncate=0.05,
    latency_ms=0.5,
    seed=23,
)


class Records(logging.Handler):
    """Every record, formatted with its arguments and traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))
        self.texts.append(repr(record.args))


@pytest.fixture
def records() -> Iterator[Records]:
    """A DEBUG handler on the root logger, with every es_inference logger at DEBUG."""
    handler = Records()
    root = logging.getLogger()
    names = ["es_inference"] + [
        name for name in logging.root.manager.loggerDict if name.startswith("es_")
    ]
    saved = {name: logging.getLogger(name).level for name in names}
    saved_root = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(saved_root)
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def error_texts(error: BaseException) -> Iterator[str | bytes]:
    """The text, repr and pickle of an error and of every error it holds."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield repr(vars(current))
        yield pickle.dumps(current)
        todo += [current.__cause__, current.__context__]
        if isinstance(current, PartialResultError):
            todo += [exc for _, exc in current.errors]
        if isinstance(current, StreamError):
            todo.append(current.cause)


def assert_clean(where: str, *texts: str | bytes) -> None:
    for text in texts:
        data = text.encode() if isinstance(text, str) else text
        for secret in SECRETS:
            assert secret.encode() not in data, f"a secret leaked into {where}"


def llm_args(url: str, **overrides: Any) -> dict[str, Any]:
    settings = {"model": HAIKU, "max_retries": 25, **QUICK_RETRY, **overrides}
    return bedrock(url, **settings)


def test_no_secret_anywhere_in_runs_with_faults(
    local_server_factory: Any, records: Records
) -> None:
    server = local_server_factory()
    url = server.url
    lc_payloads, li_payloads = LangChainPayloads(), LlamaPayloads()
    embeddings = ElasticInferenceEmbeddings(
        **bedrock(url, max_retries=25, **QUICK_RETRY)
    )
    llama = ElasticInferenceEmbedding(
        **bedrock(url, max_retries=25, **QUICK_RETRY),
        callback_manager=CallbackManager([li_payloads]),
    )
    llm = ElasticInferenceLLM(**llm_args(url))
    llama_llm = LlamaLLM(
        **llm_args(url), callback_manager=CallbackManager([li_payloads])
    )
    for adapter in (embeddings, llama):
        adapter.embedding_service().endpoint()
    for adapter in (llm, llama_llm):
        adapter.completion_service().endpoint()

    server.set_faults(MIXED)
    embeddings.embed_array(TEXTS)
    asyncio.run(embeddings.aembed_array(TEXTS))
    llama.get_text_embedding_batch(TEXTS[:40])
    asyncio.run(llama.aget_query_embedding("query"))
    llm.batch([PROMPT] * 4, config={"callbacks": [lc_payloads]})
    asyncio.run(llm.ainvoke(PROMPT, config={"callbacks": [lc_payloads]}))
    llama_llm.complete(PROMPT)
    assert any(r.fault for r in server.requests), "no fault was injected"

    errors: list[BaseException] = []

    def expect_failure(call: Any) -> None:
        with pytest.raises(EsInferenceError) as info:
            call()
        errors.append(info.value)

    server.set_faults(FaultConfig(p_503=0.3, p_reset=0.3, p_truncate=0.3, seed=3))
    exhausted = ElasticInferenceEmbeddings(**bedrock(url, max_retries=0))
    expect_failure(lambda: exhausted.embed_array(TEXTS))
    expect_failure(lambda: asyncio.run(exhausted.aembed_array(TEXTS)))
    no_retry_llm = ElasticInferenceLLM(**llm_args(url, max_retries=0))
    expect_failure(
        lambda: no_retry_llm.batch([PROMPT] * 6, config={"callbacks": [lc_payloads]})
    )
    expect_failure(lambda: list(no_retry_llm.stream(PROMPT)))
    server.set_faults(None)
    for bad in (
        bedrock(url, es_api_key="wrong-" + API_KEY),
        bedrock(
            url,
            inference_id="bad-keys",
            aws_access_key_id="invalid",
            aws_secret_access_key=AWS_SECRET,
        ),
        bedrock(url, inference_id="echo", service_settings={"unknown": AWS_SECRET}),
        bedrock(url, inference_id="echo-2", service_settings={"x": AWS_ACCESS}),
    ):
        expect_failure(
            lambda bad=bad: ElasticInferenceEmbeddings(**bad).embed_query("x")
        )
    expect_failure(lambda: LlamaLLM(**llm_args(url, es_api_key="wrong")).complete("x"))

    basic = local_server_factory(api_key=None, basic_auth=("elastic", PASSWORD))
    bearer = local_server_factory(api_key=None, bearer_token=BEARER)
    for server_, auth in (
        (basic, {"es_user": "elastic", "es_password": PASSWORD}),
        (bearer, {"es_bearer_token": BEARER}),
    ):
        args = bedrock(server_.url, **auth, max_retries=25, **QUICK_RETRY)
        del args["es_api_key"]
        working = ElasticInferenceEmbeddings(**args)
        server_.set_faults(MIXED)
        working.embed_array(TEXTS[:30])
        server_.set_faults(FaultConfig(p_reset=1.0))
        expect_failure(lambda working=working: working.embed_query("y"))
        assert_clean("adapter repr", repr(working), str(working))
        assert_clean("adapter pickle", pickle.dumps(working))
        assert_clean("model_dump", json.dumps(working.model_dump(), default=str))

    assert len(errors) == 11
    assert any(isinstance(e, PartialResultError) for e in errors)
    for error in errors:
        assert_clean(f"{type(error).__name__}", *error_texts(error))
    assert_clean("logs", *records.texts)
    assert any("DEBUG" in text for text in records.texts)
    assert any("retrying" in text for text in records.texts)
    assert_clean(
        "serialized configs",
        embeddings.model_dump_json(),
        json.dumps(embeddings.model_dump(), default=str),
        llama.to_json(),
        json.dumps(llama.to_dict(), default=str),
        llm.model_dump_json(),
        json.dumps(dumpd(llm), default=str),
        dumps(llm),
        llama_llm.to_json(),
        json.dumps(llama_llm.to_dict(), default=str),
    )
    assert_clean(
        "reprs",
        *(repr(a) + str(a) for a in (embeddings, llama, llm, llama_llm)),
        repr(embeddings.embedding_service()),
        repr(llm.completion_service()),
    )
    assert_clean(
        "pickles", *(pickle.dumps(a) for a in (embeddings, llama, llm, llama_llm))
    )
    assert lc_payloads.seen and li_payloads.seen
    assert_clean("LangChain callbacks", repr(lc_payloads.seen))
    assert_clean("LlamaIndex callbacks", repr(li_payloads.seen))


def test_every_adapter_pickles_without_credentials_and_rebuilds_its_service(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapters: list[Any] = [
        ElasticInferenceEmbeddings(**bedrock(local_server.url)),
        ElasticInferenceEmbedding(**bedrock(local_server.url)),
        ElasticInferenceLLM(**llm_args(local_server.url)),
        LlamaLLM(**llm_args(local_server.url)),
    ]
    answers = [use(adapter) for adapter in adapters]
    blobs = [pickle.dumps(adapter) for adapter in adapters]
    assert_clean("adapter pickles", *blobs)

    monkeypatch.setenv("ELASTICSEARCH_API_KEY", API_KEY)
    for blob, answer in zip(blobs, answers, strict=True):
        restored = pickle.loads(blob)
        assert restored._slot.service is None  # rebuilt on first use
        assert restored.aws_secret_access_key is None
        assert use(restored) == answer
    assert sum(1 for r in local_server.requests if r.method == "PUT") == 2


def test_adapter_is_usable_in_a_forked_child_and_still_in_the_parent(
    local_server: LocalServer,
) -> None:
    embeddings = ElasticInferenceEmbeddings(**bedrock(local_server.url, concurrency=4))
    expected = embeddings.embed_array(TEXTS[:40])  # opens pools and worker threads
    np.testing.assert_array_equal(
        asyncio.run(embeddings.aembed_array(TEXTS[:40])), expected
    )
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process that has threads; the local
        # server's thread is not used by the child.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        code = 70
        try:
            signal.alarm(60)  # a hung child ends itself instead of the test run
            sync = embeddings.embed_array(TEXTS[:40])
            asynchronous = asyncio.run(embeddings.aembed_array(TEXTS[:40]))
            same = np.array_equal(sync, expected) and np.array_equal(
                asynchronous, expected
            )
            code = 0 if same else 71
        except BaseException:
            code = 72
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    np.testing.assert_array_equal(embeddings.embed_array(TEXTS[:40]), expected)
    np.testing.assert_array_equal(
        asyncio.run(embeddings.aembed_array(TEXTS[:40])), expected
    )
    posts = [r for r in local_server.requests if r.method == "POST"]
    assert len(posts) == 40 * 6 and all(r.status == 200 for r in posts)


def test_a_child_forked_while_a_thread_held_the_pacing_and_retry_locks_goes_on() -> (
    None
):
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with _retry._limiters_lock, _retry.RETRY_LOG._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: report through the exit code only
            code = 70
            try:
                signal.alarm(20)  # a deadlocked child ends itself
                _retry.shared_limiter("http://127.0.0.1:9", "e", 60).reserve()
                _retry.RETRY_LOG.join("POST /x")
                _retry.RETRY_LOG.leave("POST /x", False)
                code = 0
            except BaseException:
                code = 72
            finally:
                os._exit(code)
    finally:
        release.set()
        holder.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
