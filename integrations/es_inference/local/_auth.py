"""Request authentication like Elasticsearch security: ApiKey, Basic and Bearer.

Tokens are compared in constant time. Nothing here logs or echoes a credential;
only a Basic user *name* appears in the 401 reason, as in Elasticsearch.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from ._errors import EsError
from ._http import Request

__all__ = ["Authenticator"]

_ANONYMOUS_DENIED = (
    "unable to authenticate with provided credentials and anonymous access is not "
    "allowed for this request"
)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class Authenticator:
    """Checks the ``Authorization`` header against the configured credentials.

    Any configured scheme is accepted; with none configured every request passes.

    Args:
        api_key: Expected token of ``Authorization: ApiKey <token>``.
        basic_auth: Expected ``(user, password)`` of ``Authorization: Basic``.
        bearer_token: Expected token of ``Authorization: Bearer <token>``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        bearer_token: str | None = None,
    ) -> None:
        self._api_key = api_key
        self._basic = basic_auth
        self._bearer = bearer_token
        challenges = []
        if basic_auth is not None:
            challenges.append('Basic realm="security", charset="UTF-8"')
        if bearer_token is not None:
            challenges.append('Bearer realm="security"')
        if api_key is not None:
            challenges.append("ApiKey")
        self._challenges = challenges

    @property
    def enabled(self) -> bool:
        """Whether any credential is required."""
        return bool(self._challenges)

    def __repr__(self) -> str:
        schemes = ", ".join(c.split(" ", 1)[0] for c in self._challenges)
        return f"Authenticator(schemes=[{schemes}])"

    def check(self, request: Request) -> None:
        """Raise the 401 Elasticsearch sends unless the request authenticates."""
        if not self.enabled:
            return
        header = request.headers.get("authorization")
        if not header:
            raise self._denied(
                "missing authentication credentials for REST request "
                f"[{request.target}]"
            )
        scheme, _, token = header.strip().partition(" ")
        scheme, token = scheme.lower(), token.strip()

        if scheme == "apikey" and self._api_key is not None:
            if _same(token, self._api_key):
                return
        elif scheme == "bearer" and self._bearer is not None:
            if _same(token, self._bearer):
                return
        elif scheme == "basic" and self._basic is not None:
            user, password = self._decode_basic(token)
            user_ok = _same(user, self._basic[0])
            password_ok = _same(password, self._basic[1])
            if user_ok and password_ok:
                return
            raise self._denied(
                f"unable to authenticate user [{user}] for REST request "
                f"[{request.target}]"
            )
        raise self._denied(_ANONYMOUS_DENIED)

    @staticmethod
    def _decode_basic(token: str) -> tuple[str, str]:
        try:
            decoded = base64.b64decode(token, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        user, _, password = decoded.partition(":")
        return user, password

    def _denied(self, reason: str) -> EsError:
        return EsError(
            401,
            "security_exception",
            reason,
            header={"WWW-Authenticate": list(self._challenges)},
            http_headers=[("WWW-Authenticate", c) for c in self._challenges],
        )
