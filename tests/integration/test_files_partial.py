"""``embed_to_file`` when some texts still fail after their retries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from es_inference import (
    ApiError,
    ConfigurationError,
    EmbeddingService,
    EsInferenceError,
    InputError,
    PartialResultError,
    ServerError,
    ServiceOptions,
)
from es_inference._files import FilePartialError, embed_to_file
from es_inference._retry import NO_RETRY
from es_inference.local import FaultConfig

from .helpers import COHERE, embedding_service

TEXTS = [f"line {i} of a corpus that fails in part" for i in range(60)]


def _service(url: str, *, retries: bool) -> EmbeddingService:
    return embedding_service(url, None if retries else ServiceOptions(retry=NO_RETRY))


def _rows_saved(out: Path) -> int:
    """The rows ``<out>.progress`` counts as written; 0 without one."""
    progress = out.with_name(out.name + ".progress")
    if not progress.exists():
        return 0
    rows: int = json.loads(progress.read_text())["rows"]
    return rows


def _embed(service: EmbeddingService, out: Path) -> int:
    return embed_to_file(service, lambda: iter(TEXTS), len(TEXTS), out, chunk=16)


def _fail_once(local_server: Any, out: Path, seed: int) -> int:
    """Embed under injected 503s without retries; returns where a rerun resumes."""
    failing = _service(local_server.url, retries=False)
    failing.embed(TEXTS[:1])  # the endpoint exists before faults start
    local_server.set_faults(FaultConfig(p_503=0.08, seed=seed))
    try:
        with pytest.raises(EsInferenceError) as caught:
            _embed(failing, out)
    finally:
        local_server.set_faults(None)
    saved = _rows_saved(out)
    error = caught.value
    if not isinstance(error, FilePartialError):
        # Every request of the step failed: the error is that request's own, and
        # the rows of earlier steps are kept.
        assert isinstance(error, ApiError) and error.status == 503
        assert saved % 16 in (0, 1)
        return saved
    assert isinstance(error, PartialResultError)
    # Indices are rows of the whole input, all in the step that failed, and the
    # rerun resumes at the first of them.
    assert error.resume_at == saved == error.failed_indices[0]
    assert saved // 16 == error.failed_indices[-1] // 16
    if saved:
        assert f"running again resumes at row {saved}" in str(error)
    return saved


def test_rows_before_a_failure_are_kept_and_a_rerun_sends_only_the_rest(
    local_server: Any, tmp_path: Path
) -> None:
    expected = _service(local_server.url, retries=True).embed(TEXTS)
    resumed = []
    for seed in range(1, 7):
        out = tmp_path / f"vectors-{seed}.npy"
        saved = _fail_once(local_server, out, seed)
        if out.exists():
            np.testing.assert_array_equal(np.load(out)[:saved], expected[:saved])
        local_server.clear_requests()
        written = _embed(_service(local_server.url, retries=True), out)
        assert written == len(TEXTS) - saved
        assert local_server.count("POST", "/_inference") == written
        assert _rows_saved(out) == len(TEXTS)
        np.testing.assert_array_equal(np.load(out), expected)
        resumed.append(saved)
    # Some runs failed part-way through a step and kept that step's leading rows.
    assert any(saved % 16 > 1 for saved in resumed), resumed


def test_a_step_whose_only_request_fails_keeps_the_rows_before_it(
    local_server: Any, tmp_path: Path
) -> None:
    expected = _service(local_server.url, retries=True).embed(TEXTS[:5])
    failing = _service(local_server.url, retries=False)
    out = tmp_path / "vectors.npy"
    passes = []

    def texts() -> Iterator[str]:
        passes.append(1)  # the first pass only checks the texts
        for i, text in enumerate(TEXTS[:5]):
            if i == 1 and len(passes) == 2:
                local_server.set_faults(FaultConfig(p_503=1.0))
            yield text

    try:
        with pytest.raises(ServerError):
            embed_to_file(failing, texts, 5, out, chunk=1)
    finally:
        local_server.set_faults(None)
    assert _rows_saved(out) == 1
    local_server.clear_requests()
    written = embed_to_file(failing, lambda: iter(TEXTS[:5]), 5, out, chunk=1)
    assert written == 4 == local_server.count("POST", "/_inference")
    np.testing.assert_array_equal(np.load(out), expected)


def test_texts_beyond_the_total_are_not_embedded(
    local_server: Any, tmp_path: Path
) -> None:
    service = _service(local_server.url, retries=True)
    service.embed(TEXTS[:1])
    local_server.clear_requests()
    out = tmp_path / "vectors.npy"
    written = embed_to_file(service, lambda: iter(TEXTS[:20]), 5, out, chunk=8)
    assert written == 5 == local_server.count("POST", "/_inference")
    assert out.stat().st_size == np.load(out).nbytes + 128
    np.testing.assert_array_equal(np.load(out), service.embed(TEXTS[:5]))


def test_a_chunk_below_one_is_refused_before_any_request(
    local_server: Any, tmp_path: Path
) -> None:
    local_server.clear_requests()
    with pytest.raises(ConfigurationError, match="chunk must be at least 1, got 0"):
        embed_to_file(
            _service(local_server.url, retries=True),
            lambda: iter(TEXTS),
            len(TEXTS),
            tmp_path / "vectors.npy",
            chunk=0,
        )
    assert local_server.requests == []


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((5,), r"out must be a 2-D array with a row for each of the 5 inputs"),
        ((4, 1024), r"got shape \(4, 1024\)"),
        ((5, 512), "out has 512 columns, but the endpoint's vectors have 1024"),
    ],
)
def test_an_out_array_of_the_wrong_shape_is_refused_before_embedding(
    local_server: Any, shape: tuple[int, ...], message: str
) -> None:
    service = _service(local_server.url, retries=True)
    service.embed(TEXTS[:1])
    local_server.clear_requests()
    with pytest.raises(ConfigurationError, match=message):
        service.embed(TEXTS[:5], out=np.zeros(shape, dtype=np.float32))
    assert local_server.count("POST", "/_inference") == 0


# Resuming only what was started the same way ---------------------------------------


def _interrupted_run(service: EmbeddingService, out: Path, texts: list[str]) -> None:
    """Embed ``texts`` into ``out`` in steps of 8, stopped by Ctrl-C at the third."""
    passes = []

    def stop_at_16() -> Iterator[str]:
        passes.append(1)  # the first pass only checks the texts
        for i, text in enumerate(texts):
            if i == 16 and len(passes) > 1:
                raise KeyboardInterrupt
            yield text

    with pytest.raises(KeyboardInterrupt):
        embed_to_file(service, stop_at_16, len(texts), out, chunk=8)
    assert _rows_saved(out) == 16


def test_a_file_started_with_another_endpoint_is_refused_not_mixed(
    local_server: Any, tmp_path: Path
) -> None:
    out = tmp_path / "vectors.npy"
    _interrupted_run(_service(local_server.url, retries=True), out, TEXTS)
    other = embedding_service(local_server.url, model=COHERE)
    local_server.clear_requests()
    with pytest.raises(InputError, match=r"was started with inference endpoint \["):
        embed_to_file(other, lambda: iter(TEXTS), len(TEXTS), out, chunk=8)
    assert local_server.count("POST", "/_inference") == 0
    assert _rows_saved(out) == 16
    # Starting over replaces it.
    written = embed_to_file(
        other, lambda: iter(TEXTS), len(TEXTS), out, chunk=8, resume=False
    )
    assert written == len(TEXTS)
    np.testing.assert_array_equal(np.load(out), other.embed(TEXTS))


def test_a_file_started_from_other_texts_is_refused(
    local_server: Any, tmp_path: Path
) -> None:
    service = _service(local_server.url, retries=True)
    out = tmp_path / "vectors.npy"
    _interrupted_run(service, out, TEXTS)
    edited = ["an edited first line", *TEXTS[1:]]
    local_server.clear_requests()
    with pytest.raises(InputError, match="was started from other texts"):
        embed_to_file(service, lambda: iter(edited), len(edited), out, chunk=8)
    assert local_server.count("POST", "/_inference") == 0


def test_a_complete_file_is_not_embedded_again(
    local_server: Any, tmp_path: Path
) -> None:
    service = _service(local_server.url, retries=True)
    out = tmp_path / "vectors.npy"
    assert _embed(service, out) == len(TEXTS)
    before = out.stat().st_mtime_ns
    local_server.clear_requests()
    assert _embed(service, out) == 0
    assert local_server.count("POST", "/_inference") == 0
    assert out.stat().st_mtime_ns == before


def test_a_progress_count_of_an_earlier_version_is_resumed(
    local_server: Any, tmp_path: Path
) -> None:
    service = _service(local_server.url, retries=True)
    out = tmp_path / "vectors.npy"
    _interrupted_run(service, out, TEXTS)
    out.with_name(out.name + ".progress").write_text("16")
    local_server.clear_requests()
    assert _embed(service, out) == len(TEXTS) - 16
    assert local_server.count("POST", "/_inference") == len(TEXTS) - 16
    np.testing.assert_array_equal(np.load(out), service.embed(TEXTS))
