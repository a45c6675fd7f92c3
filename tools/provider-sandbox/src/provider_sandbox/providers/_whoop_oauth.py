"""WHOOP OAuth 2.0 (PROVIDERS.md §7.1, §7.5): authorize with auto-approval, code exchange,
and refresh that always rotates, killing the previous refresh token and every access token
issued before it. WHOOP runs ORY Hydra, so errors follow its RFC 6749 bodies."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from provider_sandbox.config import AppCredentials
from provider_sandbox.core import Grant, Sandbox, read_params
from provider_sandbox.providers._whoop_settings import WhoopSettings

PROVIDER = "whoop"
ACCESS_TTL = 3600
CODE_TTL = 600
MIN_STATE_LENGTH = 8
READ_SCOPES = (
    "read:recovery",
    "read:cycles",
    "read:workout",
    "read:sleep",
    "read:profile",
    "read:body_measurement",
)
SCOPES = frozenset({*READ_SCOPES, "offline"})
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}

# RFC 6749 §4.1.2.1 / §5.2 wording, as Hydra (fosite) sends it.
DESCRIPTIONS = {
    "invalid_request": "The request is missing a required parameter, includes an invalid "
    "parameter value, includes a parameter more than once, or is otherwise malformed.",
    "invalid_client": "Client authentication failed (e.g., unknown client, no client "
    "authentication included, or unsupported authentication method).",
    "invalid_grant": "The provided authorization grant (e.g., authorization code, resource "
    "owner credentials) or refresh token is invalid, expired, revoked, does not match the "
    "redirection URI used in the authorization request, or was issued to another client.",
    "unsupported_grant_type": "The authorization grant type is not supported by the "
    "authorization server.",
    "invalid_scope": "The requested scope is invalid, unknown, or malformed.",
    "unsupported_response_type": "The authorization server does not support obtaining a "
    "token using this method.",
    "access_denied": "The resource owner or authorization server denied the request.",
    "invalid_state": "The state is missing or does not have enough characters and is "
    "therefore considered too weak.",
    "server_error": "The authorization server encountered an unexpected condition that "
    "prevented it from fulfilling the request.",
    "temporarily_unavailable": "The authorization server is currently unable to handle the "
    "request due to a temporary overloading or maintenance of the server.",
    "request_unauthorized": "The request could not be authorized.",
}
_ERROR_FOR_STATUS = {
    400: "invalid_request",
    401: "request_unauthorized",
    429: "temporarily_unavailable",
    503: "temporarily_unavailable",
}


def oauth_error(error: str, status: int = 400, hint: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": error, "error_description": DESCRIPTIONS[error]}
    if hint:
        body["error_hint"] = hint
    return web.json_response(
        body, status=status, headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


class OAuthErrors:
    """Injected faults on the OAuth endpoints answer in Hydra's shape."""

    def error_response(self, status: int) -> web.Response:
        error = _ERROR_FOR_STATUS.get(
            status, "server_error" if status >= 500 else "invalid_request"
        )
        return oauth_error(error, status)


@dataclass
class AuthorizeMode:
    approve: bool = True
    # None: grant what was asked; else grant only the asked scopes that are listed here.
    scopes: frozenset[str] | None = None


@dataclass
class Code:
    account_id: str
    client_id: str
    redirect_uri: str
    scopes: frozenset[str]
    expires_at: float
    used: bool = False
    family: int | None = None


@dataclass
class OAuthState:
    codes: dict[str, Code] = field(default_factory=dict)
    # Refresh token → its token family; family → the access tokens issued in it.
    family_of: dict[str, int] = field(default_factory=dict)
    family_access: dict[int, list[str]] = field(default_factory=dict)
    next_family: int = 0
    # Users who authorized the app and have not revoked it: they get webhooks (§7.4).
    connected: set[str] = field(default_factory=set)
    mode: AuthorizeMode = field(default_factory=AuthorizeMode)


class WhoopOAuth:
    def __init__(self, sandbox: Sandbox, app: AppCredentials, settings: WhoopSettings) -> None:
        self.sandbox = sandbox
        self.app = app
        self.settings = settings
        self.state = OAuthState()

    def reset(self) -> None:
        self.state = OAuthState()

    # -- tokens --------------------------------------------------------------------------

    def issue(
        self, account_id: str, scopes: frozenset[str], family: int | None = None
    ) -> dict[str, Any]:
        """Mint a token pair (a refresh token only with ``offline``) in a token family."""
        grant = self.sandbox.tokens.issue(
            PROVIDER,
            account_id,
            self.app.client_id,
            scopes,
            ACCESS_TTL,
            with_refresh="offline" in scopes,
        )
        if family is None:
            family = self.state.next_family = self.state.next_family + 1
        self.state.family_access[family] = [grant.access_token]
        if grant.refresh_token:
            self.state.family_of[grant.refresh_token] = family
        self.state.connected.add(account_id)
        return token_response(grant)

    def kill_family(self, family: int) -> None:
        tokens = self.sandbox.tokens
        for access_token in self.state.family_access.pop(family, []):
            grant = tokens.access.pop(access_token, None)
            if grant is None:
                continue
            grant.revoked = True
            if grant.refresh_token:
                tokens.refresh.pop(grant.refresh_token, None)
                self.state.family_of.pop(grant.refresh_token, None)

    def revoke_user(self, account_id: str) -> None:
        self.sandbox.tokens.revoke_account(PROVIDER, account_id, self.app.client_id)
        self.state.connected.discard(account_id)
        for code in self.state.codes.values():
            if code.account_id == account_id:
                code.used = True

    def is_connected(self, user_id: int) -> bool:
        return str(user_id) in self.state.connected

    # -- endpoints -----------------------------------------------------------------------

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        if query.get("client_id") != self.app.client_id:
            return oauth_error("invalid_client", 401, "The OAuth 2.0 client does not exist.")
        redirect_uri = query.get("redirect_uri", "")
        refusal = self._redirect_refusal(redirect_uri)
        if refusal:
            return oauth_error("invalid_request", 400, refusal)
        state = query.get("state", "")

        def back(params: dict[str, str]) -> web.StreamResponse:
            if state:
                params["state"] = state
            return web.Response(status=302, headers={"Location": _with_query(redirect_uri, params)})

        def fail(error: str, hint: str) -> web.StreamResponse:
            return back(
                {"error": error, "error_description": DESCRIPTIONS[error], "error_hint": hint}
            )

        if query.get("response_type") != "code":
            return fail("unsupported_response_type", "Only response_type=code is supported.")
        requested = query.get("scope", "").split()
        unknown = [s for s in requested if s not in SCOPES]
        if unknown:
            return fail("invalid_scope", f"Scope '{unknown[0]}' is not a WHOOP scope.")
        if len(state) < MIN_STATE_LENGTH:
            return fail(
                "invalid_state",
                f"Request parameter 'state' must be at least be {MIN_STATE_LENGTH} characters long "
                "to ensure sufficient entropy.",
            )
        mode = self.state.mode
        if not mode.approve:
            return fail("access_denied", "The user denied the request.")
        granted = frozenset(requested)
        if mode.scopes is not None:
            granted = granted & mode.scopes
        account = self.sandbox.accounts.get_or_create(PROVIDER, query.get("login_hint") or None)
        code = self.sandbox.tokens.new_secret(43)
        self.state.codes[code] = Code(
            account.id,
            self.app.client_id,
            redirect_uri,
            granted,
            self.sandbox.clock.time() + CODE_TTL,
        )
        return back({"code": code, "scope": " ".join(sorted(granted))})

    async def token(self, request: web.Request) -> web.Response:
        params = await read_params(request)
        client_id, secret = _client_credentials(request, params)
        if client_id != self.app.client_id or not hmac.compare_digest(
            secret.encode(), self.app.client_secret.encode()
        ):
            return oauth_error("invalid_client", 401)
        grant_type = params.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange(params)
        if grant_type == "refresh_token":
            return self._refresh(params)
        if not grant_type:
            return oauth_error("invalid_request", hint="The parameter 'grant_type' is missing.")
        return oauth_error("unsupported_grant_type")

    def _exchange(self, params: dict[str, str]) -> web.Response:
        code = self.state.codes.get(params.get("code", ""))
        if code is None or code.expires_at <= self.sandbox.clock.time():
            return oauth_error("invalid_grant")
        if code.used:
            # RFC 6749 §4.1.2: a replayed code revokes what it issued.
            if code.family is not None:
                self.kill_family(code.family)
            return oauth_error("invalid_grant")
        if params.get("redirect_uri", code.redirect_uri) != code.redirect_uri:
            return oauth_error("invalid_grant")
        code.used = True
        self.state.next_family += 1
        code.family = self.state.next_family
        return _no_store(self.issue(code.account_id, code.scopes, code.family))

    def _refresh(self, params: dict[str, str]) -> web.Response:
        presented = params.get("refresh_token", "")
        grant: Grant | None = self.sandbox.tokens.refresh.get(presented)
        if (
            grant is None
            or grant.provider != PROVIDER
            or grant.revoked
            or grant.client_id != self.app.client_id
        ):
            return oauth_error("invalid_grant")
        asked = set(params.get("scope", "").split())
        if not asked <= grant.scopes:
            return oauth_error("invalid_scope")
        # Synchronous from lookup to rotation: of two racing refreshes the first wins and the
        # second finds its token gone (§7.1).
        family = self.state.family_of.pop(presented, None)
        self.sandbox.tokens.refresh.pop(presented, None)
        self.sandbox.tokens.access.pop(grant.access_token, None)
        grant.revoked = True
        if family is None:
            self.state.next_family += 1
            family = self.state.next_family
        else:
            self.kill_family(family)
        self.sandbox.stats.refreshes[PROVIDER] += 1
        return _no_store(self.issue(grant.account_id, grant.scopes, family))

    def _redirect_refusal(self, uri: str) -> str | None:
        if not uri:
            return "The 'redirect_uri' parameter is missing."
        registered = self.settings.redirect_uris
        if registered and uri not in registered:
            return "The 'redirect_uri' parameter does not match any of the registered URLs."
        parts = urlsplit(uri)
        if parts.scheme in ("https", "whoop") and (parts.netloc or parts.scheme == "whoop"):
            return None
        # The sandbox's one exception to WHOOP's https/whoop rule: the local dev stack.
        if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
            return None
        return "Redirect URLs must use https:// or whoop://."


def token_response(grant: Grant) -> dict[str, Any]:
    body: dict[str, Any] = {"access_token": grant.access_token, "expires_in": ACCESS_TTL}
    if grant.refresh_token:
        body["refresh_token"] = grant.refresh_token
    body["scope"] = " ".join(sorted(grant.scopes))
    body["token_type"] = "bearer"
    return body


def _no_store(body: dict[str, Any]) -> web.Response:
    return web.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _client_credentials(request: web.Request, params: dict[str, str]) -> tuple[str, str]:
    """client_secret_post or client_secret_basic, whichever the client used."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        client_id, _, secret = decoded.partition(":")
        return client_id, secret
    return params.get("client_id", ""), params.get("client_secret", "")


def _with_query(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))
