"""LangChain and LlamaIndex callback handlers that keep every payload."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import BaseCallbackHandler as LangChainHandler
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.callbacks.schema import CBEventType


class LangChainPayloads(LangChainHandler):
    """Keeps every LangChain LLM callback payload in ``seen``."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def on_llm_start(
        self, serialized: dict[str, Any], prompts: list[str], **kwargs: Any
    ) -> None:
        self.seen.append({"serialized": serialized, **kwargs})

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.seen.append(response)

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        self.seen.append(error)


class LlamaPayloads(BaseCallbackHandler):
    """Keeps every LlamaIndex callback payload in ``seen``."""

    def __init__(self) -> None:
        super().__init__([], [])
        self.seen: list[Any] = []

    def on_event_start(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        parent_id: str = "",
        **kwargs: Any,
    ) -> str:
        self.seen.append(payload)
        return event_id

    def on_event_end(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        **kwargs: Any,
    ) -> None:
        self.seen.append(payload)

    def start_trace(self, trace_id: str | None = None) -> None:
        """Traces are not needed here."""

    def end_trace(
        self,
        trace_id: str | None = None,
        trace_map: dict[str, list[str]] | None = None,
    ) -> None:
        """Traces are not needed here."""
