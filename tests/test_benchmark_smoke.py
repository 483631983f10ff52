"""The benchmark command runs end to end and prints its table (timings unchecked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import es_inference

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = (
    "limit: ",
    "es-inference `embed_array`",
    "es-inference `aembed_array`",
    "elasticsearch, 1 call per text",
    "AsyncElasticsearch, `gather` all",
)


def test_quick_benchmark_prints_one_table_with_every_row() -> None:
    package_root = str(Path(es_inference.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": package_root}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()

    table = [line for line in lines if line.startswith("|")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header[:4] == ["scenario", "client", "texts", "texts/s"]
    assert "vs floor" in header and "vs array" in header
    body = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]
    assert all(len(cells) == len(header) for cells in body)
    assert not [cells for cells in body if cells[3].startswith("error")]

    scenarios = [cells[0] for cells in body if cells[0]]
    assert len(scenarios) == 2
    assert scenarios[0].startswith("Titan") and scenarios[1].startswith("Cohere")
    clients = [cells[1] for cells in body]
    for label in CLIENTS:
        assert sum(client.startswith(label) for client in clients) == 2, label

    assert any(line.startswith("- `import es_inference`: ") for line in lines)
    assert sum(line.startswith("- `embed_to_file`") for line in lines) == 2
    targets = lines[lines.index("Targets:") + 1 :]
    verdicts = [line.split()[1] for line in targets if line.startswith("- ")]
    assert verdicts and set(verdicts) <= {"PASS", "FAIL", "N/A"}
