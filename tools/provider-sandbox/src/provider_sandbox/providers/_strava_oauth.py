"""Strava OAuth (PROVIDERS.md §3.1): authorize (web and mobile), code exchange, refresh
with Strava's keep-if-more-than-an-hour-left rule and optional rotation, deauthorize."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from yarl import URL

from provider_sandbox.config import AppCredentials
from provider_sandbox.core import Account, Grant, Sandbox, bearer_token, read_params
from provider_sandbox.providers._strava_common import (
    API_PREFIX,
    OAUTH_ROOT,
    PROVIDER,
    SCOPES,
    Settings,
    StravaErrors,
    authorization_error,
    bad_request,
)
from provider_sandbox.providers._strava_render import iso_z
from provider_sandbox.providers._strava_webhooks import Webhooks

ACCESS_TTL = 21_600
KEEP_IF_MORE_THAN = 3_600
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1"})

_FIRST = ("Marianne", "Kilian", "Courtney", "Eliud", "Tadej", "Annemiek", "Jakob", "Sifan")
_LAST = ("Vos", "Jornet", "Dauwalter", "Kipchoge", "Pogacar", "van Vleuten", "Ingebrigtsen")
_HOMES = (
    ("San Francisco", "California", "United States"),
    ("Boulder", "Colorado", "United States"),
    ("London", "England", "United Kingdom"),
    ("Berlin", "Berlin", "Germany"),
)


@dataclass
class Code:
    athlete_id: str
    client_id: str
    scopes: frozenset[str]
    expires_at: float


def athlete_summary(account: Account, now: float) -> dict[str, Any]:
    """SummaryAthlete (resource_state 2), stable per athlete id."""
    n = int(account.id)
    city, state, country = _HOMES[n % len(_HOMES)]
    created = int(now) - 86_400 * (400 + n % 2000)
    return {
        "id": n,
        "username": account.login_hint or f"athlete{n}",
        "resource_state": 2,
        "firstname": _FIRST[n % len(_FIRST)],
        "lastname": _LAST[(n // 7) % len(_LAST)],
        "bio": None,
        "city": city,
        "state": state,
        "country": country,
        "sex": "F" if n % 2 else "M",
        "premium": n % 3 == 0,
        "summit": n % 3 == 0,
        "created_at": iso_z(created),
        "updated_at": iso_z(int(now)),
        "badge_type_id": 0,
        "weight": float(55 + n % 30),
        "profile_medium": "avatar/athlete/medium.png",
        "profile": "avatar/athlete/large.png",
        "friend": None,
        "follower": None,
    }


class OAuth:
    def __init__(
        self, sandbox: Sandbox, app: AppCredentials, settings: Settings, webhooks: Webhooks
    ) -> None:
        self.sandbox = sandbox
        self.app = app
        self.settings = settings
        self.webhooks = webhooks
        self.codes: dict[str, Code] = {}
        # athlete id -> scopes of the app's current authorization (events need them)
        self.authorizations: dict[str, frozenset[str]] = {}

    def reset(self) -> None:
        self.codes.clear()
        self.authorizations.clear()

    def register(self, app: web.Application) -> None:
        errors = StravaErrors()
        for method, template, handler in (
            ("GET", "/oauth/authorize", self.authorize),
            ("GET", "/oauth/mobile/authorize", self.authorize),
            ("POST", "/oauth/token", self.token),
            ("POST", "/oauth/deauthorize", self.deauthorize),
        ):
            self.sandbox.route(app, PROVIDER, OAUTH_ROOT, method, template, handler, errors)
        # The docs' curl samples use /api/v3/oauth/token; both paths work on Strava, and
        # both count under the stats key "strava POST /oauth/token".
        self.sandbox.route(app, PROVIDER, API_PREFIX, "POST", "/oauth/token", self.token, errors)

    # -- authorize -------------------------------------------------------------------------

    def _redirect_allowed(self, redirect_uri: str) -> bool:
        try:
            url = URL(redirect_uri)
        except ValueError:
            return False
        host = (url.host or "").lower()
        if url.scheme not in ("http", "https") or not host:
            return False
        domain = self.settings.callback_domain
        return host in LOCAL_HOSTS or host == domain or host.endswith("." + domain)

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        if q.get("client_id") != self.app.client_id:
            return bad_request("Application", "client_id")
        redirect_uri = q.get("redirect_uri", "")
        if not self._redirect_allowed(redirect_uri):
            return bad_request("Application", "redirect_uri")
        if q.get("response_type") != "code":
            return bad_request("Application", "response_type")
        requested = [s for s in q.get("scope", "read").split(",") if s] or ["read"]
        if set(requested) - SCOPES:
            return bad_request("Application", "scope")
        state = q.get("state", "")
        target = URL(redirect_uri)
        decision = q.get("sandbox_decision", self.settings.authorize_mode)
        if decision == "deny":
            raise web.HTTPFound(target.update_query(state=state, error="access_denied"))
        allowed = self.settings.authorize_scopes
        if "sandbox_scopes" in q:
            allowed = frozenset(s for s in q["sandbox_scopes"].split(",") if s)
        # The athlete may untick boxes; "read" itself cannot be refused.
        granted = [s for s in requested if allowed is None or s in allowed or s == "read"]
        account = self.sandbox.accounts.get_or_create(PROVIDER, q.get("login_hint") or None)
        code = self.sandbox.tokens.new_secret(40)
        if len(self.codes) > 10_000:
            now = self.sandbox.clock.time()
            self.codes = {k: c for k, c in self.codes.items() if c.expires_at > now}
        self.codes[code] = Code(
            account.id,
            self.app.client_id,
            frozenset(granted),
            self.sandbox.clock.time() + self.settings.code_ttl_seconds,
        )
        raise web.HTTPFound(target.update_query(state=state, code=code, scope=",".join(granted)))

    # -- tokens ----------------------------------------------------------------------------

    def issue(self, account: Account, scopes: frozenset[str]) -> dict[str, Any]:
        """A fresh authorization, answered as the code exchange would answer it."""
        grant = self.sandbox.tokens.issue(
            PROVIDER, account.id, self.app.client_id, scopes, ACCESS_TTL
        )
        grant.expires_at = float(int(grant.expires_at))
        self.authorizations[account.id] = scopes
        body = self._token_body(grant)
        body["athlete"] = athlete_summary(account, self.sandbox.clock.time())
        return body

    def _token_body(self, grant: Grant) -> dict[str, Any]:
        now = int(self.sandbox.clock.time())
        return {
            "token_type": "Bearer",
            "expires_at": int(grant.expires_at),
            "expires_in": max(0, int(grant.expires_at) - now),
            "refresh_token": grant.refresh_token,
            "access_token": grant.access_token,
        }

    async def token(self, request: web.Request) -> web.StreamResponse:
        params = await read_params(request)
        if params.get("client_id") != self.app.client_id:
            return bad_request("Application", "client_id")
        if params.get("client_secret") != self.app.client_secret:
            return bad_request("Application", "client_secret")
        # Older Strava docs omit grant_type on the exchange; Strava still accepts that.
        grant_type = params.get("grant_type") or "authorization_code"
        if grant_type == "authorization_code":
            return self._exchange(params.get("code", ""))
        if grant_type == "refresh_token":
            return self._refresh(params.get("refresh_token", ""))
        return bad_request("Application", "grant_type")

    def _exchange(self, code: str) -> web.Response:
        entry = self.codes.pop(code, None)  # single use, even when it turns out expired
        if (
            entry is None
            or entry.client_id != self.app.client_id
            or entry.expires_at <= self.sandbox.clock.time()
        ):
            return bad_request("AuthorizationCode", "code")
        account = self.sandbox.accounts.get(PROVIDER, entry.athlete_id)
        if account is None:
            return bad_request("AuthorizationCode", "code")
        return web.json_response(self.issue(account, entry.scopes))

    def _rotate(self) -> bool:
        mode = self.settings.rotation
        if mode == "random":
            return self.sandbox.rng.random() < self.settings.rotation_probability
        return mode == "always"

    def _refresh(self, refresh_token: str) -> web.Response:
        tokens = self.sandbox.tokens
        grant = tokens.refresh.get(refresh_token) if refresh_token else None
        if (
            grant is None
            or grant.provider != PROVIDER
            or grant.client_id != self.app.client_id
            or grant.revoked
        ):
            return bad_request("RefreshToken", "refresh_token")
        now = self.sandbox.clock.time()
        rotate = self._rotate()
        new_refresh = tokens.new_secret() if rotate else refresh_token
        if rotate:
            # The replaced refresh token dies at once; the access tokens it produced live on.
            del tokens.refresh[refresh_token]
        if grant.expires_at - now > KEEP_IF_MORE_THAN:
            current = grant
            current.refresh_token = new_refresh
            tokens.refresh[new_refresh] = current
        else:
            current = tokens.issue(
                PROVIDER,
                grant.account_id,
                grant.client_id,
                grant.scopes,
                ACCESS_TTL,
                refresh_token=new_refresh,
            )
            current.expires_at = float(int(current.expires_at))
        self.sandbox.stats.refreshes[PROVIDER] += 1
        body = self._token_body(current)
        return web.json_response(
            {
                "token_type": body["token_type"],
                "access_token": body["access_token"],
                "expires_at": body["expires_at"],
                "expires_in": body["expires_in"],
                "refresh_token": body["refresh_token"],
            }
        )

    # -- deauthorize -----------------------------------------------------------------------

    def revoke(self, athlete_id: str, *, event: bool) -> int:
        """Kill every token of the athlete for this app; optionally tell the subscription."""
        was_authorized = self.authorizations.pop(athlete_id, None) is not None
        killed = self.sandbox.tokens.revoke_account(PROVIDER, athlete_id, self.app.client_id)
        if event and (was_authorized or killed):
            self.webhooks.emit_deauthorized(int(athlete_id))
        return killed

    async def deauthorize(self, request: web.Request) -> web.StreamResponse:
        params = await read_params(request)
        token = params.get("access_token") or bearer_token(request)
        grant = self.sandbox.tokens.valid_access(PROVIDER, token)
        if grant is None or token is None:
            return authorization_error()
        self.revoke(grant.account_id, event=self.settings.deauthorize_event)
        return web.json_response({"access_token": token})
