"""Replacing an endpoint's AWS keys, with ``_update`` (8.17+) or delete and recreate."""

from __future__ import annotations

import io
import logging
from typing import Any

import httpx
import pytest

from es_inference import ApiError, ConflictError, resolve_connection
from es_inference._admin import rotate_aws_keys
from es_inference.cli import main
from es_inference.langchain import ElasticInferenceEmbeddings
from es_inference.local import LocalServer

from .helpers import API_KEY, AWS_ACCESS, AWS_SECRET, bedrock

NEW_ACCESS = "AKIDNEWROTATEDKEY0001"
NEW_SECRET = "new-rotated-secret-value-9876543210"
AUTH = {"Authorization": f"ApiKey {API_KEY}"}
SETTINGS = {"rate_limit": {"requests_per_minute": 1234}}


def create(server: LocalServer, inference_id: str = "rotating") -> list[float]:
    embeddings = ElasticInferenceEmbeddings(
        **bedrock(server.url, inference_id=inference_id, service_settings=SETTINGS)
    )
    vector: list[float] = embeddings.embed_query("before the rotation")
    return vector


def shown(server: LocalServer, inference_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/_inference/{inference_id}", headers=AUTH)
    response.raise_for_status()
    endpoint: dict[str, Any] = response.json()["endpoints"][0]
    return endpoint


def stored_keys(server: LocalServer, inference_id: str) -> dict[str, str]:
    keys: dict[str, str] = server._app.store.secrets(inference_id)
    return keys


def connection(server: LocalServer) -> Any:
    return resolve_connection(es_url=server.url, es_api_key=API_KEY)


def assert_keys_not_logged(caplog: pytest.LogCaptureFixture, *more: str) -> None:
    text = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    text += "\n".join(more)
    for key in (NEW_ACCESS, NEW_SECRET, AWS_ACCESS, AWS_SECRET, API_KEY):
        assert key not in text


def test_keys_are_replaced_with_update_on_9x(
    local_server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = local_server_factory(es_version="9.1.0")
    vector = create(server)
    before = shown(server, "rotating")
    caplog.set_level(logging.DEBUG)
    server.clear_requests()

    how = rotate_aws_keys(connection(server), "rotating", NEW_ACCESS, NEW_SECRET)

    assert how == "updated"
    assert stored_keys(server, "rotating") == {
        "access_key": NEW_ACCESS,
        "secret_key": NEW_SECRET,
    }
    assert [(r.method, r.path) for r in server.requests if r.method != "GET"] == [
        ("PUT", "/_inference/text_embedding/rotating/_update")
    ]
    assert shown(server, "rotating") == before
    assert_keys_not_logged(caplog)
    assert create(server) == vector  # still usable, without any PUT
    assert server.count("DELETE") == 0


def test_keys_are_replaced_by_recreating_on_8_15(
    local_server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = local_server_factory(es_version="8.15.0")
    vector = create(server)
    before = shown(server, "rotating")
    caplog.set_level(logging.DEBUG)
    server.clear_requests()

    how = rotate_aws_keys(connection(server), "rotating", NEW_ACCESS, NEW_SECRET)

    assert how == "recreated"
    assert [r.method for r in server.requests if r.method != "GET"] == [
        "DELETE",
        "PUT",
    ]
    assert stored_keys(server, "rotating") == {
        "access_key": NEW_ACCESS,
        "secret_key": NEW_SECRET,
    }
    assert shown(server, "rotating") == before  # same settings, rate limit included
    assert before["service_settings"]["rate_limit"] == {"requests_per_minute": 1234}
    assert_keys_not_logged(caplog)
    assert create(server) == vector


def test_recreating_an_endpoint_in_use_needs_force(
    local_server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = local_server_factory(es_version="8.15.0")
    create(server)
    server.mark_in_use("rotating", pipelines=["ingest-docs"])
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ConflictError) as info:
        rotate_aws_keys(connection(server), "rotating", NEW_ACCESS, NEW_SECRET)
    message = str(info.value)
    assert message.startswith("[409] status_exception: Inference endpoint rotating ")
    assert "is referenced by pipelines and cannot be deleted" in message
    assert "no _update API" in message and "pass force=True" in message
    assert info.value.inference_id == "rotating"
    assert stored_keys(server, "rotating") == {
        "access_key": AWS_ACCESS,
        "secret_key": AWS_SECRET,
    }
    assert server.count("PUT") == 1  # only the original creation

    how = rotate_aws_keys(
        connection(server), "rotating", NEW_ACCESS, NEW_SECRET, force=True
    )
    assert how == "recreated"
    assert stored_keys(server, "rotating")["secret_key"] == NEW_SECRET
    deletes = [r for r in server.requests if r.method == "DELETE"]
    assert [(r.status, r.query.get("force")) for r in deletes] == [
        (409, None),
        (200, "true"),
    ]
    assert_keys_not_logged(caplog, message)


@pytest.mark.parametrize(("version", "how"), [("9.1.0", "updated"), ("8.15.0", "")])
def test_cli_rotate_keys_reads_new_keys_from_the_environment(
    local_server_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    version: str,
    how: str,
) -> None:
    server = local_server_factory(es_version=version)
    create(server)
    server.mark_in_use("rotating", pipelines=["ingest-docs"])
    monkeypatch.setenv("ELASTICSEARCH_API_KEY", API_KEY)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", NEW_ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", NEW_SECRET)
    caplog.set_level(logging.DEBUG)

    code = main(["rotate-keys", "rotating", "--es-url", server.url])
    out, err = capsys.readouterr()
    if how:
        assert (code, out, err) == (0, "rotating: AWS keys replaced (updated)\n", "")
    else:
        assert code == 1 and out == ""
        assert err.startswith("es-inference: [409] status_exception: ")
        assert "--force" in err
        code = main(["rotate-keys", "rotating", "--es-url", server.url, "--force"])
        out, err = capsys.readouterr()
        assert (code, out, err) == (0, "rotating: AWS keys replaced (recreated)\n", "")
    assert stored_keys(server, "rotating")["access_key"] == NEW_ACCESS
    assert_keys_not_logged(caplog, out, err)


def test_cli_rotate_keys_without_keys_and_no_terminal_refuses(
    local_server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code = main(["rotate-keys", "rotating", "--es-url", local_server.url])
    assert code == 2
    assert "never taken from the command line" in capsys.readouterr().err
    assert local_server.requests == []


def test_refused_new_keys_on_8_15_say_the_endpoint_was_deleted(
    local_server_factory: Any,
) -> None:
    server = local_server_factory(es_version="8.15.0")
    create(server)
    with pytest.raises(ApiError) as info:
        # The local server's validation call refuses the key "invalid".
        rotate_aws_keys(connection(server), "rotating", "invalid", NEW_SECRET)
    assert info.value.status == 400
    assert "[rotating] was deleted to replace its AWS keys" in str(info.value)
    assert NEW_SECRET not in str(info.value)
    missing = httpx.get(f"{server.url}/_inference/rotating", headers=AUTH)
    assert missing.status_code == 404
