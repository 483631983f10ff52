"""Generated inputs: a result or a clear error, never a crash or a stray path."""

from __future__ import annotations

from urllib.parse import unquote

from hypothesis import given, settings
from hypothesis import strategies as st

from es_inference import ConfigurationError, InputError
from es_inference import _wire as wire
from es_inference._batch import check_texts
from es_inference._constants import INFERENCE_ID_PATTERN

ids = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}[a-z0-9]", fullmatch=True),
    st.sampled_from(["../_cluster/settings", "a/b", "x?y=1", "%2e%2e", "a#b", "_all"]),
)


@given(ids)
@settings(max_examples=300)
def test_any_id_gives_a_two_segment_path_or_a_clear_error(inference_id: str) -> None:
    try:
        path = wire.endpoint_path("text_embedding", inference_id)
    except ConfigurationError as exc:
        assert "Invalid inference_id" in str(exc)
        assert not INFERENCE_ID_PATTERN.match(inference_id)
        return
    segments = path.split("/")
    assert segments[:3] == ["", "_inference", "text_embedding"]
    assert len(segments) == 4
    assert unquote(segments[3]) == inference_id
    assert "?" not in path and "#" not in path


texts = st.lists(
    st.one_of(
        st.text(max_size=60),
        st.text(alphabet=st.characters(categories=["Cc", "Zs", "Cs"]), max_size=5),
        st.none(),
        st.integers(),
        st.binary(max_size=4),
    ),
    max_size=8,
)


@given(texts)
@settings(max_examples=300)
def test_any_input_list_is_accepted_or_rejected_with_indices(
    items: list[object],
) -> None:
    try:
        checked = check_texts(items, max_chars=30)
    except InputError as exc:
        assert exc.indices, "an input error must name the offending indices"
        assert all(0 <= i < len(items) for i in exc.indices)
        return
    assert checked == items
    assert all(isinstance(t, str) and t.strip() and len(t) <= 30 for t in checked)


@given(st.lists(st.text(min_size=1, max_size=20).filter(str.strip), max_size=5))
def test_request_bodies_round_trip_any_unicode(items: list[str]) -> None:
    request = wire.infer("text_embedding", "e", items)
    assert wire.decode_json(request.body or b"", "test")["input"] == items
