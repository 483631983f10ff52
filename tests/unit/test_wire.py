"""Request building and response parsing, without a socket."""

from __future__ import annotations

import json

import numpy as np
import pytest

from es_inference import (
    ApiError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    ResponseDecodeError,
    ServerError,
    TooManyRequestsError,
    UnexpectedResponseError,
)
from es_inference import _wire as wire


def test_endpoint_path_encodes_and_validates_ids() -> None:
    assert wire.endpoint_path("text_embedding", "my-id_1") == (
        "/_inference/text_embedding/my-id_1"
    )
    assert wire.endpoint_path(None, "a", "/_stream") == "/_inference/a/_stream"
    for bad in ["", "UPPER", "-start", "end-", "a/b", "a?b=c", "../_cluster", "é"]:
        with pytest.raises(ConfigurationError, match="Invalid inference_id"):
            wire.endpoint_path("text_embedding", bad)


def test_unknown_task_type_is_rejected_before_sending() -> None:
    with pytest.raises(ConfigurationError, match="Unknown task_type 'bad'"):
        wire.endpoint_path("bad", "x")


def test_infer_body_carries_input_type_and_settings_only_when_given() -> None:
    request = wire.infer("text_embedding", "e", ["a", "b"], timeout="30s")
    assert json.loads(request.body or b"") == {"input": ["a", "b"]}
    assert request.params == {"timeout": "30s"}
    request = wire.infer(
        "text_embedding", "e", ["a"], input_type="search", task_settings={"x": 1}
    )
    assert json.loads(request.body or b"") == {
        "input": ["a"],
        "input_type": "search",
        "task_settings": {"x": 1},
    }


def test_parse_endpoints_reads_both_get_shapes_and_put_answers() -> None:
    new = b'{"endpoints":[{"inference_id":"a","task_type":"text_embedding",'
    new += b'"service":"amazonbedrock","service_settings":{"dimensions":256,'
    new += b'"rate_limit":{"requests_per_minute":240}}}]}'
    old = b'{"models":[{"model_id":"a","task_type":"text_embedding",'
    old += b'"service":"amazonbedrock","service_settings":{},"task_settings":{}}]}'
    put = b'{"inference_id":"a","task_type":"completion","service":"x",'
    put += b'"service_settings":{}}'
    (info,) = wire.parse_endpoints(new)
    assert (info.inference_id, info.dimensions, info.requests_per_minute) == (
        "a",
        256,
        240.0,
    )
    assert wire.parse_endpoints(old)[0].inference_id == "a"
    assert wire.parse_endpoints(put)[0].task_type == "completion"


def test_float_bytes_and_bits_results_are_written_into_rows() -> None:
    out = np.zeros((2, 3), dtype=np.float32)
    kind, rows = wire.embedding_rows(
        b'{"text_embedding":[{"embedding":[0.5,1E-3,-2]},{"embedding":[1,2,3]}]}'
    )
    wire.write_embeddings(kind, rows, out)
    assert out.tolist() == [[0.5, np.float32(1e-3), -2.0], [1.0, 2.0, 3.0]]

    out = np.zeros((1, 3), dtype=np.float32)
    kind, rows = wire.embedding_rows(
        b'{"text_embedding_bytes":[{"embedding":[12,-7,99]}]}'
    )
    wire.write_embeddings(kind, rows, out)
    assert out.tolist() == [[12.0, -7.0, 99.0]]

    kind, rows = wire.embedding_rows(
        b'{"text_embedding_bits":[{"embedding":[-127,5]}]}'
    )
    assert wire.row_width(kind, rows[0]) == 16
    out = np.zeros((1, 16), dtype=np.float32)
    wire.write_embeddings(kind, rows, out)
    # -127 is 0b10000001, 5 is 0b00000101, most significant bit first.
    assert out[0].astype(int).tolist() == [1, 0, 0, 0, 0, 0, 0, 1] + [0] * 5 + [1, 0, 1]


def test_count_and_dimension_mismatches_raise() -> None:
    kind, rows = wire.embedding_rows(b'{"text_embedding":[{"embedding":[1,2]}]}')
    with pytest.raises(UnexpectedResponseError, match="asked for 2 embeddings, got 1"):
        wire.write_embeddings(kind, rows, np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(UnexpectedResponseError, match="result 0 has 2 dimensions"):
        wire.write_embeddings(kind, rows, np.zeros((1, 3), dtype=np.float32))


def test_malformed_bodies_raise_decode_errors() -> None:
    with pytest.raises(ResponseDecodeError, match="not valid JSON"):
        wire.embedding_rows(b'{"text_embedding":[{"embedd')
    with pytest.raises(ResponseDecodeError, match="expected text_embedding results"):
        wire.embedding_rows(b'{"completion":[]}')


def test_error_envelope_becomes_typed_exception() -> None:
    body = json.dumps(
        {
            "error": {
                "root_cause": [],
                "type": "resource_not_found_exception",
                "reason": "Inference endpoint not found [x]",
            },
            "status": 404,
        }
    ).encode()
    error = wire.parse_error(404, body, wire.get_endpoint("x"))
    assert isinstance(error, NotFoundError)
    assert error.inference_id == "x"
    assert str(error) == (
        "[404] resource_not_found_exception: Inference endpoint not found [x] "
        "(GET /_inference/x)"
    )
    assert not error.retryable


@pytest.mark.parametrize(
    ("status", "error_type", "cause", "cls", "retryable"),
    [
        (400, "status_exception", None, BadRequestError, False),
        (429, "timeout_exception", None, TooManyRequestsError, True),
        (500, "timeout_exception", None, ServerError, True),
        (
            500,
            "exception",
            {"type": "throttling_exception", "reason": "slow"},
            ServerError,
            True,
        ),
        (
            500,
            "exception",
            {"type": "validation_exception", "reason": "bad"},
            ServerError,
            False,
        ),
        (503, "", None, ServerError, True),
        (418, "", None, ApiError, False),
    ],
)
def test_retryable_classification(
    status: int,
    error_type: str,
    cause: dict[str, str] | None,
    cls: type[ApiError],
    retryable: bool,
) -> None:
    envelope: dict[str, object] = {"type": error_type, "reason": "r"}
    if cause:
        envelope["caused_by"] = cause
    body = json.dumps({"error": envelope, "status": status}).encode()
    error = wire.parse_error(status, body, wire.get_endpoint("x"))
    assert type(error) is cls
    assert error.retryable is retryable


def test_secrets_echoed_in_error_bodies_are_redacted() -> None:
    body = json.dumps(
        {
            "error": {
                "type": "status_exception",
                "reason": "Configuration contains settings [{secret_key=wJalrXUtnFEMI, "
                "access_key=AKIAEXAMPLEKEY}] unknown to the [amazonbedrock] service",
            },
            "status": 400,
        }
    ).encode()
    error = wire.parse_error(400, body, wire.get_endpoint("x"), secrets=["sekrit"])
    assert "wJalrXUtnFEMI" not in str(error)
    assert "AKIAEXAMPLEKEY" not in str(error)
    assert "secret_key=**********" in str(error)


def test_non_json_error_bodies_keep_their_text() -> None:
    error = wire.parse_error(502, b"<html>Bad gateway</html>", wire.get_endpoint("x"))
    assert error.reason == "<html>Bad gateway</html>"
    assert error.retryable


def test_allocation_states() -> None:
    def body(state: str, count: int, target: int, deployment: str = "x") -> bytes:
        return json.dumps(
            {
                "count": 1,
                "trained_model_stats": [
                    {
                        "model_id": "m",
                        "deployment_stats": {
                            "deployment_id": deployment,
                            "state": "started",
                            "allocation_status": {
                                "allocation_count": count,
                                "target_allocation_count": target,
                                "state": state,
                            },
                        },
                    }
                ],
            }
        ).encode()

    assert wire.parse_allocation(body("fully_allocated", 2, 2), "x")[:3] == (
        "fully_allocated",
        2,
        2,
    )
    assert wire.parse_allocation(body("starting", 0, 1), "x")[0] == "starting"
    empty = b'{"count":0,"trained_model_stats":[]}'
    assert wire.parse_allocation(empty, "x")[0] == "missing"
