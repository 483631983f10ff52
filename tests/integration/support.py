"""Loopback helpers for the failure tests: a TLS front, a stub server, process workers.

Standard library only, so that spawned worker processes import it quickly.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: Adapter fields for retries fast enough for tests: waits of at most 50 ms.
QUICK_RETRY: dict[str, float] = {"initial_backoff": 0.005, "max_backoff": 0.05}


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 made with ``openssl``; (cert, key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


class _Relays:
    """Threads and sockets of a loopback relay, all closed by :meth:`_close_all`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _keep(self, *socks: socket.socket) -> None:
        with self._lock:
            self._sockets.extend(socks)

    def _close_all(self) -> None:
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in threads:
            thread.join(timeout=10)


class TlsFront(_Relays):
    """Terminates TLS on 127.0.0.1 and relays the plain bytes to a loopback port.

    Each accepted connection gets one thread for the handshake and the relay in
    one direction, and one more for the other direction.
    """

    def __init__(self, target_port: int, cert: Path, key: Path) -> None:
        super().__init__()
        self._target = ("127.0.0.1", target_port)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.handshake_failures = 0
        self._stopping = False
        self._start(self._accept)

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>``."""
        return f"https://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            if self._stopping:
                raw.close()
                return
            self._keep(raw)
            self._start(self._serve, raw)

    def _serve(self, raw: socket.socket) -> None:
        try:
            secure = self._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            with self._lock:
                self.handshake_failures += 1
            raw.close()
            return
        self._keep(secure)
        upstream = socket.create_connection(self._target)
        self._keep(upstream)
        self._start(_relay, upstream, secure)
        _relay(secure, upstream)

    def stop(self) -> None:
        """Close every socket and wait for the threads."""
        if self._stopping:
            return
        self._stopping = True
        # A connection of our own wakes the accepting thread, which then ends.
        socket.create_connection(("127.0.0.1", self.port)).close()
        self._listener.close()
        self._close_all()


def _relay(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class CountingRelay(_Relays):
    """Relays TCP connections on 127.0.0.1 to a loopback port; counts the open ones.

    A connection counts as open from its accept until the client closes it.
    """

    def __init__(self, target_port: int) -> None:
        super().__init__()
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._open = 0
        self._changed = threading.Condition(self._lock)
        self._start(self._accept)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            with self._changed:
                self._sockets += [client, upstream]
                self._open += 1
            self._start(_relay, upstream, client)
            self._start(self._from_client, client, upstream)

    def _from_client(self, client: socket.socket, upstream: socket.socket) -> None:
        _relay(client, upstream)
        with self._changed:
            self._open -= 1
            self._changed.notify_all()

    @property
    def open(self) -> int:
        with self._changed:
            return self._open

    def wait_until_closed(self) -> int:
        """Wait up to 10 s for every connection to close; return how many are open."""
        with self._changed:
            self._changed.wait_for(lambda: self._open == 0, timeout=10)
            return self._open

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() call
        self._listener.close()
        self._close_all()


class StubServer:
    """An HTTP server on loopback that answers from a function of (method, path).

    The function returns ``(status, json_body)``; every request is counted in
    :attr:`calls` as ``(method, path)``.
    """

    def __init__(self, answer: Callable[[str, str], tuple[int, Any]]) -> None:
        self.calls: list[tuple[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                stub.calls.append((self.command, self.path))
                status, body = answer(self.command, self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _reply

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def create_and_embed(
    url: str, settings: dict[str, Any], barrier: Any, results: Any
) -> None:
    """Worker of the multi-process test: ensure one endpoint, embed, report.

    Runs in a spawned process: it waits at ``barrier`` so that all workers ensure
    the endpoint at the same moment, then puts ``(created, vector bytes)`` or
    ``("error", message)`` on ``results``.
    """
    from es_inference import (
        EmbeddingService,
        EsInferenceError,
        bedrock_spec,
        resolve_connection,
    )

    service = EmbeddingService(
        resolve_connection(es_url=url, es_api_key=settings["es_api_key"]),
        bedrock_spec(
            "text_embedding",
            model=settings["model"],
            region=settings["region"],
            aws_access_key_id=settings["aws_access_key_id"],
            aws_secret_access_key=settings["aws_secret_access_key"],
            inference_id=settings["inference_id"],
            service_settings=settings["service_settings"],
        ),
    )
    barrier.wait(timeout=60)
    try:
        created = service.endpoint().created
        vector = service.embed(["the same text in every process"])[0]
        results.put((created, vector.tobytes()))
    except EsInferenceError as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        service.close()
