"""What a handler returns (:class:`Reply`) and what it learns (:class:`Exchange`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._sse import StreamMode

__all__ = ["Exchange", "Reply"]


@dataclass
class Exchange:
    """What handling a request found out, for the request log."""

    inference_id: str | None = None
    n_inputs: int | None = None
    fault: str | None = None


@dataclass
class Reply:
    """A response to send.

    Attributes:
        status: HTTP status.
        body: JSON body bytes (ignored for event streams).
        headers: Extra response headers.
        events: For ``text/event-stream`` replies, the complete events to send.
        mode: Stream switches applied while sending ``events``.
    """

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    events: list[bytes] | None = None
    mode: StreamMode | None = None
