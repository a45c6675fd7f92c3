"""The token-service's decisions, free of I/O: when to refresh, what a refresh keeps, how
a provider account is identified, what counts as a deauthorization.

ADR 0003 is the design; PROVIDERS.md §3.1 (Strava), §4 (Google), §7.1 (WHOOP) the
provider rules these functions encode.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Literal

from syncplane_common.errors import ReauthRequiredError, RevokedError

Status = Literal["active", "reauth_required", "revoked"]

# Used when a token response carries neither expires_in nor expires_at: the shortest
# lifetime any of our providers documents (Google, WHOOP: about an hour).
DEFAULT_LIFETIME = timedelta(seconds=3600)


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a provider's token endpoint answered, in provider-neutral terms."""

    access_token: str
    refresh_token: str | None
    expires_in: float | None = None
    expires_at_epoch: float | None = None
    scopes: tuple[str, ...] | None = None  # None: the provider does not report them
    account_id: str | None = None
    id_token: str | None = None

    def __repr__(self) -> str:
        # A grant may end up in a traceback or a debugger; never print the secrets.
        return f"TokenGrant(account_id={self.account_id!r}, scopes={self.scopes!r})"

    def expires_at(self, now: datetime) -> datetime:
        # Relative lifetimes first: they are immune to skew between our clock and theirs.
        if self.expires_in is not None:
            return now + timedelta(seconds=self.expires_in)
        if self.expires_at_epoch is not None:
            return datetime.fromtimestamp(self.expires_at_epoch, now.tzinfo)
        return now + DEFAULT_LIFETIME


def same_fingerprint(a: str, b: str) -> bool:
    return hmac.compare_digest(a.lower().encode(), b.lower().encode())


# -- just-in-time refresh ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Need:
    """What a caller of token.get asks for."""

    min_valid_seconds: int
    force_refresh: bool = False
    rejected_fingerprint: str | None = None
    # Keep-alive: refresh when the last refresh is older than this, whatever the expiry.
    refreshed_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    margin_seconds: int = 120
    cooldown_seconds: int = 30


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The stored state of a connection that a refresh decision looks at."""

    status: Status
    expires_at: datetime | None
    last_refreshed_at: datetime | None
    access_fingerprint: str | None


class Decision(Enum):
    SERVE = "serve"
    REFRESH = "refresh"


def decide(snap: Snapshot, need: Need, policy: Policy, now: datetime) -> Decision:
    """Serve the stored access token or refresh it; raises when there is nothing to serve.

    Run once without a lock and again after taking the connection's lock: whatever another
    replica did in between (refreshed, hit a refusal, revoked) shows up in ``snap``.
    """
    if snap.status == "revoked":
        raise RevokedError("the connection was revoked; the user must connect again")
    if snap.status == "reauth_required":
        raise ReauthRequiredError("the provider refused our credentials; the user must reconnect")
    if snap.expires_at is None or snap.access_fingerprint is None:
        return Decision.REFRESH
    if need.refreshed_before is not None:
        last = snap.last_refreshed_at
        return Decision.REFRESH if last is None or last < need.refreshed_before else Decision.SERVE
    if need.force_refresh:
        # A 401 names the token it refused: refresh only if that is still the stored one,
        # so fifty workers that saw one 401 cause one refresh, not fifty.
        if need.rejected_fingerprint is None:
            return Decision.REFRESH
        if same_fingerprint(need.rejected_fingerprint, snap.access_fingerprint):
            return Decision.REFRESH
        return Decision.SERVE
    remaining = (snap.expires_at - now).total_seconds()
    if remaining >= need.min_valid_seconds + policy.margin_seconds:
        return Decision.SERVE
    just_refreshed = (
        snap.last_refreshed_at is not None
        and (now - snap.last_refreshed_at).total_seconds() < policy.cooldown_seconds
    )
    if just_refreshed and remaining > policy.margin_seconds:
        # The provider just gave us this token; asking again returns the same one (Strava
        # keeps a token with over an hour left), so another call would only cost quota.
        return Decision.SERVE
    return Decision.REFRESH


def usable(snap: Snapshot, now: datetime) -> bool:
    """Whether the stored access token is still worth handing out at all."""
    return snap.expires_at is not None and snap.expires_at > now


def kept_refresh_token(stored: str | None, grant: TokenGrant) -> str | None:
    """A refresh response merged over the stored token: Google never sends a new refresh
    token, Strava sometimes, WHOOP always; a missing one must not erase ours (§4.5)."""
    return grant.refresh_token or stored


def keepalive_cutoff(now: datetime, idle_days: float) -> datetime | None:
    """Connections whose last use and last refresh are older than this get a keep-alive."""
    if idle_days <= 0:
        return None
    return now - timedelta(days=idle_days)


def should_touch(last_used_at: datetime | None, now: datetime, resolution_seconds: int) -> bool:
    return last_used_at is None or (now - last_used_at).total_seconds() >= resolution_seconds


# -- connect -------------------------------------------------------------------------------


def missing_scopes(requested: Iterable[str], granted: Iterable[str]) -> tuple[str, ...]:
    """Scopes asked for but not granted (users can untick boxes: Strava, Google)."""
    have = set(granted)
    return tuple(sorted({s for s in requested if s} - have))


def parse_scopes(raw: str | None) -> tuple[str, ...] | None:
    """A token response's ``scope``: space separated (Google, WHOOP); commas tolerated."""
    if raw is None:
        return None
    return tuple(sorted({s for s in raw.replace(",", " ").split() if s}))


def id_token_subject(id_token: str | None) -> str | None:
    """The ``sub`` claim of a Google ID token, without checking its signature.

    The signature is not verified on purpose: the token came to us directly from Google's
    token endpoint over TLS in exchange for our client secret, which OpenID Connect Core
    §3.1.3.7 accepts as proof of origin ("the TLS server validation MAY be used to
    validate the issuer in place of checking the token signature").
    """
    if not id_token:
        return None
    parts = id_token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return str(sub) if isinstance(sub, str | int) and str(sub) else None


def grant_family(provider: str) -> str:
    """Connections whose tokens come from one provider grant: Google Fit and Calendar
    share the Google account, and revoking at Google kills every token of the project."""
    return "google" if provider.startswith("google") else provider


# -- webhooks ------------------------------------------------------------------------------


def strava_deauthorized(attributes: Mapping[str, object]) -> bool:
    """Whether a Strava athlete event says the athlete revoked our app (§3.4, §3.6):
    ``updates.authorized`` is the string "false" on the wire; accept boolean false too."""
    updates = attributes.get("updates")
    if not isinstance(updates, Mapping) or "authorized" not in updates:
        return False
    value = updates["authorized"]
    if isinstance(value, bool):
        return value is False
    return isinstance(value, str) and value.strip().lower() == "false"
