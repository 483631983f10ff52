"""Adapter settings: API key pairs, invalid values, keys of reused endpoints, closing.

Every adapter is checked against the local server on loopback: a pair authenticates
as its encoded key, invalid settings fail at construction with a
``ConfigurationError`` before any request, AWS keys that meet an existing endpoint
are reported, and services close their connections on request.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from es_inference import (
    AuthenticationError,
    CompletionService,
    ConfigurationError,
    EmbeddingService,
    ServiceOptions,
    bedrock_spec,
    resolve_connection,
    rotate_aws_keys,
)
from es_inference.langchain import ElasticInferenceEmbeddings, ElasticInferenceLLM
from es_inference.llama_index import ElasticInferenceEmbedding
from es_inference.llama_index import ElasticInferenceLLM as LlamaLLM
from es_inference.local import LocalServer

from .adapters import ALL, LLMS, PROMPT, use
from .helpers import (
    API_KEY,
    AWS_ACCESS,
    AWS_SECRET,
    FAST,
    TITAN,
    bedrock,
    embedding_service,
)
from .support import CountingRelay

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
KEY_ID = "pair-key-id-4711"
KEY = "pair-key-secret-0815"
ENCODED = base64.b64encode(f"{KEY_ID}:{KEY}".encode()).decode()
NEW_ACCESS = "AKIDNEWROTATEDKEY77"
NEW_SECRET = "new-secret-access-key-not-applied-42"


def arguments(cls: type[Any], url: str, **overrides: Any) -> dict[str, Any]:
    model = HAIKU if cls in LLMS else TITAN
    return bedrock(url, **{"model": model, **overrides})


# es_api_key as an (id, key) pair ----------------------------------------------


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("pair", [(KEY_ID, KEY), [KEY_ID, SecretStr(KEY)]])
def test_an_id_and_key_pair_authenticates_as_its_encoded_key(
    local_server_factory: Callable[..., LocalServer], cls: type[Any], pair: Any
) -> None:
    server = local_server_factory(api_key=ENCODED)
    adapter = cls(**arguments(cls, server.url, es_api_key=pair))

    assert use(adapter)
    assert adapter.es_api_key.get_secret_value() == ENCODED
    assert server.count("PUT") == 1
    assert all(r.status != 401 for r in server.requests)


def test_a_pair_with_the_wrong_key_is_refused_by_the_server(
    local_server_factory: Callable[..., LocalServer],
) -> None:
    server = local_server_factory(api_key=ENCODED)
    adapter = ElasticInferenceEmbeddings(
        **bedrock(server.url, es_api_key=(KEY_ID, "not-" + KEY), max_retries=0)
    )
    with pytest.raises(AuthenticationError):
        adapter.embed_query("x")
    assert [r.status for r in server.requests] == [401]


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ((KEY_ID,), "es_api_key as a pair must be (id, api_key), got 1 items"),
        ((KEY_ID, KEY, KEY), "es_api_key as a pair must be (id, api_key), got 3 items"),
        (
            (KEY_ID, ""),
            "es_api_key as a pair must end with the key itself, a non-empty string",
        ),
        (
            (KEY_ID, 4711),
            "es_api_key as a pair must end with the key itself, a non-empty string",
        ),
        (
            ("", KEY),
            "es_api_key as a pair must start with the key's id, a non-empty string "
            "without ':'",
        ),
        (
            (f"{KEY_ID}:x", KEY),
            "es_api_key as a pair must start with the key's id, a non-empty string "
            "without ':'",
        ),
        (
            4711,
            "es_api_key must be the encoded key (a string) or an (id, api_key) pair, "
            "got int",
        ),
    ],
)
def test_a_malformed_pair_is_refused_without_showing_it(
    local_server: LocalServer, pair: Any, message: str
) -> None:
    for cls in ALL:
        with pytest.raises(ConfigurationError) as info:
            cls(**arguments(cls, local_server.url, es_api_key=pair))
        assert str(info.value) == f"{cls.__name__}: {message}"
        assert info.value.__context__ is None and info.value.__cause__ is None
    with pytest.raises(ConfigurationError) as info:
        resolve_connection(es_url=local_server.url, es_api_key=pair)
    assert str(info.value) == message
    assert local_server.count("*") == 0


# Invalid settings --------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "overrides", "message"),
    [
        (
            ElasticInferenceEmbeddings,
            {"concurrency": 0},
            "concurrency must be an integer >= 1, got 0",
        ),
        (
            ElasticInferenceEmbeddings,
            {"max_retries": -1, "request_timeout": float("inf")},
            "request_timeout must be a finite number > 0, got inf; "
            "max_retries must be an integer >= 0, got -1",
        ),
        (
            ElasticInferenceEmbeddings,
            {"initial_backoff": -0.5},
            "initial_backoff must be a finite number >= 0, got -0.5",
        ),
        (
            ElasticInferenceEmbedding,
            {"batch_size": "many"},
            "batch_size must be an integer >= 1, or None, got a string",
        ),
        (
            ElasticInferenceEmbedding,
            {"embed_batch_size": 5000},
            "embed_batch_size must be an integer > 0 and <= 2048, got 5000",
        ),
        (
            ElasticInferenceEmbeddings,
            {"requests_per_minute": 0},
            "requests_per_minute must be a finite number > 0, or None, got 0",
        ),
        (
            ElasticInferenceEmbeddings,
            {"pace": "sometimes"},
            "pace must be true or false, got a string",
        ),
        (
            ElasticInferenceLLM,
            {"temperature": 1.5},
            "task setting temperature=1.5 is invalid: it must be a number from 0.0 "
            "to 1.0",
        ),
        (
            ElasticInferenceLLM,
            {"poll_interval": 0, "max_new_tokens": 0},
            "poll_interval must be a finite number > 0, got 0; task setting "
            "max_new_tokens=0 is invalid: it must be a positive integer",
        ),
        (
            LlamaLLM,
            {"context_window": 0},
            "context_window must be an integer > 0, got 0",
        ),
        (
            LlamaLLM,
            {"stop": ["a", ""]},
            "stop sequences must be non-empty strings; got '' at index 1",
        ),
        (ElasticInferenceLLM, {"api_key": AWS_SECRET}, "unknown setting api_key"),
    ],
)
def test_invalid_settings_raise_configuration_error_before_any_request(
    local_server: LocalServer,
    cls: type[Any],
    overrides: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        cls(**arguments(cls, local_server.url, **overrides))

    assert str(info.value) == f"{cls.__name__}: {message}"
    assert isinstance(info.value, ValueError)
    assert not isinstance(info.value, ValidationError)
    # The pydantic error keeps the input, keys included; it is not chained.
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert local_server.count("*") == 0


def test_a_wrongly_typed_secret_is_named_but_never_shown(
    local_server: LocalServer,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        ElasticInferenceEmbeddings(
            **bedrock(local_server.url, aws_secret_access_key=12345678901234)
        )
    assert str(info.value) == (
        "ElasticInferenceEmbeddings: aws_secret_access_key: Input should be a valid "
        "string"
    )
    assert "12345678901234" not in repr(info.value) + repr(vars(info.value))
    assert b"12345678901234" not in pickle.dumps(info.value)


def test_settings_errors_pickle_with_their_message(local_server: LocalServer) -> None:
    with pytest.raises(ConfigurationError) as info:
        ElasticInferenceEmbeddings(**bedrock(local_server.url, concurrency=0))
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is ConfigurationError
    assert str(copy) == str(info.value)


# AWS keys that meet an existing endpoint ------------------------------------------


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and r.name.startswith("es_inference")
    ]


def _not_applied(inference_id: str) -> str:
    return (
        f"inference endpoint [{inference_id}] exists and was reused; the AWS keys "
        "given were not applied (Elasticsearch never shows an endpoint's secrets, "
        "so they cannot be compared); to replace the endpoint's keys, run "
        f"'es-inference rotate-keys {inference_id}' or call "
        "es_inference.rotate_aws_keys()"
    )


def _assert_no_keys(caplog: pytest.LogCaptureFixture) -> None:
    text = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    for value in (AWS_ACCESS, AWS_SECRET, NEW_ACCESS, NEW_SECRET):
        assert value not in text


@pytest.mark.parametrize("cls", ALL)
def test_new_keys_for_an_existing_endpoint_are_reported_once(
    local_server: LocalServer, caplog: pytest.LogCaptureFixture, cls: type[Any]
) -> None:
    caplog.set_level(logging.INFO, logger="es_inference")
    first = cls(**arguments(cls, local_server.url, inference_id="shared"))
    answer = use(first)
    assert _records(caplog, logging.WARNING) == []  # created with the keys given

    second = cls(
        **arguments(
            cls,
            local_server.url,
            inference_id="shared",
            aws_access_key_id=NEW_ACCESS,
            aws_secret_access_key=NEW_SECRET,
        )
    )
    assert use(second) == answer
    assert use(second) == answer

    assert _records(caplog, logging.WARNING) == [_not_applied("shared")]
    assert local_server.count("PUT") == 1
    _assert_no_keys(caplog)


def test_keys_this_process_created_or_rotated_the_endpoint_with_are_not_reported(
    local_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="es_inference")
    old = bedrock(local_server.url, inference_id="mine")
    new = {**old, "aws_access_key_id": NEW_ACCESS, "aws_secret_access_key": NEW_SECRET}
    ElasticInferenceEmbeddings(**old).embed_query("created with the old keys")
    ElasticInferenceEmbeddings(**old).embed_query("reused with the same keys")
    assert _records(caplog, logging.WARNING) == []

    connection = resolve_connection(es_url=local_server.url, es_api_key=API_KEY)
    assert rotate_aws_keys(connection, "mine", NEW_ACCESS, NEW_SECRET) == "updated"
    ElasticInferenceEmbeddings(**new).embed_query("reused with the new keys")
    assert _records(caplog, logging.WARNING) == []
    ElasticInferenceEmbeddings(**old).embed_query("reused with the old keys")
    assert _records(caplog, logging.WARNING) == [_not_applied("mine")]
    _assert_no_keys(caplog)


async def test_the_async_path_reports_the_keys_too(
    local_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="es_inference")
    await ElasticInferenceEmbeddings(**bedrock(local_server.url)).aembed_query("x")
    reused = ElasticInferenceEmbeddings(
        **bedrock(
            local_server.url,
            aws_access_key_id=NEW_ACCESS,
            aws_secret_access_key=NEW_SECRET,
        )
    )
    await reused.aembed_query("x")

    # Without an inference_id the endpoint is found by its settings.
    derived = "amazonbedrock-text-embedding-amazon-titan-embed-text-v2-0-us-east-1"
    assert _records(caplog, logging.WARNING) == [_not_applied(derived)]
    _assert_no_keys(caplog)
    await reused.embedding_service().aclose()


def test_keys_from_the_environment_are_reported_at_info_only(
    local_server: LocalServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="es_inference")
    use(ElasticInferenceEmbeddings(**bedrock(local_server.url, inference_id="env")))
    monkeypatch.setenv("ELASTICSEARCH_API_KEY", API_KEY)  # for the unpickled copy
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", NEW_ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", NEW_SECRET)
    settings = bedrock(local_server.url, inference_id="env")
    del settings["aws_access_key_id"], settings["aws_secret_access_key"]
    from_env = ElasticInferenceEmbeddings(**settings)
    assert from_env.aws_access_key_id is not None
    assert from_env.aws_access_key_id.get_secret_value() == NEW_ACCESS

    use(from_env)
    # A copy gets its keys from the environment, whatever the original had.
    given = ElasticInferenceEmbeddings(
        **bedrock(
            local_server.url,
            inference_id="env",
            aws_access_key_id=NEW_ACCESS,
            aws_secret_access_key=NEW_SECRET,
        )
    )
    use(pickle.loads(pickle.dumps(given)))

    assert _records(caplog, logging.WARNING) == []
    assert (
        _records(caplog, logging.INFO).count(
            "inference endpoint [env] exists and was reused; the AWS keys from the "
            "environment were not applied"
        )
        == 2
    )
    _assert_no_keys(caplog)


def test_an_existing_endpoint_used_by_id_alone_reports_nothing(
    local_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    use(ElasticInferenceEmbeddings(**bedrock(local_server.url, inference_id="mine")))
    caplog.set_level(logging.INFO, logger="es_inference")
    by_id = ElasticInferenceEmbeddings(
        inference_id="mine", es_url=local_server.url, es_api_key=API_KEY
    )
    use(by_id)
    assert not [m for m in _records(caplog, logging.INFO) if "not applied" in m]
    assert _records(caplog, logging.WARNING) == []


def test_specs_tell_given_keys_from_those_of_the_environment() -> None:
    env = {"AWS_ACCESS_KEY_ID": NEW_ACCESS, "AWS_SECRET_ACCESS_KEY": NEW_SECRET}
    given = bedrock_spec(
        "text_embedding",
        model=TITAN,
        aws_access_key_id=AWS_ACCESS,
        aws_secret_access_key=AWS_SECRET,
        env=env,
    )
    from_env = bedrock_spec("text_embedding", model=TITAN, env=env)
    copied = bedrock_spec(
        "text_embedding",
        model=TITAN,
        aws_access_key_id=NEW_ACCESS,
        aws_secret_access_key=NEW_SECRET,
        keys_from_environment=True,
    )
    assert not given.secrets_from_environment
    assert from_env.secrets_from_environment and copied.secrets_from_environment
    assert from_env.secret_settings == copied.secret_settings


# Closing ------------------------------------------------------------------------


@pytest.fixture
def relay(local_server: LocalServer) -> Iterator[CountingRelay]:
    """A counting relay in front of the local server."""
    port = int(local_server.url.rsplit(":", 1)[1])
    front = CountingRelay(port)
    yield front
    front.stop()


def _embedding_service(url: str) -> EmbeddingService:
    return embedding_service(url, ServiceOptions(concurrency=4))


TEXTS = [f"text number {i}" for i in range(12)]


async def test_aclose_closes_the_connections_of_the_running_loop(
    relay: CountingRelay,
) -> None:
    service = _embedding_service(relay.url)
    first = await service.aembed(TEXTS)
    assert relay.open >= 1

    await service.aclose()
    assert await asyncio.to_thread(relay.wait_until_closed) == 0

    # The service opens connections again on next use.
    assert (await service.aembed(TEXTS) == first).all()
    assert relay.open >= 1
    await service.aclose()
    assert await asyncio.to_thread(relay.wait_until_closed) == 0


async def test_async_with_closes_sync_and_async_connections(
    relay: CountingRelay,
) -> None:
    async with _embedding_service(relay.url) as service:
        sync = service.embed(TEXTS)
        assert (await service.aembed(TEXTS) == sync).all()
    assert await asyncio.to_thread(relay.wait_until_closed) == 0

    spec = bedrock_spec(
        "completion",
        model=HAIKU,
        region="us-east-1",
        aws_access_key_id=AWS_ACCESS,
        aws_secret_access_key=AWS_SECRET,
        service_settings=FAST,
    )
    connection = resolve_connection(es_url=relay.url, es_api_key=API_KEY)
    async with CompletionService(connection, spec) as completions:
        whole = await completions.acomplete(PROMPT)
        pieces = [piece async for piece in completions.astream(PROMPT)]
        assert "".join(pieces) == whole
    assert await asyncio.to_thread(relay.wait_until_closed) == 0


def test_with_closes_the_blocking_connections(relay: CountingRelay) -> None:
    with _embedding_service(relay.url) as service:
        service.embed(TEXTS)
        assert relay.open >= 1
    assert relay.wait_until_closed() == 0


@pytest.mark.parametrize("cls", ALL)
async def test_adapters_close_and_aclose_their_connections_and_stay_usable(
    relay: CountingRelay, cls: type[Any]
) -> None:
    adapter = cls(**arguments(cls, relay.url))
    adapter.close()  # nothing to close yet
    answer = use(adapter)
    assert relay.open >= 1
    adapter.close()
    assert await asyncio.to_thread(relay.wait_until_closed) == 0
    assert use(adapter) == answer
    await adapter.aclose()
    assert await asyncio.to_thread(relay.wait_until_closed) == 0
