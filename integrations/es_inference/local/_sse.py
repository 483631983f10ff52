"""Server-sent events as Elasticsearch writes them.

Each event is ``BOM + "event: <type>\\n" + "data: <json>\\n" + "\\n"``; the UTF-8
byte-order mark precedes *every* event, and a finished stream ends with a
``data: [DONE]`` message event.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .._constants import SSE_BOM, SSE_DONE
from ._json import dumps

__all__ = ["BOM", "StreamMode", "completion_events", "event", "split_event"]

BOM = SSE_BOM.encode("utf-8")
_DONE = SSE_DONE.encode()
_PIECE = re.compile(r"\s*\S+|\s+")


@dataclass(frozen=True)
class StreamMode:
    """Switches that make the server's streams harder on clients (for tests).

    Attributes:
        split_events: Write each event in several network writes, cutting inside
            the BOM bytes and inside the JSON.
        error_after: After this many data events, send an ``event: error`` with the
            standard error envelope and end the stream without ``[DONE]``.
        cut_after: After this many data events, end the stream (with a clean chunked
            terminator) without ``[DONE]``.
        multi_delta: Put up to three deltas into one event sometimes.
        delay_ms: Pause between events.
    """

    split_events: bool = False
    error_after: int | None = None
    cut_after: int | None = None
    multi_delta: bool = True
    delay_ms: float = 0.0


def event(data: bytes, kind: str = "message") -> bytes:
    """One complete server-sent event, BOM included."""
    return b"%sevent: %s\ndata: %s\n\n" % (BOM, kind.encode(), data)


DONE_EVENT = event(_DONE)


def deltas(text: str) -> list[str]:
    """Cut ``text`` into word-sized deltas that concatenate back to ``text``."""
    return _PIECE.findall(text)


def completion_events(text: str, multi_delta: bool) -> list[bytes]:
    """The data events carrying ``text`` as completion deltas (without ``[DONE]``).

    With ``multi_delta`` the events carry 1, 2 or 3 deltas in a fixed rotation.
    """
    pieces = deltas(text)
    events: list[bytes] = []
    sizes = (1, 2, 3) if multi_delta else (1,)
    index = 0
    turn = 0
    while index < len(pieces):
        size = sizes[turn % len(sizes)]
        group = pieces[index : index + size]
        events.append(event(dumps({"completion": [{"delta": d} for d in group]})))
        index += size
        turn += 1
    return events


def split_event(data: bytes) -> Sequence[bytes]:
    """Cut one event into pieces: inside the BOM, the field name and the JSON."""
    json_start = data.find(b"data: ") + len(b"data: ")
    json_end = data.rfind(b"\n\n")
    middle = json_start + max(1, (json_end - json_start) // 2)
    cuts = sorted({1, 2, len(BOM) + 3, middle})
    pieces = []
    previous = 0
    for cut in cuts:
        if previous < cut < len(data):
            pieces.append(data[previous:cut])
            previous = cut
    pieces.append(data[previous:])
    return pieces
