"""The four adapters, and one call through each one's framework interface."""

from __future__ import annotations

from typing import Any

from es_inference.langchain import ElasticInferenceEmbeddings, ElasticInferenceLLM
from es_inference.llama_index import ElasticInferenceEmbedding
from es_inference.llama_index import ElasticInferenceLLM as LlamaLLM

PROMPT = "Elastic makes Elasticsearch.\nQuestion: What does Elastic make?"
EMBEDDINGS = (ElasticInferenceEmbeddings, ElasticInferenceEmbedding)
LLMS = (ElasticInferenceLLM, LlamaLLM)
ALL = (*EMBEDDINGS, *LLMS)


def use(adapter: Any) -> Any:
    """One call through the adapter's framework interface."""
    if isinstance(adapter, ElasticInferenceEmbeddings):
        return adapter.embed_query("Elastic")
    if isinstance(adapter, ElasticInferenceEmbedding):
        return adapter.get_query_embedding("Elastic")
    if isinstance(adapter, ElasticInferenceLLM):
        return adapter.invoke(PROMPT)
    return adapter.complete(PROMPT).text
