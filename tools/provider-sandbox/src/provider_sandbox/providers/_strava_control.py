"""``/_sandbox/strava/...`` control routes (ARCHITECTURE §8): seed and edit activities
(firing the webhooks Strava would fire), deauthorize athletes, mint tokens, set knobs."""

from __future__ import annotations

import random
from typing import Any

from aiohttp import web

from provider_sandbox.core import Account, Sandbox
from provider_sandbox.providers._strava_activities import (
    Activity,
    apply_fields,
    default_name,
    generate,
)
from provider_sandbox.providers._strava_common import (
    PROVIDER,
    SCOPES,
    Settings,
    control_body,
    control_error,
)
from provider_sandbox.providers._strava_limits import RateLimiter
from provider_sandbox.providers._strava_oauth import OAuth
from provider_sandbox.providers._strava_render import detailed, summary
from provider_sandbox.providers._strava_store import ActivityStore
from provider_sandbox.providers._strava_webhooks import Webhooks

BASE = "/_sandbox/strava"
MAX_GENERATE = 100_000
DEFAULT_TOKEN_SCOPES = ("read", "activity:read_all")


class Control:
    def __init__(
        self,
        sandbox: Sandbox,
        settings: Settings,
        store: ActivityStore,
        limiter: RateLimiter,
        oauth: OAuth,
        webhooks: Webhooks,
    ) -> None:
        self.sandbox = sandbox
        self.settings = settings
        self.store = store
        self.limiter = limiter
        self.oauth = oauth
        self.webhooks = webhooks

    def register(self, app: web.Application) -> None:
        router = app.router
        router.add_post(BASE + "/athletes/{athlete_id}/activities", self.create_activities)
        router.add_put(BASE + "/activities/{activity_id}", self.update_activity)
        router.add_delete(BASE + "/activities/{activity_id}", self.delete_activity)
        router.add_post(BASE + "/athletes/{athlete_id}/deauthorize", self.deauthorize)
        router.add_post(BASE + "/athletes/{athlete_id}/tokens", self.tokens)
        router.add_post(BASE + "/seed", self.seed)
        router.add_get(BASE + "/config", self.get_config)
        router.add_post(BASE + "/config", self.set_config)
        router.add_post(BASE + "/authorize_mode", self.authorize_mode)
        router.add_get(BASE + "/events", self.events)

    def _athlete(self, request: web.Request) -> Account:
        account = self.sandbox.accounts.get(PROVIDER, request.match_info["athlete_id"])
        if account is None:
            raise web.HTTPNotFound(
                text='{"error": {"code": "not_found", "message": "no such Strava athlete"}}',
                content_type="application/json",
            )
        return account

    def _activity(self, request: web.Request) -> Activity:
        raw = request.match_info["activity_id"]
        activity = self.store.by_id.get(int(raw)) if raw.isdigit() else None
        if activity is None:
            raise web.HTTPNotFound(
                text='{"error": {"code": "not_found", "message": "no such Strava activity"}}',
                content_type="application/json",
            )
        return activity

    def _generate(self, athlete_id: int, count: int) -> list[Activity]:
        # Seeded per athlete and per existing count: the same calls give the same data
        # whatever happened to other athletes in between.
        rng = random.Random(f"{self.sandbox.seed}:{athlete_id}:{self.store.count(athlete_id)}")
        big = self.settings.big_ids
        now = int(self.sandbox.clock.time())
        return generate(rng, athlete_id, count, now, lambda: self.store.new_id(big))

    def _from_partial(self, athlete_id: int, data: Any, taken: set[int]) -> Activity:
        if not isinstance(data, dict):
            raise ValueError("each activity must be an object")
        fields = dict(data)
        wanted_id = fields.pop("id", None)
        if wanted_id is not None and (
            not isinstance(wanted_id, int)
            or isinstance(wanted_id, bool)
            or wanted_id <= 0
            or wanted_id in self.store.by_id
            or wanted_id in taken
        ):
            raise ValueError(f"id {wanted_id!r} is not a free positive integer")
        activity = self._generate(athlete_id, 1)[0]
        if wanted_id is not None:
            activity.id = wanted_id
        apply_fields(activity, fields)
        if "name" not in fields:
            activity.name = default_name(activity.sport_type, activity.start, activity.city)
        taken.add(activity.id)
        return activity

    async def create_activities(self, request: web.Request) -> web.Response:
        account = self._athlete(request)
        athlete_id = int(account.id)
        body = await control_body(request)
        if "generate" in body:
            count = body["generate"]
            if (
                not isinstance(count, int)
                or isinstance(count, bool)
                or not 0 < count <= MAX_GENERATE
            ):
                return control_error(400, f"'generate' must be an integer in 1..{MAX_GENERATE}")
            created = self._generate(athlete_id, count)
        elif isinstance(body.get("activities"), list):
            taken: set[int] = set()
            try:
                created = [self._from_partial(athlete_id, d, taken) for d in body["activities"]]
            except ValueError as err:
                return control_error(400, str(err))
        else:
            return control_error(400, "expected {'generate': N} or {'activities': [...]}")
        self.store.add_many(athlete_id, created)
        for a in created:
            self.webhooks.emit_activity(a.id, athlete_id, "create", a.private, a.private)
        return web.json_response({"activities": [summary(a) for a in created]}, status=201)

    async def update_activity(self, request: web.Request) -> web.Response:
        activity = self._activity(request)
        body = await control_body(request)
        private_before = activity.private
        self.store.detach(activity)
        try:
            updates = apply_fields(activity, body)
        except ValueError as err:
            return control_error(400, str(err))
        finally:
            self.store.attach(activity)
        # Only title, type and privacy changes fire events; description, gear and the
        # rest change silently, as on Strava.
        if updates:
            self.webhooks.emit_activity(
                activity.id,
                activity.athlete_id,
                "update",
                private_before,
                activity.private,
                updates,
            )
        return web.json_response(detailed(activity))

    async def delete_activity(self, request: web.Request) -> web.Response:
        activity = self._activity(request)
        self.store.remove(activity.id)
        self.webhooks.emit_activity(
            activity.id, activity.athlete_id, "delete", activity.private, activity.private
        )
        return web.json_response({"id": activity.id, "deleted": True})

    async def deauthorize(self, request: web.Request) -> web.Response:
        account = self._athlete(request)
        killed = self.oauth.revoke(account.id, event=True)
        return web.json_response({"athlete_id": int(account.id), "tokens_revoked": killed})

    def _scopes(self, body: dict[str, Any]) -> frozenset[str]:
        scopes = body.get("scopes", list(DEFAULT_TOKEN_SCOPES))
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ValueError("scopes must be a list of strings")
        if set(scopes) - SCOPES:
            raise ValueError(f"unknown scopes: {sorted(set(scopes) - SCOPES)}")
        return frozenset(scopes)

    async def tokens(self, request: web.Request) -> web.Response:
        account = self._athlete(request)
        try:
            scopes = self._scopes(await control_body(request))
        except ValueError as err:
            return control_error(400, str(err))
        return web.json_response(self.oauth.issue(account, scopes), status=201)

    async def seed(self, request: web.Request) -> web.Response:
        body = await control_body(request)
        athletes, per_athlete = body.get("athletes"), body.get("activities_per_athlete", 0)
        first, with_tokens = body.get("first", 0), body.get("tokens", False)
        numbers = (athletes, per_athlete, first)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
            return control_error(400, "athletes, activities_per_athlete, first: integers >= 0")
        if not isinstance(with_tokens, bool):
            return control_error(400, "tokens must be a boolean")
        try:
            scopes = self._scopes(body)
        except ValueError as err:
            return control_error(400, str(err))
        out: list[dict[str, Any]] = []
        for i in range(first, first + athletes):
            account = self.sandbox.accounts.get_or_create(PROVIDER, f"athlete-{i}")
            athlete_id = int(account.id)
            if per_athlete:
                self.store.add_many(athlete_id, self._generate(athlete_id, per_athlete))
            entry: dict[str, Any] = {"id": athlete_id, "login_hint": account.login_hint}
            if with_tokens:
                issued = self.oauth.issue(account, scopes)
                entry.update(
                    {k: issued[k] for k in ("access_token", "refresh_token", "expires_at")}
                )
            out.append(entry)
        return web.json_response(
            {"athletes": out, "activities": athletes * per_athlete}, status=201
        )

    async def get_config(self, _: web.Request) -> web.Response:
        return web.json_response(self.settings.as_dict())

    async def set_config(self, request: web.Request) -> web.Response:
        try:
            self.settings.apply(await control_body(request))
        except ValueError as err:
            return control_error(400, str(err))
        self.limiter.configure(self.settings.rate_limit, self.settings.read_rate_limit)
        return web.json_response(self.settings.as_dict())

    async def authorize_mode(self, request: web.Request) -> web.Response:
        try:
            self.settings.set_authorize_mode(await control_body(request))
        except ValueError as err:
            return control_error(400, str(err))
        scopes = self.settings.authorize_scopes
        return web.json_response(
            {
                "mode": self.settings.authorize_mode,
                "scopes": None if scopes is None else sorted(scopes),
            }
        )

    async def events(self, _: web.Request) -> web.Response:
        return web.json_response({"events": list(self.webhooks.log)})
