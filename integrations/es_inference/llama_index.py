"""LlamaIndex adapters for Elasticsearch inference endpoints.

Install with ``pip install "es-inference[llama-index]"``.
"""

from __future__ import annotations

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "es_inference.llama_index needs LlamaIndex: "
        "pip install 'es-inference[llama-index]'"
    ) from exc

from typing import Any

from pydantic import Field
from typing_extensions import override

from ._fields import EmbeddingFields
from ._llama_index_llm import ElasticInferenceLLM

__all__ = ["ElasticInferenceEmbedding", "ElasticInferenceLLM"]


class ElasticInferenceEmbedding(EmbeddingFields, BaseEmbedding):
    """A LlamaIndex embedding model served by an Elasticsearch inference endpoint.

    LlamaIndex cuts inputs into chunks of ``embed_batch_size`` texts; within each
    chunk the adapter sends requests concurrently, sized to the provider's limit.

    Example:
        .. code-block:: python

            from llama_index.core import Settings
            from es_inference.llama_index import ElasticInferenceEmbedding

            Settings.embed_model = ElasticInferenceEmbedding(
                model="amazon.titan-embed-text-v2:0",
                region="us-east-1",
                es_url="https://localhost:9200",
            )
    """

    embed_batch_size: int = Field(
        default=256,
        gt=0,
        le=2048,
        description="Texts LlamaIndex hands over per call.",
    )

    def __init__(self, **data: Any) -> None:
        data.setdefault(
            "model_name", data.get("model") or data.get("inference_id") or "unknown"
        )
        super().__init__(**data)

    @classmethod
    @override
    def class_name(cls) -> str:
        return "ElasticInferenceEmbedding"

    @override
    def _get_query_embedding(self, query: str) -> Embedding:
        vector: list[float] = (
            self.embedding_service().embed([query], input_type="search")[0].tolist()
        )
        return vector

    @override
    async def _aget_query_embedding(self, query: str) -> Embedding:
        array = await self.embedding_service().aembed([query], input_type="search")
        vector: list[float] = array[0].tolist()
        return vector

    @override
    def _get_text_embedding(self, text: str) -> Embedding:
        vector: list[float] = self.embedding_service().embed([text])[0].tolist()
        return vector

    @override
    async def _aget_text_embedding(self, text: str) -> Embedding:
        vector: list[float] = (await self.embedding_service().aembed([text]))[
            0
        ].tolist()
        return vector

    @override
    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        vectors: list[list[float]] = self.embedding_service().embed(texts).tolist()
        return vectors

    @override
    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        vectors: list[list[float]] = (
            await self.embedding_service().aembed(texts)
        ).tolist()
        return vectors
