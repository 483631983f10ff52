"""LangChain adapters for Elasticsearch inference endpoints.

Install with ``pip install "es-inference[langchain]"``.
"""

from __future__ import annotations

try:
    from langchain_core.embeddings import Embeddings
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "es_inference.langchain needs LangChain: pip install 'es-inference[langchain]'"
    ) from exc

from typing_extensions import override

from ._fields import EmbeddingFields
from ._langchain_llm import ElasticInferenceLLM
from ._wire import FloatArray

__all__ = ["ElasticInferenceEmbeddings", "ElasticInferenceLLM"]


class ElasticInferenceEmbeddings(EmbeddingFields, Embeddings):
    """LangChain embeddings served by an Elasticsearch inference endpoint.

    On first use the adapter gets, creates or reuses its ``text_embedding``
    endpoint; with only ``inference_id`` it uses that endpoint as it is. Calls are
    batched to what the provider accepts, sent concurrently, paced to the endpoint's
    rate limit and retried when that can help.

    Example:
        .. code-block:: python

            from es_inference.langchain import ElasticInferenceEmbeddings

            embeddings = ElasticInferenceEmbeddings(
                model="amazon.titan-embed-text-v2:0",
                region="us-east-1",
                es_url="https://localhost:9200",
            )
            vectors = embeddings.embed_documents(["Elastic is a search company."])
            query = embeddings.embed_query("Who is Elastic?")

    Elasticsearch credentials come from ``es_api_key`` (the encoded key or an
    ``(id, api_key)`` pair; or ``es_user`` with ``es_password``, or
    ``es_bearer_token``) or ``ELASTICSEARCH_API_KEY``; AWS keys from
    ``aws_access_key_id``/``aws_secret_access_key`` or the AWS environment
    variables, and are needed only to create the endpoint. An existing endpoint
    keeps its own keys; keys passed here are then not applied, and a WARNING says
    so (``es-inference rotate-keys`` replaces them).

    Invalid settings raise :class:`~es_inference.ConfigurationError` from the
    constructor, naming each setting and its allowed range; nothing is sent.
    """

    def embed_array(
        self, texts: list[str], *, input_type: str = "ingest"
    ) -> FloatArray:
        """Embed texts into an ``(n, dims)`` float32 array, in input order.

        Raises:
            InputError: for empty, non-string or over-long inputs, before sending.
            PartialResultError: if some inputs failed; it keeps the vectors of the
                others and lists the failed indices.
        """
        return self.embedding_service().embed(texts, input_type=input_type)

    async def aembed_array(
        self, texts: list[str], *, input_type: str = "ingest"
    ) -> FloatArray:
        """Async :meth:`embed_array`."""
        return await self.embedding_service().aembed(texts, input_type=input_type)

    @override
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = self.embed_array(texts).tolist()
        return vectors

    @override
    def embed_query(self, text: str) -> list[float]:
        vector: list[float] = self.embed_array([text], input_type="search")[0].tolist()
        return vector

    @override
    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = (await self.aembed_array(texts)).tolist()
        return vectors

    @override
    async def aembed_query(self, text: str) -> list[float]:
        array = await self.aembed_array([text], input_type="search")
        vector: list[float] = array[0].tolist()
        return vector
