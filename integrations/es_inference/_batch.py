"""Cutting inputs into requests and putting the answers back together, in order.

Nothing here knows HTTP or the host frameworks: the engine calls a ``send`` function
per batch and writes what it returns into one preallocated array.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast, overload

import numpy as np

from ._errors import (
    AuthenticationError,
    AuthorizationError,
    ConfigurationError,
    ConnectionError,
    EndpointMismatchError,
    InputError,
    NotFoundError,
    PartialResultError,
    TLSError,
    UnexpectedResponseError,
)
from ._wire import FloatArray

#: Texts per request when neither the provider nor the caller says otherwise.
DEFAULT_BATCH_SIZE = 16
#: Requests in flight at once per call, unless configured.
DEFAULT_CONCURRENCY = 16

# Errors every further request would meet too. A connection dropped mid-request
# (ConnectionError.opened) is not one of them: it fails only its own batch.
_FATAL = (
    AuthenticationError,
    AuthorizationError,
    NotFoundError,
    TLSError,
    ConnectionError,
    ConfigurationError,
    EndpointMismatchError,
)


def _is_fatal(error: BaseException) -> bool:
    if isinstance(error, ConnectionError) and error.opened:
        return False
    return isinstance(error, _FATAL)


def _show(indices: Sequence[int]) -> str:
    text = ", ".join(str(i) for i in indices[:20])
    return text + (f", … ({len(indices) - 20} more)" if len(indices) > 20 else "")


def _as_list(texts: object) -> list[object]:
    """The inputs as a list, or an error that says how to pass them."""
    got = type(texts).__name__
    if isinstance(texts, (str, bytes)):
        raise InputError(
            f"expected a list of strings, got {got}; wrap a single text in a list"
        )
    if isinstance(texts, np.ndarray):
        if texts.ndim != 1:
            raise InputError(
                f"expected a list of strings, got a {texts.ndim}-D numpy array of "
                f"shape {texts.shape}; pass a 1-D array or a list"
            )
        if texts.dtype.kind not in ("U", "O"):
            raise InputError(
                f"expected a list of strings, got a numpy array of {texts.dtype}"
            )
        items: list[object] = texts.tolist()  # numpy str_ becomes str
        return items
    if isinstance(texts, Sequence):
        return list(texts)
    if isinstance(texts, Iterable):
        raise InputError(
            f"expected a list of strings, got {got}; pass list(...) of it, so that "
            "the inputs can be checked and counted before any request"
        )
    raise InputError(f"expected a list of strings, got {got}")


def _problem(indices: list[int], one: str, many: str) -> str:
    if len(indices) == 1:
        return f"the input at index {indices[0]} {one}"
    return f"the inputs at indices {_show(indices)} {many}"


def check_texts(texts: object, max_chars: int | None) -> list[str]:
    """Validate inputs before any request; return them as a list.

    A list, tuple or other sequence is taken, and so is a 1-D numpy array of
    strings; a generator or other iterator is refused with a hint to pass
    ``list(...)`` of it, since the inputs are all checked before the first request.

    Raises:
        InputError: naming, in one message, every non-string, every string with
            lone surrogates, every empty or whitespace-only string and every string
            longer than ``max_chars``, each kind with its indices. ``indices``
            holds them all, ascending; ``problems`` maps each kind to its indices.
    """
    items = _as_list(texts)

    not_str: list[int] = []
    unencodable: list[int] = []
    blank: list[int] = []
    long: list[int] = []
    for i, text in enumerate(items):
        if not isinstance(text, str):
            not_str.append(i)
            continue
        if not _is_utf8(text):
            unencodable.append(i)
        if not text.strip():
            blank.append(i)
        elif max_chars is not None and len(text) > max_chars:
            long.append(i)
    if not (not_str or unencodable or blank or long):
        return cast(list[str], items)
    raise _input_error(items, not_str, unencodable, blank, long, max_chars)


def _input_error(
    items: list[object],
    not_str: list[int],
    unencodable: list[int],
    blank: list[int],
    long: list[int],
    max_chars: int | None,
) -> InputError:
    """One error naming every kind of problem found, each with its indices."""
    problems: dict[str, list[int]] = {}
    parts = []
    if not_str:
        kinds = ", ".join(sorted({type(items[i]).__name__ for i in not_str}))
        problems[f"not strings ({kinds})"] = not_str
        parts.append(
            _problem(
                not_str, f"is not a string ({kinds})", f"are not strings ({kinds})"
            )
        )
    if unencodable:
        problems["lone surrogates"] = unencodable
        hint = (
            "lone surrogates, which UTF-8 cannot encode (often left by a broken PDF "
            "or JSON extraction; repair {}, e.g. with "
            "text.encode('utf-8', 'replace').decode())"
        )
        parts.append(
            _problem(
                unencodable, "holds " + hint.format("it"), "hold " + hint.format("them")
            )
        )
    if blank:
        problems["empty or whitespace only"] = blank
        hint = "empty or whitespace only (Bedrock rejects empty text)"
        parts.append(_problem(blank, f"is {hint}", f"are {hint}"))
    if long:
        problems[f"longer than {max_chars} characters"] = long
        parts.append(
            _problem(
                long,
                f"is longer than {max_chars} characters (split it or raise "
                "max_input_chars)",
                f"are longer than {max_chars} characters (split them or raise "
                "max_input_chars)",
            )
        )

    bad = sorted({i for indices in problems.values() for i in indices})
    message = "; ".join(parts)
    if len(parts) > 1:
        count = f"{len(bad)} input{'s' if len(bad) != 1 else ''}"
        message = f"{count} cannot be sent: {message}"
    return InputError(message, bad, problems)


class Plan(Sequence[tuple[int, int]]):
    """``(start, stop)`` of each request, in input order, computed when asked.

    A list would hold about 120 bytes per request: an eighth of a Titan vector's
    four bytes times 256 dimensions, for as long as the call runs.
    """

    __slots__ = ("batch_size", "total")

    def __init__(self, total: int, batch_size: int) -> None:
        self.total = total
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-self.total // self.batch_size)

    @overload
    def __getitem__(self, index: int) -> tuple[int, int]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[int, int]]: ...

    def __getitem__(
        self, index: int | slice
    ) -> tuple[int, int] | list[tuple[int, int]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError(index)
        start = position * self.batch_size
        return start, min(start + self.batch_size, self.total)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Plan(total={self.total}, batch_size={self.batch_size})"


def _is_utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def plan(n: int, batch_size: int) -> Plan:
    """``(start, stop)`` of each request, in input order."""
    if batch_size < 1:
        raise ConfigurationError(f"batch_size must be at least 1, got {batch_size}")
    return Plan(n, batch_size)


@dataclass
class Assembly:
    """The result array of one call, filled in by batches as they finish.

    ``out`` may be given (e.g. a memory-mapped file); otherwise it is allocated once
    the dimension is known.
    """

    total: int
    dims: int | None = None
    out: FloatArray | None = None
    done: np.ndarray = field(init=False)
    failures: list[tuple[tuple[int, int], BaseException]] = field(default_factory=list)
    fatal: BaseException | None = None
    halt: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.done = np.zeros(self.total, dtype=bool)
        if self.out is not None:
            shape = self.out.shape
            if len(shape) != 2 or shape[0] != self.total:
                raise ConfigurationError(
                    f"out must be a 2-D array with a row for each of the "
                    f"{self.total} inputs, got shape {shape}"
                )
            if self.dims is not None and shape[1] != self.dims:
                raise ConfigurationError(
                    f"out has {shape[1]} columns, but the endpoint's vectors have "
                    f"{self.dims} dimensions"
                )
            self.dims = int(shape[1])

    def rows(self, start: int, stop: int, dims: int) -> FloatArray:
        """The view a batch writes into; allocates ``out`` on first use."""
        with self._lock:
            if self.out is None:
                self.dims = dims
                self.out = np.zeros((self.total, dims), dtype=np.float32)
        assert self.out is not None
        if dims != self.dims:
            raise UnexpectedResponseError(
                f"embedding response: results have {dims} dimensions, earlier ones "
                f"had {self.dims}"
            )
        return self.out[start:stop]

    def succeed(self, start: int, stop: int) -> None:
        """Mark a batch written."""
        self.done[start:stop] = True

    def fail(self, start: int, stop: int, error: BaseException) -> None:
        """Record a failed batch; a fatal error stops the call."""
        with self._lock:
            self.failures.append(((start, stop), error))
            if _is_fatal(error) and self.fatal is None:
                self.fatal = error
                self.halt.set()

    def cancel(self) -> None:
        """Stop the call: the caller has given up on it.

        No further batch is handed out, and requests waiting for a pacing slot or
        a retry (on threads) are not sent.
        """
        self.halt.set()

    @property
    def stopped(self) -> bool:
        """True once no further batch should be sent: cancelled, or a fatal error."""
        return self.halt.is_set()

    def result(self) -> FloatArray:
        """The full array, or :class:`PartialResultError` if any input has none."""
        if bool(self.done.all()):
            if self.out is None:
                return np.zeros((self.total, self.dims or 0), dtype=np.float32)
            return self.out
        if not self.done.any():
            # Nothing succeeded: the error itself says more than a list of indices.
            if len(self.failures) == 1:
                raise self.failures[0][1]
            if self.fatal is not None:
                raise self.fatal
        failed = np.flatnonzero(~self.done).tolist()
        ordered = sorted(self.failures, key=lambda item: item[0])
        errors = [(list(range(a, b)), err) for (a, b), err in ordered]
        if self.fatal is not None:
            reported = {i for idx, _ in errors for i in idx}
            skipped = [i for i in failed if i not in reported]
            if skipped:
                errors.append((skipped, self.fatal))
        raise PartialResultError(failed, errors, self.out, self.done.copy(), self.total)
