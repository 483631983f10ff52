"""A small HTTP/1.1 layer over asyncio streams.

Enough of the protocol for Elasticsearch clients: persistent connections,
``Content-Length`` and chunked request bodies, ``Expect: 100-continue``, responses
with ``Content-Length`` and chunked responses for server-sent events. Requests on a
connection are handled one after another (pipelined requests queue in the stream).

A TLS handshake (an ``https://`` URL aimed at this plain-HTTP server) is closed at
once rather than left waiting for a request line that never comes, as a plain-HTTP
Elasticsearch, which cannot parse it, does in effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote

__all__ = [
    "LAST_CHUNK",
    "MAX_BODY_BYTES",
    "BadRequest",
    "Request",
    "abort_with_reset",
    "encode_chunk",
    "read_request",
    "response_head",
]

#: Largest request head the server reads (request line plus headers).
MAX_HEAD_BYTES = 64 * 1024
#: Largest request body, Elasticsearch's default ``http.max_content_length``.
MAX_BODY_BYTES = 100 * 1024 * 1024

LAST_CHUNK = b"0\r\n\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# A TLS record of content type "handshake"; no request line starts with this byte.
_TLS_HANDSHAKE = b"\x16"

logger = logging.getLogger("es_inference.local")


class BadRequest(Exception):
    """The bytes on the connection are not a request the server can read."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class Request:
    """One parsed HTTP request.

    Attributes:
        method: Upper-case method.
        target: The raw request target (path and query), as sent.
        path: The raw path, still percent-encoded.
        query: Decoded query parameters (last value wins).
        headers: Header values by lower-case name (repeats joined by ``", "``).
        body: The request body.
        keep_alive: Whether the connection stays open after the response.
    """

    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    keep_alive: bool = True
    segments: list[str] = field(default_factory=list)


def _split_target(target: str) -> tuple[str, dict[str, str], list[str]]:
    path, _, query_string = target.partition("?")
    query = dict(parse_qsl(query_string, keep_blank_values=True))
    stripped = path.strip("/")
    segments = [unquote(s) for s in stripped.split("/")] if stripped else []
    return path, query, segments


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise BadRequest(400, "malformed chunk size") from exc
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers are read and ignored
            return b"".join(parts)
        total += size
        if total > MAX_BODY_BYTES:
            raise BadRequest(413, "request body too large")
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise BadRequest(400, "malformed chunk terminator")


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Request | None:
    """Read the next request, or ``None`` when the connection is to be closed.

    ``None`` means the client closed the connection, or began a TLS handshake.

    Raises:
        BadRequest: The request cannot be parsed.
    """
    try:
        first = await reader.readexactly(1)
    except asyncio.IncompleteReadError:
        return None
    if first == _TLS_HANDSHAKE:
        logger.warning(
            "a client began a TLS handshake; this server speaks plain HTTP, so the "
            "connection is closed (use an http:// URL)"
        )
        return None
    try:
        head = first + await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if (first + exc.partial).strip():
            raise BadRequest(400, "incomplete request head") from exc
        return None
    except asyncio.LimitOverrunError as exc:
        raise BadRequest(431, "request head too large") from exc

    lines = head.lstrip(b"\r\n").split(b"\r\n")
    try:
        method, target, version = lines[0].decode("latin-1").split(" ")
    except ValueError as exc:
        raise BadRequest(400, "malformed request line") from exc

    headers: dict[str, str] = {}
    for raw in lines[1:]:
        if not raw:
            continue
        name, sep, value = raw.partition(b":")
        if not sep:
            raise BadRequest(400, "malformed header line")
        key = name.strip().lower().decode("latin-1")
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.1":
        keep_alive = "close" not in connection
    elif version == "HTTP/1.0":
        keep_alive = "keep-alive" in connection
    else:
        raise BadRequest(505, "HTTP version not supported")

    if headers.get("expect", "").lower() == "100-continue":
        writer.write(_CONTINUE)

    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError as exc:
            raise BadRequest(400, "malformed Content-Length") from exc
        if length < 0:
            raise BadRequest(400, "malformed Content-Length")
        if length > MAX_BODY_BYTES:
            raise BadRequest(413, "request body too large")
        body = await reader.readexactly(length) if length else b""
    else:
        body = b""

    path, query, segments = _split_target(target)
    return Request(
        method=method.upper(),
        target=target,
        path=path,
        query=query,
        headers=headers,
        body=body,
        keep_alive=keep_alive,
        segments=segments,
    )


_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        line = f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")
        _STATUS_LINES[status] = line
    return line


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    """The status line and headers of a response, ending with the blank line."""
    parts = [_status_line(status)]
    parts.extend(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers)
    parts.append(b"\r\n")
    return b"".join(parts)


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked response body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def abort_with_reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection abruptly, with a TCP RST where the platform allows."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    writer.transport.abort()
