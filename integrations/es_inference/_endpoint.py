"""Endpoint specs and the get-create-reuse-wait lifecycle, written once.

:func:`ensure_steps` is a generator that yields the requests (and pauses) it needs and
receives their answers; :func:`run_sync` and :func:`run_async` drive it over a
transport. The decisions therefore exist once, whatever the caller's I/O.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._constants import BEDROCK_PROVIDER_TASKS, BEDROCK_SERVICE
from ._errors import (
    ApiError,
    BadRequestError,
    ConfigurationError,
    EndpointMismatchError,
    EndpointNotReadyError,
    EsInferenceError,
    NotFoundError,
)
from ._retry import RetryPolicy
from ._secrets import Secret, to_secret
from ._transport import AsyncTransport, SyncTransport
from ._wire import (
    EndpointInfo,
    Request,
    check_inference_id,
    check_task_type,
    get_endpoint,
    list_endpoints,
    parse_allocation,
    parse_endpoints,
    put_endpoint,
    trained_model_stats,
)

logger = logging.getLogger("es_inference.endpoint")

#: Services whose endpoints run a model inside the cluster and must be allocated.
IN_CLUSTER_SERVICES = frozenset({"elasticsearch", "elser"})

_PROVIDER_PREFIXES = {
    "amazon": "amazontitan",
    "cohere": "cohere",
    "anthropic": "anthropic",
    "ai21": "ai21labs",
    "meta": "meta",
    "mistral": "mistral",
}
# Cross-region inference profiles put a geography before the provider.
_PROFILE_PREFIXES = ("us", "eu", "apac", "us-gov", "global", "ca", "jp", "au")
# Titan and Cohere embedding models: titan-embed-text-v2:0, embed-english-v3, ...
_EMBEDDING_MODEL = re.compile(r"(?:^|-)embed(?:-|$|:)")
_ID_UNSAFE = re.compile(r"[^a-z0-9]+")
_MAX_DERIVED_ID = 96


@dataclass(frozen=True)
class Sleep:
    """A pause the lifecycle asks its driver for."""

    seconds: float


Step = Request | Sleep


@dataclass(frozen=True, repr=False)
class EndpointSpec:
    """The endpoint an adapter wants.

    Attributes:
        task_type: ``text_embedding``, ``completion``, ….
        inference_id: The id to use; ``None`` lets the lifecycle find a matching
            endpoint or derive an id from the settings.
        service: The inference service; ``None`` means "use the existing endpoint
            ``inference_id`` as it is, never create one".
        service_settings: Public settings (compared with what GET shows).
        secret_settings: Settings that are sent on PUT and never shown by GET.
        task_settings: Stored task settings.
        chunking_settings: Stored chunking settings (embedding endpoints).
        secrets_from_environment: Whether the secret settings were read from the
            environment rather than given by the caller. Reusing an existing
            endpoint applies no secret (Elasticsearch never shows them, so they
            cannot be compared); that is logged as a WARNING for secrets given
            by the caller, and at INFO for those from the environment.
    """

    task_type: str
    inference_id: str | None = None
    service: str | None = None
    service_settings: Mapping[str, Any] = field(default_factory=dict)
    secret_settings: Mapping[str, Secret] = field(default_factory=dict)
    task_settings: Mapping[str, Any] = field(default_factory=dict)
    chunking_settings: Mapping[str, Any] | None = None
    secrets_from_environment: bool = False

    def __post_init__(self) -> None:
        check_task_type(self.task_type)
        if self.inference_id is not None:
            check_inference_id(self.inference_id)
        if self.service is None and self.inference_id is None:
            raise ConfigurationError(
                "give an inference_id of an existing endpoint, or a model to create "
                "one with"
            )

    def __repr__(self) -> str:
        return (
            f"EndpointSpec(task_type={self.task_type!r}, "
            f"inference_id={self.inference_id!r}, service={self.service!r}, "
            f"service_settings={dict(self.service_settings)!r})"
        )

    @property
    def can_create(self) -> bool:
        """Whether the lifecycle may create the endpoint."""
        return self.service is not None

    @property
    def provider(self) -> str | None:
        """The Bedrock provider, lower-case, if any."""
        value = self.service_settings.get("provider")
        return str(value).lower() if value else None

    def create_body(self) -> dict[str, Any]:
        """The PUT body, secrets included."""
        if self.service is None:
            raise ConfigurationError("this spec cannot create an endpoint")
        settings = dict(self.service_settings)
        for key, secret in self.secret_settings.items():
            settings[key] = secret.get_secret_value()
        body: dict[str, Any] = {"service": self.service, "service_settings": settings}
        if self.task_settings:
            body["task_settings"] = dict(self.task_settings)
        if self.chunking_settings:
            body["chunking_settings"] = dict(self.chunking_settings)
        return body


def _model_parts(model: str) -> list[str]:
    # The id after an ARN's last "/", split at "."; without a profile's geography.
    parts = model.rsplit("/", 1)[-1].lower().split(".")
    if len(parts) > 2 and parts[0] in _PROFILE_PREFIXES:
        parts = parts[1:]
    return parts


def _model_name(model: str) -> str:
    # "titan-embed-text-v2:0" of "us.amazon.titan-embed-text-v2:0".
    parts = _model_parts(model)
    return ".".join(parts[1:]) if len(parts) > 1 else parts[0]


def infer_provider(model: str) -> str:
    """The amazonbedrock provider of a model id, inference profile or ARN."""
    parts = _model_parts(model)
    provider = _PROVIDER_PREFIXES.get(parts[0]) if len(parts) > 1 else None
    if provider is None:
        raise ConfigurationError(
            f"cannot tell the Bedrock provider of model {model!r}; pass provider= "
            f"(one of {', '.join(sorted(BEDROCK_PROVIDER_TASKS))})"
        )
    return provider


def check_bedrock_model(task_type: str, model: Any, provider: str | None = None) -> str:
    """Check that a Bedrock model offers the task; return its provider.

    Nothing is sent: the provider comes from ``provider`` or the model id, and an
    embedding model (``embed`` in its name, as every Titan and Cohere one has) is
    refused for any other task.
    """
    if not model or not isinstance(model, str):
        raise ConfigurationError("model must be a non-empty Bedrock model id")
    chosen = (provider or infer_provider(model)).lower()
    tasks = BEDROCK_PROVIDER_TASKS.get(chosen)
    if tasks is None:
        raise ConfigurationError(
            f"unknown Bedrock provider {provider!r}; expected one of "
            f"{', '.join(sorted(BEDROCK_PROVIDER_TASKS))}"
        )
    if task_type not in tasks:
        raise ConfigurationError(
            f"Bedrock provider {chosen!r} (model {model!r}) does not offer "
            f"{task_type}; it offers {', '.join(sorted(tasks))}"
        )
    if task_type != "text_embedding" and _EMBEDDING_MODEL.search(_model_name(model)):
        raise ConfigurationError(
            f"Bedrock model {model!r} is an embedding model and does not offer "
            f"{task_type}; it offers text_embedding (for {task_type}, use a text "
            "model such as amazon.titan-text-express-v1 or "
            "anthropic.claude-3-haiku-20240307-v1:0)"
        )
    return chosen


def bedrock_spec(
    task_type: str,
    *,
    model: str,
    provider: str | None = None,
    region: str | None = None,
    aws_access_key_id: Any = None,
    aws_secret_access_key: Any = None,
    inference_id: str | None = None,
    service_settings: Mapping[str, Any] | None = None,
    task_settings: Mapping[str, Any] | None = None,
    chunking_settings: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    keys_from_environment: bool | None = None,
) -> EndpointSpec:
    """Build an ``amazonbedrock`` endpoint spec.

    The provider comes from the model id unless given; region and keys fall back to
    ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID`` and
    ``AWS_SECRET_ACCESS_KEY``. Keys are only needed if the endpoint must be created.
    Extra ``service_settings`` (``rate_limit``, ``max_input_tokens``, …) are merged in.

    An endpoint that already exists keeps its keys: the ones given here are not
    applied (replace them with ``es-inference rotate-keys`` or
    ``es_inference.rotate_aws_keys``). The lifecycle then logs a WARNING if
    the keys were passed in, and only an INFO line if they came from the
    environment, where AWS keys are often set for other tools.
    ``keys_from_environment`` says which: by default, whether neither key was
    passed; callers that copied the environment's keys into the arguments say so.
    """
    env = os.environ if env is None else env
    chosen = check_bedrock_model(task_type, model, provider)
    settings: dict[str, Any] = {"model": model, "provider": chosen}
    region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        settings["region"] = region
    extra = dict(service_settings or {})
    for key in ("access_key", "secret_key"):
        if key in extra:
            raise ConfigurationError(
                f"pass the AWS {key} as aws_access_key_id/aws_secret_access_key, "
                "not in service_settings"
            )
    settings.update(extra)
    secrets = {}
    access = to_secret(aws_access_key_id) or to_secret(env.get("AWS_ACCESS_KEY_ID"))
    secret = to_secret(aws_secret_access_key) or to_secret(
        env.get("AWS_SECRET_ACCESS_KEY")
    )
    if access:
        secrets["access_key"] = access
    if secret:
        secrets["secret_key"] = secret
    if keys_from_environment is None:
        keys_from_environment = not (
            to_secret(aws_access_key_id) or to_secret(aws_secret_access_key)
        )
    return EndpointSpec(
        task_type=task_type,
        inference_id=inference_id,
        service=BEDROCK_SERVICE,
        service_settings=settings,
        secret_settings=secrets,
        task_settings=dict(task_settings or {}),
        chunking_settings=dict(chunking_settings) if chunking_settings else None,
        secrets_from_environment=keys_from_environment,
    )


def derive_inference_id(spec: EndpointSpec) -> str:
    """A readable id from service, task, provider, model and region.

    E.g. ``amazonbedrock-text-embedding-amazon-titan-embed-text-v2-0-us-east-1``;
    long ids are cut and end in a short hash so that they stay unique.
    """
    settings = spec.service_settings
    parts = [
        spec.service or "",
        spec.task_type,
        str(settings.get("model", settings.get("model_id", ""))),
        str(settings.get("region", "")),
    ]
    text = _ID_UNSAFE.sub("-", "-".join(parts).lower()).strip("-")
    if len(text) > _MAX_DERIVED_ID:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        text = text[: _MAX_DERIVED_ID - 9].rstrip("-") + "-" + digest
    return check_inference_id(text)


def _differs(key: str, wanted: Any, found: Any) -> bool:
    if key == "provider" and isinstance(wanted, str) and isinstance(found, str):
        return wanted.lower() != found.lower()
    if isinstance(wanted, Mapping) and isinstance(found, Mapping):
        return any(_differs(k, v, found.get(k)) for k, v in wanted.items())
    if isinstance(wanted, (int, float)) and isinstance(found, (int, float)):
        return float(wanted) != float(found)
    return bool(wanted != found)


def differences(spec: EndpointSpec, info: EndpointInfo) -> list[tuple[str, Any, Any]]:
    """Each field the spec sets that the endpoint shows differently."""
    found: list[tuple[str, Any, Any]] = []
    if info.task_type and info.task_type != spec.task_type:
        found.append(("task_type", spec.task_type, info.task_type))
    if spec.service is None:
        return found
    if info.service != spec.service:
        found.append(("service", spec.service, info.service))
    for key, wanted in spec.service_settings.items():
        value = info.service_settings.get(key)
        if _differs(key, wanted, value):
            found.append((f"service_settings.{key}", wanted, value))
    for key, wanted in spec.task_settings.items():
        value = info.task_settings.get(key)
        if _differs(key, wanted, value):
            found.append((f"task_settings.{key}", wanted, value))
    if spec.chunking_settings and info.chunking_settings is not None:
        for key, wanted in spec.chunking_settings.items():
            value = info.chunking_settings.get(key)
            if _differs(key, wanted, value):
                found.append((f"chunking_settings.{key}", wanted, value))
    return found


# The lifecycle ------------------------------------------------------------------


@dataclass(frozen=True)
class ReadyEndpoint:
    """An endpoint known to exist, match the spec and be ready."""

    info: EndpointInfo
    created: bool


def ensure_steps(
    spec: EndpointSpec,
    *,
    wait_timeout: float = 600.0,
    poll_interval: float = 1.0,
    server_timeout: str | None = None,
) -> Generator[Step, Any, ReadyEndpoint]:
    """Get, create or reuse the endpoint of ``spec``, then wait until it is ready.

    Yields requests (answered with the body bytes, or an :class:`ApiError` thrown
    in) and :class:`Sleep` steps.
    """
    inference_id = spec.inference_id
    if inference_id is None:
        body = yield list_endpoints(spec.task_type)
        matches = [
            candidate
            for candidate in parse_endpoints(body)
            if candidate.service == spec.service and not differences(spec, candidate)
        ]
        inference_id = derive_inference_id(spec)
        if matches:
            # Prefer the id this library would have derived, then the first by name.
            derived = inference_id
            best = min(
                matches, key=lambda m: (m.inference_id != derived, m.inference_id)
            )
            logger.info(
                "reusing inference endpoint [%s] (same service, model and settings)",
                best.inference_id,
            )
            _secrets_not_applied(spec, best.inference_id)
            ready = yield from _wait_ready(spec, best, wait_timeout, poll_interval)
            return ReadyEndpoint(ready, created=False)

    info: EndpointInfo | None = None
    created = raced = False
    try:
        info = _single((yield get_endpoint(inference_id)), inference_id)
    except NotFoundError:
        if not spec.can_create:
            raise ConfigurationError(
                f"inference endpoint [{inference_id}] does not exist; create it, or "
                "pass a model so that it can be created"
            ) from None
    if info is None:
        _check_can_put(spec, inference_id)
        request = put_endpoint(
            spec.task_type, inference_id, spec.create_body(), server_timeout
        )
        try:
            info = _single((yield request), inference_id)
            created = True
            note_secrets_applied(inference_id, spec.secret_settings)
            logger.info("created inference endpoint [%s]", inference_id)
        except BadRequestError as exc:
            if exc.error_type != "resource_already_exists_exception":
                raise
            logger.info(
                "inference endpoint [%s] was created concurrently; checking it",
                inference_id,
            )
            raced = True
            info = _single((yield get_endpoint(inference_id)), inference_id)
    if not created:
        mismatch = differences(spec, info)
        if mismatch:
            raise EndpointMismatchError(inference_id, mismatch)
        logger.info("using existing inference endpoint [%s]", inference_id)
        if not raced:
            _secrets_not_applied(spec, inference_id)
    ready = yield from _wait_ready(spec, info, wait_timeout, poll_interval)
    return ReadyEndpoint(ready, created=created)


#: A per-process key, so that what :data:`_APPLIED` keeps reveals nothing.
_DIGEST_KEY = os.urandom(32)
#: Keyed digests of the secrets this process created or rotated each endpoint with.
_APPLIED: dict[str, bytes] = {}


def _secrets_digest(secrets: Mapping[str, Secret]) -> bytes:
    digest = hmac.new(_DIGEST_KEY, digestmod=hashlib.sha256)
    for key in sorted(secrets):
        digest.update(f"{key}\0{secrets[key].get_secret_value()}\0".encode())
    return digest.digest()


def note_secrets_applied(inference_id: str, secrets: Mapping[str, Secret]) -> None:
    """Remember that this process gave ``inference_id`` these secrets."""
    if secrets:
        _APPLIED[inference_id] = _secrets_digest(secrets)


def _secrets_not_applied(spec: EndpointSpec, inference_id: str) -> None:
    """Say that a reused endpoint keeps its own secrets, without naming any value.

    Not said when another caller created the endpoint between this one's GET and
    PUT (most often a sibling process with the same settings), nor when this
    process created the endpoint, or rotated its keys, with the same secrets.
    """
    if not spec.secret_settings:
        return
    if _APPLIED.get(inference_id) == _secrets_digest(spec.secret_settings):
        return
    if spec.service == BEDROCK_SERVICE:
        what = "AWS keys"
        fix = (
            f"to replace the endpoint's keys, run 'es-inference rotate-keys "
            f"{inference_id}' or call es_inference.rotate_aws_keys()"
        )
    else:
        what = f"secret settings ({', '.join(sorted(spec.secret_settings))})"
        fix = "to replace them, use the _update inference API"
    if spec.secrets_from_environment:
        logger.info(
            "inference endpoint [%s] exists and was reused; the %s from the "
            "environment were not applied",
            inference_id,
            what,
        )
        return
    logger.warning(
        "inference endpoint [%s] exists and was reused; the %s given were not "
        "applied (Elasticsearch never shows an endpoint's secrets, so they cannot "
        "be compared); %s",
        inference_id,
        what,
        fix,
    )


def _single(body: bytes, inference_id: str) -> EndpointInfo:
    infos = parse_endpoints(body)
    for info in infos:
        if info.inference_id == inference_id:
            return info
    if len(infos) == 1:
        return infos[0]
    raise EsInferenceError(
        f"GET inference endpoint [{inference_id}] answered without that endpoint"
    )


def _check_can_put(spec: EndpointSpec, inference_id: str) -> None:
    if spec.service != BEDROCK_SERVICE:
        return
    missing = [
        name
        for key, name in (
            ("access_key", "aws_access_key_id (or AWS_ACCESS_KEY_ID)"),
            ("secret_key", "aws_secret_access_key (or AWS_SECRET_ACCESS_KEY)"),
        )
        if key not in spec.secret_settings
    ]
    if "region" not in spec.service_settings:
        missing.append("region (or AWS_REGION)")
    if missing:
        raise ConfigurationError(
            f"cannot create inference endpoint [{inference_id}]: missing "
            + ", ".join(missing)
        )


def _wait_ready(
    spec: EndpointSpec,
    info: EndpointInfo,
    wait_timeout: float,
    poll_interval: float,
) -> Generator[Step, Any, EndpointInfo]:
    if info.service not in IN_CLUSTER_SERVICES:
        return info  # external services are usable once PUT or GET succeeded
    deployment_id = str(info.service_settings.get("deployment_id") or info.inference_id)
    deadline = time.monotonic() + wait_timeout
    last_state = None
    while True:
        body = yield trained_model_stats(deployment_id)
        state, count, target, reason = parse_allocation(body, deployment_id)
        if state != last_state:
            logger.info(
                "model deployment [%s] of endpoint [%s]: %s (%d of %d allocations)",
                deployment_id,
                info.inference_id,
                state,
                count,
                target,
            )
            last_state = state
        if state == "failed":
            raise EndpointNotReadyError(
                info.inference_id,
                f"model deployment [{deployment_id}] of endpoint "
                f"[{info.inference_id}] failed: {reason or 'no reason given'}",
            )
        adaptive_idle = target == 0 and state in ("started", "fully_allocated")
        if (state == "fully_allocated" and count == target) or adaptive_idle:
            return info
        if time.monotonic() + poll_interval > deadline:
            raise EndpointNotReadyError(
                info.inference_id,
                f"model deployment [{deployment_id}] of endpoint "
                f"[{info.inference_id}] was not ready after {wait_timeout:g}s "
                f"(last state {state}, {count} of {target} allocations)",
            )
        yield Sleep(poll_interval)


# Drivers --------------------------------------------------------------------------


def run_sync(
    steps: Generator[Step, Any, Any],
    transport: SyncTransport,
    retry: RetryPolicy,
) -> Any:
    """Drive a step generator with blocking I/O and return its result."""
    answer: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(answer)
        except StopIteration as stop:
            return stop.value
        answer, error = None, None
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            continue
        try:
            answer = transport.perform(step, retry, bytes)
        except ApiError as exc:
            error = exc


async def run_async(
    steps: Generator[Step, Any, Any],
    transport: AsyncTransport,
    retry: RetryPolicy,
) -> Any:
    """Drive a step generator with asyncio and return its result."""
    answer: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(answer)
        except StopIteration as stop:
            return stop.value
        answer, error = None, None
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            continue
        try:
            answer = await transport.perform(step, retry, bytes)
        except ApiError as exc:
            error = exc


def build_spec(
    task_type: str,
    *,
    inference_id: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    region: str | None = None,
    aws_access_key_id: Any = None,
    aws_secret_access_key: Any = None,
    service: str | None = None,
    service_settings: Mapping[str, Any] | None = None,
    secret_settings: Mapping[str, Any] | None = None,
    task_settings: Mapping[str, Any] | None = None,
    chunking_settings: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    keys_from_environment: bool | None = None,
) -> EndpointSpec:
    """The endpoint spec an adapter's arguments describe.

    - a ``model`` (and no other ``service``): an ``amazonbedrock`` endpoint;
    - a ``service`` with ``service_settings``: any other inference service;
    - only an ``inference_id``: an existing endpoint, used as it is.

    ``keys_from_environment`` is passed on to :func:`bedrock_spec`.
    """
    service = service or (BEDROCK_SERVICE if model else None)
    if service == BEDROCK_SERVICE:
        if not model:
            raise ConfigurationError("an amazonbedrock endpoint needs a model id")
        if secret_settings:
            raise ConfigurationError(
                "pass Bedrock keys as aws_access_key_id/aws_secret_access_key"
            )
        return bedrock_spec(
            task_type,
            model=model,
            provider=provider,
            region=region,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            inference_id=inference_id,
            service_settings=service_settings,
            task_settings=task_settings,
            chunking_settings=chunking_settings,
            env=env,
            keys_from_environment=keys_from_environment,
        )
    if service is None:
        if service_settings or task_settings or chunking_settings or secret_settings:
            raise ConfigurationError(
                "settings were given without a model or service to create with"
            )
        return EndpointSpec(task_type=task_type, inference_id=inference_id)
    settings = dict(service_settings or {})
    if model and "model_id" not in settings and "model" not in settings:
        settings["model_id"] = model
    secrets: dict[str, Secret] = {}
    for key, value in (secret_settings or {}).items():
        wrapped = to_secret(value)
        if wrapped is not None:
            secrets[key] = wrapped
    return EndpointSpec(
        task_type=task_type,
        inference_id=inference_id,
        service=service,
        service_settings=settings,
        secret_settings=secrets,
        task_settings=dict(task_settings or {}),
        chunking_settings=dict(chunking_settings) if chunking_settings else None,
    )
