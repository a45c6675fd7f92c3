"""Nominatim reverse geocoding (``GET /reverse``) with the OSMF usage policy enforced:
an identifying User-Agent or Referer, and about one request per second per client
(operations.osmfoundation.org/policies/nominatim/; ARCHITECTURE §8 ``GEOCODING_API_BASE``)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from provider_sandbox.config import PREFIXES, SandboxConfig
from provider_sandbox.core import Sandbox
from provider_sandbox.providers._nominatim_format import (
    FORMATS,
    Options,
    content_type,
    error_body,
    render,
)
from provider_sandbox.providers._nominatim_places import PLACES
from provider_sandbox.providers._nominatim_reverse import Radii, reverse

PROVIDER = "nominatim"
PREFIX = PREFIXES["GEOCODING_API_BASE"]
ENDPOINT = "GET /reverse"
STATS_KEY = f"{PROVIDER} {ENDPOINT}"

# Default User-Agents of HTTP libraries: the policy says these "will not do".
STOCK_USER_AGENTS = (
    "python-requests/",
    "python-urllib/",
    "python-httpx/",
    "aiohttp/",
    "go-http-client/",
    "okhttp/",
    "java/",
    "axios/",
    "node-fetch/",
    "undici",
    "libwww-perl/",
)

ACCESS_BLOCKED = """<html>
<head>
<title>Access blocked</title>
</head>
<body>
<h1>Access blocked</h1>

<p>Your requests were blocked under the
<a href="https://operations.osmfoundation.org/policies/nominatim/">usage policy</a>
of OSM's Nominatim geocoding service, whose resources are shared by many users.</p>

<p>Check that your software follows that policy: it must send a
<b>custom HTTP referrer or HTTP user agent</b> that identifies your application, and
must not overload the service with bulk requests.</p>
</body>
</html>
"""


def _nginx_page(status: int, reason: str) -> str:
    title = f"{status} {reason}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )


class NominatimErrors:
    """Policy answers come from the front web server as HTML; parameter errors from
    Nominatim itself as JSON."""

    def error_response(self, status: int) -> web.Response:
        if status == 403:
            return web.Response(status=403, text=ACCESS_BLOCKED, content_type="text/html")
        if status in (400, 404):
            message = "Bad request" if status == 400 else "Not found"
            body, ctype = error_body("jsonv2", status, message)
            return web.Response(status=status, text=body, content_type=ctype, charset="utf-8")
        return web.Response(
            status=status, text=_nginx_page(status, _reason(status)), content_type="text/html"
        )


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@dataclass
class NominatimSettings:
    requests_per_second: float = 1.0  # per User-Agent + client IP; 0 disables
    burst: int = 1
    require_identification: bool = True
    block_stock_user_agents: bool = True
    city_radius_km: float = 50.0
    rural_radius_km: float = 1000.0


class _ParamError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Nominatim:
    name = PROVIDER

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.errors = NominatimErrors()
        self.settings = NominatimSettings()
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)

    def reset(self) -> None:
        self.settings = NominatimSettings()
        self._buckets.clear()

    def setup(self, app: web.Application) -> None:
        self.sandbox.route(app, PROVIDER, PREFIX, "GET", "/reverse", self.reverse, self.errors)
        app.router.add_get("/_sandbox/nominatim/config", self.config_get)
        app.router.add_post("/_sandbox/nominatim/config", self.config_set)
        app.router.add_get("/_sandbox/nominatim/places", self.places)

    # -- usage policy ------------------------------------------------------------------------

    def _blocked(self, request: web.Request) -> bool:
        agent = request.headers.get("User-Agent", "").strip()
        referer = request.headers.get("Referer", "").strip()
        if referer:
            return False
        if not agent:
            return self.settings.require_identification
        lowered = agent.lower()
        return self.settings.block_stock_user_agents and any(
            stock in lowered for stock in STOCK_USER_AGENTS
        )

    def _admit(self, request: web.Request) -> bool:
        rate = self.settings.requests_per_second
        if rate <= 0:
            return True
        forwarded = request.headers.get("X-Forwarded-For", "")
        ip = forwarded.split(",")[0].strip() or request.remote or "-"
        client = f"{ip}|{request.headers.get('User-Agent', '')}"
        now = self.sandbox.clock.time()
        burst = float(max(1, self.settings.burst))
        tokens, at = self._buckets.get(client, (burst, now))
        tokens = min(burst, tokens + (now - at) * rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return False
        self._buckets[client] = (tokens - 1.0, now)
        return True

    # -- the endpoint ------------------------------------------------------------------------

    async def reverse(self, request: web.Request) -> web.Response:
        if self._blocked(request):
            return self.errors.error_response(403)
        if not self._admit(request):
            self.sandbox.stats.rate_limited[STATS_KEY] += 1
            return web.Response(
                status=429, text=_nginx_page(429, "Too Many Requests"), content_type="text/html"
            )
        query = request.query
        fmt = query.get("format", "xml")
        if fmt not in FORMATS:
            return _error(None, "Parameter 'format' must be one of: " + ", ".join(FORMATS))
        try:
            # Nominatim reads lon before lat, so a request missing both names lon.
            lon = _float(query, "lon")
            lat = _float(query, "lat")
            zoom = max(0, min(18, _int(query, "zoom", 18)))
        except _ParamError as err:
            return _error(fmt, err.message)
        options = Options(
            addressdetails=query.get("addressdetails", "1") != "0",
            extratags=query.get("extratags", "0") != "0",
            namedetails=query.get("namedetails", "0") != "0",
        )
        languages = query.get("accept-language") or request.headers.get("Accept-Language") or ""
        english = languages.strip().lower().startswith("en")
        result = None
        # Out-of-range coordinates are not an error for Nominatim: nothing can be found there.
        if abs(lon) <= 180 and abs(lat) <= 90:
            radii = Radii(self.settings.city_radius_km, self.settings.rural_radius_km)
            result = reverse(lat, lon, zoom, english, radii)
        qs_parts = {"lat": str(lat), "lon": str(lon), "format": "xml"}
        if query.get("zoom"):
            qs_parts["zoom"] = query["zoom"]
        body = render(result, fmt, options, urlencode(qs_parts), self.sandbox.clock.now())
        return web.Response(
            text=body,
            content_type=content_type(fmt),
            charset="utf-8",
            headers={"Access-Control-Allow-Origin": "*"},
        )

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
        current = asdict(self.settings)
        unknown = sorted(set(body) - set(current))
        if unknown:
            return _control_error(f"unknown settings: {unknown}")
        for key, value in body.items():
            default = current[key]
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    return _control_error(f"'{key}' must be a boolean")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                return _control_error(f"'{key}' must be a non-negative number")
            current[key] = int(value) if key == "burst" else value
        self.settings = NominatimSettings(**current)
        self._buckets.clear()
        return web.json_response(asdict(self.settings))

    async def places(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "places": [
                    {
                        "key": p.key,
                        "name": p.name,
                        "name_en": p.name_en,
                        "state": p.state,
                        "country": p.country,
                        "country_code": p.country_code,
                        "lat": p.lat,
                        "lon": p.lon,
                        "timezone": p.tz,
                    }
                    for p in PLACES
                ]
            }
        )


def _float(query: Any, name: str) -> float:
    raw = query.get(name)
    if raw is None:
        raise _ParamError(f"Parameter '{name}' missing.")
    try:
        value = float(raw)
    except ValueError:
        raise _ParamError(f"Parameter '{name}' must be a number.") from None
    if math.isnan(value) or math.isinf(value):
        raise _ParamError(f"Parameter '{name}' must be a number.")
    return value


def _int(query: Any, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise _ParamError(f"Parameter '{name}' must be a number.") from None


def _error(fmt: str | None, message: str) -> web.Response:
    body, ctype = error_body(fmt, 400, message)
    return web.Response(status=400, text=body, content_type=ctype, charset="utf-8")


def _control_error(message: str) -> web.Response:
    return web.json_response({"error": {"code": "bad_request", "message": message}}, status=400)


def build(sandbox: Sandbox, config: SandboxConfig) -> Nominatim:
    return Nominatim(sandbox)
