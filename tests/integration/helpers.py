"""Settings shared by the integration tests."""

from __future__ import annotations

from typing import Any

from es_inference import (
    CompletionService,
    ConnectionConfig,
    EmbeddingService,
    EndpointSpec,
    ServiceOptions,
    build_spec,
    resolve_connection,
)

API_KEY = "test-api-key"
AWS_ACCESS = "AKIDLOCALTESTACCESS1"
AWS_SECRET = "local-test-secret-value-0123456789"
TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
FAST = {"rate_limit": {"requests_per_minute": 600_000}}


def bedrock(url: str, **overrides: Any) -> dict[str, Any]:
    """Adapter arguments for a Bedrock endpoint on the local server."""
    settings: dict[str, Any] = {
        "model": TITAN,
        "region": "us-east-1",
        "es_url": url,
        "es_api_key": API_KEY,
        "aws_access_key_id": AWS_ACCESS,
        "aws_secret_access_key": AWS_SECRET,
        "service_settings": dict(FAST),
        "max_retries": 2,
    }
    settings.update(overrides)
    return settings


def _spec(task_type: str, model: str) -> EndpointSpec:
    return build_spec(
        task_type,
        model=model,
        region="us-east-1",
        aws_access_key_id=AWS_ACCESS,
        aws_secret_access_key=AWS_SECRET,
        service_settings=FAST,
        env={},
    )


def _connection(url: str) -> ConnectionConfig:
    return resolve_connection(es_url=url, es_api_key=API_KEY, env={})


def embedding_service(
    url: str, options: ServiceOptions | None = None, *, model: str = TITAN
) -> EmbeddingService:
    """An embedding service on the local server, without the frameworks."""
    return EmbeddingService(_connection(url), _spec("text_embedding", model), options)


def completion_service(
    url: str, options: ServiceOptions | None = None, *, model: str = HAIKU
) -> CompletionService:
    """A completion service on the local server, without the frameworks."""
    return CompletionService(_connection(url), _spec("completion", model), options)
