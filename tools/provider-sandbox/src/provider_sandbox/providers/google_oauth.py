"""Google OAuth 2.0 (PROVIDERS.md §4): authorize, token (code exchange and refresh), revoke,
their control routes, and ``google_grant``, which the Calendar and Fit APIs authenticate with."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from provider_sandbox.config import PREFIXES, SandboxConfig
from provider_sandbox.core import Grant, Sandbox, bearer_token, read_params
from provider_sandbox.providers._google_errors import (
    OAuthErrors,
    PageErrors,
    error_page,
    insufficient_scope,
    invalid_grant,
    oauth_error,
    unauthenticated,
)
from provider_sandbox.providers._google_oauth_control import OAuthControl
from provider_sandbox.providers._google_oauth_state import (
    AuthCode,
    OAuthSettings,
    OAuthState,
    RefreshRecord,
    parse_scopes,
    pkce_matches,
    scope_string,
    valid_pkce_value,
)

PROVIDER = "google"
AUTH_TEMPLATE = "/o/oauth2/v2/auth"


def google_grant(
    sandbox: Sandbox, request: web.Request, required_scopes: frozenset[str]
) -> Grant | web.Response:
    """Authenticate a googleapis.com request: the grant, or the error to answer with.

    A method lists the scopes that each permit it, so the grant needs at least one of
    ``required_scopes`` (an empty set skips the scope check). Missing, unknown, expired or
    revoked tokens get Google's 401 ``authError``; too narrow a grant gets 403
    ``insufficientPermissions``.
    """
    token = bearer_token(request) or request.query.get("access_token")
    if not token:
        return unauthenticated(missing=True)
    grant = sandbox.tokens.valid_access(PROVIDER, token)
    if grant is None:
        return unauthenticated()
    if required_scopes and grant.scopes.isdisjoint(required_scopes):
        return insufficient_scope(required_scopes)
    return grant


def _redirect(uri: str, params: dict[str, str]) -> web.Response:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    location = urlunsplit(parts._replace(query=urlencode(query)))
    return web.Response(status=302, headers={"Location": location})


def _absolute_http(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.fragment


class GoogleOAuth:
    name = PROVIDER

    def __init__(self, sandbox: Sandbox, config: SandboxConfig) -> None:
        self.sandbox = sandbox
        self.client = config.google
        self.initial_settings = OAuthSettings.from_env(config.extra)
        self.state = OAuthState(settings=replace(self.initial_settings))

    def reset(self) -> None:
        self.state = OAuthState(settings=replace(self.initial_settings))

    def setup(self, app: web.Application) -> None:
        app[GOOGLE_OAUTH_KEY] = self
        route = self.sandbox.route
        auth_prefix = PREFIXES["GOOGLE_AUTH_URL"].removesuffix(AUTH_TEMPLATE)
        route(app, PROVIDER, auth_prefix, "GET", AUTH_TEMPLATE, self.authorize, PageErrors())
        for setting, handler in (
            ("GOOGLE_TOKEN_URL", self.token),
            ("GOOGLE_REVOKE_URL", self.revoke),
        ):
            prefix, _, last = PREFIXES[setting].rpartition("/")
            template = "/" + last
            errors = OAuthErrors(self.sandbox, f"{PROVIDER} POST {template}")
            route(app, PROVIDER, prefix, "POST", template, handler, errors)
        OAuthControl(self).setup(app)

    @property
    def settings(self) -> OAuthSettings:
        return self.state.settings

    # -- issuing ----------------------------------------------------------------------------

    def issue(
        self,
        account_id: str,
        client_id: str,
        scopes: frozenset[str],
        *,
        with_refresh: bool,
        refresh_token_expires_in: int | None = None,
    ) -> dict[str, Any]:
        """Mint an access token (and a refresh token when asked): the token response body."""
        tokens = self.sandbox.tokens
        now = self.sandbox.clock.time()
        refresh = "1//0" + tokens.new_secret(60) if with_refresh else None
        grant = tokens.issue(
            PROVIDER,
            account_id,
            client_id,
            scopes,
            self.settings.expires_in,
            refresh_token=refresh,
            with_refresh=False,
        )
        body = self._access_body(grant)
        if refresh is not None:
            record = RefreshRecord(refresh, account_id, client_id, scopes, now, now)
            if refresh_token_expires_in is not None:
                record.expires_at = now + refresh_token_expires_in
                body["refresh_token_expires_in"] = refresh_token_expires_in
            for evicted in self.state.add_record(record):
                # The cap silently invalidates the oldest refresh token (§4.2).
                tokens.refresh.pop(evicted.token, None)
            body["refresh_token"] = refresh
        return body

    def mint(
        self,
        account_id: str,
        scopes: list[str],
        *,
        offline: bool = True,
        refresh_token_expires_in: int | None = None,
    ) -> dict[str, Any]:
        """Tokens for the registered client as if the user had just consented (seeding,
        benchmarks): the token response body."""
        granted, invalid = parse_scopes(" ".join(scopes))
        if invalid:
            raise ValueError(f"unknown scopes: {invalid}")
        pair = (account_id, self.client.client_id)
        self.state.consent[pair] = self.state.consent.get(pair, frozenset()) | granted
        return self.issue(
            account_id,
            self.client.client_id,
            granted,
            with_refresh=offline,
            refresh_token_expires_in=refresh_token_expires_in,
        )

    def _access_body(self, grant: Grant) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": grant.access_token,
            "expires_in": self.settings.expires_in,
            "scope": scope_string(grant.scopes),
            "token_type": "Bearer",
        }
        if "openid" in grant.scopes:
            body["id_token"] = self._id_token(grant)
        return body

    def _id_token(self, grant: Grant) -> str:
        """An ID token shaped like Google's (signature not verifiable: §4 needs none)."""
        now = int(self.sandbox.clock.time())
        account = self.sandbox.accounts.get(PROVIDER, grant.account_id)
        claims: dict[str, Any] = {
            "iss": "https://accounts.google.com",
            "azp": grant.client_id,
            "aud": grant.client_id,
            "sub": grant.account_id,
            "iat": now,
            "exp": now + 3600,
        }
        if account is not None and account.login_hint and "@" in account.login_hint:
            claims["email"] = account.login_hint
            claims["email_verified"] = True

        def part(data: dict[str, Any] | bytes) -> str:
            raw = data if isinstance(data, bytes) else json.dumps(data).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        signature = bytes(self.sandbox.rng.randrange(256) for _ in range(64))
        header = {"alg": "RS256", "kid": "sandbox", "typ": "JWT"}
        return ".".join((part(header), part(claims), part(signature)))

    def revoke_grants(self, account_id: str, client_id: str | None) -> int:
        """Kill every token of the account for the client (all clients when None) and
        forget its consent; honours the propagation delay (§4.3)."""
        for pair in [p for p in self.state.consent if p[0] == account_id]:
            if client_id is None or pair[1] == client_id:
                del self.state.consent[pair]
        records = self.state.pair_records(account_id, client_id)
        delay = self.settings.revoke_delay_seconds
        if delay <= 0:
            for record in records:
                self.state.drop(record.token)
            return self.sandbox.tokens.revoke_account(PROVIDER, account_id, client_id)
        dies_at = self.sandbox.clock.time() + delay
        for record in records:
            record.dead_at = dies_at if record.dead_at is None else min(record.dead_at, dies_at)
        killed = len(records)
        for grant in self.sandbox.tokens.access.values():
            if (
                grant.provider == PROVIDER
                and grant.account_id == account_id
                and (client_id is None or grant.client_id == client_id)
            ):
                grant.expires_at = min(grant.expires_at, dies_at)
                killed += 1
        return killed

    # -- GET /o/oauth2/v2/auth ----------------------------------------------------------------

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        client_id = q.get("client_id")
        if not client_id:
            return error_page(400, "invalid_request", "Missing required parameter: client_id")
        if client_id != self.client.client_id:
            return error_page(401, "invalid_client", "The OAuth client was not found.")
        redirect_uri = q.get("redirect_uri")
        if not redirect_uri:
            return error_page(400, "invalid_request", "Missing required parameter: redirect_uri")
        registered = self.settings.redirect_uris
        if (registered and redirect_uri not in registered) or not _absolute_http(redirect_uri):
            return error_page(
                400,
                "redirect_uri_mismatch",
                f"The redirect URI in the request, {redirect_uri}, does not match the ones "
                "authorized for the OAuth client.",
            )
        problem = self._check_authorize_params(q)
        if problem is not None:
            return problem
        requested, _ = parse_scopes(q["scope"])
        prompts = set(q.get("prompt", "").split())
        state = {"state": q["state"]} if "state" in q else {}

        mode = self.state.mode
        granted = requested if mode.scopes is None else requested & mode.scopes
        if not mode.approve or not granted:
            return _redirect(redirect_uri, {"error": "access_denied", **state})
        account = self.sandbox.accounts.get_or_create(PROVIDER, q.get("login_hint") or None)
        pair = (account.id, client_id)
        previous = self.state.consent.get(pair, frozenset())
        # Consent is shown on first consent, for scopes not yet granted, or when forced;
        # only then does an offline request get a refresh token (§4.1, §4.4).
        consent_shown = "consent" in prompts or not requested <= previous
        if "none" in prompts and consent_shown:
            return _redirect(redirect_uri, {"error": "consent_required", **state})
        self.state.consent[pair] = previous | granted
        if q.get("include_granted_scopes") == "true":
            granted = granted | previous
        code = "4/0" + self.sandbox.tokens.new_secret(72)
        self.state.codes[code] = AuthCode(
            code=code,
            account_id=account.id,
            client_id=client_id,
            redirect_uri=redirect_uri,
            scopes=granted,
            with_refresh=q.get("access_type") == "offline" and consent_shown,
            expires_at=self.sandbox.clock.time() + self.settings.code_ttl_seconds,
            challenge=q.get("code_challenge"),
            challenge_method=q.get("code_challenge_method", "plain"),
            refresh_token_expires_in=mode.refresh_token_expires_in,
        )
        return _redirect(
            redirect_uri,
            {
                **state,
                "code": code,
                "scope": scope_string(granted),
                "authuser": "0",
                "prompt": "consent" if consent_shown else "none",
            },
        )

    def _check_authorize_params(self, q: Mapping[str, str]) -> web.Response | None:
        response_type = q.get("response_type")
        if not response_type:
            return error_page(
                400, "invalid_request", "Required parameter is missing: response_type"
            )
        if response_type != "code":
            return error_page(
                400, "unsupported_response_type", f"Invalid response_type: {response_type}"
            )
        raw_scope = q.get("scope", "")
        requested, invalid = parse_scopes(raw_scope)
        if not raw_scope.strip():
            return error_page(400, "invalid_request", "Missing required parameter: scope")
        if invalid or not requested:
            return error_page(
                400, "invalid_scope", f"Some requested scopes were invalid. {{invalid={invalid}}}"
            )
        if q.get("access_type", "online") not in ("online", "offline"):
            return error_page(400, "invalid_request", f"Invalid access_type: {q['access_type']}")
        prompts = set(q.get("prompt", "").split())
        if not prompts <= {"none", "consent", "select_account"} or (
            "none" in prompts and len(prompts) > 1
        ):
            return error_page(400, "invalid_request", f"Invalid prompt: {q['prompt']}")
        if q.get("include_granted_scopes", "false") not in ("true", "false"):
            return error_page(400, "invalid_request", "Invalid include_granted_scopes")
        challenge = q.get("code_challenge")
        method = q.get("code_challenge_method")
        if method is not None and (challenge is None or method not in ("S256", "plain")):
            return error_page(400, "invalid_request", f"Invalid code_challenge_method: {method}")
        if challenge is not None and not valid_pkce_value(challenge):
            return error_page(400, "invalid_request", "Invalid code_challenge.")
        return None

    # -- POST /token --------------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.StreamResponse:
        params = await read_params(request)
        grant_type = params.get("grant_type", "")
        if grant_type not in ("authorization_code", "refresh_token"):
            return oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        client_id, secret = self._client_credentials(request, params)
        if not client_id:
            return oauth_error(
                400, "invalid_request", "Could not determine client ID from request."
            )
        if client_id != self.client.client_id:
            return oauth_error(401, "invalid_client", "The OAuth client was not found.")
        if not secret:
            return oauth_error(400, "invalid_request", "client_secret is missing.")
        if secret != self.client.client_secret:
            return oauth_error(401, "invalid_client", "Unauthorized")
        if grant_type == "authorization_code":
            return self._exchange(client_id, params)
        return self._refresh(client_id, params)

    @staticmethod
    def _client_credentials(
        request: web.Request, params: dict[str, str]
    ) -> tuple[str | None, str | None]:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic" and value:
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return None, None
            client_id, _, secret = decoded.partition(":")
            return client_id, secret
        return params.get("client_id"), params.get("client_secret")

    def _exchange(self, client_id: str, params: dict[str, str]) -> web.Response:
        code_value = params.get("code")
        if not code_value:
            return oauth_error(400, "invalid_request", "Missing required parameter: code")
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            return oauth_error(400, "invalid_request", "Missing parameter: redirect_uri")
        code = self.state.codes.get(code_value)
        now = self.sandbox.clock.time()
        if code is None or code.client_id != client_id:
            known = code is not None or code_value in self.state.spent_codes
            return invalid_grant("Bad Request" if known else "Malformed auth code.")
        if code.expires_at <= now:
            del self.state.codes[code_value]
            return invalid_grant("Bad Request")
        if code.redirect_uri != redirect_uri:
            return oauth_error(400, "redirect_uri_mismatch", "Bad Request")
        verifier = params.get("code_verifier")
        if code.challenge is not None:
            if not verifier:
                return invalid_grant("Missing code verifier.")
            if not valid_pkce_value(verifier) or not pkce_matches(
                code.challenge, code.challenge_method, verifier
            ):
                return invalid_grant("Invalid code verifier.")
        # Codes are single-use: a replay gets invalid_grant.
        del self.state.codes[code_value]
        self.state.spent_codes.add(code_value)
        body = self.issue(
            code.account_id,
            client_id,
            code.scopes,
            with_refresh=code.with_refresh,
            refresh_token_expires_in=code.refresh_token_expires_in if code.with_refresh else None,
        )
        return self._token_response(body)

    def _refresh(self, client_id: str, params: dict[str, str]) -> web.Response:
        token = params.get("refresh_token")
        if not token:
            return oauth_error(400, "invalid_request", "Missing required parameter: refresh_token")
        tokens = self.sandbox.tokens
        now = self.sandbox.clock.time()
        grant = tokens.refresh.get(token)
        record = self.state.records.get(token)
        if grant is None or grant.provider != PROVIDER or grant.revoked:
            if record is not None:
                self.state.drop(token)
            return invalid_grant()
        if record is None:
            # Minted straight into sandbox.tokens by another part (seeding): adopt it.
            record = RefreshRecord(token, grant.account_id, grant.client_id, grant.scopes, now, now)
            for evicted in self.state.add_record(record):
                tokens.refresh.pop(evicted.token, None)
        if record.client_id != client_id:
            return oauth_error(401, "unauthorized_client", "Unauthorized")
        if record.death(now, self.settings) is not None:
            self.state.drop(token)
            tokens.refresh.pop(token, None)
            return invalid_grant()
        if record.scopes & self.settings.restricted_scopes:
            return oauth_error(
                400, "admin_policy_enforced", "Access to a requested service is restricted."
            )
        scopes = record.scopes
        if params.get("scope"):
            narrowed, invalid = parse_scopes(params["scope"])
            if invalid or not narrowed or not narrowed <= record.scopes:
                return oauth_error(400, "invalid_scope", "Bad Request")
            scopes = narrowed
        fresh = tokens.issue(
            PROVIDER,
            record.account_id,
            client_id,
            scopes,
            self.settings.expires_in,
            refresh_token=token,
        )
        if record.dead_at is not None:
            fresh.expires_at = min(fresh.expires_at, record.dead_at)
        record.last_used_at = now
        self.sandbox.stats.refreshes[PROVIDER] += 1
        # Google never rotates refresh tokens: the response carries none (§4.1).
        body = self._access_body(fresh)
        if record.expires_at is not None:
            body["refresh_token_expires_in"] = max(0, round(record.expires_at - now))
        return self._token_response(body)

    @staticmethod
    def _token_response(body: dict[str, Any]) -> web.Response:
        return web.json_response(
            body,
            headers={"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate"},
        )

    # -- POST /revoke -------------------------------------------------------------------------

    async def revoke(self, request: web.Request) -> web.StreamResponse:
        params = await read_params(request)
        token = params.get("token")
        if not token:
            return oauth_error(400, "invalid_request", "Missing required parameter: token")
        tokens = self.sandbox.tokens
        grant = tokens.valid_access(PROVIDER, token)
        if grant is None:
            grant = tokens.refresh.get(token)
            record = self.state.records.get(token)
            now = self.sandbox.clock.time()
            if (
                grant is None
                or grant.provider != PROVIDER
                or grant.revoked
                or (record is not None and record.death(now, self.settings) is not None)
            ):
                return oauth_error(400, "invalid_token", "Token expired or revoked")
        self.revoke_grants(grant.account_id, grant.client_id)
        return web.json_response({})


GOOGLE_OAUTH_KEY = web.AppKey("google_oauth", GoogleOAuth)


def build(sandbox: Sandbox, config: SandboxConfig) -> GoogleOAuth:
    return GoogleOAuth(sandbox, config)
