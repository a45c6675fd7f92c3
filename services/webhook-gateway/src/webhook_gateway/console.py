"""``/admin``: the operators' console (ARCHITECTURE §1 "ops"), server-rendered HTML.

Who gets in: an admin JWT (``syncplane token --user X --admin``), sent as a bearer header
or pasted once into the login form, which keeps it in an HttpOnly, SameSite=Strict cookie
scoped to ``/admin``. A token without the admin scope gets a 403 page; no token, the
form. Actions are POSTs; with the cookie they also need the page's CSRF token (an HMAC
of the cookie's token, so it needs no server state), with a bearer header they do not
(a browser never adds one by itself).

The page's sections are fetched in parallel, each within a second (:mod:`_console_data`);
sync progress then arrives over SSE (every user's ``sync.*`` events, from the same hub
as the app API's per-user stream) and JavaScript moves the session rows. Nothing is
loaded from anywhere but this gateway: the Content-Security-Policy says so.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from pathlib import Path
from typing import Literal

from aiohttp import web
from pydantic import ValidationError
from syncplane_common import bus, dlq, rpc, subjects
from syncplane_common.contracts import (
    BackgroundSyncRun,
    BackgroundSyncRunReply,
    ConnectionsList,
    ConnectionsListReply,
    ProviderName,
    SyncRequested,
)
from syncplane_common.errors import RetryableError, SyncplaneError

from webhook_gateway import _api_admin, _api_events, _console_data, _console_html
from webhook_gateway._api_models import Strict
from webhook_gateway.api import SYNC_MODE_HEADER
from webhook_gateway.auth import AuthError, Principal, authenticate, bearer_from_header
from webhook_gateway.context import Gateway
from webhook_gateway.routes import CLOCK, Call, Reply, Route, bus_errors, register

COOKIE = "syncplane_admin"
STATIC_DIR = Path(__file__).parent / "static"
STATIC = {name: (STATIC_DIR / name).read_bytes() for name in ("console.css", "console.js")}
CONTENT_TYPES = {"css": "text/css", "js": "text/javascript"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

SectionName = Literal[
    "connections",
    "budgets",
    "sessions",
    "failures",
    "dead_letters",
    "webhooks",
    "fit_runs",
    "channels",
]
ActionName = Literal["background-sync", "sync-user", "replay", "strava-subscription"]


class SectionPath(Strict):
    section: SectionName


class ActionPath(Strict):
    action: ActionName


class StaticPath(Strict):
    name: Literal["console.css", "console.js"]


# -- who is asking -------------------------------------------------------------------------


class _Denied(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=body, status=status, content_type="text/html", headers=SECURITY_HEADERS
    )


def csrf_token(gateway: Gateway, token: str) -> str:
    key = hashlib.sha256(b"syncplane-console-csrf\0" + gateway.settings.api_jwt_secret.encode())
    return hmac.new(key.digest(), token.encode(), hashlib.sha256).hexdigest()


def _admin(call: Call) -> tuple[Principal, str | None]:
    """The admin behind the request and, when it came by cookie, the CSRF token its forms
    must carry; raises :class:`_Denied` with the page to show instead."""
    request = call.request
    header = bearer_from_header(request.headers.get("Authorization"))
    token = header or request.cookies.get(COOKIE)
    if not token:
        raise _Denied(_html(_console_html.login_page()))
    try:
        principal = authenticate(token, call.gateway.settings, request.app[CLOCK].now())
    except AuthError as err:
        response = _html(_console_html.login_page(err.message), 401)
        response.del_cookie(COOKIE, path="/admin")
        raise _Denied(response) from err
    if not principal.admin:
        raise _Denied(_html(_console_html.forbidden_page(principal.subject), 403))
    return principal, None if header else csrf_token(call.gateway, token)


# -- pages ---------------------------------------------------------------------------------


async def console(call: Call) -> web.StreamResponse:
    try:
        principal, csrf = _admin(call)
    except _Denied as denied:
        return denied.response
    sections = await _console_data.load_all(call.gateway)
    page = _console_html.console_page(sections, call.clock.now(), csrf or "", principal.subject)
    return _html(page)


async def console_section(call: Call) -> web.StreamResponse:
    try:
        _, csrf = _admin(call)
    except _Denied as denied:
        return denied.response
    name = call.path(SectionPath).section
    section = await _console_data.load(call.gateway, name)
    return _html(_console_html.section_body(section, call.clock.now(), csrf or ""))


async def console_events(call: Call) -> web.StreamResponse:
    try:
        _admin(call)
    except _Denied as denied:
        return denied.response
    return await _api_events.stream_events(call.request, None)


async def console_static(call: Call) -> web.StreamResponse:
    name = call.path(StaticPath).name
    return web.Response(
        body=STATIC[name],
        content_type=CONTENT_TYPES[name.rsplit(".", 1)[1]],
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )


def _see_console() -> web.Response:
    return web.Response(status=303, headers={"Location": "/admin"})


async def console_login(call: Call) -> web.StreamResponse:
    form = await call.request.post()
    token = str(form.get("token", "")).strip()
    try:
        principal = authenticate(token, call.gateway.settings, call.clock.now())
    except AuthError as err:
        return _html(_console_html.login_page(err.message), 401)
    if not principal.admin:
        return _html(_console_html.forbidden_page(principal.subject), 403)
    response = _see_console()
    response.set_cookie(
        COOKIE,
        token,
        path="/admin",
        httponly=True,
        samesite="Strict",
        secure=call.gateway.settings.public_base_url.startswith("https://"),
    )
    return response


async def console_logout(call: Call) -> web.StreamResponse:
    # Signing out needs no CSRF check: the worst a forged one does is sign you out.
    response = _see_console()
    response.del_cookie(COOKIE, path="/admin")
    return response


# -- actions -------------------------------------------------------------------------------


class _Outcome(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _answer(call: Call, status: int, message: str, detail: object = None) -> web.Response:
    if "application/json" in call.request.headers.get("Accept", ""):
        body = {"ok": status < 400, "message": message, "detail": detail}
        return web.json_response(body, status=status, headers=SECURITY_HEADERS)
    return _html(_console_html.result_page(status < 400, message), status)


async def console_action(call: Call) -> web.StreamResponse:
    try:
        _, csrf = _admin(call)
    except _Denied as denied:
        return denied.response
    form = await call.request.post()
    fields = {k: str(v) for k, v in form.items()}
    if csrf is not None and not hmac.compare_digest(fields.get("csrf", ""), csrf):
        return _answer(call, 403, "The form is stale or forged (CSRF check); reload the page.")
    action = call.path(ActionPath).action
    try:
        message, detail = await ACTIONS[action](call, fields)
    except _Outcome as outcome:
        return _answer(call, outcome.status, outcome.message)
    except RetryableError as err:
        return _answer(call, 503, f"Not done: {err.message}")
    except SyncplaneError as err:
        return _answer(call, 400, f"Not done: {err.message}")
    return _answer(call, 200, message, detail)


async def _background_sync(call: Call, fields: dict[str, str]) -> tuple[str, object]:
    try:
        ask = BackgroundSyncRun(
            sync_type=fields.get("sync_type") or "quick",
            max_users=int(fields["max_users"]) if fields.get("max_users") else None,
        )
    except (ValueError, ValidationError) as err:
        raise _Outcome(400, f"Not done: {err}") from err
    with bus_errors(subjects.SYNC_BACKGROUND_RUN):
        reply = await rpc.request(
            call.gateway.broker,
            subjects.SYNC_BACKGROUND_RUN,
            ask,
            BackgroundSyncRunReply,
            wait=call.gateway.settings.request_timeout_seconds,
        )
    spread = ", ".join(f"{p} {n}" for p, n in sorted(reply.by_provider.items())) or "none due"
    return (
        f"Background sync ({ask.sync_type}) queued for {reply.queued} connections: {spread}.",
        reply.model_dump(mode="json", exclude={"error", "schema_version"}),
    )


async def _sync_user(call: Call, fields: dict[str, str]) -> tuple[str, object]:
    user_id = fields.get("user_id", "").strip()
    if not user_id or len(user_id) > 200:
        raise _Outcome(400, "Not done: give a user id.")
    provider = fields.get("provider", "")
    if provider and provider not in subjects.PROVIDERS:
        raise _Outcome(400, f"Not done: unknown provider {provider!r}.")
    gateway = call.gateway
    providers: list[ProviderName]
    if provider:
        providers = [provider]  # type: ignore[list-item]
    else:
        with bus_errors(subjects.CONNECTIONS_LIST):
            listed = await rpc.request(
                gateway.broker,
                subjects.CONNECTIONS_LIST,
                ConnectionsList(user_id=user_id),
                ConnectionsListReply,
                wait=gateway.settings.request_timeout_seconds,
            )
        providers = [c.provider for c in listed.connections if c.status == "active"]
        if not providers:
            raise _Outcome(404, f"Not done: {user_id} has no active connection.")
    queued = {}
    for name in providers:
        request_id = f"manual-{uuid.uuid4().hex}"
        command = SyncRequested(
            request_id=request_id,
            user_id=user_id,
            provider=name,
            kind="on_demand",
            requested_at=call.clock.now(),
            priority="interactive",
            mode="manual",
        )
        with bus_errors(command.subject):
            await bus.publish(
                gateway.broker,
                command.subject,
                command,
                msg_id=request_id,
                headers={SYNC_MODE_HEADER: "manual"},
                ack_timeout=gateway.settings.publish_timeout_seconds,
            )
        queued[name] = request_id
    return f"Sync queued for {user_id}: {', '.join(queued)}.", {"requests": queued}


async def _replay(call: Call, fields: dict[str, str]) -> tuple[str, object]:
    js = call.gateway.runtime.jetstream()
    with bus_errors("DLQ replay"):
        if fields.get("sequence"):
            try:
                sequence = int(fields["sequence"])
            except ValueError as err:
                raise _Outcome(400, "Not done: the sequence is not a number.") from err
            letter = await _api_admin._letter(js, sequence)
            if letter is None:
                raise _Outcome(404, f"Not done: no dead letter {sequence} (already replayed?).")
            letters = [letter]
        elif fields.get("all"):
            letters = await _api_admin._dead_letters(js, "dlq.>", 1000)
        else:
            raise _Outcome(400, "Not done: give a sequence, or all.")
        replayed = []
        for letter in letters:
            await dlq.replay(js, letter, now=call.clock.now())
            replayed.append(letter.sequence)
    subjects_ = sorted({letter.original_subject for letter in letters})
    return (
        f"Replayed {len(replayed)} dead letter(s) onto {', '.join(subjects_) or 'nothing'}.",
        {"replayed": replayed},
    )


async def _strava_subscription(call: Call, _: dict[str, str]) -> tuple[str, object]:
    if not call.gateway.settings.strava_webhook_verify_token:
        raise _Outcome(503, "Not done: STRAVA_WEBHOOK_VERIFY_TOKEN is not set on the gateway.")
    result = await _api_admin.ensure_strava_subscription(call.gateway)
    verb = "created" if result.created else "already in place"
    return f"Strava push subscription {result.subscription_id} {verb}.", result.model_dump()


ACTIONS = {
    "background-sync": _background_sync,
    "sync-user": _sync_user,
    "replay": _replay,
    "strava-subscription": _strava_subscription,
}


# -- the table -----------------------------------------------------------------------------

AUTH_NOTE = (
    " Admin JWT as a bearer header, or the console's session cookie (set by the login "
    "form); without one the login form, without the admin scope a 403 page."
)
HTML = "text/html"

ROUTES = (
    Route(
        "GET",
        "/admin",
        console,
        "The admin console",
        access="public",
        tag="console",
        description="Connections, rate budgets, sync sessions (live), failures, dead letters, "
        "webhook counts, Google Fit runs and calendar channels; each section fetched within "
        f"{_console_data.SECTION_TIMEOUT:g} s or shown as not available." + AUTH_NOTE,
        replies=(
            Reply(200, "The console, or the login form", None, content_type=HTML),
            Reply(401, "The login form: the token was refused", None, content_type=HTML),
            Reply(403, "The token has no admin scope", None, content_type=HTML),
        ),
    ),
    Route(
        "GET",
        "/admin/sections/{section}",
        console_section,
        "One console section, as an HTML fragment (the page refreshes with it)",
        access="public",
        tag="console",
        path_model=SectionPath,
        description=AUTH_NOTE.strip(),
        replies=(
            Reply(200, "The section's HTML", None, content_type=HTML),
            Reply(401, "The login form", None, content_type=HTML),
            Reply(403, "Not an admin", None, content_type=HTML),
        ),
    ),
    Route(
        "GET",
        "/admin/sync/events",
        console_events,
        "Server-sent events: every user's sync progress, for the console",
        access="public",
        tag="console",
        description="As `/api/v1/users/{user_id}/sync/events`, for all users." + AUTH_NOTE,
        replies=(
            Reply(200, "The event stream", None, content_type="text/event-stream"),
            Reply(401, "The login form", None, content_type=HTML),
            Reply(403, "Not an admin", None, content_type=HTML),
            Reply(503, "The bus is unavailable", None),
        ),
    ),
    Route(
        "GET",
        "/admin/static/{name}",
        console_static,
        "The console's stylesheet and script",
        access="public",
        tag="console",
        path_model=StaticPath,
        replies=(Reply(200, "The file", None, content_type="text/plain"),),
    ),
    Route(
        "POST",
        "/admin/login",
        console_login,
        "Sign in to the console with an admin token (form field `token`)",
        access="public",
        tag="console",
        replies=(
            Reply(303, "Signed in: the session cookie is set", None),
            Reply(401, "The token was refused", None, content_type=HTML),
            Reply(403, "The token has no admin scope", None, content_type=HTML),
        ),
    ),
    Route(
        "POST",
        "/admin/logout",
        console_logout,
        "Sign out of the console",
        access="public",
        tag="console",
        replies=(Reply(303, "Signed out: the cookie is cleared", None),),
    ),
    Route(
        "POST",
        "/admin/actions/{action}",
        console_action,
        "Run a console action (form fields; `csrf` when signed in by cookie)",
        access="public",
        tag="console",
        path_model=ActionPath,
        description="`background-sync` (`sync_type` quick|full, `max_users`), `sync-user` "
        "(`user_id`, `provider` or all connected), `replay` (`sequence`, or `all`), "
        "`strava-subscription`. Answers JSON `{ok, message, detail}` when the request "
        "accepts application/json, else an HTML page saying what happened." + AUTH_NOTE,
        replies=(
            Reply(200, "Done", None, content_type=HTML),
            Reply(400, "Bad input", None, content_type=HTML),
            Reply(401, "The login form", None, content_type=HTML),
            Reply(403, "Not an admin, or the CSRF check failed", None, content_type=HTML),
            Reply(404, "Nothing to act on", None, content_type=HTML),
            Reply(503, "The owner or the bus is unavailable", None, content_type=HTML),
        ),
    ),
)


def setup(gateway: Gateway) -> None:
    register(gateway.app, ROUTES)
