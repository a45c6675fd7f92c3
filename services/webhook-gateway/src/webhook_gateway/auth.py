"""App API authentication: bearer JWTs, HS256 with a shared secret or EdDSA with a public key.

Claims (what ``syncplane token`` mints): ``sub`` the user id, ``exp`` required, ``scope``
space-separated where ``admin`` reaches every user and the admin routes. Only the one
algorithm the settings name is accepted, so a token cannot choose how it is checked.
Expiry is checked against the injected clock, not the process clock, so tests and the
OAuth state share one notion of now. :class:`TokenCache` remembers the tokens whose
signature and claims already passed, so an app sending the same token with every request
pays for the HMAC / Ed25519 check once; the time checks still run on every request.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

import jwt

from webhook_gateway.settings import GatewaySettings

# Tolerated clock skew between the app's token issuer and the gateway.
LEEWAY_SECONDS = 30


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes


class AuthError(Exception):
    def __init__(self, message: str, *, token_given: bool) -> None:
        super().__init__(message)
        self.message = message
        self.token_given = token_given


def bearer_from_header(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _key(settings: GatewaySettings) -> str:
    if settings.api_jwt_algorithm == "EdDSA":
        if not settings.api_jwt_public_key:
            raise AuthError("the gateway has no EdDSA public key configured", token_given=True)
        return settings.api_jwt_public_key
    return settings.api_jwt_secret


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    exp: float
    nbf: float


def authenticate(token: str | None, settings: GatewaySettings, now: datetime) -> Principal:
    """The caller a token stands for, or :class:`AuthError` (never says which check failed
    beyond what the caller can fix: missing, malformed, expired)."""
    if not token:
        raise AuthError("a bearer token is required", token_given=False)
    return _in_time(_verify(token, settings), now)


class TokenCache:
    """Tokens already verified (signature and claims) with what they stand for, the
    least recently used dropped beyond ``max_entries``. Keyed by the whole token string,
    so a cached entry is exactly the bytes that were verified; only accepted tokens are
    kept (a refused one is checked again every time, and cannot fill the cache). Expiry
    and not-before are checked on every hit against ``now``, so a cached token stops
    working the moment an uncached one would; a token past its expiry is dropped."""

    def __init__(self, settings: GatewaySettings, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.settings = settings
        self.max_entries = max_entries
        self._verified: OrderedDict[str, _Verified] = OrderedDict()

    def __len__(self) -> int:
        return len(self._verified)

    def authenticate(self, token: str | None, now: datetime) -> Principal:
        if not token:
            raise AuthError("a bearer token is required", token_given=False)
        verified = self._verified.get(token)
        if verified is None:
            verified = _verify(token, self.settings)
            self._verified[token] = verified
            if len(self._verified) > self.max_entries:
                self._verified.popitem(last=False)
        else:
            self._verified.move_to_end(token)
        try:
            return _in_time(verified, now)
        except AuthError:
            if now.timestamp() > verified.exp + LEEWAY_SECONDS:
                self._verified.pop(token, None)
            raise


def _verify(token: str, settings: GatewaySettings) -> _Verified:
    """Signature and claims: everything about a token that does not depend on the time."""
    try:
        claims = jwt.decode(
            token,
            _key(settings),
            algorithms=[settings.api_jwt_algorithm],
            options={
                "require": ["sub", "exp"],
                # Time checks below, on the injected clock.
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
            },
        )
    except jwt.PyJWTError as err:
        raise AuthError(f"invalid token: {err}", token_given=True) from err
    exp, nbf = claims.get("exp"), claims.get("nbf", -1.0)
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise AuthError("invalid token: exp must be a number", token_given=True)
    if not isinstance(nbf, int | float) or isinstance(nbf, bool):
        raise AuthError("invalid token: nbf must be a number", token_given=True)
    subject, scope = claims.get("sub"), claims.get("scope", "")
    if not isinstance(subject, str) or not subject or len(subject) > 200:
        raise AuthError("invalid token: bad subject", token_given=True)
    if not isinstance(scope, str):
        raise AuthError("invalid token: scope must be a space-separated string", token_given=True)
    return _Verified(Principal(subject, frozenset(scope.split())), float(exp), float(nbf))


def _in_time(verified: _Verified, now: datetime) -> Principal:
    stamp = now.timestamp()
    if stamp > verified.exp + LEEWAY_SECONDS:
        raise AuthError("the token has expired", token_given=True)
    if stamp + LEEWAY_SECONDS < verified.nbf:
        raise AuthError("the token is not valid yet", token_given=True)
    return verified.principal
