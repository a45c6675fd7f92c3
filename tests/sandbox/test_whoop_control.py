"""WHOOP control routes (ARCHITECTURE §8, PROVIDERS.md §7.5): deterministic generation,
records from given fields and their links, changes and deletions, direct tokens, bulk
seeding, settings, reset, and their 400/404 answers."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
from provider_sandbox.core import Sandbox

from tests.sandbox.conftest import Client
from tests.sandbox.test_whoop_oauth import API, bearer, generate, issue_token, user_id

pytestmark = pytest.mark.service


async def create(client: Client, user: int, kind: str, body: dict[str, Any]) -> tuple[int, Any]:
    resp = await client.post(f"/_sandbox/whoop/users/{user}/{kind}", json=body)
    return resp.status, await resp.json()


async def listed(client: Client, user: int, path: str) -> list[dict[str, Any]]:
    token = (await issue_token(client, user))["access_token"]
    resp = await client.get(API + path, headers=bearer(token), params={"limit": "25"})
    assert resp.status == 200
    records: list[dict[str, Any]] = (await resp.json())["records"]
    return records


async def test_generation_is_deterministic_per_seed(
    client: Client, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A record cannot be created after "now", so the newest night's created_at is clamped
    # to the clock; pin the clock or the two runs differ by the milliseconds between them.
    frozen = sandbox.clock.time()
    monkeypatch.setattr(sandbox.clock, "time", lambda: frozen)

    async def run() -> list[dict[str, Any]]:
        user = user_id(sandbox, "det")
        made = await generate(client, user, "recovery", 3)
        made += await generate(client, user, "workout", 2)
        return made

    first = await run()
    assert (await client.post("/_sandbox/reset")).status == 200
    assert await run() == first


async def test_generated_nights_are_consistent(client: Client, sandbox: Sandbox) -> None:
    user = user_id(sandbox, "nights")
    await client.post("/_sandbox/whoop/config", json={"unscorable_rate": 0.0})
    recoveries = await generate(client, user, "recovery", 7)
    sleeps = {s["id"]: s for s in await listed(client, user, "/v2/activity/sleep")}
    cycles = {c["id"]: c for c in await listed(client, user, "/v2/cycle")}
    assert len(sleeps) == len(cycles) == 7
    for recovery in recoveries:
        sleep = sleeps[recovery["sleep_id"]]
        assert sleep["cycle_id"] == recovery["cycle_id"]
        assert cycles[sleep["cycle_id"]]["start"] == sleep["start"]
        start, end = datetime.fromisoformat(sleep["start"]), datetime.fromisoformat(sleep["end"])
        assert timedelta(hours=5) < end - start < timedelta(hours=10)
        stages = sleep["score"]["stage_summary"]
        assert stages["total_in_bed_time_milli"] == (end - start) // timedelta(milliseconds=1)
        assert datetime.fromisoformat(recovery["created_at"]) >= end
    # Seven consecutive nights: each sleep starts about a day after the previous one.
    starts = sorted(datetime.fromisoformat(s["start"]) for s in sleeps.values())
    for before, after in itertools.pairwise(starts):
        assert timedelta(hours=20) < after - before < timedelta(hours=28)
    # More of the same kind goes further back instead of duplicating nights.
    older = await generate(client, user, "sleep", 2)
    assert all(datetime.fromisoformat(s["start"]) < starts[0] for s in older)


async def test_records_from_given_fields_link_by_time(client: Client, sandbox: Sandbox) -> None:
    user = user_id(sandbox, "given")
    cycle = (await generate(client, user, "cycle", 1))[0]
    start = datetime.fromisoformat(cycle["start"])
    nap_start = (start + timedelta(hours=16)).isoformat()
    status, body = await create(
        client,
        user,
        "sleep",
        {"records": [{"start": nap_start, "nap": True, "timezone_offset": "-07:00"}]},
    )
    assert status == 201
    nap = body["records"][0]
    assert nap["cycle_id"] == cycle["id"]
    assert nap["nap"] is True
    assert nap["timezone_offset"] == "-07:00"
    status, body = await create(client, user, "recovery", {"records": [{"sleep_id": nap["id"]}]})
    assert status == 400
    assert "nap" in body["error"]["message"]
    status, body = await create(client, user, "sleep", {"records": [{"cycle_id": cycle["id"]}]})
    main = body["records"][0]
    assert (main["cycle_id"], main["start"]) == (cycle["id"], cycle["start"])
    status, body = await create(
        client,
        user,
        "recovery",
        {"records": [{"sleep_id": main["id"], "score": {"recovery_score": 12.0}}]},
    )
    assert status == 201
    assert body["records"][0]["score"]["recovery_score"] == 12.0
    status, body = await create(client, user, "recovery", {"records": [{"sleep_id": main["id"]}]})
    assert status == 400


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"generate": 0},
        {"generate": 10_001},
        {"generate": "3"},
        {"generate": 1, "records": []},
        {"records": {"start": "x"}},
        {"records": [{"colour": "red"}]},
        {"records": [{"start": "tomorrow"}]},
        {"records": [{"start": "2024-05-01T10:00:00"}]},
        {"records": [{"start": "2024-05-01T10:00:00Z", "end": "2024-05-01T09:00:00Z"}]},
        {"records": [{"score_state": "DONE"}]},
        {"records": [{"timezone_offset": "CET"}]},
        {"records": [{"score": 5}]},
    ],
)
async def test_create_refuses_bad_bodies(client: Client, sandbox: Sandbox, body: Any) -> None:
    status, answer = await create(client, user_id(sandbox, "bad"), "workout", body)
    assert status == 400
    assert answer["error"]["code"] == "bad_request"


async def test_create_refuses_foreign_links(client: Client, sandbox: Sandbox) -> None:
    ann, bob = user_id(sandbox, "ann"), user_id(sandbox, "bob")
    sleep = (await generate(client, ann, "sleep", 1))[0]
    status, _ = await create(client, bob, "recovery", {"records": [{"sleep_id": sleep["id"]}]})
    assert status == 400
    status, _ = await create(client, bob, "sleep", {"records": [{"cycle_id": sleep["cycle_id"]}]})
    assert status == 400


async def test_unknown_users_types_and_ids_are_404(client: Client, sandbox: Sandbox) -> None:
    assert (await create(client, 424242, "sleep", {"generate": 1}))[0] == 404
    assert (await create(client, user_id(sandbox, "x"), "strain", {"generate": 1}))[0] == 404
    for method in (client.put, client.delete):
        assert (
            await method("/_sandbox/whoop/sleep/00000000-0000-4000-8000-000000000000")
        ).status == 404
        assert (await method("/_sandbox/whoop/cycle/1")).status == 404
        assert (await method("/_sandbox/whoop/day/1")).status == 404
    resp = await client.post("/_sandbox/whoop/users/424242/tokens", json={})
    assert resp.status == 404


async def test_update_changes_fields_and_keeps_order(client: Client, sandbox: Sandbox) -> None:
    user = user_id(sandbox, "mover")
    recoveries = await generate(client, user, "recovery", 3)
    oldest = recoveries[-1]
    sleeps = await listed(client, user, "/v2/activity/sleep")
    newest_start = datetime.fromisoformat(sleeps[0]["start"])
    moved = newest_start + timedelta(hours=1)
    path = f"/_sandbox/whoop/sleep/{oldest['sleep_id']}"
    backwards = await client.put(path, json={"start": moved.isoformat()})
    assert backwards.status == 400
    assert "end" in (await backwards.json())["error"]["message"]
    resp = await client.put(
        path,
        json={
            "start": moved.isoformat(),
            "end": (moved + timedelta(hours=7)).isoformat(),
            "score_state": "UNSCORABLE",
        },
    )
    assert resp.status == 200
    updated = (await resp.json())["records"][0]
    assert "score" not in updated
    assert updated["score_state"] == "UNSCORABLE"
    assert (await listed(client, user, "/v2/activity/sleep"))[0]["id"] == oldest["sleep_id"]
    # The recovery sorts by its sleep's start, so it moves too.
    assert (await listed(client, user, "/v2/recovery"))[0]["sleep_id"] == oldest["sleep_id"]
    bad = await client.put(f"/_sandbox/whoop/sleep/{oldest['sleep_id']}", json={"cycle_id": 1})
    assert bad.status == 400
    garbage = await client.put(f"/_sandbox/whoop/sleep/{oldest['sleep_id']}", data=b"{nope")
    assert garbage.status == 400


async def test_deleting_a_cycle_takes_its_sleep_and_recovery(
    client: Client, sandbox: Sandbox
) -> None:
    user = user_id(sandbox, "cascade")
    recovery = (await generate(client, user, "recovery", 1))[0]
    resp = await client.delete(f"/_sandbox/whoop/cycle/{recovery['cycle_id']}")
    assert resp.status == 200
    assert (await resp.json())["records"][0]["id"] == recovery["cycle_id"]
    for path in ("/v2/cycle", "/v2/activity/sleep", "/v2/recovery"):
        assert await listed(client, user, path) == []


async def test_tokens_route_answers_a_token_response(client: Client, sandbox: Sandbox) -> None:
    user = user_id(sandbox, "tok")
    full = await issue_token(client, user)
    assert full["expires_in"] == 3600
    assert full["token_type"] == "bearer"
    assert "offline" in full["scope"].split()
    assert full["refresh_token"]
    narrow = await issue_token(client, user, ["read:cycles"])
    assert "refresh_token" not in narrow
    assert narrow["scope"] == "read:cycles"
    bad = await client.post(f"/_sandbox/whoop/users/{user}/tokens", json={"scopes": ["write:all"]})
    assert bad.status == 400


async def test_seed_creates_users_with_days_of_data(client: Client, sandbox: Sandbox) -> None:
    resp = await client.post("/_sandbox/whoop/seed", json={"users": 3, "days": 10, "tokens": True})
    assert resp.status == 201
    users = (await resp.json())["users"]
    assert len(users) == 3
    for entry in users:
        assert entry["cycle"] == entry["sleep"] == entry["recovery"] == 10
        assert 0 < entry["workout"] <= 10
        token = entry["token"]["access_token"]
        page = await client.get(API + "/v2/recovery", headers=bearer(token), params={"limit": "25"})
        assert len((await page.json())["records"]) == 10
    again = await (await client.post("/_sandbox/whoop/seed", json={"users": 1, "days": 12})).json()
    assert again["users"][0]["user_id"] == users[0]["user_id"]
    assert again["users"][0]["recovery"] == 12
    for bad in ({"users": 0, "days": 1}, {"users": 1}, {"users": 1, "days": 1, "workout_rate": 2}):
        assert (await client.post("/_sandbox/whoop/seed", json=bad)).status == 400


async def test_reset_clears_whoop_state(client: Client, sandbox: Sandbox) -> None:
    await client.post("/_sandbox/whoop/config", json={"rate_limit_per_minute": 7})
    await client.post("/_sandbox/whoop/seed", json={"users": 1, "days": 2})
    await client.post("/_sandbox/reset")
    settings = await (await client.get("/_sandbox/whoop/config")).json()
    assert settings["rate_limit_per_minute"] == 100
    user = user_id(sandbox, "whoop-seed-1")
    assert await listed(client, user, "/v2/cycle") == []
