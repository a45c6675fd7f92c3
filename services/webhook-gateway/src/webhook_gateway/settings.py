"""webhook-gateway settings: webhook verification, the app API's JWT key, OAuth connect."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from syncplane_common.settings import AuthorizeEndpoints, ProviderClientIds, ServiceSettings


class GatewaySettings(ServiceSettings, ProviderClientIds, AuthorizeEndpoints):
    public_base_url: str = Field(
        "http://127.0.0.1:8080",
        description="The gateway's public base URL: OAuth redirect and webhook callback URLs "
        "are built from it.",
    )
    api_jwt_secret: str = Field(
        min_length=32, description="HS256 secret that signs app API bearer JWTs (>= 32 chars)."
    )
    api_jwt_algorithm: Literal["HS256", "EdDSA"] = Field(
        "HS256", description="How app API JWTs are verified: HS256 secret or EdDSA public key."
    )
    api_jwt_public_key: str = Field(
        "", description="PEM Ed25519 public key verifying app JWTs when API_JWT_ALGORITHM=EdDSA."
    )
    oauth_state_secret: str = Field(
        min_length=32,
        description="Key (>= 32 chars) that signs and encrypts the OAuth `state` parameter.",
    )
    oauth_state_ttl_seconds: int = Field(
        600, gt=0, description="How long a connect attempt may take before its state expires."
    )
    connect_return_to_allowlist: str = Field(
        "http://localhost,http://127.0.0.1",
        description="Comma-separated origins `return_to` may point at (any port when the "
        "entry has none).",
    )
    strava_webhook_verify_token: str = Field(
        "", description="Token Strava echoes in the subscription handshake."
    )
    whoop_client_secret: str = Field(
        "", description="WHOOP OAuth client secret; WHOOP signs webhooks with it."
    )
    whoop_webhook_tolerance_seconds: int = Field(
        300, gt=0, description="Oldest WHOOP webhook timestamp accepted (replay window)."
    )
    strava_subscription_id: str = Field(
        "",
        description="Id of our Strava push subscription; events for other ids are refused. "
        "An id recorded by the subscription setup (KV `webhook_config`) takes precedence.",
    )
    webhook_max_body_bytes: int = Field(
        256 * 1024, gt=0, description="Largest webhook body accepted (413 above)."
    )
    publish_timeout_seconds: float = Field(
        2.0, gt=0, description="Longest wait for a JetStream PubAck before answering 503."
    )
    channel_cache_seconds: float = Field(
        30.0, ge=0, description="How long a Calendar channel token lookup is cached."
    )
    request_timeout_seconds: float = Field(
        5.0, gt=0, description="Longest wait for a service answering an app API request."
    )
