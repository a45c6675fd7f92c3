"""Dev secrets: generated once per stack; a value already in the environment always wins."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping

# Every credential setting of ARCHITECTURE §8, by setting name.
SECRET_SETTINGS = (
    "API_JWT_SECRET",
    "OAUTH_STATE_SECRET",
    "TOKEN_KEYS",
    "STRAVA_CLIENT_ID",
    "STRAVA_CLIENT_SECRET",
    "STRAVA_WEBHOOK_VERIFY_TOKEN",
    "STRAVA_SUBSCRIPTION_ID",
    "WHOOP_CLIENT_ID",
    "WHOOP_CLIENT_SECRET",
    "GOOGLE_CLIENT_ID",
    "GOOGLE_CLIENT_SECRET",
)


def _generate(name: str) -> str:
    if name == "TOKEN_KEYS":
        return "dev1:" + base64.b64encode(secrets.token_bytes(32)).decode()
    if name == "STRAVA_CLIENT_ID":
        # Strava client ids are small integers; keep the shape so clients parse it.
        return str(10000 + secrets.randbelow(89999))
    if name == "STRAVA_SUBSCRIPTION_ID":
        # Created against the provider sandbox by the webhook setup; empty until then.
        return ""
    if name == "GOOGLE_CLIENT_ID":
        return f"{secrets.randbelow(10**12):012d}-dev.apps.googleusercontent.com"
    if name.endswith("_CLIENT_ID"):
        return secrets.token_hex(16)
    return secrets.token_urlsafe(40)


def dev_secrets(
    environ: Mapping[str, str], existing: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment first, then what the stack already generated, then fresh values."""
    out: dict[str, str] = {}
    for name in SECRET_SETTINGS:
        if name in environ:
            out[name] = environ[name]
        elif existing and name in existing:
            out[name] = existing[name]
        else:
            out[name] = _generate(name)
    return out
