"""API JWTs for the dev stack, signed like the gateway expects (HS256, ``scope``)."""

from __future__ import annotations

import time
from typing import Any

import jwt


def mint_token(secret: str, user: str, *, admin: bool = False, ttl: int = 24 * 3600) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user,
        "iss": "syncplane-dev",
        "iat": now,
        "exp": now + ttl,
        "scope": "admin" if admin else "user",
    }
    return jwt.encode(claims, secret, algorithm="HS256")
