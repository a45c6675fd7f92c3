"""WHOOP control routes (ARCHITECTURE §8, PROVIDERS.md §7.5) under ``/_sandbox/whoop/``:
create, change and delete records (emitting the webhooks WHOOP would send), mint tokens,
seed users, steer the consent screen, the settings and the webhook URLs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from provider_sandbox.core import Account, Handler
from provider_sandbox.providers._whoop_data import NotFound, Outcome
from provider_sandbox.providers._whoop_oauth import PROVIDER, READ_SCOPES, SCOPES, AuthorizeMode
from provider_sandbox.providers._whoop_records import KINDS

if TYPE_CHECKING:
    from provider_sandbox.providers.whoop import WhoopPart

BASE = "/_sandbox/whoop"
MAX_GENERATE = 10_000
DEFAULT_WORKOUT_RATE = 0.6


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(err: ControlError) -> web.Response:
    code = {400: "bad_request", 404: "not_found"}.get(err.status, "error")
    return web.json_response({"error": {"code": code, "message": err.message}}, status=err.status)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ControlError(400, "body is not JSON") from None
    if not isinstance(body, dict):
        raise ControlError(400, "expected a JSON object")
    return body


def _count(body: dict[str, Any], name: str, low: int, high: int, default: int | None) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ControlError(400, f"'{name}' must be an integer within [{low}, {high}]")
    return value


def _scopes(body: dict[str, Any], default: frozenset[str]) -> frozenset[str]:
    scopes = body.get("scopes")
    if scopes is None:
        return default
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ControlError(400, "'scopes' must be a list of strings")
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        raise ControlError(400, f"unknown scopes: {unknown}")
    return frozenset(scopes)


def _kind(request: web.Request) -> str:
    kind = request.match_info["type"]
    if kind not in KINDS:
        raise ControlError(404, f"no WHOOP record type {kind!r}; one of {list(KINDS)}")
    return kind


def register(app: web.Application, part: WhoopPart) -> None:
    data, oauth, sandbox = part.data, part.oauth, part.sandbox
    all_scopes = frozenset({*READ_SCOPES, "offline"})

    def user(request: web.Request) -> Account:
        account = sandbox.accounts.get(PROVIDER, request.match_info["user_id"])
        if account is None:
            raise ControlError(404, f"no WHOOP user {request.match_info['user_id']}")
        return account

    def answer(out: Outcome, status: int = 200) -> web.Response:
        events = part.webhooks.emit(out.events)
        records = [record.body for record in out.records]
        return web.json_response({"records": records, "events": events}, status=status)

    async def create(request: web.Request) -> web.Response:
        account, kind, body = user(request), _kind(request), await _body(request)
        user_id = int(account.id)
        if ("generate" in body) == ("records" in body):
            raise ControlError(400, "send either 'generate' or 'records'")
        if "generate" in body:
            count = _count(body, "generate", 1, MAX_GENERATE, None)
            return answer(data.generate(user_id, kind, count), 201)
        given = body["records"]
        if not isinstance(given, list) or not all(isinstance(r, dict) for r in given):
            raise ControlError(400, "'records' must be a list of objects")
        out = Outcome()
        try:
            for fields in given:
                out.extend(data.create(user_id, kind, fields))
        except ValueError as err:
            # Records already made stay made: announce them before refusing the rest.
            part.webhooks.emit(out.events)
            raise ControlError(400, str(err)) from None
        return answer(out, 201)

    async def update(request: web.Request) -> web.Response:
        kind, body = _kind(request), await _body(request)
        try:
            return answer(data.update(kind, request.match_info["id"].lower(), body))
        except NotFound as err:
            raise ControlError(404, str(err)) from None
        except ValueError as err:
            raise ControlError(400, str(err)) from None

    async def delete(request: web.Request) -> web.Response:
        kind = _kind(request)
        try:
            return answer(data.delete(kind, request.match_info["id"].lower()))
        except NotFound as err:
            raise ControlError(404, str(err)) from None

    async def tokens(request: web.Request) -> web.Response:
        account, body = user(request), await _body(request)
        return web.json_response(oauth.issue(account.id, _scopes(body, all_scopes)))

    async def seed(request: web.Request) -> web.Response:
        body = await _body(request)
        users = _count(body, "users", 1, MAX_GENERATE, None)
        days = _count(body, "days", 0, 3650, None)
        rate = body.get("workout_rate", DEFAULT_WORKOUT_RATE)
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate <= 1:
            raise ControlError(400, "'workout_rate' must be within [0, 1]")
        prefix = body.get("login_hint_prefix", "whoop-seed-")
        if not isinstance(prefix, str):
            raise ControlError(400, "'login_hint_prefix' must be a string")
        scopes = _scopes(body, all_scopes)
        seeded = []
        for number in range(1, users + 1):
            account = sandbox.accounts.get_or_create(PROVIDER, f"{prefix}{number}")
            user_id = int(account.id)
            part.webhooks.emit(data.generate_days(user_id, days, float(rate)).events)
            entry: dict[str, Any] = {"user_id": user_id, "login_hint": account.login_hint}
            for kind in KINDS:
                entry[kind] = data.count(user_id, kind)
            if body.get("tokens"):
                entry["token"] = oauth.issue(account.id, scopes)
            seeded.append(entry)
        return web.json_response({"users": seeded}, status=201)

    async def authorize_mode(request: web.Request) -> web.Response:
        body = await _body(request)
        mode = body.get("mode", "approve")
        if mode not in ("approve", "deny"):
            raise ControlError(400, "'mode' must be 'approve' or 'deny'")
        scopes = _scopes(body, frozenset()) if body.get("scopes") is not None else None
        oauth.state.mode = AuthorizeMode(approve=mode == "approve", scopes=scopes)
        return web.json_response(
            {"mode": mode, "scopes": None if scopes is None else sorted(scopes)}
        )

    async def settings(request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                part.settings.update(await _body(request))
            except ValueError as err:
                raise ControlError(400, str(err)) from None
        return web.json_response(part.settings.as_dict())

    async def webhook(request: web.Request) -> web.Response:
        if request.method == "PUT":
            body = await _body(request)
            urls = body["urls"] if "urls" in body else [body.get("url")]
            urls = [u for u in urls if u is not None] if isinstance(urls, list) else urls
            if not isinstance(urls, list) or not all(_is_url(u) for u in urls):
                raise ControlError(400, "'url' must be an http(s) URL or null")
            part.settings.webhook_urls = list(urls)
        return web.json_response(
            {
                "urls": part.settings.webhook_urls,
                "pending": part.webhooks.pending,
                "deliveries": list(part.webhooks.log),
            }
        )

    def guarded(handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                response: web.StreamResponse = await handler(request)
            except ControlError as err:
                return _error(err)
            return response

        return run

    router = app.router
    router.add_post(f"{BASE}/users/{{user_id}}/tokens", guarded(tokens))
    router.add_post(f"{BASE}/users/{{user_id}}/{{type}}", guarded(create))
    router.add_put(f"{BASE}/{{type}}/{{id}}", guarded(update))
    router.add_delete(f"{BASE}/{{type}}/{{id}}", guarded(delete))
    router.add_post(f"{BASE}/seed", guarded(seed))
    router.add_post(f"{BASE}/authorize_mode", guarded(authorize_mode))
    router.add_route("GET", f"{BASE}/config", guarded(settings))
    router.add_route("POST", f"{BASE}/config", guarded(settings))
    router.add_route("GET", f"{BASE}/webhook", guarded(webhook))
    router.add_route("PUT", f"{BASE}/webhook", guarded(webhook))


def _is_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
