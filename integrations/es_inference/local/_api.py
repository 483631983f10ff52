"""The Elasticsearch REST API of the local server: routing and request handlers.

Routing works like Elasticsearch's path trie: a path is split into segments
(percent-decoded), every route pattern of that length is considered with literal
segments preferred over ``{placeholders}``, and the first pattern that accepts the
method handles the request. A path no pattern matches gets Elasticsearch's flat
400 ``no handler found for uri [...] and method [...]``; a path whose patterns do
not accept the method gets the flat 405 ``Incorrect HTTP method ...``.

Routes (``{task}`` is a task type, ``{id}`` an inference id):

* ``GET|HEAD /`` cluster information
* ``GET /_inference``, ``GET /_inference/{id}`` (``_all`` or ``*`` lists all),
  ``GET /_inference/{task}/{id}`` (``{task}/_all`` lists one task type)
* ``PUT``, ``POST``, ``DELETE`` on ``/_inference/{id}`` and ``/_inference/{task}/{id}``
* ``POST /_inference/{id}/_stream``, ``POST /_inference/{task}/{id}/_stream`` (8.16+)
* ``PUT /_inference/{id}/_update``, ``PUT /_inference/{task}/{id}/_update`` (8.17+)
* ``GET /_ml/trained_models/_stats``, ``GET /_ml/trained_models/{id}/_stats``
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .._constants import INFERENCE_ID_PATTERN, INPUT_TYPES, TASK_TYPES
from . import _bedrock, _internal
from ._auth import Authenticator
from ._errors import (
    EsError,
    action_request_validation,
    not_found,
    status_exception,
    validation_exception,
)
from ._faults import FaultConfig, FaultPlan, RateLimiter
from ._http import Request
from ._javafmt import grown_capacity, hash_order, java_list, java_str, masking
from ._json import DecodeError, dumps, loads
from ._models import EmbeddingModel, ModelUnavailableError, get_model, is_loaded
from ._params import (
    bool_param,
    check_params,
    format_time_value,
    parse_time_value,
    time_param,
)
from ._responder import answer
from ._settings import SECRET_KEYS, unknown_settings
from ._sse import DONE_EVENT, StreamMode, completion_events, event
from ._store import Endpoint, EndpointStore
from ._version import EsVersion

__all__ = ["EMBEDDING_FORMATS", "Application", "Exchange", "Reply"]

logger = logging.getLogger("es_inference.local.api")

#: Result shapes of ``text_embedding`` responses (a test switch; Bedrock sends float).
EMBEDDING_FORMATS = ("float", "bytes", "bits")

_PARSER_NAME = "cluster:monitor/xpack/inference"
_INFER_FIELDS = (
    "input",
    "input_type",
    "task_settings",
    "query",
    "return_documents",
    "top_n",
    "timeout",
)
_INLINE_CHARS = 16_000
_COMPAT = re.compile(r"compatible-with\s*=\s*(\d+)")
_RESPONDER_DIMS = 256
_INVALID_ID = (
    "Invalid inference_id; '{}' can contain lowercase alphanumeric (a-z and 0-9), "
    "hyphens or underscores; must start and end with alphanumeric"
)


@dataclass
class Exchange:
    """What handling a request found out, for the request log."""

    inference_id: str | None = None
    n_inputs: int | None = None
    fault: str | None = None


@dataclass
class Reply:
    """A response to send.

    Attributes:
        status: HTTP status.
        body: JSON body bytes (ignored for event streams).
        headers: Extra response headers.
        events: For ``text/event-stream`` replies, the complete events to send.
        mode: Stream switches applied while sending ``events``.
    """

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    events: list[bytes] | None = None
    mode: StreamMode | None = None


@dataclass
class _InferBody:
    inputs: list[str] | None
    query: str | None
    input_type: str | None
    task_settings: dict[str, Any] | None
    timeout: float | None
    return_documents: bool | None
    top_n: int | None


_Handler = Callable[..., Awaitable[Reply]]


@dataclass(frozen=True)
class _Route:
    pattern: tuple[str, ...]
    methods: dict[str, str]

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        if len(segments) != len(self.pattern):
            return None
        params: dict[str, str] = {}
        for part, segment in zip(self.pattern, segments, strict=True):
            if part.startswith("{"):
                params[part[1:-1]] = segment
            elif part != segment:
                return None
        return params

    @property
    def specificity(self) -> tuple[bool, ...]:
        return tuple(part.startswith("{") for part in self.pattern)


def _routes(version: EsVersion) -> list[_Route]:
    crud = {"GET": "get", "PUT": "put", "POST": "infer", "DELETE": "delete"}
    routes = [
        _Route((), {"GET": "root", "HEAD": "root"}),
        _Route(("_inference",), {"GET": "get"}),
        _Route(("_inference", "{inference_id}"), crud),
        _Route(("_inference", "{task_type}", "{inference_id}"), crud),
        _Route(("_ml", "trained_models", "_stats"), {"GET": "stats"}),
        _Route(("_ml", "trained_models", "{inference_id}", "_stats"), {"GET": "stats"}),
    ]
    if version.stream_route:
        routes.append(
            _Route(("_inference", "{inference_id}", "_stream"), {"POST": "stream"})
        )
        routes.append(
            _Route(
                ("_inference", "{task_type}", "{inference_id}", "_stream"),
                {"POST": "stream"},
            )
        )
    if version.update_route:
        routes.append(
            _Route(("_inference", "{inference_id}", "_update"), {"PUT": "update"})
        )
        routes.append(
            _Route(
                ("_inference", "{task_type}", "{inference_id}", "_update"),
                {"PUT": "update"},
            )
        )
    return sorted(routes, key=lambda r: r.specificity)


def _locate(text: str, key: str, at_value: bool) -> str:
    match = re.search(r'"' + re.escape(key) + r'"\s*:\s*', text)
    if match is None:
        return "1:1"
    position = match.end() if at_value else match.start()
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return f"{line}:{column}"


def _parse_failure(
    text: str, key: str, cause: EsError | None = None, *, unknown: bool = False
) -> EsError:
    where = _locate(text, key, at_value=not unknown)
    what = f"unknown field [{key}]" if unknown else f"failed to parse field [{key}]"
    reason = f"[{where}] [{_PARSER_NAME}] {what}"
    return EsError(
        400,
        "x_content_parse_exception",
        reason,
        caused_by=None if cause is None else cause.cause_view(),
    )


def _token_name(value: Any) -> str:
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, str):
        return "VALUE_STRING"
    if isinstance(value, bool):
        return "VALUE_BOOLEAN"
    return "VALUE_NULL" if value is None else "VALUE_NUMBER"


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return java_str(value)
    return None


class Application:
    """The emulated cluster: endpoints, deployments, switches and request handling.

    All request handling runs on the server's event loop; the public switches may
    be called from other threads.

    Args:
        es_version: The Elasticsearch version to emulate.
        authenticator: Credential checks.
        faults: Fault configuration for inference requests.
        embedding_format: ``float``, ``bytes`` or ``bits``.
        model: Base model name (``wordllama`` or ``hashing``).
        allocation_delay_s: Seconds before in-cluster deployments are allocated.
        allocation_polls: Stats polls that still see new deployments starting.
    """

    def __init__(
        self,
        *,
        es_version: str,
        authenticator: Authenticator,
        faults: FaultConfig | None,
        embedding_format: str,
        model: str,
        allocation_delay_s: float,
        allocation_polls: int,
    ) -> None:
        if embedding_format not in EMBEDDING_FORMATS:
            raise ValueError(f"embedding_format must be one of {EMBEDDING_FORMATS}")
        self.version = EsVersion.parse(es_version)
        self.auth = authenticator
        self.store = EndpointStore()
        self.deployments = _internal.Deployments(allocation_delay_s, allocation_polls)
        self.fault_plan = FaultPlan(faults or FaultConfig())
        self.stream_mode = StreamMode()
        self.embedding_format = embedding_format
        self.model_name = model
        self._limiter = RateLimiter()
        self._routes = _routes(self.version)
        self._executor: ThreadPoolExecutor | None = None
        self._fault_sequence = 0

    def close(self) -> None:
        """Release the worker threads (they are created again when needed)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    # ----------------------------------------------------------------- dispatch

    async def handle(self, request: Request, exchange: Exchange) -> Reply:
        """Handle one request; every failure becomes an error reply."""
        try:
            self.auth.check(request)
            handler, params = self._resolve(request)
            return await handler(request, exchange, **params)
        except EsError as error:
            return self.error_reply(error)
        except Exception:
            logger.exception(
                "unexpected failure handling %s %s", request.method, request.path
            )
            return self.error_reply(
                EsError(
                    500, "exception", "the local server failed to handle the request"
                )
            )

    def error_reply(self, error: EsError) -> Reply:
        """A JSON error reply."""
        return Reply(error.status, dumps(error.body()), list(error.http_headers))

    def _resolve(self, request: Request) -> tuple[_Handler, dict[str, str]]:
        allowed: set[str] = set()
        for route in self._routes:
            params = route.match(request.segments)
            if params is None:
                continue
            name = route.methods.get(request.method)
            if name is not None:
                return getattr(self, f"_on_{name}"), params
            allowed.update(route.methods)
        if allowed:
            raise EsError(
                405,
                "",
                f"Incorrect HTTP method for uri [{request.target}] and method "
                f"[{request.method}], allowed: [{', '.join(sorted(allowed))}]",
                http_headers=[("Allow", ",".join(sorted(allowed)))],
                flat=True,
            )
        raise EsError(
            400,
            "",
            f"no handler found for uri [{request.target}] and method "
            f"[{request.method}]",
            flat=True,
        )

    # ----------------------------------------------------------------- helpers

    def _url_task(self, task: str | None) -> str | None:
        if task is None:
            return None
        if task not in TASK_TYPES:
            raise status_exception(f"Unknown task_type [{task}]")
        return task

    def _endpoint(self, inference_id: str) -> Endpoint:
        endpoint = self.store.get(inference_id)
        if endpoint is None:
            raise not_found(self.version.not_found_reason(inference_id))
        return endpoint

    def _mismatch(self, requested: str, endpoint: Endpoint) -> EsError:
        owner = (
            "the model's" if self.version.legacy_models else "the inference endpoint's"
        )
        return status_exception(
            f"Requested task type [{requested}] does not match {owner} task type "
            f"[{endpoint.task_type}]"
        )

    def view(self, endpoint: Endpoint) -> dict[str, Any]:
        """The endpoint as GET/PUT responses show it (no secrets)."""
        id_key = "model_id" if self.version.legacy_models else "inference_id"
        out: dict[str, Any] = {
            id_key: endpoint.inference_id,
            "task_type": endpoint.task_type,
            "service": endpoint.service,
            "service_settings": endpoint.service_settings,
        }
        if endpoint.task_settings or not self.version.omit_empty_task_settings:
            out["task_settings"] = endpoint.task_settings
        if endpoint.chunking_settings is not None:
            out["chunking_settings"] = endpoint.chunking_settings
        return out

    @staticmethod
    def _json(body: Any, status: int = 200) -> Reply:
        return Reply(status, dumps(body))

    @staticmethod
    def _config_map(request: Request) -> tuple[dict[str, Any], str]:
        if not request.body.strip():
            raise EsError(400, "parse_exception", "request body is required")
        text = request.body.decode("utf-8", errors="replace")
        try:
            data = loads(request.body)
        except DecodeError as exc:
            raise EsError(
                400,
                "parse_exception",
                "Failed to parse content to map",
                caused_by={
                    "type": "json_parse_exception",
                    "reason": f"{exc.msg} at [Source: (byte[]) line: {exc.lineno}, "
                    f"column: {exc.colno}]",
                },
            ) from None
        if not isinstance(data, dict):
            raise EsError(400, "parse_exception", "Failed to parse content to map")
        return data, text

    # ----------------------------------------------------------------- routes

    async def _on_root(self, request: Request, exchange: Exchange) -> Reply:
        check_params(request.path, request.query, ())
        major = self.version.parts[0]
        wire, index = ("8.18.0", "8.0.0") if major >= 9 else ("7.17.0", "7.0.0")
        return self._json(
            {
                "name": "es-inference-local",
                "cluster_name": "es-inference-local",
                "cluster_uuid": "bG9jYWwtaW5mZXJlbmNl",
                "version": {
                    "number": self.version.number,
                    "build_flavor": "default",
                    "build_type": "local",
                    "build_hash": "local",
                    "build_date": "1970-01-01T00:00:00.000Z",
                    "build_snapshot": False,
                    "minimum_wire_compatibility_version": wire,
                    "minimum_index_compatibility_version": index,
                },
                "tagline": "You Know, for Search",
            }
        )

    async def _on_get(
        self,
        request: Request,
        exchange: Exchange,
        inference_id: str | None = None,
        task_type: str | None = None,
    ) -> Reply:
        check_params(request.path, request.query, ())
        url_task = self._url_task(task_type)
        exchange.inference_id = inference_id
        if inference_id is None or inference_id in ("_all", "*"):
            found = self.store.endpoints(url_task)
        else:
            endpoint = self._endpoint(inference_id)
            if url_task is not None and url_task != endpoint.task_type:
                raise self._mismatch(url_task, endpoint)
            found = [endpoint]
        key = "models" if self.version.legacy_models else "endpoints"
        return self._json({key: [self.view(e) for e in found]})

    async def _on_put(
        self,
        request: Request,
        exchange: Exchange,
        inference_id: str,
        task_type: str | None = None,
    ) -> Reply:
        check_params(request.path, request.query, ("timeout",))
        time_param(request.query, "timeout")
        url_task = self._url_task(task_type)
        exchange.inference_id = inference_id
        if not INFERENCE_ID_PATTERN.match(inference_id):
            raise action_request_validation([_INVALID_ID.format(inference_id)])
        config, _ = self._config_map(request)
        with masking(_secret_values(config)):
            endpoint, secrets = self._create(inference_id, url_task, config)

        if not self.store.add(endpoint, secrets):
            raise EsError(
                400,
                "resource_already_exists_exception",
                f"Inference endpoint [{inference_id}] already exists",
            )
        if endpoint.service == _internal.SERVICE:
            self.deployments.start(endpoint)
        logger.info(
            "created endpoint [%s] (%s, %s)",
            inference_id,
            endpoint.service,
            endpoint.task_type,
        )
        return self._json(self.view(endpoint))

    def _create(
        self, inference_id: str, url_task: str | None, body: dict[str, Any]
    ) -> tuple[Endpoint, dict[str, str]]:
        config = dict(body)
        config_size = len(config)
        task_type = self._resolve_task_type(url_task, config.pop("task_type", None))

        service = config.pop("service", None)
        if service is None:
            raise status_exception(
                "Inference endpoint configuration is missing the [service] setting"
            )
        if service == _bedrock.SERVICE:
            return _bedrock.parse_create(
                inference_id, task_type, config, config_size, self.version
            )
        if service == _internal.SERVICE:
            endpoint = _internal.parse_create(
                inference_id, task_type, config, config_size, self.version
            )
            return endpoint, {}
        raise status_exception(f"Unknown service [{java_str(service)}]")

    @staticmethod
    def _resolve_task_type(url_task: str | None, body_task: Any) -> str:
        if body_task is None:
            if url_task is None:
                raise status_exception("model is missing required setting [task_type]")
            return url_task
        text = java_str(body_task)
        if text not in TASK_TYPES:
            raise status_exception(f"Unknown task_type [{text}]")
        if url_task is not None and url_task != text:
            raise status_exception(
                "Cannot resolve conflicting task_type parameter in the request URL "
                f"[{url_task}] and the request body [{text}]"
            )
        return text

    async def _on_delete(
        self,
        request: Request,
        exchange: Exchange,
        inference_id: str,
        task_type: str | None = None,
    ) -> Reply:
        version = self.version
        flags = ("dry_run", "force") if version.delete_lists_pipelines else ()
        check_params(request.path, request.query, flags)
        dry_run = bool_param(request.query, "dry_run") if flags else False
        force = bool_param(request.query, "force") if flags else False
        url_task = self._url_task(task_type)
        exchange.inference_id = inference_id
        endpoint = self._endpoint(inference_id)
        if url_task is not None and url_task != endpoint.task_type:
            raise self._mismatch(url_task, endpoint)

        pipelines, indexes = self.store.usage(inference_id)
        pipelines = hash_order(pipelines, grown_capacity(len(pipelines)))
        indexes = hash_order(indexes, grown_capacity(len(indexes)))
        if not version.delete_lists_indexes:
            indexes = []
        message = self._in_use_message(inference_id, pipelines, indexes)
        if dry_run:
            body: dict[str, Any] = {"acknowledged": False, "pipelines": pipelines}
            if version.delete_lists_indexes:
                body["indexes"] = indexes
            if message:
                body["error_message"] = message
            return self._json(body)
        if message and not force and version.delete_lists_pipelines:
            raise status_exception(message, 409)

        self.store.remove(inference_id)
        self.deployments.stop(inference_id)
        self._limiter.forget(inference_id)
        logger.info("deleted endpoint [%s]", inference_id)
        body = {"acknowledged": True}
        if version.delete_lists_pipelines:
            body["pipelines"] = []
        if version.delete_lists_indexes:
            body["indexes"] = []
        return self._json(body)

    def _in_use_message(
        self, inference_id: str, pipelines: list[str], indexes: list[str]
    ) -> str:
        if not self.version.delete_lists_indexes:
            if not pipelines:
                return ""
            return (
                f"Inference endpoint {inference_id} is referenced by pipelines and "
                "cannot be deleted. Use `force` to delete it anyway, or use `dry_run` "
                "to list the pipelines that reference it."
            )
        message = ""
        if pipelines:
            message += (
                f"Inference endpoint {inference_id} is referenced by pipelines: "
                f"{java_list(pipelines)}. Ensure that no pipelines are using this "
                "inference endpoint, or use force to ignore this warning and delete "
                "the inference endpoint."
            )
        if indexes:
            message += (
                f" Inference endpoint {inference_id} is being used in the mapping for "
                f"indexes: {java_list(indexes)}. Ensure that no index mappings are "
                "using this inference endpoint, or use force to ignore this warning "
                "and delete the inference endpoint."
            )
        return message

    async def _on_update(
        self,
        request: Request,
        exchange: Exchange,
        inference_id: str,
        task_type: str | None = None,
    ) -> Reply:
        check_params(request.path, request.query, ("timeout",))
        url_task = self._url_task(task_type)
        exchange.inference_id = inference_id
        if not INFERENCE_ID_PATTERN.match(inference_id):
            raise action_request_validation([_INVALID_ID.format(inference_id)])
        body, _ = self._config_map(request)
        with masking(_secret_values(body)):
            updated = self._update(inference_id, url_task, body)
        logger.info("updated endpoint [%s]", inference_id)
        return self._json(self.view(updated))

    def _update(
        self, inference_id: str, url_task: str | None, body: dict[str, Any]
    ) -> Endpoint:
        service_settings, task_settings, body_task = self._update_settings(body)
        endpoint = self._endpoint(inference_id)
        requested = url_task
        if body_task is not None:
            requested = self._resolve_task_type(url_task, body_task)
        if requested is not None and requested != endpoint.task_type:
            raise self._mismatch(requested, endpoint)

        if endpoint.service == _bedrock.SERVICE:
            updated, secrets = _bedrock.apply_update(
                endpoint,
                self.store.secrets(inference_id),
                service_settings,
                task_settings,
                self.version,
            )
            self.store.replace(updated, secrets)
            return updated
        if task_settings:
            raise _internal_unknown(task_settings)
        updated = _internal.apply_update(endpoint, service_settings or {})
        self.store.replace(updated)
        self.deployments.update(updated)
        return updated

    @staticmethod
    def _update_settings(
        body: dict[str, Any],
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, Any]:
        if not body:
            raise status_exception("Request body is empty")
        size = len(body)
        remaining = dict(body)
        shown = java_str(body, capacity=grown_capacity(size))
        body_task = remaining.pop("task_type", None)
        if body_task is not None and not isinstance(body_task, str):
            raise status_exception(
                f"Failed to parse [task_type] in update request [{shown}]", 500
            )
        parts: list[dict[str, Any] | None] = []
        for key, label in (("service_settings", "service"), ("task_settings", "task")):
            value = remaining.pop(key, None)
            if value is not None and not isinstance(value, dict):
                raise status_exception(
                    f"Unable to parse {label} settings in the request [{shown}]"
                )
            parts.append(dict(value) if value else None)
        if remaining:
            leftover = java_str(remaining, capacity=grown_capacity(size))
            raise status_exception(
                "Request contained fields which cannot be updated, remove these "
                f"fields and try again [{leftover}]"
            )
        return parts[0], parts[1], body_task

    async def _on_stats(
        self, request: Request, exchange: Exchange, inference_id: str | None = None
    ) -> Reply:
        check_params(request.path, request.query, ("allow_no_match", "from", "size"))
        allow_no_match = bool_param(request.query, "allow_no_match", True)
        try:
            start = int(request.query.get("from", "0"))
            size = int(request.query.get("size", "100"))
        except ValueError:
            raise EsError(
                400, "illegal_argument_exception", "[from] and [size] must be integers"
            ) from None
        return self._json(
            self.deployments.stats(inference_id, allow_no_match, start, size)
        )

    # ----------------------------------------------------------------- inference

    async def _on_infer(
        self,
        request: Request,
        exchange: Exchange,
        inference_id: str,
        task_type: str | None = None,
    ) -> Reply:
        return await self._inference(
            request, exchange, inference_id, task_type, stream=False
        )

    async def _on_stream(
        self,
        request: Request,
        exchange: Exchange,
        inference_id: str,
        task_type: str | None = None,
    ) -> Reply:
        return await self._inference(
            request, exchange, inference_id, task_type, stream=True
        )

    def _infer_body(self, request: Request) -> _InferBody:
        if not request.body.strip():
            raise EsError(400, "parse_exception", "request body is required")
        text = request.body.decode("utf-8", errors="replace")
        try:
            data = loads(request.body)
        except DecodeError as exc:
            raise EsError(
                400,
                "x_content_parse_exception",
                f"[{exc.lineno}:{exc.colno}] {exc.msg}",
            ) from None
        if not isinstance(data, dict):
            raise EsError(
                400,
                "x_content_parse_exception",
                f"[1:1] [{_PARSER_NAME}] Expected START_OBJECT but was: "
                f"{_token_name(data)}",
            )
        for key in data:
            known = key in _INFER_FIELDS and (
                key != "input_type" or self.version.root_input_type
            )
            if not known:
                raise _parse_failure(text, key, unknown=True)

        inputs: list[str] | None = None
        raw_input = data.get("input")
        if isinstance(raw_input, list):
            inputs = []
            for item in raw_input:
                value = _as_text(item)
                if value is None:
                    raise _parse_failure(text, "input")
                inputs.append(value)
        elif raw_input is not None:
            value = _as_text(raw_input)
            if value is None:
                raise _parse_failure(text, "input")
            inputs = [value]

        input_type = data.get("input_type")
        if input_type is not None:
            input_type = self._input_type(text, input_type)
        task_settings = data.get("task_settings")
        if task_settings is not None and not isinstance(task_settings, dict):
            raise _parse_failure(text, "task_settings")
        query = data.get("query")
        if query is not None and not isinstance(query, str):
            raise _parse_failure(text, "query")
        return_documents = data.get("return_documents")
        if return_documents is not None and not isinstance(return_documents, bool):
            raise _parse_failure(text, "return_documents")
        top_n = data.get("top_n")
        if top_n is not None and (
            not isinstance(top_n, int) or isinstance(top_n, bool)
        ):
            raise _parse_failure(text, "top_n")
        timeout = None
        if data.get("timeout") is not None:
            try:
                timeout = parse_time_value(str(data["timeout"]), "timeout")
            except EsError as error:
                raise _parse_failure(text, "timeout", error) from None
        return _InferBody(
            inputs, query, input_type, task_settings, timeout, return_documents, top_n
        )

    @staticmethod
    def _input_type(text: str, raw: Any) -> str:
        if isinstance(raw, str) and raw.strip().lower() in INPUT_TYPES:
            return raw.strip().lower()
        cause = EsError(
            400, "illegal_argument_exception", f"Unrecognized input_type [{raw}]"
        )
        raise _parse_failure(text, "input_type", cause)

    @staticmethod
    def _validate(body: _InferBody, url_task: str | None) -> list[str]:
        if body.inputs is None:
            raise action_request_validation(["Field [input] cannot be null"])
        if not body.inputs:
            raise action_request_validation(["Field [input] cannot be an empty array"])
        if url_task == "rerank":
            if body.query is None:
                raise action_request_validation(
                    ["Field [query] cannot be null for task type [rerank]"]
                )
            if not body.query:
                raise action_request_validation(
                    ["Field [query] cannot be empty for task type [rerank]"]
                )
        elif url_task is not None:
            for name, value in (
                ("return_documents", body.return_documents),
                ("top_n", body.top_n),
            ):
                if value is not None:
                    raise action_request_validation(
                        [
                            f"Field [{name}] cannot be specified for task type "
                            f"[{url_task}]"
                        ]
                    )
        if (
            url_task in ("text_embedding", "sparse_embedding")
            and body.query is not None
        ):
            raise action_request_validation(
                [f"Field [query] cannot be specified for task type [{url_task}]"]
            )
        if url_task not in (None, "text_embedding") and body.input_type is not None:
            raise action_request_validation(
                [f"Field [input_type] cannot be specified for task type [{url_task}]"]
            )
        return body.inputs

    async def _inference(
        self,
        request: Request,
        exchange: Exchange,
        inference_id: str,
        task: str | None,
        *,
        stream: bool,
    ) -> Reply:
        url_task = self._url_task(task)
        check_params(request.path, request.query, ("timeout",))
        query_timeout = time_param(request.query, "timeout")
        exchange.inference_id = inference_id
        if stream and url_task == "chat_completion":
            return self._chat_stream(request, inference_id)
        body = self._infer_body(request)
        inputs = self._validate(body, url_task)
        exchange.n_inputs = len(inputs)
        timeout = body.timeout if body.timeout is not None else query_timeout

        try:
            return await self._run(
                exchange, inference_id, url_task, inputs, body, timeout, stream
            )
        except EsError as error:
            if stream:
                return self._sse_error(error)
            raise

    def _chat_stream(self, request: Request, inference_id: str) -> Reply:
        # No service here offers chat_completion: every endpoint either does not
        # exist or has another task type, reported in the OpenAI-style format.
        self._config_map(request)
        try:
            endpoint = self._endpoint(inference_id)
            raise status_exception(
                "Incompatible task_type for unified API, the requested type "
                f"[{endpoint.task_type}] must be one of [chat_completion]"
            )
        except EsError as error:
            return self._sse_error(error, chat=True)

    def _sse_error(self, error: EsError, *, chat: bool = False) -> Reply:
        data = dumps(error.chat_body() if chat else error.body())
        return Reply(error.status, events=[event(data, "error")])

    async def _run(
        self,
        exchange: Exchange,
        inference_id: str,
        url_task: str | None,
        inputs: list[str],
        body: _InferBody,
        timeout: float | None,
        stream: bool,
    ) -> Reply:
        endpoint = self._endpoint(inference_id)
        if url_task is not None and url_task != endpoint.task_type:
            raise status_exception(
                f"Incompatible task_type, the requested type [{url_task}] does not "
                f"match the model type [{endpoint.task_type}]"
            )
        if stream:
            self._check_streaming(endpoint)
        settings = self._service_checks(endpoint, body)

        await self._inject_faults(exchange, endpoint)
        await self._rate_limit(exchange, endpoint, timeout)

        if endpoint.task_type == "completion":
            text = await self._complete(endpoint, inputs, settings)
            if stream:
                return self._stream_reply(text)
            return self._json({"completion": [{"result": text}]})
        vectors = await self._embed(endpoint, inputs)
        return Reply(200, self._embedding_body(vectors))

    def _check_streaming(self, endpoint: Endpoint) -> None:
        streams = (
            endpoint.service == _bedrock.SERVICE and self.version.bedrock_streaming
        )
        if streams and endpoint.task_type == "completion":
            return
        supported = "[completion]" if streams else "[]"
        raise status_exception(
            f"Streaming is not allowed for service [{endpoint.service}] and task "
            f"[{endpoint.task_type}]. Supported tasks: {supported}",
            405,
        )

    def _service_checks(self, endpoint: Endpoint, body: _InferBody) -> dict[str, Any]:
        if endpoint.service == _internal.SERVICE:
            if (
                body.input_type is not None
                and body.input_type not in _internal.INPUT_TYPES
            ):
                raise validation_exception(
                    [
                        f"Input type [{body.input_type}] is not supported for "
                        f"[{_internal.DISPLAY_NAME}]"
                    ]
                )
            return {}
        return _bedrock.merge_request_task_settings(
            endpoint, body.task_settings, self.version
        )

    async def _inject_faults(self, exchange: Exchange, endpoint: Endpoint) -> None:
        delay, fault = self.fault_plan.draw()
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is None:
            return
        exchange.fault = fault
        logger.debug("injecting fault %s into [%s]", fault, endpoint.inference_id)
        self._fault_sequence += 1
        if fault == "429":
            raise EsError(
                429,
                "es_rejected_execution_exception",
                "rejected execution of inference request for endpoint "
                f"[{endpoint.inference_id}] on [local inference queue]: queue is full",
                http_headers=[("Retry-After", "1")],
            )
        if fault == "timeout":
            raise self._queue_timeout(self.fault_plan.config.queue_timeout_s)
        if fault == "throttle":
            raise _bedrock.throttled(endpoint, self._fault_sequence)
        if fault == "503":
            raise EsError(
                503,
                "cluster_block_exception",
                "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / "
                "initialized];",
            )

    def _queue_timeout(self, seconds: float) -> EsError:
        return EsError(
            self.version.timeout_status,
            "timeout_exception",
            "Request timed out waiting to be sent after "
            f"[{format_time_value(seconds)}]",
        )

    async def _rate_limit(
        self, exchange: Exchange, endpoint: Endpoint, timeout: float | None
    ) -> None:
        config = self.fault_plan.config
        rpm = endpoint.requests_per_minute
        if not config.rate_limit or rpm is None:
            return
        limit = timeout if timeout is not None else config.queue_timeout_s
        loop = asyncio.get_running_loop()
        wait = self._limiter.reserve(endpoint.inference_id, rpm, loop.time(), limit)
        if wait is None:
            if limit > 0 and limit != float("inf"):
                await asyncio.sleep(limit)
            exchange.fault = "rate_limit_timeout"
            logger.debug("rate limit queue timeout for [%s]", endpoint.inference_id)
            raise self._queue_timeout(limit)
        if wait > 0:
            await asyncio.sleep(wait)

    def _model(self) -> EmbeddingModel:
        try:
            return get_model(self.model_name)
        except ModelUnavailableError as exc:
            raise EsError(500, "exception", str(exc)) from None

    async def _call_model(
        self, work: Callable[[EmbeddingModel], Any], chars: int
    ) -> Any:
        if is_loaded(self.model_name) and chars <= _INLINE_CHARS:
            return work(self._model())
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                2, thread_name_prefix="es-inference-local"
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: work(self._model()))

    async def _embed(
        self, endpoint: Endpoint, inputs: list[str]
    ) -> npt.NDArray[np.float32]:
        if endpoint.service == _internal.SERVICE:
            self.deployments.check_ready(endpoint.inference_id, len(inputs))
        else:
            inputs = _bedrock.truncate_inputs(endpoint, inputs)
            _bedrock.check_embedding_inputs(endpoint, inputs)
        dims = endpoint.dims or 1024
        chars = sum(len(t) for t in inputs)
        result: npt.NDArray[np.float32] = await self._call_model(
            lambda model: model.embed(inputs, dims), chars
        )
        return result

    def _embedding_body(self, vectors: npt.NDArray[np.float32]) -> bytes:
        fmt = self.embedding_format
        if fmt == "bytes":
            quantized = np.clip(np.rint(vectors * 127.0), -127, 127).astype(np.int8)
            return dumps(
                {"text_embedding_bytes": [{"embedding": r} for r in quantized]}
            )
        if fmt == "bits":
            packed = np.packbits(vectors > 0, axis=1).view(np.int8)
            return dumps({"text_embedding_bits": [{"embedding": r} for r in packed]})
        return dumps({"text_embedding": [{"embedding": row} for row in vectors]})

    async def _complete(
        self, endpoint: Endpoint, inputs: list[str], settings: dict[str, Any]
    ) -> str:
        _bedrock.check_completion_inputs(endpoint, inputs)
        prompt = "\n".join(inputs)
        max_new_tokens = settings.get("max_new_tokens")

        def respond(model: EmbeddingModel) -> str:
            return answer(
                prompt,
                lambda texts: model.embed(texts, _RESPONDER_DIMS),
                max_new_tokens,
            )

        text: str = await self._call_model(respond, len(prompt))
        return text

    def _stream_reply(self, text: str) -> Reply:
        mode = self.stream_mode
        events = completion_events(text, mode.multi_delta)
        stops = [
            (min(n, len(events)), kind)
            for n, kind in ((mode.error_after, "error"), (mode.cut_after, "cut"))
            if n is not None
        ]
        if not stops:
            return Reply(200, events=[*events, DONE_EVENT], mode=mode)
        count, kind = min(stops, key=lambda s: (s[0], s[1] != "error"))
        events = events[:count]
        if kind == "error":
            error = EsError(
                500,
                "exception",
                "AmazonBedrock converse failure: [the local server's error_after "
                f"switch interrupted the stream after {count} events]",
            )
            events.append(event(dumps(error.body()), "error"))
        return Reply(200, events=events, mode=mode)


def _secret_values(body: dict[str, Any]) -> list[str]:
    settings = body.get("service_settings")
    if not isinstance(settings, dict):
        return []
    return [
        value
        for key in SECRET_KEYS
        if isinstance(value := settings.get(key), str) and value
    ]


def _internal_unknown(task_settings: dict[str, Any]) -> EsError:
    return unknown_settings(task_settings, _internal.SERVICE, len(task_settings))
