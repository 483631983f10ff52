"""One measured row, run in a fresh process: ``python -m benchmarks._child SPEC``.

``SPEC`` is a JSON list of rows; each row prints one JSON line with its wall time,
the process's CPU time, its resident memory before and at the peak, and the shape
of the array it produced. Everything a row needs (imports, texts, a client, one
warm-up request) is in place before the baseline is taken, so the numbers are the
embedding's alone. The default run starts one process per row; ``--quick`` runs
all rows in one process.
"""

from __future__ import annotations

import asyncio
import gc
import json
import pickle
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._floor import measure


def _status(field: str) -> int | None:
    """A memory field of this process in bytes (Linux); None elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Make the peak RSS the current RSS (Linux); False where that is impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


class Meter:
    """Wall time, CPU time and peak RSS from :meth:`start` to :meth:`stop`."""

    def start(self) -> None:
        gc.collect()
        self.resettable = _reset_peak()
        self.baseline = _status("VmRSS")
        self.usage = resource.getrusage(resource.RUSAGE_SELF)
        self.wall = time.perf_counter()

    def stop(self, array: np.ndarray, **extra: Any) -> dict[str, Any]:
        wall = time.perf_counter() - self.wall
        usage = resource.getrusage(resource.RUSAGE_SELF)
        peak = _status("VmHWM") if self.resettable else None
        return {
            "seconds": wall,
            "user": usage.ru_utime - self.usage.ru_utime,
            "sys": usage.ru_stime - self.usage.ru_stime,
            "baseline": self.baseline,
            "peak": peak,
            "shape": list(array.shape),
            # Checked after the peak was read: the check allocates.
            "finite": bool(np.isfinite(array).all()),
            **extra,
        }


def _warm_up(
    row: dict[str, Any], texts: list[str], per_request: int | None = None
) -> list[str]:
    """Texts for one request per connection, sent before the baseline is taken.

    Every client opens its connections (and the library its threads) the same way
    before it is measured, so that the rows compare the embedding itself rather
    than how much of its set-up each client defers to its first real call.
    """
    size = row["per_request"] if per_request is None else per_request
    return texts[: row["connections"] * size]


def lib_sync(row: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    from es_inference.langchain import ElasticInferenceEmbeddings

    embeddings = ElasticInferenceEmbeddings(
        inference_id=row["inference_id"], es_url=row["url"], es_api_key=row["api_key"]
    )
    embeddings.embed_array(_warm_up(row, texts))
    meter = Meter()
    meter.start()
    array = embeddings.embed_array(texts)
    return meter.stop(array)


def lib_async(row: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    from es_inference.langchain import ElasticInferenceEmbeddings

    async def run() -> dict[str, Any]:
        embeddings = ElasticInferenceEmbeddings(
            inference_id=row["inference_id"],
            es_url=row["url"],
            es_api_key=row["api_key"],
        )
        await embeddings.aembed_array(_warm_up(row, texts))
        meter = Meter()
        meter.start()
        array = await embeddings.aembed_array(texts)
        return meter.stop(array)

    return asyncio.run(run())


def es_sequential(row: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    from elasticsearch import Elasticsearch

    es = Elasticsearch(row["url"], api_key=row["api_key"])
    inference_id = row["inference_id"]
    for text in _warm_up(row, texts, per_request=1):
        es.inference.text_embedding(inference_id=inference_id, input=text)
    meter = Meter()
    meter.start()
    vectors = []
    for text in texts:
        answer = es.inference.text_embedding(inference_id=inference_id, input=text)
        vectors.append(answer["text_embedding"][0]["embedding"])
    array = np.asarray(vectors, dtype=np.float32)
    result = meter.stop(array)
    es.close()
    return result


def es_gather(row: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    from elasticsearch import AsyncElasticsearch

    async def run() -> dict[str, Any]:
        es = AsyncElasticsearch(row["url"], api_key=row["api_key"])
        inference_id = row["inference_id"]
        try:
            await asyncio.gather(
                *(
                    es.inference.text_embedding(inference_id=inference_id, input=text)
                    for text in _warm_up(row, texts, per_request=1)
                )
            )
            meter = Meter()
            meter.start()
            answers = await asyncio.gather(
                *(
                    es.inference.text_embedding(inference_id=inference_id, input=text)
                    for text in texts
                )
            )
            vectors = [answer["text_embedding"][0]["embedding"] for answer in answers]
            array = np.asarray(vectors, dtype=np.float32)
            return meter.stop(array)
        finally:
            await es.close()

    return asyncio.run(run())


def probe(row: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    """The least a client can do: the same requests and parse, nothing else.

    HTTP/1.1 written by hand over asyncio streams, 16 keep-alive connections, no
    checks, retries or pacing. It shows how close the server and this machine let
    any client come to the limit.
    """
    from urllib.parse import urlsplit

    import orjson

    url = urlsplit(row["url"])
    size = row["per_request"]
    path = f"/_inference/text_embedding/{row['inference_id']}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: ApiKey {row['api_key']}\r\n"
        "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    )
    requests = [
        (head % len(body)).encode() + body
        for body in (
            orjson.dumps({"input": texts[start : start + size]})
            for start in range(0, len(texts), size)
        )
    ]

    async def exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> list[dict[str, list[float]]]:
        writer.write(request)
        answer = await reader.readuntil(b"\r\n\r\n")
        start = answer.lower().index(b"content-length:") + 15
        length = int(answer[start : answer.index(b"\r\n", start)])
        body = await reader.readexactly(length)
        results: list[dict[str, list[float]]] = orjson.loads(body)["text_embedding"]
        return results

    async def run() -> dict[str, Any]:
        streams = [
            await asyncio.open_connection(url.hostname, url.port)
            for _ in range(row["connections"])
        ]
        for pair in streams:
            dims = len((await exchange(*pair, requests[0]))[0]["embedding"])
        out = np.empty((len(texts), dims), dtype=np.float32)
        todo = iter(range(len(requests)))

        async def worker(reader: Any, writer: Any) -> None:
            for i in todo:
                results = await exchange(reader, writer, requests[i])
                for offset, result in enumerate(results):
                    out[i * size + offset] = result["embedding"]

        meter = Meter()
        meter.start()
        await asyncio.gather(*(worker(*pair) for pair in streams))
        result = meter.stop(out)
        for _, writer in streams:
            writer.close()
        return result

    return asyncio.run(run())


def to_file(row: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    from es_inference._files import count_texts, embed_to_file, read_texts
    from es_inference.langchain import ElasticInferenceEmbeddings

    embeddings = ElasticInferenceEmbeddings(
        inference_id=row["inference_id"], es_url=row["url"], es_api_key=row["api_key"]
    )
    service = embeddings.embedding_service()
    service.embed(texts[:1])
    path = row["lines"]
    total = count_texts(path)
    meter = Meter()
    meter.start()
    written = embed_to_file(
        service,
        lambda: read_texts(path, "text"),
        total,
        row["out"],
        chunk=row["chunk"],
        resume=False,
    )
    result = meter.stop(np.zeros((0, 0), dtype=np.float32), written=written)
    array = np.load(row["out"], mmap_mode="r")
    result["shape"] = list(array.shape)
    result["finite"] = all(
        bool(np.isfinite(array[i : i + 4096]).all())
        for i in range(0, array.shape[0], 4096)
    )
    return result


RUNNERS: dict[str, Callable[[dict[str, Any], list[str]], dict[str, Any]]] = {
    "lib-sync": lib_sync,
    "lib-async": lib_async,
    "es-seq": es_sequential,
    "es-gather": es_gather,
    "probe": probe,
    "file": to_file,
}


def main(argv: list[str]) -> int:
    rows = json.loads(argv[0])
    with open(rows[0]["texts"], encoding="utf-8") as handle:
        corpus: list[str] = json.load(handle)
    for row in rows:
        count = row["count"]
        texts = (corpus * (count // len(corpus) + 1))[:count]
        try:
            result = RUNNERS[row["client"]](row, texts)
        except Exception as exc:  # reported in the table, not raised
            result = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        if "answers" in row and "error" not in result:
            # The floor in this process, right after the row, on the same answers.
            with open(row["answers"], "rb") as handle:
                answers = pickle.load(handle)
            floor = measure(answers, row["floor_seconds"])
            result["floor"] = floor.seconds_per_mfloat
        print(json.dumps({"id": row["id"], **result}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
