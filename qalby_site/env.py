"""Typed access to the process environment.

Every setting that comes from the environment is read here, so that a bad value stops
start-up with a message naming the variable instead of failing later somewhere else.
A variable ``NAME_FILE`` (a mounted secret) is read in place of ``NAME`` when set.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE points at {path!r}, which cannot be read: {exc.strerror}") from None
    return os.environ.get(name)


def string(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None else value.strip()


def secret(name: str) -> str | None:
    """A secret value, or None when unset or blank (callers decide whether that is fatal)."""
    value = _raw(name)
    return value.strip() or None if value is not None else None


def boolean(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), not {value!r}")


def integer(name: str, default: int, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None or not value.strip():
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    return number


def decimal(name: str, default: float, minimum: float = 0.0) -> float:
    value = _raw(name)
    if value is None or not value.strip():
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    return number


def listing(name: str, default: list[str] | None = None) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def choice(name: str, default: str, choices: set[str]) -> str:
    value = string(name, default).upper() if default.isupper() else string(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(sorted(choices))}, not {value!r}")
    return value
