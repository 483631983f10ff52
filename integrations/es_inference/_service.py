"""Framework-free services: an endpoint, its transports and the batch engine.

The LangChain and LlamaIndex adapters are thin shells over these classes, which can
also be used on their own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from ._batch import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, Assembly, check_texts, plan
from ._config import ConnectionConfig
from ._constants import (
    BEDROCK_DEFAULT_REQUESTS_PER_MINUTE,
    BEDROCK_MAX_BATCH,
    BEDROCK_SERVICE,
    TITAN_MAX_INPUT_CHARS,
)
from ._endpoint import EndpointSpec, ReadyEndpoint, ensure_steps, run_async, run_sync
from ._errors import (
    BadRequestError,
    ConfigurationError,
    EsInferenceError,
    NotFoundError,
    UnexpectedResponseError,
)
from ._retry import RateLimiter, RetryPolicy, shared_limiter
from ._transport import AsyncTransport, Halted, SyncTransport
from ._wire import (
    FloatArray,
    Request,
    embedding_rows,
    infer,
    row_width,
    write_embeddings,
)

logger = logging.getLogger("es_inference.service")

T = TypeVar("T")
S = TypeVar("S", bound="InferenceService")

#: Services whose embedding models distinguish documents from queries.
_INPUT_TYPE_SERVICES = frozenset(
    {"cohere", "voyageai", "jinaai", "googlevertexai", "azureaistudio", "elastic"}
)


@dataclass(frozen=True)
class ServiceOptions:
    """How a service sends its calls.

    Attributes:
        concurrency: Requests in flight at once within one call.
        batch_size: Texts per request; ``None`` uses the provider's limit (Titan 1,
            Cohere 96) or 16 for other services.
        retry: The retry policy for inference calls.
        pace: Keep the request rate under the endpoint's ``rate_limit``.
        requests_per_minute: Pace at this rate instead of the endpoint's.
        max_input_chars: Longest input accepted, checked before sending.
        send_input_type: Send ``input_type`` (``ingest``/``search``); ``None``
            decides from the provider (Cohere yes, Titan no).
        wait_timeout: Longest wait for an in-cluster model to be allocated.
        poll_interval: Seconds between allocation polls.
    """

    concurrency: int = DEFAULT_CONCURRENCY
    batch_size: int | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    pace: bool = True
    requests_per_minute: float | None = None
    max_input_chars: int | None = TITAN_MAX_INPUT_CHARS
    send_input_type: bool | None = None
    wait_timeout: float = 600.0
    poll_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigurationError(
                f"concurrency must be at least 1, got {self.concurrency}"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigurationError(
                f"batch_size must be at least 1, got {self.batch_size}"
            )


class InferenceService:
    """One inference endpoint, ensured lazily, with sync and async transports.

    Use it as a context manager (``with`` or ``async with``) to close its
    connections at the end of the block, or call :meth:`close` / :meth:`aclose`.

    Example:
        .. code-block:: python

            async with EmbeddingService(connection, spec) as service:
                vectors = await service.aembed(["Elastic is a search company."])
    """

    def __init__(
        self,
        connection: ConnectionConfig,
        spec: EndpointSpec,
        options: ServiceOptions | None = None,
    ) -> None:
        self.connection = connection
        self.spec = spec
        self.options = options or ServiceOptions()
        self._ready: ReadyEndpoint | None = None
        self._generation = 0
        self._lock = threading.Lock()
        self._async_locks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Lock
        ] = weakref.WeakKeyDictionary()
        self._sync_transport: SyncTransport | None = None
        self._async_transport: AsyncTransport | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.connection!r}, {self.spec!r})"

    def __getstate__(self) -> Any:
        raise TypeError(
            f"{type(self).__name__} holds credentials and is not pickled; pickle the "
            "adapter instead, which drops them"
        )

    # Transports ---------------------------------------------------------------

    @property
    def sync_transport(self) -> SyncTransport:
        """The blocking transport, created on first use."""
        if self._sync_transport is None:
            self._sync_transport = SyncTransport(
                self.connection, pool_size=self.options.concurrency + 2
            )
        return self._sync_transport

    @property
    def async_transport(self) -> AsyncTransport:
        """The asyncio transport, created on first use."""
        if self._async_transport is None:
            self._async_transport = AsyncTransport(
                self.connection, pool_size=self.options.concurrency + 2
            )
        return self._async_transport

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far by both transports."""
        return sum(
            transport.requests_sent
            for transport in (self._sync_transport, self._async_transport)
            if transport is not None
        )

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.options.concurrency,
                thread_name_prefix="es-inference",
            )
        return self._executor

    def close(self) -> None:
        """Close the blocking connections and the worker threads.

        The service opens them again on next use. Connections of async calls belong
        to their event loop and cannot be closed from here: :meth:`aclose` closes
        those of the running loop, and the rest close when their loop shuts down
        (as ``asyncio.run`` does).
        """
        if self._sync_transport is not None:
            self._sync_transport.close()
        if self._executor is not None and self._pid == os.getpid():
            self._executor.shutdown(wait=False)
        self._executor = None

    async def aclose(self) -> None:
        """Close the running event loop's connections, and what :meth:`close` closes.

        Connections that other event loops opened stay open until those loops shut
        down. The service opens connections again on next use.
        """
        if self._async_transport is not None:
            await self._async_transport.aclose()
        self.close()

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self: S) -> S:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # Lifecycle ----------------------------------------------------------------

    def _steps(self) -> Any:
        return ensure_steps(
            self.spec,
            wait_timeout=self.options.wait_timeout,
            poll_interval=self.options.poll_interval,
            server_timeout=self.connection.server_timeout_param,
        )

    def endpoint(self) -> ReadyEndpoint:
        """The ready endpoint; gets, creates or reuses it on first call."""
        ready = self._ready
        if ready is None:
            with self._lock:
                if self._ready is None:
                    self._ready = run_sync(
                        self._steps(), self.sync_transport, self.options.retry
                    )
                ready = self._ready
        return ready

    async def aendpoint(self) -> ReadyEndpoint:
        """The ready endpoint, ensured without blocking the event loop."""
        ready = self._ready
        if ready is not None:
            return ready
        loop = asyncio.get_running_loop()
        with self._lock:
            lock = self._async_locks.setdefault(loop, asyncio.Lock())
        async with lock:
            if self._ready is None:
                found = await run_async(
                    self._steps(), self.async_transport, self.options.retry
                )
                with self._lock:
                    if self._ready is None:
                        self._ready = found
            assert self._ready is not None
            return self._ready

    def _lost(self, generation: int) -> None:
        with self._lock:
            if self._generation == generation:
                logger.warning(
                    "inference endpoint [%s] disappeared; ensuring it again",
                    self._ready.info.inference_id if self._ready else "?",
                )
                self._ready = None
                self._generation += 1

    def call(self, send: Callable[[ReadyEndpoint], T]) -> T:
        """Run ``send`` against the endpoint; after a 404, re-ensure once and retry."""
        # The generation is read first: a loss seen by another caller in between
        # then leaves this call's ready endpoint fresh rather than its generation.
        generation = self._generation
        ready = self.endpoint()
        try:
            return send(ready)
        except NotFoundError:
            self._lost(generation)
            return send(self.endpoint())

    async def acall(self, send: Callable[[ReadyEndpoint], Awaitable[T]]) -> T:
        """Async :meth:`call`."""
        generation = self._generation
        ready = await self.aendpoint()
        try:
            return await send(ready)
        except NotFoundError:
            self._lost(generation)
            return await send(await self.aendpoint())

    def limiter(self, ready: ReadyEndpoint) -> RateLimiter | None:
        """The shared pacing bucket of the endpoint, if pacing is on."""
        if not self.options.pace:
            return None
        rpm = self.options.requests_per_minute or ready.info.requests_per_minute
        if rpm is None and ready.info.service == BEDROCK_SERVICE:
            rpm = BEDROCK_DEFAULT_REQUESTS_PER_MINUTE
        if rpm is None:
            return None
        return shared_limiter(self.connection.url, ready.info.inference_id, rpm)

    # Running many requests ----------------------------------------------------

    def run_batches(
        self,
        batches: Sequence[tuple[int, int]],
        work: Callable[[int, int], None],
        assembly: Assembly,
    ) -> None:
        """Run ``work`` for every batch, ``concurrency`` at a time, on threads."""
        todo = iter(batches)
        if assembly.dims is None and len(batches) > 1:
            # The first answer tells the dimension and so the array's shape.
            work(*next(todo))
        lock = threading.Lock()

        def worker() -> None:
            while not assembly.stopped:
                with lock:
                    batch = next(todo, None)
                if batch is None:
                    return
                try:
                    work(*batch)
                except Halted:
                    return  # the call has stopped; its batches count as failed

        workers = min(self.options.concurrency, len(batches))
        if workers <= 1:
            worker()
            return
        futures = [self._pool().submit(worker) for _ in range(workers)]
        try:
            finished, _ = concurrent.futures.wait(
                futures, return_when=concurrent.futures.FIRST_EXCEPTION
            )
            for future in finished:
                future.result()
        except BaseException:
            # Ctrl-C (or any error) in the caller: send no further batch, and none
            # of the requests waiting for a pacing slot or a retry. Requests already
            # on the wire finish on their threads; nothing waits for them.
            assembly.cancel()
            raise

    async def arun_batches(
        self,
        batches: Sequence[tuple[int, int]],
        work: Callable[[int, int], Awaitable[None]],
        assembly: Assembly,
    ) -> None:
        """Run ``work`` for every batch, ``concurrency`` at a time, as tasks."""
        todo: Iterator[tuple[int, int]] = iter(batches)
        if assembly.dims is None and len(batches) > 1:
            await work(*next(todo))

        async def worker() -> None:
            while not assembly.stopped:
                batch = next(todo, None)
                if batch is None:
                    return
                await work(*batch)

        workers = min(self.options.concurrency, len(batches))
        await asyncio.gather(*(worker() for _ in range(workers)))


class EmbeddingService(InferenceService):
    """Embeds texts through a ``text_embedding`` endpoint into float32 arrays."""

    def batch_size(self, ready: ReadyEndpoint) -> int:
        """Texts per request for this endpoint."""
        provider = str(ready.info.service_settings.get("provider", "")).lower()
        limit = (
            BEDROCK_MAX_BATCH.get(provider)
            if ready.info.service == BEDROCK_SERVICE
            else None
        )
        chosen = self.options.batch_size
        if chosen is None:
            return limit or DEFAULT_BATCH_SIZE
        if limit is not None and chosen > limit:
            logger.warning(
                "batch_size %d is above the %s limit of %d texts per request",
                chosen,
                provider,
                limit,
            )
        return chosen

    def input_type_for(self, ready: ReadyEndpoint, kind: str) -> str | None:
        """``ingest``/``search`` where the model uses it, else ``None``."""
        send = self.options.send_input_type
        if send is None:
            info = ready.info
            provider = str(info.service_settings.get("provider", "")).lower()
            send = (
                provider == "cohere"
                if info.service == BEDROCK_SERVICE
                else info.service in _INPUT_TYPE_SERVICES
            )
        return kind if send else None

    def _prepare(self, texts: Sequence[str]) -> list[str]:
        return check_texts(texts, self.options.max_input_chars)

    _input_type_accepted = True

    def _embed_request(
        self, ready: ReadyEndpoint, texts: list[str], input_type: str | None
    ) -> Request:
        return infer(
            "text_embedding",
            ready.info.inference_id,
            texts,
            input_type=input_type if self._input_type_accepted else None,
            timeout=self.connection.server_timeout_param,
        )

    def _input_type_refused(self, error: BadRequestError, sent: str | None) -> bool:
        """True if the cluster predates ``input_type`` in the body (before 8.19/9.1).

        The call is then sent again without it, and so are all later ones.
        """
        if sent is None or "input_type" not in error.reason:
            return False
        if self._input_type_accepted:
            self._input_type_accepted = False
            logger.warning(
                "this cluster does not take input_type in inference requests; "
                "sending without it (%s)",
                error.reason,
            )
        return True

    def _request_parts(
        self, ready: ReadyEndpoint, input_type: str
    ) -> tuple[int, str | None, RateLimiter | None]:
        return (
            self.batch_size(ready),
            self.input_type_for(ready, input_type),
            self.limiter(ready),
        )

    def embed(
        self,
        texts: Sequence[str],
        *,
        input_type: str = "ingest",
        out: FloatArray | None = None,
    ) -> FloatArray:
        """Embed ``texts`` into an ``(n, dims)`` float32 array, in input order.

        Raises:
            InputError: for invalid texts, before any request.
            PartialResultError: when some inputs failed; it keeps the others.
        """
        items = self._prepare(texts)
        if not items:
            return np.zeros((0, 0), dtype=np.float32)
        ready = self.endpoint()
        size, kind, limiter = self._request_parts(ready, input_type)
        assembly = Assembly(len(items), dims=ready.info.dimensions, out=out)
        transport = self.sync_transport
        retry = self.options.retry
        halt = assembly.halt

        def work(start: int, stop: int) -> None:
            parse = _writer(assembly, start, stop)

            def send(ready: ReadyEndpoint) -> EsInferenceError | None:
                request = self._embed_request(ready, items[start:stop], kind)
                try:
                    return transport.perform(request, retry, parse, limiter, halt)
                except BadRequestError as exc:
                    if not self._input_type_refused(exc, kind):
                        raise
                request = self._embed_request(ready, items[start:stop], kind)
                return transport.perform(request, retry, parse, limiter, halt)

            try:
                refused = self.call(send)
                if refused is not None:
                    raise refused
            except EsInferenceError as exc:
                assembly.fail(start, stop, exc)

        self.run_batches(plan(len(items), size), work, assembly)
        return assembly.result()

    async def aembed(
        self,
        texts: Sequence[str],
        *,
        input_type: str = "ingest",
        out: FloatArray | None = None,
    ) -> FloatArray:
        """Async :meth:`embed`, natively on asyncio."""
        items = self._prepare(texts)
        if not items:
            return np.zeros((0, 0), dtype=np.float32)
        ready = await self.aendpoint()
        size, kind, limiter = self._request_parts(ready, input_type)
        assembly = Assembly(len(items), dims=ready.info.dimensions, out=out)
        transport = self.async_transport
        retry = self.options.retry

        async def work(start: int, stop: int) -> None:
            parse = _writer(assembly, start, stop)

            async def send(ready: ReadyEndpoint) -> EsInferenceError | None:
                request = self._embed_request(ready, items[start:stop], kind)
                try:
                    return await transport.perform(request, retry, parse, limiter)
                except BadRequestError as exc:
                    if not self._input_type_refused(exc, kind):
                        raise
                request = self._embed_request(ready, items[start:stop], kind)
                return await transport.perform(request, retry, parse, limiter)

            try:
                refused = await self.acall(send)
                if refused is not None:
                    raise refused
            except EsInferenceError as exc:
                assembly.fail(start, stop, exc)

        await self.arun_batches(plan(len(items), size), work, assembly)
        return assembly.result()


def _writer(
    assembly: Assembly, start: int, stop: int
) -> Callable[[bytes | memoryview], EsInferenceError | None]:
    """Parse an answer straight into the batch's rows of the result array.

    It runs inside the transport's retry loop, so that the answer's JSON objects
    live only until they are written (and, for large answers, one answer at a
    time). An answer that parses but does not fit is returned rather than raised:
    it is never retried.
    """

    def parse(body: bytes | memoryview) -> EsInferenceError | None:
        kind, rows = embedding_rows(body)
        try:
            _write(assembly, start, stop, kind, rows)
        except EsInferenceError as exc:
            return exc
        return None

    return parse


def _write(
    assembly: Assembly, start: int, stop: int, kind: str, rows: list[Any]
) -> None:
    if len(rows) != stop - start:
        raise UnexpectedResponseError(
            f"embedding response: asked for {stop - start} embeddings, got {len(rows)}"
        )
    dims = row_width(kind, rows[0])
    write_embeddings(kind, rows, assembly.rows(start, stop, dims))
    assembly.succeed(start, stop)
