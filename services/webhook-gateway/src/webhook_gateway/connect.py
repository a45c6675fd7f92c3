"""OAuth connect redirects: /connect/{provider}/start and /callback (issue 4).

start (an authenticated app user) → 302 to the provider with a sealed ``state``
(:mod:`webhook_gateway.state`) → the provider sends the browser to callback → token-service
exchanges the code (``token.exchange``; it stores the connection and publishes
``connection.connected.<provider>``) → 302 to ``return_to`` with the outcome:
``?connect=success&provider=...`` or ``?connect=error&provider=...&reason=...``.
Nothing is stored on any failure: token-service is asked only once the state is genuine
and unexpired, the provider approved, and every required scope was granted.

Only a state that fails authentication answers here (400) instead of redirecting: its
return_to cannot be trusted, so sending the browser there would be an open redirect.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from syncplane_common import rpc, subjects
from syncplane_common.contracts import ProviderName, TokenExchange, TokenExchangeReply
from syncplane_common.errors import (
    PermanentError,
    ReauthRequiredError,
    RetryableError,
    SyncplaneError,
)

from webhook_gateway._connect_providers import (
    PROVIDERS,
    Origin,
    ProviderAuth,
    granted_scopes,
    outcome_url,
    parse_allowlist,
    return_to_allowed,
)
from webhook_gateway.context import Gateway
from webhook_gateway.responses import error_response
from webhook_gateway.routes import Call, Reply, Route, register
from webhook_gateway.state import (
    ConnectState,
    StateExpired,
    StateInvalid,
    code_challenge,
    derive_key,
    new_code_verifier,
    new_nonce,
    seal,
    unseal,
)

log = logging.getLogger(__name__)

STATE_KEY = web.AppKey("oauth_state_key", bytes)
ALLOWLIST = web.AppKey("connect_allowlist", tuple[Origin, ...])

# A provider's own error code is passed on as the reason when it looks like one.
_REASON = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class ProviderPath(BaseModel):
    provider: ProviderName


class StartQuery(BaseModel):
    user_id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="The user to connect; defaults to the token's subject.",
    )
    return_to: str = Field(
        max_length=2048,
        description="Where the browser goes back with the outcome; must match "
        "CONNECT_RETURN_TO_ALLOWLIST.",
    )
    login_hint: str | None = Field(
        None, max_length=320, description="Passed to the provider's authorize URL."
    )


class CallbackQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    state: str | None = Field(None, max_length=8192)
    code: str | None = Field(None, max_length=4096)
    scope: str | None = Field(None, max_length=4096)
    error: str | None = Field(None, max_length=200)


class AuthorizeUrl(BaseModel):
    authorize_url: str


def redirect_uri(gateway: Gateway, provider: str) -> str:
    return f"{gateway.settings.public_base_url.rstrip('/')}/connect/{provider}/callback"


def _found(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})


# -- start ---------------------------------------------------------------------------------


async def connect_start(call: Call) -> web.StreamResponse:
    # The JWT may come as ?access_token= because a browser following a link cannot set
    # an Authorization header. The cost: a token in a URL can land in browser history
    # and in proxies' access logs (our own access log is off), so apps should mint a
    # short-lived token for this hop. The header is accepted too, for backends that
    # fetch the authorize URL (Accept: application/json) and hand it to the browser.
    provider = PROVIDERS[call.path(ProviderPath).provider]
    query = call.query(StartQuery)
    gateway, principal = call.gateway, call.principal
    assert principal is not None
    user_id = query.user_id or principal.subject  # another user's id needs admin: routes.py
    allowlist = call.request.app[ALLOWLIST]
    if not return_to_allowed(query.return_to, allowlist):
        return error_response(400, "bad_request", "return_to is not in CONNECT_RETURN_TO_ALLOWLIST")
    if not provider.client_id(gateway.settings):
        return error_response(
            503, "unavailable", f"{provider.name} is not configured ({provider.client_setting})"
        )
    verifier = new_code_verifier() if provider.pkce else None
    now = call.clock.now()
    state = ConnectState(
        user_id=user_id,
        provider=provider.name,
        return_to=query.return_to,
        expires_at=int(now.timestamp()) + gateway.settings.oauth_state_ttl_seconds,
        nonce=new_nonce(),
        code_verifier=verifier,
        scopes=provider.scopes,
    )
    location = provider.authorize_redirect(
        gateway.settings,
        redirect_uri=redirect_uri(gateway, provider.name),
        state=seal(state, call.request.app[STATE_KEY]),
        challenge=None if verifier is None else code_challenge(verifier),
        login_hint=query.login_hint,
    )
    if _wants_json(call.request):
        return web.json_response(
            AuthorizeUrl(authorize_url=location).model_dump(),
            headers={"Cache-Control": "no-store"},
        )
    return _found(location)


def _wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


# -- callback ------------------------------------------------------------------------------


async def connect_callback(call: Call) -> web.StreamResponse:
    provider = PROVIDERS[call.path(ProviderPath).provider]
    query = call.query(CallbackQuery)
    try:
        state = unseal(
            query.state or "", call.request.app[STATE_KEY], provider.name, call.clock.now()
        )
    except StateExpired as expired:
        return _outcome(expired.state, "state_expired")
    except StateInvalid as err:
        log.info("connect callback for %s with an invalid state: %s", provider.name, err)
        return error_response(
            400, "state_invalid", "the state parameter is not one this gateway issued"
        )
    if query.error is not None:
        reason = query.error if _REASON.match(query.error) else "provider_error"
        return _outcome(state, reason)
    if not query.code:
        return _outcome(state, "code_invalid")
    scopes = state.scopes
    if query.scope is not None:
        scopes = granted_scopes(query.scope)
        missing = provider.missing(scopes)
        if missing:
            log.info("connect %s: scopes not granted: %s", provider.name, missing)
            return _outcome(state, "insufficient_scope")
    return _outcome(state, await _exchange(call.gateway, provider, state, query.code, scopes))


async def _exchange(
    gateway: Gateway,
    provider: ProviderAuth,
    state: ConnectState,
    code: str,
    scopes: tuple[str, ...],
) -> str | None:
    """None when the connection is stored, else the reason for return_to.

    ``requested_scopes`` carries what the provider's callback says was granted (what we
    asked when it says nothing): token-service checks the token answer grants at least
    that, and stores it as the granted scopes where the answer lists none (Strava).
    """
    ask = TokenExchange(
        user_id=state.user_id,
        provider=provider.name,
        code=code,
        redirect_uri=redirect_uri(gateway, provider.name),
        requested_scopes=scopes,
        code_verifier=state.code_verifier,
        state_nonce=state.nonce,
    )
    try:
        await rpc.request(
            gateway.broker,
            subjects.TOKEN_EXCHANGE,
            ask,
            TokenExchangeReply,
            wait=gateway.settings.request_timeout_seconds,
        )
    except RetryableError:
        return "unavailable"
    except PermanentError as err:
        # token-service answers a reused state nonce with "conflict" (a replayed
        # callback); anything else permanent means the provider refused the code.
        return "state_invalid" if err.details.get("code") == "conflict" else "code_invalid"
    except ReauthRequiredError:
        return "code_invalid"
    except SyncplaneError:
        return "unavailable"
    except Exception as err:
        # NATS itself (disconnected, draining): the user can simply try again.
        log.warning("token.exchange failed: %s: %s", type(err).__name__, err)
        return "unavailable"
    return None


def _outcome(state: ConnectState, reason: str | None) -> web.Response:
    return _found(outcome_url(state.return_to, state.provider, reason))


# -- the table -----------------------------------------------------------------------------

ROUTES = (
    Route(
        "GET",
        "/connect/{provider}/start",
        connect_start,
        "Send the user to the provider to grant access",
        access="user",
        tag="connect",
        path_model=ProviderPath,
        query_model=StartQuery,
        token_in_query=True,
        description="302 to the provider's authorize URL with a sealed, expiring `state` "
        "(PKCE S256 for Google). With `Accept: application/json` the URL is returned "
        "instead. The user id defaults to the token's subject; another user's needs admin.",
        replies=(
            Reply(302, "Redirect to the provider's authorize URL", headers={"Location": "URL"}),
            Reply(200, "The authorize URL (Accept: application/json)", AuthorizeUrl),
        ),
    ),
    Route(
        "GET",
        "/connect/{provider}/callback",
        connect_callback,
        "The provider's redirect back: exchange the code, then return to the app",
        access="public",
        tag="connect",
        path_model=ProviderPath,
        query_model=CallbackQuery,
        subject=subjects.TOKEN_EXCHANGE,
        description="302 to `return_to` with `connect=success&provider=...`, or "
        "`connect=error&provider=...&reason=access_denied|insufficient_scope|state_expired|"
        "state_invalid|code_invalid|unavailable|<provider error>`. A state this gateway did "
        "not issue answers 400 (`state_invalid`): its return_to is not trusted.",
        replies=(
            Reply(302, "Redirect to return_to with the outcome", headers={"Location": "URL"}),
        ),
    ),
)


def setup(gateway: Gateway) -> None:
    app = gateway.app
    app[STATE_KEY] = derive_key(gateway.settings.oauth_state_secret)
    app[ALLOWLIST] = parse_allowlist(gateway.settings.connect_return_to_allowlist)
    register(app, ROUTES)
