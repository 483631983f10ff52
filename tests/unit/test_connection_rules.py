"""How connection arguments and environment variables combine, and what is refused.

Arguments win over the environment; conflicts among arguments, or among environment
variables of one kind, are errors that name the settings and never show a value.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from es_inference import ConfigurationError, resolve_connection
from es_inference._config import check_connection_arguments

URL = "https://es.example.com:9200"
SECRET = "s3cret-value-4711"
CONFLICT = (
    "conflicting Elasticsearch credentials: {} were given; pass only one of "
    "es_api_key, es_user with es_password, or es_bearer_token"
)
QUERY = (
    "{} must not have a query string or fragment, which would be dropped; give the "
    "cluster's address only, and any credential as es_api_key, es_user with "
    "es_password, or es_bearer_token"
)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def refused(env: dict[str, str] | None = None, **arguments: Any) -> str:
    """The message of the error resolving these settings raises."""
    with pytest.raises(ConfigurationError) as info:
        resolve_connection(env={} if env is None else env, **arguments)
    message = str(info.value)
    assert SECRET not in message + repr(info.value.args)
    return message


@pytest.mark.parametrize(
    ("arguments", "given"),
    [
        ({"es_api_key": SECRET, "es_user": "u", "es_password": SECRET}, None),
        ({"es_api_key": SECRET, "es_user": "u"}, "es_api_key and es_user"),
        ({"es_api_key": SECRET, "es_password": SECRET}, "es_api_key and es_password"),
        ({"es_api_key": SECRET, "es_bearer_token": SECRET}, None),
        ({"es_user": "u", "es_password": SECRET, "es_bearer_token": SECRET}, None),
        (
            {
                "es_api_key": ("id", SECRET),
                "es_user": "u",
                "es_password": SECRET,
                "es_bearer_token": SECRET,
            },
            "es_api_key, es_user with es_password and es_bearer_token",
        ),
    ],
)
def test_two_kinds_of_credentials_are_refused_naming_them(
    arguments: dict[str, Any], given: str | None
) -> None:
    if given is None:
        names = {
            "es_api_key": "es_api_key",
            "es_user": "es_user with es_password",
            "es_bearer_token": "es_bearer_token",
        }
        given = " and ".join(names[n] for n in names if n in arguments)
    assert refused(es_url=URL, **arguments) == CONFLICT.format(given)
    # The same check, without the environment, is what adapters run at construction.
    with pytest.raises(ConfigurationError) as info:
        check_connection_arguments(es_url=URL, **arguments)
    assert str(info.value) == CONFLICT.format(given)


def test_es_user_without_a_password_is_refused_naming_the_password() -> None:
    message = "es_user was given without a password; pass es_password or set " + (
        "ELASTICSEARCH_PASSWORD"
    )
    assert refused(es_url=URL, es_user="u") == message
    # An explicit es_user means basic auth: the environment's API key is not used.
    assert refused({"ELASTICSEARCH_API_KEY": SECRET}, es_url=URL, es_user="u") == (
        message
    )


def test_basic_auth_is_completed_from_the_environment() -> None:
    env = {"ELASTICSEARCH_PASSWORD": "pw", "ELASTICSEARCH_API_KEY": "unused"}
    config = resolve_connection(es_url=URL, es_user="bob", env=env)
    assert config.auth_headers() == basic("bob", "pw")

    env = {"ELASTICSEARCH_USERNAME": "carol"}
    config = resolve_connection(es_url=URL, es_password="pw", env=env)
    assert config.auth_headers() == basic("carol", "pw")
    config = resolve_connection(es_url=URL, es_password="pw", env={})
    assert config.auth_headers() == basic("elastic", "pw")


def test_explicit_credentials_win_over_the_environment() -> None:
    env = {
        "ELASTICSEARCH_API_KEY": "env-key",
        "ELASTICSEARCH_USERNAME": "env-user",
        "ELASTICSEARCH_PASSWORD": "env-password",
    }
    config = resolve_connection(es_url=URL, es_api_key="arg-key", env=env)
    assert config.auth_headers() == {"Authorization": "ApiKey arg-key"}
    config = resolve_connection(es_url=URL, es_bearer_token="tok", env=env)
    assert config.auth_headers() == {"Authorization": "Bearer tok"}
    config = resolve_connection(es_url=URL, es_user="u", es_password="p", env=env)
    assert config.auth_headers() == basic("u", "p")


def test_conflicting_credentials_in_the_environment_are_refused() -> None:
    env = {"ELASTICSEARCH_API_KEY": SECRET, "ELASTICSEARCH_PASSWORD": SECRET}
    assert refused(env, es_url=URL) == (
        "conflicting Elasticsearch credentials in the environment: "
        "ELASTICSEARCH_API_KEY and ELASTICSEARCH_PASSWORD are both set; unset one, "
        "or pass es_api_key or es_user with es_password, which take precedence "
        "over the environment"
    )
    config = resolve_connection(es_url=URL, es_api_key="arg-key", env=env)
    assert config.auth_headers() == {"Authorization": "ApiKey arg-key"}


def test_a_username_alone_in_the_environment_is_refused() -> None:
    assert refused({"ELASTICSEARCH_USERNAME": "bob"}, es_url=URL) == (
        "ELASTICSEARCH_USERNAME is set without ELASTICSEARCH_PASSWORD; set the "
        "password too, or unset ELASTICSEARCH_USERNAME to connect without "
        "credentials"
    )
    env = {"ELASTICSEARCH_USERNAME": "bob", "ELASTICSEARCH_API_KEY": "env-key"}
    config = resolve_connection(es_url=URL, env=env)
    assert config.auth_headers() == {"Authorization": "ApiKey env-key"}


def test_url_and_cloud_id_both_in_the_environment_are_refused() -> None:
    cloud_id = "x:" + base64.b64encode(b"example.com$es$kb").decode()
    env = {"ELASTICSEARCH_URL": URL, "ELASTIC_CLOUD_ID": cloud_id}
    assert refused(env) == (
        "ELASTICSEARCH_URL and ELASTIC_CLOUD_ID are both set; unset one, or pass "
        "es_url or es_cloud_id, which take precedence over the environment"
    )
    assert resolve_connection(es_url="http://127.0.0.1:9200", env=env).url == (
        "http://127.0.0.1:9200"
    )
    assert resolve_connection(es_cloud_id=cloud_id, env=env).url == (
        "https://es.example.com:443"
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://es.example.com", "must be an http:// or https:// URL, got ftp://"),
        ("es.example.com:9200", "must start with http:// or https://, e.g. "),
        (f"https://user:{SECRET}@es.example.com", "put no credentials in "),
        (f"https://es.example.com:9200/?token={SECRET}", QUERY),
        (f"https://es.example.com:9200#{SECRET}", QUERY),
        ("https://es.example.com:9200?", QUERY),
        ("https://:9200", "names no host"),
        ("https://es.example.com:99999", "has a port that is not a number from 0"),
    ],
)
def test_a_malformed_url_is_refused_without_showing_it(url: str, problem: str) -> None:
    for name, arguments, env in (
        ("es_url", {"es_url": url}, {}),
        ("ELASTICSEARCH_URL", {}, {"ELASTICSEARCH_URL": url}),
    ):
        message = refused(env, **arguments)
        assert name in message
        assert problem.format(name) in message
        assert url not in message


def test_a_cloud_id_from_the_environment_is_named_when_invalid() -> None:
    assert refused({"ELASTIC_CLOUD_ID": "nonsense"}).startswith(
        "ELASTIC_CLOUD_ID is not a valid Elastic Cloud id"
    )


def test_a_wrongly_typed_secret_argument_is_named() -> None:
    assert (
        refused(es_url=URL, es_password=4711) == "es_password must be a string, got int"
    )
    assert refused(es_url=URL, es_bearer_token=b"x") == (
        "es_bearer_token must be a string, got bytes"
    )
