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


def decode_cloud_id(cloud_id: str, name: str = "es_cloud_id") -> str:
    """Return the Elasticsearch URL encoded in an Elastic Cloud id.

    ``name`` is the setting the id came from, for the error message.
    """
    _, sep, encoded = cloud_id.rpartition(":")
    problem = ConfigurationError(
        f"{name} is not a valid Elastic Cloud id "
        "(expected 'name:base64(host$es_uuid$kibana_uuid)')"
    )
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        host, es_uuid, *_ = decoded.split("$")
    except (ValueError, UnicodeDecodeError):
        raise problem from None
    if not sep or not host or not es_uuid:
        raise problem
    host, _, port = host.partition(":")
    return f"https://{es_uuid}.{host}:{port or '443'}"


def check_url(url: str, name: str = "es_url") -> None:
    """Refuse a cluster URL that is not a plain ``http(s)://host[:port][/path]``.

    ``name`` is the setting the URL came from. No message shows the URL: its
    user info or query string may hold a credential.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"{name} must be a string, got {type(url).__name__}")
    if "://" not in url:
        raise ConfigurationError(
            f"{name} must start with http:// or https://, e.g. https://localhost:9200"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        got = f"{parts.scheme}://" if parts.scheme else "another scheme"
        raise ConfigurationError(
            f"{name} must be an http:// or https:// URL, got {got}"
        )
    if "@" in parts.netloc:
        raise ConfigurationError(
            f"put no credentials in {name}; pass es_api_key, es_user with "
            "es_password, or es_bearer_token"
        )
    if "?" in url or "#" in url:
        raise ConfigurationError(
            f"{name} must not have a query string or fragment, which would be "
            "dropped; give the cluster's address only, and any credential as "
            "es_api_key, es_user with es_password, or es_bearer_token"
        )
    if not parts.hostname:
        raise ConfigurationError(f"{name} names no host")
    try:
        _ = parts.port
    except ValueError:
        raise ConfigurationError(
            f"{name} has a port that is not a number from 0 to 65535"
        ) from None


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


def _given(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return True
    try:
        return bool(secret_value(value))
    except TypeError:
        return True  # a wrong type is named by the check of that argument


def _secret_argument(name: str, value: Any) -> Secret | None:
    try:
        return to_secret(value)
    except TypeError:
        raise ConfigurationError(
            f"{name} must be a string, got {type(value).__name__}"
        ) from None


def check_connection_arguments(
    *,
    es_url: str | None = None,
    es_cloud_id: str | None = None,
    es_api_key: Any = None,
    es_user: str | None = None,
    es_password: Any = None,
    es_bearer_token: Any = None,
) -> None:
    """Check the connection arguments given, without reading the environment.

    Adapters call this from their constructors; :func:`resolve_connection` calls it
    again before it reads the environment. ``None`` and empty strings count as
    not given.

    Raises:
        ConfigurationError: ``es_url`` together with ``es_cloud_id``; an
            ``es_url`` that is not a plain ``http(s)://host[:port][/path]``
            (credentials, a query string or a fragment in it); an invalid cloud
            id; a malformed API key; or more than one kind of credentials.
    """
    if es_url and es_cloud_id:
        raise ConfigurationError("give es_url or es_cloud_id, not both")
    if es_url:
        check_url(es_url)
    if es_cloud_id:
        decode_cloud_id(es_cloud_id)
    encode_api_key(es_api_key)
    _secret_argument("es_password", es_password)
    _secret_argument("es_bearer_token", es_bearer_token)
    if es_user is not None and not isinstance(es_user, str):
        raise ConfigurationError(
            f"es_user must be a string, got {type(es_user).__name__}"
        )

    kinds = []
    if _given(es_api_key):
        kinds.append("es_api_key")
    if es_user and _given(es_password):
        kinds.append("es_user with es_password")
    elif es_user or _given(es_password):
        kinds.append("es_user" if es_user else "es_password")
    if _given(es_bearer_token):
        kinds.append("es_bearer_token")
    if len(kinds) > 1:
        given = ", ".join(kinds[:-1]) + " and " + kinds[-1]
        raise ConfigurationError(
            f"conflicting Elasticsearch credentials: {given} were given; pass only "
            "one of es_api_key, es_user with es_password, or es_bearer_token"
        )


def _cluster_url(
    es_url: str | None, es_cloud_id: str | None, env: Mapping[str, str]
) -> str:
    if es_url:
        return es_url
    if es_cloud_id:
        return decode_cloud_id(es_cloud_id)
    env_url = env.get("ELASTICSEARCH_URL") or None
    env_cloud_id = env.get("ELASTIC_CLOUD_ID") or None
    if env_url and env_cloud_id:
        raise ConfigurationError(
            "ELASTICSEARCH_URL and ELASTIC_CLOUD_ID are both set; unset one, or pass "
            "es_url or es_cloud_id, which take precedence over the environment"
        )
    if env_url:
        check_url(env_url, "ELASTICSEARCH_URL")
        return env_url
    if env_cloud_id:
        return decode_cloud_id(env_cloud_id, "ELASTIC_CLOUD_ID")
    raise ConfigurationError(
        "no Elasticsearch given: pass es_url or es_cloud_id, or set "
        "ELASTICSEARCH_URL or ELASTIC_CLOUD_ID"
    )


def _credentials(
    es_api_key: Any,
    es_user: str | None,
    es_password: Any,
    es_bearer_token: Any,
    env: Mapping[str, str],
) -> tuple[Secret | None, tuple[str, Secret] | None, Secret | None]:
    api_key = encode_api_key(es_api_key)
    bearer = to_secret(es_bearer_token)
    if api_key or bearer:
        return api_key, None, bearer

    password = to_secret(es_password)
    if es_user or password:
        user = es_user or env.get("ELASTICSEARCH_USERNAME") or "elastic"
        password = password or to_secret(env.get("ELASTICSEARCH_PASSWORD"))
        if password is None:
            raise ConfigurationError(
                "es_user was given without a password; pass es_password or set "
                "ELASTICSEARCH_PASSWORD"
            )
        return None, (user, password), None

    env_key = to_secret(env.get("ELASTICSEARCH_API_KEY"))
    env_password = to_secret(env.get("ELASTICSEARCH_PASSWORD"))
    if env_key and env_password:
        raise ConfigurationError(
            "conflicting Elasticsearch credentials in the environment: "
            "ELASTICSEARCH_API_KEY and ELASTICSEARCH_PASSWORD are both set; unset "
            "one, or pass es_api_key or es_user with es_password, which take "
            "precedence over the environment"
        )
    if env_key:
        return env_key, None, None
    if env_password:
        user = env.get("ELASTICSEARCH_USERNAME") or "elastic"
        return None, (user, env_password), None
    if env.get("ELASTICSEARCH_USERNAME"):
        raise ConfigurationError(
            "ELASTICSEARCH_USERNAME is set without ELASTICSEARCH_PASSWORD; set the "
            "password too, or unset ELASTICSEARCH_USERNAME to connect without "
            "credentials"
        )
    return None, None, None


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

    How arguments and the environment combine:

    - Arguments win over the environment. ``es_url`` or ``es_cloud_id`` means the
      cluster variables are not read; any credential argument means
      ``ELASTICSEARCH_API_KEY`` is not read (an explicit ``es_api_key`` with
      ``ELASTICSEARCH_PASSWORD`` set is fine: the key is sent).
    - Basic auth is completed from the environment: ``es_user`` alone takes its
      password from ``ELASTICSEARCH_PASSWORD``, ``es_password`` alone its user from
      ``ELASTICSEARCH_USERNAME`` (else ``elastic``).
    - Conflicts are errors, among arguments (``es_url`` with ``es_cloud_id``; two
      kinds of credentials) and among environment variables of one kind
      (``ELASTICSEARCH_URL`` with ``ELASTIC_CLOUD_ID``; ``ELASTICSEARCH_API_KEY``
      with ``ELASTICSEARCH_PASSWORD``), as is an incomplete credential
      (``es_user`` with no password anywhere; ``ELASTICSEARCH_USERNAME`` alone).

    Raises:
        ConfigurationError: for the conflicts above and for invalid values (see
            :func:`check_connection_arguments`); no message shows a secret.
    """
    env = os.environ if env is None else env
    check_connection_arguments(
        es_url=es_url,
        es_cloud_id=es_cloud_id,
        es_api_key=es_api_key,
        es_user=es_user,
        es_password=es_password,
        es_bearer_token=es_bearer_token,
    )
    es_url = _cluster_url(es_url, es_cloud_id, env)
    parts = urlsplit(es_url)
    api_key, basic, bearer = _credentials(
        es_api_key, es_user, es_password, es_bearer_token, env
    )

    has_credentials = bool(api_key or basic or bearer)
    host = parts.hostname or ""
    if has_credentials and parts.scheme == "http" and not _is_loopback(host):
        logger.warning(
            "credentials will be sent over plain HTTP to %s; use https:// for any "
            "host other than this machine",
            host,
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
