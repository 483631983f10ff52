"""Facts about Elasticsearch and Amazon Bedrock shared by the client and local server.

Only plain data lives here. The client and the local server each implement their own
logic on top of it, so that a bug on one side cannot hide the same bug on the other.
"""

from __future__ import annotations

import re
from typing import Final

#: Elasticsearch's rule for inference ids: lowercase alphanumerics, ``-`` and ``_``,
#: starting and ending with an alphanumeric.
INFERENCE_ID_PATTERN: Final = re.compile(r"^[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?$")

TASK_TYPES: Final = (
    "sparse_embedding",
    "text_embedding",
    "rerank",
    "completion",
    "chat_completion",
    "embedding",
)

BEDROCK_SERVICE: Final = "amazonbedrock"

#: Providers of the ``amazonbedrock`` service and the task types each supports.
BEDROCK_PROVIDER_TASKS: Final[dict[str, frozenset[str]]] = {
    "amazontitan": frozenset({"text_embedding", "completion", "chat_completion"}),
    "cohere": frozenset({"text_embedding", "completion", "chat_completion"}),
    "anthropic": frozenset({"completion", "chat_completion"}),
    "ai21labs": frozenset({"completion", "chat_completion"}),
    "meta": frozenset({"completion", "chat_completion"}),
    "mistral": frozenset({"completion", "chat_completion"}),
}

#: Providers whose completion accepts the ``top_k`` task setting.
BEDROCK_TOP_K_PROVIDERS: Final = frozenset({"anthropic", "cohere", "mistral"})

#: Most texts one Bedrock embedding call accepts, per provider.
BEDROCK_MAX_BATCH: Final[dict[str, int]] = {"amazontitan": 1, "cohere": 96}

#: Elasticsearch's default ``rate_limit.requests_per_minute`` for amazonbedrock.
BEDROCK_DEFAULT_REQUESTS_PER_MINUTE: Final = 240

#: Titan Text Embeddings v2 rejects inputs longer than this many characters.
TITAN_MAX_INPUT_CHARS: Final = 50_000

INPUT_TYPES: Final = ("ingest", "search", "classification", "clustering")

#: Every server-sent event Elasticsearch writes starts with a UTF-8 byte-order mark.
SSE_BOM: Final = "\ufeff"
SSE_DONE: Final = "[DONE]"
