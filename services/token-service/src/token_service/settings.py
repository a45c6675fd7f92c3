"""token-service settings: the keyring that encrypts tokens at rest, and provider access."""

from __future__ import annotations

import base64
import binascii

from pydantic import Field, field_validator, model_validator
from syncplane_common.settings import (
    DatabaseSettings,
    ProviderClientIds,
    ProviderClientSecrets,
    ProviderEndpoints,
)


def parse_keyring(value: str) -> dict[str, bytes]:
    """``kid:base64key[,kid:base64key...]``, each key exactly 32 bytes (AES-256)."""
    keys: dict[str, bytes] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        kid, sep, encoded = item.partition(":")
        if not sep or not kid:
            raise ValueError("each entry must be 'key_id:base64_key'")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"key {kid!r} is not valid base64") from None
        if len(raw) != 32:
            raise ValueError(f"key {kid!r} must be 32 bytes for AES-256, got {len(raw)}")
        if kid in keys:
            raise ValueError(f"key id {kid!r} appears twice")
        keys[kid] = raw
    if not keys:
        raise ValueError("at least one key is required")
    return keys


class TokenServiceSettings(
    DatabaseSettings, ProviderEndpoints, ProviderClientIds, ProviderClientSecrets
):
    token_keys: str = Field(
        description="Keyring for tokens at rest: 'kid:base64(32 bytes)' entries, comma separated."
    )
    token_active_key_id: str = Field(
        "", description="Key id new encryptions use; default the last key of TOKEN_KEYS."
    )
    refresh_margin_seconds: int = Field(
        120,
        ge=0,
        le=1800,
        description="Clock-skew margin: a token is refreshed this long before the caller's "
        "min_valid_seconds would run out.",
    )
    refresh_cooldown_seconds: int = Field(
        30,
        ge=0,
        description="After a refresh, a token that is still valid is served as is for this "
        "long even if it is shorter-lived than asked (Strava hands back the same token while "
        "it has over an hour left, so asking again would only repeat the call).",
    )
    provider_timeout_seconds: float = Field(
        10.0, gt=0, description="Total time allowed for one call to a provider's OAuth endpoint."
    )
    provider_connect_timeout_seconds: float = Field(
        5.0, gt=0, description="Time allowed to open a connection to a provider."
    )
    refresh_lock_timeout_seconds: float = Field(
        15.0,
        gt=0,
        description="Longest wait for another replica's refresh of the same connection "
        "(Postgres lock_timeout); past it the caller gets 'unavailable'.",
    )
    max_concurrent_refreshes: int = Field(
        5,
        ge=1,
        description="Refreshes one process runs at once. Each holds a database connection "
        "while its provider answers, so this stays below DB_POOL_MAX_SIZE: a slow provider "
        "must not starve the reads that serve valid tokens.",
    )
    token_cache_seconds: float = Field(
        5.0,
        ge=0,
        description="How long a process answers token.get for a still-valid token from "
        "memory; bounds how late another replica's refresh or revocation is seen. 0: off.",
    )
    keepalive_idle_days: float = Field(
        0,
        ge=0,
        description="Refresh connections nobody used for this many days, so refresh tokens "
        "that die when idle (Google: six months) survive. 0 turns keep-alive off.",
    )
    keepalive_interval_seconds: float = Field(
        3600.0, gt=0, description="How often each replica looks for idle connections."
    )
    keepalive_batch_size: int = Field(
        50, ge=1, description="Idle connections refreshed per keep-alive pass."
    )
    state_nonce_retention_seconds: int = Field(
        86_400,
        ge=600,
        description="How long a used OAuth state nonce is remembered to refuse replays; "
        "must outlive the gateway's OAUTH_STATE_TTL_SECONDS.",
    )
    outbox_interval_seconds: float = Field(
        5.0, gt=0, description="How often unpublished lifecycle events are retried."
    )
    last_used_resolution_seconds: int = Field(
        60,
        ge=0,
        description="last_used_at is written at most this often per connection, so serving "
        "a token stays a read.",
    )
    rpc_max_workers: int = Field(
        64, ge=1, description="Requests each subject serves concurrently per process."
    )

    @field_validator("token_keys")
    @classmethod
    def _valid_keyring(cls, value: str) -> str:
        parse_keyring(value)
        return value

    @model_validator(mode="after")
    def _active_key_in_keyring(self) -> TokenServiceSettings:
        # Checked at load time, so a typo stops the service at start with one line
        # instead of failing the first encryption.
        _ = self.active_key_id
        return self

    @property
    def keyring(self) -> dict[str, bytes]:
        return parse_keyring(self.token_keys)

    @property
    def active_key_id(self) -> str:
        keys = self.keyring
        kid = self.token_active_key_id or list(keys)[-1]
        if kid not in keys:
            raise ValueError(f"TOKEN_ACTIVE_KEY_ID {kid!r} is not in TOKEN_KEYS")
        return kid
