"""Strava API v3 and OAuth as the sandbox serves them (PROVIDERS.md §3, checklist §3.5).

Served paths (prefixes from ``config.PREFIXES``):

- ``/strava/oauth/authorize``, ``/strava/oauth/mobile/authorize``: auto-approve as the
  athlete named by ``login_hint`` (created if new; else a new athlete), redirecting with
  ``code``, the granted ``scope`` and ``state``. ``sandbox_decision=deny`` and
  ``sandbox_scopes=a,b`` (query) override the authorize mode for one request.
- ``/strava/oauth/token`` and ``/strava/api/v3/oauth/token``, ``/strava/oauth/deauthorize``.
- ``/strava/api/v3/athlete/activities``, ``/activities/{id}``, ``/push_subscriptions``
  (``GET``, ``POST``, ``DELETE /{id}``). Every request to these counts against the app's
  limits (401s and 429s too) and carries the four ``X-RateLimit-*`` /
  ``X-ReadRateLimit-*`` headers; injected faults carry them without counting. The OAuth
  endpoints are not rate limited.

Control routes under ``/_sandbox/strava``:

- ``POST /athletes/{id}/activities`` ``{"generate": N}`` or ``{"activities": [partial,...]}``
  → 201 ``{"activities": [SummaryActivity...]}``; fires ``create`` events.
- ``PUT /activities/{id}`` (partial fields; ``update`` events only for name/type/private),
  ``DELETE /activities/{id}`` (``delete`` event).
- ``POST /athletes/{id}/deauthorize``: kills the tokens, fires ``authorized: "false"``.
- ``POST /athletes/{id}/tokens`` ``{"scopes": [...]}`` → the code-exchange body.
- ``POST /seed`` ``{"athletes": N, "activities_per_athlete": M, "first": 0, "tokens": false,
  "scopes": [...]}``: athletes ``athlete-<i>``, answered as ``{"athletes": [{"id",
  "login_hint", ...tokens}], "activities": N*M}``; fires no events.
- ``POST /authorize_mode`` ``{"mode": "approve"|"deny", "scopes": [...]|null}``: how the
  athlete answers the consent screen (``scopes``: the boxes left ticked).
- ``GET|POST /config``: ``rotation`` (``always``/``never``/``random``, default random with
  ``rotation_probability`` 0.5), ``rate_limit`` / ``read_rate_limit`` (``[15 min, daily]``,
  default 200,2000 / 100,1000), ``code_ttl_seconds`` (600), ``callback_domain``
  (``localhost``; localhost and 127.0.0.1 are always allowed), ``short_pages`` (P >= 2:
  one empty slot every P page slots, so pages run short mid-stream; 0 off), ``big_ids``
  (new activity ids past 2^53), ``after_ascending`` (oldest first when only ``after`` is
  given; off), ``retry_gap_seconds`` (1.0), ``delivery_timeout_seconds`` and
  ``validation_timeout_seconds`` (2.0), ``duplicate_rate`` (0: chance an event is sent
  twice), ``deauthorize_event`` (true: ``/oauth/deauthorize`` also fires the athlete
  event), ``private_switch_as_delete`` (false), ``events_require_authorization`` (true:
  events only for athletes whose authorization holds activity scopes).
- ``GET /events``: the last 1,000 events and the outcome of each delivery attempt.

Webhook faults: ``{"provider": "strava", "endpoint": "webhook", "drop": true}`` drops an
event, ``latency_ms`` delays it. Environment: ``SANDBOX_STRAVA_ROTATION``,
``SANDBOX_STRAVA_RATE_LIMIT`` ("200,2000"), ``SANDBOX_STRAVA_READ_RATE_LIMIT``,
``SANDBOX_STRAVA_CALLBACK_DOMAIN``, ``SANDBOX_STRAVA_BIG_IDS``,
``SANDBOX_STRAVA_RETRY_GAP_SECONDS``.
"""

from __future__ import annotations

from aiohttp import web

from provider_sandbox.config import SandboxConfig
from provider_sandbox.core import Sandbox
from provider_sandbox.providers._strava_api import Api
from provider_sandbox.providers._strava_common import PROVIDER, Settings
from provider_sandbox.providers._strava_control import Control
from provider_sandbox.providers._strava_limits import RateLimiter
from provider_sandbox.providers._strava_oauth import OAuth
from provider_sandbox.providers._strava_store import ActivityStore
from provider_sandbox.providers._strava_webhooks import Webhooks


class StravaPart:
    name = PROVIDER

    def __init__(self, sandbox: Sandbox, config: SandboxConfig) -> None:
        self.defaults = Settings.from_env(config.extra)
        self.settings = self.defaults.copy()
        self.store = ActivityStore()
        self.limiter = RateLimiter(self.settings.rate_limit, self.settings.read_rate_limit)
        self.webhooks = Webhooks(sandbox, self.settings, self._scopes_of)
        self.oauth = OAuth(sandbox, config.strava, self.settings, self.webhooks)
        self.api = Api(
            sandbox, config.strava, self.settings, self.store, self.limiter, self.webhooks
        )
        self.control = Control(
            sandbox, self.settings, self.store, self.limiter, self.oauth, self.webhooks
        )

    def _scopes_of(self, athlete_id: int) -> frozenset[str] | None:
        return self.oauth.authorizations.get(str(athlete_id))

    def reset(self) -> None:
        self.settings.restore(self.defaults)
        self.store.reset()
        self.limiter.reset()
        self.limiter.configure(self.settings.rate_limit, self.settings.read_rate_limit)
        self.oauth.reset()
        self.webhooks.reset()

    def setup(self, app: web.Application) -> None:
        self.api.register(app)
        self.oauth.register(app)
        self.control.register(app)
        app.on_cleanup.append(self._cleanup)

    async def _cleanup(self, _: web.Application) -> None:
        await self.webhooks.close()


def build(sandbox: Sandbox, config: SandboxConfig) -> StravaPart:
    return StravaPart(sandbox, config)
