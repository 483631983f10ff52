"""Which errors are retried, how httpx failures are named, and that errors pickle."""

from __future__ import annotations

import pickle
from typing import Any

import httpx
import numpy as np
import pytest

from es_inference import (
    ApiError,
    ConnectionError,
    EndpointMismatchError,
    EndpointNotReadyError,
    EsInferenceError,
    InputError,
    PartialCompletionError,
    PartialResultError,
    RequestTimeout,
    ResponseDecodeError,
    StreamError,
    TLSError,
)
from es_inference._batch import Assembly
from es_inference._errors import api_error_class
from es_inference._transport import _translate
from es_inference._wire import Request

REQUEST = Request("POST", "/_inference/text_embedding/e")


def api_error(
    status: int, error_type: str = "exception", cause: str = "", reason: str = "x"
) -> ApiError:
    caused_by = {"type": cause, "reason": "upstream said no"} if cause else None
    return api_error_class(status)(status, error_type, reason, caused_by=caused_by)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (api_error(429, "es_rejected_execution_exception"), True),
        (api_error(429, "timeout_exception"), True),  # 9.x queue timeout
        (api_error(500, "timeout_exception"), True),  # 8.x queue timeout
        (api_error(502, "status_exception"), True),
        (api_error(503, "cluster_block_exception"), True),
        (api_error(504, "status_exception"), True),
        (api_error(500, cause="throttling_exception"), True),
        (api_error(500, cause="model_not_ready_exception"), True),
        (api_error(500, cause="service_unavailable_exception"), True),
        (api_error(500, cause="validation_exception"), False),
        (api_error(500, cause="access_denied_exception"), False),
        (api_error(500, reason="[input] cannot contain more than one string"), False),
        (api_error(400, "validation_exception"), False),
        (api_error(401, "security_exception"), False),
        (api_error(403, "security_exception"), False),
        (api_error(404, "resource_not_found_exception"), False),
        (api_error(409, "status_exception"), False),
        (api_error(413, "status_exception"), False),
        (ConnectionError("refused"), True),
        (ConnectionError("reset", opened=True), True),
        (RequestTimeout("slow"), True),
        (ResponseDecodeError("cut"), True),
        (TLSError("untrusted"), False),
    ],
    ids=repr,
)
def test_only_errors_that_can_pass_are_retryable(
    error: EsInferenceError, retryable: bool
) -> None:
    assert error.retryable is retryable


@pytest.mark.parametrize(
    ("exc", "kind", "opened"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), ConnectionError, False),
        (
            httpx.ReadError("[Errno 104] Connection reset by peer"),
            ConnectionError,
            True,
        ),
        (
            httpx.RemoteProtocolError(
                "Server disconnected without sending a response."
            ),
            ConnectionError,
            True,
        ),
        (
            httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body "
                "(received 10 bytes, expected 20)"
            ),
            ResponseDecodeError,
            None,
        ),
        (httpx.ReadTimeout("timed out"), RequestTimeout, None),
        (
            httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify"),
            TLSError,
            None,
        ),
    ],
    ids=lambda value: type(value).__name__,
)
def test_httpx_failures_are_translated_once(
    exc: httpx.HTTPError, kind: type[EsInferenceError], opened: bool | None
) -> None:
    error = _translate(exc, REQUEST)
    assert type(error) is kind
    assert str(error).startswith("POST /_inference/text_embedding/e: ")
    if opened is not None:
        assert isinstance(error, ConnectionError) and error.opened is opened


def test_tls_error_says_to_pass_ca_certs() -> None:
    error = _translate(httpx.ConnectError("[SSL] certificate verify failed"), REQUEST)
    assert "pass ca_certs" in str(error)


def test_dropped_connection_fails_its_batch_but_refused_stops_the_call() -> None:
    dropped = Assembly(4)
    dropped.fail(0, 2, ConnectionError("reset", opened=True))
    assert not dropped.stopped
    refused = Assembly(4)
    refused.fail(0, 2, ConnectionError("refused"))
    assert refused.stopped


ERRORS: list[EsInferenceError] = [
    api_error_class(429)(
        429,
        "es_rejected_execution_exception",
        "queue is full",
        caused_by={"type": "x", "reason": "y"},
        inference_id="e",
        method="POST",
        path="/p",
        retry_after=1.5,
    ),
    ConnectionError("reset", method="POST", path="/p", opened=True),
    InputError("bad inputs", [1, 3]),
    EndpointMismatchError("e", [("service_settings.model", "a", "b")]),
    EndpointNotReadyError("e", "not ready"),
    StreamError("cut", partial="half"),
    PartialResultError(
        [1],
        [([1], ConnectionError("reset", opened=True))],
        np.ones((2, 3), dtype=np.float32),
        np.array([True, False]),
        2,
    ),
    PartialCompletionError(
        ["an answer", None], [1], [([1], api_error(503))], np.array([True, False])
    ),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_errors_pickle_with_their_attributes(error: EsInferenceError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.retryable == error.retryable

    def plain(value: Any) -> Any:
        return value.tolist() if isinstance(value, np.ndarray) else repr(value)

    assert {k: plain(v) for k, v in vars(copy).items()} == {
        k: plain(v) for k, v in vars(error).items()
    }
