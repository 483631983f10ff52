"""Inference requests: endpoint checks, faults, rate limits, models and replies.

The order of checks follows Elasticsearch: the REST layer parses and validates the
body (plain JSON errors), then the transport action finds the endpoint, compares
task types, checks streaming support and the service's request settings; only
then is the request queued (faults, rate limit) and sent to the "provider" (the
local models). On ``_stream`` routes every failure from the transport action on
is sent as a server-sent ``error`` event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _bedrock, _internal
from ._bodies import InferBody, config_map, parse_infer_body, validate_infer
from ._errors import EsError, status_exception, validation_exception
from ._exchange import Exchange, Reply
from ._faults import FaultPlan, RateLimiter
from ._http import Request
from ._json import dumps
from ._models import EmbeddingModel, ModelUnavailableError, get_model, is_loaded
from ._params import check_params, format_time_value, time_param
from ._responder import answer
from ._sse import DONE_EVENT, StreamMode, completion_events, event
from ._store import Endpoint
from ._version import EsVersion

__all__ = ["EMBEDDING_FORMATS", "InferenceRunner", "Switches"]

logger = logging.getLogger("es_inference.local.inference")

#: Result shapes of ``text_embedding`` responses (a test switch; Bedrock sends float).
EMBEDDING_FORMATS = ("float", "bytes", "bits")

_INLINE_CHARS = 16_000
_RESPONDER_DIMS = 256


@dataclass
class Switches:
    """Runtime switches, replaced whole from other threads (reads are atomic).

    Attributes:
        fault_plan: Faults and rate limiting for inference requests.
        stream_mode: How completion streams are written.
        embedding_format: ``float``, ``bytes`` or ``bits``.
    """

    fault_plan: FaultPlan
    stream_mode: StreamMode
    embedding_format: str


class InferenceRunner:
    """Runs inference requests against the stored endpoints.

    Args:
        version: The emulated Elasticsearch version.
        lookup: Finds an endpoint by id or raises the 404.
        deployments: In-cluster deployments (for ``elasticsearch`` endpoints).
        switches: The server's runtime switches.
        model_name: The base model (``wordllama``, ``hashing`` or ``seeded``).
    """

    def __init__(
        self,
        version: EsVersion,
        lookup: Callable[[str], Endpoint],
        deployments: _internal.Deployments,
        switches: Switches,
        model_name: str,
    ) -> None:
        self.version = version
        self.deployments = deployments
        self.switches = switches
        self.model_name = model_name
        self._lookup = lookup
        self._limiter = RateLimiter()
        self._executor: ThreadPoolExecutor | None = None
        self._fault_sequence = 0

    def close(self) -> None:
        """Release the worker threads (they are created again when needed)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def forget(self, inference_id: str) -> None:
        """Drop the rate-limit state of a deleted endpoint."""
        self._limiter.forget(inference_id)

    async def run(
        self,
        request: Request,
        exchange: Exchange,
        inference_id: str,
        url_task: str | None,
        *,
        stream: bool,
    ) -> Reply:
        """Handle ``POST`` inference and ``_stream`` requests.

        Args:
            request: The request.
            exchange: Where to note the endpoint, input count and fault.
            inference_id: The endpoint id from the path.
            url_task: The task type from the path (already checked), if any.
            stream: Whether the ``_stream`` route was called.
        """
        check_params(request.path, request.query, ("timeout",))
        query_timeout = time_param(request.query, "timeout")
        exchange.inference_id = inference_id
        if stream and url_task == "chat_completion":
            return self._chat_stream(request, inference_id)
        body = parse_infer_body(request, self.version)
        inputs = validate_infer(body, url_task)
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
        config_map(request)
        try:
            endpoint = self._lookup(inference_id)
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
        body: InferBody,
        timeout: float | None,
        stream: bool,
    ) -> Reply:
        endpoint = self._lookup(inference_id)
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
            return Reply(200, dumps({"completion": [{"result": text}]}))
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

    def _service_checks(self, endpoint: Endpoint, body: InferBody) -> dict[str, Any]:
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
        delay, fault = self.switches.fault_plan.draw()
        exchange.latency = delay
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
            raise self._queue_timeout(self.switches.fault_plan.config.queue_timeout_s)
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
        config = self.switches.fault_plan.config
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
            exchange.started = loop.time()

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
        fmt = self.switches.embedding_format
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
        mode = self.switches.stream_mode
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
