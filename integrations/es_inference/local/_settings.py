"""Setting extraction with Elasticsearch's validation rules and messages.

Elasticsearch parses endpoint settings from plain maps: each known key is *removed*
from the map and checked, problems accumulate in one validation exception, and keys
left over afterwards are "unknown settings". :class:`Extractor` follows the same
steps so the local server produces the same messages in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._errors import EsError, status_exception, validation_exception
from ._javafmt import REDACTED, grown_capacity, java_double, java_str

__all__ = ["SECRET_KEYS", "Extractor", "invalid_type", "unknown_settings"]

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


#: Settings whose values never appear in messages.
SECRET_KEYS = frozenset({"access_key", "secret_key"})


def invalid_type(key: str, value: Any, java_type: str) -> str:
    """Elasticsearch's message for a value of the wrong JSON type."""
    shown = REDACTED if key in SECRET_KEYS else java_str(value)
    return (
        f"field [{key}] is not of the expected type. "
        f"The value [{shown}] cannot be converted to a [{java_type}]"
    )


def unknown_settings(
    leftover: dict[str, Any], service: str, original_size: int
) -> EsError:
    """The 400 for keys no parser consumed.

    Args:
        leftover: What remains of the map.
        service: The service name (``amazonbedrock``).
        original_size: How many keys the parsed map had, which fixes the order Java
            prints them in.
    """
    shown = java_str(leftover, capacity=grown_capacity(original_size))
    return status_exception(
        f"Configuration contains settings [{shown}] unknown to the [{service}] service"
    )


def _is_java_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Extractor:
    """Removes settings from maps and collects validation messages."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def raise_if_any(self) -> None:
        """Raise the collected messages as one ``validation_exception``."""
        if self.errors:
            raise validation_exception(self.errors)

    def take(self, source: dict[str, Any], key: str, java_type: str) -> Any:
        """Remove ``key``; record a type error unless it holds a ``java_type``."""
        value = source.pop(key, None)
        if value is None:
            return None
        ok = {
            "String": isinstance(value, str),
            "Integer": _is_java_int(value) and _INT_MIN <= value <= _INT_MAX,
            "Long": _is_java_int(value),
            "Double": isinstance(value, float),
            "Boolean": isinstance(value, bool),
            "Map": isinstance(value, dict),
            "List": isinstance(value, list),
        }[java_type]
        if not ok:
            self.errors.append(invalid_type(key, value, java_type))
            return None
        return value

    def optional_string(self, source: dict[str, Any], key: str, scope: str) -> Any:
        """A string setting, or ``None``; an empty string is an error."""
        before = len(self.errors)
        value = self.take(source, key, "String")
        if len(self.errors) > before:
            return None
        if value == "":
            self.errors.append(
                f"[{scope}] Invalid value empty string. "
                f"[{key}] must be a non-empty string"
            )
            return None
        return value

    def required_string(self, source: dict[str, Any], key: str, scope: str) -> Any:
        """A mandatory string setting."""
        before = len(self.errors)
        value = self.optional_string(source, key, scope)
        if value is None and len(self.errors) == before:
            self.errors.append(
                f"[{scope}] does not contain the required setting [{key}]"
            )
        return value

    def optional_enum(
        self, source: dict[str, Any], key: str, scope: str, values: Sequence[str]
    ) -> str | None:
        """An enum setting, matched case-insensitively; returns the canonical value."""
        raw = self.optional_string(source, key, scope)
        if raw is None:
            return None
        canonical = str(raw).strip().lower()
        if canonical in values:
            return canonical
        self.errors.append(
            f"[{scope}] Invalid value [{java_str(raw)}] received. "
            f"[{key}] must be one of [{', '.join(sorted(values))}]"
        )
        return None

    def required_enum(
        self, source: dict[str, Any], key: str, scope: str, values: Sequence[str]
    ) -> str | None:
        """A mandatory enum setting."""
        before = len(self.errors)
        value = self.optional_enum(source, key, scope, values)
        if value is None and len(self.errors) == before:
            self.errors.append(
                f"[{scope}] does not contain the required setting [{key}]"
            )
        return value

    def optional_positive_int(
        self, source: dict[str, Any], key: str, scope: str
    ) -> int | None:
        """A positive ``Integer`` setting."""
        before = len(self.errors)
        value = self.take(source, key, "Integer")
        if len(self.errors) > before or value is None:
            return None
        if value <= 0:
            self.errors.append(
                f"[{scope}] Invalid value [{value}]. [{key}] must be a positive integer"
            )
            return None
        return int(value)

    def required_positive_int(
        self, source: dict[str, Any], key: str, scope: str
    ) -> int | None:
        """A mandatory positive ``Integer`` setting."""
        present = source.get(key) is not None
        value = self.optional_positive_int(source, key, scope)
        if not present:
            self.errors.append(
                f"[{scope}] does not contain the required setting [{key}]"
            )
        return value

    def required_int_between(
        self,
        source: dict[str, Any],
        key: str,
        low: int,
        high: int | None,
        scope: str,
    ) -> int | None:
        """A mandatory positive ``Integer`` within ``[low, high]``."""
        value = self.required_positive_int(source, key, scope)
        if value is None:
            return None
        if value < low:
            self.errors.append(
                f"[{scope}] Invalid value [{java_double(float(value))}]. [{key}] "
                f"must be a greater than or equal to [{java_double(float(low))}]"
            )
            return None
        if high is not None and value > high:
            self.errors.append(self.too_large(scope, key, value, high))
            return None
        return value

    @staticmethod
    def too_large(scope: str, key: str, value: float, high: float) -> str:
        """The "must be a less than or equal to" message."""
        return (
            f"[{scope}] Invalid value [{java_double(float(value))}]. [{key}] "
            f"must be a less than or equal to [{java_double(float(high))}]"
        )

    def optional_double_in_range(
        self, source: dict[str, Any], key: str, low: float, high: float, scope: str
    ) -> float | None:
        """A ``Double`` setting within ``[low, high]``."""
        before = len(self.errors)
        value = self.take(source, key, "Double")
        if len(self.errors) > before or value is None:
            return None
        if value < low:
            self.errors.append(
                f"[{scope}] Invalid value [{java_double(value)}]. [{key}] "
                f"must be a greater than or equal to [{java_double(low)}]"
            )
        if value > high:
            self.errors.append(self.too_large(scope, key, value, high))
        return None if len(self.errors) > before else float(value)

    def optional_positive_long(
        self, source: dict[str, Any], key: str, scope: str
    ) -> int | None:
        """A positive ``Long`` setting (integers of any size)."""
        value = source.pop(key, None)
        if value is None:
            return None
        if not _is_java_int(value):
            self.errors.append(
                f"field [{key}] is not of one of the expected types. The value "
                f"[{java_str(value)}] cannot be converted to one of [Integer, Long]"
            )
            return None
        if value <= 0:
            self.errors.append(
                f"[{scope}] Invalid value [{value}]. [{key}] must be a positive long"
            )
            return None
        return int(value)

    def optional_bool(self, source: dict[str, Any], key: str) -> bool | None:
        """A ``Boolean`` setting."""
        value = self.take(source, key, "Boolean")
        return None if value is None else bool(value)

    def optional_map(self, source: dict[str, Any], key: str) -> dict[str, Any] | None:
        """A nested object setting."""
        value = self.take(source, key, "Map")
        return None if value is None else dict(value)

    def not_allowed(self, source: dict[str, Any], key: str, scope: str) -> None:
        """Reject ``key`` if present: "[scope] does not allow the setting [key]"."""
        if key in source:
            source.pop(key)
            self.errors.append(f"[{scope}] does not allow the setting [{key}]")
