"""The ``amazonbedrock`` service: settings rules and the failures Bedrock would cause.

Creation follows Elasticsearch's order of checks: chunking settings, supported task
type, service settings (one validation exception listing every problem), task
settings, secrets, provider/task capabilities, unknown keys, then the validation
call to the provider. The validation call is simulated, and fails the way the
upstream failure would make it fail:

* an ``access_key`` or ``secret_key`` equal to the literal string ``"invalid"``,
  as a rejected AWS credential;
* a ``region`` not shaped like an AWS region name (``us-east-1``,
  ``us-gov-west-1``), as an unreachable ``bedrock-runtime`` host;
* a ``model`` that is not an ARN and does not name a model of the ``provider``
  (``amazon.`` for ``amazontitan``, ``ai21.`` for ``ai21labs``, the provider's
  own name otherwise; an inference-profile prefix such as ``us.`` is allowed),
  or an embedding model for a completion endpoint and the reverse, as Bedrock's
  rejection of the model identifier. The real rule is whatever models the
  account can use in that region; this check only catches the mistakes a
  stand-in can see.

At inference time the module stands in for the upstream Bedrock errors that
Elasticsearch wraps as HTTP 500 ``exception`` (fact sheet, sections 5.3 and 6.4):
more than one input for Titan, more than 96 for Cohere, empty or whitespace-only
texts and Titan inputs over 50,000 characters. Their AWS messages are modelled on
Bedrock's ``ValidationException`` texts; they are stand-ins, not captured output.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from typing import Any

from .._constants import (
    BEDROCK_DEFAULT_REQUESTS_PER_MINUTE,
    BEDROCK_MAX_BATCH,
    BEDROCK_PROVIDER_TASKS,
    BEDROCK_SERVICE,
    BEDROCK_TOP_K_PROVIDERS,
    TITAN_MAX_INPUT_CHARS,
)
from ._chunking import parse_chunking
from ._errors import EsError, status_exception, upstream_failure
from ._models import dims_for_model
from ._settings import Extractor, invalid_type, unknown_settings
from ._store import Endpoint
from ._version import EsVersion

__all__ = [
    "DISPLAY_NAME",
    "SERVICE",
    "apply_update",
    "check_completion_inputs",
    "check_embedding_inputs",
    "merge_request_task_settings",
    "parse_create",
    "take_map",
    "throttled",
    "truncate_inputs",
]

SERVICE = BEDROCK_SERVICE
DISPLAY_NAME = "Amazon Bedrock"
TASK_TYPES = ("text_embedding", "completion")
PROVIDERS = tuple(sorted(BEDROCK_PROVIDER_TASKS))
SIMILARITIES = ("cosine", "dot_product", "l2_norm")
TRUNCATIONS = ("end", "none", "start")

_SS = "service_settings"
_TS = "task_settings"
_SECRETS = "secret_settings"
_INVALID_KEY = "invalid"


def take_map(config: dict[str, Any], key: str, required: bool) -> dict[str, Any]:
    """Remove a nested settings object from ``config`` (a copy of it)."""
    value = config.pop(key, None)
    if value is None:
        if required:
            raise status_exception(f"Missing required field [{key}]")
        return {}
    if not isinstance(value, dict):
        raise status_exception(invalid_type(key, value, "Map"))
    return dict(value)


def _rate_limit(settings: dict[str, Any], check: Extractor) -> int:
    raw = settings.pop("rate_limit", None)
    if raw is None:
        return BEDROCK_DEFAULT_REQUESTS_PER_MINUTE
    if not isinstance(raw, dict):
        check.errors.append(invalid_type("rate_limit", raw, "Map"))
        return BEDROCK_DEFAULT_REQUESTS_PER_MINUTE
    rpm = check.optional_positive_long(dict(raw), "requests_per_minute", _SS)
    return BEDROCK_DEFAULT_REQUESTS_PER_MINUTE if rpm is None else rpm


def _completion_task_settings(settings: dict[str, Any]) -> dict[str, Any]:
    check = Extractor()
    temperature = check.optional_double_in_range(settings, "temperature", 0, 1, _TS)
    top_p = check.optional_double_in_range(settings, "top_p", 0, 1, _TS)
    top_k = check.optional_double_in_range(settings, "top_k", 0, 1, _TS)
    max_new_tokens = check.optional_positive_int(settings, "max_new_tokens", _TS)
    check.raise_if_any()
    values = {
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "max_new_tokens": max_new_tokens,
    }
    return {key: value for key, value in values.items() if value is not None}


def _embedding_task_settings(
    settings: dict[str, Any], version: EsVersion
) -> dict[str, Any]:
    if not version.bedrock_truncate:
        return {}
    check = Extractor()
    truncate = check.optional_enum(settings, "truncate", _TS, TRUNCATIONS)
    check.raise_if_any()
    return {} if truncate is None else {"truncate": truncate.upper()}


def _task_settings(
    task_type: str, settings: dict[str, Any], version: EsVersion
) -> dict[str, Any]:
    if task_type == "completion":
        return _completion_task_settings(settings)
    return _embedding_task_settings(settings, version)


def _check_capabilities(task_type: str, provider: str, task: dict[str, Any]) -> None:
    if task_type not in BEDROCK_PROVIDER_TASKS[provider]:
        raise status_exception(
            f"The [{task_type}] task type for provider [{provider}] is not available"
        )
    if "top_k" in task and provider not in BEDROCK_TOP_K_PROVIDERS:
        raise status_exception(
            f"The [top_k] task parameter is not available for provider [{provider}]"
        )
    if "truncate" in task and provider != "cohere":
        raise status_exception(
            f"The [{task_type}] task type for provider [{provider}] "
            "does not allow [truncate] field"
        )


def _request_id(*parts: object) -> str:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest))


def _aws(message: str, status: int, *parts: object) -> str:
    return (
        f"{message} (Service: BedrockRuntime, Status Code: {status}, "
        f"Request ID: {_request_id(message, *parts)})"
    )


def _operation(task_type: str) -> str:
    if task_type == "completion":
        return "AmazonBedrock converse failure"
    return "AmazonBedrock invoke model failure"


_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]")
_PROFILE = re.compile(r"(us|eu|apac|jp|au|ca|us-gov|global)\.")
_VENDOR = {"amazontitan": "amazon", "ai21labs": "ai21"}


def _upstream_problem(
    task_type: str, provider: str, model: str, region: str, secrets: dict[str, str]
) -> tuple[str, str, int] | None:
    """What Bedrock (or reaching it) would say to the validation call, if anything.

    Returns ``(cause type, AWS message, AWS status)``; status 0 when no answer came.
    """
    if _INVALID_KEY in (secrets.get("access_key"), secrets.get("secret_key")):
        message = "The security token included in the request is invalid."
        return "bedrock_runtime_exception", message, 403
    if not _REGION.fullmatch(region):
        host = f"bedrock-runtime.{region}.amazonaws.com"
        return "sdk_client_exception", f"Unable to execute HTTP request: {host}", 0
    if model.startswith("arn:"):
        return None
    base = _PROFILE.sub("", model, count=1)
    vendor = _VENDOR.get(provider, provider)
    embeds = "embed" in base
    if not base.startswith(vendor + ".") or embeds != (task_type == "text_embedding"):
        return "validation_exception", "The provided model identifier is invalid.", 400
    return None


def _validation_call(
    inference_id: str,
    task_type: str,
    provider: str,
    model: str,
    region: str,
    secrets: dict[str, str],
) -> None:
    problem = _upstream_problem(task_type, provider, model, region, secrets)
    if problem is None:
        return
    cause_type, message, aws_status = problem
    reason = _aws(message, aws_status, inference_id) if aws_status else message
    cause = EsError(
        500,
        "exception",
        f"{_operation(task_type)}: [{message}]",
        caused_by={"type": cause_type, "reason": reason},
    )
    raise EsError(
        400,
        "status_exception",
        "Could not complete inference endpoint creation as validation call to "
        "service threw an exception.",
        caused_by=cause.cause_view(),
        root_cause=[{"type": cause.error_type, "reason": cause.reason}],
    )


def parse_create(
    inference_id: str,
    task_type: str,
    config: dict[str, Any],
    config_size: int,
    version: EsVersion,
) -> tuple[Endpoint, dict[str, str]]:
    """Validate a create request for this service.

    Args:
        inference_id: The new endpoint's id.
        task_type: The resolved task type.
        config: The request body without ``service`` and ``task_type``.
        config_size: How many keys the request body had.
        version: The emulated Elasticsearch version.

    Returns:
        The endpoint to store and its secrets.

    Raises:
        EsError: The 400 Elasticsearch would send.
    """
    config = dict(config)
    service_settings = take_map(config, _SS, required=True)
    settings_size = len(service_settings)
    task_map = take_map(config, _TS, required=False)
    task_size = len(task_map)
    chunking = None
    if task_type == "text_embedding" and version.chunking:
        chunking = parse_chunking(config.pop("chunking_settings", None), version)
    if task_type not in TASK_TYPES:
        raise status_exception(
            f"The [{SERVICE}] service does not support task type [{task_type}]"
        )

    check = Extractor()
    model = check.required_string(service_settings, "model", _SS)
    region = check.required_string(service_settings, "region", _SS)
    provider = check.required_enum(service_settings, "provider", _SS, PROVIDERS)
    rpm = _rate_limit(service_settings, check)
    similarity = max_input_tokens = None
    if task_type == "text_embedding":
        similarity = check.optional_enum(
            service_settings, "similarity", _SS, SIMILARITIES
        )
        max_input_tokens = check.optional_positive_int(
            service_settings, "max_input_tokens", _SS
        )
        check.not_allowed(service_settings, "dimensions", _SS)
        check.not_allowed(service_settings, "dimensions_set_by_user", _SS)
    check.raise_if_any()
    assert provider is not None

    task = _task_settings(task_type, task_map, version)
    secrets = _take_secrets(service_settings)
    _check_capabilities(task_type, provider, task)

    for leftover, size in ((config, config_size), (service_settings, settings_size)):
        if leftover:
            raise unknown_settings(leftover, SERVICE, size)
    if task_map:
        raise unknown_settings(task_map, SERVICE, task_size)
    _validation_call(
        inference_id, task_type, provider, str(model), str(region), secrets
    )

    exposed: dict[str, Any] = {
        "region": region,
        "model": model,
        "provider": provider.upper(),
        "rate_limit": {"requests_per_minute": rpm},
    }
    dims = None
    if task_type == "text_embedding":
        dims = dims_for_model(str(model))
        exposed["dimensions"] = dims
        if max_input_tokens is not None:
            exposed["max_input_tokens"] = max_input_tokens
        exposed["similarity"] = similarity or "cosine"
    endpoint = Endpoint(
        inference_id=inference_id,
        task_type=task_type,
        service=SERVICE,
        service_settings=exposed,
        task_settings=task,
        chunking_settings=chunking,
        provider=provider,
        model_id=str(model),
        dims=dims,
    )
    return endpoint, secrets


def _take_secrets(settings: dict[str, Any]) -> dict[str, str]:
    check = Extractor()
    access_key = check.required_string(settings, "access_key", _SECRETS)
    secret_key = check.required_string(settings, "secret_key", _SECRETS)
    check.raise_if_any()
    return {"access_key": str(access_key), "secret_key": str(secret_key)}


def merge_request_task_settings(
    endpoint: Endpoint, overrides: dict[str, Any] | None, version: EsVersion
) -> dict[str, Any]:
    """The stored task settings overridden field by field by a request's settings.

    Values are validated like at creation; keys the service does not know are
    ignored, as Elasticsearch ignores them on inference requests.
    """
    if not overrides:
        return dict(endpoint.task_settings)
    parsed = _task_settings(endpoint.task_type, dict(overrides), version)
    merged = {**endpoint.task_settings, **parsed}
    assert endpoint.provider is not None
    _check_capabilities(endpoint.task_type, endpoint.provider, merged)
    order = ("temperature", "top_p", "top_k", "max_new_tokens", "truncate")
    return {key: merged[key] for key in order if key in merged}


def apply_update(
    endpoint: Endpoint,
    secrets: dict[str, str],
    service_settings: dict[str, Any] | None,
    task_settings: dict[str, Any] | None,
    version: EsVersion,
) -> tuple[Endpoint, dict[str, str]]:
    """Apply an ``_update`` request to a Bedrock endpoint.

    ``access_key`` and ``secret_key`` must come together; ``rate_limit`` (and for
    embeddings ``max_input_tokens``) may change; every other service setting is
    immutable and rejected with "[service_settings] does not allow the setting".
    """
    updated = endpoint.copy()
    new_secrets = dict(secrets)
    settings = dict(service_settings or {})
    check = Extractor()

    has_access, has_secret = "access_key" in settings, "secret_key" in settings
    if has_access != has_secret:
        missing = "secret_key" if has_access else "access_key"
        check.errors.append(
            f"[{_SS}] [access_key] and [secret_key] must be updated together; "
            f"missing: [{missing}]"
        )
    access_key = check.optional_string(settings, "access_key", _SS)
    secret_key = check.optional_string(settings, "secret_key", _SS)
    if "rate_limit" in settings:
        rpm = _rate_limit(settings, check)
        updated.service_settings["rate_limit"] = {"requests_per_minute": rpm}
    if endpoint.task_type == "text_embedding" and "max_input_tokens" in settings:
        tokens = check.optional_positive_int(settings, "max_input_tokens", _SS)
        if tokens is not None:
            _set_max_input_tokens(updated.service_settings, tokens)
    for key in list(settings):
        check.not_allowed(settings, key, _SS)
    check.raise_if_any()

    if access_key is not None and secret_key is not None:
        new_secrets = {"access_key": access_key, "secret_key": secret_key}
    if task_settings:
        size = len(task_settings)
        remaining = dict(task_settings)
        parsed = _task_settings(endpoint.task_type, remaining, version)
        if remaining:
            raise unknown_settings(remaining, SERVICE, size)
        merged = {**endpoint.task_settings, **parsed}
        assert endpoint.provider is not None
        _check_capabilities(endpoint.task_type, endpoint.provider, merged)
        order = ("temperature", "top_p", "top_k", "max_new_tokens", "truncate")
        updated.task_settings = {key: merged[key] for key in order if key in merged}
    return updated, new_secrets


def _set_max_input_tokens(exposed: dict[str, Any], tokens: int) -> None:
    similarity = exposed.pop("similarity", None)
    exposed["max_input_tokens"] = tokens
    if similarity is not None:
        exposed["similarity"] = similarity


def truncate_inputs(endpoint: Endpoint, inputs: Sequence[str]) -> list[str]:
    """Cut inputs to ``max_input_tokens * 3`` characters, as Elasticsearch does."""
    limit = endpoint.service_settings.get("max_input_tokens")
    if not isinstance(limit, int):
        return list(inputs)
    return [text[: limit * 3] for text in inputs]


def _malformed(field: str, problem: str) -> str:
    return (
        f"Malformed input request: #/{field}: {problem}, "
        "please reformat your input and try again."
    )


def check_embedding_inputs(endpoint: Endpoint, inputs: Sequence[str]) -> None:
    """Raise the failure Bedrock (through Elasticsearch) reports for these inputs."""
    provider = endpoint.provider
    if provider == "amazontitan" and len(inputs) > 1:
        raise EsError(500, "exception", "[input] cannot contain more than one string")
    if provider == "cohere" and len(inputs) > BEDROCK_MAX_BATCH["cohere"]:
        limit = BEDROCK_MAX_BATCH["cohere"]
        problem = f"expected maximum item count: {limit}, found: {len(inputs)}"
        _raise_validation(endpoint, _malformed("texts", problem))
    for index, text in enumerate(inputs):
        field = "inputText" if provider == "amazontitan" else f"texts/{index}"
        if not text.strip():
            problem = (
                f"expected minLength: 1, actual: {len(text)}"
                if not text
                else "expected a string with at least one non-whitespace character"
            )
            _raise_validation(endpoint, _malformed(field, problem))
        if provider == "amazontitan" and len(text) > TITAN_MAX_INPUT_CHARS:
            problem = (
                f"expected maxLength: {TITAN_MAX_INPUT_CHARS}, actual: {len(text)}"
            )
            _raise_validation(endpoint, _malformed(field, problem))


def check_completion_inputs(endpoint: Endpoint, inputs: Sequence[str]) -> None:
    """Raise Bedrock Converse's rejection of a blank message."""
    for index, text in enumerate(inputs):
        if not text.strip():
            _raise_validation(
                endpoint,
                f"The text field in the ContentBlock object at messages.{index}"
                ".content.0 is blank. Add text to the text field, and try again.",
            )


def _raise_validation(endpoint: Endpoint, message: str) -> None:
    raise upstream_failure(
        f"{_operation(endpoint.task_type)}: [{message}]",
        "validation_exception",
        _aws(message, 400, endpoint.inference_id),
    )


def throttled(endpoint: Endpoint, sequence: int) -> EsError:
    """The 500 Elasticsearch returns when Bedrock throttles the call."""
    message = "Too many requests, please wait before trying again."
    return upstream_failure(
        f"{_operation(endpoint.task_type)}: [{message}]",
        "throttling_exception",
        _aws(message, 429, endpoint.inference_id, sequence),
    )
