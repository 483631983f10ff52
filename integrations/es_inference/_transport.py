"""HTTP transports: one sync, one async, sharing everything but I/O.

Requests whose answers are read whole go through the lean client of
:mod:`es_inference._http1`; streams, and connections that the environment sends
through a proxy, go through httpx. This is the only module that touches either, and
the only place their exceptions are caught and translated into
:mod:`es_inference._errors`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import ssl
import threading
import time
import urllib.request
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from email.utils import parsedate_to_datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._config import ConnectionConfig
from ._errors import (
    ConnectionError,
    EsInferenceError,
    RequestTimeout,
    ResponseDecodeError,
    TLSError,
    TransportError,
)
from ._http1 import (
    AsyncPool,
    Body,
    ConnectFailure,
    HTTPFailure,
    Origin,
    Outgoing,
    RequestEncoder,
    Response,
    SyncPool,
    Timeout,
    TLSAnswer,
    TLSFailure,
    Truncated,
    connect_failure,
)
from ._retry import Attempts, RateLimiter, RetryPolicy
from ._wire import Request, parse_error

logger = logging.getLogger("es_inference.transport")


class _OnFirstUse:
    """A module imported when one of its names is first needed.

    httpx carries streams and proxied connections only, and importing it (with
    the command-line extras it pulls in when they are installed) costs about a
    tenth of a second; code that never streams never pays it.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)


if TYPE_CHECKING:
    import httpx
else:
    httpx = _OnFirstUse("httpx")

T = TypeVar("T")

_USER_AGENT = "es-inference/0.1"
_SSL_MARKERS = ("ssl", "certificate", "tls")
# h11 says "peer closed connection without sending complete message body".
_CUT_MARKERS = ("incomplete", "complete message body")


def _translate(
    exc: httpx.HTTPError | HTTPFailure,
    request: Request,
    origin: str = "the cluster",
    *,
    reached: bool = True,
) -> TransportError:
    """Map an httpx or lean-client exception onto the library's error tree.

    ``origin`` (``scheme://host:port``) is named when connecting failed or TLS
    did not fit. ``reached`` says whether an answer ever came from it: until
    one has, a failure to connect or a connection closed without an answer is a
    ``first_contact``.
    """
    if isinstance(exc, httpx.RequestError):
        # The error raised from this one keeps it as __context__: drop the request
        # it holds, whose headers carry the credentials.
        exc._request = None
    if isinstance(exc, httpx.ConnectError):
        exc = _connect_cause(exc, https=origin.startswith("https:"))
    fields: dict[str, Any] = {"method": request.method, "path": request.path}
    where = f"{request.method} {request.path}"
    kind = exc.kind if isinstance(exc, HTTPFailure) else type(exc).__name__
    text = str(exc) or kind
    first = not reached

    if isinstance(exc, (httpx.TimeoutException, Timeout)):
        if kind == "ConnectTimeout":
            return RequestTimeout(
                f"{where}: cannot connect to {origin}: {text} ({kind})",
                first_contact=first,
                **fields,
            )
        return RequestTimeout(f"{where}: no answer in time ({kind})", **fields)
    if isinstance(exc, TLSAnswer):
        # httpx does not show what it could not parse: a TLS answer on its path
        # reads as a connection closed without an answer, whose hint says https.
        return TLSError(
            f"{where}: {origin} answered with TLS; use an https:// URL",
            first_contact=first,
            **fields,
        )
    if isinstance(exc, TLSFailure):
        advice = (
            "pass ca_certs with the cluster's CA certificate, or check the URL"
            if "certificate" in text.lower()
            else "if the server speaks plain HTTP, use an http:// URL"
        )
        return TLSError(
            f"{where}: TLS handshake with {origin} failed: {text}; {advice}",
            first_contact=first,
            **fields,
        )
    if isinstance(exc, ConnectFailure):
        return ConnectionError(
            f"{where}: cannot connect to {origin}: {text}",
            opened=False,
            first_contact=first,
            **fields,
        )
    if isinstance(exc, Truncated) or (
        isinstance(exc, httpx.RemoteProtocolError)
        and any(marker in text.lower() for marker in _CUT_MARKERS)
    ):
        return ResponseDecodeError(
            f"{where}: the response body was cut off ({text})", **fields
        )
    if first:
        hint = (
            "; if the cluster expects TLS, use an https:// URL"
            if origin.startswith("http:")
            else ""
        )
        return ConnectionError(
            f"{where}: {origin} closed the connection without an answer "
            f"({kind}: {text}){hint}",
            opened=True,
            first_contact=True,
            **fields,
        )
    return ConnectionError(f"{where}: {kind}: {text}", opened=True, **fields)


def _connect_cause(exc: httpx.ConnectError, *, https: bool) -> ConnectFailure:
    """What httpx's ``ConnectError`` wraps, as the lean client reports it."""
    root: BaseException = exc
    for _ in range(8):  # httpx, httpcore, then the socket's or TLS's own error
        inner = root.__cause__ or root.__context__
        if inner is None:
            break
        root = inner
    if isinstance(root, OSError):
        return connect_failure(root, tls=https)
    text = str(exc)
    if any(marker in text.lower() for marker in _SSL_MARKERS):
        return TLSFailure("ConnectError", text)
    if https:
        # anyio's EndOfStream: the server closed the connection in the handshake.
        return connect_failure(EOFError(), tls=True)
    return ConnectFailure("ConnectError", text or "ConnectError")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _proxied(url: str) -> bool:
    """Whether requests for ``url`` go through a proxy, by the rules httpx follows."""
    proxies = urllib.request.getproxies()
    origin = Origin.from_url(url)
    if not (proxies.get(origin.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(origin.host)


#: Clusters (by URL) that have answered this process. Until one has, a failure to
#: connect to it is most likely a wrong URL and is not retried with the full
#: backoff; once it has, any transport to it waits for it to come back.
_REACHED: set[str] = set()


class _Base:
    """Configuration shared by both transports."""

    def __init__(self, config: ConnectionConfig, pool_size: int = 16) -> None:
        self.config = config
        self.pool_size = max(1, pool_size)
        self._secrets = config.secret_values()
        self._pid = os.getpid()
        self._count_lock = threading.Lock()
        self.requests_sent = 0
        # Named in errors; a proxy's URL is not, as it may hold credentials.
        self._address = Origin.from_url(config.url).address
        self._origin: Origin | None = None
        self._encoder: RequestEncoder | None = None
        if _proxied(config.url):
            self._address += " (through a proxy)"
        else:
            origin = Origin.from_url(config.url)
            headers = {**self._headers(), "accept-encoding": "gzip, deflate"}
            try:
                self._encoder = RequestEncoder(origin, headers)
            except (UnicodeEncodeError, ValueError):
                pass  # httpx reports the header when the request is sent
            else:
                self._origin = origin

    def _counted(self) -> None:
        with self._count_lock:
            self.requests_sent += 1

    def _headers(self) -> dict[str, str]:
        return {
            "accept": "application/json",
            "content-type": "application/json",
            "user-agent": _USER_AGENT,
            **(self.config.headers or {}),
            **self.config.auth_headers(),
        }

    def _lean_ssl(self) -> ssl.SSLContext | None:
        """The TLS context of the lean client; ``None`` for plain HTTP."""
        if self._origin is None or self._origin.scheme != "https":
            return None
        context = self.config.ssl_context()
        if isinstance(context, ssl.SSLContext):
            return context
        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        return unverified

    def _lean_request(self, request: Request) -> Outgoing:
        assert self._encoder is not None
        return self._encoder.encode(
            request.method, request.path, request.params, request.body
        )

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "base_url": self.config.url,
            "headers": self._headers(),
            "verify": self.config.ssl_context(),
            "timeout": httpx.Timeout(
                self.config.client_timeout, connect=self.config.connect_timeout
            ),
            "limits": httpx.Limits(
                max_connections=self.pool_size,
                max_keepalive_connections=self.pool_size,
            ),
        }

    def _check(
        self, request: Request, response: httpx.Response, started: float
    ) -> None:
        status = response.status_code
        # A stream's body is read here only when it is an error.
        content = response.content if status >= 400 else b""
        self._finish(
            request, status, content, response.headers.get("retry-after"), started
        )

    def _finish(
        self,
        request: Request,
        status: int,
        content: Body,
        retry_after: str | None,
        started: float,
    ) -> None:
        _REACHED.add(self.config.url)
        millis = (time.perf_counter() - started) * 1000
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "%s %s -> %d in %.1f ms", request.method, request.path, status, millis
            )
        if status >= 400:
            raise parse_error(
                status,
                bytes(content),
                request,
                secrets=self._secrets,
                retry_after=_retry_after(retry_after),
            )

    def _consumer(
        self, request: Request, parse: Callable[[Body], T], started: float
    ) -> Callable[[Response], T]:
        """What the lean pool does with an answer: check its status, then parse."""

        def consume(answer: Response) -> T:
            retry_after = answer.headers.get("retry-after")
            self._finish(request, answer.status, answer.body, retry_after, started)
            return parse(answer.body)

        return consume

    @property
    def reached(self) -> bool:
        """Whether the cluster has answered any transport of this process."""
        return self.config.url in _REACHED

    def _error(
        self, exc: httpx.HTTPError | HTTPFailure, request: Request
    ) -> TransportError:
        return _translate(exc, request, self._address, reached=self.reached)

    def _log_body(self, request: Request) -> None:
        self._counted()
        if request.body and logger.isEnabledFor(logging.DEBUG):
            # Bodies may hold AWS keys (PUT); those are never logged.
            shown = "<endpoint config>" if request.method == "PUT" else request.body
            logger.debug("%s %s body=%r", request.method, request.path, shown)

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("transports are not pickled; adapters recreate them")


class Halted(Exception):
    """The call a request belongs to has stopped; the request was not sent."""


def _pause(seconds: float, halt: threading.Event | None) -> None:
    """Sleep ``seconds``; raise :class:`Halted` if ``halt`` is or becomes set."""
    if halt is None:
        if seconds > 0:
            time.sleep(seconds)
        return
    stopped = halt.wait(seconds) if seconds > 0 else halt.is_set()
    if stopped:
        raise Halted


class SyncTransport(_Base):
    """Sends requests over pooled keep-alive connections; threads may share it."""

    def __init__(self, config: ConnectionConfig, pool_size: int = 16) -> None:
        super().__init__(config, pool_size)
        self._client: httpx.Client | None = None
        self._lean: SyncPool | None = None
        self._lock = threading.Lock()

    def _pool(self) -> SyncPool:
        pool = self._lean
        if pool is None or self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    # After fork, the parent's sockets are not ours to use.
                    self._pid = os.getpid()
                    self._client = self._lean = None
                if self._lean is None:
                    assert self._origin is not None
                    self._lean = SyncPool(
                        self._origin,
                        self._lean_ssl(),
                        self.pool_size,
                        self.config.connect_timeout,
                        self.config.client_timeout,
                    )
                pool = self._lean
        return pool

    def _http(self) -> httpx.Client:
        client = self._client
        if client is None or self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    # After fork, the parent's sockets are not ours to use.
                    self._pid = os.getpid()
                    self._client = self._lean = None
                if self._client is None:
                    self._client = httpx.Client(**self._client_kwargs())
                client = self._client
        return client

    @overload
    def send(self, request: Request) -> bytes: ...

    @overload
    def send(self, request: Request, parse: Callable[[Body], T]) -> T: ...

    def send(self, request: Request, parse: Callable[[Body], Any] = bytes) -> Any:
        """Send once; return the body of a 2xx answer, or what ``parse`` makes of it.

        A large body reaches ``parse`` as a view that is valid only during the call.
        """
        self._log_body(request)
        started = time.perf_counter()
        if self._origin is not None:
            try:
                return self._pool().request(
                    self._lean_request(request),
                    request.method,
                    self._consumer(request, parse, started),
                )
            except HTTPFailure as exc:
                raise self._error(exc, request) from None
        try:
            response = self._http().request(
                request.method,
                request.path,
                params=request.params or None,
                content=request.body,
            )
        except httpx.HTTPError as exc:
            raise self._error(exc, request) from None
        self._check(request, response, started)
        return parse(response.content)

    def perform(
        self,
        request: Request,
        retry: RetryPolicy,
        parse: Callable[[Body], T],
        limiter: RateLimiter | None = None,
        halt: threading.Event | None = None,
    ) -> T:
        """Send with pacing and retries; ``parse`` runs inside the retry loop.

        Raises:
            Halted: ``halt`` was set while the request waited for its pacing slot
                or its next attempt; it was not sent (again).
        """
        attempts = Attempts(f"{request.method} {request.path}", retry, limiter)
        try:
            while True:
                _pause(attempts.next_wait(), halt)
                try:
                    result = self.send(request, parse)
                except EsInferenceError as exc:
                    delay = attempts.failed(exc)
                    if delay is None:
                        raise
                    _pause(delay, halt)
                    continue
                attempts.succeeded()
                return result
        finally:
            attempts.close()

    @contextmanager
    def stream(self, request: Request) -> Iterator[Iterator[bytes]]:
        """Open a streamed POST; yields an iterator over the raw body chunks."""
        self._log_body(request)
        started = time.perf_counter()
        headers = {"accept": "text/event-stream"}
        try:
            with self._http().stream(
                request.method,
                request.path,
                params=request.params or None,
                content=request.body,
                headers=headers,
            ) as response:
                if response.status_code >= 400:
                    response.read()
                self._check(request, response, started)
                yield self._chunks(response, request)
        except httpx.HTTPError as exc:
            raise self._error(exc, request) from None

    @staticmethod
    def _chunks(response: httpx.Response, request: Request) -> Iterator[bytes]:
        try:
            yield from response.iter_raw()
        except httpx.HTTPError as exc:
            raise _translate(exc, request) from None

    def close(self) -> None:
        """Close pooled connections."""
        with self._lock:
            if self._pid == os.getpid():
                if self._client is not None:
                    self._client.close()
                if self._lean is not None:
                    self._lean.close()
            self._client = self._lean = None

    def __del__(self) -> None:
        if getattr(self, "_pid", None) != os.getpid():
            return
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()
        lean = getattr(self, "_lean", None)
        if lean is not None:
            lean.close()


class AsyncTransport(_Base):
    """Sends requests over pooled keep-alive connections of the running event loop.

    One pool is kept per event loop, so an adapter may be used from several loops
    (one after another, as notebooks and test runners do).
    """

    def __init__(self, config: ConnectionConfig, pool_size: int = 16) -> None:
        super().__init__(config, pool_size)
        self._clients: dict[int, _LoopClient] = {}
        self._lock = threading.Lock()

    async def _entry(self) -> _LoopClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._clients = {}
            entry = self._clients.get(id(loop))
            if entry is not None and entry.loop is loop:
                return entry
            for key, old in list(self._clients.items()):
                if old.loop.is_closed():
                    del self._clients[key]
            entry = _LoopClient(loop, self)
            self._clients[id(loop)] = entry
            siblings = _LOOP_CLIENTS.setdefault(loop, [])
            orphans = [other for other in siblings if other.owner() is None]
            siblings[:] = [other for other in siblings if other.owner() is not None]
            siblings.append(entry)
        await entry.keeper.__anext__()
        for orphan in orphans:
            await orphan.keeper.aclose()
        return entry

    async def _http(self) -> httpx.AsyncClient:
        entry = await self._entry()
        if entry.client is None:
            entry.client = httpx.AsyncClient(**self._client_kwargs())
        return entry.client

    async def _pool(self) -> AsyncPool:
        entry = await self._entry()
        if entry.pool is None:
            assert self._origin is not None
            entry.pool = AsyncPool(
                self._origin,
                self._lean_ssl(),
                self.pool_size,
                self.config.connect_timeout,
                self.config.client_timeout,
            )
        return entry.pool

    @overload
    async def send(self, request: Request) -> bytes: ...

    @overload
    async def send(self, request: Request, parse: Callable[[Body], T]) -> T: ...

    async def send(self, request: Request, parse: Callable[[Body], Any] = bytes) -> Any:
        """Send once; return the body of a 2xx answer, or what ``parse`` makes of it.

        A large body reaches ``parse`` as a view that is valid only during the call.
        """
        self._log_body(request)
        started = time.perf_counter()
        if self._origin is not None:
            try:
                pool = await self._pool()
                return await pool.request(
                    self._lean_request(request),
                    request.method,
                    self._consumer(request, parse, started),
                )
            except HTTPFailure as exc:
                raise self._error(exc, request) from None
        try:
            response = await (await self._http()).request(
                request.method,
                request.path,
                params=request.params or None,
                content=request.body,
            )
        except httpx.HTTPError as exc:
            raise self._error(exc, request) from None
        self._check(request, response, started)
        return parse(response.content)

    async def perform(
        self,
        request: Request,
        retry: RetryPolicy,
        parse: Callable[[Body], T],
        limiter: RateLimiter | None = None,
    ) -> T:
        """Send with pacing and retries; ``parse`` runs inside the retry loop."""
        attempts = Attempts(f"{request.method} {request.path}", retry, limiter)
        try:
            while True:
                wait = attempts.next_wait()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    result = await self.send(request, parse)
                except EsInferenceError as exc:
                    delay = attempts.failed(exc)
                    if delay is None:
                        raise
                    await asyncio.sleep(delay)
                    continue
                attempts.succeeded()
                return result
        finally:
            attempts.close()

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[bytes]]:
        """Open a streamed POST; yields an async iterator over raw body chunks."""
        self._log_body(request)
        started = time.perf_counter()
        headers = {"accept": "text/event-stream"}
        try:
            async with (await self._http()).stream(
                request.method,
                request.path,
                params=request.params or None,
                content=request.body,
                headers=headers,
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                self._check(request, response, started)
                yield self._chunks(response, request)
        except httpx.HTTPError as exc:
            raise self._error(exc, request) from None

    @staticmethod
    async def _chunks(
        response: httpx.Response, request: Request
    ) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise _translate(exc, request) from None

    async def aclose(self) -> None:
        """Close the client of the running loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._clients.pop(id(loop), None)
            if entry is not None and entry in _LOOP_CLIENTS.get(loop, []):
                _LOOP_CLIENTS[loop].remove(entry)
        if entry is not None:
            await entry.keeper.aclose()


async def _keep(entry: _LoopClient) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        if entry.pool is not None:
            entry.pool.close()
            await asyncio.sleep(0)  # the loop closes the aborted sockets
        if entry.client is not None:
            await entry.client.aclose()


class _LoopClient:
    """The connections of one transport on one event loop, closed on that loop.

    An async generator started on the loop holds them open. The loop keeps it
    (through ``_LOOP_CLIENTS``) until the loop shuts down (``asyncio.run``,
    ``asyncio.Runner``, test runners), which finalizes its async generators and so
    closes the connections on the right loop. Connections whose transport is gone
    are closed the next time a new entry starts on the same loop. The lean pool and
    the httpx client (for streams and proxies) are each made on first use.
    """

    __slots__ = ("client", "keeper", "loop", "owner", "pool")

    def __init__(self, loop: asyncio.AbstractEventLoop, owner: AsyncTransport) -> None:
        self.loop = loop
        self.client: httpx.AsyncClient | None = None
        self.pool: AsyncPool | None = None
        self.keeper = _keep(self)
        self.owner = weakref.ref(owner)


_LOOP_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[_LoopClient]]
_LOOP_CLIENTS = weakref.WeakKeyDictionary()
