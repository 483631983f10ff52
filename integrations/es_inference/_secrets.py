"""A string type that keeps its value out of ``repr()``, logs and pickles."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NoReturn

_MASK = "**********"

# Settings that Elasticsearch error bodies may echo back with their values, e.g.
# "Configuration contains settings [{secret_key=abc, …}] unknown to the service".
_SECRET_SETTING = re.compile(
    r"(?P<key>access_key|secret_key|api_key|password|aws_secret_access_key)"
    r"(?P<sep>\s*[=:]\s*\"?)(?P<value>[^,}\]\s\"]+)",
    re.IGNORECASE,
)


class Secret:
    """A credential. ``str()`` and ``repr()`` show a mask; it refuses to be pickled.

    Read the value with :meth:`get_secret_value` at the single place that sends it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a secret must be a str, got {type(value).__name__}")
        self._value = value

    def get_secret_value(self) -> str:
        """Return the secret itself."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "Secret values are not pickled; objects holding them drop them when "
            "pickled and read credentials again from the environment"
        )


def secret_value(value: Any) -> str | None:
    """Return the plain value of a :class:`Secret`, pydantic ``SecretStr`` or str."""
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    if callable(getter):
        plain = getter()
        return str(plain) if plain is not None else None
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a string secret, got {type(value).__name__}")


def to_secret(value: Any) -> Secret | None:
    """Wrap a credential given in any accepted form, or ``None`` if not given."""
    plain = secret_value(value)
    return Secret(plain) if plain else None


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove known secret values and ``key=value`` credential settings from text."""
    for value in secrets:
        if value and len(value) >= 4:
            text = text.replace(value, _MASK)
    return _SECRET_SETTING.sub(
        lambda m: f"{m.group('key')}{m.group('sep')}{_MASK}", text
    )
