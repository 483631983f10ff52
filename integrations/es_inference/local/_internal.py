"""The ``elasticsearch`` service: in-cluster models and their deployments.

Only the E5 small text-embedding model is emulated (384 dimensions, computed by the
local model and projected). Creating an endpoint starts a trained-model deployment
whose id is the inference id. The deployment reports ``starting`` until both a
configured number of seconds and a configured number of stats polls have passed,
then ``fully_allocated``; tests can also force a state. Inference on a deployment
that has no started allocation fails with 409 ``status_exception`` "Trained model
deployment [<id>] is not allocated to any nodes" (the server's choice for this
condition).
"""

from __future__ import annotations

import fnmatch
import threading
import time
from dataclasses import dataclass
from typing import Any

from ._bedrock import take_map
from ._chunking import parse_chunking
from ._errors import EsError, not_found, status_exception
from ._models import dims_for_model
from ._settings import Extractor, unknown_settings
from ._store import Endpoint
from ._version import EsVersion

__all__ = [
    "DEPLOYMENT_STATES",
    "DISPLAY_NAME",
    "INPUT_TYPES",
    "MODELS",
    "SERVICE",
    "Deployments",
    "apply_update",
    "parse_create",
]

SERVICE = "elasticsearch"
DISPLAY_NAME = "Elasticsearch"
MODELS = (".multilingual-e5-small", ".multilingual-e5-small_linux-x86_64")
INPUT_TYPES = ("ingest", "search")

#: States :meth:`Deployments.set_state` accepts (``None`` restores the automatic one).
DEPLOYMENT_STATES = ("starting", "started", "fully_allocated", "failed")

_SS = "service_settings"
_MODEL_SIZE_BYTES = 117_896_000
_MODEL_MEMORY_BYTES = 371_000_000


def _adaptive(raw: dict[str, Any], check: Extractor) -> dict[str, Any]:
    settings = dict(raw)
    enabled = check.optional_bool(settings, "enabled")
    low = check.take(settings, "min_number_of_allocations", "Integer")
    high = check.take(settings, "max_number_of_allocations", "Integer")
    for key in settings:
        check.errors.append(
            f"[adaptive_allocations] does not allow the setting [{key}]"
        )
    if low is not None and low < 0:
        check.errors.append(
            "[min_number_of_allocations] must be a non-negative integer"
        )
    if high is not None and high < 1:
        check.errors.append("[max_number_of_allocations] must be a positive integer")
    if low is not None and high is not None and low > high:
        check.errors.append(
            "[min_number_of_allocations] must not be larger than "
            "[max_number_of_allocations]"
        )
    values = {
        "enabled": enabled,
        "min_number_of_allocations": low,
        "max_number_of_allocations": high,
    }
    return {key: value for key, value in values.items() if value is not None}


def _exposed(
    allocations: int | None,
    threads: int,
    model_id: str,
    adaptive: dict[str, Any] | None,
) -> dict[str, Any]:
    exposed: dict[str, Any] = {}
    if allocations is not None:
        exposed["num_allocations"] = allocations
    exposed["num_threads"] = threads
    exposed["model_id"] = model_id
    if adaptive is not None:
        exposed["adaptive_allocations"] = adaptive
    return exposed


def parse_create(
    inference_id: str,
    task_type: str,
    config: dict[str, Any],
    config_size: int,
    version: EsVersion,
) -> Endpoint:
    """Validate a create request for an in-cluster E5 endpoint.

    Raises:
        EsError: The error Elasticsearch would send.
    """
    config = dict(config)
    service_settings = take_map(config, _SS, required=True)
    settings_size = len(service_settings)
    task_map = take_map(config, "task_settings", required=False)
    chunking = None
    if task_type == "text_embedding" and version.chunking:
        chunking = parse_chunking(config.pop("chunking_settings", None), version)
    if task_type != "text_embedding":
        raise status_exception(
            f"The [{SERVICE}] service does not support task type [{task_type}]"
        )

    check = Extractor()
    allocations = check.optional_positive_int(service_settings, "num_allocations", _SS)
    threads = check.required_positive_int(service_settings, "num_threads", _SS)
    model_id = check.required_string(service_settings, "model_id", _SS)
    adaptive_raw = check.optional_map(service_settings, "adaptive_allocations")
    adaptive = None if adaptive_raw is None else _adaptive(adaptive_raw, check)
    if allocations is None and adaptive is None and not check.errors:
        check.errors.append(
            f"[{_SS}] does not contain one of the required settings "
            "[num_allocations, adaptive_allocations]"
        )
    check.raise_if_any()
    assert threads is not None and model_id is not None

    if model_id not in MODELS:
        raise not_found(f"Could not find trained model [{model_id}]")
    for leftover, size in ((config, config_size), (service_settings, settings_size)):
        if leftover:
            raise unknown_settings(leftover, SERVICE, size)
    if task_map:
        raise unknown_settings(task_map, SERVICE, len(task_map))

    return Endpoint(
        inference_id=inference_id,
        task_type=task_type,
        service=SERVICE,
        service_settings=_exposed(allocations, threads, model_id, adaptive),
        chunking_settings=chunking,
        model_id=model_id,
        dims=dims_for_model(model_id),
    )


def apply_update(endpoint: Endpoint, service_settings: dict[str, Any]) -> Endpoint:
    """Apply an ``_update``: only the allocation settings may change."""
    settings = dict(service_settings)
    check = Extractor()
    allocations = check.optional_positive_int(settings, "num_allocations", _SS)
    adaptive_raw = check.optional_map(settings, "adaptive_allocations")
    adaptive = None if adaptive_raw is None else _adaptive(adaptive_raw, check)
    for key in list(settings):
        check.not_allowed(settings, key, _SS)
    check.raise_if_any()

    current = endpoint.service_settings
    updated = endpoint.copy()
    updated.service_settings = _exposed(
        allocations if allocations is not None else current.get("num_allocations"),
        int(current["num_threads"]),
        str(current["model_id"]),
        adaptive if adaptive is not None else current.get("adaptive_allocations"),
    )
    return updated


@dataclass
class _Deployment:
    deployment_id: str
    model_id: str
    target: int
    threads: int
    adaptive: dict[str, Any] | None
    started_mono: float
    started_ms: int
    polls: int = 0
    forced: str | None = None
    inference_count: int = 0


def _target(settings: dict[str, Any]) -> int:
    allocations = settings.get("num_allocations")
    if isinstance(allocations, int):
        return allocations
    adaptive = settings.get("adaptive_allocations") or {}
    return max(int(adaptive.get("min_number_of_allocations") or 0), 1)


class Deployments:
    """Trained-model deployments of ``elasticsearch`` endpoints (thread-safe).

    Args:
        delay_s: Seconds before a new deployment becomes fully allocated.
        polls: How many stats requests see a new deployment still ``starting``.
    """

    def __init__(self, delay_s: float = 0.0, polls: int = 0) -> None:
        self.delay_s = delay_s
        self.polls = polls
        self._lock = threading.Lock()
        self._items: dict[str, _Deployment] = {}

    def start(self, endpoint: Endpoint) -> None:
        """Start the deployment behind a new endpoint."""
        settings = endpoint.service_settings
        adaptive = settings.get("adaptive_allocations")
        with self._lock:
            self._items[endpoint.inference_id] = _Deployment(
                deployment_id=endpoint.inference_id,
                model_id=endpoint.model_id,
                target=_target(settings),
                threads=int(settings["num_threads"]),
                adaptive=dict(adaptive) if isinstance(adaptive, dict) else None,
                started_mono=time.monotonic(),
                started_ms=int(time.time() * 1000),
            )

    def update(self, endpoint: Endpoint) -> None:
        """Follow an ``_update`` of the endpoint's allocation settings."""
        with self._lock:
            item = self._items.get(endpoint.inference_id)
            if item is not None:
                item.target = _target(endpoint.service_settings)
                adaptive = endpoint.service_settings.get("adaptive_allocations")
                item.adaptive = dict(adaptive) if isinstance(adaptive, dict) else None

    def stop(self, deployment_id: str) -> None:
        """Stop (forget) a deployment."""
        with self._lock:
            self._items.pop(deployment_id, None)

    def set_state(self, deployment_id: str, state: str | None) -> None:
        """Force a deployment into ``state`` (``None`` returns to the automatic state).

        Raises:
            KeyError: No such deployment.
            ValueError: ``state`` is not one of :data:`DEPLOYMENT_STATES`.
        """
        if state is not None and state not in DEPLOYMENT_STATES:
            raise ValueError(f"state must be one of {DEPLOYMENT_STATES}, got {state!r}")
        with self._lock:
            self._items[deployment_id].forced = state

    def _state(self, item: _Deployment) -> str:
        if item.forced is not None:
            return item.forced
        waited = time.monotonic() - item.started_mono
        if item.polls >= self.polls and waited >= self.delay_s:
            return "fully_allocated"
        return "starting"

    def check_ready(self, deployment_id: str, count: int) -> None:
        """Count an inference call, or raise if no allocation has started."""
        with self._lock:
            item = self._items.get(deployment_id)
            state = "failed" if item is None else self._state(item)
            if state in ("starting", "failed"):
                raise EsError(
                    409,
                    "status_exception",
                    f"Trained model deployment [{deployment_id}] is not allocated "
                    "to any nodes",
                )
            assert item is not None
            item.inference_count += count

    def stats(
        self, ids: str | None, allow_no_match: bool, start: int, size: int
    ) -> dict[str, Any]:
        """The body of ``GET _ml/trained_models/<ids>/_stats``; counts as a poll.

        Raises:
            EsError: 404 when nothing matches and ``allow_no_match`` is false.
        """
        patterns = [p for p in (ids or "_all").split(",") if p]
        match_all = any(p in ("_all", "*") for p in patterns)
        with self._lock:
            chosen = [
                item
                for item in sorted(self._items.values(), key=lambda d: d.deployment_id)
                if match_all
                or any(
                    fnmatch.fnmatchcase(item.deployment_id, p)
                    or fnmatch.fnmatchcase(item.model_id, p)
                    for p in patterns
                )
            ]
            if not chosen and not allow_no_match and not match_all:
                raise not_found(f"No known trained model with model_id [{ids}]")
            entries = []
            for item in chosen:
                entries.append(self._entry(item))
                item.polls += 1
        return {"count": len(entries), "trained_model_stats": entries[start:][:size]}

    def _entry(self, item: _Deployment) -> dict[str, Any]:
        state = self._state(item)
        target = item.target
        count = {"starting": 0, "failed": 0, "started": max(target - 1, 1)}.get(
            state, target
        )
        allocation_state = {"started": "started", "fully_allocated": "fully_allocated"}
        routing = {"starting": "starting", "failed": "failed"}.get(state, "started")
        deployment: dict[str, Any] = {
            "deployment_id": item.deployment_id,
            "model_id": item.model_id,
            "state": "started" if state == "fully_allocated" else state,
        }
        if state == "failed":
            deployment["reason"] = "the local server was told to fail this deployment"
        deployment["allocation_status"] = {
            "allocation_count": count,
            "target_allocation_count": target,
            "state": allocation_state.get(state, "starting"),
        }
        if item.adaptive is not None:
            deployment["adaptive_allocations"] = item.adaptive
        deployment.update(
            {
                "number_of_allocations": count,
                "threads_per_allocation": item.threads,
                "queue_capacity": 1024,
                "priority": "normal",
                "start_time": item.started_ms,
                "peak_throughput_per_minute": 0,
                "nodes": [{"routing_state": {"routing_state": routing}}],
            }
        )
        return {
            "model_id": item.model_id,
            "model_size_stats": {
                "model_size_bytes": _MODEL_SIZE_BYTES,
                "required_native_memory_bytes": _MODEL_MEMORY_BYTES,
            },
            "pipeline_count": 0,
            "inference_stats": {
                "failure_count": 0,
                "inference_count": item.inference_count,
                "cache_miss_count": 0,
                "missing_all_fields_count": 0,
                "timestamp": int(time.time() * 1000),
            },
            "deployment_stats": deployment,
        }
