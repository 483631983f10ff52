"""No credential ever shows up in logs, reprs, errors, pickles or payloads."""

from __future__ import annotations

import logging
import pickle
from typing import Any

import pytest
from llama_index.core.callbacks import CallbackManager

from es_inference import EsInferenceError
from es_inference.langchain import ElasticInferenceEmbeddings
from es_inference.llama_index import ElasticInferenceEmbedding

from .helpers import API_KEY, AWS_ACCESS, AWS_SECRET, bedrock
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
