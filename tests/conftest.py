"""Shared fixtures: local Elasticsearch inference servers on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from es_inference import _endpoint, _transport
from es_inference.local import LocalServer
from es_inference.local._models import EmbeddingModel, ModelUnavailableError, get_model

#: The API key the ``local_server`` fixtures require.
TEST_API_KEY = "test-api-key"


@pytest.fixture(autouse=True)
def _fresh_process_state() -> None:
    """Each test starts as a fresh process would, as far as endpoints go.

    No cluster has answered yet (a port a test closes to stand for a wrong URL may
    have served an earlier test's local server; it must still fail at once), and
    no endpoint was created or given keys by this process.
    """
    _transport._REACHED.clear()
    _endpoint._APPLIED.clear()


@pytest.fixture(scope="session")
def local_model() -> EmbeddingModel:
    """The wordllama model, loaded once per test session."""
    try:
        return get_model("wordllama")
    except ModelUnavailableError as exc:
        pytest.skip(f"local model unavailable: {exc}")


@pytest.fixture
def local_server(local_model: EmbeddingModel) -> Iterator[LocalServer]:
    """A running local server with default settings and API key ``test-api-key``."""
    with LocalServer(api_key=TEST_API_KEY) as server:
        yield server


@pytest.fixture
def local_server_factory(
    local_model: EmbeddingModel,
) -> Iterator[Callable[..., LocalServer]]:
    """Start local servers with custom options; all are stopped at teardown.

    Keyword arguments go to :class:`LocalServer`; ``api_key`` defaults to
    ``test-api-key``.
    """
    servers: list[LocalServer] = []

    def start(**options: Any) -> LocalServer:
        options.setdefault("api_key", TEST_API_KEY)
        server = LocalServer(**options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
