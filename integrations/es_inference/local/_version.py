"""The Elasticsearch version the local server pretends to be, and what it implies.

Response shapes and available routes changed across releases (see the fact sheet's
version timeline); each property below names one such change and the first
release that has it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:[-+].*)?$")


@dataclass(frozen=True)
class EsVersion:
    """A parsed ``major.minor.patch`` version string.

    Args:
        number: The version as reported by ``GET /`` (e.g. ``"9.1.0"``).
        parts: ``(major, minor, patch)``.
    """

    number: str
    parts: tuple[int, int, int]

    @classmethod
    def parse(cls, number: str) -> EsVersion:
        """Parse ``number``; raises ValueError when it is not ``X.Y[.Z]``."""
        match = _VERSION.match(number.strip())
        if match is None:
            raise ValueError(f"not an Elasticsearch version: {number!r}")
        major, minor, patch = match.groups()
        return cls(number.strip(), (int(major), int(minor), int(patch or 0)))

    def at_least(self, major: int, minor: int = 0, patch: int = 0) -> bool:
        """Whether this version is ``major.minor.patch`` or later."""
        return self.parts >= (major, minor, patch)

    def _from_8_19_or_9_1(self) -> bool:
        return self.at_least(9, 1) or (self.parts[0] == 8 and self.at_least(8, 19))

    @property
    def legacy_models(self) -> bool:
        """Before 8.15 GET answered ``{"models": [...]}`` with ``model_id``."""
        return not self.at_least(8, 15)

    @property
    def delete_lists_pipelines(self) -> bool:
        """From 8.15 DELETE answers ``pipelines`` and takes ``dry_run``/``force``."""
        return self.at_least(8, 15)

    @property
    def delete_lists_indexes(self) -> bool:
        """From 8.16 DELETE also answers ``indexes``."""
        return self.at_least(8, 16)

    @property
    def chunking(self) -> bool:
        """From 8.16 ``chunking_settings`` exist, defaulting to sentence/250/1."""
        return self.at_least(8, 16)

    @property
    def stream_route(self) -> bool:
        """From 8.16 ``POST .../_stream`` is routed."""
        return self.at_least(8, 16)

    @property
    def bedrock_streaming(self) -> bool:
        """From 8.17 Bedrock completion endpoints can stream."""
        return self.at_least(8, 17)

    @property
    def update_route(self) -> bool:
        """From 8.17 ``PUT .../_update`` is routed."""
        return self.at_least(8, 17)

    @property
    def omit_empty_task_settings(self) -> bool:
        """From 8.17 an empty ``task_settings`` object is left out."""
        return self.at_least(8, 17)

    @property
    def root_input_type(self) -> bool:
        """From 8.19 / 9.1 the POST body takes ``input_type``."""
        return self._from_8_19_or_9_1()

    @property
    def bedrock_truncate(self) -> bool:
        """From 8.19 / 9.1 Bedrock embeddings accept the ``truncate`` task setting."""
        return self._from_8_19_or_9_1()

    @property
    def more_chunking_strategies(self) -> bool:
        """From 8.19 / 9.1 the ``none`` and ``recursive`` strategies exist."""
        return self._from_8_19_or_9_1()

    @property
    def timeout_status(self) -> int:
        """HTTP status of ``timeout_exception``: 500 on 8.x, 429 from 9.0."""
        return 429 if self.at_least(9) else 500

    def not_found_reason(self, inference_id: str) -> str:
        """The 404 reason for an unknown endpoint id."""
        if self.legacy_models:
            return f"Model not found [{inference_id}]"
        return f"Inference endpoint not found [{inference_id}]"
