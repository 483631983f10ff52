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

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._constants import INFERENCE_ID_PATTERN, TASK_TYPES
from . import _bedrock, _internal
from ._auth import Authenticator
from ._bodies import config_map
from ._errors import EsError, action_request_validation, not_found, status_exception
from ._exchange import Exchange, Reply
from ._faults import FaultConfig, FaultPlan
from ._http import Request
from ._inference import EMBEDDING_FORMATS, InferenceRunner, Switches
from ._javafmt import grown_capacity, hash_order, java_list, java_str, masking
from ._json import dumps
from ._params import bool_param, check_params, time_param
from ._settings import SECRET_KEYS, unknown_settings
from ._sse import StreamMode
from ._store import Endpoint, EndpointStore
from ._version import EsVersion

__all__ = ["Application"]

logger = logging.getLogger("es_inference.local.api")

_INVALID_ID = (
    "Invalid inference_id; '{}' can contain lowercase alphanumeric (a-z and 0-9), "
    "hyphens or underscores; must start and end with alphanumeric"
)

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


class Application:
    """The emulated cluster: endpoints, deployments, switches and request handling.

    All request handling runs on the server's event loop; the public switches may
    be called from other threads.

    Args:
        es_version: The Elasticsearch version to emulate.
        authenticator: Credential checks.
        faults: Fault configuration for inference requests.
        embedding_format: ``float``, ``bytes`` or ``bits``.
        model: Base model name (``wordllama``, ``hashing`` or ``seeded``).
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
        self.switches = Switches(
            FaultPlan(faults or FaultConfig()), StreamMode(), embedding_format
        )
        self.model_name = model
        self.inference = InferenceRunner(
            self.version, self._endpoint, self.deployments, self.switches, model
        )
        self._routes = _routes(self.version)

    def close(self) -> None:
        """Release the worker threads (they are created again when needed)."""
        self.inference.close()

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
        config = config_map(request)
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
        self.inference.forget(inference_id)
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
        body = config_map(request)
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

    async def _on_infer(
        self,
        request: Request,
        exchange: Exchange,
        inference_id: str,
        task_type: str | None = None,
    ) -> Reply:
        url_task = self._url_task(task_type)
        return await self.inference.run(
            request, exchange, inference_id, url_task, stream=False
        )

    async def _on_stream(
        self,
        request: Request,
        exchange: Exchange,
        inference_id: str,
        task_type: str | None = None,
    ) -> Reply:
        url_task = self._url_task(task_type)
        return await self.inference.run(
            request, exchange, inference_id, url_task, stream=True
        )


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
