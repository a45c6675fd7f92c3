"""Open-Meteo Historical Weather (``/v1/archive``) and the Forecast API's ``/v1/forecast``
(PROVIDERS.md §8): synthetic deterministic weather, ``{error, reason}`` bodies, the free
tier's per-IP limits on the virtual clock, and the ``customer-`` host with ``apikey``."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from http import HTTPStatus
from typing import Any

from aiohttp import web

from provider_sandbox.config import PREFIXES, SandboxConfig
from provider_sandbox.core import Sandbox
from provider_sandbox.providers._open_meteo_limits import (
    CONCURRENCY,
    MINUTELY,
    ConcurrencyGate,
    FreeTierCounters,
)
from provider_sandbox.providers._open_meteo_query import (
    OpenMeteoError,
    Query,
    parse_archive,
    parse_forecast,
)
from provider_sandbox.providers._open_meteo_response import (
    Context,
    build_location,
    validate_zones,
)

PROVIDER = "open_meteo"
PREFIX = PREFIXES["WEATHER_API_BASE"]
# The commercial host (customer-archive-api.open-meteo.com); also chosen by a Host header
# starting with "customer-".
CUSTOMER_PREFIX = "/open-meteo/customer/v1"
ENDPOINTS = ("/archive", "/forecast")

_dumps = functools.partial(json.dumps, separators=(",", ":"), ensure_ascii=False)


def error_response(status: int, reason: str) -> web.Response:
    return web.json_response({"error": True, "reason": reason}, status=status, dumps=_dumps)


class OpenMeteoErrors:
    """Open-Meteo answers every failure, 429 included, with the same error/reason object."""

    def error_response(self, status: int) -> web.Response:
        if status == 429:
            return error_response(429, MINUTELY)
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        return error_response(status, reason)


@dataclass
class OpenMeteoSettings:
    minutely_limit: float | None = 600.0
    hourly_limit: float | None = 5000.0
    daily_limit: float | None = 10000.0
    weighting: bool = True  # heavy calls (many variables, long ranges, locations) count more
    max_concurrent: int | None = None  # 1 emulates the free API's one request at a time per IP
    max_queue: int = 6
    latency_ms: float = 0.0  # processing time per request, so concurrency can be observed
    archive_delay_days: int = 5  # the archive ends this many days before today (nulls after)
    archive_end_offset_days: int = 0  # latest end_date accepted, relative to today
    grid_degrees: float = 0.1  # the default model's grid
    api_keys: list[str] = field(default_factory=lambda: ["open-meteo-dev-key"])


_SETTING_KINDS = {
    "minutely_limit": "limit",
    "hourly_limit": "limit",
    "daily_limit": "limit",
    "weighting": "bool",
    "max_concurrent": "optional_positive_int",
    "max_queue": "non_negative_int",
    "latency_ms": "non_negative_number",
    "archive_delay_days": "non_negative_int",
    "archive_end_offset_days": "int",
    "grid_degrees": "grid",
    "api_keys": "strings",
}


def _valid(kind: str, value: Any) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    integer = isinstance(value, int) and not isinstance(value, bool)
    checks: dict[str, Callable[[], bool]] = {
        "limit": lambda: value is None or (number and value >= 0),
        "bool": lambda: isinstance(value, bool),
        "optional_positive_int": lambda: value is None or (integer and value >= 1),
        "non_negative_int": lambda: integer and value >= 0,
        "non_negative_number": lambda: number and value >= 0,
        "int": lambda: integer,
        "grid": lambda: number and 0 < value <= 5,
        "strings": lambda: isinstance(value, list) and all(isinstance(v, str) for v in value),
    }
    return checks[kind]()


class OpenMeteo:
    name = PROVIDER

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.errors = OpenMeteoErrors()
        self.settings = OpenMeteoSettings()
        self.counters = FreeTierCounters()
        self.gate = ConcurrencyGate()

    def reset(self) -> None:
        self.settings = OpenMeteoSettings()
        self.counters.clear()
        self.gate.clear()

    def setup(self, app: web.Application) -> None:
        for prefix, customer in ((PREFIX, False), (CUSTOMER_PREFIX, True)):
            for endpoint in ENDPOINTS:
                handler = functools.partial(self.serve, endpoint=endpoint, customer=customer)
                self.sandbox.route(app, PROVIDER, prefix, "GET", endpoint, handler, self.errors)
        app.router.add_get("/_sandbox/open_meteo/config", self.config_get)
        app.router.add_post("/_sandbox/open_meteo/config", self.config_set)
        app.router.add_get("/_sandbox/open_meteo/usage", self.usage)

    # -- the API -----------------------------------------------------------------------------

    async def serve(self, request: web.Request, *, endpoint: str, customer: bool) -> web.Response:
        stats_key = f"{PROVIDER} GET {endpoint}"
        if customer or request.host.startswith("customer-"):
            apikey = request.query.get("apikey")
            if not apikey:
                return error_response(401, "API key required. Please add &apikey= to the URL.")
            if apikey not in self.settings.api_keys:
                return error_response(400, "The supplied API key is invalid.")
            return await self._answer(request, endpoint, None)
        forwarded = request.headers.get("X-Forwarded-For", "")
        ip = forwarded.split(",")[0].strip() or request.remote or "-"
        s = self.settings
        limits = (s.minutely_limit, s.hourly_limit, s.daily_limit)
        reason = self.counters.exceeded(ip, self.sandbox.clock.time(), limits)
        if reason is not None:
            self.sandbox.stats.rate_limited[stats_key] += 1
            return error_response(429, reason)
        if s.max_concurrent is None:
            return await self._answer(request, endpoint, ip)
        async with self.gate.enter(ip, s.max_concurrent, s.max_queue) as admitted:
            if not admitted:
                self.sandbox.stats.rate_limited[stats_key] += 1
                return error_response(429, CONCURRENCY)
            return await self._answer(request, endpoint, ip)

    async def _answer(self, request: web.Request, endpoint: str, ip: str | None) -> web.Response:
        if self.settings.latency_ms:
            await asyncio.sleep(self.settings.latency_ms / 1000)
        params = {key: request.query.getall(key) for key in request.query}
        try:
            body, weight = self._compute(params, endpoint)
        except OpenMeteoError as err:
            # Failed calls still count once: clients retrying errors in a loop burn quota.
            self._charge(ip, 1.0)
            return error_response(err.status, err.reason)
        self._charge(ip, weight)
        return web.json_response(body, dumps=_dumps)

    def _charge(self, ip: str | None, weight: float) -> None:
        if ip is not None:
            self.counters.add(ip, self.sandbox.clock.time(), weight)

    def _compute(self, params: dict[str, list[str]], endpoint: str) -> tuple[Any, float]:
        now = self.sandbox.clock.now()
        today = now.date()
        available_until: int | None = None
        query: Query
        if endpoint == "/archive":
            query = parse_archive(params, today, self.settings.archive_end_offset_days)
            # Reanalysis lags: hours after the last published day exist but are null.
            published_end = today - timedelta(days=self.settings.archive_delay_days - 1)
            available_until = (published_end - date(1970, 1, 1)).days * 86400
        else:
            query = parse_forecast(params, today)
        zones = validate_zones(query, now)
        ctx = Context(self.sandbox.seed, self.settings.grid_degrees, now, available_until)
        bodies = [
            build_location(loc, query, zone, ctx, index)
            for index, (loc, zone) in enumerate(zip(query.locations, zones, strict=True))
        ]
        weight = query.weight() if self.settings.weighting else float(len(bodies))
        return (bodies if len(bodies) > 1 else bodies[0]), weight

    # -- control API -------------------------------------------------------------------------

    async def config_get(self, _: web.Request) -> web.Response:
        return web.json_response(asdict(self.settings))

    async def config_set(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _control_error("body is not JSON")
        if not isinstance(body, dict):
            return _control_error("expected an object")
        unknown = sorted(set(body) - set(_SETTING_KINDS))
        if unknown:
            return _control_error(f"unknown settings: {unknown}")
        for key, value in body.items():
            if not _valid(_SETTING_KINDS[key], value):
                return _control_error(f"invalid value for '{key}': {value!r}")
        self.settings = OpenMeteoSettings(**{**asdict(self.settings), **body})
        self.gate.clear()
        return web.json_response(asdict(self.settings))

    async def usage(self, _: web.Request) -> web.Response:
        return web.json_response({"ips": self.counters.snapshot(self.sandbox.clock.time())})


def _control_error(message: str) -> web.Response:
    return web.json_response({"error": {"code": "bad_request", "message": message}}, status=400)


def build(sandbox: Sandbox, config: SandboxConfig) -> OpenMeteo:
    return OpenMeteo(sandbox)
