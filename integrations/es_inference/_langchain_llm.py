"""A LangChain LLM served by an Elasticsearch ``completion`` endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseLLM, LangSmithParams
from langchain_core.outputs import Generation, GenerationChunk, LLMResult
from pydantic import ConfigDict, Field
from typing_extensions import override

from ._fields import CompletionFields

__all__ = ["ElasticInferenceLLM"]


class ElasticInferenceLLM(CompletionFields, BaseLLM):
    """A LangChain text-completion model served by an Elasticsearch endpoint.

    On first use the adapter gets, creates or reuses its ``completion`` endpoint;
    with only ``inference_id`` it uses that endpoint as it is. Each prompt is one
    request: ``batch`` sends them ``concurrency`` at a time and keeps their order.
    ``stream`` and ``astream`` read the endpoint's event stream and hand each piece
    to the callbacks (``on_llm_new_token``) as it arrives.

    Stop sequences (``stop`` here or per call) are applied on this side: the answer
    ends before the earliest one, and a stream is closed once one is seen.

    Example:
        .. code-block:: python

            from es_inference.langchain import ElasticInferenceLLM

            llm = ElasticInferenceLLM(
                model="anthropic.claude-3-haiku-20240307-v1:0",
                region="us-east-1",
                es_url="https://localhost:9200",
                max_new_tokens=256,
                temperature=0.2,
            )
            answer = llm.invoke("What is Elastic?", stop=["\\n\\n"])
            for piece in llm.stream("Tell me more.", temperature=0.7):
                print(piece, end="")

    ``max_new_tokens``, ``temperature``, ``top_p`` and ``top_k`` are sent with every
    request and can be overridden per call by keyword, or with ``task_settings=``.
    The ``task_settings`` field, by contrast, is what a newly created endpoint
    stores.
    """

    # LangChain's models ignore unknown arguments; a misspelt setting is an error
    # here, as in the other adapters.
    model_config = ConfigDict(extra="forbid")

    streaming: bool = Field(
        default=False,
        description="Stream single-prompt calls (invoke) so that callbacks receive "
        "each piece; batches are always sent whole.",
    )

    @property
    @override
    def _llm_type(self) -> str:
        return "elastic-inference"

    @property
    @override
    def _identifying_params(self) -> Mapping[str, Any]:
        # Shown to callbacks and tracers: no credentials, no URL.
        return {
            "inference_id": self.inference_id,
            "service": self.service,
            "model": self.model,
            "provider": self.provider,
            "region": self.region,
            **self.default_task_settings(),
            "stop": self.stop,
        }

    @override
    def _get_ls_params(
        self, stop: list[str] | None = None, **kwargs: Any
    ) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "elastic_inference"
        max_new_tokens = kwargs.get("max_new_tokens", self.max_new_tokens)
        if isinstance(max_new_tokens, int):
            params["ls_max_tokens"] = max_new_tokens
        return params

    def _stops(self, stop: list[str] | None) -> list[str] | None:
        return stop if stop is not None else self.stop

    def _result(self, texts: list[str]) -> LLMResult:
        return LLMResult(
            generations=[[Generation(text=text)] for text in texts],
            llm_output={"model": self.model, "inference_id": self.inference_id},
        )

    @override
    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        if self.streaming and len(prompts) == 1:
            pieces = self._stream(prompts[0], stop, run_manager, **kwargs)
            return self._result(["".join(chunk.text for chunk in pieces)])
        texts = self.completion_service().complete_many(
            prompts,
            task_settings=self.call_task_settings(kwargs),
            stop=self._stops(stop),
        )
        return self._result(texts)

    @override
    async def _agenerate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        if self.streaming and len(prompts) == 1:
            pieces = [
                chunk.text
                async for chunk in self._astream(
                    prompts[0], stop, run_manager, **kwargs
                )
            ]
            return self._result(["".join(pieces)])
        texts = await self.completion_service().acomplete_many(
            prompts,
            task_settings=self.call_task_settings(kwargs),
            stop=self._stops(stop),
        )
        return self._result(texts)

    @override
    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        pieces = self.completion_service().stream(
            prompt,
            task_settings=self.call_task_settings(kwargs),
            stop=self._stops(stop),
        )
        sent = False
        for piece in pieces:
            chunk = GenerationChunk(text=piece)
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            sent = True
            yield chunk
        if not sent:
            # LangChain treats a stream without chunks as a failure; this answer was
            # empty (or began with a stop sequence).
            yield GenerationChunk(text="")

    @override
    async def _astream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        pieces = self.completion_service().astream(
            prompt,
            task_settings=self.call_task_settings(kwargs),
            stop=self._stops(stop),
        )
        sent = False
        async for piece in pieces:
            chunk = GenerationChunk(text=piece)
            if run_manager is not None:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            sent = True
            yield chunk
        if not sent:
            yield GenerationChunk(text="")
