"""Typed reads of environment variables with defaults (every knob is documented in README.md)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _env_parsed(name: str, default: T, parse: Callable[[str], T], what: str) -> T:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise SystemExit(f"environment variable {name}={raw!r} is not {what}") from exc


def env_int(name: str, default: int) -> int:
    return _env_parsed(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    return _env_parsed(name, default, float, "a number")


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_file(name: str) -> bytes | None:
    """The bytes of the file the variable names (a mounted Secret, a certificate), or None when unset."""
    path = os.environ.get(name, "")
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise SystemExit(f"{name}={path!r} cannot be read: {exc.strerror}") from None


def read_secret(name: str) -> bytes | None:
    """A secret from the file the variable names, without trailing white space."""
    value = env_file(name)
    return value.strip() if value is not None else None
