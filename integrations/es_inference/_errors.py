"""The exceptions es-inference raises.

Every exception derives from :class:`EsInferenceError`. The tree::

    EsInferenceError
    ├── ConfigurationError (ValueError)   bad arguments, missing credentials
    ├── InputError (ValueError)           bad input texts, found before any request
    ├── TransportError                    no usable answer               [retryable]
    │   ├── ConnectionError               connect failed, or connection dropped
    │   ├── RequestTimeout                no answer within the client timeout
    │   ├── TLSError                      certificate, handshake or scheme [never]
    │   └── ResponseDecodeError           body cut off or not JSON
    ├── ApiError                          Elasticsearch answered with an error
    │   ├── BadRequestError        400
    │   ├── AuthenticationError    401
    │   ├── AuthorizationError     403
    │   ├── NotFoundError          404
    │   ├── ConflictError          409
    │   ├── TooManyRequestsError   429                                   [retryable]
    │   └── ServerError            5xx    [retryable: 502-504, timeouts, throttling]
    ├── UnexpectedResponseError           an answer that does not fit the request
    ├── EndpointMismatchError             an existing endpoint has other settings
    ├── EndpointNotReadyError             an in-cluster model did not start in time
    ├── StreamError                       a stream sent an error event or ended early
    └── PartialResultError                some inputs of a bulk call failed; keeps rest
        └── PartialCompletionError        the same for prompts; keeps their answers

A ``TransportError`` with ``first_contact`` set came before the client had ever
had an answer from the cluster (it could not connect, or the connection closed before
the first answer): a wrong URL is then likelier than an outage, so it is retried once
at most, at once. Its message names the origin (``scheme://host:port``).

``ApiError`` carries ``status``, ``error_type``, ``reason``, ``caused_by`` and the
``inference_id`` of the call. ``retryable`` on any exception says whether sending the
same request again can help. Texts taken from error bodies pass through
:func:`es_inference._secrets.redact` first, so no key that a body echoes back reaches a
message. Every exception pickles (for process pools), attributes included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "ApiError",
    "AuthenticationError",
    "AuthorizationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "ConnectionError",
    "EndpointMismatchError",
    "EndpointNotReadyError",
    "EsInferenceError",
    "InputError",
    "NotFoundError",
    "PartialCompletionError",
    "PartialResultError",
    "RequestTimeout",
    "ResponseDecodeError",
    "ServerError",
    "StreamError",
    "TLSError",
    "TooManyRequestsError",
    "TransportError",
    "UnexpectedResponseError",
]


class EsInferenceError(Exception):
    """Base class of every error this library raises."""

    retryable: bool = False

    def __reduce__(self) -> tuple[Any, ...]:
        # The default pickles only the message, and most subclasses need more
        # arguments than that to be built again.
        return (_rebuild, (type(self), self.args), self.__dict__)


def _rebuild(cls: type[EsInferenceError], args: tuple[Any, ...]) -> EsInferenceError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    return error


class ConfigurationError(EsInferenceError, ValueError):
    """An argument or setting is invalid or missing."""


class InputError(EsInferenceError, ValueError):
    """Input texts that cannot be sent; raised before any request.

    Attributes:
        indices: Positions of the offending inputs, ascending.
        problems: Each kind of problem (e.g. ``"empty or whitespace only"``) with
            the positions that have it; empty when the input as a whole is wrong.
    """

    def __init__(
        self,
        message: str,
        indices: Sequence[int] = (),
        problems: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        super().__init__(message)
        self.indices = list(indices)
        self.problems = {kind: list(at) for kind, at in (problems or {}).items()}


class TransportError(EsInferenceError):
    """No usable answer came back: the request may or may not have been processed.

    Attributes:
        first_contact: ``True`` when the client had never had an answer from the
            cluster before this failure, which happened while connecting or before
            any answer came: most likely a wrong URL, so it is retried once at most.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        first_contact: bool = False,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.first_contact = first_contact


class ConnectionError(TransportError):
    """The connection could not be opened or was dropped before a full answer.

    Attributes:
        opened: ``True`` when the connection was open and then dropped (the
            request's fate is unknown), ``False`` when it could not be opened at
            all. A bulk call stops at the latter only.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        opened: bool = False,
        first_contact: bool = False,
    ) -> None:
        super().__init__(message, method=method, path=path, first_contact=first_contact)
        self.opened = opened


class RequestTimeout(TransportError):
    """Elasticsearch did not answer within the client-side timeout."""


class TLSError(TransportError):
    """TLS failed: an untrusted certificate, or a URL scheme the server does not speak.

    ``https://`` to a plain-HTTP server fails in the handshake (the server closes
    the connection); ``http://`` to a server that speaks only TLS fails when it
    answers with a TLS record. The message names the origin and what to change.
    """

    retryable = False


class ResponseDecodeError(TransportError):
    """The response body was incomplete or not shaped as the API documents."""


class ApiError(EsInferenceError):
    """Elasticsearch answered with an error.

    Attributes:
        status: The HTTP status code.
        error_type: The ``error.type`` of the body, e.g. ``status_exception``.
        reason: The ``error.reason`` of the body.
        caused_by: The ``error.caused_by`` object, if any.
        inference_id: The endpoint the call was about, if any.
        retry_after: Seconds from a ``Retry-After`` header, if one was sent.
    """

    def __init__(
        self,
        status: int,
        error_type: str,
        reason: str,
        *,
        caused_by: Mapping[str, Any] | None = None,
        inference_id: str | None = None,
        method: str = "",
        path: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.error_type = error_type
        self.reason = reason
        self.caused_by = dict(caused_by) if caused_by else None
        self.inference_id = inference_id
        self.method = method
        self.path = path
        self.retry_after = retry_after
        super().__init__(self._message())

    def _message(self) -> str:
        where = f" ({self.method} {self.path})" if self.method else ""
        text = f"[{self.status}] {self.error_type}: {self.reason}{where}"
        if self.caused_by:
            cause_type = self.caused_by.get("type", "")
            cause_reason = self.caused_by.get("reason", "")
            text += f"; caused by {cause_type}: {cause_reason}"
        return text

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return _is_retryable(self)


class BadRequestError(ApiError):
    """400: the request was invalid; sending it again will not help."""


class AuthenticationError(ApiError):
    """401: missing or wrong credentials."""


class AuthorizationError(ApiError):
    """403: the credentials lack a privilege, or the licence does not allow the API."""


class NotFoundError(ApiError):
    """404: most often, the inference endpoint does not exist."""


class ConflictError(ApiError):
    """409: e.g. deleting an endpoint that pipelines or indices still use."""


class TooManyRequestsError(ApiError):
    """429: Elasticsearch is throttling or its inference queue timed out."""


class ServerError(ApiError):
    """5xx: Elasticsearch or the model provider behind it failed."""


_STATUS_CLASSES: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthorizationError,
    404: NotFoundError,
    409: ConflictError,
    429: TooManyRequestsError,
}

_TRANSIENT_CAUSES = (
    "throttling",
    "too many requests",
    "too_many_requests",
    "rate exceeded",
    "service_unavailable",
    "serviceunavailable",
    "model_not_ready",
    "modelnotready",
    "model_timeout",
    "internal_server",
    "timed out",
    "timeout",
)


def api_error_class(status: int) -> type[ApiError]:
    """Return the :class:`ApiError` subclass for an HTTP status."""
    if status >= 500:
        return ServerError
    return _STATUS_CLASSES.get(status, ApiError)


def _is_retryable(error: ApiError) -> bool:
    if error.status in (429, 502, 503, 504):
        return True
    if error.error_type in ("timeout_exception", "es_rejected_execution_exception"):
        return True
    if error.status != 500:
        return False
    cause = error.caused_by or {}
    text = " ".join(
        str(part).lower()
        for part in (cause.get("type", ""), cause.get("reason", ""), error.reason)
    )
    return any(marker in text for marker in _TRANSIENT_CAUSES)


class UnexpectedResponseError(EsInferenceError):
    """An answer that parses but does not fit the request.

    For example fewer vectors than inputs, or a vector of the wrong dimension. It is
    never retried: results are not padded, cut or guessed.
    """


class EndpointMismatchError(EsInferenceError):
    """An existing endpoint's settings differ from those the adapter was given.

    Attributes:
        inference_id: The endpoint.
        differences: ``(field, wanted, found)`` for every differing field.
    """

    def __init__(
        self, inference_id: str, differences: Sequence[tuple[str, Any, Any]]
    ) -> None:
        self.inference_id = inference_id
        self.differences = list(differences)
        parts = "; ".join(
            f"{name}: wanted {wanted!r}, found {found!r}"
            for name, wanted, found in self.differences
        )
        super().__init__(
            f"Inference endpoint [{inference_id}] exists with different settings "
            f"({parts}); use another inference_id, or delete the endpoint first."
        )


class EndpointNotReadyError(EsInferenceError):
    """The model behind an endpoint failed to start or did not start in time."""

    retryable = False

    def __init__(self, inference_id: str, message: str) -> None:
        self.inference_id = inference_id
        super().__init__(message)


class StreamError(EsInferenceError):
    """A streamed answer failed part way; the partial text is never returned alone.

    Attributes:
        partial: The text received before the failure.
        cause: The error event's :class:`ApiError`, if the server sent one.
    """

    def __init__(
        self, message: str, *, partial: str = "", cause: ApiError | None = None
    ) -> None:
        super().__init__(message)
        self.partial = partial
        self.cause = cause


class PartialResultError(EsInferenceError):
    """Some inputs of a bulk call failed; the others are kept.

    Attributes:
        failed_indices: Input positions with no result, ascending.
        errors: ``(indices, exception)`` for each failed request.
        vectors: The ``(n, dims)`` float32 array; rows of failed inputs are zero, or
            ``None`` when no request succeeded and the dimension is unknown.
        succeeded: Boolean mask over the inputs, ``True`` where the row is valid.

    Resend only the failed inputs to complete the run::

        try:
            vectors = embeddings.embed_array(texts)
        except PartialResultError as exc:
            retry = embeddings.embed_array([texts[i] for i in exc.failed_indices])
            vectors = exc.vectors
            vectors[exc.failed_indices] = retry
    """

    def __init__(
        self,
        failed_indices: Sequence[int],
        errors: Sequence[tuple[Sequence[int], BaseException]],
        vectors: npt.NDArray[np.float32] | None,
        succeeded: npt.NDArray[np.bool_],
        total: int,
    ) -> None:
        self.failed_indices = list(failed_indices)
        self.errors = [(list(idx), err) for idx, err in errors]
        self.vectors = vectors
        self.succeeded = succeeded
        shown = ", ".join(str(i) for i in self.failed_indices[:20])
        more = len(self.failed_indices) - 20
        if more > 0:
            shown += f", … ({more} more)"
        first = self.errors[0][1] if self.errors else None
        cause = f"; first error: {first}" if first is not None else ""
        super().__init__(
            f"{len(self.failed_indices)} of {total} inputs failed "
            f"(indices {shown}){cause}"
        )


class PartialCompletionError(PartialResultError):
    """Some prompts of a bulk completion failed; the other answers are kept.

    Attributes:
        texts: One entry per prompt: its answer, or ``None`` where it failed.

    Resend only the failed prompts to complete the run::

        try:
            answers = service.complete_many(prompts)
        except PartialCompletionError as exc:
            retry = service.complete_many([prompts[i] for i in exc.failed_indices])
            answers = exc.texts
            for i, answer in zip(exc.failed_indices, retry):
                answers[i] = answer
    """

    def __init__(
        self,
        texts: Sequence[str | None],
        failed_indices: Sequence[int],
        errors: Sequence[tuple[Sequence[int], BaseException]],
        succeeded: npt.NDArray[np.bool_],
    ) -> None:
        self.texts = list(texts)
        super().__init__(failed_indices, errors, None, succeeded, len(self.texts))
