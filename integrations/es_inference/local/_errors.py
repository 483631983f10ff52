"""Elasticsearch error responses as the local server sends them.

Every failure the server reports is an :class:`EsError`. It renders the standard
envelope ``{"error": {"root_cause": [...], "type", "reason", ...}, "status": N}``,
the flat form Elasticsearch uses for routing failures (``{"error": "...",
"status": 400}``) or, on the chat-completion path, the OpenAI-style body.

The ``type`` names follow Elasticsearch's rule: the Java exception class in
snake_case, with a leading ``Elasticsearch`` dropped (``status_exception``,
``exception``, ``validation_exception``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

__all__ = [
    "EsError",
    "action_request_validation",
    "illegal_argument",
    "not_found",
    "status_exception",
    "upstream_failure",
    "validation_exception",
]


class EsError(Exception):
    """An error response: HTTP status, Elasticsearch type and reason.

    Args:
        status: HTTP status code.
        error_type: Elasticsearch error type, e.g. ``status_exception``.
        reason: The human-readable reason.
        caused_by: Optional nested cause, already in envelope form.
        root_cause: Root causes; by default the error itself.
        header: Optional ``header`` object (e.g. ``WWW-Authenticate`` values).
        http_headers: Extra HTTP response headers.
        flat: Render as ``{"error": reason, "status": N}`` like ES routing errors.
    """

    def __init__(
        self,
        status: int,
        error_type: str,
        reason: str,
        *,
        caused_by: dict[str, Any] | None = None,
        root_cause: list[dict[str, Any]] | None = None,
        header: dict[str, list[str]] | None = None,
        http_headers: Sequence[tuple[str, str]] = (),
        flat: bool = False,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.error_type = error_type
        self.reason = reason
        self.caused_by = caused_by
        self.root_cause = root_cause
        self.header = header
        self.http_headers = tuple(http_headers)
        self.flat = flat

    def cause_view(self) -> dict[str, Any]:
        """This error as a ``caused_by`` object nested in another error."""
        view: dict[str, Any] = {"type": self.error_type, "reason": self.reason}
        if self.caused_by is not None:
            view["caused_by"] = self.caused_by
        return view

    def body(self) -> dict[str, Any]:
        """The standard (or flat) Elasticsearch error body."""
        if self.flat:
            return {"error": self.reason, "status": self.status}
        own: dict[str, Any] = {"type": self.error_type, "reason": self.reason}
        if self.header is not None:
            own["header"] = self.header
        error: dict[str, Any] = {
            "root_cause": self.root_cause if self.root_cause is not None else [own],
            "type": self.error_type,
            "reason": self.reason,
        }
        if self.caused_by is not None:
            error["caused_by"] = self.caused_by
        if self.header is not None:
            error["header"] = self.header
        return {"error": error, "status": self.status}

    def chat_body(self) -> dict[str, Any]:
        """The OpenAI-style body used on the ``chat_completion`` stream path."""
        code = HTTPStatus(self.status).name.lower()
        return {
            "error": {"code": code, "message": self.reason, "type": self.error_type}
        }


def status_exception(
    reason: str, status: int = 400, *, caused_by: dict[str, Any] | None = None
) -> EsError:
    """An ``ElasticsearchStatusException`` (400 unless told otherwise)."""
    return EsError(status, "status_exception", reason, caused_by=caused_by)


def _numbered(errors: Sequence[str]) -> str:
    return "Validation Failed: " + "".join(
        f"{i}: {message};" for i, message in enumerate(errors, start=1)
    )


def validation_exception(errors: Sequence[str]) -> EsError:
    """A ``ValidationException`` listing every message, numbered from 1."""
    return EsError(400, "validation_exception", _numbered(errors))


def action_request_validation(errors: Sequence[str]) -> EsError:
    """An ``ActionRequestValidationException`` from a request's ``validate()``."""
    return EsError(400, "action_request_validation_exception", _numbered(errors))


def illegal_argument(reason: str) -> EsError:
    """An ``IllegalArgumentException``, which Elasticsearch maps to 400."""
    return EsError(400, "illegal_argument_exception", reason)


def not_found(reason: str) -> EsError:
    """A ``ResourceNotFoundException`` (404)."""
    return EsError(404, "resource_not_found_exception", reason)


def upstream_failure(
    reason: str, aws_type: str, aws_message: str, *, status: int = 500
) -> EsError:
    """A Bedrock SDK failure wrapped the way Elasticsearch wraps it.

    Elasticsearch turns every Bedrock runtime exception into a plain
    ``ElasticsearchException`` (HTTP 500, type ``exception``) whose cause is the AWS
    exception, rendered with its snake_case class name.
    """
    return EsError(
        status,
        "exception",
        reason,
        caused_by={"type": aws_type, "reason": aws_message},
    )
