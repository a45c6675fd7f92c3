"""Control routes of the Google Fit emulation (ARCHITECTURE §8): seed and revise days and
sessions, so that data can change after a client synced it, and the Fit settings."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from provider_sandbox.providers._google_errors import control_body, control_error
from provider_sandbox.providers._google_fit_store import (
    UserData,
    generate_day,
    generate_session,
    parse_day,
    parse_session,
)
from provider_sandbox.providers.google_oauth import GOOGLE_OAUTH_KEY

if TYPE_CHECKING:
    from provider_sandbox.providers.google_fit import GoogleFit

PROVIDER = "google_fit"
CONTROL = "/_sandbox/google_fit"
AUTH = "https://www.googleapis.com/auth/fitness."
SEED_SCOPES = [
    AUTH + "activity.read",
    AUTH + "body.read",
    AUTH + "heart_rate.read",
    AUTH + "location.read",
    AUTH + "sleep.read",
]
MAX_GENERATE = 3650


class FitControl:
    def __init__(self, part: GoogleFit) -> None:
        self.part = part

    def setup(self, app: web.Application) -> None:
        users = f"{CONTROL}/users/{{user_id}}"
        app.router.add_get(f"{users}/days", self.list_days)
        app.router.add_post(f"{users}/days", self.days)
        app.router.add_delete(f"{users}/days/{{date}}", self.delete_day)
        app.router.add_get(f"{users}/sessions", self.list_sessions)
        app.router.add_post(f"{users}/sessions", self.sessions)
        app.router.add_delete(f"{users}/sessions/{{session_id}}", self.delete_session)
        app.router.add_post(f"{CONTROL}/seed", self.seed)
        app.router.add_get(f"{CONTROL}/settings", self.settings)
        app.router.add_post(f"{CONTROL}/settings", self.settings)

    def _user(self, request: web.Request) -> tuple[str, UserData] | web.Response:
        user_id = request.match_info["user_id"]
        if self.part.sandbox.accounts.get(PROVIDER, user_id) is None:
            return control_error(f"no Google account {user_id}", 404)
        return user_id, self.part.users.setdefault(user_id, UserData())

    def generate_days(self, user: UserData, count: int) -> list[dict[str, Any]]:
        """``count`` days ending yesterday (complete days, in the users' zone)."""
        now_ms = self.part.now_ms()
        today = datetime.fromtimestamp(now_ms / 1000, self.part.zone).date()
        made = []
        for back in range(count, 0, -1):
            day = generate_day(self.part.sandbox.rng, today - timedelta(days=back), now_ms)
            user.put_day(day)
            made.append(day.as_dict())
        return made

    def generate_sessions(self, user: UserData, count: int) -> list[dict[str, Any]]:
        """One session a day for ``count`` days ending yesterday."""
        now_ms = self.part.now_ms()
        today = datetime.fromtimestamp(now_ms / 1000, self.part.zone).date()
        made = []
        for back in range(count, 0, -1):
            session = generate_session(
                self.part.sandbox.rng, today - timedelta(days=back), self.part.zone, now_ms
            )
            user.put_session(session, now_ms)
            made.append(session.as_json())
        return made

    async def list_days(self, request: web.Request) -> web.Response:
        found = self._user(request)
        if isinstance(found, web.Response):
            return found
        _, user = found
        return web.json_response({"days": [user.days[d].as_dict() for d in sorted(user.days)]})

    async def days(self, request: web.Request) -> web.Response:
        """``{"generate": N}`` or ``{"days": [...]}``: creates or revises days, so data
        can change after a client has synced it."""
        found = self._user(request)
        body = await control_body(request)
        if isinstance(found, web.Response):
            return found
        if isinstance(body, web.Response):
            return body
        user_id, user = found
        if "generate" in body:
            count = _generate_count(body)
            if count is None:
                return control_error(f"generate must be an integer in 1..{MAX_GENERATE}")
            made = self.generate_days(user, count)
            return web.json_response({"user_id": user_id, "days": made}, status=201)
        items = body.get("days")
        if not isinstance(items, list) or not items or set(body) != {"days"}:
            return control_error("expected {'generate': N} or {'days': [...]}")
        now_ms = self.part.now_ms()
        try:
            days = [parse_day(item, user.days, now_ms) for item in items]
        except ValueError as err:
            return control_error(str(err))
        for day in days:
            user.put_day(day)
        return web.json_response(
            {"user_id": user_id, "days": [d.as_dict() for d in days]}, status=201
        )

    async def delete_day(self, request: web.Request) -> web.Response:
        found = self._user(request)
        if isinstance(found, web.Response):
            return found
        _, user = found
        for day in list(user.days):
            if day.isoformat() == request.match_info["date"]:
                return web.json_response(user.days.pop(day).as_dict())
        return control_error(f"no data for {request.match_info['date']}", 404)

    async def list_sessions(self, request: web.Request) -> web.Response:
        found = self._user(request)
        if isinstance(found, web.Response):
            return found
        _, user = found
        live = [s.as_json() for s in user.sessions.values() if not s.deleted]
        return web.json_response({"sessions": live})

    async def sessions(self, request: web.Request) -> web.Response:
        found = self._user(request)
        body = await control_body(request)
        if isinstance(found, web.Response):
            return found
        if isinstance(body, web.Response):
            return body
        user_id, user = found
        if "generate" in body:
            count = _generate_count(body)
            if count is None:
                return control_error(f"generate must be an integer in 1..{MAX_GENERATE}")
            made = self.generate_sessions(user, count)
            return web.json_response({"user_id": user_id, "sessions": made}, status=201)
        items = body.get("sessions")
        if not isinstance(items, list) or not items or set(body) != {"sessions"}:
            return control_error("expected {'generate': N} or {'sessions': [...]}")
        now_ms = self.part.now_ms()
        live = {k: s for k, s in user.sessions.items() if not s.deleted}
        try:
            sessions = [
                parse_session(item, live, f"{now_ms}-{self.part.sandbox.rng.getrandbits(32):08x}")
                for item in items
            ]
        except ValueError as err:
            return control_error(str(err))
        for session in sessions:
            user.put_session(session, now_ms)
        return web.json_response(
            {"user_id": user_id, "sessions": [s.as_json() for s in sessions]}, status=201
        )

    async def delete_session(self, request: web.Request) -> web.Response:
        found = self._user(request)
        if isinstance(found, web.Response):
            return found
        _, user = found
        deleted = user.delete_session(request.match_info["session_id"], self.part.now_ms())
        if deleted is None:
            return control_error(f"no session {request.match_info['session_id']}", 404)
        return web.json_response(deleted.as_json())

    async def seed(self, request: web.Request) -> web.Response:
        """``{"users": N, "days": D, "sessions": S?, "tokens": bool?}``: N new accounts
        with D generated days (and S sessions) each, with tokens when asked."""
        body = await control_body(request)
        if isinstance(body, web.Response):
            return body
        unknown = set(body) - {"users", "days", "sessions", "tokens"}
        users, days, sessions = (body.get(k, 0) for k in ("users", "days", "sessions"))
        tokens = body.get("tokens", False)
        if (
            unknown
            or not _int_in(users, 1, 100_000)
            or not _int_in(days, 0, MAX_GENERATE)
            or not _int_in(sessions, 0, MAX_GENERATE)
            or not isinstance(tokens, bool)
        ):
            return control_error(
                "expected {'users': 1..100000, 'days': 0..3650, 'sessions'?: 0..3650, "
                "'tokens'?: bool}"
            )
        oauth = request.app[GOOGLE_OAUTH_KEY]
        seeded = []
        for _ in range(users):
            account = self.part.sandbox.accounts.get_or_create(PROVIDER)
            user = self.part.users.setdefault(account.id, UserData())
            self.generate_days(user, days)
            self.generate_sessions(user, sessions)
            entry: dict[str, Any] = {"id": account.id, "days": days, "sessions": sessions}
            if tokens:
                entry["token"] = oauth.mint(account.id, SEED_SCOPES)
            seeded.append(entry)
        return web.json_response({"users": seeded}, status=201)

    async def settings(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await control_body(request)
            if isinstance(body, web.Response):
                return body
            try:
                self.part.settings.update(body)
            except ValueError as err:
                return control_error(str(err))
        return web.json_response(self.part.settings.as_dict())


def _int_in(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _generate_count(body: dict[str, Any]) -> int | None:
    count = body.get("generate")
    if (
        set(body) != {"generate"}
        or not isinstance(count, int)
        or not _int_in(count, 1, MAX_GENERATE)
    ):
        return None
    return count
