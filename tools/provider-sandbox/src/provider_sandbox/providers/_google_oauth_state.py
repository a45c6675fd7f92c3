"""Google OAuth bookkeeping (PROVIDERS.md §4.1-4.2): settings, consent, authorization codes,
PKCE and the refresh-token death rules, kept apart from the HTTP handlers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from provider_sandbox.providers._google_settings import (
    Knobs,
    Parser,
    flag,
    int_at_least,
    seconds,
    string_set,
    strings,
)

DAY = 86400.0
SIX_MONTHS = 183 * DAY
TESTING_LIFETIME = 7 * DAY

AUTH_PREFIX = "https://www.googleapis.com/auth/"
USERINFO_EMAIL = AUTH_PREFIX + "userinfo.email"
USERINFO_PROFILE = AUTH_PREFIX + "userinfo.profile"
GMAIL_FULL = "https://mail.google.com/"
# Google echoes the short OpenID names back as their full URLs in ``scope``.
SCOPE_ALIASES = {"email": USERINFO_EMAIL, "profile": USERINFO_PROFILE}
# The only scopes exempt from the Testing-mode 7-day refresh-token expiry (§4.2).
BASIC_SCOPES = frozenset({"openid", USERINFO_EMAIL, USERINFO_PROFILE})

_PKCE_CHARS = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_API_SCOPE = re.compile(r"^https://www\.googleapis\.com/auth/[A-Za-z0-9._\-]+$")


def normalize_scope(scope: str) -> str:
    return SCOPE_ALIASES.get(scope, scope)


def parse_scopes(raw: str) -> tuple[frozenset[str], list[str]]:
    """Space-separated scopes (§4.1) -> (known scopes, invalid ones)."""
    scopes: set[str] = set()
    invalid: list[str] = []
    for item in raw.split(" "):
        if not item:
            continue
        scope = normalize_scope(item)
        if scope in ("openid", GMAIL_FULL) or _API_SCOPE.match(scope):
            scopes.add(scope)
        else:
            invalid.append(item)
    return frozenset(scopes), invalid


def scope_string(scopes: Iterable[str]) -> str:
    return " ".join(sorted(scopes))


def is_gmail(scope: str) -> bool:
    return scope == GMAIL_FULL or scope.startswith(AUTH_PREFIX + "gmail.")


def valid_pkce_value(value: str) -> bool:
    return bool(_PKCE_CHARS.match(value))


def pkce_matches(challenge: str, method: str, verifier: str) -> bool:
    if method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    else:
        computed = verifier
    return hmac.compare_digest(computed, challenge)


# -- settings ------------------------------------------------------------------------------


@dataclass
class OAuthSettings(Knobs):
    """Behaviour knobs; each is also read from ``SANDBOX_GOOGLE_<NAME>`` at startup."""

    PARSERS: ClassVar[dict[str, Parser]] = {
        "expires_in": int_at_least(1),
        "code_ttl_seconds": seconds,
        "testing_mode": flag,
        "refresh_token_cap": int_at_least(1),
        "idle_expiry_seconds": seconds,
        "revoke_delay_seconds": seconds,
        "redirect_uris": strings,
        "restricted_scopes": string_set,
    }
    ENV_PREFIX: ClassVar[str] = "SANDBOX_GOOGLE_"

    expires_in: int = 3599
    # Google documents no code lifetime; ten minutes is the common observation.
    code_ttl_seconds: float = 600.0
    # App in "Testing" status with an external user type: 7-day refresh tokens (§4.2).
    testing_mode: bool = False
    refresh_token_cap: int = 100
    idle_expiry_seconds: float = SIX_MONTHS
    revoke_delay_seconds: float = 0.0
    # Empty: any absolute http(s) URI is accepted (the dev stack's ports are dynamic);
    # the exchange still requires the very URI the code was issued for.
    redirect_uris: tuple[str, ...] = ()
    # Scopes an admin marked Restricted: refreshing such a grant fails (§4.2).
    restricted_scopes: frozenset[str] = frozenset()


@dataclass
class AuthorizeMode:
    """What the emulated user does on the consent screen."""

    approve: bool = True
    # Granular consent: the subset the user ticks; None grants everything requested.
    scopes: frozenset[str] | None = None
    # Time-limited access: the refresh token dies after this many seconds (§4.1).
    refresh_token_expires_in: int | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> AuthorizeMode:
        unknown = set(body) - {"mode", "scopes", "refresh_token_expires_in"}
        if unknown:
            raise ValueError(f"unknown fields: {sorted(unknown)}")
        mode = body.get("mode", "approve")
        if mode not in ("approve", "deny"):
            raise ValueError("mode must be 'approve' or 'deny'")
        raw_scopes = body.get("scopes")
        scopes: frozenset[str] | None = None
        if raw_scopes is not None:
            if not isinstance(raw_scopes, list) or not all(isinstance(s, str) for s in raw_scopes):
                raise ValueError("scopes must be a list of strings")
            scopes = frozenset(normalize_scope(s) for s in raw_scopes)
        limit = body.get("refresh_token_expires_in")
        return cls(
            approve=mode == "approve",
            scopes=scopes,
            refresh_token_expires_in=None if limit is None else int_at_least(1)(limit),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": "approve" if self.approve else "deny",
            "scopes": None if self.scopes is None else sorted(self.scopes),
            "refresh_token_expires_in": self.refresh_token_expires_in,
        }


# -- codes and refresh tokens ----------------------------------------------------------------


@dataclass
class AuthCode:
    code: str
    account_id: str
    client_id: str
    redirect_uri: str
    scopes: frozenset[str]
    with_refresh: bool
    expires_at: float
    challenge: str | None = None
    challenge_method: str = "plain"
    refresh_token_expires_in: int | None = None


@dataclass
class RefreshRecord:
    """What Google knows about a refresh token beyond its grant: when it was minted and
    used, and whether a death rule of §4.2 has caught up with it."""

    token: str
    account_id: str
    client_id: str
    scopes: frozenset[str]
    issued_at: float
    last_used_at: float
    expires_at: float | None = None
    dead_at: float | None = None

    def death(self, now: float, settings: OAuthSettings) -> str | None:
        if self.dead_at is not None and self.dead_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "time_limit"
        if (
            settings.testing_mode
            and not self.scopes <= BASIC_SCOPES
            and now >= self.issued_at + TESTING_LIFETIME
        ):
            return "testing_mode"
        if now - self.last_used_at >= settings.idle_expiry_seconds:
            return "unused"
        return None


Pair = tuple[str, str]  # (account id, client id)


@dataclass
class OAuthState:
    settings: OAuthSettings
    mode: AuthorizeMode = field(default_factory=AuthorizeMode)
    codes: dict[str, AuthCode] = field(default_factory=dict)
    spent_codes: set[str] = field(default_factory=set)
    consent: dict[Pair, frozenset[str]] = field(default_factory=dict)
    records: dict[str, RefreshRecord] = field(default_factory=dict)
    # Insertion-ordered per account and client, oldest first, for the live-token cap.
    by_pair: dict[Pair, dict[str, None]] = field(default_factory=dict)

    def add_record(self, record: RefreshRecord) -> list[RefreshRecord]:
        """Register a new refresh token; returns the ones the cap evicts (oldest first)."""
        self.records[record.token] = record
        live = self.by_pair.setdefault((record.account_id, record.client_id), {})
        live[record.token] = None
        evicted: list[RefreshRecord] = []
        while len(live) > self.settings.refresh_token_cap:
            oldest = next(iter(live))
            evicted.append(self.drop(oldest))
        return evicted

    def drop(self, token: str) -> RefreshRecord:
        record = self.records.pop(token)
        live = self.by_pair.get((record.account_id, record.client_id))
        if live is not None:
            live.pop(token, None)
        return record

    def pair_records(self, account_id: str, client_id: str | None) -> list[RefreshRecord]:
        pairs = [
            pair
            for pair in self.by_pair
            if pair[0] == account_id and (client_id is None or pair[1] == client_id)
        ]
        return [self.records[token] for pair in pairs for token in self.by_pair[pair]]
