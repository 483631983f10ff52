"""Local embedding models behind the server's endpoints.

Two base models are available:

* ``wordllama``: the small static model shipped inside the ``wordllama`` wheel
  (a 32,000 x 256 token-embedding table and its tokenizer). A text's vector is the
  mean of its tokens' rows, L2-normalised. The mean is weighted very slightly by
  token position (weights ``1 + 0.1 cos(position)``): a plain mean cannot tell
  "number 13 about topic 6" from "number 36 about topic 1", while every real
  embedding model does. The package is *not* imported: its import configures
  global logging and its loader may try to download, so the two files are located
  through the import system and read directly.
* ``hashing``: deterministic feature hashing of lower-cased word tokens. It needs
  no data files, so tests that must not depend on the wheel can use it.
* ``seeded``: a dense pseudo-random unit vector drawn from a generator seeded with
  a hash of the text. It carries no meaning but costs a few microseconds per text,
  so that load tests and benchmarks measure the client rather than the model,
  with the dense floats a real model returns.

Endpoints ask for a dimension that depends on the Bedrock model id (Titan v2: 1024,
its default, as Elasticsearch sends no ``dimensions``; Cohere v3: 1024; Titan v1:
1536; E5 small: 384). The wordllama model reaches larger
sizes through a fixed, seeded random projection followed by re-normalisation, which
keeps cosine similarities close to those of the 256-dimensional vectors.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import logging
import re
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "BASE_MODELS",
    "EmbeddingModel",
    "HashingModel",
    "ModelUnavailableError",
    "SeededModel",
    "WordLlamaModel",
    "dims_for_model",
    "get_model",
]

logger = logging.getLogger("es_inference.local.models")

FloatMatrix = npt.NDArray[np.float32]

BASE_MODELS = ("wordllama", "hashing", "seeded")

_WEIGHTS = ("weights", "l2_supercat_256.safetensors")
_TOKENIZER = ("tokenizers", "l2_supercat_tokenizer_config.json")
_PROJECTION_SEED = 0x5EED_E5
_POSITION_WEIGHT = 0.1

#: Output size per Bedrock / Elasticsearch model id; anything else gets 1024.
_MODEL_DIMS: dict[str, int] = {
    "amazon.titan-embed-text-v2:0": 1024,
    "amazon.titan-embed-text-v1": 1536,
    "amazon.titan-embed-g1-text-02": 1536,
    "cohere.embed-english-v3": 1024,
    "cohere.embed-multilingual-v3": 1024,
    ".multilingual-e5-small": 384,
    ".multilingual-e5-small_linux-x86_64": 384,
}
_DEFAULT_DIMS = 1024


def dims_for_model(model_id: str) -> int:
    """The embedding size the server uses for ``model_id``."""
    return _MODEL_DIMS.get(model_id, _DEFAULT_DIMS)


class ModelUnavailableError(RuntimeError):
    """The files of a local model cannot be found or read."""


class EmbeddingModel(Protocol):
    """What the server needs from a base model."""

    name: str

    def embed(self, texts: Sequence[str], dims: int) -> FloatMatrix:
        """Embed ``texts`` into L2-normalised float32 rows of size ``dims``."""
        ...


def _normalise(matrix: FloatMatrix) -> FloatMatrix:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.maximum(norms, np.float32(1e-12), out=norms)
    normalised: FloatMatrix = (matrix / norms).astype(np.float32, copy=False)
    return normalised


@lru_cache(maxsize=16)
def _projection(base_dims: int, dims: int) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(_PROJECTION_SEED + 7919 * dims + base_dims)
    matrix: npt.NDArray[np.float64] = rng.standard_normal((base_dims, dims))
    matrix /= np.sqrt(dims)
    matrix.setflags(write=False)
    return matrix


class WordLlamaModel:
    """Mean-of-token-embeddings model read from the ``wordllama`` wheel's files.

    Args:
        table: The ``(vocab, 256)`` token-embedding table (float32).
        tokenizer: A ``tokenizers.Tokenizer`` for that vocabulary.
    """

    name = "wordllama"

    def __init__(self, table: FloatMatrix, tokenizer: Any) -> None:
        self._table = table
        self._tokenizer = tokenizer
        self.base_dims = int(table.shape[1])
        empty = np.zeros(self.base_dims, dtype=np.float32)
        empty[0] = 1.0
        self._empty = empty

    @classmethod
    def load(cls) -> WordLlamaModel:
        """Read the weights and tokenizer of the installed ``wordllama`` wheel.

        Raises:
            ModelUnavailableError: The wheel or one of its libraries is missing.
        """
        spec = importlib.util.find_spec("wordllama")
        if spec is None or not spec.submodule_search_locations:
            raise ModelUnavailableError(
                "the wordllama model needs the 'wordllama' package "
                "(install es-inference[local]) or use model='hashing'"
            )
        root = Path(next(iter(spec.submodule_search_locations)))
        weights, tokenizer_file = root.joinpath(*_WEIGHTS), root.joinpath(*_TOKENIZER)
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelUnavailableError(
                "the wordllama model needs 'safetensors' and 'tokenizers' "
                "(install es-inference[local]) or use model='hashing'"
            ) from exc
        if not weights.is_file() or not tokenizer_file.is_file():
            raise ModelUnavailableError(
                "the installed wordllama package lacks its 256-dimensional model files"
            )
        tensors = load_file(str(weights))
        table = np.ascontiguousarray(tensors["embedding.weight"], dtype=np.float32)
        table.setflags(write=False)
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        logger.info(
            "loaded the wordllama model: %d tokens x %d dimensions",
            table.shape[0],
            table.shape[1],
        )
        return cls(table, tokenizer)

    def base_embed(self, texts: Sequence[str]) -> FloatMatrix:
        """The normalised 256-dimensional vectors of ``texts``."""
        count = len(texts)
        out = np.empty((count, self.base_dims), dtype=np.float32)
        if count == 0:
            return out
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), np.int64, count)
        ids = np.fromiter(
            itertools.chain.from_iterable(e.ids for e in encodings),
            np.int64,
            int(lengths.sum()),
        )

        nonempty = lengths > 0
        if nonempty.any():
            offsets = np.cumsum(lengths) - lengths
            positions = np.arange(ids.size) - np.repeat(offsets, lengths)
            weights = (1.0 + _POSITION_WEIGHT * np.cos(positions)).astype(np.float32)
            starts = offsets[nonempty]
            sums = np.add.reduceat(self._table[ids] * weights[:, None], starts, axis=0)
            out[nonempty] = sums / np.add.reduceat(weights, starts)[:, None]
        out[~nonempty] = self._empty
        return _normalise(out)

    def embed(self, texts: Sequence[str], dims: int) -> FloatMatrix:
        """Embed ``texts`` at ``dims`` dimensions (projected when not 256)."""
        base = self.base_embed(texts)
        if dims == self.base_dims:
            return base
        # Projected in float64 so that a text's vector does not depend on which
        # other texts share its batch (BLAS kernels differ by batch shape).
        projected = base.astype(np.float64) @ _projection(self.base_dims, dims)
        projected /= np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)
        result: FloatMatrix = projected.astype(np.float32)
        return result


_WORD = re.compile(r"\w+")


@lru_cache(maxsize=65_536)
def _feature(token: str, dims: int) -> tuple[int, float]:
    digest = int.from_bytes(
        hashlib.blake2b(token.encode(), digest_size=8).digest(), "big"
    )
    return digest % dims, (1.0 if (digest >> 63) & 1 == 0 else -1.0)


class HashingModel:
    """Feature hashing of lower-cased word tokens (no data files needed)."""

    name = "hashing"

    def embed(self, texts: Sequence[str], dims: int) -> FloatMatrix:
        """Embed ``texts`` at ``dims`` dimensions."""
        out = np.zeros((len(texts), dims), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = _WORD.findall(text.lower())
            if not tokens:
                out[row, 0] = 1.0
                continue
            for token in tokens:
                index, sign = _feature(token, dims)
                out[row, index] += sign
            if not out[row].any():
                out[row, 0] = 1.0
        return _normalise(out)


class SeededModel:
    """A dense random unit vector per text, the same for the same text and size."""

    name = "seeded"

    def embed(self, texts: Sequence[str], dims: int) -> FloatMatrix:
        """Embed ``texts`` at ``dims`` dimensions."""
        out = np.empty((len(texts), dims), dtype=np.float32)
        for row, text in enumerate(texts):
            digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
            rng = np.random.default_rng(int.from_bytes(digest, "big") + dims)
            rng.standard_normal(dims, dtype=np.float32, out=out[row])
        return _normalise(out)


_FACTORIES: dict[str, Callable[[], EmbeddingModel]] = {
    "wordllama": WordLlamaModel.load,
    "hashing": HashingModel,
    "seeded": SeededModel,
}

_models: dict[str, EmbeddingModel] = {}
_models_lock = threading.Lock()


def get_model(name: str) -> EmbeddingModel:
    """The process-wide instance of base model ``name``, loaded on first use.

    Raises:
        ValueError: ``name`` is not one of :data:`BASE_MODELS`.
        ModelUnavailableError: The model's files cannot be loaded.
    """
    model = _models.get(name)
    if model is not None:
        return model
    if name not in BASE_MODELS:
        raise ValueError(f"unknown local model {name!r}; expected one of {BASE_MODELS}")
    with _models_lock:
        model = _models.get(name)
        if model is None:
            model = _FACTORIES[name]()
            _models[name] = model
    return model


def is_loaded(name: str) -> bool:
    """Whether ``name`` has already been loaded in this process."""
    return name in _models
