"""es-inference: Elasticsearch inference endpoints as LangChain and LlamaIndex models.

The framework adapters live in :mod:`es_inference.langchain` and
:mod:`es_inference.llama_index`; this package exports the framework-free services,
the endpoint helpers and the exceptions. Importing it loads neither framework nor
the local server.
"""

from ._admin import rotate_aws_keys
from ._completion import CompletionService
from ._config import ConnectionConfig, resolve_connection
from ._endpoint import EndpointSpec, ReadyEndpoint, bedrock_spec, build_spec
from ._errors import (
    ApiError,
    AuthenticationError,
    AuthorizationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    ConnectionError,
    EndpointMismatchError,
    EndpointNotReadyError,
    EsInferenceError,
    InputError,
    NotFoundError,
    PartialCompletionError,
    PartialResultError,
    RequestTimeout,
    ResponseDecodeError,
    ServerError,
    StreamError,
    TLSError,
    TooManyRequestsError,
    TransportError,
    UnexpectedResponseError,
)
from ._files import FilePartialError, embed_to_file, read_texts
from ._retry import RateLimiter, RetryPolicy
from ._secrets import Secret
from ._service import EmbeddingService, InferenceService, ServiceOptions
from ._wire import EndpointInfo, FloatArray

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "AuthenticationError",
    "AuthorizationError",
    "BadRequestError",
    "CompletionService",
    "ConfigurationError",
    "ConflictError",
    "ConnectionConfig",
    "ConnectionError",
    "EmbeddingService",
    "EndpointInfo",
    "EndpointMismatchError",
    "EndpointNotReadyError",
    "EndpointSpec",
    "EsInferenceError",
    "FilePartialError",
    "FloatArray",
    "InferenceService",
    "InputError",
    "NotFoundError",
    "PartialCompletionError",
    "PartialResultError",
    "RateLimiter",
    "ReadyEndpoint",
    "RequestTimeout",
    "ResponseDecodeError",
    "RetryPolicy",
    "Secret",
    "ServerError",
    "ServiceOptions",
    "StreamError",
    "TLSError",
    "TooManyRequestsError",
    "TransportError",
    "UnexpectedResponseError",
    "bedrock_spec",
    "build_spec",
    "embed_to_file",
    "read_texts",
    "resolve_connection",
    "rotate_aws_keys",
]
