"""Google Fit REST v1 (PROVIDERS.md §6): users.dataset.aggregate and users.sessions.list
behind Google's bearer check, the turndown switch and optional per-user limits, plus the
control routes that seed and revise days and sessions."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from aiohttp import web

from provider_sandbox.config import PREFIXES, SandboxConfig
from provider_sandbox.core import Grant, Sandbox, bearer_token
from provider_sandbox.providers._google_errors import (
    ApiErrors,
    api_error,
    insufficient_scope,
    rate_limit_exceeded,
)
from provider_sandbox.providers._google_fit_aggregate import (
    AggregateError,
    aggregate,
    parse_request,
)
from provider_sandbox.providers._google_fit_control import FitControl
from provider_sandbox.providers._google_fit_store import (
    SLEEP_TYPES,
    FitSession,
    UserData,
)
from provider_sandbox.providers._google_settings import (
    Knobs,
    Parser,
    int_at_least,
    optional,
    time_zone,
)
from provider_sandbox.providers.google_oauth import google_grant

PROVIDER = "google_fit"
PREFIX = PREFIXES["GOOGLE_FIT_API_BASE"]
AUTH = "https://www.googleapis.com/auth/fitness."
# Any Fitness scope lets a client call the read methods (discovery document, F-disc).
FIT_SCOPES = frozenset(
    f"{AUTH}{kind}.{access}"
    for kind in (
        "activity",
        "blood_glucose",
        "blood_pressure",
        "body",
        "body_temperature",
        "heart_rate",
        "location",
        "nutrition",
        "oxygen_saturation",
        "reproductive_health",
        "sleep",
    )
    for access in ("read", "write")
)
SLEEP_SCOPES = frozenset({AUTH + "sleep.read", AUTH + "sleep.write"})
THIRTY_DAYS_MS = 30 * 86_400_000


@dataclass
class FitSettings(Knobs):
    PARSERS: ClassVar[dict[str, Parser]] = {
        "turndown_status": optional(int_at_least(400)),
        "user_rate_limit_per_minute": int_at_least(0),
        "rate_limit_status": int_at_least(400),
        "time_zone": time_zone,
        "max_buckets": int_at_least(1),
        "sessions_page_size": int_at_least(0),
    }
    ENV_PREFIX: ClassVar[str] = "SANDBOX_GOOGLE_FIT_"

    # What a turned-down API answers is unknown (§6.4, §9); None: the API is live.
    turndown_status: int | None = None
    # No Fit quota numbers are published (§6.1); 0 disables the per-user limit.
    user_rate_limit_per_minute: int = 0
    rate_limit_status: int = 429
    # The zone users' days are laid out in.
    time_zone: str = "UTC"
    # Guards the sandbox against a request for billions of buckets; Google's own
    # bucket limit is undocumented.
    max_buckets: int = 10_000
    # sessions.list sync pages: 0 answers every change at once, as Google documents
    # (``hasMoreData`` is "never populated"); N > 0 pages and sets it.
    sessions_page_size: int = 0


Handler = Callable[[web.Request, Grant], Awaitable[web.StreamResponse]]


class GoogleFit:
    name = PROVIDER

    def __init__(self, sandbox: Sandbox, config: SandboxConfig) -> None:
        self.sandbox = sandbox
        self.initial_settings = FitSettings.from_env(config.extra)
        self.settings = replace(self.initial_settings)
        self.users: dict[str, UserData] = {}
        self.recent_calls: dict[str, deque[float]] = {}

    def reset(self) -> None:
        self.settings = replace(self.initial_settings)
        self.users.clear()
        self.recent_calls.clear()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.time_zone)

    def now_ms(self) -> int:
        return int(self.sandbox.clock.time() * 1000)

    def setup(self, app: web.Application) -> None:
        for method, template, handler in (
            ("POST", "/users/me/dataset:aggregate", self.aggregate),
            ("GET", "/users/me/sessions", self.sessions),
            ("POST", "/users/{userId}/dataset:aggregate", self.not_me),
            ("GET", "/users/{userId}/sessions", self.not_me),
        ):
            key = f"{PROVIDER} {method} {template}"
            self.sandbox.route(
                app,
                PROVIDER,
                PREFIX,
                method,
                template,
                self._gate(key, handler),
                ApiErrors(self.sandbox, key),
                token_of=bearer_token,
            )
        FitControl(self).setup(app)

    # -- API -----------------------------------------------------------------------------

    def _gate(self, key: str, handler: Handler) -> Callable[[web.Request], Awaitable[Any]]:
        """Turndown, then Google's bearer check, then the optional per-user limit."""

        async def gated(request: web.Request) -> web.StreamResponse:
            status = self.settings.turndown_status
            if status is not None:
                return _turned_down(status)
            grant = google_grant(self.sandbox, request, FIT_SCOPES)
            if isinstance(grant, web.Response):
                return grant
            if self._over_limit(grant.account_id):
                self.sandbox.stats.rate_limited[key] += 1
                return rate_limit_exceeded(self.settings.rate_limit_status)
            return await handler(request, grant)

        return gated

    def _over_limit(self, account_id: str) -> bool:
        limit = self.settings.user_rate_limit_per_minute
        if limit <= 0:
            return False
        now = self.sandbox.clock.time()
        window = self.recent_calls.setdefault(account_id, deque())
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) >= limit:
            return True
        window.append(now)
        return False

    async def not_me(self, request: web.Request, grant: Grant) -> web.StreamResponse:
        # Only "me" is supported (discovery document): another user's data is refused.
        return api_error(403, "The caller does not have permission", "forbidden")

    async def aggregate(self, request: web.Request, grant: Grant) -> web.StreamResponse:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return api_error(400, "Invalid JSON payload received.", "parseError")
        try:
            parsed = parse_request(body)
            for spec in parsed.specs:
                if grant.scopes.isdisjoint(spec.type.scopes):
                    return insufficient_scope(spec.type.scopes)
            result = aggregate(
                parsed,
                self.users.get(grant.account_id),
                self.zone,
                self.settings.max_buckets,
                lambda s: _visible(s, grant),
            )
        except AggregateError as err:
            return api_error(err.status, err.message, err.reason)
        return web.json_response(result)

    async def sessions(self, request: web.Request, grant: Grant) -> web.StreamResponse:
        q = request.query
        try:
            types = {_activity_type(v) for v in q.getall("activityType", [])}
            include_deleted = _boolean(q.get("includeDeleted", "false"))
            start = _rfc3339_ms(q["startTime"], "startTime") if "startTime" in q else None
            end = _rfc3339_ms(q["endTime"], "endTime") if "endTime" in q else None
        except ValueError as err:
            return api_error(400, str(err), "invalidArgument")
        user = self.users.get(grant.account_id) or UserData()

        def wanted(session: FitSession) -> bool:
            return (not types or session.activity_type in types) and _visible(session, grant)

        if start is not None or end is not None:
            lo = 0 if start is None else start
            hi = 2**63 - 1 if end is None else end
            found = [s.as_json() for s in user.ending_between(lo, hi) if wanted(s)]
            return web.json_response({"session": found, "deletedSession": []})
        token = q.get("pageToken")
        if token:
            if not token.isdigit():
                return api_error(400, f"Invalid pageToken: {token}", "invalidArgument")
            changed = user.changed_after(int(token))
        else:
            changed = user.modified_since(self.now_ms() - THIRTY_DAYS_MS)
        size = self.settings.sessions_page_size
        more = 0 < size < len(changed)
        if more:
            changed = changed[:size]
        cursor = changed[-1].seq if changed else user.seq
        body: dict[str, Any] = {
            "session": [s.as_json() for s in changed if not s.deleted and wanted(s)],
            "deletedSession": [
                s.as_json() for s in changed if s.deleted and include_deleted and wanted(s)
            ],
            "nextPageToken": str(cursor),
        }
        if more:
            body["hasMoreData"] = True
        return web.json_response(body)


def _visible(session: FitSession, grant: Grant) -> bool:
    # Sleep is sensitive data: without a sleep scope its sessions stay hidden.
    return session.activity_type not in SLEEP_TYPES or not grant.scopes.isdisjoint(SLEEP_SCOPES)


def _turned_down(status: int) -> web.Response:
    if status == 403:
        return api_error(
            403,
            "Fitness API has not been used in this project before or it is disabled.",
            "accessNotConfigured",
            domain="usageLimits",
        )
    reason = {404: "notFound", 410: "deleted"}.get(status, "backendError")
    return api_error(status, "The Fitness API is no longer available.", reason)


def _activity_type(value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"Invalid value for activityType: {value}")
    return int(value)


def _boolean(value: str) -> bool:
    if value not in ("true", "false"):
        raise ValueError(f"Invalid value for includeDeleted: {value}")
    return value == "true"


def _rfc3339_ms(value: str, name: str) -> int:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"Invalid {name}: {value}") from None
    if moment.tzinfo is None:
        raise ValueError(f"Invalid {name}: {value} (RFC 3339 needs an offset)")
    return int(moment.timestamp() * 1000)


def build(sandbox: Sandbox, config: SandboxConfig) -> GoogleFit:
    return GoogleFit(sandbox, config)
