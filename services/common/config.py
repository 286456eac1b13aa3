"""Configuration from environment variables: each one a Setting, declared once beside the code
that reads it, with its default and its meaning. docs/configuration.md is generated from the
declarations (python -m devtools.config_doc; a test checks it is current)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Setting:
    """One environment variable: declared once, beside the code that reads it, with its default
    and its meaning; docs/configuration.md is generated from these (python -m devtools.config_doc)."""

    name: str
    default: str | int | float | bool | None  # None: unset
    services: str
    meaning: str
    shown: str = ""  # the default as the table says it, when it is not one plain value

    def __post_init__(self) -> None:
        known = SETTINGS.get(self.name)
        if known is not None and known != self:
            raise ValueError(f"{self.name} is declared twice, differently: {known} and {self}")
        SETTINGS[self.name] = self

    def as_str(self) -> str:
        return env_str(self.name, "" if self.default is None else str(self.default))

    def as_int(self, default: int | None = None) -> int:
        return env_int(self.name, self.default if default is None else default)  # type: ignore[arg-type]

    def as_float(self, default: float | None = None) -> float:
        return env_float(self.name, self.default if default is None else default)  # type: ignore[arg-type]

    def as_bool(self) -> bool:
        return env_bool(self.name, bool(self.default))

    def file_bytes(self) -> bytes | None:
        return env_file(self.name)

    def secret(self) -> bytes | None:
        return read_secret(self.name)

    def raw(self) -> str | None:
        """The value as set (also ""), or None when unset."""
        return os.environ.get(self.name)

    def is_set(self) -> bool:
        return self.raw() is not None

    @property
    def default_text(self) -> str:
        if self.shown:
            return self.shown
        if self.default is None or self.default == "":
            return "unset"
        if isinstance(self.default, bool):
            return "on" if self.default else "off"
        return f"`{self.default}`" if isinstance(self.default, str) else f"{self.default:g}" if isinstance(
            self.default, float) else str(self.default)


SETTINGS: dict[str, Setting] = {}
