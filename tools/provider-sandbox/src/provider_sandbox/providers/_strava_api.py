"""Strava API v3 endpoints (PROVIDERS.md §3.2 to §3.4): activities list and detail behind
bearer tokens, push subscriptions behind app credentials, all rate limited per app."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from provider_sandbox.config import AppCredentials
from provider_sandbox.core import Grant, Handler, Sandbox, bearer_token, read_params
from provider_sandbox.providers._strava_common import (
    API_PREFIX,
    PROVIDER,
    Settings,
    StravaErrors,
    authorization_error,
    bad_request,
    error,
    missing_permission,
    not_found,
    rate_limit_exceeded,
)
from provider_sandbox.providers._strava_limits import RateLimiter
from provider_sandbox.providers._strava_render import detailed
from provider_sandbox.providers._strava_store import ActivityStore
from provider_sandbox.providers._strava_webhooks import Webhooks

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 200
READ_SCOPES = frozenset({"activity:read", "activity:read_all"})

Authed = Callable[[web.Request, Grant], Awaitable[web.Response]]
Plain = Callable[[web.Request], Awaitable[web.Response]]


class BadParam(ValueError):
    pass


def _int(query: Any, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadParam(name) from None


def _epoch(query: Any, name: str) -> float | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadParam(name) from None
    if not math.isfinite(value):
        raise BadParam(name)
    return value


class Api:
    def __init__(
        self,
        sandbox: Sandbox,
        app: AppCredentials,
        settings: Settings,
        store: ActivityStore,
        limiter: RateLimiter,
        webhooks: Webhooks,
    ) -> None:
        self.sandbox = sandbox
        self.app = app
        self.settings = settings
        self.store = store
        self.limiter = limiter
        self.webhooks = webhooks

    def headers(self) -> dict[str, str]:
        return self.limiter.headers(self.sandbox.clock.time())

    def register(self, app: web.Application) -> None:
        errors = StravaErrors(self.headers)
        for method, template, handler in (
            ("GET", "/athlete/activities", self._authed(self.list_activities)),
            ("GET", "/activities/{id}", self._authed(self.get_activity)),
            ("POST", "/push_subscriptions", self.create_subscription),
            ("GET", "/push_subscriptions", self.view_subscriptions),
            ("DELETE", "/push_subscriptions/{id}", self.delete_subscription),
        ):
            key = f"{PROVIDER} {method} {template}"
            self.sandbox.route(
                app,
                PROVIDER,
                API_PREFIX,
                method,
                template,
                self._limited(key, handler),
                errors,
                token_of=bearer_token,
            )

    def _limited(self, key: str, inner: Plain) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            if self.limiter.hit(self.sandbox.clock.time()):
                response = await inner(request)
            else:
                self.sandbox.stats.rate_limited[key] += 1
                response = rate_limit_exceeded()
            response.headers.update(self.headers())
            return response

        return handler

    def _authed(self, inner: Authed) -> Plain:
        async def handler(request: web.Request) -> web.Response:
            grant = self.sandbox.tokens.valid_access(PROVIDER, bearer_token(request))
            if grant is None:
                return authorization_error()
            if not grant.scopes & READ_SCOPES:
                return missing_permission("activity:read")
            return await inner(request, grant)

        return handler

    # -- activities ------------------------------------------------------------------------

    async def list_activities(self, request: web.Request, grant: Grant) -> web.Response:
        query = request.query
        try:
            before, after = _epoch(query, "before"), _epoch(query, "after")
            page = _int(query, "page", 1)
            per_page = _int(query, "per_page", DEFAULT_PER_PAGE)
        except BadParam as err:
            return bad_request("Application", str(err))
        if page < 1:
            return bad_request("Application", "page")
        if per_page < 1:
            return bad_request("Application", "per_page")
        settings = self.settings
        activities = self.store.page(
            int(grant.account_id),
            before=before,
            after=after,
            page=page,
            per_page=min(per_page, MAX_PER_PAGE),  # Strava caps rather than refuses
            include_private="activity:read_all" in grant.scopes,
            holes=settings.short_pages,
            ascending=settings.after_ascending and after is not None and before is None,
        )
        return web.Response(body=self.store.list_json(activities), content_type="application/json")

    async def get_activity(self, request: web.Request, grant: Grant) -> web.Response:
        raw = request.match_info["id"]
        activity = self.store.by_id.get(int(raw)) if raw.isdigit() else None
        if (
            activity is None
            or str(activity.athlete_id) != grant.account_id
            or (activity.private and "activity:read_all" not in grant.scopes)
        ):
            return not_found("Activity")
        return web.json_response(detailed(activity))

    # -- push subscriptions ----------------------------------------------------------------

    def _app_error(self, params: dict[str, str]) -> web.Response | None:
        if params.get("client_id") != self.app.client_id:
            return bad_request("Application", "client_id")
        if params.get("client_secret") != self.app.client_secret:
            return bad_request("Application", "client_secret")
        return None

    async def create_subscription(self, request: web.Request) -> web.Response:
        params = await read_params(request)
        refused = self._app_error(params)
        if refused is not None:
            return refused
        callback_url, verify_token = params.get("callback_url"), params.get("verify_token")
        if not callback_url:
            return bad_request("PushSubscription", "callback_url", "missing")
        if not verify_token:
            return bad_request("PushSubscription", "verify_token", "missing")
        async with self.webhooks.lock:
            if self.webhooks.subscription is not None:
                return bad_request("PushSubscription", "", "already exists")
            # Strava answers the create only after the callback passed the validation GET.
            if not await self.webhooks.validate(callback_url, verify_token):
                return bad_request("PushSubscription", "callback url", "not verifiable")
            subscription = self.webhooks.subscribe(callback_url, verify_token)
        return web.json_response({"id": subscription.id}, status=201)

    async def view_subscriptions(self, request: web.Request) -> web.Response:
        refused = self._app_error(await read_params(request))
        if refused is not None:
            return refused
        subscription = self.webhooks.subscription
        return web.json_response(
            [] if subscription is None else [subscription.view(self.app.client_id)]
        )

    async def delete_subscription(self, request: web.Request) -> web.Response:
        refused = self._app_error(await read_params(request))
        if refused is not None:
            return refused
        subscription = self.webhooks.subscription
        if subscription is None or request.match_info["id"] != str(subscription.id):
            return error(404, "PushSubscription", "id", "invalid")
        self.webhooks.subscription = None
        return web.Response(status=204)
