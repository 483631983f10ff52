"""Texts that ship with every CPython, for the demo and the benchmark."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Passage:
    """A piece of one reference topic."""

    topic: str
    text: str


def reference_passages(max_chars: int = 1200) -> list[Passage]:
    """The Python language reference (``pydoc_data.topics``) cut into passages.

    Paragraphs are packed greedily up to ``max_chars``; each passage starts with its
    topic's title line so that it can be understood alone.
    """
    from pydoc_data.topics import topics

    # Some topics repeat others whole ("compound" holds "with", "try", …): keep each
    # paragraph only in the shortest topic that has it, so that a question about
    # the with statement finds the "with" topic.
    owner: dict[str, str] = {}
    for topic, body in sorted(topics.items(), key=lambda item: -len(item[1])):
        for paragraph in _paragraphs(body):
            owner[paragraph] = topic

    passages = []
    for topic, body in sorted(topics.items()):
        title = body.strip().splitlines()[0].strip()
        current: list[str] = []
        size = 0
        for paragraph in _paragraphs(body):
            if owner[paragraph] != topic:
                continue
            if current and size + len(paragraph) > max_chars:
                passages.append(Passage(topic, _join(title, current)))
                current, size = [], 0
            current.append(paragraph[: max_chars * 4])
            size += len(paragraph)
        if current:
            passages.append(Passage(topic, _join(title, current)))
    return passages


def _paragraphs(body: str) -> list[str]:
    return [
        paragraph.strip()
        for paragraph in body.split("\n\n")
        if paragraph.strip() and not set(paragraph.strip()) <= set("*=-")
    ]


def _join(title: str, paragraphs: list[str]) -> str:
    text = "\n\n".join(paragraphs)
    return text if text.startswith(title) else f"{title}\n\n{text}"


def stdlib_docstrings(limit: int | None = None) -> list[str]:
    """Docstrings of standard-library modules, classes and functions (larger runs)."""
    import importlib
    import inspect
    import sys
    import warnings

    names = sorted(
        name
        for name in sys.stdlib_module_names
        if not name.startswith("_") and name not in _SKIP_MODULES
    )
    texts: list[str] = []
    seen: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            try:
                module = importlib.import_module(name)
            except Exception:
                continue
            objects = [module, *(obj for _, obj in inspect.getmembers(module))]
            for obj in objects:
                doc = inspect.getdoc(obj) if callable(obj) or obj is module else None
                if doc and doc.strip() and doc not in seen:
                    seen.add(doc)
                    texts.append(doc.strip()[:8000])
                    if limit is not None and len(texts) >= limit:
                        return texts
    return texts


_SKIP_MODULES = frozenset(
    {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "pydoc"}
)
