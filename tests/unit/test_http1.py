"""The lean HTTP/1.1 client: request encoding and reading answers of every framing."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import threading
from collections.abc import Callable

import pytest

from es_inference._http1 import (
    SERIAL_ABOVE,
    ConnectFailure,
    HTTPFailure,
    Origin,
    RequestEncoder,
    Response,
    TLSAnswer,
    TLSFailure,
    Truncated,
    _AsyncConnection,
    _AsyncGate,
    _SyncConnection,
    _SyncGate,
    connect_failure,
)

Answer = Callable[..., Response]


def answer_sync(raw: bytes, method: str = "POST") -> Response:
    """Read ``raw`` as the server's bytes, then the server closes."""
    client, server = socket.socketpair()
    writer = threading.Thread(target=_serve, args=(server, raw))
    writer.start()
    connection = _SyncConnection(client)
    gate = _SyncGate()
    try:
        response, gated = connection.exchange(b"request", method, gate)
        if gated:
            gate.lock.release()
        return response._replace(body=bytes(response.body))
    finally:
        connection.close()
        writer.join()


def _serve(server: socket.socket, raw: bytes) -> None:
    with server:
        server.recv(100)
        server.sendall(raw)
        server.shutdown(socket.SHUT_WR)


async def _answer_async(raw: bytes, method: str) -> Response:
    client, server = socket.socketpair()
    writer = threading.Thread(target=_serve, args=(server, raw))
    writer.start()
    reader, stream = await asyncio.open_connection(sock=client)
    connection = _AsyncConnection(reader, stream)
    try:
        gate = _AsyncGate()
        response = await connection.exchange(b"request", method, 10.0, gate)
        gate.release_mine()
        return response
    finally:
        connection.close()
        await stream.wait_closed()
        writer.join()


def answer_async(raw: bytes, method: str = "POST") -> Response:
    return asyncio.run(_answer_async(raw, method))


@pytest.fixture(params=["sync", "async"])
def answer(request: pytest.FixtureRequest) -> Answer:
    return answer_sync if request.param == "sync" else answer_async


def test_content_length_body_and_headers_joined_by_name(answer: Answer) -> None:
    got = answer(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello"
    )
    assert got == Response(200, {"content-length": "5", "x-a": "1, 2"}, b"hello", True)


def test_chunked_body_with_extensions_and_trailers(answer: Answer) -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;name=value\r\nhell\r\n1\r\no\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    got = answer(raw)
    assert got.body == b"hello" and got.keep_alive


def test_body_until_close_is_not_kept_alive(answer: Answer) -> None:
    got = answer(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
    assert got.body == b"until the end" and not got.keep_alive


def test_interim_answers_are_skipped(answer: Answer) -> None:
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    )
    got = answer(raw)
    assert (got.status, got.body) == (201, b"ok")


@pytest.mark.parametrize(
    ("raw", "method"),
    [
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n", "POST"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", "HEAD"),
    ],
)
def test_no_body_for_head_and_204(answer: Answer, raw: bytes, method: str) -> None:
    got = answer(raw, method)
    assert got.body == b"" and got.keep_alive


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close", False),
        (b"HTTP/1.0 200 OK", False),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive", True),
    ],
)
def test_keep_alive_follows_version_and_connection(
    answer: Answer, head: bytes, keep_alive: bool
) -> None:
    got = answer(head + b"\r\nContent-Length: 0\r\n\r\n")
    assert got.keep_alive is keep_alive


def test_gzip_body_is_decoded(answer: Answer) -> None:
    packed = gzip.compress(b'{"a":1}')
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
        % len(packed)
        + packed
    )
    assert answer(raw).body == b'{"a":1}'


def test_body_cut_off_says_how_much_came(answer: Answer) -> None:
    with pytest.raises(Truncated, match=r"received 5 bytes, expected 10"):
        answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")


def test_chunked_body_cut_off(answer: Answer) -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    with pytest.raises(Truncated, match="chunked"):
        answer(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "without sending a response"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "in the middle of the head"),
        (b"SMTP ready\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", "bad Content-Length"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "bad chunk size",
        ),
    ],
)
def test_malformed_answers_are_protocol_errors(
    answer: Answer, raw: bytes, message: str
) -> None:
    with pytest.raises(HTTPFailure, match=message) as info:
        answer(raw)
    assert info.value.kind == "RemoteProtocolError"
    assert not isinstance(info.value, Truncated)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x15\x03\x03\x00\x02\x02\x46",  # an alert, then the server closes
        b"\x16\x03\x03\x00\x08\x02\x00\r\n\r\n\x00\x00",  # a handshake record
    ],
)
def test_an_answer_in_tls_says_the_server_expects_https(
    answer: Answer, raw: bytes
) -> None:
    with pytest.raises(TLSAnswer) as info:
        answer(raw)
    assert str(info.value) == (
        "the server answered with a TLS record, so it expects https"
    )


@pytest.mark.parametrize(
    ("error", "tls", "kind", "reason"),
    [
        (ConnectionRefusedError(111, "x"), False, ConnectFailure, "connection refused"),
        (ConnectionRefusedError(111, "x"), True, ConnectFailure, "connection refused"),
        (
            socket.gaierror(-2, "Name or service not known"),
            False,
            ConnectFailure,
            "the host name did not resolve (Name or service not known)",
        ),
        (
            ConnectionResetError(104, "Connection reset by peer"),
            False,
            ConnectFailure,
            "[Errno 104] Connection reset by peer",
        ),
        (
            ConnectionResetError(104, "Connection reset by peer"),
            True,
            TLSFailure,
            "the server closed the connection during the handshake",
        ),
        (
            ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
            True,
            TLSFailure,
            "the server closed the connection during the handshake",
        ),
        (
            ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
            True,
            TLSFailure,
            "[SSL: WRONG_VERSION_NUMBER] wrong version number",
        ),
    ],
)
def test_connect_failures_say_why_in_a_few_words(
    error: OSError, tls: bool, kind: type[HTTPFailure], reason: str
) -> None:
    failure = connect_failure(error, tls=tls)
    assert type(failure) is kind
    assert (failure.kind, str(failure)) == ("ConnectError", reason)


def test_the_address_names_scheme_host_and_port_always() -> None:
    assert Origin.from_url("https://es.example/prefix").address == (
        "https://es.example:443"
    )
    assert Origin.from_url("http://[::1]:9200").address == "http://[::1]:9200"


def test_request_is_encoded_with_host_prefix_query_and_length() -> None:
    encoder = RequestEncoder(
        Origin.from_url("http://es.example:9201/proxy/"), {"authorization": "ApiKey k"}
    )
    assert encoder.encode("POST", "/_inference/x", {"timeout": "30s"}, b"{}") == (
        b"POST /proxy/_inference/x?timeout=30s HTTP/1.1\r\n"
        b"Host: es.example:9201\r\nauthorization: ApiKey k\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    assert encoder.encode("GET", "/_inference/_all", None, None) == (
        b"GET /proxy/_inference/_all HTTP/1.1\r\n"
        b"Host: es.example:9201\r\nauthorization: ApiKey k\r\n\r\n"
    )


def test_default_ports_and_ipv6_hosts_in_the_host_header() -> None:
    assert Origin.from_url("https://es.example").host_header == "es.example"
    assert Origin.from_url("https://es.example:443").port == 443
    assert Origin.from_url("http://[::1]:9200").host_header == "[::1]:9200"


@pytest.mark.parametrize(
    "headers",
    [{"x-bad": "a\r\nInjected: yes"}, {"bad name": "v"}, {"x-key": "caf\u00e9"}],
)
def test_headers_that_could_break_the_request_are_refused(
    headers: dict[str, str],
) -> None:
    with pytest.raises(ValueError):
        RequestEncoder(Origin.from_url("http://localhost:9200"), headers)


def test_a_large_body_arrives_whole(answer: Answer) -> None:
    body = bytes(range(256)) * (SERIAL_ABOVE // 256 + 3)
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    assert answer(raw).body == body


def test_a_large_request_body_is_sent_beside_its_head() -> None:
    encoder = RequestEncoder(Origin.from_url("http://localhost:9200"), {})
    body = b"x" * 100_000
    head, sent = encoder.encode("POST", "/p", None, body)
    assert sent is body
    assert head.endswith(b"Content-Length: 100000\r\n\r\n")


async def test_within_runs_in_the_callers_task_and_times_out_with_timeout_error() -> (
    None
):
    from es_inference._http1 import _within

    async def which_task() -> object:
        await asyncio.sleep(0)
        return asyncio.current_task()

    # The large-body gate belongs to the task that takes it: the deadline must not
    # move the awaited work into a task of its own.
    assert await _within(1.0, which_task()) is asyncio.current_task()
    with pytest.raises(TimeoutError):
        await _within(0.01, asyncio.sleep(5))

    async def cancelled_from_outside() -> None:
        await _within(5.0, asyncio.sleep(5))

    task = asyncio.ensure_future(cancelled_from_outside())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
