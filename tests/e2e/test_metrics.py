"""Every service's own /metrics carries the figures of ARCHITECTURE §7, and they move
during a run: `syncplane up` (four real processes, embedded NATS and Postgres, the
sandbox), a Strava athlete and a Google Calendar connected through the gateway's OAuth
redirects, the backfill, an activity whose webhook the sandbox delivers to the gateway,
and a token the provider refuses (sandbox clock past its expiry) so token-service
refreshes it.

Each figure is read from the process that owns it, before and after, so a series that
only another process exports, or one that never moves, fails here."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3
from prometheus_client.parser import text_string_to_metric_families
from syncplane_devstack.devjwt import mint_token

from tests.e2e.test_devstack import SYNCPLANE, _clean_env

pytestmark = pytest.mark.e2e

HTTP = urllib3.PoolManager(timeout=urllib3.Timeout(total=5.0), retries=False)
RETURN_TO = "http://localhost:3000/settings/connections"
USER = "u-metrics"

Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Scrape:
    """One /metrics answer: every sample by name and labels."""

    samples: dict[tuple[str, Labels], float]

    def value(self, name: str, **labels: str) -> float:
        """The sum over the samples of ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def has(self, name: str, **labels: str) -> bool:
        wanted = set(labels.items())
        return any(n == name and wanted <= ls for (n, ls) in self.samples)


def scrape(url: str) -> Scrape:
    resp = HTTP.request("GET", url + "/metrics")
    assert resp.status == 200, f"{url}/metrics answered {resp.status}"
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(resp.data.decode()):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return Scrape(samples)


def wait_for(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    path = tmp_path_factory.mktemp("metrics") / "stack.json"
    try:
        up = subprocess.run(
            [str(SYNCPLANE), "up", "--detach", "--state-file", str(path)],
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert up.returncode == 0, up.stderr
        yield json.loads(path.read_text())
    finally:
        if path.exists():
            subprocess.run([str(SYNCPLANE), "down", "--state-file", str(path)], check=False)


@dataclass
class Stack:
    state: dict[str, Any]

    def url(self, service: str) -> str:
        return str(self.state["services"][service]["url"])

    def scrape(self, service: str) -> Scrape:
        return scrape(self.url(service))

    def sandbox(self, method: str, path: str, body: Any = None) -> Any:
        resp = HTTP.request(method, self.state["sandbox_url"] + path, json=body)
        assert resp.status < 300, f"{method} {path}: {resp.status} {resp.data[:300]!r}"
        return resp.json()

    def connect(self, provider: str, login_hint: str) -> None:
        """start → the provider's authorize page → callback, as the user's browser goes."""
        jwt = mint_token(self.state["dev_secrets"]["API_JWT_SECRET"], USER)
        start = HTTP.request(
            "GET",
            f"{self.state['gateway_url']}/connect/{provider}/start",
            fields={"return_to": RETURN_TO, "login_hint": login_hint},
            headers={"Authorization": f"Bearer {jwt}"},
            redirect=False,
        )
        assert start.status == 302, start.data
        authorize = HTTP.request("GET", start.headers["Location"], redirect=False)
        assert authorize.status == 302, authorize.data
        callback = HTTP.request("GET", authorize.headers["Location"], redirect=False)
        assert callback.status == 302, callback.data
        outcome = parse_qs(urlsplit(callback.headers["Location"]).query)
        assert outcome["connect"] == ["success"], outcome


def test_every_service_metrics_carry_section_7_and_move(state: dict[str, Any]) -> None:
    stack = Stack(state)
    services = ("webhook-gateway", "token-service", "sync-worker", "calendar-sync")
    before = {name: stack.scrape(name) for name in services}

    # -- the run -----------------------------------------------------------------------
    seeded = stack.sandbox(
        "POST", "/_sandbox/strava/seed", {"athletes": 1, "activities_per_athlete": 3}
    )
    athlete = seeded["athletes"][0]
    stack.connect("strava", athlete["login_hint"])

    def sync_sessions(kind: str) -> float:
        return stack.scrape("sync-worker").value(
            "syncplane_sync_sessions_total", provider="strava", kind=kind, outcome="completed"
        )

    backfills = before["sync-worker"].value(
        "syncplane_sync_sessions_total", provider="strava", kind="backfill", outcome="completed"
    )
    wait_for(lambda: sync_sessions("backfill") > backfills, 20, "the backfill on /metrics")

    # The provider stops taking the access token (its clock passes the token's expiry):
    # the webhook's refetch gets a 401 and token-service refreshes by force.
    stack.sandbox("POST", "/_sandbox/clock/advance", {"seconds": 7 * 3600})
    webhooks = sync_sessions("webhook")
    refreshes = before["token-service"].value(
        "syncplane_token_refreshes_total", provider="strava", outcome="refreshed"
    )

    def refreshed() -> float:
        return stack.scrape("token-service").value(
            "syncplane_token_refreshes_total", provider="strava", outcome="refreshed"
        )

    stack.sandbox("POST", f"/_sandbox/strava/athletes/{athlete['id']}/activities", {"generate": 1})
    wait_for(
        lambda: refreshed() > refreshes and sync_sessions("webhook") > webhooks,
        20,
        "the webhook's session, after a refresh",
    )
    # A delivery the gateway must refuse: not from our Strava subscription.
    forged = HTTP.request(
        "POST",
        f"{state['gateway_url']}/webhooks/strava",
        json={
            "aspect_type": "create",
            "event_time": int(time.time()),
            "object_id": 1,
            "object_type": "activity",
            "owner_id": athlete["id"],
            "subscription_id": int(state["dev_secrets"]["STRAVA_SUBSCRIPTION_ID"]) + 1,
            "updates": {},
        },
    )
    assert forged.status == 403

    stack.connect("google_calendar", "metrics-calendar@example.com")

    def calendar_calls() -> float:
        return stack.scrape("calendar-sync").value(
            "syncplane_provider_calls_total", provider="google_calendar"
        )

    calendar_before = before["calendar-sync"].value(
        "syncplane_provider_calls_total", provider="google_calendar"
    )
    wait_for(lambda: calendar_calls() > calendar_before, 20, "calendar-sync's Google calls")

    after = {name: stack.scrape(name) for name in services}

    def moved(service: str, name: str, **labels: str) -> float:
        assert after[service].has(name, **labels), f"{service} has no {name} {labels}"
        return after[service].value(name, **labels) - before[service].value(name, **labels)

    # -- every service: health, queue lag of the consumers it binds ------------------------
    for service in services:
        assert after[service].value("syncplane_ready", dependency="nats") == 1
        assert after[service].value("syncplane_process_start_time_seconds") > 0
    lag = ("syncplane_consumer_pending_messages", "syncplane_consumer_ack_pending_messages")
    consumed = {
        "token-service": ("token-service-deauth",),
        "sync-worker": ("sync-worker-webhooks", "sync-worker-requests", "sync-worker-lifecycle"),
        "calendar-sync": (
            "calendar-sync-webhooks",
            "calendar-sync-local",
            "calendar-sync-lifecycle",
        ),
    }
    for service, consumers in consumed.items():
        for consumer in consumers:
            for name in lag:
                assert after[service].has(name, consumer=consumer), (service, name, consumer)
    # Every Strava webhook of the run was handed to sync-worker by now (the stream itself
    # still holds them all: WEBHOOKS keeps 7 days).
    assert after["sync-worker"].value(lag[0], consumer="sync-worker-webhooks") == 0

    # -- webhook-gateway: accept / reject counts ---------------------------------------
    assert (
        moved("webhook-gateway", "syncplane_webhooks_total", provider="strava", outcome="accepted")
        >= 1
    )
    assert (
        moved("webhook-gateway", "syncplane_webhooks_total", provider="strava", outcome="rejected")
        == 1
    )
    assert (
        moved(
            "webhook-gateway",
            "syncplane_webhook_rejections_total",
            provider="strava",
            reason="unknown_subscription",
        )
        == 1
    )

    # -- token-service: refresh outcomes, its provider calls ---------------------------
    assert (
        moved(
            "token-service",
            "syncplane_token_refreshes_total",
            provider="strava",
            outcome="refreshed",
        )
        >= 1
    )
    assert (
        moved(
            "token-service",
            "syncplane_token_connections_total",
            provider="strava",
            action="connected",
        )
        == 1
    )
    for operation in ("exchange", "refresh"):
        assert (
            moved(
                "token-service",
                "syncplane_provider_calls_total",
                provider="strava",
                operation=operation,
                status="200",
            )
            >= 1
        )
        assert (
            moved(
                "token-service",
                "syncplane_provider_call_seconds_count",
                provider="strava",
                operation=operation,
            )
            >= 1
        )

    # -- sync-worker: sync outcomes and durations, provider calls and 401s, budget use ---
    assert (
        moved(
            "sync-worker",
            "syncplane_sync_sessions_total",
            provider="strava",
            kind="backfill",
            outcome="completed",
        )
        == 1
    )
    assert (
        moved(
            "sync-worker",
            "syncplane_sync_sessions_total",
            provider="strava",
            kind="webhook",
            outcome="completed",
        )
        >= 1
    )
    assert moved("sync-worker", "syncplane_sync_duration_seconds_count", provider="strava") >= 2
    assert (
        moved(
            "sync-worker",
            "syncplane_provider_calls_total",
            provider="strava",
            operation="list",
            status="200",
        )
        >= 1
    )
    assert (
        moved(
            "sync-worker",
            "syncplane_provider_calls_total",
            provider="strava",
            operation="get",
            status="401",
        )
        == 1
    )
    assert (
        moved(
            "sync-worker",
            "syncplane_provider_calls_total",
            provider="strava",
            operation="get",
            status="200",
        )
        >= 1
    )
    assert moved("sync-worker", "syncplane_provider_call_seconds_count", provider="strava") >= 3
    assert moved("sync-worker", "syncplane_provider_budget_acquired_total", provider="strava") >= 2
    assert after["sync-worker"].has("syncplane_provider_budget_used_ratio", provider="strava")
    assert (
        moved(
            "sync-worker",
            "syncplane_messages_total",
            consumer="sync-worker-webhooks",
            outcome="acked",
        )
        >= 1
    )
    assert (
        moved(
            "sync-worker",
            "syncplane_messages_total",
            consumer="sync-worker-lifecycle",
            outcome="acked",
        )
        >= 1
    )

    # -- calendar-sync: its Google calls and its consumers' outcomes ---------------------
    assert moved("calendar-sync", "syncplane_provider_calls_total", provider="google_calendar") >= 1
    assert (
        moved("calendar-sync", "syncplane_provider_call_seconds_count", provider="google_calendar")
        >= 1
    )
    assert (
        moved(
            "calendar-sync",
            "syncplane_messages_total",
            consumer="calendar-sync-lifecycle",
            outcome="acked",
        )
        >= 1
    )
