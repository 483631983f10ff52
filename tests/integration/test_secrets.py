"""No credential ever shows up in logs, reprs, errors, pickles or payloads."""

from __future__ import annotations

import base64
import logging
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.load import dumps
from llama_index.core.callbacks import CallbackManager

from es_inference import (
    AuthenticationError,
    ConfigurationError,
    EsInferenceError,
)
from es_inference.langchain import ElasticInferenceEmbeddings, ElasticInferenceLLM
from es_inference.llama_index import ElasticInferenceEmbedding
from es_inference.llama_index import ElasticInferenceLLM as LlamaLLM
from es_inference.local import LocalServer

from .helpers import API_KEY, AWS_ACCESS, AWS_SECRET, bedrock
from .payloads import LangChainPayloads
from .payloads import LlamaPayloads as Collector

SECRETS = (API_KEY, AWS_ACCESS, AWS_SECRET)


def assert_clean(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for secret in SECRETS:
        assert secret.encode() not in data, f"a secret leaked into {where}"


def _log_text(caplog: pytest.LogCaptureFixture) -> str:
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


def test_secrets_stay_out_of_everything(
    local_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    collector = Collector()
    lc = ElasticInferenceEmbeddings(**bedrock(local_server.url))
    li = ElasticInferenceEmbedding(
        **bedrock(local_server.url), callback_manager=CallbackManager([collector])
    )
    lc.embed_documents(["one", "two"])
    li.get_text_embedding_batch(["three", "four"])
    li.get_query_embedding("five")

    failures: list[str] = []
    for bad in (
        bedrock(local_server.url, es_api_key="wrong-" + API_KEY),
        bedrock(
            local_server.url,
            inference_id="new-one",
            model="amazon.titan-embed-text-v1",
            aws_access_key_id="invalid",
            aws_secret_access_key="invalid",
        ),
        bedrock(
            local_server.url,
            inference_id="bad-settings",
            service_settings={"unknown_setting": AWS_SECRET},
        ),
    ):
        with pytest.raises(EsInferenceError) as info:
            ElasticInferenceEmbeddings(**bad).embed_query("x")
        failures.append(str(info.value))
        failures.append(repr(info.value))

    for name, text in [
        ("logs", _log_text(caplog)),
        ("errors", "\n".join(failures)),
        ("repr", repr(lc) + repr(li) + str(lc) + repr(lc.embedding_service())),
        ("model_dump", lc.model_dump_json() + li.to_json()),
        ("callback payloads", repr(collector.seen)),
    ]:
        assert_clean(text, name)
    assert collector.seen, "the callback handler saw no events"


def test_pickles_carry_no_secrets_and_still_work(
    local_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lc = ElasticInferenceEmbeddings(**bedrock(local_server.url))
    li = ElasticInferenceEmbedding(**bedrock(local_server.url))
    before = lc.embed_query("pickled")
    li.get_query_embedding("pickled")
    lc_bytes = pickle.dumps(lc)
    li_bytes = pickle.dumps(li)
    assert_clean(lc_bytes, "LangChain pickle")
    assert_clean(li_bytes, "LlamaIndex pickle")

    # The unpickled copies read credentials from the environment again.
    monkeypatch.setenv("ELASTICSEARCH_API_KEY", API_KEY)
    restored = pickle.loads(lc_bytes)
    assert restored.embed_query("pickled") == before
    assert pickle.loads(li_bytes).get_query_embedding("pickled") == pytest.approx(
        before
    )


KEY_ID = "pair-key-id-9931"
PAIR_KEY = "pair-key-secret-2718"
WRONG_KEY = "wrong-" + PAIR_KEY
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
PROMPT = "Elastic makes Kibana.\nQuestion: What does Elastic make?"


def _encoded(key_id: str, key: str) -> str:
    return base64.b64encode(f"{key_id}:{key}".encode()).decode()


PAIR_SECRETS = (
    KEY_ID,
    PAIR_KEY,
    _encoded(KEY_ID, PAIR_KEY),
    _encoded(KEY_ID, WRONG_KEY),
)


def _chain(error: BaseException) -> list[str | bytes]:
    texts: list[str | bytes] = []
    current: BaseException | None = error
    while current is not None:
        texts += [str(current), repr(current), repr(vars(current))]
        texts.append(pickle.dumps(current))
        current = current.__cause__ or current.__context__
    return texts


def test_an_id_and_key_pair_stays_out_of_everything(
    local_server_factory: Callable[..., LocalServer],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = local_server_factory(api_key=_encoded(KEY_ID, PAIR_KEY))
    llama_payloads, lc_payloads = Collector(), LangChainPayloads()
    pair = (KEY_ID, PAIR_KEY)
    adapters: list[Any] = [
        ElasticInferenceEmbeddings(**bedrock(server.url, es_api_key=pair)),
        ElasticInferenceEmbedding(
            **bedrock(server.url, es_api_key=list(pair)),
            callback_manager=CallbackManager([llama_payloads]),
        ),
        ElasticInferenceLLM(**bedrock(server.url, es_api_key=pair, model=HAIKU)),
        LlamaLLM(
            **bedrock(server.url, es_api_key=pair, model=HAIKU),
            callback_manager=CallbackManager([llama_payloads]),
        ),
    ]
    lc, li, llm, llama_llm = adapters
    vector = lc.embed_query("pair")
    li.get_text_embedding_batch(["one", "two"])
    answer = llm.invoke(PROMPT, config={"callbacks": [lc_payloads]})
    llama_llm.complete(PROMPT)

    failures: list[str | bytes] = []
    with pytest.raises(AuthenticationError) as refused:
        ElasticInferenceEmbeddings(
            **bedrock(server.url, es_api_key=(KEY_ID, WRONG_KEY), max_retries=0)
        ).embed_query("x")
    failures += _chain(refused.value)
    for bad in ((KEY_ID,), (KEY_ID, ""), (KEY_ID + ":", PAIR_KEY), (KEY_ID, 2718)):
        with pytest.raises(ConfigurationError) as malformed:
            ElasticInferenceLLM(**bedrock(server.url, es_api_key=bad, model=HAIKU))
        failures += _chain(malformed.value)
    blobs = [pickle.dumps(adapter) for adapter in adapters]

    texts: list[tuple[str, str | bytes]] = [
        ("logs", _log_text(caplog)),
        ("reprs", "".join(repr(a) + str(a) for a in adapters)),
        ("services", repr(lc.embedding_service()) + repr(llm.completion_service())),
        ("model_dump", lc.model_dump_json() + llm.model_dump_json()),
        ("to_json", li.to_json() + llama_llm.to_json() + dumps(llm)),
        ("callback payloads", repr(llama_payloads.seen) + repr(lc_payloads.seen)),
        *(("errors", text) for text in failures),
        *(("pickles", blob) for blob in blobs),
    ]
    for where, text in texts:
        data = text.encode() if isinstance(text, str) else text
        for secret in PAIR_SECRETS:
            assert secret.encode() not in data, f"the key pair leaked into {where}"
    assert llama_payloads.seen and lc_payloads.seen

    # The copies read the encoded key from the environment.
    monkeypatch.setenv("ELASTICSEARCH_API_KEY", _encoded(KEY_ID, PAIR_KEY))
    assert pickle.loads(blobs[0]).embed_query("pair") == vector
    assert pickle.loads(blobs[2]).invoke(PROMPT) == answer
