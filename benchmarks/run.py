"""``python -m benchmarks``: run every row, print the table and the targets."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from es_inference._batch import DEFAULT_CONCURRENCY

from ._floor import PARSER, Floor, measure
from ._plan import COHERE, FILE_CHUNK, FILE_SIZES, TITAN, Scenario, scenarios
from ._report import MIB, Check, build_rows, checks, table
from ._server import API_KEY, ServerProcess, child_environment, scratch_directory

ROOT = Path(__file__).resolve().parent.parent
CAPTURED = {TITAN: 200, COHERE: 8}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Embed the Python reference and standard-library docstrings through the "
            "local server (in its own process, with injected latency and rate "
            "limits) with es-inference and with the official elasticsearch client; "
            "print one table and the targets."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run that checks the machinery in seconds (numbers mean little)",
    )
    return parser


def corpus(quick: bool) -> list[str]:
    """The Python reference passages, then (except in quick runs) docstrings."""
    from es_inference._corpus import reference_passages, stdlib_docstrings

    texts = [passage.text for passage in reference_passages()]
    if not quick:
        texts += stdlib_docstrings()
    return texts


def run_children(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Run rows in a fresh process; returns their results by row id."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks._child", json.dumps(rows)],
        cwd=ROOT,
        env=child_environment(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    results: dict[str, dict[str, Any]] = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
            results[result.pop("id")] = result
    for row in rows:
        if row["id"] not in results:
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            results[row["id"]] = {"error": f"exit {done.returncode}: {tail[0]}"}
    return results


def _load() -> str:
    try:
        return " / ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def import_time(runs: int) -> float:
    """Median seconds to import ``es_inference`` in a fresh interpreter."""
    code = (
        "import time; started = time.perf_counter(); import es_inference; "
        "print(time.perf_counter() - started)"
    )
    times = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=child_environment(),
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(float(done.stdout.strip()))
    return statistics.median(times)


def _file_rows(
    quick: bool, scenario: Scenario, url: str, texts: list[str], directory: Path
) -> list[dict[str, Any]]:
    rows = []
    for size in FILE_SIZES[quick]:
        lines = directory / f"corpus-{size}.jsonl"
        with open(lines, "w", encoding="utf-8") as handle:
            for i in range(size):
                handle.write(json.dumps({"text": texts[i % len(texts)]}) + "\n")
        rows.append(
            {
                "id": f"file/{size}",
                "client": "file",
                "url": url,
                "api_key": API_KEY,
                "inference_id": scenario.inference_id,
                "texts": str(directory / "corpus.json"),
                "count": 1,
                "lines": str(lines),
                "out": str(directory / f"vectors-{size}.npy"),
                "chunk": FILE_CHUNK[quick],
            }
        )
    return rows


def file_checks(
    quick: bool, scenario: Scenario, results: dict[str, dict[str, Any]]
) -> tuple[list[str], list[Check]]:
    """Lines about the two ``embed_to_file`` runs and the bounded-memory target."""
    lines, peaks = [], []
    for size in FILE_SIZES[quick]:
        result = results[f"file/{size}"]
        if "error" in result:
            return [f"- embed_to_file, {size:,} texts: {result['error']}"], []
        array = size * scenario.dims * 4
        if result.get("peak") is None or result.get("baseline") is None:
            return [f"- embed_to_file, {size:,} texts: memory needs Linux"], []
        peak = result["peak"] - result["baseline"]
        peaks.append(peak)
        lines.append(
            f"- `embed_to_file`, {size:,} texts ({scenario.title}, chunks of "
            f"{FILE_CHUNK[quick]:,}): {array / MIB:,.0f} MiB written in "
            f"{result['seconds']:.1f} s, peak {peak / MIB:.1f} MiB over the baseline"
        )
    small, large = peaks
    bounded = large <= small * 1.25 + 4 * MIB
    check = Check(
        "memory of a corpus to disk bounded, independent of its size",
        "embed_to_file",
        bounded,
        f"peak {small / MIB:.1f} MiB for {FILE_SIZES[quick][0]:,} texts, "
        f"{large / MIB:.1f} MiB for {FILE_SIZES[quick][1]:,}",
    )
    return lines, [check]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its report; returns the exit status."""
    args = _parser().parse_args(argv)
    quick: bool = args.quick
    plan = scenarios(quick)
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    floors: dict[str, Floor] = {}
    floor_seconds = 0.05 if quick else 0.3
    load_before = _load()

    with scratch_directory() as scratch:
        directory = Path(scratch)
        texts = corpus(quick)
        with open(directory / "corpus.json", "w", encoding="utf-8") as handle:
            json.dump(texts, handle)
        for latency in sorted({scenario.latency_ms for scenario in plan}):
            with ServerProcess(latency, directory) as server:
                batch: list[dict[str, Any]] = []
                for scenario in (s for s in plan if s.latency_ms == latency):
                    server.create(scenario)
                    captured = directory / f"answers-{scenario.per_request}.pickle"
                    if scenario.model not in floors:
                        count = CAPTURED[scenario.model] // (10 if quick else 1)
                        bodies = server.capture(scenario, texts, max(count, 2))
                        floors[scenario.model] = measure(bodies, floor_seconds)
                        captured.write_bytes(pickle.dumps(bodies))
                    for client in scenario.clients:
                        batch.append(
                            {
                                "id": f"{scenario.key}/{client}",
                                "client": client,
                                "url": server.url,
                                "api_key": API_KEY,
                                "inference_id": scenario.inference_id,
                                "texts": str(directory / "corpus.json"),
                                "count": scenario.count(client),
                                "per_request": scenario.per_request,
                                "connections": DEFAULT_CONCURRENCY,
                                "answers": str(captured),
                                "floor_seconds": floor_seconds,
                            }
                        )
                file_scenario = next(
                    (s for s in plan if s.model == COHERE and not s.rpm), None
                )
                if file_scenario is not None and file_scenario.latency_ms == latency:
                    batch += _file_rows(
                        quick, file_scenario, server.url, texts, directory
                    )
                if quick:
                    results.update(run_children(batch))
                else:
                    for row in batch:
                        before = server.cpu_seconds()
                        results.update(run_children([row]))
                        after = server.cpu_seconds()
                        if before is not None and after is not None:
                            results[row["id"]]["server_cpu"] = after - before
        seconds_to_import = import_time(1 if quick else 5)

    rows = build_rows(plan, results)
    found = checks(plan, rows, floors)
    file_scenario = next(s for s in plan if s.model == COHERE and not s.rpm)
    file_lines, file_found = file_checks(quick, file_scenario, results)
    found += file_found

    print(
        "# es-inference benchmark" + (" (quick: numbers mean little)" if quick else "")
    )
    print()
    print(
        f"Python {platform.python_version()} on {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs; local server in its own "
        f"process (model `seeded`: dense float32 vectors), {PARSER}. Load average "
        f"{load_before} before the run, {_load()} after (other work on the machine "
        "inflates the CPU columns)."
    )
    print()
    print("\n".join(table(plan, rows, floors)))
    print()
    for model, floor in floors.items():
        print(
            f"- Floor, {model}: {floor.seconds_per_mfloat:.3f} CPU s per million "
            f"floats ({PARSER} and numpy over {floor.bodies} captured answers, "
            f"{floor.bytes_per_float:.1f} bytes of JSON per float)"
        )
    print(f"- `import es_inference`: {seconds_to_import * 1000:.0f} ms (median)")
    print("\n".join(file_lines))
    print()
    print("Targets:")
    print("\n".join(check.line() for check in found))
    print()
    print(f"Finished in {time.perf_counter() - started:.0f} s.")
    return 0
