"""A local, offline stand-in for Elasticsearch's ``_inference`` API.

:class:`LocalServer` speaks the REST API of a chosen Elasticsearch version for
``amazonbedrock`` endpoints (and the ``elasticsearch`` service's E5 model): create,
get, list, update and delete endpoints with Elasticsearch's validation rules and
error messages, embed text with a small local model, answer completions (also as
server-sent events) with a deterministic extractive responder, and serve
trained-model statistics for in-cluster deployments. Nothing is sent anywhere.

For tests it can inject faults (:class:`FaultConfig`), enforce endpoint rate
limits, bend its event streams (:meth:`LocalServer.set_stream_mode`) and keeps a
log of the requests it handled (:attr:`LocalServer.requests`).

Example:
    >>> from es_inference.local import LocalServer
    >>> with LocalServer(api_key="secret") as server:  # doctest: +SKIP
    ...     print(server.url)

Run it from a shell with ``python -m es_inference.local --port 9200``.
"""

from __future__ import annotations

from ._cli import main
from ._faults import FAULT_KINDS, FaultConfig
from ._server import LocalServer, RequestRecord, serve
from ._sse import StreamMode

__all__ = [
    "FAULT_KINDS",
    "FaultConfig",
    "LocalServer",
    "RequestRecord",
    "StreamMode",
    "main",
    "serve",
]
