"""A lean HTTP/1.1 client for requests whose answers are read whole, sync and async.

httpx spends a few hundred microseconds of CPU on every request (URL merging, header
objects, auth and redirect hooks) and its asyncio pool scans every connection each
time a request starts or ends. A Titan endpoint takes one text per request, so that
overhead, not the JSON, decided how fast a corpus could be embedded. This client
sends a prebuilt request head, reads the answer into bytes and keeps connections
alive in a small pool; nothing else. Redirects, cookies, proxies and streamed
bodies are not its business: :mod:`es_inference._transport` uses httpx for those,
and is also the one place where this module's errors are translated.

Reading an answer is written once, as the generator :func:`read_response`, which
yields what it needs next (the head, so many bytes, a line, the rest) and receives
it; the sync and async connections only differ in how they fetch those bytes.

Large answers (a Cohere batch is about 1.2 MB of JSON) are read and consumed one
at a time per pool: the other connections' bytes wait in the kernel's socket
buffers, so memory holds one large answer and its parse at a time, not one per
connection. Over threads they are read into one reused buffer and consumed on one
thread: glibc gives every thread its own malloc arena, and each arena that ever
parsed a large answer would keep that much memory (16 workers held 60 MB more
than one thread does).

Failures, by what they mean for the request::

    HTTPFailure                the connection broke or the answer was malformed
    ├── ConnectFailure         no connection: nothing was sent
    │   └── TLSFailure         the TLS handshake or the certificate failed
    ├── TLSAnswer              a plain-HTTP request was answered with TLS
    ├── Timeout                connect, read, write or waiting for a free slot
    └── Truncated              the body ended before its announced length

A failure's message is the reason alone ("connection refused"); the transport adds
the request and the origin.
"""

from __future__ import annotations

import asyncio
import io
import re
import select
import socket
import ssl
import sys
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Generator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple, TypeVar
from urllib.parse import urlencode, urlsplit

T = TypeVar("T")

#: An answer's body: bytes, or a view of a pool's buffer valid until it is consumed.
Body = bytes | memoryview
#: A request: one buffer, or a head and a large body sent one after the other.
Outgoing = bytes | tuple[bytes, bytes]

#: Seconds an idle connection is kept for reuse, as httpx does.
KEEPALIVE_EXPIRY = 5.0
#: Bodies of at least this many bytes (by Content-Length) are read one at a time.
SERIAL_ABOVE = 256 * 1024

_HEAD_LIMIT = 64 * 1024
_MAX_HEADERS = 100
_WRITE_BUFFER_HIGH = 256 * 1024
_JOIN_BELOW = 64 * 1024
_REST = -1
_LINE = -2
_HEAD = -3
_NO_BODY_STATUS = (204, 304)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# The content types of a TLS alert and handshake record; no HTTP answer starts so.
_TLS_RECORDS = (b"\x15", b"\x16")


class HTTPFailure(Exception):
    """No usable answer: the connection broke or the answer was malformed.

    Attributes:
        kind: The failure as httpx names it (``ReadError``, ``ReadTimeout``,
            ``RemoteProtocolError``…), so messages read the same on both paths.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ConnectFailure(HTTPFailure):
    """The connection could not be opened; the request was not sent."""


class TLSFailure(ConnectFailure):
    """The TLS handshake failed, most often on the server's certificate."""


class TLSAnswer(HTTPFailure):
    """The server answered a plain-HTTP request with a TLS record: it wants https."""


class Timeout(HTTPFailure):
    """Connecting, sending, reading or waiting for a free connection took too long."""


class Truncated(HTTPFailure):
    """The connection closed before the whole body announced had arrived."""


class Response(NamedTuple):
    """A whole answer."""

    status: int
    headers: Mapping[str, str]
    body: Body
    keep_alive: bool


@dataclass(frozen=True)
class Origin:
    """Where requests go: scheme, host, port and the URL's path prefix."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def from_url(cls, url: str) -> Origin:
        """Split an ``http://`` or ``https://`` base URL."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def address(self) -> str:
        """``scheme://host:port``, the port always shown; for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def host_header(self) -> str:
        """The ``Host`` value: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """Header lines for every request, checked once.

    Raises:
        ValueError: for a name that is not a token or a value with a line break
            or a character outside ASCII.
    """
    lines = []
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise ValueError(f"invalid header name {name!r}")
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"the value of header {name!r} holds a line break")
        lines.append(f"{name}: {value}\r\n".encode("ascii"))
    return b"".join(lines)


class RequestEncoder:
    """Writes whole requests to one origin with the same headers every time.

    The request line and headers of each method, path and query are encoded once;
    a bulk call sends the same ones thousands of times.
    """

    def __init__(self, origin: Origin, headers: Mapping[str, str]) -> None:
        self.origin = origin
        self._fixed = f"Host: {origin.host_header}\r\n".encode(
            "ascii"
        ) + encode_headers(headers)
        self._heads: dict[tuple[str, str, tuple[tuple[str, str], ...]], bytes] = {}

    def encode(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
    ) -> Outgoing:
        """The whole request: request line, headers and body.

        A large body comes back beside its head rather than copied after it.
        """
        key = (method, path, tuple(params.items()) if params else ())
        head = self._heads.get(key)
        if head is None:
            target = self.origin.prefix + path
            if params:
                target += "?" + urlencode(params)
            head = f"{method} {target} HTTP/1.1\r\n".encode("ascii") + self._fixed
            if len(self._heads) >= 256:
                self._heads.clear()
            self._heads[key] = head
        if body is None:
            if method not in ("POST", "PUT", "PATCH"):
                return head + b"\r\n"
            body = b""
        if len(body) >= _JOIN_BELOW:
            return b"%sContent-Length: %d\r\n\r\n" % (head, len(body)), body
        return b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)


# Reading an answer -----------------------------------------------------------


def read_response(method: str) -> Generator[int, Body, Response]:
    """Parse one answer from what the connection is asked for and sends back.

    Yields ``_HEAD`` (everything up to and including the blank line), ``_LINE``
    (one line), ``_REST`` (everything until the peer closes) or a byte count; the
    connection sends the bytes, fewer only when the peer closed first.
    """
    while True:
        head = bytes((yield _HEAD))  # bytes already: no copy
        if not head:
            raise HTTPFailure(
                "RemoteProtocolError", "Server disconnected without sending a response."
            )
        if not head.endswith(b"\r\n\r\n"):
            _check_not_tls(head)
            raise HTTPFailure(
                "RemoteProtocolError", "Server disconnected in the middle of the head."
            )
        version, status, headers = _parse_head(head)
        if 100 <= status < 200 and status != 101:
            continue  # an interim answer (100 Continue, 103 Early Hints)
        break
    if status == 101:
        raise HTTPFailure("RemoteProtocolError", "unexpected 101 Switching Protocols")

    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    keep_alive = "close" not in tokens if version == "1.1" else "keep-alive" in tokens
    body: Body
    if method == "HEAD" or status in _NO_BODY_STATUS:
        body = b""
    elif "transfer-encoding" in headers:
        codings = [c.strip().lower() for c in headers["transfer-encoding"].split(",")]
        if codings[-1] == "chunked":
            body = yield from _read_chunked()
        else:
            body = yield _REST
            keep_alive = False
    elif "content-length" in headers:
        length = _content_length(headers["content-length"])
        body = (yield length) if length else b""
        if len(body) < length:
            raise Truncated(
                "RemoteProtocolError",
                "peer closed connection without sending complete message body "
                f"(received {len(body)} bytes, expected {length})",
            )
    else:
        body = yield _REST
        keep_alive = False
    return Response(status, headers, _decode(body, headers), keep_alive)


def _check_not_tls(head: bytes) -> None:
    """Raise :class:`TLSAnswer` for an answer that starts as a TLS record does."""
    if head[:1] in _TLS_RECORDS and head[1:2] == b"\x03":
        raise TLSAnswer(
            "RemoteProtocolError",
            "the server answered with a TLS record, so it expects https",
        )


def _parse_head(head: bytes) -> tuple[str, int, dict[str, str]]:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if (
        len(parts) < 2
        or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0")
        or len(parts[1]) != 3
        or not parts[1].isdigit()
    ):
        _check_not_tls(head)
        raise HTTPFailure(
            "RemoteProtocolError", f"malformed status line {lines[0][:80]!r}"
        )
    if len(lines) > _MAX_HEADERS + 1:
        raise HTTPFailure("RemoteProtocolError", "too many header lines")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise HTTPFailure(
                "RemoteProtocolError", f"malformed header line {line[:80]!r}"
            )
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return parts[0][5:].decode(), int(parts[1]), headers


def _content_length(value: str) -> int:
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise HTTPFailure("RemoteProtocolError", f"bad Content-Length {value!r}")
    return int(values.pop())


def _read_chunked() -> Generator[int, Body, bytes]:
    parts = []
    received = 0
    while True:
        line = bytes((yield _LINE))
        if not line.endswith(b"\n"):
            raise _cut(received, line)
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HTTPFailure(
                "RemoteProtocolError", f"bad chunk size {size_text[:20]!r}"
            ) from None
        if size < 0:
            raise HTTPFailure("RemoteProtocolError", "negative chunk size")
        if size == 0:
            break
        chunk = yield size + 2
        if len(chunk) < size + 2:
            raise _cut(received + len(chunk), b"")
        if chunk[-2:] != b"\r\n":
            raise HTTPFailure("RemoteProtocolError", "chunk not followed by CRLF")
        parts.append(bytes(chunk[:-2]))
        received += size
    while True:  # trailer fields, then the blank line
        line = bytes((yield _LINE))
        if not line.endswith(b"\n"):
            raise _cut(received, line)
        if line in (b"\r\n", b"\n"):
            return b"".join(parts)


def _cut(received: int, line: bytes) -> HTTPFailure:
    if len(line) >= _HEAD_LIMIT:
        return HTTPFailure("RemoteProtocolError", "chunk header line too long")
    return Truncated(
        "RemoteProtocolError",
        "peer closed connection without sending complete message body "
        f"(received {received} bytes of a chunked body)",
    )


def _decode(body: Body, headers: Mapping[str, str]) -> Body:
    coding = headers.get("content-encoding", "").strip().lower()
    if not coding or coding == "identity":
        return body
    try:
        if coding in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if coding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
    except zlib.error as exc:
        raise HTTPFailure("DecodingError", f"{coding} body: {exc}") from None
    raise HTTPFailure("DecodingError", f"unsupported content-encoding {coding!r}")


# Connecting ----------------------------------------------------------------------

_CUT_SHORT = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, EOFError)


def connect_failure(exc: BaseException, *, tls: bool) -> ConnectFailure:
    """The failure for an error raised while connecting, with a readable reason.

    ``tls`` says the connection may have been open and in its TLS handshake, so
    that a connection cut short means the handshake failed.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TLSFailure("ConnectError", str(exc))
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)) or (
        tls and isinstance(exc, _CUT_SHORT)
    ):
        return TLSFailure(
            "ConnectError", "the server closed the connection during the handshake"
        )
    if isinstance(exc, ssl.SSLError):
        return TLSFailure("ConnectError", str(exc))
    if isinstance(exc, ConnectionRefusedError):
        return ConnectFailure("ConnectError", "connection refused")
    if isinstance(exc, socket.gaierror):
        return ConnectFailure(
            "ConnectError", f"the host name did not resolve ({exc.strerror})"
        )
    return ConnectFailure("ConnectError", str(exc) or type(exc).__name__)


def _connect_timeout(seconds: float) -> Timeout:
    return Timeout("ConnectTimeout", f"no connection within {seconds:g} s")


# Blocking sockets ----------------------------------------------------------------


class _SyncConnection:
    __slots__ = ("file", "idle_since", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        if now - self.idle_since > KEEPALIVE_EXPIRY:
            return False
        # Readable while idle means closed by the peer (or junk): not reusable.
        return not _readable(self.sock)

    def exchange(
        self, data: Outgoing, method: str, gate: _SyncGate
    ) -> tuple[Response, bool]:
        """Send ``data``, read the answer; True if it holds ``gate`` (release it)."""
        try:
            for part in (data,) if isinstance(data, bytes) else data:
                self.sock.sendall(part)
        except TimeoutError:
            raise Timeout("WriteTimeout", "timed out sending the request") from None
        except OSError as exc:
            raise HTTPFailure("WriteError", str(exc) or type(exc).__name__) from None
        reader = read_response(method)
        file = self.file
        gated = False
        try:
            step = next(reader)
            while True:
                if step >= SERIAL_ABOVE:
                    if not gated:
                        gate.lock.acquire()
                        gated = True
                    step = reader.send(gate.read(file, step))
                elif step >= 0:
                    step = reader.send(file.read(step))
                elif step == _HEAD:
                    step = reader.send(_read_head(file))
                elif step == _LINE:
                    step = reader.send(file.readline(_HEAD_LIMIT))
                else:
                    step = reader.send(file.read())
        except StopIteration as done:
            response: Response = done.value
            return response, gated
        except BaseException as exc:
            if gated:
                gate.lock.release()
            if isinstance(exc, TimeoutError):
                raise Timeout("ReadTimeout", "timed out reading the response") from None
            if isinstance(exc, OSError):
                raise HTTPFailure("ReadError", str(exc) or type(exc).__name__) from None
            raise

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class _SyncGate:
    """One large body at a time, read into one buffer and consumed on one thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._buffer = bytearray()
        self._thread: ThreadPoolExecutor | None = None

    def consume(self, consume: Callable[[Response], T], response: Response) -> T:
        """``consume(response)`` on the gate's thread (the caller holds the lock)."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(
                1, thread_name_prefix="es-inference-parse"
            )
        return self._thread.submit(consume, response).result()

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=False)
            self._thread = None

    def read(self, file: io.BufferedReader, size: int) -> memoryview:
        """Up to ``size`` bytes (fewer only at EOF), as a view of the buffer."""
        if len(self._buffer) < size:
            self._buffer = bytearray(size)
        with memoryview(self._buffer) as whole:
            got = 0
            while got < size:
                with whole[got:size] as rest:
                    count = file.readinto(rest)
                if not count:
                    break
                got += count
            return whole[:got]


def _read_head(file: io.BufferedReader) -> bytes:
    lines = []
    size = 0
    while True:
        line = file.readline(_HEAD_LIMIT)
        lines.append(line)
        size += len(line)
        if size > _HEAD_LIMIT:
            raise HTTPFailure("RemoteProtocolError", "response head too long")
        if (line == b"\r\n" and size > 2) or not line.endswith(b"\n"):
            return b"".join(lines)


def _readable(sock: socket.socket) -> bool:
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


class _Pool:
    """What both pools keep: where they connect, and how long they wait."""

    def __init__(
        self,
        origin: Origin,
        ssl_context: ssl.SSLContext | None,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self.origin = origin
        self._ssl = ssl_context
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._closed = False


class SyncPool(_Pool):
    """Keep-alive connections to one origin, shared by threads.

    Args:
        origin: Where to connect.
        ssl_context: The TLS context for ``https`` origins.
        max_connections: Connections open at once; further requests wait.
        connect_timeout: Seconds to open a connection (TLS included).
        read_timeout: Seconds any one send or read may block; also the longest
            wait for a free connection.
    """

    def __init__(
        self,
        origin: Origin,
        ssl_context: ssl.SSLContext | None,
        max_connections: int,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        super().__init__(origin, ssl_context, connect_timeout, read_timeout)
        self._slots = threading.BoundedSemaphore(max(1, max_connections))
        self._idle: list[_SyncConnection] = []
        self._lock = threading.Lock()
        self._gate = _SyncGate()

    def request(
        self, data: Outgoing, method: str, consume: Callable[[Response], T]
    ) -> T:
        """Send ``data`` (a whole request), read the answer and ``consume`` it.

        ``consume`` must be done with a memoryview body when it returns: the
        buffer behind it is reused.
        """
        if not self._slots.acquire(timeout=self._read_timeout):
            raise Timeout("PoolTimeout", "no connection became free in time")
        try:
            connection = self._take() or self._connect()
            try:
                response, gated = connection.exchange(data, method, self._gate)
            except BaseException:
                connection.close()
                raise
            self._give_back(connection, response.keep_alive)
            try:
                if gated:
                    return self._gate.consume(consume, response)
                return consume(response)
            finally:
                if isinstance(response.body, memoryview):
                    response.body.release()
                if gated:
                    self._gate.lock.release()
        finally:
            self._slots.release()

    def _take(self) -> _SyncConnection | None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._idle:
                    return None
                connection = self._idle.pop()
            if connection.usable(now):
                return connection
            connection.close()

    def _give_back(self, connection: _SyncConnection, keep_alive: bool) -> None:
        if keep_alive:
            connection.idle_since = time.monotonic()
            with self._lock:
                if not self._closed:
                    self._idle.append(connection)
                    return
        connection.close()

    def _connect(self) -> _SyncConnection:
        origin = self.origin
        try:
            sock = socket.create_connection(
                (origin.host, origin.port), timeout=self._connect_timeout
            )
        except TimeoutError:
            raise _connect_timeout(self._connect_timeout) from None
        except OSError as exc:
            raise connect_failure(exc, tls=False) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=origin.host)
        except TimeoutError:
            sock.close()
            raise Timeout(
                "ConnectTimeout",
                f"no TLS handshake within {self._connect_timeout:g} s",
            ) from None
        except OSError as exc:
            sock.close()
            raise connect_failure(exc, tls=self._ssl is not None) from None
        sock.settimeout(self._read_timeout)
        return _SyncConnection(sock)

    def close(self) -> None:
        """Close idle connections; busy ones close when their request ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        self._gate.close()


# asyncio streams ---------------------------------------------------------------


if sys.version_info >= (3, 11):

    async def _within(seconds: float, awaitable: Awaitable[T]) -> T:
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # pragma: no cover - Python 3.10

    async def _within(seconds: float, awaitable: Awaitable[T]) -> T:
        # Not asyncio.wait_for: on 3.10 it runs the awaitable in a task of its
        # own, and the large-body gate belongs to the task that takes it, so a
        # gate taken inside would never be released by the caller.
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(seconds, expire)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if expired:
                raise TimeoutError from None
            raise
        finally:
            timer.cancel()


class _AsyncConnection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        # The loop has already seen a close by the peer while the connection idled.
        return (
            now - self.idle_since <= KEEPALIVE_EXPIRY
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    async def exchange(
        self, data: Outgoing, method: str, timeout: float, gate: _AsyncGate
    ) -> Response:
        """Send ``data`` and read the answer; a large body leaves ``gate`` held."""
        # One deadline for the whole exchange (a timer per read would cost more
        # than the read): the answer must be complete ``timeout`` seconds after
        # the request went out.
        try:
            return await _within(timeout, self._exchange(data, method, gate))
        except TimeoutError:
            raise Timeout("ReadTimeout", "timed out waiting for the response") from None

    async def _exchange(
        self, data: Outgoing, method: str, gate: _AsyncGate
    ) -> Response:
        writer, reader = self.writer, self.reader
        try:
            for part in (data,) if isinstance(data, bytes) else data:
                writer.write(part)
            if writer.transport.get_write_buffer_size() > _WRITE_BUFFER_HIGH:
                await writer.drain()
        except OSError as exc:
            raise HTTPFailure("WriteError", str(exc) or type(exc).__name__) from None
        parser = read_response(method)
        try:
            step = next(parser)
            while True:
                if step >= SERIAL_ABOVE and not gate.held_by_me:
                    await gate.acquire()
                step = parser.send(await _fetch(reader, step))
        except StopIteration as done:
            response: Response = done.value
            return response
        except BaseException as exc:
            gate.release_mine()
            if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                raise HTTPFailure("ReadError", str(exc) or type(exc).__name__) from None
            raise

    def close(self) -> None:
        # At once, without the TLS closing handshake: a graceful close could
        # outlive the event loop and leave the socket open.
        self.writer.transport.abort()


class _AsyncGate:
    """One large body at a time among the tasks of one loop.

    The holder is the current task, so that a task that fails or is cancelled
    between reading a body and consuming it releases what it holds.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[object] | None = None

    @property
    def held_by_me(self) -> bool:
        return self._holder is not None and self._holder is asyncio.current_task()

    async def acquire(self) -> None:
        await self._lock.acquire()
        self._holder = asyncio.current_task()

    def release_mine(self) -> None:
        if self.held_by_me:
            self._holder = None
            self._lock.release()


async def _fetch(reader: asyncio.StreamReader, step: int) -> bytes:
    try:
        if step >= 0:
            return await reader.readexactly(step)
        if step == _HEAD:
            return await reader.readuntil(b"\r\n\r\n")
        if step == _LINE:
            return await reader.readuntil(b"\n")
        return await reader.read()
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    except asyncio.LimitOverrunError:
        raise HTTPFailure("RemoteProtocolError", "response head too long") from None


class AsyncPool(_Pool):
    """Keep-alive connections to one origin, for the tasks of one event loop.

    Takes the same arguments as :class:`SyncPool`.
    """

    def __init__(
        self,
        origin: Origin,
        ssl_context: ssl.SSLContext | None,
        max_connections: int,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        super().__init__(origin, ssl_context, connect_timeout, read_timeout)
        self._slots = asyncio.Semaphore(max(1, max_connections))
        self._idle: list[_AsyncConnection] = []
        self._gate = _AsyncGate()

    async def request(
        self, data: Outgoing, method: str, consume: Callable[[Response], T]
    ) -> T:
        """Send ``data`` (a whole request), read the answer and ``consume`` it."""
        if self._slots.locked():
            try:
                await _within(self._read_timeout, self._slots.acquire())
            except TimeoutError:
                raise Timeout(
                    "PoolTimeout", "no connection became free in time"
                ) from None
        else:
            await self._slots.acquire()  # free: returns at once
        try:
            connection = self._take() or await self._connect()
            try:
                response = await connection.exchange(
                    data, method, self._read_timeout, self._gate
                )
            except BaseException:
                connection.close()
                raise
            if response.keep_alive and not self._closed:
                connection.idle_since = time.monotonic()
                self._idle.append(connection)
            else:
                connection.close()
            try:
                return consume(response)
            finally:
                self._gate.release_mine()
        finally:
            self._slots.release()

    def _take(self) -> _AsyncConnection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if connection.usable(now):
                return connection
            connection.close()
        return None

    async def _connect(self) -> _AsyncConnection:
        origin = self.origin
        try:
            reader, writer = await _within(
                self._connect_timeout,
                asyncio.open_connection(
                    origin.host,
                    origin.port,
                    ssl=self._ssl,
                    server_hostname=origin.host if self._ssl is not None else None,
                    limit=_HEAD_LIMIT,
                ),
            )
        except TimeoutError:
            raise _connect_timeout(self._connect_timeout) from None
        except OSError as exc:
            # One call connects and shakes hands: a refusal or an unknown name
            # comes from connecting, a connection cut short from the handshake.
            raise connect_failure(exc, tls=self._ssl is not None) from None
        return _AsyncConnection(reader, writer)

    def close(self) -> None:
        """Close idle connections; busy ones close when their request ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
