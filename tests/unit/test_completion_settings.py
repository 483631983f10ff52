"""Completion task settings, their merge, prompts and stop sequences (no server)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from es_inference import ConfigurationError, InputError, resolve_connection
from es_inference._completion import (
    CompletionService,
    StopScanner,
    check_prompt,
    check_stop,
    check_task_settings,
    cut_at_stop,
    merge_task_settings,
)
from es_inference._endpoint import ReadyEndpoint, build_spec
from es_inference._fields import CompletionFields
from es_inference._service import ServiceOptions
from es_inference._wire import EndpointInfo, Request

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN_TEXT = "amazon.titan-text-express-v1"
# Nothing listens on port 9: a test that sent a request would fail to connect.
NOWHERE = "http://127.0.0.1:9"


# Task settings -----------------------------------------------------------------


def test_valid_settings_pass_and_unset_ones_are_dropped() -> None:
    settings = {"max_new_tokens": 256, "temperature": 0.0, "top_p": 1, "top_k": None}
    assert check_task_settings(settings, provider="anthropic") == {
        "max_new_tokens": 256,
        "temperature": 0.0,
        "top_p": 1,
    }
    assert check_task_settings(None) == {}


@pytest.mark.parametrize("value", [0, -3, 1.5, True, "64", None])
def test_max_new_tokens_must_be_a_positive_integer(value: Any) -> None:
    if value is None:
        assert check_task_settings({"max_new_tokens": value}) == {}
        return
    with pytest.raises(ConfigurationError) as info:
        check_task_settings({"max_new_tokens": value})
    assert str(info.value) == (
        f"task setting max_new_tokens={value!r} is invalid: it must be a positive "
        "integer"
    )


@pytest.mark.parametrize("name", ["temperature", "top_p", "top_k"])
@pytest.mark.parametrize("value", [-0.01, 1.01, 2, math.nan, math.inf, "0.5", False])
def test_sampling_settings_must_be_numbers_from_zero_to_one(
    name: str, value: Any
) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_task_settings({name: value}, provider="anthropic")
    assert str(info.value) == (
        f"task setting {name}={value!r} is invalid: it must be a number from 0.0 to 1.0"
    )


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 1, 1.0])
def test_range_bounds_are_inclusive(value: float) -> None:
    settings = {"temperature": value, "top_p": value, "top_k": value}
    assert check_task_settings(settings, provider="cohere") == settings


@pytest.mark.parametrize("provider", ["anthropic", "cohere", "mistral", "MISTRAL"])
def test_top_k_is_accepted_by_its_providers(provider: str) -> None:
    assert check_task_settings({"top_k": 0.3}, provider=provider) == {"top_k": 0.3}


@pytest.mark.parametrize("provider", ["amazontitan", "ai21labs", "META"])
def test_top_k_is_refused_for_other_providers(provider: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_task_settings({"top_k": 0.3}, provider=provider)
    assert str(info.value) == (
        f"task setting top_k=0.3 is not available for Bedrock provider "
        f"{provider.lower()}; only anthropic, cohere, mistral accept it"
    )


def test_top_k_waits_for_the_provider_when_unknown() -> None:
    assert check_task_settings({"top_k": 0.3}, provider=None) == {"top_k": 0.3}


def test_unknown_bedrock_setting_is_named() -> None:
    with pytest.raises(ConfigurationError) as info:
        check_task_settings({"max_tokens": 10})
    assert str(info.value) == (
        "task setting max_tokens=10 is unknown to amazonbedrock completion "
        "endpoints; they accept max_new_tokens, temperature, top_p, top_k"
    )


def test_other_services_settings_pass_unchecked() -> None:
    settings = {"user": "me", "temperature": 7}
    assert check_task_settings(settings, service="openai") == settings


def test_settings_must_be_a_mapping() -> None:
    with pytest.raises(ConfigurationError, match="must be a mapping, got list"):
        check_task_settings([("temperature", 0.1)])  # type: ignore[arg-type]


def test_merge_is_field_by_field_later_wins_none_skips() -> None:
    stored = {"temperature": 0.2, "max_new_tokens": 256}
    merged = merge_task_settings(
        stored, {"temperature": 0.9, "top_p": None}, None, {"top_p": 0.5}
    )
    assert merged == {"temperature": 0.9, "max_new_tokens": 256, "top_p": 0.5}
    assert stored == {"temperature": 0.2, "max_new_tokens": 256}


# Prompts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (None, "the prompt must be a string, got NoneType"),
        (["hi"], "the prompt must be a string, got list"),
        (b"hi", "the prompt must be a string, got bytes"),
        ("", "the prompt is empty or whitespace only; Bedrock rejects empty text"),
        (" \n\t", "the prompt is empty or whitespace only; Bedrock rejects empty text"),
    ],
)
def test_invalid_prompts_are_refused(prompt: Any, message: str) -> None:
    with pytest.raises(InputError) as info:
        check_prompt(prompt)
    assert str(info.value) == message


def test_prompt_is_returned_unchanged() -> None:
    assert check_prompt("  What is Elastic?\n") == "  What is Elastic?\n"


# Stop sequences -------------------------------------------------------------------


def test_stop_sequences_are_normalized() -> None:
    assert check_stop(None) == ()
    assert check_stop("\n\n") == ("\n\n",)
    assert check_stop(["a", "bc"]) == ("a", "bc")


@pytest.mark.parametrize("stop", [[""], ["a", 3], ["a", None]])
def test_empty_or_non_string_stop_sequence_is_refused(stop: Any) -> None:
    with pytest.raises(ConfigurationError, match="stop sequences must be non-empty"):
        check_stop(stop)


@pytest.mark.parametrize(
    ("text", "stops", "expected"),
    [
        ("Hello\nHuman: hi", ["\nHuman:"], "Hello"),
        ("one. two! three", ["!", "."], "one"),
        ("xabcd", ["abcd", "bc"], "x"),
        ("STOP at once", ["STOP"], ""),
        ("no stop here", ["zzz"], "no stop here"),
        ("anything", [], "anything"),
    ],
)
def test_cut_at_earliest_stop(text: str, stops: list[str], expected: str) -> None:
    assert cut_at_stop(text, stops) == expected


def scan(pieces: list[str], stops: list[str]) -> tuple[list[str], bool]:
    scanner = StopScanner(stops)
    out = []
    for piece in pieces:
        out.append(scanner.feed(piece))
        if scanner.stopped:
            break
    out.append(scanner.flush() if not scanner.stopped else "")
    return out, scanner.stopped


def test_stop_sequence_spanning_deltas_is_found() -> None:
    out, stopped = scan(["Hello\nHu", "man: bye"], ["\nHuman:"])
    assert out == ["Hello", "", ""]
    assert stopped


def test_only_a_possible_stop_start_is_held_back() -> None:
    scanner = StopScanner(["\nHuman:"])
    assert scanner.feed("abc\n") == "abc"
    assert scanner.feed("Hu") == ""
    assert scanner.feed("gs and kisses") == "\nHugs and kisses"
    assert scanner.feed("\nHum") == ""
    assert scanner.flush() == "\nHum"
    assert not scanner.stopped


def test_without_stops_everything_passes_at_once() -> None:
    scanner = StopScanner()
    assert scanner.feed("abc") == "abc"
    assert scanner.flush() == ""


def test_nothing_passes_after_the_stop() -> None:
    scanner = StopScanner(["."])
    assert scanner.feed("a. b") == "a"
    assert scanner.feed("more") == ""
    assert scanner.stopped


def test_every_split_of_every_text_matches_the_whole_cut() -> None:
    text = "ab\nHuman: xyz Human END"
    stops = ["\nHuman:", "END", "man: q"]
    for i, j in itertools.combinations(range(len(text) + 1), 2):
        pieces = [text[:i], text[i:j], text[j:]]
        out, _ = scan(pieces, stops)
        assert "".join(out) == cut_at_stop(text, stops) == "ab"


@given(
    text=st.text(alphabet="ab\n", max_size=30),
    stops=st.lists(st.text(alphabet="ab\n", min_size=1, max_size=4), max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=30), max_size=6),
)
def test_streamed_cut_equals_whole_cut(
    text: str, stops: list[str], cuts: list[int]
) -> None:
    bounds = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    out, _ = scan(pieces, stops)
    assert "".join(out) == cut_at_stop(text, stops)
    # What was passed on before the end never holds a whole stop sequence.
    assert not any(stop in "".join(out[:-1]) for stop in stops)


# The service, before any request ------------------------------------------------


def service(**spec: Any) -> CompletionService:
    return CompletionService(
        resolve_connection(es_url=NOWHERE, es_api_key="k"),
        build_spec("completion", **spec),
        ServiceOptions(pace=False),
    )


def test_service_needs_a_completion_spec() -> None:
    with pytest.raises(ConfigurationError, match="got task type text_embedding"):
        CompletionService(
            resolve_connection(es_url=NOWHERE),
            build_spec("text_embedding", model="amazon.titan-embed-text-v2:0"),
        )


def test_stored_settings_are_checked_when_the_service_is_built() -> None:
    with pytest.raises(ConfigurationError, match=r"top_k=0\.5 is not available"):
        service(model=TITAN_TEXT, region="us-east-1", task_settings={"top_k": 0.5})


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.complete("hi", task_settings={"temperature": 3}),
        lambda s: s.complete("hi", task_settings={"top_k": 0.1}),
        lambda s: s.complete_many(["a", "b"], task_settings={"max_new_tokens": 0}),
        lambda s: s.stream("hi", task_settings={"top_p": -1}),
        lambda s: s.complete("", task_settings={}),
        lambda s: s.complete_many(["a", " "]),
        lambda s: s.stream("hi", stop=[""]),
    ],
)
def test_invalid_calls_fail_before_any_request(call: Any) -> None:
    # Were a request sent, it would fail with a connection error instead.
    with pytest.raises((ConfigurationError, InputError)):
        call(service(model=TITAN_TEXT, region="us-east-1"))


async def test_async_calls_check_before_any_request() -> None:
    s = service(model=TITAN_TEXT, region="us-east-1")
    with pytest.raises(ConfigurationError, match="top_k"):
        await s.acomplete("hi", task_settings={"top_k": 0.5})
    with pytest.raises(ConfigurationError, match="temperature"):
        s.astream("hi", task_settings={"temperature": 9})
    with pytest.raises(InputError, match=r"index 1 is not a string \(int\)"):
        await s.acomplete_many(["a", 2])  # type: ignore[list-item]


def test_empty_prompt_list_sends_nothing() -> None:
    assert service(model=HAIKU, region="us-east-1").complete_many([]) == []


# Stop sequences in a stream, over a scripted transport ---------------------------


class ScriptedStreams:
    """Stands in for the transport's ``stream``: one scripted body per request."""

    def __init__(self, *bodies: list[bytes]) -> None:
        self.bodies = list(bodies)
        self.requests: list[Request] = []
        self.read = 0

    @contextmanager
    def stream(self, request: Request) -> Iterator[Iterator[bytes]]:
        self.requests.append(request)
        yield self._chunks(self.bodies.pop(0))

    def _chunks(self, body: list[bytes]) -> Iterator[bytes]:
        for chunk in body:
            self.read += 1
            yield chunk


def event(data: str) -> bytes:
    return "\ufeffevent: message\ndata: ".encode() + data.encode() + b"\n\n"


def delta(text: str) -> bytes:
    return event('{"completion":[{"delta":"' + text + '"}]}')


def scripted(*bodies: list[bytes]) -> tuple[CompletionService, ScriptedStreams]:
    s = service(model=HAIKU, region="us-east-1")
    info = EndpointInfo("chat", "completion", "amazonbedrock", {}, {}, None)
    s._ready = ReadyEndpoint(info, created=False)
    streams = ScriptedStreams(*bodies)
    s._sync_transport = streams  # type: ignore[assignment]
    return s, streams


def test_stream_stops_reading_once_a_stop_sequence_is_found() -> None:
    s, streams = scripted(
        [
            delta("Hello"),
            delta(" wor"),
            delta("ld. Next"),
            delta(" line"),
            event("[DONE]"),
        ]
    )
    assert list(s.stream("hi", stop=["."])) == ["Hello", " wor", "ld"]
    assert streams.read == 3  # the last delta and [DONE] were never read


def test_stream_holds_back_a_possible_stop_then_releases_it() -> None:
    s, _ = scripted([delta("a\\nHu"), delta("gs"), event("[DONE]")])
    assert list(s.stream("hi", stop=["\nHuman:"])) == ["a", "\nHugs"]


def test_stream_sends_the_settings_and_the_stream_path() -> None:
    s, streams = scripted([delta("x"), event("[DONE]")])
    assert list(s.stream("hi", task_settings={"top_k": 0.2})) == ["x"]
    request = streams.requests[0]
    assert request.path == "/_inference/completion/chat/_stream"
    assert request.body == b'{"input":"hi","task_settings":{"top_k":0.2}}'


# The adapters' fields ------------------------------------------------------------


def fields(**extra: Any) -> CompletionFields:
    return CompletionFields(model=HAIKU, region="us-east-1", es_url=NOWHERE, **extra)


def test_fields_merge_with_call_arguments() -> None:
    llm = fields(temperature=0.2, max_new_tokens=100)
    assert llm.call_task_settings({}) == {"temperature": 0.2, "max_new_tokens": 100}
    merged = llm.call_task_settings(
        {"task_settings": {"temperature": 0.4, "top_p": 0.9}, "top_p": 0.5}
    )
    assert merged == {"temperature": 0.4, "max_new_tokens": 100, "top_p": 0.5}


def test_unknown_call_argument_is_named() -> None:
    with pytest.raises(ConfigurationError) as info:
        fields().call_task_settings({"max_tokens": 5, "temprature": 1})
    assert str(info.value) == (
        "unknown keyword arguments max_tokens, temprature; a call takes "
        "task_settings or max_new_tokens, temperature, top_p, top_k"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"temperature": 1.5}, "temperature=1.5 is invalid"),
        ({"max_new_tokens": 0}, "max_new_tokens=0 is invalid"),
        ({"top_k": 0.5, "model": TITAN_TEXT}, "not available for Bedrock provider"),
        ({"stop": ["a", ""]}, "stop sequences must be non-empty"),
        ({"temperature": True}, "temperature must be a number, or None, got True"),
    ],
)
def test_fields_are_checked_at_construction(
    extra: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"model": HAIKU}
    arguments["aws_secret_access_key"] = "SECRET-NOT-SHOWN"
    arguments.update(extra)
    with pytest.raises(ConfigurationError, match=message) as info:
        CompletionFields(region="us-east-1", es_url=NOWHERE, **arguments)
    assert "SECRET-NOT-SHOWN" not in str(info.value)


def test_fields_of_an_existing_endpoint_wait_for_its_provider() -> None:
    llm = CompletionFields(inference_id="chat", es_url=NOWHERE, top_k=0.5)
    assert llm.default_task_settings() == {"top_k": 0.5}
