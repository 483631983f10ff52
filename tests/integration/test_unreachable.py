"""A cluster that cannot be reached fails fast, and the error says where it tried.

Until a client has had an answer, a failure to connect is most likely a wrong URL:
it is retried once, at once. Once answers have come, the same failure is a cluster
that is restarting, and it is waited for with the usual backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import pytest

from es_inference import ConnectionError, EmbeddingService, TLSError, bedrock_spec
from es_inference._config import resolve_connection
from es_inference._errors import TransportError
from es_inference._transport import AsyncTransport, SyncTransport
from es_inference._wire import Request
from es_inference.langchain import ElasticInferenceEmbeddings
from es_inference.local import LocalServer
from es_inference.local._models import EmbeddingModel

from .helpers import API_KEY, AWS_ACCESS, AWS_SECRET, TITAN, bedrock

MODES = ["sync", "async"]
LIST = "GET /_inference/text_embedding/_all"
STREAM = Request("POST", "/_inference/completion/c/_stream", body=b"{}")
#: Generous: failing fast takes well under a second, the old way 15 s and more.
FAST = 5.0


E = TypeVar("E", bound=BaseException)


def fails_at_once(kind: type[E], call: Callable[[], object]) -> E:
    """The ``kind`` of error that ``call`` raises, checked to come within FAST s."""
    started = time.monotonic()
    with pytest.raises(kind) as info:
        call()
    assert time.monotonic() - started < FAST
    return info.value


def closed_port() -> int:
    """A loopback port nothing listens on (bound, noted, closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def embed(embeddings: ElasticInferenceEmbeddings, mode: str, text: str = "x") -> Any:
    if mode == "sync":
        return embeddings.embed_query(text)
    return asyncio.run(embeddings.aembed_query(text))


def stream(url: str, mode: str) -> None:
    """Open a stream (the httpx path) with a fresh transport."""
    config = resolve_connection(es_url=url, es_api_key=API_KEY)
    if mode == "sync":
        transport = SyncTransport(config)
        try:
            with transport.stream(STREAM):
                pass
        finally:
            transport.close()
        return

    async def run() -> None:
        transport = AsyncTransport(config)
        try:
            async with transport.stream(STREAM):
                pass
        finally:
            await transport.aclose()

    asyncio.run(run())


def retry_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "es_inference.retry" and r.getMessage().startswith("retrying ")
    ]


@pytest.fixture
def retries(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="es_inference.retry")
    return caplog


class TlsAlerts:
    """Answers every request with a TLS alert record, as a TLS-only server may."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with sock, contextlib.suppress(OSError):
                sock.recv(65536)
                sock.sendall(b"\x15\x03\x03\x00\x02\x02\x46")  # fatal alert

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() call
        self._listener.close()
        self._thread.join(timeout=10)


@pytest.fixture
def tls_alerts() -> Iterator[TlsAlerts]:
    server = TlsAlerts()
    yield server
    server.stop()


# A closed port ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_closed_port_fails_at_once_with_the_origin_in_the_error(
    mode: str, retries: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    embeddings = ElasticInferenceEmbeddings(
        **bedrock(f"http://127.0.0.1:{port}", max_retries=7)
    )
    error = fails_at_once(ConnectionError, lambda: embed(embeddings, mode))
    assert str(error) == (
        f"{LIST}: cannot connect to http://127.0.0.1:{port}: connection refused"
    )
    assert error.first_contact and not error.opened
    assert len(retry_lines(retries)) == 1  # one quick retry, not seven


@pytest.mark.parametrize("mode", MODES)
def test_a_service_on_a_closed_port_fails_at_once(mode: str) -> None:
    port = closed_port()
    service = EmbeddingService(
        resolve_connection(es_url=f"http://localhost:{port}", es_api_key=API_KEY),
        bedrock_spec(
            "text_embedding",
            model=TITAN,
            region="us-east-1",
            aws_access_key_id=AWS_ACCESS,
            aws_secret_access_key=AWS_SECRET,
        ),
    )
    if mode == "sync":
        error = fails_at_once(ConnectionError, lambda: service.embed(["x"]))
    else:
        error = fails_at_once(
            ConnectionError, lambda: asyncio.run(service.aembed(["x"]))
        )
    message = str(error)
    assert f"cannot connect to http://localhost:{port}: " in message
    for secret in (API_KEY, AWS_ACCESS, AWS_SECRET):
        assert secret not in message


@pytest.mark.parametrize("mode", MODES)
def test_a_stream_to_a_closed_port_names_the_origin(mode: str) -> None:
    port = closed_port()
    with pytest.raises(ConnectionError) as info:
        stream(f"http://127.0.0.1:{port}", mode)
    assert str(info.value) == (
        f"POST /_inference/completion/c/_stream: cannot connect to "
        f"http://127.0.0.1:{port}: connection refused"
    )
    assert info.value.first_contact


@pytest.mark.parametrize("mode", MODES)
def test_a_closed_proxy_fails_at_once_and_its_url_is_not_shown(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, port = closed_port(), closed_port()
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://user:proxy-secret@127.0.0.1:{proxy}")
    embeddings = ElasticInferenceEmbeddings(
        **bedrock(f"http://127.0.0.1:{port}", max_retries=7)
    )
    error = fails_at_once(ConnectionError, lambda: embed(embeddings, mode))
    assert str(error) == (
        f"{LIST}: cannot connect to http://127.0.0.1:{port} (through a proxy): "
        "connection refused"
    )


# The wrong scheme -------------------------------------------------------------------


def test_the_local_server_closes_a_tls_handshake_at_once(
    local_server: LocalServer,
) -> None:
    with socket.create_connection(("127.0.0.1", local_server.port), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01\x00\x05hello")  # how a ClientHello starts
        try:
            answer = sock.recv(100)  # times out if the server waits for a request
        except ConnectionResetError:
            answer = b""
    assert answer == b""
    assert local_server.requests == []


@pytest.mark.parametrize("mode", MODES)
def test_https_to_a_plain_http_server_fails_in_the_handshake_at_once(
    local_server: LocalServer, mode: str
) -> None:
    url = f"https://127.0.0.1:{local_server.port}"
    embeddings = ElasticInferenceEmbeddings(**bedrock(url, max_retries=7))
    error = fails_at_once(TLSError, lambda: embed(embeddings, mode))
    assert str(error) == (
        f"{LIST}: TLS handshake with {url} failed: the server closed the connection "
        "during the handshake; if the server speaks plain HTTP, use an http:// URL"
    )
    assert local_server.requests == []


@pytest.mark.parametrize("mode", MODES)
def test_a_stream_over_https_to_a_plain_http_server_fails_in_the_handshake(
    local_server: LocalServer, mode: str
) -> None:
    url = f"https://127.0.0.1:{local_server.port}"
    error = fails_at_once(TLSError, lambda: stream(url, mode))
    assert str(error).startswith(
        f"POST /_inference/completion/c/_stream: TLS handshake with {url} failed: "
        "the server"
    )


@pytest.mark.parametrize("mode", MODES)
def test_http_to_a_server_that_answers_in_tls_says_use_https(
    tls_alerts: TlsAlerts, mode: str
) -> None:
    url = f"http://127.0.0.1:{tls_alerts.port}"
    embeddings = ElasticInferenceEmbeddings(**bedrock(url, max_retries=7))
    with pytest.raises(TLSError) as info:
        embed(embeddings, mode)
    assert str(info.value) == f"{LIST}: {url} answered with TLS; use an https:// URL"
    assert info.value.retryable is False


@pytest.mark.parametrize("mode", MODES)
def test_a_stream_over_http_to_a_tls_server_fails_at_once_and_hints_https(
    tls_alerts: TlsAlerts, mode: str
) -> None:
    url = f"http://127.0.0.1:{tls_alerts.port}"
    with pytest.raises(TransportError) as info:
        stream(url, mode)
    message = str(info.value)
    assert message.startswith(f"POST /_inference/completion/c/_stream: {url} ")
    assert message.endswith("use an https:// URL")
    assert info.value.first_contact


# Once answers have come ----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_cluster_restarting_mid_run_is_waited_for(
    local_model: EmbeddingModel, mode: str, retries: pytest.LogCaptureFixture
) -> None:
    first = LocalServer(api_key=API_KEY).start()
    port = first.port
    embeddings = ElasticInferenceEmbeddings(
        **bedrock(first.url, max_retries=40, initial_backoff=0.05, max_backoff=0.2)
    )
    before = embed(embeddings, mode, "the same text")
    first.stop()
    second = LocalServer(api_key=API_KEY, port=port)
    restart = threading.Timer(1.0, second.start)
    restart.start()
    try:
        after = embed(embeddings, mode, "the same text")
    finally:
        restart.join()
        second.stop()
    np.testing.assert_array_equal(after, before)
    refused = [
        line
        for line in retry_lines(retries)
        if f"cannot connect to http://127.0.0.1:{port}: connection refused" in line
    ]
    assert len(refused) >= 2  # more than the one quick retry of a first contact
    assert second.count("POST") >= 1


def test_once_the_cluster_answered_the_async_side_also_waits_for_a_restart(
    local_server_factory: Any,
) -> None:
    # The sync calls reach the cluster; the first async call meets it restarting.
    server = local_server_factory()
    embeddings = ElasticInferenceEmbeddings(
        # Full-jitter waits of up to 0.5 s: 30 retries outlast a 1 s restart.
        **bedrock(server.url, max_retries=30, initial_backoff=0.2, max_backoff=0.5)
    )
    expected = embeddings.embed_array(["a", "b"])
    port = int(server.url.rsplit(":", 1)[1])
    server.stop()
    restarted: list[LocalServer] = []

    def restart() -> None:
        replacement = LocalServer(port=port, api_key=API_KEY)
        restarted.append(replacement.start())
        replacement.set_faults(None)

    timer = threading.Timer(1.0, restart)
    timer.start()
    try:
        again = asyncio.run(embeddings.aembed_array(["a", "b"]))
    finally:
        timer.join()
        for running in restarted:
            running.stop()
    np.testing.assert_array_equal(again, expected)
