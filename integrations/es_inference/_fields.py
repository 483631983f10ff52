"""The settings both framework adapters take, as one pydantic mixin.

Only the adapter modules import this (pydantic comes with LangChain and LlamaIndex).
Secret fields are ``SecretStr`` and excluded from serialization; pickling an adapter
drops them, and the unpickled copy reads credentials from the environment again.

Invalid settings raise :class:`ConfigurationError` from the constructor, as every
other bad argument of this library does. Pydantic turns any ``ValueError`` raised
inside a validator (``ConfigurationError`` included) into a ``ValidationError``,
so the constructor translates that one back, once, with a message naming each
field, the allowed range and (for numbers only) the value given. ``model_validate``
does not pass through the constructor and raises pydantic's error.
"""

from __future__ import annotations

import os
import threading
import typing
from typing import Any, ClassVar, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from ._completion import (
    BEDROCK_COMPLETION_SETTINGS,
    CompletionService,
    check_stop,
    check_task_settings,
    merge_task_settings,
)
from ._config import check_connection_arguments, encode_api_key, resolve_connection
from ._constants import BEDROCK_SERVICE, TITAN_MAX_INPUT_CHARS
from ._endpoint import build_spec, check_bedrock_model, infer_provider
from ._errors import ConfigurationError, EsInferenceError
from ._retry import RetryPolicy
from ._service import EmbeddingService, InferenceService, ServiceOptions
from ._wire import check_inference_id

S = TypeVar("S", bound=InferenceService)

_SECRET_FIELDS = (
    "es_api_key",
    "es_password",
    "es_bearer_token",
    "aws_access_key_id",
    "aws_secret_access_key",
    "secret_settings",
)
_RETRY = RetryPolicy()
# Connection settings an adapter may take from the environment at construction.
_CONNECTION_FIELDS = ("es_url", "es_cloud_id", "es_api_key")


class ServiceSlot:
    """Holds an adapter's service; pickles as an empty slot."""

    __slots__ = ("service",)

    def __init__(self) -> None:
        self.service: Any = None

    def __reduce__(self) -> tuple[type[ServiceSlot], tuple[()]]:
        return (ServiceSlot, ())


class EndpointFields(BaseModel):
    """Where the endpoint is, what it is, and how calls are sent.

    ``es_api_key`` takes the encoded key or an ``(id, api_key)`` pair; a pair is
    kept as the encoded key it stands for, so it is as hidden as any other secret.
    AWS keys are only used to create the endpoint: an endpoint that already exists
    keeps its own (Elasticsearch never shows them, so they cannot be compared).
    Keys passed to the adapter are then reported with a WARNING that points to
    ``es-inference rotate-keys``; keys taken from the AWS environment variables,
    which are often set for other tools, only with an INFO line.
    """

    model_config = ConfigDict(
        extra="forbid",
        protected_namespaces=(),
        arbitrary_types_allowed=True,
        validate_assignment=False,
        # Validation errors would otherwise quote the input, credentials included.
        hide_input_in_errors=True,
    )

    inference_id: str | None = Field(
        default=None,
        description="Endpoint id; derived from the settings (or reused) if omitted.",
    )
    model: str | None = Field(
        default=None, description="Bedrock model id, e.g. amazon.titan-embed-text-v2:0"
    )
    provider: str | None = Field(
        default=None, description="Bedrock provider; inferred from the model id."
    )
    region: str | None = Field(
        default=None, description="AWS region; defaults to AWS_REGION."
    )
    aws_access_key_id: SecretStr | None = Field(default=None, exclude=True)
    aws_secret_access_key: SecretStr | None = Field(default=None, exclude=True)
    service: str | None = Field(
        default=None,
        description="Inference service; amazonbedrock when a model is given.",
    )
    service_settings: dict[str, Any] | None = None
    secret_settings: dict[str, SecretStr] | None = Field(default=None, exclude=True)
    task_settings: dict[str, Any] | None = None
    chunking_settings: dict[str, Any] | None = None

    es_url: str | None = Field(
        default=None, description="Defaults to ELASTICSEARCH_URL."
    )
    es_cloud_id: str | None = Field(
        default=None, description="Defaults to ELASTIC_CLOUD_ID."
    )
    es_api_key: SecretStr | None = Field(
        default=None,
        exclude=True,
        description="The encoded API key, or an (id, api_key) pair; defaults to "
        "ELASTICSEARCH_API_KEY.",
    )
    es_user: str | None = None
    es_password: SecretStr | None = Field(default=None, exclude=True)
    es_bearer_token: SecretStr | None = Field(default=None, exclude=True)
    verify_certs: bool = True
    ca_certs: str | None = None

    concurrency: int = Field(
        default=16, ge=1, description="Requests in flight at once."
    )
    request_timeout: float = Field(
        default=30.0,
        gt=0,
        allow_inf_nan=False,
        description="Server-side timeout sent with each call (s).",
    )
    max_retries: int = Field(
        default=_RETRY.max_attempts - 1,
        ge=0,
        description="Retries per request after its first attempt (0: none).",
    )
    initial_backoff: float = Field(
        default=_RETRY.initial_backoff,
        ge=0,
        allow_inf_nan=False,
        description="Upper bound of the first retry wait (s); it doubles per retry "
        "and each wait is drawn uniformly below it.",
    )
    max_backoff: float = Field(
        default=_RETRY.max_backoff,
        ge=0,
        allow_inf_nan=False,
        description="Upper bound of any one retry wait (s), Retry-After included.",
    )
    max_elapsed: float = Field(
        default=_RETRY.max_elapsed,
        ge=0,
        description="No retry starts later than this after a request's first "
        "attempt (s).",
    )
    pace: bool = Field(
        default=True, description="Stay under the endpoint's rate limit."
    )
    requests_per_minute: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    wait_timeout: float = Field(
        default=600.0, gt=0, description="Longest wait for an in-cluster model (s)."
    )
    poll_interval: float = Field(
        default=1.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds between allocation polls.",
    )

    #: The task of the endpoint, for checking the model at construction.
    endpoint_task: ClassVar[str] = ""

    _slot: ServiceSlot = PrivateAttr(default_factory=ServiceSlot)
    # Whether the AWS keys were passed in rather than read from the environment.
    _aws_keys_given: bool = PrivateAttr(default=False)
    # Connection fields filled from the environment; the service reads it again.
    _from_environment: frozenset[str] = PrivateAttr(default=frozenset())

    def __init__(self, **data: Any) -> None:
        """Check and complete the settings; nothing is sent before first use.

        Raises:
            ConfigurationError: naming each invalid setting and what it allows.
        """
        try:
            super().__init__(**data)
            return
        except ValidationError as exc:
            error = settings_error(type(self), exc)
        # Raised outside the handler, so that the pydantic error, which keeps the
        # input (credentials included), is not chained to it.
        raise error

    @field_validator("inference_id")
    @classmethod
    def _check_inference_id(cls, value: str | None) -> str | None:
        """Reject an id Elasticsearch would refuse, before any request."""
        return None if value is None else check_inference_id(value)

    @field_validator(
        "concurrency",
        "max_retries",
        "initial_backoff",
        "max_backoff",
        "max_elapsed",
        "request_timeout",
        "requests_per_minute",
        "wait_timeout",
        "poll_interval",
        mode="before",
    )
    @classmethod
    def _refuse_bool(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse ``True``/``False`` where a number is meant (pydantic takes them)."""
        return refuse_bool(cls, value, info)

    @field_validator("es_api_key", mode="before")
    @classmethod
    def _encode_api_key(cls, value: Any) -> Any:
        """Keep an ``(id, api_key)`` pair as the one encoded key it stands for."""
        if value is None or isinstance(value, SecretStr):
            return value
        encoded = encode_api_key(value)
        return None if encoded is None else SecretStr(encoded.get_secret_value())

    @model_validator(mode="after")
    def _fill_from_environment(self) -> EndpointFields:
        """Check the settings given, then take unset ones from the environment.

        Only the connection settings given are checked here; how they combine with
        the environment is decided at first use (see ``resolve_connection``).
        """
        check_connection_arguments(
            es_url=self.es_url,
            es_cloud_id=self.es_cloud_id,
            es_api_key=self.es_api_key,
            es_user=self.es_user,
            es_password=self.es_password,
            es_bearer_token=self.es_bearer_token,
        )
        check_backoff(self)
        if (
            self.model
            and self.endpoint_task
            and self.service in (None, BEDROCK_SERVICE)
        ):
            check_bedrock_model(self.endpoint_task, self.model, self.provider)

        env = os.environ
        filled: set[str] = set()
        if not self.es_url and not self.es_cloud_id:
            self.es_url = env.get("ELASTICSEARCH_URL") or None
            if not self.es_url:
                self.es_cloud_id = env.get("ELASTIC_CLOUD_ID") or None
            filled.update(("es_url", "es_cloud_id"))
        credentials = (self.es_api_key, self.es_user, self.es_password)
        if not any(credentials) and not self.es_bearer_token:
            key = env.get("ELASTICSEARCH_API_KEY")
            self.es_api_key = SecretStr(key) if key else None
            filled.add("es_api_key")
        self._from_environment = frozenset(filled)
        if self.model and self.service in (None, "amazonbedrock"):
            self.region = (
                self.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
            )
            self._aws_keys_given = bool(
                self.aws_access_key_id or self.aws_secret_access_key
            )
            if self.aws_access_key_id is None and env.get("AWS_ACCESS_KEY_ID"):
                self.aws_access_key_id = SecretStr(env["AWS_ACCESS_KEY_ID"])
            if self.aws_secret_access_key is None and env.get("AWS_SECRET_ACCESS_KEY"):
                self.aws_secret_access_key = SecretStr(env["AWS_SECRET_ACCESS_KEY"])
        return self

    def _options(self, **extra: Any) -> ServiceOptions:
        return ServiceOptions(
            concurrency=self.concurrency,
            retry=RetryPolicy(
                max_attempts=self.max_retries + 1,
                initial_backoff=self.initial_backoff,
                max_backoff=self.max_backoff,
                max_elapsed=self.max_elapsed,
            ),
            pace=self.pace,
            requests_per_minute=self.requests_per_minute,
            wait_timeout=self.wait_timeout,
            poll_interval=self.poll_interval,
            **extra,
        )

    def _build_service(self, cls: type[S], task_type: str, **options: Any) -> S:
        # What came from the environment is read from it again, so that the
        # environment's own conflicts are found, and an unpickled copy reads its own.
        given = {
            name: None if name in self._from_environment else getattr(self, name)
            for name in _CONNECTION_FIELDS
        }
        connection = resolve_connection(
            **given,
            es_user=self.es_user,
            es_password=self.es_password,
            es_bearer_token=self.es_bearer_token,
            verify_certs=self.verify_certs,
            ca_certs=self.ca_certs,
            request_timeout=self.request_timeout,
        )
        spec = build_spec(
            task_type,
            inference_id=self.inference_id,
            model=self.model,
            provider=self.provider,
            region=self.region,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            service=self.service,
            service_settings=self.service_settings,
            secret_settings=self.secret_settings,
            task_settings=self.task_settings,
            chunking_settings=self.chunking_settings,
            keys_from_environment=not self._aws_keys_given,
        )
        return cls(connection, spec, self._options(**options))

    def close(self) -> None:
        """Close the blocking connections and worker threads behind this adapter.

        The adapter stays usable: its next call opens them again.
        """
        service = self._slot.service
        if service is not None:
            service.close()

    async def aclose(self) -> None:
        """:meth:`close`, and the running event loop's connections as well."""
        service = self._slot.service
        if service is not None:
            await service.aclose()

    def __getstate__(self) -> dict[Any, Any]:
        state = dict(super().__getstate__())
        fields = dict(state.get("__dict__", {}))
        for name in _SECRET_FIELDS:
            if name in fields:
                fields[name] = None
        state["__dict__"] = fields
        # The copy reads its keys from the environment.
        private = dict(state.get("__pydantic_private__") or {})
        private["_aws_keys_given"] = False
        state["__pydantic_private__"] = private
        return state


_build_lock = threading.Lock()


class EmbeddingFields(EndpointFields):
    """Endpoint settings plus the options of embedding calls."""

    endpoint_task: ClassVar[str] = "text_embedding"

    batch_size: int | None = Field(
        default=None,
        ge=1,
        description="Texts per request; the provider's limit if omitted (Titan 1, "
        "Cohere 96, others 16).",
    )
    max_input_chars: int | None = Field(
        default=TITAN_MAX_INPUT_CHARS,
        ge=1,
        description="Longest text accepted, checked before sending.",
    )
    send_input_type: bool | None = Field(
        default=None,
        description="Send input_type ingest/search; decided by provider if omitted.",
    )

    @field_validator("batch_size", "max_input_chars", mode="before")
    @classmethod
    def _refuse_bool_sizes(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse ``True``/``False`` where a size is meant."""
        return refuse_bool(cls, value, info)

    def embedding_service(self) -> EmbeddingService:
        """The framework-free service behind this adapter, built on first use."""
        slot = self._slot
        if slot.service is None:
            with _build_lock:
                if slot.service is None:
                    slot.service = self._build_service(
                        EmbeddingService,
                        "text_embedding",
                        batch_size=self.batch_size,
                        max_input_chars=self.max_input_chars,
                        send_input_type=self.send_input_type,
                    )
        service: EmbeddingService = slot.service
        return service


class CompletionFields(EndpointFields):
    """Endpoint settings plus the task settings and stop sequences of completions.

    The task-setting fields are sent with every request and override the endpoint's
    stored ``task_settings`` field by field, so adapters that differ only in them
    share one endpoint. Per-call keyword arguments of the same names (or a
    ``task_settings`` mapping) override the fields.
    """

    endpoint_task: ClassVar[str] = "completion"

    max_new_tokens: int | None = Field(
        default=None, strict=True, description="Most tokens to generate (positive)."
    )
    temperature: float | None = Field(
        default=None, strict=True, description="Sampling temperature, 0.0 to 1.0."
    )
    top_p: float | None = Field(
        default=None, strict=True, description="Nucleus sampling mass, 0.0 to 1.0."
    )
    top_k: float | None = Field(
        default=None,
        strict=True,
        description="Top-k sampling, 0.0 to 1.0; Bedrock anthropic, cohere and "
        "mistral models only.",
    )
    stop: list[str] | None = Field(
        default=None,
        description="Stop sequences; answers end before the earliest one (applied "
        "on this side, the endpoint has no such setting).",
    )
    # Elasticsearch 9.5 waits 120 s for completions by default; sending the same
    # explicitly gives older clusters the same patience.
    request_timeout: float = Field(
        default=120.0,
        gt=0,
        allow_inf_nan=False,
        description="Server-side timeout sent with each call (s).",
    )

    # Field validators, not a model validator: a model validator's error would
    # show the whole input, and with it the keys passed beside the bad setting.
    @field_validator(*BEDROCK_COMPLETION_SETTINGS)
    @classmethod
    def _check_setting(cls, value: Any, info: ValidationInfo) -> Any:
        """Reject an invalid task setting at construction."""
        if value is not None and info.field_name is not None:
            data = info.data
            service = data.get("service")
            if service is None:
                # Only an inference_id: the service is known once the endpoint is
                # fetched, and the settings are checked then, before sending them.
                service = BEDROCK_SERVICE if data.get("model") else ""
            check_task_settings(
                {info.field_name: value},
                service=service,
                provider=_bedrock_provider(data)
                if service == BEDROCK_SERVICE
                else None,
            )
        return value

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: list[str] | None) -> list[str] | None:
        """Reject empty stop sequences at construction."""
        check_stop(value)
        return value

    def default_task_settings(self) -> dict[str, Any]:
        """The task settings the fields give, without unset ones."""
        return merge_task_settings(
            {name: getattr(self, name) for name in BEDROCK_COMPLETION_SETTINGS}
        )

    def call_task_settings(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The fields' task settings overridden by a call's keyword arguments.

        Raises:
            ConfigurationError: for a keyword argument that is not a task setting.
        """
        extra = dict(kwargs)
        given = extra.pop("task_settings", None) or {}
        named = {
            name: extra.pop(name)
            for name in BEDROCK_COMPLETION_SETTINGS
            if name in extra
        }
        if extra:
            raise ConfigurationError(
                f"unknown keyword arguments {', '.join(sorted(extra))}; a call takes "
                f"task_settings or {', '.join(BEDROCK_COMPLETION_SETTINGS)}"
            )
        return merge_task_settings(self.default_task_settings(), given, named)

    def completion_service(self) -> CompletionService:
        """The framework-free service behind this adapter, built on first use."""
        slot = self._slot
        if slot.service is None:
            with _build_lock:
                if slot.service is None:
                    slot.service = self._build_service(CompletionService, "completion")
        service: CompletionService = slot.service
        return service


def refuse_bool(model: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """Refuse a bool for a numeric field, as pydantic's own type error would."""
    if isinstance(value, bool) and info.field_name is not None:
        annotation = model.model_fields[info.field_name].annotation
        kinds = set(typing.get_args(annotation)) or {annotation}
        kind = "float_type" if float in kinds else "int_type"
        raise PydanticCustomError(kind, "a number, not true or false")
    return value


def check_backoff(fields: EndpointFields) -> None:
    """Refuse a given ``initial_backoff`` above ``max_backoff``.

    Only a given one: lowering ``max_backoff`` alone below the default first
    wait is fine, since every wait is bounded by it.
    """
    if "initial_backoff" not in fields.model_fields_set:
        return
    if fields.initial_backoff > fields.max_backoff:
        default = "" if "max_backoff" in fields.model_fields_set else " (the default)"
        raise ConfigurationError(
            f"initial_backoff {fields.initial_backoff!r} is greater than max_backoff "
            f"{fields.max_backoff!r}{default}; no wait can exceed max_backoff, so "
            "lower initial_backoff or raise max_backoff"
        )


def _bedrock_provider(data: dict[str, Any]) -> str | None:
    provider = data.get("provider")
    if isinstance(provider, str) and provider:
        return provider
    model = data.get("model")
    try:
        return infer_provider(model) if isinstance(model, str) and model else None
    except ConfigurationError:
        return None  # the spec reports an unknown provider with its own message


# Errors ---------------------------------------------------------------------------

# Pydantic error types whose message is best told as the field's allowed values.
_RANGE_ERRORS = frozenset(
    {
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "finite_number",
        "int_type",
        "int_parsing",
        "int_from_float",
        "float_type",
        "float_parsing",
        "bool_type",
        "bool_parsing",
    }
)
_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def settings_error(
    model: type[BaseModel], error: ValidationError
) -> ConfigurationError:
    """One :class:`ConfigurationError` naming every invalid setting of ``error``.

    A value is shown only if it is a number of a field that holds no secret.
    """
    problems = [_problem(model, detail) for detail in error.errors(include_url=False)]
    return ConfigurationError(f"{model.__name__}: {'; '.join(problems)}")


def _problem(model: type[BaseModel], detail: Any) -> str:
    loc = tuple(detail["loc"])
    where = _location(loc)
    cause = (detail.get("ctx") or {}).get("error")
    if isinstance(cause, EsInferenceError):
        return str(cause)  # this library's own checks name the setting and the rule
    if detail["type"] == "extra_forbidden":
        return f"unknown setting {where}"
    field = model.model_fields.get(str(loc[0])) if len(loc) == 1 else None
    if field is not None and detail["type"] in _RANGE_ERRORS:
        given = _shown(str(loc[0]), detail.get("input"))
        return f"{where} must be {_allowed(field)}, got {given}"
    if cause is not None:
        return f"{where}: {cause}"
    return f"{where}: {detail['msg']}"


def _location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".") or "settings"


def _allowed(field: FieldInfo) -> str:
    kinds = set(typing.get_args(field.annotation)) or {field.annotation}
    if bool in kinds:
        text = "true or false"
    elif int in kinds and float not in kinds:
        text = "an integer"
    else:
        finite = any(getattr(m, "allow_inf_nan", True) is False for m in field.metadata)
        text = "a finite number" if finite else "a number"
    bounds = [
        f"{sign} {getattr(meta, name)}"
        for meta in field.metadata
        for name, sign in _BOUNDS
        if getattr(meta, name, None) is not None
    ]
    if bounds:
        text += " " + " and ".join(bounds)
    if type(None) in kinds:
        text += ", or None"
    return text


def _shown(name: str, value: Any) -> str:
    if value is None:
        return "None"
    if name not in _SECRET_FIELDS and isinstance(value, (int, float)):
        return repr(value)
    return "a string" if isinstance(value, str) else f"a {type(value).__name__}"
