"""JSON encoding and decoding: orjson when installed, the standard library otherwise."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment]


def dumps(value: Any) -> bytes:
    """Encode compact JSON as UTF-8 bytes."""
    if orjson is not None:
        return orjson.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: bytes | memoryview | str) -> Any:
    """Decode JSON; raises ``ValueError`` for invalid input."""
    if orjson is not None:
        return orjson.loads(data)
    return json.loads(bytes(data) if isinstance(data, memoryview) else data)


PARSER = "orjson" if orjson is not None else "json"
