"""WHOOP API v2 (PROVIDERS.md §7): OAuth under ``/whoop/oauth/oauth2``, the developer API
under ``/whoop/developer`` behind per-app rate limits, and signed webhooks."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from provider_sandbox.config import PREFIXES, SandboxConfig
from provider_sandbox.core import Grant, Sandbox, bearer_token
from provider_sandbox.providers import _whoop_control, _whoop_values
from provider_sandbox.providers._whoop_data import WhoopData
from provider_sandbox.providers._whoop_limits import RateLimiter
from provider_sandbox.providers._whoop_oauth import PROVIDER, OAuthErrors, WhoopOAuth
from provider_sandbox.providers._whoop_records import Record, SortKey
from provider_sandbox.providers._whoop_settings import WhoopSettings
from provider_sandbox.providers._whoop_webhooks import WebhookSender

API_PREFIX = PREFIXES["WHOOP_API_BASE"]
OAUTH_PREFIX = PREFIXES["WHOOP_OAUTH_BASE"]
MAX_LIMIT = 25
DEFAULT_LIMIT = 10
TICK_SECONDS = 0.02
COLLECTIONS = {
    "cycle": ("/v2/cycle", "read:cycles"),
    "recovery": ("/v2/recovery", "read:recovery"),
    "sleep": ("/v2/activity/sleep", "read:sleep"),
    "workout": ("/v2/activity/workout", "read:workout"),
}
# WHOOP documents its error statuses but not their bodies; these are the spec's wording.
MESSAGES = {
    400: "Client error constructing the request",
    401: "Invalid authorization",
    404: "No resource found",
    429: "Request rejected due to rate limiting",
    500: "Server error occurred while making request",
}
FIRST_NAMES = ("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie")
LAST_NAMES = ("Smith", "Garcia", "Chen", "Okafor", "Novak", "Silva", "Kowalski", "Haddad")

log = logging.getLogger(__name__)

# A JSON object, pre-encoded JSON text, or None for 204.
ApiHandler = Callable[[web.Request, Grant], dict[str, Any] | bytes | None]


def api_error(
    status: int, headers: dict[str, str] | None = None, detail: str | None = None
) -> web.Response:
    body = {"error": HTTPStatus(status).phrase, "message": detail or MESSAGES.get(status, "")}
    return web.json_response(body, status=status, headers=headers)


class ApiErrors:
    def error_response(self, status: int) -> web.Response:
        return api_error(status)


class ApiError(Exception):
    def __init__(self, status: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def encode_token(key: SortKey) -> str:
    raw = f"{key[0]}:{key[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> SortKey:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        start, key = raw.split(":", 1)
        return int(start), key
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(400, "nextToken is not a token this API issued") from None


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(400, "limit must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _instant(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    instant = _whoop_values.parse_instant(raw)
    if instant is None:
        raise ApiError(400, f"{name} must be an ISO 8601 date-time with an offset")
    return instant


def _uuid(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(400, "the id must be a UUID") from None


def _int64(raw: str) -> str:
    if not raw.isdigit() or int(raw) >= 2**63:
        raise ApiError(400, "the id must be an int64")
    return str(int(raw))


class WhoopPart:
    name = PROVIDER

    def __init__(self, sandbox: Sandbox, config: SandboxConfig) -> None:
        self.sandbox = sandbox
        self.config = config
        self.settings = WhoopSettings.from_config(config)
        self.data = WhoopData(sandbox.seed, self.now_ms, self.settings)
        self.limiter = RateLimiter(sandbox.clock.time, self.settings)
        self.oauth = WhoopOAuth(sandbox, config.whoop, self.settings)
        self.webhooks = WebhookSender(
            sandbox, config.whoop.client_secret, self.settings, self.oauth.is_connected
        )

    def now_ms(self) -> int:
        return int(self.sandbox.clock.time() * 1000)

    def reset(self) -> None:
        self.settings.restore(WhoopSettings.from_config(self.config))
        self.data.reset()
        self.limiter.reset()
        self.oauth.reset()
        self.webhooks.reset()

    def setup(self, app: web.Application) -> None:
        oauth_errors = OAuthErrors()
        route = self.sandbox.route
        route(app, PROVIDER, OAUTH_PREFIX, "GET", "/auth", self.oauth.authorize, oauth_errors)
        route(app, PROVIDER, OAUTH_PREFIX, "POST", "/token", self.oauth.token, oauth_errors)
        for kind, (path, scope) in COLLECTIONS.items():
            self._api(app, "GET", path, scope, self._lister(kind))
        self._api(app, "GET", "/v2/cycle/{cycleId}", "read:cycles", self._cycle)
        self._api(app, "GET", "/v2/cycle/{cycleId}/sleep", "read:sleep", self._cycle_sleep)
        self._api(app, "GET", "/v2/cycle/{cycleId}/recovery", "read:recovery", self._recovery)
        self._api(app, "GET", "/v2/activity/sleep/{sleepId}", "read:sleep", self._sleep)
        self._api(app, "GET", "/v2/activity/workout/{workoutId}", "read:workout", self._workout)
        self._api(app, "GET", "/v2/user/profile/basic", "read:profile", self._profile)
        self._api(app, "GET", "/v2/user/measurement/body", "read:body_measurement", self._body)
        self._api(app, "GET", "/v1/activity-mapping/{activityV1Id}", None, self._mapping)
        self._api(app, "DELETE", "/v2/user/access", None, self._revoke)
        _whoop_control.register(app, self)
        app.cleanup_ctx.append(self._lifespan)

    # -- background: retries and deferred scoring on the virtual clock ------------------

    async def _lifespan(self, _: web.Application) -> AsyncIterator[None]:
        ticker = asyncio.get_running_loop().create_task(self._tick())
        yield
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await self.webhooks.close()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.pump()
            except Exception:
                log.exception("whoop background tick failed")

    def pump(self) -> None:
        now = self.sandbox.clock.time()
        if self.data.pending:
            self.webhooks.emit(self.data.score_due(int(now * 1000)).events)
        self.webhooks.run_due(now)

    # -- the developer API ---------------------------------------------------------------

    def _api(
        self, app: web.Application, method: str, template: str, scope: str | None, fn: ApiHandler
    ) -> None:
        key = f"{PROVIDER} {method} {template}"

        async def handler(request: web.Request) -> web.StreamResponse:
            grant = self.sandbox.tokens.valid_access(PROVIDER, bearer_token(request))
            client_id = grant.client_id if grant else self.config.whoop.client_id
            allowed, headers = self.limiter.hit(client_id)
            if not allowed:
                # WHOOP sends no Retry-After: X-RateLimit-Reset says when to come back.
                self.sandbox.stats.rate_limited[key] += 1
                return api_error(429, headers)
            if grant is None or (scope is not None and scope not in grant.scopes):
                return api_error(401, headers)
            try:
                body = fn(request, grant)
            except ApiError as err:
                return api_error(err.status, headers, err.detail)
            if body is None:
                return web.Response(status=204, headers=headers)
            if isinstance(body, bytes):
                return web.Response(body=body, content_type="application/json", headers=headers)
            return web.json_response(body, headers=headers)

        self.sandbox.route(
            app, PROVIDER, API_PREFIX, method, template, handler, ApiErrors(), token_of=bearer_token
        )

    def _lister(self, kind: str) -> ApiHandler:
        def collection(request: web.Request, grant: Grant) -> bytes:
            limit = _limit(request.query.get("limit"))
            start = _instant(request, "start")
            end = _instant(request, "end")
            token = request.query.get("nextToken")
            cursor = decode_token(token) if token else None
            records, after = self.data.page(
                int(grant.account_id),
                kind,
                start,
                self.now_ms() if end is None else end,
                cursor,
                limit,
            )
            tail = ""
            if after is not None:
                tail = f', "next_token": "{encode_token(after)}"'
            elif self.settings.last_page_next_token == "null":
                tail = ', "next_token": null'
            joined = ", ".join(record.json for record in records)
            return f'{{"records": [{joined}]{tail}}}'.encode()

        return collection

    def _owned(self, kind: str, key: str, grant: Grant) -> Record:
        record = self.data.get(kind, key)
        if record is None or str(record.user_id) != grant.account_id:
            raise ApiError(404)
        return record

    def _cycle(self, request: web.Request, grant: Grant) -> dict[str, Any]:
        return self._owned("cycle", _int64(request.match_info["cycleId"]), grant).body

    def _main_sleep(self, request: web.Request, grant: Grant) -> Record:
        cycle = self._owned("cycle", _int64(request.match_info["cycleId"]), grant)
        sleep = self.data.sleep_of_cycle(cycle.key)
        if sleep is None:
            raise ApiError(404)
        return sleep

    def _cycle_sleep(self, request: web.Request, grant: Grant) -> dict[str, Any]:
        return self._main_sleep(request, grant).body

    def _recovery(self, request: web.Request, grant: Grant) -> dict[str, Any]:
        sleep = self._main_sleep(request, grant)
        return self._owned("recovery", sleep.key, grant).body

    def _sleep(self, request: web.Request, grant: Grant) -> dict[str, Any]:
        return self._owned("sleep", _uuid(request.match_info["sleepId"]), grant).body

    def _workout(self, request: web.Request, grant: Grant) -> dict[str, Any]:
        return self._owned("workout", _uuid(request.match_info["workoutId"]), grant).body

    def _mapping(self, request: web.Request, grant: Grant) -> dict[str, Any]:
        v1_id = int(_int64(request.match_info["activityV1Id"]))
        key = self.data.v1_ids.get(v1_id, "")
        record = self.data.get("sleep", key) or self.data.get("workout", key)
        if record is None or str(record.user_id) != grant.account_id:
            raise ApiError(404)
        return {"v2_activity_id": record.key}

    def _profile(self, _: web.Request, grant: Grant) -> dict[str, Any]:
        account = self.sandbox.accounts.get(PROVIDER, grant.account_id)
        user_id = int(grant.account_id)
        hint = account.login_hint if account else None
        email = hint if hint and "@" in hint else f"{hint or f'user{user_id}'}@example.com"
        return {
            "user_id": user_id,
            "email": email,
            "first_name": FIRST_NAMES[user_id % len(FIRST_NAMES)],
            "last_name": LAST_NAMES[(user_id // 7) % len(LAST_NAMES)],
        }

    def _body(self, _: web.Request, grant: Grant) -> dict[str, Any]:
        rng = _whoop_values.stream(self.sandbox.seed, grant.account_id, "body")
        return {
            "height_meter": round(rng.uniform(1.55, 1.98), 4),
            "weight_kilogram": round(rng.uniform(52.0, 105.0), 4),
            "max_heart_rate": rng.randint(176, 204),
        }

    def _revoke(self, _: web.Request, grant: Grant) -> None:
        self.oauth.revoke_user(grant.account_id)


def build(sandbox: Sandbox, config: SandboxConfig) -> WhoopPart:
    return WhoopPart(sandbox, config)
