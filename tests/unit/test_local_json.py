"""JSON output of the local server, with and without orjson."""

from __future__ import annotations

import json

import numpy as np
import pytest

from es_inference.local import _json


@pytest.mark.parametrize("use_orjson", [True, False])
def test_float32_vectors_use_their_shortest_representation(
    monkeypatch: pytest.MonkeyPatch, use_orjson: bool
) -> None:
    if not use_orjson:
        monkeypatch.setattr(_json, "_orjson", None)
    elif not _json.HAVE_ORJSON:
        pytest.skip("orjson is not installed")
    values = np.array([0.1, 1 / 3, 5.614787e-4, -2.0], dtype=np.float32)
    encoded = _json.dumps({"embedding": values, "bytes": np.array([1, -2], np.int8)})
    parsed = json.loads(encoded)
    assert parsed["bytes"] == [1, -2]
    assert parsed["embedding"][0] == 0.1 and parsed["embedding"][1] == 0.33333334
    np.testing.assert_array_equal(np.array(parsed["embedding"], np.float32), values)
    assert b"0.1000000014901161" not in encoded


def test_loads_raises_decode_error() -> None:
    with pytest.raises(_json.DecodeError):
        _json.loads(b"{nope")
