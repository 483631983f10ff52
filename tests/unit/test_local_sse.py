"""Server-sent event framing of the local server."""

from __future__ import annotations

import json

from es_inference.local._sse import BOM, completion_events, deltas, event, split_event


def test_every_event_starts_with_a_bom() -> None:
    assert event(b"[DONE]") == b"\xef\xbb\xbfevent: message\ndata: [DONE]\n\n"
    assert event(b"{}", "error").startswith(BOM + b"event: error\n")


def test_deltas_rebuild_the_text() -> None:
    text = "  Elastic is\na search   company. "
    assert "".join(deltas(text)) == text
    assert deltas("") == []


def test_events_group_one_two_and_three_deltas() -> None:
    events = completion_events("a b c d e f g", multi_delta=True)
    sizes = [len(json.loads(e.split(b"data: ")[1])["completion"]) for e in events]
    assert sizes == [1, 2, 3, 1]
    single = completion_events("a b c", multi_delta=False)
    assert len(single) == 3


def test_split_cuts_inside_the_bom_and_the_json() -> None:
    data = event(b'{"completion":[{"delta":"hello"}]}')
    pieces = split_event(data)
    assert b"".join(pieces) == data
    assert pieces[0] == BOM[:1]
    assert len(pieces) >= 4
    json_start = data.index(b"data: ") + 6
    assert any(
        json_start < sum(len(p) for p in pieces[: i + 1]) < len(data) - 2
        for i in range(len(pieces) - 1)
    )
