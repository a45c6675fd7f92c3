"""Behaviour knobs of the Google emulations (PROVIDERS.md §9: keep the unconfirmed points
configurable): read from ``SANDBOX_GOOGLE_*`` at startup, changed through control routes."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Parser = Callable[[Any], Any]


def int_at_least(minimum: int) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"expected an integer >= {minimum}")
        return value

    return parse


def optional(parser: Parser) -> Parser:
    def parse(value: Any) -> Any:
        return None if value is None or value == "" else parser(value)

    return parse


def seconds(value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError("expected a number of seconds") from None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1e12:
        raise ValueError("expected a non-negative number of seconds")
    return float(value)


def flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no"):
        return value.lower() in ("1", "true", "yes", "on")
    raise ValueError("expected a boolean")


def strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v for v in re.split(r"[\s,]+", value) if v)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError("expected a list of strings")


def string_set(value: Any) -> frozenset[str]:
    return frozenset(strings(value))


def time_zone(value: Any) -> str:
    try:
        return ZoneInfo(value).key
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError("expected an IANA time zone name") from None


class Knobs:
    """Mixin for a settings dataclass: ``PARSERS`` names the settable fields."""

    PARSERS: ClassVar[dict[str, Parser]]
    ENV_PREFIX: ClassVar[str]

    @classmethod
    def from_env(cls, extra: Mapping[str, str]) -> Self:
        knobs = cls()
        names = {f"{cls.ENV_PREFIX}{name.upper()}": name for name in cls.PARSERS}
        knobs.update({names[key]: value for key, value in extra.items() if key in names})
        return knobs

    def update(self, changes: Mapping[str, Any]) -> None:
        unknown = set(changes) - set(self.PARSERS)
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        parsed: dict[str, Any] = {}
        for name, value in changes.items():
            try:
                parsed[name] = self.PARSERS[name](value)
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from None
        for name, value in parsed.items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.PARSERS:
            value = getattr(self, name)
            if isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out
