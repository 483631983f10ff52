"""Connection settings: arguments, environment fallbacks, secrets hidden."""

from __future__ import annotations

import base64
import logging
import pickle

import pytest

from es_inference import ConfigurationError, Secret, resolve_connection
from es_inference._config import decode_cloud_id


def test_cloud_id_decodes_to_https_url() -> None:
    encoded = base64.b64encode(b"us-east-1.aws.found.io$abc123$kib456").decode()
    assert decode_cloud_id(f"my-deployment:{encoded}") == (
        "https://abc123.us-east-1.aws.found.io:443"
    )
    encoded = base64.b64encode(b"example.com:9243$es$kb").decode()
    assert decode_cloud_id(f"x:{encoded}") == "https://es.example.com:9243"
    with pytest.raises(ConfigurationError, match="not a valid Elastic Cloud id"):
        decode_cloud_id("nonsense")


def test_environment_fallbacks() -> None:
    env = {"ELASTICSEARCH_URL": "https://es:9200", "ELASTICSEARCH_API_KEY": "k3y-value"}
    config = resolve_connection(env=env)
    assert config.url == "https://es:9200"
    assert config.auth_headers() == {"Authorization": "ApiKey k3y-value"}
    config = resolve_connection(
        env={"ELASTICSEARCH_URL": "https://es", "ELASTICSEARCH_PASSWORD": "pw-value"}
    )
    assert config.auth_headers()["Authorization"].startswith("Basic ")


def test_arguments_win_over_environment() -> None:
    config = resolve_connection(
        es_url="http://127.0.0.1:9200",
        es_api_key=("id", "key-value"),
        env={"ELASTICSEARCH_URL": "https://other", "ELASTICSEARCH_API_KEY": "env"},
    )
    assert config.url == "http://127.0.0.1:9200"
    token = base64.b64encode(b"id:key-value").decode()
    assert config.auth_headers() == {"Authorization": f"ApiKey {token}"}


def test_missing_url_says_what_to_set() -> None:
    with pytest.raises(ConfigurationError, match="ELASTICSEARCH_URL"):
        resolve_connection(env={})


def test_credentials_in_url_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="no credentials in es_url"):
        resolve_connection(es_url="https://user:pw@es:9200", env={})


def test_repr_hides_credentials() -> None:
    config = resolve_connection(
        es_url="https://es", es_user="bob", es_password="hunter22", env={}
    )
    assert "hunter22" not in repr(config)
    assert "basic(bob)" in repr(config)


def test_secret_refuses_pickle_and_masks() -> None:
    secret = Secret("abc-secret")
    assert "abc-secret" not in repr(secret) + str(secret)
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(secret)


def test_plain_http_with_credentials_to_remote_host_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="es_inference"):
        resolve_connection(es_url="http://es.example.com:9200", es_api_key="k", env={})
        resolve_connection(es_url="http://127.0.0.1:9200", es_api_key="k", env={})
    warnings = [r for r in caplog.records if "plain HTTP" in r.getMessage()]
    assert len(warnings) == 1
    assert "es.example.com" in warnings[0].getMessage()


def test_client_timeout_exceeds_server_timeout() -> None:
    config = resolve_connection(es_url="https://es", request_timeout=2.5, env={})
    assert config.server_timeout_param == "2500ms"
    assert config.client_timeout > config.server_timeout
