"""Where Elasticsearch is and how to authenticate: arguments first, then environment."""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ._errors import ConfigurationError
from ._secrets import Secret, secret_value, to_secret

logger = logging.getLogger("es_inference.config")

#: The server-side ``timeout`` sent with inference calls unless configured.
DEFAULT_SERVER_TIMEOUT = 30.0
#: How much longer the client waits than the server-side timeout it sends.
CLIENT_TIMEOUT_MARGIN = 15.0
DEFAULT_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, repr=False)
class ConnectionConfig:
    """A resolved connection to one Elasticsearch cluster.

    Build it with :func:`resolve_connection`; secrets are :class:`Secret` values and
    never appear in ``repr()``.
    """

    url: str
    api_key: Secret | None = None
    basic_auth: tuple[str, Secret] | None = None
    bearer_token: Secret | None = None
    verify_certs: bool = True
    ca_certs: str | None = None
    server_timeout: float = DEFAULT_SERVER_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    headers: Mapping[str, str] | None = None

    def __repr__(self) -> str:
        auth = "none"
        if self.api_key:
            auth = "api_key"
        elif self.basic_auth:
            auth = f"basic({self.basic_auth[0]})"
        elif self.bearer_token:
            auth = "bearer"
        return f"ConnectionConfig(url={self.url!r}, auth={auth})"

    @property
    def client_timeout(self) -> float:
        """The read timeout: longer than the server-side one, so ES answers first."""
        return self.server_timeout + CLIENT_TIMEOUT_MARGIN

    @property
    def server_timeout_param(self) -> str:
        """The ``timeout`` query value, in Elasticsearch's time-unit syntax."""
        millis = round(self.server_timeout * 1000)
        return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header; the only place a credential is read out."""
        if self.api_key:
            return {"Authorization": f"ApiKey {self.api_key.get_secret_value()}"}
        if self.basic_auth:
            user, password = self.basic_auth
            token = f"{user}:{password.get_secret_value()}".encode()
            return {"Authorization": f"Basic {base64.b64encode(token).decode()}"}
        if self.bearer_token:
            return {"Authorization": f"Bearer {self.bearer_token.get_secret_value()}"}
        return {}

    def secret_values(self) -> tuple[str, ...]:
        """Every credential as plain text, for scrubbing error messages."""
        values = []
        if self.api_key:
            values.append(self.api_key.get_secret_value())
        if self.basic_auth:
            values.append(self.basic_auth[1].get_secret_value())
        if self.bearer_token:
            values.append(self.bearer_token.get_secret_value())
        return tuple(values)

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What httpx takes as ``verify``."""
        if not self.verify_certs:
            return False
        context = ssl.create_default_context(cafile=self.ca_certs)
        return context


def decode_cloud_id(cloud_id: str) -> str:
    """Return the Elasticsearch URL encoded in an Elastic Cloud id."""
    _, sep, encoded = cloud_id.rpartition(":")
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        host, es_uuid, *_ = decoded.split("$")
    except (ValueError, UnicodeDecodeError):
        raise ConfigurationError(
            "es_cloud_id is not a valid Elastic Cloud id "
            "(expected 'name:base64(host$es_uuid$kibana_uuid)')"
        ) from None
    if not sep or not host or not es_uuid:
        raise ConfigurationError(
            "es_cloud_id is not a valid Elastic Cloud id "
            "(expected 'name:base64(host$es_uuid$kibana_uuid)')"
        )
    host, _, port = host.partition(":")
    return f"https://{es_uuid}.{host}:{port or '443'}"


def encode_api_key(api_key: Any) -> Secret | None:
    """The encoded API key Elasticsearch takes, from an ``(id, api_key)`` pair or as is.

    ``None`` or an empty string means "not given". A pair needs a non-empty id
    (without ``:``) and a non-empty key, each a string (the key may also be a
    secret type). No error shows any part of the pair.
    """
    if not isinstance(api_key, (tuple, list)):
        try:
            return to_secret(api_key)
        except TypeError:
            raise ConfigurationError(
                "es_api_key must be the encoded key (a string) or an (id, api_key) "
                f"pair, got {type(api_key).__name__}"
            ) from None
    if len(api_key) != 2:
        raise ConfigurationError(
            f"es_api_key as a pair must be (id, api_key), got {len(api_key)} items"
        )
    key_id, key = api_key
    if not isinstance(key_id, str) or not key_id or ":" in key_id:
        raise ConfigurationError(
            "es_api_key as a pair must start with the key's id, a non-empty string "
            "without ':'"
        )
    try:
        plain = secret_value(key)
    except TypeError:
        plain = None
    if not plain:
        raise ConfigurationError(
            "es_api_key as a pair must end with the key itself, a non-empty string"
        )
    return Secret(base64.b64encode(f"{key_id}:{plain}".encode()).decode())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_connection(
    *,
    es_url: str | None = None,
    es_cloud_id: str | None = None,
    es_api_key: Any = None,
    es_user: str | None = None,
    es_password: Any = None,
    es_bearer_token: Any = None,
    verify_certs: bool = True,
    ca_certs: str | None = None,
    request_timeout: float | None = None,
    headers: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> ConnectionConfig:
    """Resolve a connection from arguments, falling back to environment variables.

    ``es_api_key`` is the encoded key or an ``(id, api_key)`` pair, as the
    official client takes it.

    Environment: ``ELASTICSEARCH_URL``, ``ELASTIC_CLOUD_ID``,
    ``ELASTICSEARCH_API_KEY``, ``ELASTICSEARCH_USERNAME``/``ELASTICSEARCH_PASSWORD``,
    ``ELASTICSEARCH_CA_CERTS``.
    """
    env = os.environ if env is None else env
    if es_url and es_cloud_id:
        raise ConfigurationError("give es_url or es_cloud_id, not both")
    if not es_url and not es_cloud_id:
        es_url = env.get("ELASTICSEARCH_URL") or None
        es_cloud_id = None if es_url else env.get("ELASTIC_CLOUD_ID") or None
    if es_cloud_id:
        es_url = decode_cloud_id(es_cloud_id)
    if not es_url:
        raise ConfigurationError(
            "no Elasticsearch given: pass es_url or es_cloud_id, or set "
            "ELASTICSEARCH_URL or ELASTIC_CLOUD_ID"
        )
    parts = urlsplit(es_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"es_url must be an http:// or https:// URL, got {parts.scheme or es_url!r}"
        )
    if parts.username or parts.password:
        raise ConfigurationError(
            "put no credentials in es_url; pass es_api_key or es_user/es_password"
        )

    api_key = encode_api_key(es_api_key)
    password = to_secret(es_password)
    user = es_user
    bearer = to_secret(es_bearer_token)
    if not (api_key or password or bearer):
        api_key = to_secret(env.get("ELASTICSEARCH_API_KEY"))
        if not api_key and env.get("ELASTICSEARCH_PASSWORD"):
            user = user or env.get("ELASTICSEARCH_USERNAME") or "elastic"
            password = to_secret(env.get("ELASTICSEARCH_PASSWORD"))
    basic = None
    if password is not None:
        basic = (user or "elastic", password)

    has_credentials = bool(api_key or basic or bearer)
    if has_credentials and parts.scheme == "http" and not _is_loopback(parts.hostname):
        logger.warning(
            "credentials will be sent over plain HTTP to %s; use https:// for any "
            "host other than this machine",
            parts.hostname,
        )
    timeout = DEFAULT_SERVER_TIMEOUT if request_timeout is None else request_timeout
    if timeout <= 0:
        raise ConfigurationError(f"request_timeout must be positive, got {timeout}")
    return ConnectionConfig(
        url=es_url.rstrip("/"),
        api_key=api_key,
        basic_auth=basic,
        bearer_token=bearer,
        verify_certs=verify_certs,
        ca_certs=ca_certs or env.get("ELASTICSEARCH_CA_CERTS") or None,
        server_timeout=timeout,
        headers=dict(headers) if headers else None,
    )
