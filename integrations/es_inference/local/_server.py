"""The local server: a listening socket, its event loop thread and test switches."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import NamedTuple, SupportsIndex
from urllib.parse import unquote

from ._api import Application
from ._auth import Authenticator
from ._exchange import Exchange, Reply
from ._faults import FaultConfig, FaultPlan
from ._http import (
    LAST_CHUNK,
    BadRequest,
    Request,
    abort_with_reset,
    encode_chunk,
    read_request,
    response_head,
)
from ._inference import EMBEDDING_FORMATS
from ._models import BASE_MODELS
from ._sse import StreamMode, split_event

__all__ = ["LocalServer", "RequestRecord", "serve"]

logger = logging.getLogger("es_inference.local")

_PRODUCT = ("X-Elastic-Product", "Elasticsearch")
_COMPAT = re.compile(r"compatible-with\s*=\s*(\d+)")
_READ_LIMIT = 1024 * 1024
_DRAIN_ABOVE = 256 * 1024
_SPLIT_PAUSE_S = 0.002


class RequestRecord(NamedTuple):
    """One handled request, as kept in :attr:`LocalServer.requests`.

    Attributes:
        method: HTTP method.
        path: Percent-decoded path.
        query: Query parameters.
        status: Response status; 0 when the connection was reset instead.
        inference_id: The endpoint id the request addressed, if any.
        n_inputs: Number of inputs of an inference request.
        fault: Injected fault kind (see :mod:`es_inference.local`), if any.
    """

    method: str
    path: str
    query: dict[str, str]
    status: int
    inference_id: str | None
    n_inputs: int | None
    fault: str | None = None


class _StampedReader(asyncio.StreamReader):
    """A stream reader that notes when the bytes of the next request arrived.

    The injected latency counts from that moment. When many requests arrive at
    once, the server reads and handles them one after another; counting from the
    moment each is handled would add that queue to every latency.
    """

    _stamp: float | None = None

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        if self._stamp is None:
            self._stamp = asyncio.get_running_loop().time()
        super().feed_data(data)

    def take_stamp(self, default: float) -> float:
        """The arrival time of the request just read, and start a new one.

        Bytes of a pipelined request that came with the previous one have no
        stamp of their own; those requests count from ``default``.
        """
        stamp, self._stamp = self._stamp, None
        return default if stamp is None else stamp


def _content_type(request: Request) -> str:
    accept = request.headers.get("accept", "")
    if "vnd.elasticsearch+json" in accept:
        match = _COMPAT.search(accept)
        if match is not None:
            return f"application/vnd.elasticsearch+json;compatible-with={match[1]}"
    return "application/json"


class _Core:
    """The event-loop side: accepts connections, reads requests, writes replies."""

    def __init__(self, app: Application, record_limit: int) -> None:
        self.app = app
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._records: deque[RequestRecord] = deque(maxlen=record_limit)
        self._records_lock = threading.Lock()

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port``; returns the bound port."""
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.StreamReaderProtocol:
            reader = _StampedReader(limit=_READ_LIMIT, loop=loop)
            return asyncio.StreamReaderProtocol(reader, self._serve, loop=loop)

        self._server = await loop.create_server(protocol, host, port)
        sockname = self._server.sockets[0].getsockname()
        return int(sockname[1])

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._connections.add(writer)
        try:
            await self._loop(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def _loop(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                request = await read_request(reader, writer)
            except BadRequest as exc:
                body = f'{{"error":"{exc.message}","status":{exc.status}}}'.encode()
                writer.write(
                    response_head(
                        exc.status,
                        [
                            _PRODUCT,
                            ("content-type", "application/json"),
                            ("content-length", str(len(body))),
                            ("connection", "close"),
                        ],
                    )
                    + body
                )
                await writer.drain()
                return
            if request is None:
                return

            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            exchange = Exchange(started=loop.time())
            if isinstance(reader, _StampedReader):
                exchange.started = reader.take_stamp(exchange.started)
            reply = await self.app.handle(request, exchange)
            wait = exchange.started + exchange.latency - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            status = 0 if exchange.fault == "reset" else reply.status
            # Recorded before the reply goes out, so a client that has its answer
            # always finds the request in the log.
            self._record(request, status, exchange)
            keep_alive = await self._send(writer, request, reply, exchange)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s %s -> %d in %.1f ms%s",
                    request.method,
                    request.path,
                    status,
                    (time.perf_counter() - started) * 1000,
                    f" (fault {exchange.fault})" if exchange.fault else "",
                )
            if not keep_alive:
                return

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        request: Request,
        reply: Reply,
        exchange: Exchange,
    ) -> bool:
        if exchange.fault == "reset":
            abort_with_reset(writer)
            return False
        if reply.events is not None:
            return await self._send_events(writer, request, reply, exchange)

        body = b"" if request.method == "HEAD" else reply.body
        headers = [
            _PRODUCT,
            ("content-type", _content_type(request)),
            ("content-length", str(len(reply.body))),
            *reply.headers,
        ]
        if not request.keep_alive:
            headers.append(("connection", "close"))
        head = response_head(reply.status, headers)
        if exchange.fault == "truncate":
            writer.write(head + body[: max(1, len(body) // 2)])
            await writer.drain()
            return False
        writer.write(head + body)
        if writer.transport.get_write_buffer_size() > _DRAIN_ABOVE:
            await writer.drain()
        return request.keep_alive

    async def _send_events(
        self,
        writer: asyncio.StreamWriter,
        request: Request,
        reply: Reply,
        exchange: Exchange,
    ) -> bool:
        assert reply.events is not None
        headers = [
            _PRODUCT,
            ("content-type", "text/event-stream"),
            ("transfer-encoding", "chunked"),
            *reply.headers,
        ]
        if not request.keep_alive:
            headers.append(("connection", "close"))
        head = response_head(reply.status, headers)
        if exchange.fault == "truncate":
            first = encode_chunk(reply.events[0]) if reply.events else LAST_CHUNK
            writer.write(head + first[: max(1, len(first) // 2)])
            await writer.drain()
            return False

        mode = reply.mode or StreamMode()
        writer.write(head)
        for index, data in enumerate(reply.events):
            if index and mode.delay_ms > 0:
                await asyncio.sleep(mode.delay_ms / 1000)
            if mode.split_events:
                for piece in split_event(data):
                    writer.write(encode_chunk(piece))
                    await writer.drain()
                    await asyncio.sleep(_SPLIT_PAUSE_S)
            else:
                writer.write(encode_chunk(data))
                await writer.drain()
        writer.write(LAST_CHUNK)
        await writer.drain()
        return request.keep_alive

    def _record(self, request: Request, status: int, exchange: Exchange) -> None:
        record = RequestRecord(
            request.method,
            unquote(request.path),
            request.query,
            status,
            exchange.inference_id,
            exchange.n_inputs,
            exchange.fault,
        )
        with self._records_lock:
            self._records.append(record)

    def records(self) -> list[RequestRecord]:
        """A copy of the request log."""
        with self._records_lock:
            return list(self._records)

    def clear_records(self) -> None:
        """Empty the request log."""
        with self._records_lock:
            self._records.clear()


class LocalServer:
    """An Elasticsearch-compatible inference server on loopback, with local models.

    It speaks the ``_inference`` REST API of the Elasticsearch version it emulates
    for the ``amazonbedrock`` service (and the ``elasticsearch`` service's E5 model),
    answers embeddings from a small local model and completions from a deterministic
    extractive responder. Nothing it does leaves the machine.

    The server runs its own asyncio loop in a daemon thread, so it can serve
    synchronous and asynchronous clients of the calling thread alike.

    Args:
        host: Address to listen on (loopback by default).
        port: Port to listen on; 0 picks a free one.
        api_key: Require ``Authorization: ApiKey <api_key>``.
        basic_auth: Require HTTP Basic with this ``(user, password)``.
        bearer_token: Require ``Authorization: Bearer <token>``.
        es_version: Elasticsearch version to emulate (shapes, routes, statuses).
        faults: Faults injected into inference requests.
        embedding_format: ``float`` (what Bedrock returns), or ``bytes``/``bits`` to
            exercise the other result shapes.
        model: Base model: ``wordllama`` (the model in the ``wordllama`` wheel),
            ``hashing`` (feature hashing, no data files) or ``seeded`` (dense
            random vectors at almost no cost, for load tests).
        allocation_delay_s: Seconds until a new in-cluster deployment is allocated.
        allocation_polls: How many trained-model stats polls still see a new
            in-cluster deployment ``starting``.
        record_limit: How many requests :attr:`requests` keeps (oldest dropped).

    Example:
        >>> with LocalServer(api_key="secret") as server:  # doctest: +SKIP
        ...     es = Elasticsearch(server.url, api_key="secret")
        ...     es.inference.put(inference_id="e", task_type="text_embedding", ...)
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        bearer_token: str | None = None,
        es_version: str = "9.1.0",
        faults: FaultConfig | None = None,
        embedding_format: str = "float",
        model: str = "wordllama",
        allocation_delay_s: float = 0.0,
        allocation_polls: int = 0,
        record_limit: int = 100_000,
    ) -> None:
        if model not in BASE_MODELS:
            raise ValueError(f"model must be one of {BASE_MODELS}, got {model!r}")
        self.host = host
        self.port = port
        self.es_version = es_version
        self._app = Application(
            es_version=es_version,
            authenticator=Authenticator(api_key, basic_auth, bearer_token),
            faults=faults,
            embedding_format=embedding_format,
            model=model,
            allocation_delay_s=allocation_delay_s,
            allocation_polls=allocation_polls,
        )
        self._core = _Core(self._app, record_limit)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = self.url if self._thread is not None else "stopped"
        return f"LocalServer({state}, es_version={self.es_version!r})"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (valid once started)."""
        if self._thread is None:
            raise RuntimeError("the local server is not running; call start() first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> LocalServer:
        """Start listening; returns once the socket accepts connections."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self.port = loop.run_until_complete(
                    self._core.start(self.host, self.port)
                )
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=run, name="es-inference-local", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        self._loop, self._thread = loop, thread
        logger.info(
            "listening on %s: a local stand-in for Elasticsearch's inference API "
            "(emulating Elasticsearch %s) with local models (%s); no request leaves "
            "this machine",
            self.url,
            self.es_version,
            self._app.model_name,
        )
        return self

    def stop(self) -> None:
        """Close all connections and stop the loop thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._core.close(), loop)
        try:
            future.result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            self._loop = self._thread = None
            self._app.close()
            logger.info("local inference server stopped")

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ switches

    @property
    def faults(self) -> FaultConfig:
        """The fault configuration in effect."""
        return self._app.switches.fault_plan.config

    def set_faults(self, faults: FaultConfig | None) -> None:
        """Replace the fault configuration (``None`` for none); new requests see it.

        The seeded generator restarts, so a seed gives the same draws again.
        """
        self._app.switches.fault_plan = FaultPlan(faults or FaultConfig())

    def set_stream_mode(
        self,
        *,
        split_events: bool = False,
        error_after: int | None = None,
        cut_after: int | None = None,
        multi_delta: bool = True,
        delay_ms: float = 0.0,
    ) -> None:
        """Set the switches of completion streams (all reset to defaults when omitted).

        Args:
            split_events: Write each event in several network writes, cutting
                inside the BOM bytes and inside the JSON.
            error_after: Send an ``event: error`` after this many data events and
                end without ``[DONE]``.
            cut_after: End the stream cleanly after this many data events, without
                ``[DONE]``.
            multi_delta: Let one event carry up to three deltas.
            delay_ms: Pause between events.
        """
        for name, value in (("error_after", error_after), ("cut_after", cut_after)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
        self._app.switches.stream_mode = StreamMode(
            split_events, error_after, cut_after, multi_delta, delay_ms
        )

    def set_embedding_format(self, embedding_format: str) -> None:
        """Answer embeddings as ``float``, ``bytes`` or ``bits`` from now on."""
        if embedding_format not in EMBEDDING_FORMATS:
            raise ValueError(f"embedding_format must be one of {EMBEDDING_FORMATS}")
        self._app.switches.embedding_format = embedding_format

    def mark_in_use(
        self,
        inference_id: str,
        pipelines: Sequence[str] = (),
        indexes: Sequence[str] = (),
    ) -> None:
        """Pretend ingest pipelines / index mappings reference the endpoint.

        DELETE then answers 409 unless ``force`` (and ``dry_run`` lists them).
        """
        self._app.store.mark_in_use(inference_id, pipelines, indexes)

    def set_allocation_state(self, inference_id: str, state: str | None) -> None:
        """Force the deployment of an ``elasticsearch`` endpoint into a state.

        Args:
            inference_id: The endpoint (deployment) id.
            state: ``starting``, ``started``, ``fully_allocated`` or ``failed``;
                ``None`` returns to the automatic progression.
        """
        self._app.deployments.set_state(inference_id, state)

    # ------------------------------------------------------------ request log

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the handled requests, oldest first."""
        return self._core.records()

    def clear_requests(self) -> None:
        """Forget the handled requests."""
        self._core.clear_records()

    def count(self, method: str, path_prefix: str = "") -> int:
        """How many handled requests used ``method`` on a path starting with a prefix.

        Args:
            method: HTTP method (case-insensitive); ``"*"`` counts every method.
            path_prefix: Decoded path prefix, e.g. ``"/_inference/completion/"``.
        """
        wanted = method.upper()
        return sum(
            1
            for record in self._core.records()
            if (wanted == "*" or record.method == wanted)
            and record.path.startswith(path_prefix)
        )


def serve(
    host: str = "127.0.0.1",
    port: int = 9200,
    api_key: str | None = None,
    faults: FaultConfig | None = None,
    es_version: str = "9.1.0",
    *,
    basic_auth: tuple[str, str] | None = None,
    bearer_token: str | None = None,
    embedding_format: str = "float",
    model: str = "wordllama",
    allocation_delay_s: float = 0.0,
    allocation_polls: int = 0,
) -> None:
    """Run a :class:`LocalServer` until interrupted (Ctrl-C stops it cleanly).

    Args:
        host: Address to listen on.
        port: Port to listen on.
        api_key: Require ``Authorization: ApiKey <api_key>``.
        faults: Faults injected into inference requests.
        es_version: Elasticsearch version to emulate.
        basic_auth: Require HTTP Basic with this ``(user, password)``.
        bearer_token: Require ``Authorization: Bearer <token>``.
        embedding_format: ``float``, ``bytes`` or ``bits``.
        model: ``wordllama``, ``hashing`` or ``seeded``.
        allocation_delay_s: Seconds until in-cluster deployments are allocated.
        allocation_polls: Stats polls that still see new deployments starting.
    """
    server = LocalServer(
        host=host,
        port=port,
        api_key=api_key,
        basic_auth=basic_auth,
        bearer_token=bearer_token,
        es_version=es_version,
        faults=faults,
        embedding_format=embedding_format,
        model=model,
        allocation_delay_s=allocation_delay_s,
        allocation_polls=allocation_polls,
    )
    server.start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        logger.info("interrupted")
    finally:
        server.stop()
