"""WHOOP's rate-limit headers (PROVIDERS.md §7.2).

``X-RateLimit-Limit`` leads with the limit of whichever window is nearest to being used up,
then lists every policy as ``<limit>;window=<seconds>`` (``100, 100;window=60,
10000;window=86400``); ``Remaining`` and ``Reset`` (seconds, not a date) speak of that
leading window. WHOOP sends no ``Retry-After``: after a 429 the wait is ``Reset``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Policy", "WhoopUsage", "parse_usage"]

_POLICY = re.compile(r"^(?P<limit>\d+)\s*;\s*window\s*=\s*(?P<window>\d+)$")


@dataclass(frozen=True, slots=True)
class Policy:
    limit: int
    window_seconds: int


@dataclass(frozen=True, slots=True)
class WhoopUsage:
    """The app's budget as of one answer: the nearest window's limit, what is left of it,
    seconds until it resets, and every policy the header listed."""

    limit: int
    remaining: int
    reset_seconds: float
    policies: tuple[Policy, ...]

    @property
    def spent(self) -> bool:
        return self.remaining <= 0


def _non_negative_int(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    return int(text) if text.isdigit() else None


def _limit_header(value: str | None) -> tuple[int, tuple[Policy, ...]] | None:
    if value is None:
        return None
    parts = [part.strip() for part in value.split(",")]
    lead = _non_negative_int(parts[0]) if parts else None
    if lead is None:
        return None
    policies = []
    for part in parts[1:]:
        found = _POLICY.match(part)
        if found is None:
            # An unknown policy syntax costs the list, not the leading limit.
            return lead, ()
        policies.append(Policy(int(found["limit"]), int(found["window"])))
    return lead, tuple(policies)


def parse_usage(headers: Mapping[str, str]) -> WhoopUsage | None:
    """The three headers, any case; ``None`` unless limit, remaining and reset all parse."""
    lowered = {key.lower(): value for key, value in headers.items()}
    limit = _limit_header(lowered.get("x-ratelimit-limit"))
    remaining = _non_negative_int(lowered.get("x-ratelimit-remaining"))
    reset = _non_negative_int(lowered.get("x-ratelimit-reset"))
    if limit is None or remaining is None or reset is None:
        return None
    return WhoopUsage(limit[0], remaining, float(reset), limit[1])
