"""TLS: certificates are verified by default, and a failure says what to pass.

A TLS front on 127.0.0.1, with a self-signed certificate made by ``openssl`` for
this test run, relays to the local server.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from es_inference import ConnectionError, TLSError
from es_inference.langchain import ElasticInferenceEmbeddings
from es_inference.local import LocalServer

from .helpers import bedrock
from .support import TlsFront, make_certificate

TEXTS = ["one text over TLS", "another text over TLS", "and a third one"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def front(
    local_server: LocalServer,
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TlsFront]:
    monkeypatch.delenv("ELASTICSEARCH_CA_CERTS", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    tls = TlsFront(local_server.port, *certificate)
    yield tls
    tls.stop()


def embed(embeddings: ElasticInferenceEmbeddings, mode: str) -> Any:
    if mode == "sync":
        return embeddings.embed_array(TEXTS)
    return asyncio.run(embeddings.aembed_array(TEXTS))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_untrusted_certificate_is_a_tls_error_that_names_ca_certs(
    local_server: LocalServer, front: TlsFront, mode: str
) -> None:
    embeddings = ElasticInferenceEmbeddings(**bedrock(front.url, max_retries=3))
    with pytest.raises(TLSError) as info:
        embed(embeddings, mode)
    message = str(info.value)
    assert message.startswith("GET /_inference/")
    assert f": TLS handshake with {front.url} failed: " in message
    assert "pass ca_certs with the cluster's CA certificate" in message
    assert "certificate verify failed" in message.lower()
    assert info.value.retryable is False
    front.stop()  # waits for its threads, so the count is final
    assert front.handshake_failures == 1  # not retried
    assert local_server.requests == []  # nothing got past the handshake


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_ca_certs_with_the_certificate_makes_it_work(
    local_server: LocalServer,
    front: TlsFront,
    certificate: tuple[Path, Path],
    mode: str,
) -> None:
    plain = ElasticInferenceEmbeddings(**bedrock(local_server.url)).embed_array(TEXTS)
    secure = ElasticInferenceEmbeddings(
        **bedrock(front.url, ca_certs=str(certificate[0]))
    )
    np.testing.assert_array_equal(embed(secure, mode), plain)
    assert front.handshake_failures == 0


def test_verify_certs_false_skips_verification(
    local_server: LocalServer, front: TlsFront
) -> None:
    embeddings = ElasticInferenceEmbeddings(**bedrock(front.url, verify_certs=False))
    assert embeddings.embed_array(TEXTS).shape == (3, 1024)
    assert front.handshake_failures == 0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_http_to_a_tls_cluster_fails_at_once_and_says_use_https(
    local_server: LocalServer, front: TlsFront, mode: str
) -> None:
    url = f"http://127.0.0.1:{front.port}"
    embeddings = ElasticInferenceEmbeddings(**bedrock(url, max_retries=7))
    started = time.monotonic()
    with pytest.raises(ConnectionError) as info:
        embed(embeddings, mode)
    assert time.monotonic() - started < 5.0  # generous: it takes milliseconds
    message = str(info.value)
    assert message.startswith(
        f"GET /_inference/text_embedding/_all: {url} closed the connection without "
        "an answer ("
    )
    assert message.endswith("); if the cluster expects TLS, use an https:// URL")
    assert info.value.first_contact
    front.stop()
    assert front.handshake_failures == 2  # the first attempt and one quick retry
    assert local_server.requests == []
