"""Calendar emulation knobs (PROVIDERS.md §5.1, §5.4, §9 open points) and the sliding
one-minute quota windows, per user per project and per project."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields
from typing import Any

from provider_sandbox.providers._gcal_errors import INJECTABLE

DAY = 86_400


@dataclass
class GcalSettings:
    user_rate_limit_per_minute: int = 600
    project_rate_limit_per_minute: int = 10_000
    # Google answers an exceeded quota with 403 or 429 interchangeably.
    rate_limit_status: int | str = "random"
    # Unconfirmed lifetimes (PROVIDERS.md §9): None keeps sync tokens valid forever.
    sync_token_max_age_seconds: float | None = None
    updated_min_max_age_seconds: float = 30.0 * DAY
    empty_page_rate: float = 0.0
    short_page_rate: float = 0.0
    expand_horizon_days: int = 365
    # §5.4: undocumented for Calendar; 3600 s default TTL, 7 days max as emulators use.
    channel_default_ttl_seconds: int = 3600
    channel_max_ttl_seconds: int = 7 * DAY
    sync_before_watch_response: bool = False
    push_drop_rate: float = 0.0
    push_retry_base_seconds: float = 1.0
    push_max_attempts: int = 5
    push_timeout_seconds: float = 10.0
    trickle_after_stop: bool = False
    allow_http_addresses: bool = False

    def restore_defaults(self) -> None:
        for name, value in GcalSettings().as_dict().items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a JSON object of changes, all or nothing; ValueError names the bad key."""
        known = {f.name: f for f in fields(self)}
        staged: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown setting {name!r}")
            staged[name] = _validate(name, value, getattr(self, name))
        for name, value in staged.items():
            setattr(self, name, value)


def _validate(name: str, value: Any, current: Any) -> Any:
    if name == "rate_limit_status":
        if value not in (403, 429, "random"):
            raise ValueError("rate_limit_status must be 403, 429 or 'random'")
        return value
    if name == "sync_token_max_age_seconds" and value is None:
        return None
    if isinstance(current, bool) or name in ("trickle_after_stop", "allow_http_addresses"):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a boolean")
        return value
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative number")
    if name.endswith("_rate") and value > 1:
        raise ValueError(f"{name} must be within [0, 1]")
    if isinstance(current, int):
        if value != int(value):
            raise ValueError(f"{name} must be an integer")
        return int(value)
    return float(value)


class Injected:
    """Errors queued by the control API for the next API calls (§5.5: inject
    ``userRateLimitExceeded``, ``quotaExceeded``, ``backendError``)."""

    def __init__(self) -> None:
        self.queue: deque[str] = deque()

    def add(self, spec: Any) -> None:
        if not isinstance(spec, dict) or spec.get("reason") not in INJECTABLE:
            raise ValueError(f"inject needs a 'reason' among {sorted(INJECTABLE)}")
        count = spec.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError("inject 'count' must be a positive integer")
        self.queue.extend([spec["reason"]] * count)

    def take(self) -> str | None:
        return self.queue.popleft() if self.queue else None


class SlidingWindow:
    """Requests accepted in the last 60 s per key; O(1) amortized per hit."""

    def __init__(self) -> None:
        self.hits: dict[str, deque[float]] = {}

    def allow(self, key: str, now: float, limit: int) -> bool:
        window = self.hits.get(key)
        if window is None:
            window = self.hits[key] = deque()
        while window and window[0] <= now - 60.0:
            window.popleft()
        if len(window) >= limit:
            return False
        window.append(now)
        return True

    def reset(self) -> None:
        self.hits.clear()
