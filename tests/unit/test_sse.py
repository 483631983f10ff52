"""The server-sent event reader, fed raw bytes as Elasticsearch writes them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from es_inference import (
    BadRequestError,
    NotFoundError,
    ResponseDecodeError,
    ServerError,
    TooManyRequestsError,
)
from es_inference._sse import CompletionStreamDecoder, ServerSentEvent, SSEDecoder
from es_inference._wire import infer, parse_error

BOM = "\ufeff".encode()
REQUEST = infer("completion", "chat", "hi", stream=True)


def frame(data: Any, event: str = "message", newline: str = "\n") -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return BOM + f"event: {event}{newline}data: {text}{newline}{newline}".encode()


def deltas(*pieces: str) -> dict[str, Any]:
    return {"completion": [{"delta": piece} for piece in pieces]}


# A stream as Elasticsearch writes it: a BOM before every event, several deltas in
# one event, multi-byte characters (2, 3 and 4 bytes) and the [DONE] marker.
PIECES = ["Elastic", " is", " a", " søk", " 検索", " company 🔎", "."]
RECORDED = (
    frame(deltas("Elastic"))
    + frame(deltas(" is", " a"))
    + frame(deltas(" søk", " 検索"))
    + frame(deltas(" company 🔎", "."))
    + frame("[DONE]")
)
EXPECTED = "".join(PIECES)


def read(chunks: list[bytes]) -> tuple[list[str], CompletionStreamDecoder]:
    decoder = CompletionStreamDecoder(REQUEST)
    pieces: list[str] = []
    for chunk in chunks:
        pieces.extend(decoder.feed(chunk))
    pieces.extend(decoder.finish())
    return pieces, decoder


def test_whole_stream_gives_every_delta_in_order() -> None:
    pieces, decoder = read([RECORDED])
    assert pieces == PIECES
    assert decoder.done
    assert decoder.text == EXPECTED


@pytest.mark.parametrize("cut", range(1, len(RECORDED)))
def test_split_at_any_byte_gives_the_same_text(cut: int) -> None:
    pieces, decoder = read([RECORDED[:cut], RECORDED[cut:]])
    assert "".join(pieces) == EXPECTED
    assert decoder.done


def test_one_byte_reads_give_the_same_pieces() -> None:
    pieces, decoder = read([RECORDED[i : i + 1] for i in range(len(RECORDED))])
    assert pieces == PIECES
    assert decoder.done


def test_split_inside_bom_and_multibyte_character() -> None:
    data = frame(deltas("é🔎")) + frame("[DONE]")
    emoji = data.index("🔎".encode())
    parts = [data[:1], data[1:2], data[2 : emoji + 1], data[emoji + 1 : emoji + 3]]
    parts.append(data[emoji + 3 :])
    pieces, decoder = read(parts)
    assert pieces == ["é🔎"] and decoder.done


def test_bom_before_every_event_keeps_the_event_type() -> None:
    events = SSEDecoder().feed(frame({"a": 1}) + frame({"b": 2}, event="error"))
    assert events == [
        ServerSentEvent("message", '{"a": 1}'),
        ServerSentEvent("error", '{"b": 2}'),
    ]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_any_line_ending(newline: str) -> None:
    data = frame(deltas("a", "b"), newline=newline) + frame("[DONE]", newline=newline)
    pieces, decoder = read([data[i : i + 3] for i in range(0, len(data), 3)])
    assert pieces == ["a", "b"] and decoder.done


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    data = b"event: message\r\ndata: x\r\n\r\n"
    decoder = SSEDecoder()
    first = decoder.feed(data[: data.index(b"\n")])
    assert first == []
    assert decoder.feed(data[data.index(b"\n") :]) == [ServerSentEvent("message", "x")]


def test_multi_line_data_is_joined_with_newlines() -> None:
    data = b'data: {"completion":\ndata: [{"delta":"x"}]}\n\n'
    events = SSEDecoder().feed(data)
    assert events == [ServerSentEvent("message", '{"completion":\n[{"delta":"x"}]}')]
    pieces, _ = read([data, frame("[DONE]")])
    assert pieces == ["x"]


def test_comments_ids_and_unknown_fields_are_ignored() -> None:
    data = b": keep-alive\nid: 7\nretry: 100\nfoo: bar\ndata:x\n\n"
    assert SSEDecoder().feed(data) == [ServerSentEvent("message", "x")]


def test_event_without_data_is_not_dispatched() -> None:
    assert SSEDecoder().feed(b"event: message\n\n") == []


def test_single_full_result_event_is_one_piece() -> None:
    pieces, decoder = read(
        [frame({"completion": [{"result": "The whole answer."}]}), frame("[DONE]")]
    )
    assert pieces == ["The whole answer."] and decoder.done


def test_empty_completion_list_gives_nothing() -> None:
    pieces, decoder = read([frame({"completion": []}), frame("[DONE]")])
    assert pieces == [] and decoder.done


def test_events_after_done_are_ignored() -> None:
    pieces, decoder = read([frame(deltas("a")), frame("[DONE]"), frame(deltas("b"))])
    assert pieces == ["a"] and decoder.done


def test_stream_without_done_is_not_done() -> None:
    pieces, decoder = read([frame(deltas("a", "b"))])
    assert pieces == ["a", "b"]
    assert not decoder.done


def test_last_event_without_blank_line_is_still_delivered() -> None:
    data = frame(deltas("a")) + BOM + b"event: message\ndata: [DONE]\n"
    _, decoder = read([data])
    assert decoder.done


def test_unterminated_last_line_is_dropped_as_cut_off() -> None:
    data = frame(deltas("a")) + BOM + b"event: message\ndata: [DO"
    pieces, decoder = read([data])
    assert pieces == ["a"] and not decoder.done


def test_stream_cut_inside_a_character_is_not_done() -> None:
    data = frame(deltas("a")) + "data: 検".encode()[:-1]
    pieces, decoder = read([data])
    assert pieces == ["a"] and not decoder.done


def error_envelope(status: int, kind: str, reason: str, **extra: Any) -> dict[str, Any]:
    error = {"root_cause": [{"type": kind, "reason": reason}], "type": kind}
    error["reason"] = reason
    error.update(extra)
    return {"error": error, "status": status}


def test_error_event_raises_the_api_error_of_its_status() -> None:
    data = error_envelope(429, "status_exception", "Too many requests")
    decoder = CompletionStreamDecoder(REQUEST)
    with pytest.raises(TooManyRequestsError) as info:
        decoder.feed(frame(deltas("par", "tial")) + frame(data, event="error"))
    error = info.value
    assert (error.status, error.error_type, error.reason) == (
        429,
        "status_exception",
        "Too many requests",
    )
    assert error.inference_id == "chat"
    assert error.path == "/_inference/completion/chat/_stream"
    assert error.retryable
    assert decoder.text == "partial"


def test_error_event_with_upstream_cause() -> None:
    data = error_envelope(
        500,
        "exception",
        "AmazonBedrock converse failure: [Rate exceeded]",
        caused_by={"type": "throttling_exception", "reason": "Rate exceeded"},
    )
    with pytest.raises(ServerError) as info:
        read([frame(data, event="error")])
    assert info.value.caused_by == {
        "type": "throttling_exception",
        "reason": "Rate exceeded",
    }
    assert str(info.value) == (
        "[500] exception: AmazonBedrock converse failure: [Rate exceeded] "
        "(POST /_inference/completion/chat/_stream); caused by "
        "throttling_exception: Rate exceeded"
    )


def test_openai_style_error_event_uses_its_code() -> None:
    data = {
        "error": {
            "code": "not_found",
            "message": "Inference endpoint not found [chat]",
            "type": "resource_not_found_exception",
        }
    }
    with pytest.raises(NotFoundError) as info:
        read([frame(data, event="error")])
    assert info.value.status == 404
    assert info.value.reason == "Inference endpoint not found [chat]"
    assert info.value.error_type == "resource_not_found_exception"


def test_error_event_in_simple_form() -> None:
    data = {"error": "StatusException[bad input]", "status": 400}
    with pytest.raises(BadRequestError) as info:
        read([frame(data, event="error")])
    assert info.value.reason == "StatusException[bad input]"


def test_error_event_that_is_not_json_is_a_server_error() -> None:
    with pytest.raises(ServerError) as info:
        read([frame("it broke", event="error")])
    assert info.value.reason == "it broke"


def test_error_envelope_in_a_message_event_is_an_error() -> None:
    with pytest.raises(NotFoundError):
        read([frame(error_envelope(404, "resource_not_found_exception", "gone"))])


def test_error_event_text_is_redacted() -> None:
    data = error_envelope(400, "status_exception", "bad key sk-THE-SECRET-KEY")
    decoder = CompletionStreamDecoder(REQUEST, secrets=["sk-THE-SECRET-KEY"])
    with pytest.raises(BadRequestError) as info:
        decoder.feed(frame(data, event="error"))
    assert "sk-THE-SECRET-KEY" not in str(info.value)


def test_invalid_utf8_is_a_decode_error() -> None:
    with pytest.raises(ResponseDecodeError, match="invalid UTF-8"):
        CompletionStreamDecoder(REQUEST).feed(b"data: \xff\xfe\n\n")


def test_data_that_is_not_json_is_a_decode_error() -> None:
    with pytest.raises(ResponseDecodeError, match="not JSON"):
        read([frame("{not json")])


def test_event_that_is_not_a_completion_is_a_decode_error() -> None:
    with pytest.raises(ResponseDecodeError, match="no completion list"):
        read([frame({"text_embedding": []})])
    with pytest.raises(ResponseDecodeError, match="neither a delta nor a result"):
        read([frame({"completion": [{"delta": 3}]})])


def test_error_body_framed_as_an_event_stream_is_parsed() -> None:
    # Failures before a stream starts come with their status and one error event.
    body = frame(
        error_envelope(
            404, "resource_not_found_exception", "Inference endpoint not found [x]"
        ),
        event="error",
    )
    error = parse_error(404, body, REQUEST)
    assert isinstance(error, NotFoundError)
    assert error.error_type == "resource_not_found_exception"
    assert error.reason == "Inference endpoint not found [x]"
