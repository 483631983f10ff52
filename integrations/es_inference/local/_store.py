"""In-memory endpoint store.

Endpoints and their secrets live in separate maps: an :class:`Endpoint` holds only
what Elasticsearch shows in GET responses, and the access keys never leave
:class:`EndpointStore` except through :meth:`EndpointStore.secrets`. All methods are
thread-safe; :meth:`EndpointStore.add` is atomic, so of two concurrent creations of
the same id exactly one succeeds.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Endpoint", "EndpointStore"]


@dataclass
class Endpoint:
    """One inference endpoint as stored (secrets excluded).

    Attributes:
        inference_id: The endpoint id.
        task_type: ``text_embedding`` or ``completion``.
        service: ``amazonbedrock`` or ``elasticsearch``.
        service_settings: The exposed service settings, in Elasticsearch's order.
        task_settings: The stored task settings, in Elasticsearch's order.
        chunking_settings: Stored chunking settings (embedding endpoints only).
        provider: Lower-case Bedrock provider, if any.
        model_id: The model the endpoint calls.
        dims: Embedding size of embedding endpoints.
    """

    inference_id: str
    task_type: str
    service: str
    service_settings: dict[str, Any]
    task_settings: dict[str, Any] = field(default_factory=dict)
    chunking_settings: dict[str, Any] | None = None
    provider: str | None = None
    model_id: str = ""
    dims: int | None = None

    @property
    def requests_per_minute(self) -> int | None:
        """The endpoint's ``rate_limit.requests_per_minute``, if it has one."""
        rate_limit = self.service_settings.get("rate_limit")
        if isinstance(rate_limit, dict):
            value = rate_limit.get("requests_per_minute")
            return int(value) if value is not None else None
        return None

    def copy(self) -> Endpoint:
        """A deep copy, safe to modify."""
        return copy.deepcopy(self)


class EndpointStore:
    """Thread-safe map of endpoints, secrets and references to them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[str, Endpoint] = {}
        self._secrets: dict[str, dict[str, str]] = {}
        self._usage: dict[str, tuple[list[str], list[str]]] = {}

    def add(self, endpoint: Endpoint, secrets: dict[str, str]) -> bool:
        """Store a new endpoint; ``False`` if the id is taken."""
        with self._lock:
            if endpoint.inference_id in self._endpoints:
                return False
            self._endpoints[endpoint.inference_id] = endpoint
            self._secrets[endpoint.inference_id] = dict(secrets)
            return True

    def get(self, inference_id: str) -> Endpoint | None:
        """The endpoint with this id, if any (do not modify it; see :meth:`replace`)."""
        with self._lock:
            return self._endpoints.get(inference_id)

    def endpoints(self, task_type: str | None = None) -> list[Endpoint]:
        """All endpoints (optionally of one task type), sorted by id."""
        with self._lock:
            found = [
                e
                for e in self._endpoints.values()
                if task_type is None or e.task_type == task_type
            ]
        return sorted(found, key=lambda e: e.inference_id)

    def replace(
        self, endpoint: Endpoint, secrets: dict[str, str] | None = None
    ) -> None:
        """Replace a stored endpoint, and its secrets when given."""
        with self._lock:
            self._endpoints[endpoint.inference_id] = endpoint
            if secrets is not None:
                self._secrets[endpoint.inference_id] = dict(secrets)

    def remove(self, inference_id: str) -> Endpoint | None:
        """Delete an endpoint with its secrets and references."""
        with self._lock:
            self._secrets.pop(inference_id, None)
            self._usage.pop(inference_id, None)
            return self._endpoints.pop(inference_id, None)

    def secrets(self, inference_id: str) -> dict[str, str]:
        """A copy of the endpoint's secrets."""
        with self._lock:
            return dict(self._secrets.get(inference_id, {}))

    def mark_in_use(
        self, inference_id: str, pipelines: Sequence[str], indexes: Sequence[str]
    ) -> None:
        """Record ingest pipelines and indexes that reference the endpoint."""
        with self._lock:
            self._usage[inference_id] = (list(pipelines), list(indexes))

    def usage(self, inference_id: str) -> tuple[list[str], list[str]]:
        """The pipelines and indexes recorded as referencing the endpoint."""
        with self._lock:
            pipelines, indexes = self._usage.get(inference_id, ([], []))
            return list(pipelines), list(indexes)
