"""The local server's HTTP layer: protocol, routing, authentication, headers."""

from __future__ import annotations

import base64
import json
import logging
import socket
from collections.abc import Callable, Iterator

import httpx
import pytest
from elasticsearch import AuthenticationException, Elasticsearch

from es_inference.local import LocalServer

API_KEY = "test-api-key"
HEADERS = {"Authorization": f"ApiKey {API_KEY}"}
TITAN = {
    "service": "amazonbedrock",
    "service_settings": {
        "access_key": "AKIDHTTP",
        "secret_key": "http-secret",
        "region": "us-east-1",
        "provider": "amazontitan",
        "model": "amazon.titan-embed-text-v2:0",
    },
}


@pytest.fixture
def http(local_server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local_server.url, headers=HEADERS) as client:
        yield client


def raw_exchange(server: LocalServer, payload: bytes, reads: int = 1) -> bytes:
    """Send raw bytes on one connection and read until ``reads`` replies arrived."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(payload)
        data = b""
        while data.count(b"HTTP/1.1 ") < reads or not _complete(data, reads):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def _complete(data: bytes, reads: int) -> bool:
    parts = data.split(b"HTTP/1.1 ")[1:]
    if len(parts) < reads:
        return False
    last = b"HTTP/1.1 " + parts[-1]
    head, _, body = last.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


def test_root_describes_the_emulated_cluster(
    local_server_factory: Callable[..., LocalServer],
) -> None:
    server = local_server_factory(es_version="8.18.2")
    with Elasticsearch(server.url, api_key=API_KEY) as es:
        info = es.info()
    assert info["version"]["number"] == "8.18.2"
    assert info["tagline"] == "You Know, for Search"
    assert info.meta.headers["x-elastic-product"] == "Elasticsearch"


def test_vendor_media_type_is_echoed(http: httpx.Client) -> None:
    vendor = "application/vnd.elasticsearch+json; compatible-with=9"
    response = http.get("/", headers={"Accept": vendor})
    expected = "application/vnd.elasticsearch+json;compatible-with=9"
    assert response.headers["content-type"] == expected
    plain = http.get("/", headers={"Accept": "application/json"})
    assert plain.headers["content-type"] == "application/json"


def test_head_root_has_no_body(http: httpx.Client) -> None:
    response = http.head("/")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0


def test_missing_credentials_are_a_401_with_a_challenge(
    local_server: LocalServer,
) -> None:
    response = httpx.get(f"{local_server.url}/_inference?x=1")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "ApiKey"
    reason = "missing authentication credentials for REST request [/_inference?x=1]"
    header = {"WWW-Authenticate": ["ApiKey"]}
    assert response.json() == {
        "error": {
            "root_cause": [
                {"type": "security_exception", "reason": reason, "header": header}
            ],
            "type": "security_exception",
            "reason": reason,
            "header": header,
        },
        "status": 401,
    }


def test_a_wrong_key_is_rejected_and_never_logged(
    local_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with (
        Elasticsearch(local_server.url, api_key="wrong-key-value") as es,
        pytest.raises(AuthenticationException) as info,
    ):
        es.inference.get()
    assert info.value.body["error"]["reason"] == (
        "unable to authenticate with provided credentials and anonymous access is "
        "not allowed for this request"
    )
    assert "wrong-key-value" not in caplog.text and API_KEY not in caplog.text


def test_basic_and_bearer_credentials(
    local_server_factory: Callable[..., LocalServer],
) -> None:
    server = local_server_factory(
        api_key=None, basic_auth=("elastic", "changeme"), bearer_token="tok-123"
    )
    url = f"{server.url}/_inference"
    assert httpx.get(url, auth=("elastic", "changeme")).status_code == 200
    bearer = {"Authorization": "Bearer tok-123"}
    assert httpx.get(url, headers=bearer).status_code == 200
    wrong = httpx.get(url, auth=("elastic", "nope"))
    assert wrong.status_code == 401
    assert wrong.json()["error"]["reason"] == (
        "unable to authenticate user [elastic] for REST request [/_inference]"
    )
    assert wrong.headers.get_list("www-authenticate") == [
        'Basic realm="security", charset="UTF-8"',
        'Bearer realm="security"',
    ]
    garbage = {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}
    assert httpx.get(url, headers=garbage).status_code == 401


def test_without_configured_credentials_everything_is_open(
    local_server_factory: Callable[..., LocalServer],
) -> None:
    server = local_server_factory(api_key=None)
    assert httpx.get(f"{server.url}/_inference").json() == {"endpoints": []}


def test_unknown_routes_and_methods(http: httpx.Client) -> None:
    unknown = http.get("/_cat/indices")
    assert unknown.status_code == 400
    assert unknown.json() == {
        "error": "no handler found for uri [/_cat/indices] and method [GET]",
        "status": 400,
    }
    wrong = http.post("/_inference")
    assert wrong.status_code == 405
    assert wrong.json() == {
        "error": "Incorrect HTTP method for uri [/_inference] and method [POST], "
        "allowed: [GET]",
        "status": 405,
    }
    assert wrong.headers["allow"] == "GET"


def test_literal_segments_win_over_placeholders(http: httpx.Client) -> None:
    http.put("/_inference/text_embedding/titan", json=TITAN)
    get_stream = http.get("/_inference/titan/_stream")
    assert get_stream.json()["error"]["reason"] == "Unknown task_type [titan]"
    post_stream = http.post("/_inference/titan/_stream", json={"input": "x"})
    assert post_stream.status_code == 405


def test_unrecognized_parameters_are_rejected(http: httpx.Client) -> None:
    response = http.get("/_inference", params={"verbose": "true", "x": "1"})
    assert response.status_code == 400
    assert response.json()["error"]["reason"] == (
        "request [/_inference] contains unrecognized parameters: [verbose], [x]"
    )
    assert http.get("/_inference", params={"pretty": ""}).status_code == 200
    flag = http.delete("/_inference/missing", params={"force": "maybe"})
    assert flag.json()["error"]["reason"] == (
        "Failed to parse value [maybe] as only [true] or [false] are allowed."
    )


def test_percent_encoded_ids_are_decoded(
    local_server: LocalServer, http: httpx.Client
) -> None:
    http.put("/_inference/text_embedding/my-titan", json=TITAN)
    assert http.get("/_inference/my%2Dtitan").status_code == 200
    missing = http.get("/_inference/caf%C3%A9")
    assert missing.json()["error"]["reason"] == "Inference endpoint not found [café]"
    assert local_server.requests[-1].path == "/_inference/café"


def test_malformed_json_is_a_parse_error(http: httpx.Client) -> None:
    put = http.put(
        "/_inference/text_embedding/x",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert put.status_code == 400
    assert put.json()["error"]["type"] == "parse_exception"
    assert put.json()["error"]["reason"] == "Failed to parse content to map"
    empty = http.post("/_inference/x")
    assert empty.json()["error"]["reason"] == "request body is required"


def test_keep_alive_serves_pipelined_requests_on_one_connection(
    local_server: LocalServer,
) -> None:
    request = (
        f"GET / HTTP/1.1\r\nHost: local\r\nAuthorization: ApiKey {API_KEY}\r\n\r\n"
    ).encode()
    data = raw_exchange(local_server, request * 3, reads=3)
    assert data.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert data.count(b"X-Elastic-Product: Elasticsearch\r\n") == 3


def test_chunked_request_bodies_are_read(local_server: LocalServer) -> None:
    body = json.dumps(TITAN).encode()
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 40]), body[i : i + 40])
        for i in range(0, len(body), 40)
    )
    request = (
        b"PUT /_inference/text_embedding/chunked HTTP/1.1\r\nHost: local\r\n"
        b"Authorization: ApiKey " + API_KEY.encode() + b"\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n" + chunks + b"0\r\n\r\n"
    )
    data = raw_exchange(local_server, request)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close" in data
    assert b'"inference_id":"chunked"' in data


def test_expect_continue_is_honoured(local_server: LocalServer) -> None:
    body = b'{"input": "x"}'
    request = (
        b"POST /_inference/absent HTTP/1.1\r\nHost: local\r\n"
        b"Authorization: ApiKey " + API_KEY.encode() + b"\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    data = raw_exchange(local_server, request, reads=2)
    assert data.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found")


def test_a_malformed_request_line_gets_a_400_and_close(
    local_server: LocalServer,
) -> None:
    data = raw_exchange(local_server, b"NONSENSE\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_request_log_and_count(local_server: LocalServer, http: httpx.Client) -> None:
    http.put("/_inference/text_embedding/titan", json=TITAN)
    http.post("/_inference/text_embedding/titan", json={"input": "x"})
    http.post("/_inference/titan", json={"input": "x"})
    assert local_server.count("POST") == 2
    assert local_server.count("post", "/_inference/text_embedding/") == 1
    assert local_server.count("*") == 3
    last = local_server.requests[-1]
    assert (last.method, last.path, last.status, last.inference_id, last.n_inputs) == (
        "POST",
        "/_inference/titan",
        200,
        "titan",
        1,
    )
    local_server.clear_requests()
    assert local_server.requests == []


def test_url_before_start_and_stop_twice() -> None:
    server = LocalServer(model="hashing")
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
    server.start()
    assert server.url.startswith("http://127.0.0.1:")
    server.stop()
    server.stop()


def test_start_logs_that_nothing_leaves_the_machine(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="es_inference.local")
    with LocalServer(model="hashing"):
        pass
    message = caplog.records[0].getMessage()
    assert "local stand-in for Elasticsearch's inference API" in message
    assert "no request leaves this machine" in message


def test_hashing_model_serves_without_the_wheel(
    local_server_factory: Callable[..., LocalServer],
) -> None:
    server = local_server_factory(model="hashing")
    with httpx.Client(base_url=server.url, headers=HEADERS) as client:
        client.put("/_inference/text_embedding/titan", json=TITAN)
        body = client.post("/_inference/titan", json={"input": "hash me"}).json()
    assert len(body["text_embedding"][0]["embedding"]) == 1024


def test_a_busy_port_fails_start(local_server: LocalServer) -> None:
    port = int(local_server.url.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        LocalServer(port=port, model="hashing").start()


def test_a_stopped_server_can_start_again(local_model: object) -> None:
    server = LocalServer(api_key=API_KEY)
    for _ in range(2):
        with server, httpx.Client(base_url=server.url, headers=HEADERS) as client:
            client.put("/_inference/text_embedding/titan", json=TITAN)
            long_text = "words " * 4000  # large inputs are embedded off the loop
            response = client.post("/_inference/titan", json={"input": long_text})
            assert response.status_code == 200
            client.delete("/_inference/titan")
