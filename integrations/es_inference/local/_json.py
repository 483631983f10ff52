"""JSON for the local server: orjson when installed, the standard library otherwise.

Embedding vectors are float32 arrays. Both paths print each component with its
shortest float32 representation, as Java does for ``float`` values, so a vector
parsed back as float32 is bit-identical to the one the server computed.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np

_orjson: ModuleType | None
try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only without the optional wheel
    _orjson = None

__all__ = ["HAVE_ORJSON", "DecodeError", "dumps", "loads"]

HAVE_ORJSON = _orjson is not None

#: Raised by :func:`loads` on malformed input (orjson's error subclasses it too).
DecodeError = json.JSONDecodeError


def _shortest_float32(array: np.ndarray) -> list[Any]:
    if array.dtype == np.float32:
        return [float(str(v)) for v in array.ravel()]
    return array.tolist()  # type: ignore[no-any-return]


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.ndim > 1:
            return [_default(row) for row in obj]
        return _shortest_float32(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot serialize {type(obj).__name__} as JSON")


def dumps(obj: Any) -> bytes:
    """Serialize ``obj`` to compact UTF-8 JSON bytes (numpy arrays allowed)."""
    if _orjson is not None:
        encoded: bytes = _orjson.dumps(obj, option=_orjson.OPT_SERIALIZE_NUMPY)
        return encoded
    return json.dumps(
        obj, default=_default, separators=(",", ":"), ensure_ascii=False
    ).encode()


def loads(data: bytes | str) -> Any:
    """Parse JSON text; raises :class:`DecodeError` when it is malformed."""
    if _orjson is not None:
        return _orjson.loads(data)
    return json.loads(data)
