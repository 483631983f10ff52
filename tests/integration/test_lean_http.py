"""The lean client's connection pools and how the transports route requests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from es_inference._config import resolve_connection
from es_inference._errors import (
    ConnectionError,
    RequestTimeout,
    ResponseDecodeError,
    TLSError,
)
from es_inference._http1 import (
    SERIAL_ABOVE,
    AsyncPool,
    HTTPFailure,
    Origin,
    Response,
    SyncPool,
    Timeout,
    TLSFailure,
    Truncated,
)
from es_inference._transport import AsyncTransport, SyncTransport, _translate
from es_inference._wire import Request

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class ScriptedServer:
    """Accepts connections on loopback; ``reply(n)`` says what request n gets.

    ``reply`` returns the bytes to send, or ``None`` to close the connection
    without answering. Connections stay open between requests until ``reply``
    closes them or the server stops.
    """

    def __init__(self, reply: Callable[[int], bytes | None]) -> None:
        self._reply = reply
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.accepted = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def origin(self) -> Origin:
        return Origin.from_url(f"http://127.0.0.1:{self.port}")

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._sockets.append(sock)
                thread = threading.Thread(target=self._serve, args=(sock,))
                self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buffer += data
                _, _, buffer = buffer.partition(b"\r\n\r\n")
                with self._lock:
                    number = self.requests
                    self.requests += 1
                answer = self._reply(number)
                if answer is None:
                    sock.close()
                    return
                sock.sendall(answer)
        except OSError:
            return

    def close_connections(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() call
        self._listener.close()
        self.close_connections()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            sock.close()
        for thread in threads:
            thread.join(timeout=10)


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[int], bytes | None]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(reply: Callable[[int], bytes | None]) -> ScriptedServer:
        server = ScriptedServer(reply)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def sync_pool(server: ScriptedServer, timeout: float = 5.0) -> SyncPool:
    return SyncPool(server.origin, None, 4, 5.0, timeout)


def body(answer: Response) -> bytes:
    return bytes(answer.body)


def test_sync_pool_keeps_one_connection_alive(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(lambda n: OK)
    pool = sync_pool(server)
    try:
        answers = [pool.request(GET, "GET", body) for _ in range(5)]
    finally:
        pool.close()
    assert answers == [b"{}"] * 5
    assert server.accepted == 1


def test_async_pool_keeps_connections_alive(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(lambda n: OK)

    async def run() -> list[bytes]:
        pool = AsyncPool(server.origin, None, 3, 5.0, 5.0)
        try:
            answers = []
            for _ in range(3):
                batch = [pool.request(GET, "GET", body) for _ in range(3)]
                answers += await asyncio.gather(*batch)
            return answers
        finally:
            pool.close()

    assert asyncio.run(run()) == [b"{}"] * 9
    assert server.accepted == 3


def test_a_connection_the_server_closed_while_idle_is_replaced(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(lambda n: OK)
    pool = sync_pool(server)
    try:
        pool.request(GET, "GET", body)
        server.close_connections()
        for _ in range(100):  # until the close has reached this side
            if not pool._idle or not pool._idle[0].usable(0.0):
                break
            threading.Event().wait(0.01)
        assert pool.request(GET, "GET", body) == b"{}"
    finally:
        pool.close()
    assert server.accepted == 2


def test_connection_close_answers_are_not_reused(
    scripted: Callable[..., ScriptedServer],
) -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    server = scripted(lambda n: closing)
    pool = sync_pool(server)
    try:
        for _ in range(3):
            pool.request(GET, "GET", body)
    finally:
        pool.close()
    assert server.accepted == 3


def transports(url: str, timeout: float = 30.0) -> tuple[SyncTransport, AsyncTransport]:
    config = resolve_connection(es_url=url, es_api_key="k", request_timeout=timeout)
    return SyncTransport(config, pool_size=2), AsyncTransport(config, pool_size=2)


REQUEST = Request("POST", "/_inference/text_embedding/e", body=b"{}")


def send_both(sync: SyncTransport, asyncer: AsyncTransport) -> list[BaseException]:
    errors: list[BaseException] = []
    try:
        sync.send(REQUEST)
    except Exception as exc:
        errors.append(exc)

    async def run() -> None:
        try:
            await asyncer.send(REQUEST)
        except Exception as exc:
            errors.append(exc)
        await asyncer.aclose()

    asyncio.run(run())
    sync.close()
    return errors


def test_refused_connection_is_a_connection_error_that_never_opened() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    errors = send_both(*transports(f"http://127.0.0.1:{port}"))
    assert len(errors) == 2
    for error in errors:
        assert type(error) is ConnectionError and not error.opened
        assert str(error) == (
            "POST /_inference/text_embedding/e: cannot connect to "
            f"http://127.0.0.1:{port}: connection refused"
        )


def test_dropped_connection_is_a_connection_error_that_opened(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(lambda n: None)
    errors = send_both(*transports(f"http://127.0.0.1:{server.port}"))
    assert len(errors) == 2
    for error in errors:
        assert type(error) is ConnectionError and error.opened
        assert "Server disconnected without sending a response" in str(error)


def test_no_answer_in_time_is_a_timeout_and_a_request_timeout(
    scripted: Callable[..., ScriptedServer],
) -> None:
    release = threading.Event()

    def late(n: int) -> bytes:
        release.wait(10)
        return OK

    server = scripted(late)
    pool = sync_pool(server, timeout=0.05)

    async def run() -> None:
        pool = AsyncPool(server.origin, None, 1, 5.0, 0.05)
        try:
            await pool.request(GET, "GET", body)
        finally:
            pool.close()

    try:
        with pytest.raises(Timeout) as sync_info:
            pool.request(GET, "GET", body)
        with pytest.raises(Timeout) as async_info:
            asyncio.run(run())
    finally:
        release.set()
        pool.close()
    for info in (sync_info, async_info):
        error = _translate(info.value, REQUEST)
        assert type(error) is RequestTimeout
        assert str(error) == (
            "POST /_inference/text_embedding/e: no answer in time (ReadTimeout)"
        )


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (TLSFailure("ConnectError", "[SSL: CERTIFICATE_VERIFY_FAILED] x"), TLSError),
        (Truncated("RemoteProtocolError", "received 1 bytes"), ResponseDecodeError),
        (HTTPFailure("ReadError", "[Errno 104] reset"), ConnectionError),
    ],
)
def test_lean_failures_translate_like_their_httpx_kin(
    failure: HTTPFailure, kind: type[Exception]
) -> None:
    assert type(_translate(failure, REQUEST)) is kind


def test_a_proxy_in_the_environment_routes_through_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "bypassed.example")
    proxied, _ = transports("https://es.example:9200")
    direct, _ = transports("https://bypassed.example:9200")
    plain, _ = transports("http://es.example:9200")
    assert proxied._origin is None
    assert direct._origin is not None
    assert plain._origin is not None


LARGE = b"[" + b"1.0," * (SERIAL_ABOVE // 4) + b"1.0]"
LARGE_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(LARGE) + LARGE


class Overlap:
    """Counts how many answers are being consumed at once."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self._lock = threading.Lock()

    def consume(self, answer: Response) -> int:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            threading.Event().wait(0.02)
            assert bytes(answer.body) == LARGE
            return len(answer.body)
        finally:
            with self._lock:
                self.now -= 1


def test_large_answers_are_consumed_one_at_a_time_over_threads(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(lambda n: LARGE_ANSWER)
    pool = sync_pool(server)
    overlap = Overlap()
    threads = [
        threading.Thread(target=pool.request, args=(GET, "GET", overlap.consume))
        for _ in range(4)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # The gate is free again.
        assert pool.request(GET, "GET", lambda a: len(a.body)) == len(LARGE)
    finally:
        pool.close()
    assert overlap.most == 1 and server.requests == 5


def test_large_answers_are_consumed_one_at_a_time_on_a_loop(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(lambda n: LARGE_ANSWER)
    overlap = Overlap()

    async def run() -> list[int]:
        pool = AsyncPool(server.origin, None, 4, 5.0, 5.0)
        try:
            return await asyncio.gather(
                *(pool.request(GET, "GET", overlap.consume) for _ in range(4))
            )
        finally:
            pool.close()

    assert asyncio.run(run()) == [len(LARGE)] * 4
    assert overlap.most == 1


def test_a_view_of_the_buffer_is_released_after_consuming(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(lambda n: LARGE_ANSWER)
    pool = sync_pool(server)
    kept: list[memoryview | bytes] = []
    try:
        pool.request(GET, "GET", lambda answer: kept.append(answer.body))
        assert pool.request(GET, "GET", body) == LARGE  # the buffer is reused
    finally:
        pool.close()
    with pytest.raises(ValueError, match="released"):
        bytes(kept[0])
