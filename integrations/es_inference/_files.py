"""Embedding a corpus larger than memory into a ``.npy`` file, resumably."""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

from ._batch import check_texts
from ._errors import InputError
from ._service import EmbeddingService

logger = logging.getLogger("es_inference.files")

#: Texts embedded per step; bounds memory to this many texts and vectors.
DEFAULT_CHUNK = 2048


def read_texts(path: str | os.PathLike[str], field: str | None = None) -> Iterator[str]:
    """Yield one text per line, or the ``field`` of each JSON line."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n")
            if field is None:
                yield line
                continue
            try:
                record = json.loads(line)
                value = record[field]
            except (ValueError, KeyError, TypeError):
                raise InputError(
                    f"{path}:{number}: expected a JSON object with a {field!r} field"
                ) from None
            if not isinstance(value, str):
                raise InputError(f"{path}:{number}: field {field!r} is not a string")
            yield value


def count_texts(path: str | os.PathLike[str]) -> int:
    """Lines in a file, read in blocks."""
    count = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            count += block.count(b"\n")
        handle.seek(0, os.SEEK_END)
        if handle.tell():
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                count += 1
    return count


def embed_to_file(
    service: EmbeddingService,
    texts: Callable[[], Iterator[str]],
    total: int,
    out: str | os.PathLike[str],
    *,
    chunk: int = DEFAULT_CHUNK,
    resume: bool = True,
) -> int:
    """Embed ``total`` texts into the ``.npy`` file ``out``, ``chunk`` at a time.

    Each chunk is embedded straight into its rows of the file, mapped for that
    chunk only, so memory stays bounded by one chunk whatever the corpus size (a
    mapping of the whole file would keep every written page resident). Progress
    is kept in ``<out>.progress``; after an interruption the next call resumes
    from the first row not yet written. Returns the number of rows embedded by
    this call.
    """
    path = Path(out)
    progress = path.with_name(path.name + ".progress")
    done = 0
    layout: tuple[int, int] | None = None  # (dims, offset of the first row)
    if resume and path.exists() and progress.exists():
        array = open_memmap(path, mode="r+")
        rows, layout = array.shape[0], (array.shape[1], array.offset)
        del array
        done = int(progress.read_text().strip() or 0)
        if rows != total:
            raise InputError(
                f"{path} holds {rows} rows but the input has {total}; "
                "delete it to start over"
            )
        logger.info("resuming %s at row %d of %d", path, done, total)
    _check_all(texts(), total, service.options.max_input_chars, chunk)
    start_done = done
    source = texts()
    for _ in range(done):
        next(source)
    while done < total:
        batch = list(itertools.islice(source, chunk))
        if not batch:
            raise InputError(f"the input ended after {done} of {total} texts")
        if layout is None:
            vectors = service.embed(batch)
            array = open_memmap(
                path, mode="w+", dtype=np.float32, shape=(total, vectors.shape[1])
            )
            layout = (vectors.shape[1], array.offset)
            array[: len(batch)] = vectors
            array.flush()
            del array, vectors
        else:
            dims, offset = layout
            rows_view = np.memmap(
                path,
                dtype=np.float32,
                mode="r+",
                offset=offset + done * dims * 4,
                shape=(len(batch), dims),
            )
            service.embed(batch, out=rows_view)
            rows_view.flush()
            del rows_view
        done += len(batch)
        progress.write_text(str(done))
    if layout is None:  # an empty input
        np.save(path, np.zeros((0, 0), dtype=np.float32))
    progress.unlink(missing_ok=True)
    return done - start_done


def _check_all(
    source: Iterator[str], total: int, max_chars: int | None, chunk: int
) -> None:
    """Check every text before the first request; name bad ones by line number."""
    bad: list[int] = []
    reasons: list[str] = []
    first = 0
    while first < total:
        batch = list(itertools.islice(source, chunk))
        if not batch:
            break
        try:
            check_texts(batch, max_chars)
        except InputError as exc:
            bad.extend(first + i for i in exc.indices)
            reasons.append(str(exc).split("; ", 1)[0].split(" are ", 1)[-1])
        first += len(batch)
    if bad:
        lines = ", ".join(str(i + 1) for i in bad[:20])
        more = f" and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise InputError(
            f"lines {lines}{more} cannot be embedded ({'; '.join(sorted(set(reasons)))}"
            "); fix or remove them, nothing was sent",
            bad,
        )
