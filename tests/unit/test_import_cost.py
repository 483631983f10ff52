"""Importing the package loads neither host framework nor the local server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import es_inference

HEAVY = (
    "langchain_core",
    "langchain",
    "llama_index",
    "es_inference.local",
    "pydantic",
    "httpx",  # streams and proxies only: imported on first use
)


def _fresh_interpreter(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter that imports this package's copy."""
    package_root = str(Path(es_inference.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": package_root}
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def test_import_loads_no_framework_and_no_local_server() -> None:
    code = (
        "import json, sys; import es_inference; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    done = _fresh_interpreter(code)
    assert json.loads(done.stdout) == []


def test_a_failed_request_is_translated_in_a_process_that_never_loaded_httpx() -> None:
    # The lean client's failures are translated beside httpx's; that must work
    # before anything has imported httpx.
    code = """
import socket
from es_inference import ConnectionError, EmbeddingService, build_spec
from es_inference import resolve_connection
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
service = EmbeddingService(
    resolve_connection(es_url=f"http://127.0.0.1:{port}", env={}),
    build_spec("text_embedding", inference_id="e", env={}),
)
try:
    service.embed(["x"])
except ConnectionError as exc:
    print("refused" if "connection refused" in str(exc) else exc)
"""
    done = _fresh_interpreter(code)
    assert done.stdout.strip() == "refused"
