"""Runtime knobs of the WHOOP emulation (PROVIDERS.md §7.2, §7.4, §9): the limits and
behaviours WHOOP does not document are settings, changed with ``POST /_sandbox/whoop/config``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from provider_sandbox.config import SandboxConfig

# Five retries over roughly an hour (§7.4), as offsets from the first attempt.
DEFAULT_RETRY_OFFSETS = (60.0, 300.0, 900.0, 1800.0, 3600.0)


@dataclass
class WhoopSettings:
    rate_limit_per_minute: int = 100
    rate_limit_per_day: int = 10_000
    # Empty: any https://, whoop:// or loopback http:// URI is accepted (the dev stack's
    # callback port varies); otherwise the redirect_uri must be one of these exactly.
    redirect_uris: list[str] = field(default_factory=list)
    # §7.5 asks for no next_token on the last page; §7.6 suspects the live API sends null.
    last_page_next_token: str = "absent"
    webhook_urls: list[str] = field(default_factory=list)
    webhook_retry_offsets: list[float] = field(default_factory=lambda: [*DEFAULT_RETRY_OFFSETS])
    webhook_timeout_seconds: float = 5.0
    webhook_duplicate_rate: float = 0.0
    webhook_bad_signature_rate: float = 0.0
    webhook_stale_timestamp_rate: float = 0.0
    webhook_stale_seconds: float = 600.0
    unscorable_rate: float = 0.02
    # > 0: new records whose state the caller did not choose start PENDING_SCORE and are
    # scored (with an update event) this many seconds later on the virtual clock.
    pending_score_seconds: float = 0.0

    @classmethod
    def from_config(cls, config: SandboxConfig) -> WhoopSettings:
        settings = cls()
        if config.whoop_webhook_url:
            settings.webhook_urls = [config.whoop_webhook_url]
        uris = config.extra.get("SANDBOX_WHOOP_REDIRECT_URIS", "")
        settings.redirect_uris = [u.strip() for u in uris.split(",") if u.strip()]
        return settings

    def restore(self, other: WhoopSettings) -> None:
        """Become ``other`` in place: the parts of the emulation share this object."""
        for item in fields(self):
            setattr(self, item.name, getattr(other, item.name))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update, all or nothing; ``ValueError`` names the bad field."""
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ValueError(f"unknown settings: {unknown}")
        staged = {name: _validated(name, value) for name, value in changes.items()}
        for name, value in staged.items():
            setattr(self, name, value)


_POSITIVE_INTS = {"rate_limit_per_minute", "rate_limit_per_day"}
_RATES = {
    "webhook_duplicate_rate",
    "webhook_bad_signature_rate",
    "webhook_stale_timestamp_rate",
    "unscorable_rate",
}
_SECONDS = {"webhook_timeout_seconds", "webhook_stale_seconds", "pending_score_seconds"}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _validated(name: str, value: Any) -> Any:
    if name in _POSITIVE_INTS:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer")
        return value
    if name in _RATES:
        if not _number(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be within [0, 1]")
        return float(value)
    if name in _SECONDS:
        if not _number(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative number")
        return float(value)
    if name == "last_page_next_token":
        if value not in ("absent", "null"):
            raise ValueError("last_page_next_token must be 'absent' or 'null'")
        return value
    if name == "webhook_retry_offsets":
        if not isinstance(value, list) or not all(_number(v) and v >= 0 for v in value):
            raise ValueError("webhook_retry_offsets must be a list of non-negative seconds")
        return sorted(float(v) for v in value)
    # redirect_uris, webhook_urls
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{name} must be a list of non-empty strings")
    return list(value)
