"""Settings: every value comes from the environment, is documented, and is checked at start.

Each service subclasses :class:`ServiceSettings`; :func:`load_settings` turns a missing
or malformed value into one line naming the setting and exits, instead of a traceback.
"""

from __future__ import annotations

import sys
from typing import Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class BaseConfig(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)


class ServiceSettings(BaseConfig):
    """What every service process reads."""

    nats_url: str = Field(
        "nats://127.0.0.1:4222",
        description="NATS server URL(s), comma separated; credentials may be embedded.",
    )
    http_host: str = Field("127.0.0.1", description="Address of the health/metrics HTTP server.")
    http_port: int = Field(
        0, ge=0, le=65535, description="Port of the health/metrics HTTP server (0: any free)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of the structured (JSON) logs."
    )
    otel_exporter: Literal["none", "console", "otlp"] = Field(
        "none", description="Where trace spans go: nowhere, stdout, or an OTLP/HTTP collector."
    )
    otel_exporter_otlp_endpoint: str = Field(
        "http://127.0.0.1:4318",
        description="OTLP/HTTP collector base URL when OTEL_EXPORTER=otlp.",
    )
    broker_graceful_timeout: float = Field(
        15.0,
        gt=0,
        description="Seconds in-flight messages get to finish at shutdown before exit.",
    )
    max_deliver: int = Field(
        5, ge=1, description="Deliveries of a JetStream message before it is dead-lettered."
    )
    retry_backoff_base: float = Field(
        1.0, gt=0, description="First retry delay in seconds; doubles per delivery."
    )
    retry_backoff_max: float = Field(300.0, gt=0, description="Ceiling of the retry delay.")


class DatabaseSettings(ServiceSettings):
    """What a service that owns a schema reads on top (the gateway has no database)."""

    database_url: str = Field(
        "postgresql://127.0.0.1:5432/syncplane",
        description="Postgres DSN of the service's role; the schema is fixed per service.",
    )
    db_pool_min_size: int = Field(1, ge=0, description="Minimum Postgres connections per process.")
    db_pool_max_size: int = Field(10, ge=1, description="Maximum Postgres connections per process.")


S = TypeVar("S", bound=BaseSettings)


def describe_validation_error(err: ValidationError) -> str:
    """One line naming each bad setting by its environment variable."""
    parts = []
    for problem in err.errors():
        name = ".".join(str(p) for p in problem["loc"]).upper() or "settings"
        if problem["type"] == "missing":
            parts.append(f"{name} is required but not set")
        else:
            parts.append(f"{name} is invalid: {problem['msg']}")
    return "; ".join(parts)


def load_settings(cls: type[S], service: str) -> S:
    try:
        return cls()
    except ValidationError as err:
        print(f"{service}: configuration error: {describe_validation_error(err)}", file=sys.stderr)
        raise SystemExit(2) from None


class AuthorizeEndpoints(BaseConfig):
    """Where users are sent to grant access (the gateway builds these redirects)."""

    strava_oauth_base: str = Field(
        "https://www.strava.com/oauth", description="Strava OAuth base URL."
    )
    google_auth_url: str = Field(
        "https://accounts.google.com/o/oauth2/v2/auth", description="Google authorize URL."
    )
    whoop_oauth_base: str = Field(
        "https://api.prod.whoop.com/oauth/oauth2", description="WHOOP OAuth base URL."
    )


class ProviderEndpoints(AuthorizeEndpoints):
    """Provider base URLs: the real hosts by default; the dev stack points them at the sandbox."""

    strava_api_base: str = Field(
        "https://www.strava.com/api/v3", description="Strava API base URL."
    )
    google_token_url: str = Field(
        "https://oauth2.googleapis.com/token", description="Google token endpoint."
    )
    google_revoke_url: str = Field(
        "https://oauth2.googleapis.com/revoke", description="Google revoke endpoint."
    )
    google_calendar_api_base: str = Field(
        "https://www.googleapis.com/calendar/v3", description="Google Calendar API base URL."
    )
    google_fit_api_base: str = Field(
        "https://www.googleapis.com/fitness/v1", description="Google Fit API base URL."
    )
    whoop_api_base: str = Field(
        "https://api.prod.whoop.com/developer", description="WHOOP API base URL."
    )
    weather_api_base: str = Field(
        "https://archive-api.open-meteo.com/v1", description="Open-Meteo archive API base URL."
    )
    geocoding_api_base: str = Field(
        "https://nominatim.openstreetmap.org",
        description="Nominatim-compatible reverse geocoding base URL.",
    )


PROVIDER_URL_SETTINGS = tuple(name.upper() for name in ProviderEndpoints.model_fields)


class ProviderClientIds(BaseConfig):
    """OAuth client ids (public); empty means the provider is not configured."""

    strava_client_id: str = Field("", description="Strava OAuth client id.")
    whoop_client_id: str = Field("", description="WHOOP OAuth client id.")
    google_client_id: str = Field("", description="Google OAuth client id.")


class ProviderClientSecrets(BaseConfig):
    """OAuth client secrets: only the token service holds them all."""

    strava_client_secret: str = Field("", description="Strava OAuth client secret.")
    whoop_client_secret: str = Field(
        "", description="WHOOP OAuth client secret; also the webhook signing key."
    )
    google_client_secret: str = Field("", description="Google OAuth client secret.")
