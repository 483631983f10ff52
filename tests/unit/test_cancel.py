"""A bulk call that is interrupted sends no further batches."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

from es_inference import (
    EmbeddingService,
    ServiceOptions,
    build_spec,
    resolve_connection,
)
from es_inference._batch import Assembly, plan


def test_interrupt_stops_handing_out_batches() -> None:
    service = EmbeddingService(
        resolve_connection(es_url="http://127.0.0.1:9", env={}),
        build_spec("text_embedding", inference_id="e"),
        ServiceOptions(concurrency=4),
    )
    assembly = Assembly(200, dims=2)
    calls = []
    lock = threading.Lock()

    def work(start: int, stop: int) -> None:
        with lock:
            calls.append(start)
            count = len(calls)
        if count == 3:
            raise KeyboardInterrupt
        time.sleep(0.005)  # a request's worth of waiting, so batches overlap

    with pytest.raises(KeyboardInterrupt):
        service.run_batches(plan(200, 1), work, assembly)
    assert assembly.stopped
    pool = service._pool()
    pool.shutdown(wait=True)  # let the requests under way finish
    assert len(calls) < 20
    assert isinstance(pool, concurrent.futures.ThreadPoolExecutor)
