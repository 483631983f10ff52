"""LangChain's standard embedding suites, run against our adapter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from es_inference.langchain import ElasticInferenceEmbeddings
from es_inference.local import LocalServer

from ..integration.helpers import API_KEY, bedrock

_server: dict[str, LocalServer] = {}


@pytest.fixture(scope="module", autouse=True)
def _local_server() -> Iterator[None]:
    with LocalServer(api_key=API_KEY) as server:
        _server["it"] = server
        yield
        del _server["it"]


class TestUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[ElasticInferenceEmbeddings]:
        return ElasticInferenceEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return bedrock("http://127.0.0.1:9")  # construction must not connect

    @property
    def init_from_env_params(
        self,
    ) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {
                "ELASTICSEARCH_URL": "https://es.example.com:9200",
                "ELASTICSEARCH_API_KEY": "env-api-key",
                "AWS_ACCESS_KEY_ID": "AKIDFROMENV",
                "AWS_SECRET_ACCESS_KEY": "secret-from-env",
                "AWS_REGION": "eu-central-1",
            },
            {"model": "amazon.titan-embed-text-v2:0"},
            {
                "es_url": "https://es.example.com:9200",
                "es_api_key": "env-api-key",
                "aws_access_key_id": "AKIDFROMENV",
                "aws_secret_access_key": "secret-from-env",
                "region": "eu-central-1",
            },
        )


class TestIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[ElasticInferenceEmbeddings]:
        return ElasticInferenceEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return bedrock(_server["it"].url)
