"""Composition root of the provider sandbox: the provider parts and the control API.

Control API (ARCHITECTURE §8; paths fixed, other tools drive them) under ``/_sandbox/``:
reset, the virtual clock, faults, stats, accounts; provider parts add their own
``/_sandbox/<provider>/...`` routes for seeding and mutating data.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from provider_sandbox.config import SandboxConfig
from provider_sandbox.core import ACCOUNT_SPACE, FaultRule, Sandbox
from provider_sandbox.providers import Part, builders

SANDBOX_KEY = web.AppKey("sandbox", Sandbox)
PARTS_KEY = web.AppKey("parts", dict[str, Part])


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": {"code": "bad_request", "message": message}}, status=400)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": {"code": "bad_request", "message": "body is not JSON"}}),
            content_type="application/json",
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": {"code": "bad_request", "message": "expected an object"}}),
            content_type="application/json",
        )
    return body


async def reset(request: web.Request) -> web.Response:
    request.app[SANDBOX_KEY].reset()
    return web.json_response({"reset": True})


async def clock_get(request: web.Request) -> web.Response:
    clock = request.app[SANDBOX_KEY].clock
    return web.json_response({"now": clock.now().isoformat(), "offset_seconds": clock.offset})


async def clock_advance(request: web.Request) -> web.Response:
    body = await _json_body(request)
    seconds = body.get("seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        return _bad_request("'seconds' must be a non-negative number")
    clock = request.app[SANDBOX_KEY].clock
    clock.advance(float(seconds))
    return web.json_response({"now": clock.now().isoformat(), "offset_seconds": clock.offset})


async def faults_add(request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        rule = FaultRule.from_json(body)
    except (TypeError, ValueError) as err:
        return _bad_request(str(err))
    request.app[SANDBOX_KEY].faults.add(rule)
    return web.json_response({"faults": len(request.app[SANDBOX_KEY].faults.rules)}, status=201)


async def faults_clear(request: web.Request) -> web.Response:
    request.app[SANDBOX_KEY].faults.clear()
    return web.json_response({"faults": 0})


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[SANDBOX_KEY].stats.as_dict())


async def accounts(request: web.Request) -> web.Response:
    provider = request.match_info["provider"]
    if provider not in ACCOUNT_SPACE:
        raise web.HTTPNotFound(
            text=json.dumps({"error": {"code": "not_found", "message": f"no provider {provider}"}}),
            content_type="application/json",
        )
    listed = request.app[SANDBOX_KEY].accounts.list(provider)
    return web.json_response({"accounts": [a.as_dict() for a in listed]})


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(config: SandboxConfig | None = None) -> web.Application:
    config = config or SandboxConfig.from_env()
    sandbox = Sandbox(seed=config.seed)
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app[SANDBOX_KEY] = sandbox
    parts: dict[str, Part] = {}
    for name, build in builders():
        part = build(sandbox, config)
        part.setup(app)
        sandbox.parts.append(part)
        parts[name] = part
    app[PARTS_KEY] = parts
    app.router.add_post("/_sandbox/reset", reset)
    app.router.add_get("/_sandbox/clock", clock_get)
    app.router.add_post("/_sandbox/clock/advance", clock_advance)
    app.router.add_post("/_sandbox/faults", faults_add)
    app.router.add_delete("/_sandbox/faults", faults_clear)
    app.router.add_get("/_sandbox/stats", stats)
    app.router.add_get("/_sandbox/healthz", healthz)
    app.router.add_get("/_sandbox/{provider}/accounts", accounts)
    return app
