"""What a handler returns (:class:`Reply`) and what it learns (:class:`Exchange`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._sse import StreamMode

__all__ = ["Exchange", "Reply"]


@dataclass
class Exchange:
    """What handling a request found out, for the request log.

    Attributes:
        inference_id: The endpoint the request named.
        n_inputs: How many inputs it carried.
        fault: The fault injected into it, if any.
        started: Event-loop time at which the request's bytes began to arrive
            or, after a wait in the rate-limit queue, at which it left the queue.
        latency: Injected latency: the reply leaves no sooner than this many
            seconds after :attr:`started`, so the server's own work on the
            request is part of the latency, as a remote service's is.
    """

    inference_id: str | None = None
    n_inputs: int | None = None
    fault: str | None = None
    started: float = 0.0
    latency: float = 0.0


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
