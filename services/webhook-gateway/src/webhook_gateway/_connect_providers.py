"""What each provider's authorize redirect looks like, and which granted scopes suffice.

Pure: no I/O. PROVIDERS.md §3.1 (Strava), §4.1 (Google, for Fit and Calendar), §6.1
(Fit scopes), §7.1 (WHOOP).

- Strava: comma-separated scopes; no PKCE (undocumented, reported unsupported). We ask
  ``read,activity:read_all``; ``activity:read_all`` includes ``activity:read``, so either
  suffices, and an athlete who unticks activities leaves only ``read``: refused.
- Google: space-separated scopes plus ``openid`` (the account id comes from the ID
  token), ``access_type=offline`` (no refresh token otherwise) and ``prompt=consent``
  (Google returns a refresh token only when consent is shown, so a reconnect after a
  lost refresh token must force it); PKCE S256. Fit and Calendar are separate
  connections of one Google identity, each asking only its own product's scopes.
- WHOOP: space-separated; ``offline`` or no refresh token; state of 8+ characters (ours
  is hundreds). PKCE is not in WHOOP's documentation, so none is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from syncplane_common.contracts import ProviderName
from yarl import URL

from webhook_gateway.settings import GatewaySettings

# What sync-worker's reads need (§6.1): steps, calories, active minutes and sessions read
# under activity, distance under location (Google files distance with location data: an
# aggregate naming it without that scope is refused outright, 403 insufficientPermissions,
# which the sync rightly takes as reauth), heart rate under heart_rate, and sleep sessions
# are listed only with sleep. body is not read today (weight is not synced).
GOOGLE_FIT_READ = tuple(
    f"https://www.googleapis.com/auth/fitness.{kind}.read"
    for kind in ("activity", "body", "location", "sleep", "heart_rate")
)
GOOGLE_CALENDAR = "https://www.googleapis.com/auth/calendar"
WHOOP_REQUIRED = (
    "read:recovery",
    "read:cycles",
    "read:sleep",
    "read:workout",
    "offline",
    "read:profile",
)


@dataclass(frozen=True)
class ProviderAuth:
    name: ProviderName
    client_setting: str
    client_id: Callable[[GatewaySettings], str]
    authorize_url: Callable[[GatewaySettings], str]
    scopes: tuple[str, ...]
    # Every group must be met by at least one granted scope.
    required: tuple[frozenset[str], ...]
    separator: str
    pkce: bool
    extra: tuple[tuple[str, str], ...] = ()

    def missing(self, granted: Iterable[str]) -> list[str]:
        """Required scopes not granted (named by their first alternative)."""
        have = set(granted)
        return [sorted(group)[0] for group in self.required if not group & have]

    def authorize_redirect(
        self,
        settings: GatewaySettings,
        *,
        redirect_uri: str,
        state: str,
        challenge: str | None,
        login_hint: str | None,
    ) -> str:
        query: dict[str, str] = {
            "client_id": self.client_id(settings),
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": self.separator.join(self.scopes),
            "state": state,
            **dict(self.extra),
        }
        if challenge is not None:
            query["code_challenge"] = challenge
            query["code_challenge_method"] = "S256"
        if login_hint:
            query["login_hint"] = login_hint
        return str(URL(self.authorize_url(settings)).update_query(query))


def _google(name: ProviderName, product_scopes: tuple[str, ...]) -> ProviderAuth:
    return ProviderAuth(
        name=name,
        client_setting="GOOGLE_CLIENT_ID",
        client_id=lambda s: s.google_client_id,
        authorize_url=lambda s: s.google_auth_url,
        scopes=("openid", *product_scopes),
        required=tuple(frozenset({scope}) for scope in product_scopes),
        separator=" ",
        pkce=True,
        extra=(("access_type", "offline"), ("prompt", "consent")),
    )


PROVIDERS: dict[ProviderName, ProviderAuth] = {
    "strava": ProviderAuth(
        name="strava",
        client_setting="STRAVA_CLIENT_ID",
        client_id=lambda s: s.strava_client_id,
        authorize_url=lambda s: s.strava_oauth_base.rstrip("/") + "/authorize",
        scopes=("read", "activity:read_all"),
        required=(frozenset({"activity:read", "activity:read_all"}),),
        separator=",",
        pkce=False,
        extra=(("approval_prompt", "auto"),),
    ),
    "google_fit": _google("google_fit", GOOGLE_FIT_READ),
    "google_calendar": _google("google_calendar", (GOOGLE_CALENDAR,)),
    "whoop": ProviderAuth(
        name="whoop",
        client_setting="WHOOP_CLIENT_ID",
        client_id=lambda s: s.whoop_client_id,
        authorize_url=lambda s: s.whoop_oauth_base.rstrip("/") + "/auth",
        scopes=(*WHOOP_REQUIRED, "read:body_measurement"),
        required=tuple(frozenset({scope}) for scope in WHOOP_REQUIRED),
        separator=" ",
        pkce=False,
    ),
}


def granted_scopes(raw: str) -> tuple[str, ...]:
    """The ``scope`` a provider echoes on the callback: Strava separates with commas,
    Google and WHOOP with spaces."""
    return tuple(s for s in raw.replace(",", " ").split() if s)


# -- return_to -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int | None  # None: any port


def parse_allowlist(raw: str) -> tuple[Origin, ...]:
    origins = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        url = URL(entry)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"CONNECT_RETURN_TO_ALLOWLIST entry is not an origin: {entry!r}")
        origins.append(Origin(url.scheme, url.host.lower(), url.explicit_port))
    return tuple(origins)


MAX_RETURN_TO = 2048


def return_to_allowed(return_to: str, allowlist: tuple[Origin, ...]) -> bool:
    if not return_to or len(return_to) > MAX_RETURN_TO:
        return False
    try:
        url = URL(return_to)
    except ValueError:
        return False
    if not url.absolute or url.user is not None or url.password is not None or not url.host:
        return False
    host, port = url.host.lower(), url.port
    return any(
        o.scheme == url.scheme and o.host == host and (o.port is None or o.port == port)
        for o in allowlist
    )


def outcome_url(return_to: str, provider: str, reason: str | None) -> str:
    """``return_to`` with ``connect=success|error``, ``provider`` and, on error, ``reason``."""
    outcome = {"connect": "success" if reason is None else "error", "provider": provider}
    if reason is not None:
        outcome["reason"] = reason
    return str(URL(return_to).update_query(outcome))
