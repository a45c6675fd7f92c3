"""Sandbox configuration: the registered apps' credentials and behaviour knobs, from the
environment (the dev stack passes the same dev secrets the services get)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

# Where each provider lives under the sandbox's base URL. Only base URLs differ from the
# real hosts (ARCHITECTURE §8), so every path after these prefixes is the real one.
PREFIXES: dict[str, str] = {
    "STRAVA_API_BASE": "/strava/api/v3",
    "STRAVA_OAUTH_BASE": "/strava/oauth",
    "GOOGLE_AUTH_URL": "/google/o/oauth2/v2/auth",
    "GOOGLE_TOKEN_URL": "/google/token",
    "GOOGLE_REVOKE_URL": "/google/revoke",
    "GOOGLE_CALENDAR_API_BASE": "/google/calendar/v3",
    "GOOGLE_FIT_API_BASE": "/google/fitness/v1",
    "WHOOP_API_BASE": "/whoop/developer",
    "WHOOP_OAUTH_BASE": "/whoop/oauth/oauth2",
    "WEATHER_API_BASE": "/open-meteo/v1",
    "GEOCODING_API_BASE": "/nominatim",
}


def provider_urls(base_url: str) -> dict[str, str]:
    """The provider base-URL settings that point a service at this sandbox."""
    base = base_url.rstrip("/")
    return {name: base + prefix for name, prefix in PREFIXES.items()}


@dataclass(frozen=True)
class AppCredentials:
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class SandboxConfig:
    strava: AppCredentials = AppCredentials("12345", "strava-dev-secret")
    whoop: AppCredentials = AppCredentials("whoop-dev-client", "whoop-dev-secret")
    google: AppCredentials = AppCredentials(
        "000000000000-dev.apps.googleusercontent.com", "google-dev-secret"
    )
    # Where the sandbox sends WHOOP webhooks (WHOOP: one URL per app, set in its dashboard).
    whoop_webhook_url: str | None = None
    seed: int = 1
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SandboxConfig:
        env = os.environ if environ is None else environ
        defaults = cls()

        def creds(prefix: str, fallback: AppCredentials) -> AppCredentials:
            return AppCredentials(
                env.get(f"{prefix}_CLIENT_ID") or fallback.client_id,
                env.get(f"{prefix}_CLIENT_SECRET") or fallback.client_secret,
            )

        return cls(
            strava=creds("STRAVA", defaults.strava),
            whoop=creds("WHOOP", defaults.whoop),
            google=creds("GOOGLE", defaults.google),
            whoop_webhook_url=env.get("SANDBOX_WHOOP_WEBHOOK_URL") or None,
            seed=int(env.get("SANDBOX_SEED", "1")),
            extra={k: v for k, v in env.items() if k.startswith("SANDBOX_")},
        )
