"""Providers' usage headers as :class:`Observed` corrections for the shared budget.

Strava (PROVIDERS.md §3.2): ``X-RateLimit-*`` and ``X-ReadRateLimit-*``, parsed by
:mod:`sync_worker.providers._strava_usage`, give exact counts for all four windows.
WHOOP (§7.2): ``X-RateLimit-Limit`` names every policy (``100, 100;window=60,
10000;window=86400``) but ``Remaining`` / ``Reset`` speak only of the leading one, the
policy nearest to being used up; for the others we know the limit and a lower bound.
Open-Meteo sends no usage headers (§8.2): its budget is corrected by nothing but our own
reservations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sync_worker._budget_policy import Observed
from sync_worker.providers._strava_usage import StravaUsage
from sync_worker.providers._whoop_usage import WhoopUsage as ClientWhoopUsage

__all__ = [
    "WhoopUsage",
    "parse_whoop_usage",
    "strava_observed",
    "whoop_client_observed",
    "whoop_observed",
]

# Window names of the default limits (budget.STRAVA_WINDOWS, budget.WHOOP_WINDOWS).
_WHOOP_WINDOW_NAMES = {60: "minute", 86_400: "day"}


def strava_observed(usage: StravaUsage | None) -> list[Observed]:
    """The four Strava windows an answer reported (none when the headers were absent)."""
    if usage is None:
        return []
    out: list[Observed] = []
    for prefix, bucket in (("", usage.overall), ("read_", usage.read)):
        if bucket is None:
            continue
        out.append(Observed(f"{prefix}15min", bucket.limit_15min, bucket.used_15min))
        out.append(Observed(f"{prefix}daily", bucket.limit_daily, bucket.used_daily))
    return out


@dataclass(frozen=True, slots=True)
class WhoopUsage:
    """``policies`` maps each window length in seconds to its limit; ``lead_seconds`` is
    the policy ``remaining`` and ``reset_seconds`` speak of."""

    policies: Mapping[int, int]
    lead_seconds: int
    remaining: int
    reset_seconds: int


def _int(value: str | None) -> int | None:
    try:
        number = int((value or "").strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def _policies(value: str) -> dict[int, int] | None:
    policies: dict[int, int] = {}
    for part in value.split(",")[1:]:
        limit_text, _, params = part.strip().partition(";")
        limit = _int(limit_text)
        seconds = None
        for param in params.split(";"):
            key, _, raw = param.strip().partition("=")
            if key.strip().lower() == "window":
                seconds = _int(raw)
        if limit is None or not seconds:
            return None
        policies[seconds] = limit
    return policies or None


def _lead(policies: Mapping[int, int], lead_limit: int, reset: int) -> int | None:
    # Two policies may share a limit value; the reset, in seconds, can only be as long as
    # the window it belongs to, so the shortest window that fits it is the leading one.
    candidates = sorted(s for s, limit in policies.items() if limit == lead_limit)
    fitting = [s for s in candidates if reset <= s]
    if fitting:
        return fitting[0]
    return candidates[-1] if candidates else None


def parse_whoop_usage(headers: Mapping[str, str]) -> WhoopUsage | None:
    """The three ``X-RateLimit-*`` headers, any case; None when any is missing or odd."""
    lowered = {key.lower(): value for key, value in headers.items()}
    limit_header = lowered.get("x-ratelimit-limit")
    remaining = _int(lowered.get("x-ratelimit-remaining"))
    reset = _int(lowered.get("x-ratelimit-reset"))
    if limit_header is None or remaining is None or reset is None:
        return None
    lead_limit = _int(limit_header.split(",")[0])
    policies = _policies(limit_header)
    if lead_limit is None or policies is None:
        return None
    lead = _lead(policies, lead_limit, reset)
    if lead is None:
        return None
    return WhoopUsage(policies, lead, remaining, reset)


def whoop_observed(headers: Mapping[str, str]) -> list[Observed]:
    """Exact use of the leading window; for every longer window the same number is a
    lower bound (it contains the leading one), for shorter ones we only learn the limit."""
    usage = parse_whoop_usage(headers)
    return [] if usage is None else _whoop_windows(usage)


def whoop_client_observed(usage: ClientWhoopUsage | None) -> list[Observed]:
    """The same corrections from the WHOOP client's parsed answer (it keeps no headers)."""
    if usage is None or not usage.policies:
        return []
    policies = {p.window_seconds: p.limit for p in usage.policies}
    reset = int(usage.reset_seconds)
    lead = _lead(policies, usage.limit, reset)
    if lead is None:
        return []
    return _whoop_windows(WhoopUsage(policies, lead, usage.remaining, reset))


def _whoop_windows(usage: WhoopUsage) -> list[Observed]:
    lead_limit = usage.policies[usage.lead_seconds]
    lead_used = max(lead_limit - usage.remaining, 0)
    out: list[Observed] = []
    for seconds, limit in sorted(usage.policies.items()):
        name = _WHOOP_WINDOW_NAMES.get(seconds)
        if name is None:
            continue
        used = lead_used if seconds >= usage.lead_seconds else 0
        out.append(Observed(name, limit, used))
    return out
