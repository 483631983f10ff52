"""Embedding a corpus larger than memory into a ``.npy`` file, resumably."""

from __future__ import annotations

import codecs
import hashlib
import itertools
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

from ._batch import check_texts
from ._errors import ConfigurationError, InputError, PartialResultError
from ._service import EmbeddingService

logger = logging.getLogger("es_inference.files")

#: Texts embedded per step; bounds memory to this many texts and vectors.
DEFAULT_CHUNK = 2048


def read_texts(path: str | os.PathLike[str], field: str | None = None) -> Iterator[str]:
    """Yield one text per line, or the ``field`` of each JSON line.

    Lines end with ``\\n`` or ``\\r\\n``; a UTF-8 byte-order mark at the start is
    dropped.

    Raises:
        InputError: A line is not UTF-8, or not a JSON object with ``field``;
            the error names the line.
    """
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            raw = raw.rstrip(b"\n").removesuffix(b"\r")
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{path}:{number}: not UTF-8 text (byte {exc.start + 1} of the "
                    "line); save the file as UTF-8"
                ) from None
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
    mapping of the whole file would keep every written page resident).

    Progress is kept beside the file in ``<out>.progress``: the rows written, the
    endpoint and a digest of the texts. After an interruption the next call
    resumes from the first row not yet written; once the file is complete, a call
    with the same endpoint and texts has nothing to do. A file started with
    another endpoint or other texts is refused rather than mixed; ``resume=False``
    starts it over. Returns the number of rows embedded by this call.

    Raises:
        ConfigurationError: ``chunk`` is less than 1.
        InputError: A text cannot be embedded, or the input is not UTF-8 (every
            line is checked before the first request); or the file was started
            with another endpoint, other texts or another number of rows.
        FilePartialError: Some texts of a chunk still failed after their retries.
            The rows before the first failed one are saved, and the next call
            resumes there. When every request of a step failed, that request's
            own error is raised instead; the rows before the step are saved.
    """
    if chunk < 1:
        raise ConfigurationError(f"chunk must be at least 1, got {chunk}")
    path = Path(out)
    digest = _check_all(texts(), total, service.options.max_input_chars, chunk)
    info = service.endpoint().info
    record = _Progress(path, info.inference_id, digest)
    done = 0
    layout: tuple[int, int] | None = None  # (dims, offset of the first row)
    if resume and path.exists() and record.file.exists():
        layout = _layout(path, total, info.dimensions)
        done = record.resume_at(total)
        if done < total:
            logger.info("resuming %s at row %d of %d", path, done, total)
    start_done = done
    source = texts()
    for _ in range(done):
        next(source)
    while done < total:
        batch = list(itertools.islice(source, min(chunk, total - done)))
        if not batch:
            raise InputError(f"the input ended after {done} of {total} texts")
        written = 0
        try:
            if layout is None:
                layout = _create(path, total, service.embed(batch[:1]))
                written = 1
            if written < len(batch):
                _embed_rows(service, batch[written:], path, layout, done + written)
        except PartialResultError as exc:
            saved = done + written + _leading(exc.succeeded)
            if layout is not None:
                record.save(saved, total)
            raise FilePartialError(exc, path, done + written, saved, total) from None
        except BaseException:
            # Every request of the step failed, or the call was interrupted: the
            # error is its own, and the rows saved so far are kept.
            if written:
                record.save(done + written, total)
            raise
        done += len(batch)
        record.save(done, total)
    if layout is None:  # an empty input
        np.save(path, np.zeros((0, 0), dtype=np.float32))
    elif done == start_done:
        logger.info("%s is complete: all %d rows are written", path, total)
    return done - start_done


class _Progress:
    """``<out>.progress``: rows written, and what they were made from."""

    def __init__(self, path: Path, inference_id: str, digest: str) -> None:
        self.path = path
        self.file = path.with_name(path.name + ".progress")
        self.inference_id = inference_id
        self.digest = digest

    def resume_at(self, total: int) -> int:
        """The first row to write, after checking the file was made the same way."""
        try:
            saved = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = None
        if isinstance(saved, int):  # a count alone, as earlier versions wrote
            saved = {"rows": saved}
        if not isinstance(saved, dict) or not isinstance(saved.get("rows"), int):
            raise InputError(
                f"{self.file} cannot be read; delete it and {self.path}, or start "
                "over (--restart), to embed the file again"
            )
        restart = "; start over (--restart) to replace it"
        started_with = saved.get("inference_id", self.inference_id)
        if started_with != self.inference_id:
            raise InputError(
                f"{self.path} was started with inference endpoint [{started_with}], "
                f"not [{self.inference_id}]{restart}"
            )
        if saved.get("texts", self.digest) != self.digest:
            raise InputError(
                f"{self.path} was started from other texts (the input changed since)"
                + restart
            )
        rows: int = saved["rows"]
        return min(max(0, rows), total)

    def save(self, rows: int, total: int) -> None:
        record = {
            "rows": rows,
            "total": total,
            "inference_id": self.inference_id,
            "texts": self.digest,
        }
        self.file.write_text(json.dumps(record) + "\n", encoding="utf-8")


def _layout(path: Path, total: int, dims: int | None) -> tuple[int, int]:
    """The ``(dims, offset)`` of an existing file, checked against the input."""
    array = open_memmap(path, mode="r+")
    shape, offset = array.shape, array.offset
    del array
    restart = "; start over (--restart) to replace it"
    if len(shape) != 2 or shape[0] != total:
        raise InputError(
            f"{path} holds {shape[0] if shape else 0} rows but the input has "
            f"{total}{restart}"
        )
    if dims is not None and shape[1] != dims:
        raise InputError(
            f"{path} holds vectors of {shape[1]} dimensions, but the endpoint's "
            f"have {dims}{restart}"
        )
    return int(shape[1]), int(offset)


class FilePartialError(PartialResultError):
    """A chunk of :func:`embed_to_file` failed after its retries.

    Indices are rows of the whole input. The rows before the first failed one are
    in the file, and the next call resumes at :attr:`resume_at`.

    Attributes:
        path: The ``.npy`` file.
        resume_at: The first row not saved.
    """

    def __init__(
        self,
        chunk_error: PartialResultError,
        path: Path,
        start: int,
        saved: int,
        total: int,
    ) -> None:
        succeeded = np.zeros(total, dtype=bool)
        succeeded[:saved] = True
        super().__init__(
            [start + i for i in chunk_error.failed_indices],
            [([start + i for i in idx], err) for idx, err in chunk_error.errors],
            None,
            succeeded,
            total,
        )
        self.path = path
        self.resume_at = saved
        self.args = (
            f"{self.args[0]}; rows 0 to {saved - 1} are saved in {path}, and "
            f"running again resumes at row {saved}"
            if saved
            else f"{self.args[0]}; nothing is saved yet in {path}",
        )


def _leading(succeeded: np.ndarray) -> int:
    """How many inputs at the start succeeded, before the first failure."""
    failed = np.flatnonzero(~succeeded)
    return int(failed[0]) if failed.size else len(succeeded)


def _create(path: Path, total: int, first: np.ndarray) -> tuple[int, int]:
    """Make the file at the dimension of the first answer and write its row.

    Returns the layout ``(dims, offset of row 0)``.
    """
    array = open_memmap(
        path, mode="w+", dtype=np.float32, shape=(total, first.shape[1])
    )
    layout = (first.shape[1], array.offset)
    array[0] = first[0]
    array.flush()
    del array
    return layout


def _embed_rows(
    service: EmbeddingService,
    batch: list[str],
    path: Path,
    layout: tuple[int, int],
    start: int,
) -> None:
    """Embed ``batch`` straight into rows ``start`` onwards, mapped for them only.

    When some texts fail, the rows of the others are written all the same.
    """
    dims, offset = layout
    rows = np.memmap(
        path,
        dtype=np.float32,
        mode="r+",
        offset=offset + start * dims * 4,
        shape=(len(batch), dims),
    )
    try:
        service.embed(batch, out=rows)
    finally:
        rows.flush()
        del rows


def _check_all(
    source: Iterator[str], total: int, max_chars: int | None, chunk: int
) -> str:
    """Check every text before the first request; name bad ones by line number.

    Returns a digest of the texts, which tells a resumed run whether they changed.
    """
    bad: list[int] = []
    reasons: list[str] = []
    digest = hashlib.blake2b(digest_size=16)
    first = 0
    while first < total:
        batch = list(itertools.islice(source, min(chunk, total - first)))
        if not batch:
            break
        for text in batch:
            if isinstance(text, str):
                digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
        try:
            check_texts(batch, max_chars)
        except InputError as exc:
            bad.extend(first + i for i in exc.indices)
            reasons.extend(exc.problems)
        first += len(batch)
    if bad:
        lines = ", ".join(str(i + 1) for i in bad[:20])
        more = f" and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise InputError(
            f"lines {lines}{more} cannot be embedded ({'; '.join(sorted(set(reasons)))}"
            "); fix or remove them, nothing was sent",
            bad,
        )
    return digest.hexdigest()
