"""Importing the package loads neither host framework nor the local server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import es_inference

HEAVY = ("langchain_core", "langchain", "llama_index", "es_inference.local", "pydantic")


def test_import_loads_no_framework_and_no_local_server() -> None:
    code = (
        "import json, sys; import es_inference; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    package_root = str(Path(es_inference.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": package_root}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(done.stdout) == []
