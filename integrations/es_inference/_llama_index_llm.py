"""A LlamaIndex LLM served by an Elasticsearch ``completion`` endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.generic_utils import (
    astream_completion_response_to_chat_response,
    completion_response_to_chat_response,
)
from llama_index.core.base.llms.generic_utils import (
    messages_to_prompt as generic_messages_to_prompt,
)
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import Field
from typing_extensions import override

from ._fields import CompletionFields

__all__ = ["ElasticInferenceLLM"]

#: The context window of Anthropic's Claude 3 and later models on Bedrock.
DEFAULT_CONTEXT_WINDOW = 200_000
#: Tokens kept free for the answer when ``max_new_tokens`` is not set.
DEFAULT_NUM_OUTPUT = 512


class ElasticInferenceLLM(CompletionFields, CustomLLM):
    """A LlamaIndex completion model served by an Elasticsearch endpoint.

    On first use the adapter gets, creates or reuses its ``completion`` endpoint;
    with only ``inference_id`` it uses that endpoint as it is. ``acomplete`` and
    ``astream_complete`` (and the chat methods built on them) run natively on
    asyncio. Stop sequences (``stop``, or ``stop=`` per call) are applied on this
    side; task settings can be overridden per call by keyword.

    ``context_window`` and ``num_output`` only tell LlamaIndex how much text it may
    pack into one prompt. ``context_window`` defaults to 200,000 tokens, the window
    of the Claude 3 and later models this adapter is most used with; set it lower
    for smaller models (e.g. 8,192 for Titan Text Express or Llama 3 8B), or
    LlamaIndex may build prompts the model rejects. ``num_output`` defaults to
    ``max_new_tokens`` when set, else 512: room for a paragraph-sized answer without
    taking much from the retrieved text. It reserves space; it does not limit the
    answer (``max_new_tokens`` does).

    Example:
        .. code-block:: python

            from llama_index.core import Settings
            from es_inference.llama_index import ElasticInferenceLLM

            Settings.llm = ElasticInferenceLLM(
                model="anthropic.claude-3-haiku-20240307-v1:0",
                region="us-east-1",
                es_url="https://localhost:9200",
                max_new_tokens=512,
            )
            print(Settings.llm.complete("What is Elastic?").text)
    """

    context_window: int = Field(
        default=DEFAULT_CONTEXT_WINDOW,
        gt=0,
        description="Tokens the model takes, prompt and answer together.",
    )
    num_output: int | None = Field(
        default=None,
        gt=0,
        description="Tokens reserved for the answer; max_new_tokens, else 512.",
    )

    @classmethod
    @override
    def class_name(cls) -> str:
        return "ElasticInferenceLLM"

    @property
    @override
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.num_output or self.max_new_tokens or DEFAULT_NUM_OUTPUT,
            is_chat_model=False,
            model_name=self.model or self.inference_id or "unknown",
        )

    def _prompt(self, prompt: str, formatted: bool) -> str:
        convert = self.completion_to_prompt
        return prompt if formatted or convert is None else convert(prompt)

    def _call_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        # A call may pass stop= and task settings; stop= replaces the field.
        extra = dict(kwargs)
        stop = extra.pop("stop", None)
        return {
            "task_settings": self.call_task_settings(extra),
            "stop": self.stop if stop is None else stop,
        }

    def _chat_prompt(self, messages: Sequence[ChatMessage]) -> str:
        convert = self.messages_to_prompt or generic_messages_to_prompt
        return convert(messages)

    @llm_completion_callback()
    @override
    def complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        text = self.completion_service().complete(
            self._prompt(prompt, formatted),
            **self._call_options(kwargs),
        )
        return CompletionResponse(text=text)

    @llm_completion_callback()
    @override
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        pieces = self.completion_service().stream(
            self._prompt(prompt, formatted),
            **self._call_options(kwargs),
        )

        def gen() -> CompletionResponseGen:
            text = ""
            for piece in pieces:
                text += piece
                yield CompletionResponse(text=text, delta=piece)

        return gen()

    @llm_completion_callback()
    @override
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        text = await self.completion_service().acomplete(
            self._prompt(prompt, formatted),
            **self._call_options(kwargs),
        )
        return CompletionResponse(text=text)

    @llm_completion_callback()
    @override
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        pieces = self.completion_service().astream(
            self._prompt(prompt, formatted),
            **self._call_options(kwargs),
        )

        async def gen() -> CompletionResponseAsyncGen:
            text = ""
            async for piece in pieces:
                text += piece
                yield CompletionResponse(text=text, delta=piece)

        return gen()

    @llm_chat_callback()
    @override
    async def achat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponse:
        prompt = self._chat_prompt(messages)
        completion = await self.acomplete(prompt, formatted=True, **kwargs)
        return completion_response_to_chat_response(completion)

    @llm_chat_callback()
    @override
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        prompt = self._chat_prompt(messages)
        completions = await self.astream_complete(prompt, formatted=True, **kwargs)
        return astream_completion_response_to_chat_response(completions)
