"""``es-inference demo``: embed the Python reference and answer questions with it."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from ._corpus import Passage, reference_passages

logger = logging.getLogger("es_inference.demo")

EMBEDDING_MODEL = "amazon.titan-embed-text-v2:0"
COMPLETION_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"

#: Questions and the reference topic that answers each.
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("What does the with statement guarantee about __exit__?", "with"),
    ("How do I catch an exception and run cleanup code in finally?", "try"),
    ("What does the yield statement do inside a generator function?", "yield"),
    ("How do I define a function with default parameter values?", "function"),
    ("How are chained comparisons like a < b < c evaluated?", "comparisons"),
    ("What does the global statement do?", "global"),
)


@dataclass
class DemoReport:
    """What a demo run measured."""

    passages: int
    dimensions: int
    requests: int
    seconds: float
    hits: int
    answer: str = ""


@contextlib.contextmanager
def _cluster(stream: TextIO) -> Iterator[dict[str, Any]]:
    """Connection settings: the configured cluster, or a local stand-in server."""
    if os.environ.get("ELASTICSEARCH_URL") or os.environ.get("ELASTIC_CLOUD_ID"):
        print("Using the Elasticsearch cluster from the environment.", file=stream)
        yield {}
        return
    try:
        from .local import LocalServer
    except ImportError as exc:
        raise SystemExit(
            "No Elasticsearch configured and the local server is not installed: "
            "pip install 'es-inference[local]', or set ELASTICSEARCH_URL"
        ) from exc
    api_key = secrets.token_urlsafe(16)
    with LocalServer(api_key=api_key) as server:
        print(
            f"No ELASTICSEARCH_URL set: started the local stand-in server at "
            f"{server.url} (offline; no request leaves this machine).",
            file=stream,
        )
        yield {
            "es_url": server.url,
            "es_api_key": api_key,
            "region": "us-east-1",
            "aws_access_key_id": "local-demo-access-key",
            "aws_secret_access_key": "local-demo-secret-key",
            # The stand-in answers fast; a real endpoint keeps its own rate limit.
            "service_settings": {"rate_limit": {"requests_per_minute": 60_000}},
        }


def run(stream: TextIO = sys.stdout, top_k: int = 3) -> DemoReport:
    """Run the demo, printing as it goes; returns the measured numbers."""
    from langchain_core.vectorstores import InMemoryVectorStore
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    from .langchain import ElasticInferenceEmbeddings, ElasticInferenceLLM
    from .llama_index import ElasticInferenceEmbedding

    with _cluster(stream) as settings:
        passages = reference_passages()
        texts = [p.text for p in passages]
        print(
            f"Embedding {len(passages)} passages of the Python language reference "
            f"with {EMBEDDING_MODEL} …",
            file=stream,
        )
        lc_embeddings = ElasticInferenceEmbeddings(model=EMBEDDING_MODEL, **settings)
        started = time.perf_counter()
        vectors = lc_embeddings.embed_array(texts)
        seconds = time.perf_counter() - started
        service = lc_embeddings.embedding_service()
        endpoint = service.endpoint().info
        print(
            f"Endpoint [{endpoint.inference_id}]: {len(passages)} passages, "
            f"{vectors.shape[1]} dimensions, {service.requests_sent} requests, "
            f"{seconds:.1f}s.",
            file=stream,
        )

        # LangChain: a vector store fed with the vectors just computed.
        store = InMemoryVectorStore(embedding=lc_embeddings)
        for i, (passage, vector) in enumerate(zip(passages, vectors, strict=True)):
            store.store[str(i)] = {
                "id": str(i),
                "vector": vector.tolist(),
                "text": passage.text,
                "metadata": {"topic": passage.topic},
            }
        # LlamaIndex: an index over the same vectors; its embedding adapter reuses
        # the endpoint (no second creation) to embed the questions.
        li_embedding = ElasticInferenceEmbedding(model=EMBEDDING_MODEL, **settings)
        nodes = [
            TextNode(text=p.text, metadata={"topic": p.topic}, embedding=v.tolist())
            for p, v in zip(passages, vectors, strict=True)
        ]
        index = VectorStoreIndex(nodes, embed_model=li_embedding)
        retriever = index.as_retriever(similarity_top_k=top_k)

        hits = 0
        for question, expected in QUESTIONS:
            lc_topics = [
                doc.metadata["topic"]
                for doc in store.similarity_search(question, k=top_k)
            ]
            li_results = retriever.retrieve(question)
            li_topics = [r.node.metadata["topic"] for r in li_results]
            hit = expected in lc_topics[:top_k]
            hits += hit
            print(f"\nQ: {question}", file=stream)
            print(f"   LangChain top topics:  {', '.join(lc_topics)}", file=stream)
            print(f"   LlamaIndex top topics: {', '.join(li_topics)}", file=stream)
            best = _first_lines(li_results[0].node.get_content()) if li_results else ""
            print(f"   best passage: {best}", file=stream)
        # Generation: retrieve passages, then stream an answer from a completion
        # endpoint that the library creates (or reuses) the same way.
        question = QUESTIONS[0][0]
        context = "\n\n".join(
            " ".join(doc.page_content.split())  # unwrap the reference's hard lines
            for doc in store.similarity_search(question, k=top_k)
        )
        prompt = (
            "Answer the question from the passages of the Python reference.\n\n"
            f"Passages:\n{context}\n\nQuestion: {question}\nAnswer:"
        )
        llm = ElasticInferenceLLM(
            model=COMPLETION_MODEL, max_new_tokens=200, **settings
        )
        print(f"\nAsking {COMPLETION_MODEL}: {question}\n   ", end="", file=stream)
        pieces = []
        for token in llm.stream(prompt):
            pieces.append(token)
            print(token, end="", file=stream, flush=True)
        print(file=stream)

        requests = (
            service.requests_sent
            + li_embedding.embedding_service().requests_sent
            + llm.completion_service().requests_sent
        )
        print(
            f"\n{hits} of {len(QUESTIONS)} questions found their reference topic in "
            f"the top {top_k}; {requests} requests in all.",
            file=stream,
        )
        return DemoReport(
            len(passages),
            int(vectors.shape[1]),
            requests,
            seconds,
            hits,
            "".join(pieces),
        )


def _first_lines(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


__all__ = ["QUESTIONS", "DemoReport", "Passage", "run"]
