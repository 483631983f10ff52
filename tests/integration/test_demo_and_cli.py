"""The demo's main job and the ``embed`` command, end to end."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from es_inference import EmbeddingService, InputError
from es_inference._demo import QUESTIONS, run
from es_inference._files import count_texts, embed_to_file, read_texts
from es_inference.cli import main

from .helpers import API_KEY, AWS_ACCESS, AWS_SECRET, TITAN, embedding_service


def test_demo_answers_from_the_right_reference_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ELASTICSEARCH_URL", raising=False)
    monkeypatch.delenv("ELASTIC_CLOUD_ID", raising=False)
    out = io.StringIO()
    report = run(stream=out)
    text = out.getvalue()
    assert report.hits == len(QUESTIONS), text
    assert report.dimensions == 1024
    assert report.passages > 300
    assert report.requests >= report.passages  # Titan: one text per request
    assert "started the local stand-in server" in text
    assert "__exit__" in report.answer and report.answer in text
    with_block = text.split("Q: What does the with statement")[1].split("Q:")[0]
    assert with_block.split("LangChain top topics:")[1].split(",")[0].strip() == "with"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(f"line {i} of the corpus" for i in range(50)) + "\n")
    return path


def _service(url: str) -> EmbeddingService:
    return embedding_service(url)


def test_embed_command_writes_the_array(
    local_server: Any, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELASTICSEARCH_API_KEY", API_KEY)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    out = tmp_path / "vectors.npy"
    code = main(
        [
            "embed",
            str(corpus),
            "--out",
            str(out),
            "--model",
            TITAN,
            "--region",
            "us-east-1",
            "--es-url",
            local_server.url,
            "--chunk",
            "16",
            "--rate-limit",
            "600000",
        ]
    )
    assert code == 0
    vectors = np.load(out)
    assert vectors.shape == (50, 1024) and vectors.dtype == np.float32
    expected = _service(local_server.url).embed(list(read_texts(corpus)))
    np.testing.assert_array_equal(vectors, expected)


def test_embed_to_file_resumes_after_an_interruption(
    local_server: Any, corpus: Path, tmp_path: Path
) -> None:
    service = _service(local_server.url)
    total = count_texts(corpus)
    full = tmp_path / "full.npy"
    embed_to_file(service, lambda: read_texts(corpus), total, full, chunk=16)

    part = tmp_path / "part.npy"
    texts = list(read_texts(corpus))

    passes = []

    def interrupted() -> Any:
        passes.append(1)  # the first pass only checks the texts
        for i, text in enumerate(texts):
            if i == 20 and len(passes) > 1:
                raise KeyboardInterrupt
            yield text

    with pytest.raises(KeyboardInterrupt):
        embed_to_file(service, interrupted, total, part, chunk=8)
    progress = part.with_name(part.name + ".progress")
    assert json.loads(progress.read_text())["rows"] == 16

    local_server.clear_requests()
    written = embed_to_file(service, lambda: read_texts(corpus), total, part, chunk=8)
    assert written == 34
    assert local_server.count("POST") == 34
    assert json.loads(progress.read_text())["rows"] == total
    np.testing.assert_array_equal(np.load(part), np.load(full))


def test_bad_lines_are_named_before_any_request(
    local_server: Any, tmp_path: Path
) -> None:
    path = tmp_path / "bad.txt"
    lines = [f"text {i}" for i in range(30)]
    lines[3] = "   "
    lines[27] = ""
    path.write_text("\n".join(lines) + "\n")
    lines[12] = "x" * 50_001
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as info:
        embed_to_file(
            _service(local_server.url),
            lambda: read_texts(path),
            count_texts(path),
            tmp_path / "out.npy",
            chunk=8,
        )
    assert str(info.value) == (
        "lines 4, 13, 28 cannot be embedded (empty or whitespace only; longer than "
        "50000 characters); fix or remove them, nothing was sent"
    )
    assert info.value.indices == [3, 12, 27]
    assert local_server.requests == []
