"""``chunking_settings`` of embedding endpoints: validation and stored form.

The server does not chunk anything itself (a plain ``POST _inference`` sends the
input as-is); it validates and echoes the settings like Elasticsearch.
"""

from __future__ import annotations

from typing import Any

from ._errors import illegal_argument
from ._javafmt import copied_capacity, hash_order, java_list
from ._settings import Extractor
from ._version import EsVersion

__all__ = ["DEFAULT_CHUNKING", "parse_chunking"]

_SCOPE = "chunking_settings"

#: What an endpoint created without chunking settings stores (8.16 and later).
DEFAULT_CHUNKING: dict[str, Any] = {
    "strategy": "sentence",
    "max_chunk_size": 250,
    "sentence_overlap": 1,
}

_PLAINTEXT = ["(?<!\\n)\\n\\n(?!\\n)", "(?<!\\n)\\n(?!\\n)"]
_MARKDOWN = [
    "\n# ",
    "\n## ",
    "\n### ",
    "\n#### ",
    "\n##### ",
    "\n###### ",
    "\n^(?!\\s*$).*\\n-{1,}\\n",
    "\n^(?!\\s*$).*\\n={1,}\\n",
]
_VALID_KEYS = {
    "sentence": ("strategy", "max_chunk_size", "sentence_overlap"),
    "word": ("strategy", "max_chunk_size", "overlap"),
    "recursive": ("strategy", "max_chunk_size", "separator_group", "separators"),
    "none": ("strategy",),
}
_LABEL = {
    "sentence": "Sentence",
    "word": "Word",
    "recursive": "Recursive",
    "none": "Sentence",
}


def parse_chunking(raw: Any, version: EsVersion) -> dict[str, Any]:
    """Validate request ``chunking_settings`` and return the stored form.

    Args:
        raw: The value from the request (absent or ``null`` means default).
        version: The emulated Elasticsearch version.

    Raises:
        EsError: 400 with Elasticsearch's message.
    """
    if raw is None or raw == {}:
        return dict(DEFAULT_CHUNKING)
    if not isinstance(raw, dict):
        raise illegal_argument(
            "Can't generate Chunker without ChunkingStrategy provided"
        )
    if "strategy" not in raw:
        raise illegal_argument(
            "Can't generate Chunker without ChunkingStrategy provided"
        )

    strategy = str(raw["strategy"])
    allowed = ["word", "sentence"]
    if version.more_chunking_strategies:
        allowed += ["recursive", "none"]
    if strategy not in allowed:
        raise illegal_argument(f"Invalid chunkingStrategy {strategy}")

    settings = dict(raw)
    check = Extractor()
    invalid = [key for key in settings if key not in _VALID_KEYS[strategy]]
    if invalid:
        ordered = hash_order(invalid, copied_capacity(len(settings)))
        check.errors.append(
            f"{_LABEL[strategy]} based chunking settings can not have the following "
            f"settings: {java_list(ordered)}"
        )
    if strategy == "none":
        check.raise_if_any()
        return {"strategy": "none"}
    if strategy == "sentence":
        return _sentence(settings, check)
    if strategy == "word":
        return _word(settings, check)
    return _recursive(settings, check)


def _sentence(settings: dict[str, Any], check: Extractor) -> dict[str, Any]:
    size = check.required_int_between(settings, "max_chunk_size", 20, None, _SCOPE)
    before = len(check.errors)
    overlap = check.take(settings, "sentence_overlap", "Integer")
    if len(check.errors) == before and overlap is not None and overlap not in (0, 1):
        check.errors.append(f"sentence_overlap[{overlap}] must be either 0 or 1")
    check.raise_if_any()
    return {
        "strategy": "sentence",
        "max_chunk_size": size,
        "sentence_overlap": 1 if overlap is None else overlap,
    }


def _word(settings: dict[str, Any], check: Extractor) -> dict[str, Any]:
    size = check.required_int_between(settings, "max_chunk_size", 10, 300, _SCOPE)
    overlap = None
    if size is not None:
        overlap = check.required_positive_int(settings, "overlap", _SCOPE)
        if overlap is not None and overlap > size // 2:
            check.errors.append(check.too_large(_SCOPE, "overlap", overlap, size // 2))
    check.raise_if_any()
    return {"strategy": "word", "max_chunk_size": size, "overlap": overlap}


def _recursive(settings: dict[str, Any], check: Extractor) -> dict[str, Any]:
    size = check.required_int_between(settings, "max_chunk_size", 10, 300, _SCOPE)
    group = check.optional_enum(
        settings, "separator_group", _SCOPE, ("markdown", "plaintext")
    )
    separators = check.take(settings, "separators", "List")
    if separators is not None and group is not None:
        check.errors.append(
            "Recursive chunking settings can not have both separators and separator_set"
        )
    if group is not None:
        separators = list(_MARKDOWN if group == "markdown" else _PLAINTEXT)
    elif separators is not None and not separators:
        check.errors.append(
            "Recursive chunking settings can not have an empty list of separators"
        )
    check.raise_if_any()
    return {
        "strategy": "recursive",
        "max_chunk_size": size,
        "separators": list(_PLAINTEXT) if separators is None else separators,
    }
