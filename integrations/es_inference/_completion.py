"""Text completion through a ``completion`` endpoint, whole or streamed.

Everything here but :class:`CompletionService` is pure: task-setting rules, their
field-by-field merge and stop sequences. The service sends one request per prompt
(Elasticsearch would merge a list of inputs into one conversation), pacing and
retrying like the embedding service.

Stop sequences are applied on this side: no ``completion`` endpoint has such a
setting. The answer is cut before the earliest stop sequence. A streamed answer holds
back only the end of the text that could still grow into a stop sequence, and closes
the stream once one is found. The model may still generate (and bill) tokens past the
stop sequence upstream; only reading them is saved.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from ._batch import Assembly, check_texts
from ._config import ConnectionConfig
from ._constants import BEDROCK_SERVICE, BEDROCK_TOP_K_PROVIDERS
from ._endpoint import EndpointSpec, ReadyEndpoint
from ._errors import (
    ApiError,
    ConfigurationError,
    EsInferenceError,
    InputError,
    NotFoundError,
    PartialCompletionError,
    PartialResultError,
    ResponseDecodeError,
    StreamError,
    UnexpectedResponseError,
)
from ._retry import Attempts
from ._service import InferenceService, ServiceOptions
from ._sse import CompletionStreamDecoder
from ._wire import Request, infer, parse_completion

logger = logging.getLogger("es_inference.completion")

#: The task settings of ``amazonbedrock`` completion endpoints.
BEDROCK_COMPLETION_SETTINGS = ("max_new_tokens", "temperature", "top_p", "top_k")
_UNIT_RANGE_SETTINGS = ("temperature", "top_p", "top_k")


# Task settings ------------------------------------------------------------------


def check_task_settings(
    settings: Mapping[str, Any] | None,
    *,
    service: str | None = BEDROCK_SERVICE,
    provider: str | None = None,
) -> dict[str, Any]:
    """Check completion task settings before sending; return them without ``None``s.

    For ``amazonbedrock``: ``max_new_tokens`` is a positive integer; ``temperature``,
    ``top_p`` and ``top_k`` are numbers from 0.0 to 1.0; ``top_k`` is accepted only
    by the anthropic, cohere and mistral providers (checked when ``provider`` is
    known); other keys are unknown to the service. Settings of other services are
    passed on unchecked: Elasticsearch validates them.

    Raises:
        ConfigurationError: naming the setting, the value and the rule.
    """
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise ConfigurationError(
            f"task_settings must be a mapping, got {type(settings).__name__}"
        )
    chosen = {key: value for key, value in settings.items() if value is not None}
    if service != BEDROCK_SERVICE:
        return chosen
    for key, value in chosen.items():
        if key == "max_new_tokens":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(
                    f"task setting max_new_tokens={value!r} is invalid: it must be a "
                    "positive integer"
                )
        elif key in _UNIT_RANGE_SETTINGS:
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not 0.0 <= value <= 1.0:
                raise ConfigurationError(
                    f"task setting {key}={value!r} is invalid: it must be a number "
                    "from 0.0 to 1.0"
                )
        else:
            raise ConfigurationError(
                f"task setting {key}={value!r} is unknown to amazonbedrock completion "
                f"endpoints; they accept {', '.join(BEDROCK_COMPLETION_SETTINGS)}"
            )
    if "top_k" in chosen and provider is not None:
        name = provider.lower()
        if name not in BEDROCK_TOP_K_PROVIDERS:
            raise ConfigurationError(
                f"task setting top_k={chosen['top_k']!r} is not available for Bedrock "
                f"provider {name}; only {', '.join(sorted(BEDROCK_TOP_K_PROVIDERS))} "
                "accept it"
            )
    return chosen


def merge_task_settings(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge task settings field by field; later layers win, ``None`` values skip.

    This is how Elasticsearch combines an endpoint's stored settings with those of
    a request: ``merge_task_settings(stored, request)``.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if value is not None:
                merged[key] = value
    return merged


# Prompts and stop sequences -------------------------------------------------------


def check_prompt(prompt: object) -> str:
    """Return the prompt if it can be sent, else raise :class:`InputError`."""
    if not isinstance(prompt, str):
        raise InputError(f"the prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise InputError(
            "the prompt is empty or whitespace only; Bedrock rejects empty text"
        )
    return prompt


def check_stop(stop: str | Sequence[str] | None) -> tuple[str, ...]:
    """Normalize stop sequences: ``None``, one string or a list of strings."""
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else list(stop)
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise ConfigurationError(
                f"stop sequences must be non-empty strings; got {item!r} at index {i}"
            )
    return tuple(items)


def _earliest(text: str, stops: Sequence[str]) -> int | None:
    found = [i for i in (text.find(stop) for stop in stops) if i >= 0]
    return min(found) if found else None


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest stop sequence in it."""
    cut = _earliest(text, stops) if stops else None
    return text if cut is None else text[:cut]


class StopScanner:
    """Applies stop sequences to text that arrives in pieces.

    :meth:`feed` returns the text that can be passed on: it holds back only the
    longest end of the text that is the start of some stop sequence, so a stop
    sequence split over pieces is still found and never passed on in part.

    Example::

        scanner = StopScanner(["\\nHuman:"])
        out = scanner.feed("Hello\\nHu") + scanner.feed("man: hi")  # "Hello"
        assert scanner.stopped
    """

    def __init__(self, stops: Sequence[str] = ()) -> None:
        self._stops = tuple(stops)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Take the next piece; return the text that is safe to pass on."""
        if self.stopped:
            return ""
        if not self._stops:
            return text
        text = self._held + text
        cut = _earliest(text, self._stops)
        if cut is not None:
            self.stopped = True
            self._held = ""
            return text[:cut]
        keep = self._overhang(text)
        self._held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        """The held-back text, at the end of the answer."""
        held, self._held = self._held, ""
        return held

    def _overhang(self, text: str) -> int:
        for size in range(min(len(text), self._longest - 1), 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                return size
        return 0


# The service ---------------------------------------------------------------------


def single_completion(body: bytes | memoryview) -> str:
    """The one answer of a one-prompt completion request."""
    texts = parse_completion(body)
    if len(texts) != 1:
        raise UnexpectedResponseError(
            f"completion response: asked for 1 answer, got {len(texts)}"
        )
    return texts[0]


class _StreamRun:
    """One attempt at a stream: decoding, stop sequences, and what was passed on."""

    def __init__(
        self, request: Request, stops: Sequence[str], secrets: Sequence[str]
    ) -> None:
        self.request = request
        self.decoder = CompletionStreamDecoder(request, secrets=secrets)
        self.scanner = StopScanner(stops)
        self.yielded = False

    @property
    def over(self) -> bool:
        """Whether reading can stop: ``[DONE]`` came or a stop sequence was found."""
        return self.decoder.done or self.scanner.stopped

    def feed(self, chunk: bytes) -> list[str]:
        out = []
        for piece in self.decoder.feed(chunk):
            safe = self.scanner.feed(piece)
            if safe:
                out.append(safe)
            if self.scanner.stopped:
                logger.debug("stop sequence found; closing %s", self.request.path)
                break
        self.yielded = self.yielded or bool(out)
        return out

    def finish(self) -> list[str]:
        out: list[str] = []
        if not self.scanner.stopped:
            if not self.decoder.done:
                out.extend(
                    safe
                    for safe in (self.scanner.feed(p) for p in self.decoder.finish())
                    if safe
                )
            if not self.decoder.done and not self.scanner.stopped:
                raise ResponseDecodeError(
                    "the completion stream ended without the [DONE] marker",
                    method=self.request.method,
                    path=self.request.path,
                )
        tail = self.scanner.flush() if not self.scanner.stopped else ""
        if tail:
            out.append(tail)
        self.yielded = self.yielded or bool(out)
        return out


class _StreamAttempts(Attempts):
    """Retry bookkeeping of one streamed call: also re-ensures at most once."""

    reensured = False


class CompletionService(InferenceService):
    """Completes prompts through a ``completion`` endpoint.

    Every prompt is one request. ``complete_many`` runs them ``concurrency`` at a
    time and returns the answers in prompt order; ``stream`` yields the answer as it
    arrives. Task settings are checked before any request and sent with each call;
    Elasticsearch merges them field by field over the endpoint's stored ones.

    Example::

        from es_inference import CompletionService, build_spec, resolve_connection

        service = CompletionService(
            resolve_connection(es_url="https://localhost:9200"),
            build_spec(
                "completion",
                model="anthropic.claude-3-haiku-20240307-v1:0",
                region="us-east-1",
            ),
        )
        answer = service.complete("What is Elastic?", task_settings={"top_k": 0.5})
        for piece in service.stream("Tell me more.", stop=["\\n\\n"]):
            print(piece, end="")
    """

    def __init__(
        self,
        connection: ConnectionConfig,
        spec: EndpointSpec,
        options: ServiceOptions | None = None,
    ) -> None:
        if spec.task_type != "completion":
            raise ConfigurationError(
                f"CompletionService needs a completion endpoint spec, got task type "
                f"{spec.task_type}"
            )
        check_task_settings(
            spec.task_settings, service=spec.service, provider=spec.provider
        )
        super().__init__(connection, spec, options)

    # Checks and requests ---------------------------------------------------------

    def _prepare(
        self,
        task_settings: Mapping[str, Any] | None,
        stop: str | Sequence[str] | None,
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        # With only an inference_id the service is not known yet; the settings are
        # then checked against the endpoint once it is fetched, still before POST.
        service = self.spec.service
        settings = check_task_settings(
            task_settings,
            service=service if service is not None else "",
            provider=self.spec.provider,
        )
        return settings, check_stop(stop)

    def _request(
        self,
        ready: ReadyEndpoint,
        prompt: str,
        settings: Mapping[str, Any],
        *,
        stream: bool = False,
    ) -> Request:
        info = ready.info
        provider = info.service_settings.get("provider")
        check_task_settings(
            settings,
            service=info.service,
            provider=str(provider) if provider else None,
        )
        return infer(
            "completion",
            info.inference_id,
            prompt,
            task_settings=settings,
            timeout=self.connection.server_timeout_param,
            stream=stream,
        )

    def effective_task_settings(
        self, task_settings: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The settings a call runs with: the stored ones, overridden field by field."""
        settings, _ = self._prepare(task_settings, None)
        return merge_task_settings(self.endpoint().info.task_settings, settings)

    # Whole answers ---------------------------------------------------------------

    def complete(
        self,
        prompt: str,
        *,
        task_settings: Mapping[str, Any] | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> str:
        """Complete one prompt.

        Args:
            prompt: The prompt; sent as the single input.
            task_settings: Overrides of the endpoint's task settings for this call.
            stop: Stop sequences; the answer ends before the earliest one.

        Raises:
            InputError: for a prompt that is not a string or is blank.
            ConfigurationError: for invalid task settings, before any request.
        """
        text = check_prompt(prompt)
        settings, stops = self._prepare(task_settings, stop)
        return cut_at_stop(self._complete_one(text, settings), stops)

    async def acomplete(
        self,
        prompt: str,
        *,
        task_settings: Mapping[str, Any] | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> str:
        """Async :meth:`complete`, natively on asyncio."""
        text = check_prompt(prompt)
        settings, stops = self._prepare(task_settings, stop)
        return cut_at_stop(await self._acomplete_one(text, settings), stops)

    def _complete_one(
        self,
        prompt: str,
        settings: Mapping[str, Any],
        halt: threading.Event | None = None,
    ) -> str:
        transport, retry = self.sync_transport, self.options.retry

        def send(ready: ReadyEndpoint) -> str:
            request = self._request(ready, prompt, settings)
            return transport.perform(
                request, retry, single_completion, self.limiter(ready), halt
            )

        return self.call(send)

    async def _acomplete_one(self, prompt: str, settings: Mapping[str, Any]) -> str:
        transport, retry = self.async_transport, self.options.retry

        async def send(ready: ReadyEndpoint) -> str:
            request = self._request(ready, prompt, settings)
            return await transport.perform(
                request, retry, single_completion, self.limiter(ready)
            )

        return await self.acall(send)

    def complete_many(
        self,
        prompts: Sequence[str],
        *,
        task_settings: Mapping[str, Any] | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> list[str]:
        """Complete each prompt with its own request, ``concurrency`` at a time.

        Returns:
            The answers, in prompt order.

        Raises:
            InputError: naming the indices of invalid prompts, before any request.
            PartialCompletionError: when some prompts failed; it keeps the answers
                of the others. When every prompt failed with one error, or with an
                error that stops the run (e.g. authentication), that error itself.
        """
        items = check_texts(prompts, None)
        settings, stops = self._prepare(task_settings, stop)
        if not items:
            return []
        self.endpoint()
        answers: list[str | None] = [None] * len(items)
        assembly = _progress(len(items))

        def work(start: int, stop_at: int) -> None:
            try:
                answers[start] = cut_at_stop(
                    self._complete_one(items[start], settings, assembly.halt), stops
                )
                assembly.succeed(start, stop_at)
            except EsInferenceError as exc:
                assembly.fail(start, stop_at, exc)

        self.run_batches(_one_each(len(items)), work, assembly)
        return _answers(assembly, answers)

    async def acomplete_many(
        self,
        prompts: Sequence[str],
        *,
        task_settings: Mapping[str, Any] | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> list[str]:
        """Async :meth:`complete_many`, natively on asyncio."""
        items = check_texts(prompts, None)
        settings, stops = self._prepare(task_settings, stop)
        if not items:
            return []
        await self.aendpoint()
        answers: list[str | None] = [None] * len(items)
        assembly = _progress(len(items))

        async def work(start: int, stop_at: int) -> None:
            try:
                answer = await self._acomplete_one(items[start], settings)
                answers[start] = cut_at_stop(answer, stops)
                assembly.succeed(start, stop_at)
            except EsInferenceError as exc:
                assembly.fail(start, stop_at, exc)

        await self.arun_batches(_one_each(len(items)), work, assembly)
        return _answers(assembly, answers)

    # Streamed answers ------------------------------------------------------------

    def stream(
        self,
        prompt: str,
        *,
        task_settings: Mapping[str, Any] | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> Iterator[str]:
        """Stream the answer to one prompt, piece by piece.

        Arguments are checked when this is called, before any request. A stream that
        fails before passing on any text is retried like a whole answer.

        Raises:
            StreamError: for an error event, an error status, or a stream that ends
                without ``[DONE]``; ``partial`` holds the text received until then.
        """
        text = check_prompt(prompt)
        settings, stops = self._prepare(task_settings, stop)
        return self._stream(text, settings, stops)

    def astream(
        self,
        prompt: str,
        *,
        task_settings: Mapping[str, Any] | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> AsyncIterator[str]:
        """Async :meth:`stream`, natively on asyncio."""
        text = check_prompt(prompt)
        settings, stops = self._prepare(task_settings, stop)
        return self._astream(text, settings, stops)

    def _stream(
        self, prompt: str, settings: Mapping[str, Any], stops: Sequence[str]
    ) -> Iterator[str]:
        transport = self.sync_transport
        attempts = _StreamAttempts("", self.options.retry)
        secrets = self.connection.secret_values()
        try:
            while True:
                ready = self.endpoint()
                generation = self._generation
                run = _StreamRun(
                    self._request(ready, prompt, settings, stream=True), stops, secrets
                )
                attempts.limiter = self.limiter(ready)
                attempts.where = f"{run.request.method} {run.request.path}"
                wait = attempts.next_wait()
                if wait > 0:
                    time.sleep(wait)
                try:
                    with transport.stream(run.request) as chunks:
                        for chunk in chunks:
                            yield from run.feed(chunk)
                            if run.over:
                                break
                    yield from run.finish()
                except EsInferenceError as exc:
                    delay = self._after_failure(exc, run, attempts, generation)
                    time.sleep(delay)
                    continue
                attempts.succeeded()
                return
        finally:
            attempts.close()  # ends its retry-log stretch, if any

    async def _astream(
        self, prompt: str, settings: Mapping[str, Any], stops: Sequence[str]
    ) -> AsyncIterator[str]:
        transport = self.async_transport
        attempts = _StreamAttempts("", self.options.retry)
        secrets = self.connection.secret_values()
        try:
            while True:
                ready = await self.aendpoint()
                generation = self._generation
                run = _StreamRun(
                    self._request(ready, prompt, settings, stream=True), stops, secrets
                )
                attempts.limiter = self.limiter(ready)
                attempts.where = f"{run.request.method} {run.request.path}"
                wait = attempts.next_wait()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    async with transport.stream(run.request) as chunks:
                        try:
                            async for chunk in chunks:
                                for piece in run.feed(chunk):
                                    yield piece
                                if run.over:
                                    break
                        finally:
                            await _aclose(chunks)
                    for piece in run.finish():
                        yield piece
                except EsInferenceError as exc:
                    delay = self._after_failure(exc, run, attempts, generation)
                    await asyncio.sleep(delay)
                    continue
                attempts.succeeded()
                return
        finally:
            attempts.close()  # ends its retry-log stretch, if any

    def _after_failure(
        self,
        error: EsInferenceError,
        run: _StreamRun,
        attempts: _StreamAttempts,
        generation: int,
    ) -> float:
        """Seconds to wait before streaming again, or raise :class:`StreamError`."""
        if (
            not run.yielded
            and isinstance(error, NotFoundError)
            and not attempts.reensured
        ):
            attempts.reensured = True
            self._lost(generation)
            return 0.0
        # Once text has been passed on, sending again would repeat it.
        delay = attempts.failed(error, may_retry=not run.yielded)
        if delay is not None:
            return delay
        partial = run.decoder.text
        raise StreamError(
            f"the completion stream of inference endpoint "
            f"[{run.request.inference_id}] failed after {len(partial)} characters: "
            f"{error}",
            partial=partial,
            cause=error if isinstance(error, ApiError) else None,
        ) from error


def _progress(total: int) -> Assembly:
    # dims=0: no array is built; the assembly only tracks which prompts succeeded,
    # which failed and whether an error stops the run, as for embeddings.
    return Assembly(total, dims=0)


def _one_each(total: int) -> list[tuple[int, int]]:
    return [(i, i + 1) for i in range(total)]


def _answers(assembly: Assembly, answers: list[str | None]) -> list[str]:
    try:
        assembly.result()
    except PartialResultError as exc:
        raise PartialCompletionError(
            answers, exc.failed_indices, exc.errors, exc.succeeded
        ) from None
    return [answer if answer is not None else "" for answer in answers]


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()
