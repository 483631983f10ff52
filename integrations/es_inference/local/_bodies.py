"""Request bodies: parsing and the REST-layer validation of Elasticsearch.

Errors raised here happen before Elasticsearch's transport action runs, so even
on streaming routes they are plain JSON responses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .._constants import INPUT_TYPES
from ._errors import EsError, action_request_validation
from ._http import Request
from ._javafmt import java_str
from ._json import DecodeError, loads
from ._params import parse_time_value
from ._version import EsVersion

__all__ = ["InferBody", "config_map", "parse_infer_body", "validate_infer"]

_PARSER_NAME = "cluster:monitor/xpack/inference"
_INFER_FIELDS = (
    "input",
    "input_type",
    "task_settings",
    "query",
    "return_documents",
    "top_n",
    "timeout",
)


@dataclass
class InferBody:
    """The fields of a POST inference body."""

    inputs: list[str] | None
    query: str | None
    input_type: str | None
    task_settings: dict[str, Any] | None
    timeout: float | None
    return_documents: bool | None
    top_n: int | None


def _locate(text: str, key: str, at_value: bool) -> str:
    match = re.search(r'"' + re.escape(key) + r'"\s*:\s*', text)
    if match is None:
        return "1:1"
    position = match.end() if at_value else match.start()
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return f"{line}:{column}"


def _parse_failure(
    text: str, key: str, cause: EsError | None = None, *, unknown: bool = False
) -> EsError:
    where = _locate(text, key, at_value=not unknown)
    what = f"unknown field [{key}]" if unknown else f"failed to parse field [{key}]"
    reason = f"[{where}] [{_PARSER_NAME}] {what}"
    return EsError(
        400,
        "x_content_parse_exception",
        reason,
        caused_by=None if cause is None else cause.cause_view(),
    )


def _token_name(value: Any) -> str:
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, str):
        return "VALUE_STRING"
    if isinstance(value, bool):
        return "VALUE_BOOLEAN"
    return "VALUE_NULL" if value is None else "VALUE_NUMBER"


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return java_str(value)
    return None


def config_map(request: Request) -> dict[str, Any]:
    """The JSON object body of a PUT request (parsed like ``convertToMap``)."""
    if not request.body.strip():
        raise EsError(400, "parse_exception", "request body is required")
    try:
        data = loads(request.body)
    except DecodeError as exc:
        raise EsError(
            400,
            "parse_exception",
            "Failed to parse content to map",
            caused_by={
                "type": "json_parse_exception",
                "reason": f"{exc.msg} at [Source: (byte[]) line: {exc.lineno}, "
                f"column: {exc.colno}]",
            },
        ) from None
    if not isinstance(data, dict):
        raise EsError(400, "parse_exception", "Failed to parse content to map")
    return data


def parse_infer_body(request: Request, version: EsVersion) -> InferBody:
    """Parse a POST inference body like Elasticsearch's object parser.

    Raises:
        EsError: 400 for a missing body, malformed JSON or an unknown field.
    """
    if not request.body.strip():
        raise EsError(400, "parse_exception", "request body is required")
    text = request.body.decode("utf-8", errors="replace")
    try:
        data = loads(request.body)
    except DecodeError as exc:
        raise EsError(
            400,
            "x_content_parse_exception",
            f"[{exc.lineno}:{exc.colno}] {exc.msg}",
        ) from None
    if not isinstance(data, dict):
        raise EsError(
            400,
            "x_content_parse_exception",
            f"[1:1] [{_PARSER_NAME}] Expected START_OBJECT but was: "
            f"{_token_name(data)}",
        )
    for key in data:
        known = key in _INFER_FIELDS and (
            key != "input_type" or version.root_input_type
        )
        if not known:
            raise _parse_failure(text, key, unknown=True)

    inputs: list[str] | None = None
    raw_input = data.get("input")
    if isinstance(raw_input, list):
        inputs = []
        for item in raw_input:
            value = _as_text(item)
            if value is None:
                raise _parse_failure(text, "input")
            inputs.append(value)
    elif raw_input is not None:
        value = _as_text(raw_input)
        if value is None:
            raise _parse_failure(text, "input")
        inputs = [value]

    input_type = data.get("input_type")
    if input_type is not None:
        input_type = _input_type(text, input_type)
    task_settings = data.get("task_settings")
    if task_settings is not None and not isinstance(task_settings, dict):
        raise _parse_failure(text, "task_settings")
    query = data.get("query")
    if query is not None and not isinstance(query, str):
        raise _parse_failure(text, "query")
    return_documents = data.get("return_documents")
    if return_documents is not None and not isinstance(return_documents, bool):
        raise _parse_failure(text, "return_documents")
    top_n = data.get("top_n")
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool)):
        raise _parse_failure(text, "top_n")
    timeout = None
    if data.get("timeout") is not None:
        try:
            timeout = parse_time_value(str(data["timeout"]), "timeout")
        except EsError as error:
            raise _parse_failure(text, "timeout", error) from None
    return InferBody(
        inputs, query, input_type, task_settings, timeout, return_documents, top_n
    )


def _input_type(text: str, raw: Any) -> str:
    if isinstance(raw, str) and raw.strip().lower() in INPUT_TYPES:
        return raw.strip().lower()
    cause = EsError(
        400, "illegal_argument_exception", f"Unrecognized input_type [{raw}]"
    )
    raise _parse_failure(text, "input_type", cause)


def validate_infer(body: InferBody, url_task: str | None) -> list[str]:
    """The inputs of a valid request; raises the 400s of ``Request.validate()``."""
    if body.inputs is None:
        raise action_request_validation(["Field [input] cannot be null"])
    if not body.inputs:
        raise action_request_validation(["Field [input] cannot be an empty array"])
    if url_task == "rerank":
        if body.query is None:
            raise action_request_validation(
                ["Field [query] cannot be null for task type [rerank]"]
            )
        if not body.query:
            raise action_request_validation(
                ["Field [query] cannot be empty for task type [rerank]"]
            )
    elif url_task is not None:
        for name, value in (
            ("return_documents", body.return_documents),
            ("top_n", body.top_n),
        ):
            if value is not None:
                raise action_request_validation(
                    [f"Field [{name}] cannot be specified for task type [{url_task}]"]
                )
    if url_task in ("text_embedding", "sparse_embedding") and body.query is not None:
        raise action_request_validation(
            [f"Field [query] cannot be specified for task type [{url_task}]"]
        )
    if url_task not in (None, "text_embedding") and body.input_type is not None:
        raise action_request_validation(
            [f"Field [input_type] cannot be specified for task type [{url_task}]"]
        )
    return body.inputs
