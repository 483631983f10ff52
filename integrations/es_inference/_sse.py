"""An incremental reader of Elasticsearch's server-sent events: bytes in, events out.

Elasticsearch frames every event as ``<BOM>event: <type>\\n data: <json>\\n\\n`` with a
UTF-8 byte-order mark before *each* event, not only the first one. Generic SSE readers
strip a BOM only at the start of the stream and would then see a field named
``\\ufeffevent``; this reader strips it at the start of every line.

Network reads may split the stream anywhere: inside the BOM, inside a multi-byte
character, inside a line or between ``\\r`` and ``\\n``. :class:`SSEDecoder` keeps
what it cannot finish yet and decodes it once the rest arrives.
:class:`CompletionStreamDecoder` adds the meaning of ``completion`` events: text
pieces, the ``[DONE]`` marker and ``error`` events.

Example::

    decoder = CompletionStreamDecoder(request)
    for chunk in chunks:
        for piece in decoder.feed(chunk):
            print(piece, end="")
    decoder.finish()  # the stream ended; decoder.done says whether [DONE] came
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from . import _json
from ._constants import SSE_BOM, SSE_DONE
from ._errors import ApiError, ResponseDecodeError
from ._wire import Request, parse_error

logger = logging.getLogger("es_inference.sse")

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event.

    Attributes:
        event: The ``event:`` field, ``message`` when the event has none.
        data: The ``data:`` lines joined with ``\\n``.
    """

    event: str
    data: str


class SSEDecoder:
    """Turns the bytes of an ``text/event-stream`` body into events.

    Follows the WHATWG event-stream rules (``\\r\\n``, ``\\n`` or ``\\r`` line ends,
    comments, multi-line ``data``) and strips a BOM at the start of every line.
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")("strict")
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []
        self._pending = False

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode one network read; return the events it completed."""
        try:
            text = self._utf8.decode(chunk)
        except UnicodeDecodeError as exc:
            raise ResponseDecodeError(f"event stream: invalid UTF-8 ({exc})") from None
        self._buffer += text
        return self._drain(final=False)

    def finish(self) -> list[ServerSentEvent]:
        """Flush at the end of the stream.

        An event whose lines all ended but whose blank separator line never came is
        still delivered; an unfinished last line is dropped, because it was cut off.
        """
        try:
            self._buffer += self._utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            logger.debug("event stream ended inside a UTF-8 character")
        events = self._drain(final=True)
        if self._buffer:
            logger.debug(
                "event stream ended inside a line (%d chars)", len(self._buffer)
            )
            self._buffer = ""
        if self._pending:
            events.extend(self._dispatch())
        return events

    def _drain(self, *, final: bool) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        buffer = self._buffer
        start = 0
        for match in _LINE_BREAK.finditer(buffer):
            if match.group() == "\r" and match.end() == len(buffer) and not final:
                break  # a "\n" may follow in the next read
            events.extend(self._line(buffer[start : match.start()]))
            start = match.end()
        self._buffer = buffer[start:]
        return events

    def _line(self, line: str) -> list[ServerSentEvent]:
        line = line.lstrip(SSE_BOM)
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return []  # a comment, e.g. a keep-alive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
            self._pending = True
        elif name == "data":
            self._data.append(value)
            self._pending = True
        return []  # "id", "retry" and unknown fields do not matter here

    def _dispatch(self) -> list[ServerSentEvent]:
        event, data = self._event or "message", self._data
        self._event, self._data, self._pending = "", [], False
        if not data:
            return []
        return [ServerSentEvent(event, "\n".join(data))]


class CompletionStreamDecoder:
    """Reads a ``completion`` stream: text pieces, ``[DONE]`` and error events.

    Each ``message`` event holds ``{"completion": [{"delta": …}, …]}``; all deltas
    are returned in order. A provider answer that was not streamed arrives as one
    ``{"completion": [{"result": …}]}`` event, which is returned as one piece.

    Attributes:
        done: Whether the ``[DONE]`` marker arrived.
    """

    def __init__(self, request: Request, *, secrets: Sequence[str] = ()) -> None:
        self._request = request
        self._secrets = tuple(secrets)
        self._sse = SSEDecoder()
        self._received: list[str] = []
        self.done = False

    @property
    def text(self) -> str:
        """Every piece received so far, joined."""
        return "".join(self._received)

    def feed(self, chunk: bytes) -> list[str]:
        """Decode one network read; return the text pieces it completed.

        Raises:
            ApiError: for an ``error`` event, as the status in it says.
            ResponseDecodeError: for an event that is not a completion event.
        """
        return self._pieces(self._sse.feed(chunk))

    def finish(self) -> list[str]:
        """Flush at the end of the stream; return the last pieces, if any."""
        return self._pieces(self._sse.finish())

    def _pieces(self, events: list[ServerSentEvent]) -> list[str]:
        pieces: list[str] = []
        for event in events:
            if self.done:
                logger.debug("ignoring a %s event after [DONE]", event.event)
                continue
            found = self._event(event)
            # Recorded per event, so that the text before an error event is kept.
            self._received.extend(found)
            pieces.extend(found)
        return pieces

    def _event(self, event: ServerSentEvent) -> list[str]:
        if event.event == "error":
            raise self._error(event.data)
        if event.data.strip() == SSE_DONE:
            self.done = True
            return []
        try:
            data = _json.loads(event.data)
        except ValueError:
            raise ResponseDecodeError(
                f"completion stream: an event's data is not JSON: {event.data[:80]!r}"
            ) from None
        if isinstance(data, dict) and "error" in data and "completion" not in data:
            raise self._error(event.data)
        return completion_pieces(data)

    def _error(self, data: str) -> ApiError:
        return parse_error(
            error_status(data),
            data.encode(),
            self._request,
            secrets=self._secrets,
        )


def completion_pieces(data: Any) -> list[str]:
    """The texts of one decoded completion event, in order."""
    rows = data.get("completion") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ResponseDecodeError("completion stream: an event has no completion list")
    pieces = []
    for row in rows:
        text = row.get("delta", row.get("result")) if isinstance(row, dict) else None
        if not isinstance(text, str):
            raise ResponseDecodeError(
                "completion stream: an entry has neither a delta nor a result text"
            )
        pieces.append(text)
    return pieces


def error_status(data: str) -> int:
    """The HTTP status an error event's data stands for.

    The standard envelope carries ``status``; the OpenAI-style one of the chat path
    carries ``error.code`` such as ``not_found``. Anything else counts as 500.
    """
    try:
        body = _json.loads(data)
    except ValueError:
        return 500
    if not isinstance(body, dict):
        return 500
    status = body.get("status")
    if isinstance(status, int) and not isinstance(status, bool) and status >= 400:
        return status
    error = body.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, str):
        try:
            return int(HTTPStatus[code.upper()])
        except KeyError:
            pass
    return 500
