"""Requests and responses of the ``_inference`` API as pure functions (no I/O).

Builders return a :class:`Request`; parsers take the status and body bytes. The sync
and async transports share all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import numpy as np
import numpy.typing as npt

from . import _json
from ._constants import INFERENCE_ID_PATTERN, TASK_TYPES
from ._errors import (
    ApiError,
    ConfigurationError,
    ResponseDecodeError,
    UnexpectedResponseError,
    api_error_class,
)
from ._secrets import redact

FloatArray = npt.NDArray[np.float32]

_EMBEDDING_KINDS = ("text_embedding", "text_embedding_bytes", "text_embedding_bits")


@dataclass(frozen=True)
class Request:
    """One HTTP request, ready to send."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    inference_id: str | None = None
    idempotent: bool = True
    stream: bool = False


@dataclass(frozen=True)
class EndpointInfo:
    """An endpoint as GET or PUT shows it (secrets are never shown)."""

    inference_id: str
    task_type: str
    service: str
    service_settings: Mapping[str, Any]
    task_settings: Mapping[str, Any]
    chunking_settings: Mapping[str, Any] | None

    @property
    def dimensions(self) -> int | None:
        """The embedding size, if the endpoint reports one."""
        dims = self.service_settings.get("dimensions")
        return int(dims) if isinstance(dims, int) and dims > 0 else None

    @property
    def requests_per_minute(self) -> float | None:
        """``rate_limit.requests_per_minute``, if the endpoint reports one."""
        limit = self.service_settings.get("rate_limit")
        if isinstance(limit, Mapping):
            rpm = limit.get("requests_per_minute")
            if isinstance(rpm, (int, float)) and rpm > 0:
                return float(rpm)
        return None


def check_inference_id(inference_id: str) -> str:
    """Return the id unchanged if Elasticsearch accepts it, else raise."""
    if not isinstance(inference_id, str) or not INFERENCE_ID_PATTERN.match(
        inference_id
    ):
        raise ConfigurationError(
            f"Invalid inference_id {inference_id!r}: it may contain lowercase "
            "alphanumerics (a-z, 0-9), hyphens and underscores, and must start and "
            "end with an alphanumeric."
        )
    return inference_id


def check_task_type(task_type: str) -> str:
    """Return the task type unchanged if it is one Elasticsearch knows, else raise."""
    if task_type not in TASK_TYPES:
        raise ConfigurationError(
            f"Unknown task_type {task_type!r}; expected one of {', '.join(TASK_TYPES)}."
        )
    return task_type


def _segment(value: str) -> str:
    # Ids are validated first; encoding every byte outside the unreserved set is the
    # second guard, so that no value can add a path segment or a query.
    return quote(value, safe="")


@lru_cache(maxsize=1024)  # the same few paths, once per request of a bulk call
def endpoint_path(task_type: str | None, inference_id: str, suffix: str = "") -> str:
    """``/_inference/{task_type}/{inference_id}{suffix}`` with each part encoded."""
    parts = ["", "_inference"]
    if task_type:
        parts.append(_segment(check_task_type(task_type)))
    parts.append(_segment(check_inference_id(inference_id)))
    return "/".join(parts) + suffix


def get_endpoint(inference_id: str) -> Request:
    """GET one endpoint by id (any task type)."""
    return Request("GET", endpoint_path(None, inference_id), inference_id=inference_id)


def list_endpoints(task_type: str | None = None) -> Request:
    """GET every endpoint, or every endpoint of one task type."""
    if task_type is None:
        return Request("GET", "/_inference/_all")
    return Request("GET", f"/_inference/{_segment(check_task_type(task_type))}/_all")


def put_endpoint(
    task_type: str,
    inference_id: str,
    config: Mapping[str, Any],
    timeout: str | None = None,
) -> Request:
    """PUT (create) an endpoint. ``config`` holds service, settings and secrets."""
    params = {"timeout": timeout} if timeout else {}
    return Request(
        "PUT",
        endpoint_path(task_type, inference_id),
        params=params,
        body=_json.dumps(dict(config)),
        inference_id=inference_id,
        idempotent=False,
    )


def delete_endpoint(
    inference_id: str,
    task_type: str | None = None,
    *,
    force: bool = False,
    dry_run: bool = False,
) -> Request:
    """DELETE an endpoint."""
    params = {}
    if force:
        params["force"] = "true"
    if dry_run:
        params["dry_run"] = "true"
    return Request(
        "DELETE",
        endpoint_path(task_type, inference_id),
        params=params,
        inference_id=inference_id,
        idempotent=False,
    )


def update_endpoint(
    task_type: str, inference_id: str, body: Mapping[str, Any]
) -> Request:
    """PUT ``_update``: new secrets, task settings or mutable service settings."""
    return Request(
        "PUT",
        endpoint_path(task_type, inference_id, "/_update"),
        body=_json.dumps(dict(body)),
        inference_id=inference_id,
        idempotent=False,
    )


def infer(
    task_type: str,
    inference_id: str,
    inputs: str | Sequence[str],
    *,
    input_type: str | None = None,
    task_settings: Mapping[str, Any] | None = None,
    timeout: str | None = None,
    stream: bool = False,
) -> Request:
    """POST an inference request (``_stream`` when ``stream`` is true)."""
    body: dict[str, Any] = {
        "input": inputs if isinstance(inputs, str) else list(inputs)
    }
    if input_type:
        body["input_type"] = input_type
    if task_settings:
        body["task_settings"] = dict(task_settings)
    params = {"timeout": timeout} if timeout else {}
    suffix = "/_stream" if stream else ""
    return Request(
        "POST",
        endpoint_path(task_type, inference_id, suffix),
        params=params,
        body=_json.dumps(body),
        inference_id=inference_id,
        stream=stream,
    )


def trained_model_stats(model_or_deployment_id: str) -> Request:
    """GET ``_ml/trained_models/{id}/_stats`` for an in-cluster model."""
    return Request(
        "GET",
        f"/_ml/trained_models/{_segment(model_or_deployment_id)}/_stats",
        inference_id=model_or_deployment_id,
    )


# Parsing ------------------------------------------------------------------------


def decode_json(body: bytes | memoryview, what: str) -> Any:
    """Decode a JSON body, translating failures into :class:`ResponseDecodeError`."""
    try:
        return _json.loads(body)
    except ValueError as exc:
        raise ResponseDecodeError(
            f"{what}: the response is not valid JSON ({len(body)} bytes; {exc})"
        ) from None


def parse_endpoints(body: bytes) -> list[EndpointInfo]:
    """Parse a GET or PUT answer, in the 8.15+ or the older ``models`` shape."""
    data = decode_json(body, "endpoint listing")
    if not isinstance(data, dict):
        raise ResponseDecodeError("endpoint listing: expected a JSON object")
    if "endpoints" in data or "models" in data:
        items = data.get("endpoints", data.get("models"))
    else:
        items = [data]  # a PUT answer is the endpoint object itself
    if not isinstance(items, list):
        raise ResponseDecodeError("endpoint listing: expected a list of endpoints")
    return [_endpoint_info(item) for item in items]


def _endpoint_info(item: Any) -> EndpointInfo:
    if not isinstance(item, dict):
        raise ResponseDecodeError("endpoint listing: an entry is not an object")
    inference_id = item.get("inference_id", item.get("model_id"))
    if not isinstance(inference_id, str):
        raise ResponseDecodeError("endpoint listing: an entry has no inference_id")
    chunking = item.get("chunking_settings")
    return EndpointInfo(
        inference_id=inference_id,
        task_type=str(item.get("task_type", "")),
        service=str(item.get("service", "")),
        service_settings=dict(item.get("service_settings") or {}),
        task_settings=dict(item.get("task_settings") or {}),
        chunking_settings=dict(chunking) if isinstance(chunking, dict) else None,
    )


def embedding_rows(body: bytes | memoryview) -> tuple[str, list[Any]]:
    """Return the result kind and the list of ``{"embedding": …}`` objects."""
    data = decode_json(body, "embedding response")
    if isinstance(data, dict):
        for kind in _EMBEDDING_KINDS:
            rows = data.get(kind)
            if isinstance(rows, list):
                return kind, rows
    keys = ", ".join(sorted(data)) if isinstance(data, dict) else type(data).__name__
    raise ResponseDecodeError(
        f"embedding response: expected text_embedding results, got {keys}"
    )


def row_width(kind: str, row: Any) -> int:
    """The logical dimension of one result row."""
    values = _embedding_values(row)
    return len(values) * 8 if kind == "text_embedding_bits" else len(values)


def _embedding_values(row: Any) -> list[Any]:
    values = row.get("embedding") if isinstance(row, dict) else None
    if not isinstance(values, list):
        raise ResponseDecodeError("embedding response: a result has no embedding list")
    return values


def write_embeddings(kind: str, rows: list[Any], out: FloatArray) -> None:
    """Write ``rows`` into ``out`` (shape ``(len(rows), dims)``), checking shapes.

    Float results are copied as float32; ``bytes`` results as their int8 values;
    ``bits`` results are unpacked to 0.0/1.0, most significant bit first.
    """
    if len(rows) != out.shape[0]:
        raise UnexpectedResponseError(
            f"embedding response: asked for {out.shape[0]} embeddings, got {len(rows)}"
        )
    dims = out.shape[1]
    for i, row in enumerate(rows):
        values = _embedding_values(row)
        if kind == "text_embedding_bits":
            packed = np.asarray(values, dtype=np.int8).view(np.uint8)
            if packed.size * 8 != dims:
                raise _width_error(i, dims, packed.size * 8)
            out[i] = np.unpackbits(packed)
            continue
        if len(values) != dims:
            raise _width_error(i, dims, len(values))
        try:
            out[i] = values
        except (TypeError, ValueError):
            raise UnexpectedResponseError(
                f"embedding response: result {i} holds a value that is not a number"
            ) from None


def _width_error(i: int, wanted: int, got: int) -> UnexpectedResponseError:
    return UnexpectedResponseError(
        f"embedding response: result {i} has {got} dimensions, expected {wanted}"
    )


def parse_completion(body: bytes | memoryview) -> list[str]:
    """Return the ``result`` texts of a completion answer."""
    data = decode_json(body, "completion response")
    rows = data.get("completion") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ResponseDecodeError("completion response: expected completion results")
    texts = []
    for row in rows:
        text = row.get("result") if isinstance(row, dict) else None
        if not isinstance(text, str):
            raise ResponseDecodeError("completion response: a result has no text")
        texts.append(text)
    return texts


def parse_error(
    status: int,
    body: bytes,
    request: Request,
    *,
    secrets: Sequence[str] = (),
    retry_after: float | None = None,
) -> ApiError:
    """Turn an error answer into the matching :class:`ApiError` subclass."""
    error_type, reason, caused_by = _error_fields(body, status)
    if caused_by:
        caused_by = {
            "type": redact(str(caused_by.get("type", "")), secrets),
            "reason": redact(str(caused_by.get("reason", "")), secrets),
        }
    cls = api_error_class(status)
    return cls(
        status,
        error_type,
        redact(reason, secrets),
        caused_by=caused_by,
        inference_id=request.inference_id,
        method=request.method,
        path=request.path,
        retry_after=retry_after,
    )


def _error_fields(body: bytes, status: int) -> tuple[str, str, dict[str, Any] | None]:
    try:
        data = _json.loads(body) if body else None
    except ValueError:
        data = _event_stream_error(body)
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        # The standard envelope, or the OpenAI-style one of the chat path.
        reason = error.get("reason", error.get("message", ""))
        caused_by = error.get("caused_by")
        return (
            str(error.get("type", "")),
            str(reason),
            caused_by if isinstance(caused_by, dict) else None,
        )
    if isinstance(error, str):
        return "", error, None
    text = body[:500].decode("utf-8", "replace").strip()
    return "", text or f"HTTP {status} with no body", None


def _event_stream_error(body: bytes) -> Any:
    # A stream that fails before it starts answers with the error status and one
    # server-sent ``error`` event whose data is the usual error envelope.
    for line in body.decode("utf-8", "replace").splitlines():
        line = line.lstrip("\ufeff")
        if line.startswith("data:"):
            try:
                return _json.loads(line[5:].strip())
            except ValueError:
                return None
    return None


def parse_allocation(body: bytes, deployment_id: str) -> tuple[str, int, int, str]:
    """Return ``(state, allocation_count, target_count, reason)`` of a deployment.

    ``state`` is ``allocation_status.state`` (``starting``, ``started``,
    ``fully_allocated``), ``missing`` when there is no such deployment, or the
    deployment's own state when it is ``failed`` or ``stopping``.
    """
    data = decode_json(body, "trained model stats")
    stats = data.get("trained_model_stats") if isinstance(data, dict) else None
    if not isinstance(stats, list):
        raise ResponseDecodeError("trained model stats: no trained_model_stats list")
    chosen = None
    for entry in stats:
        deployment = entry.get("deployment_stats") if isinstance(entry, dict) else None
        if isinstance(deployment, dict) and (
            deployment.get("deployment_id") == deployment_id or chosen is None
        ):
            chosen = deployment
    if chosen is None:
        return "missing", 0, 0, ""
    deployment_state = str(chosen.get("state", ""))
    if deployment_state in ("failed", "stopping"):
        return deployment_state, 0, 0, str(chosen.get("reason", ""))
    allocation = chosen.get("allocation_status") or {}
    return (
        str(allocation.get("state", deployment_state or "starting")),
        int(allocation.get("allocation_count", 0)),
        int(allocation.get("target_allocation_count", 0)),
        "",
    )
