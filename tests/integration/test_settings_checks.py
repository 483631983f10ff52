"""Settings refused before any request: at construction when given, at first use
when they come from the environment.

Every adapter is built against the local server on loopback; a refused setting
must leave its request log empty, and no message may show a credential.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from es_inference import ConfigurationError, build_spec
from es_inference.langchain import ElasticInferenceEmbeddings, ElasticInferenceLLM
from es_inference.llama_index import ElasticInferenceEmbedding
from es_inference.llama_index import ElasticInferenceLLM as LlamaLLM
from es_inference.local import LocalServer

from .adapters import ALL, EMBEDDINGS, LLMS, use
from .helpers import API_KEY, COHERE, HAIKU, TITAN, bedrock

SECRET = "query-secret-0815-value"
PASSWORD = "basic-password-4711"
ENVIRONMENT = (
    "ELASTICSEARCH_URL",
    "ELASTIC_CLOUD_ID",
    "ELASTICSEARCH_API_KEY",
    "ELASTICSEARCH_USERNAME",
    "ELASTICSEARCH_PASSWORD",
)
CHOOSE = "pass only one of es_api_key, es_user with es_password, or es_bearer_token"


@pytest.fixture(autouse=True)
def _no_elasticsearch_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    yield


def arguments(cls: type[Any], url: str, **overrides: Any) -> dict[str, Any]:
    settings = bedrock(url, model=HAIKU if cls in LLMS else TITAN)
    settings.update(overrides)
    return {name: value for name, value in settings.items() if value is not None}


def refused_at_construction(cls: type[Any], settings: dict[str, Any]) -> str:
    """The message of the constructor's error, checked to show no credential."""
    with pytest.raises(ConfigurationError) as info:
        cls(**settings)
    error = info.value
    assert error.__context__ is None and error.__cause__ is None
    shown = str(error) + repr(error.args) + repr(pickle.dumps(error))
    for value in (SECRET, PASSWORD, API_KEY):
        assert value not in shown
    prefix = f"{cls.__name__}: "
    assert str(error).startswith(prefix)
    return str(error).removeprefix(prefix)


def refused_at_first_use(adapter: Any) -> str:
    with pytest.raises(ConfigurationError) as info:
        use(adapter)
    shown = str(info.value) + repr(info.value.args)
    for value in (SECRET, PASSWORD, API_KEY):
        assert value not in shown
    return str(info.value)


# Given settings: refused by the constructor ---------------------------------------


CONNECTION_CASES: list[tuple[Callable[[str], dict[str, Any]], str]] = [
    (
        lambda url: {"es_url": url.replace("http://", "ftp://")},
        "es_url must be an http:// or https:// URL, got ftp://",
    ),
    (
        lambda url: {"es_url": url.replace("http://", f"http://elastic:{SECRET}@")},
        "put no credentials in es_url; pass es_api_key, es_user with es_password, "
        "or es_bearer_token",
    ),
    (
        lambda url: {"es_url": f"{url}/?token={SECRET}"},
        "es_url must not have a query string or fragment, which would be dropped; "
        "give the cluster's address only, and any credential as es_api_key, es_user "
        "with es_password, or es_bearer_token",
    ),
    (
        lambda url: {"es_user": "elastic", "es_password": PASSWORD},
        "conflicting Elasticsearch credentials: es_api_key and es_user with "
        f"es_password were given; {CHOOSE}",
    ),
    (
        lambda url: {"es_user": "elastic"},
        f"conflicting Elasticsearch credentials: es_api_key and es_user were given; "
        f"{CHOOSE}",
    ),
    (
        lambda url: {"es_bearer_token": SECRET},
        "conflicting Elasticsearch credentials: es_api_key and es_bearer_token were "
        f"given; {CHOOSE}",
    ),
    (
        lambda url: {
            "es_api_key": None,
            "es_password": PASSWORD,
            "es_bearer_token": SECRET,
        },
        "conflicting Elasticsearch credentials: es_password and es_bearer_token were "
        f"given; {CHOOSE}",
    ),
]


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize(("overrides", "message"), CONNECTION_CASES)
def test_given_connection_settings_are_checked_by_the_constructor(
    local_server: LocalServer,
    cls: type[Any],
    overrides: Callable[[str], dict[str, Any]],
    message: str,
) -> None:
    settings = arguments(cls, local_server.url, **overrides(local_server.url))
    assert refused_at_construction(cls, settings) == message
    assert local_server.requests == []


@pytest.mark.parametrize(
    ("cls", "overrides", "message"),
    [
        (
            ElasticInferenceEmbeddings,
            {"concurrency": True},
            "concurrency must be an integer >= 1, got True",
        ),
        (
            ElasticInferenceLLM,
            {"max_retries": False},
            "max_retries must be an integer >= 0, got False",
        ),
        (
            LlamaLLM,
            {"request_timeout": True},
            "request_timeout must be a finite number > 0, got True",
        ),
        (
            ElasticInferenceEmbedding,
            {"batch_size": True, "max_input_chars": False},
            "batch_size must be an integer >= 1, or None, got True; max_input_chars "
            "must be an integer >= 1, or None, got False",
        ),
        (
            ElasticInferenceEmbeddings,
            {"initial_backoff": 30},
            "initial_backoff 30.0 is greater than max_backoff 20.0 (the default); no "
            "wait can exceed max_backoff, so lower initial_backoff or raise "
            "max_backoff",
        ),
        (
            LlamaLLM,
            {"initial_backoff": 2, "max_backoff": 0.5},
            "initial_backoff 2.0 is greater than max_backoff 0.5; no wait can exceed "
            "max_backoff, so lower initial_backoff or raise max_backoff",
        ),
    ],
)
def test_numbers_refuse_true_false_and_backoff_bounds_out_of_order(
    local_server: LocalServer,
    cls: type[Any],
    overrides: dict[str, Any],
    message: str,
) -> None:
    settings = arguments(cls, local_server.url, **overrides)
    assert refused_at_construction(cls, settings) == message
    assert local_server.requests == []


def test_a_lower_max_backoff_alone_is_accepted(local_server: LocalServer) -> None:
    adapter = ElasticInferenceEmbeddings(
        **arguments(ElasticInferenceEmbeddings, local_server.url, max_backoff=0.1)
    )
    assert adapter.initial_backoff > adapter.max_backoff
    assert len(use(adapter)) == 1024


@pytest.mark.parametrize("cls", LLMS)
@pytest.mark.parametrize("model", [TITAN, COHERE, "us.cohere.embed-v4:0"])
def test_an_embedding_model_is_refused_by_the_llm_adapters(
    local_server: LocalServer, cls: type[Any], model: str
) -> None:
    settings = arguments(cls, local_server.url, model=model)
    assert refused_at_construction(cls, settings) == (
        f"Bedrock model {model!r} is an embedding model and does not offer "
        "completion; it offers text_embedding (for completion, use a text model such "
        "as amazon.titan-text-express-v1 or anthropic.claude-3-haiku-20240307-v1:0)"
    )
    with pytest.raises(ConfigurationError, match="is an embedding model"):
        build_spec("completion", model=model, env={})
    assert local_server.requests == []


@pytest.mark.parametrize("cls", EMBEDDINGS)
def test_a_completion_model_is_refused_by_the_embedding_adapters(
    local_server: LocalServer, cls: type[Any]
) -> None:
    settings = arguments(cls, local_server.url, model=HAIKU)
    assert refused_at_construction(cls, settings) == (
        f"Bedrock provider 'anthropic' (model {HAIKU!r}) does not offer "
        "text_embedding; it offers chat_completion, completion"
    )
    assert local_server.requests == []


# Settings combined with the environment: decided at first use ---------------------


@pytest.mark.parametrize("cls", ALL)
def test_es_user_without_a_password_is_refused_before_any_request(
    local_server_factory: Callable[..., LocalServer],
    monkeypatch: pytest.MonkeyPatch,
    cls: type[Any],
) -> None:
    server = local_server_factory(api_key=None, basic_auth=("reader", PASSWORD))
    # An explicit es_user asks for basic auth: the environment's API key is unused.
    monkeypatch.setenv("ELASTICSEARCH_API_KEY", API_KEY)
    adapter = cls(**arguments(cls, server.url, es_api_key=None, es_user="reader"))

    assert refused_at_first_use(adapter) == (
        "es_user was given without a password; pass es_password or set "
        "ELASTICSEARCH_PASSWORD"
    )
    assert server.requests == []

    monkeypatch.setenv("ELASTICSEARCH_PASSWORD", PASSWORD)
    assert use(adapter)
    assert 401 not in {r.status for r in server.requests}


def test_a_given_api_key_wins_over_a_password_in_the_environment(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELASTICSEARCH_USERNAME", "elastic")
    monkeypatch.setenv("ELASTICSEARCH_PASSWORD", PASSWORD)
    for cls in ALL:
        assert use(cls(**arguments(cls, local_server.url)))
    assert local_server.requests
    assert 401 not in {r.status for r in local_server.requests}


@pytest.mark.parametrize("cls", ALL)
def test_conflicting_credentials_in_the_environment_fail_at_first_use(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch, cls: type[Any]
) -> None:
    monkeypatch.setenv("ELASTICSEARCH_API_KEY", API_KEY)
    monkeypatch.setenv("ELASTICSEARCH_PASSWORD", PASSWORD)
    adapter = cls(**arguments(cls, local_server.url, es_api_key=None))

    assert refused_at_first_use(adapter) == (
        "conflicting Elasticsearch credentials in the environment: "
        "ELASTICSEARCH_API_KEY and ELASTICSEARCH_PASSWORD are both set; unset one, "
        "or pass es_api_key or es_user with es_password, which take precedence over "
        "the environment"
    )
    assert local_server.requests == []

    monkeypatch.delenv("ELASTICSEARCH_PASSWORD")
    assert use(adapter)
    assert 401 not in {r.status for r in local_server.requests}


def test_a_url_from_the_environment_is_checked_at_first_use(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELASTICSEARCH_URL", f"{local_server.url}/?token={SECRET}")
    for cls in ALL:
        adapter = cls(**arguments(cls, local_server.url, es_url=None))
        assert refused_at_first_use(adapter) == (
            "ELASTICSEARCH_URL must not have a query string or fragment, which would "
            "be dropped; give the cluster's address only, and any credential as "
            "es_api_key, es_user with es_password, or es_bearer_token"
        )
    assert local_server.requests == []


def test_an_unpickled_adapter_checks_its_own_environment(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELASTICSEARCH_URL", local_server.url)
    monkeypatch.setenv("ELASTICSEARCH_API_KEY", API_KEY)
    settings = arguments(
        ElasticInferenceEmbeddings, local_server.url, es_url=None, es_api_key=None
    )
    adapter = ElasticInferenceEmbeddings(**settings)
    copy = pickle.loads(pickle.dumps(adapter))
    assert len(use(adapter)) == 1024

    monkeypatch.setenv("ELASTICSEARCH_PASSWORD", PASSWORD)
    local_server.clear_requests()
    assert "ELASTICSEARCH_PASSWORD are both set" in refused_at_first_use(copy)
    assert local_server.requests == []
