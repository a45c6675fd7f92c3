"""WHOOP developer API emulation (PROVIDERS.md §7.2, §7.3, §7.5): per-app minute and day
windows with their headers and 429, newest-first collections with nextToken pagination and
start/end filters, single-record reads, data fidelity, and WHOOP's 400/401/404 for bad
input (never a 500)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from provider_sandbox.core import Sandbox

from tests.sandbox.conftest import Client
from tests.sandbox.test_whoop_oauth import (
    API,
    bearer,
    configure,
    generate,
    issue_token,
    user_id,
)

pytestmark = pytest.mark.service

RATE_HEADERS = {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}


async def token_for(client: Client, sandbox: Sandbox, hint: str = "ann") -> tuple[int, str]:
    user = user_id(sandbox, hint)
    return user, (await issue_token(client, user))["access_token"]


async def get(client: Client, token: str, path: str, **params: Any) -> tuple[int, Any, Any]:
    resp = await client.get(API + path, headers=bearer(token), params=params)
    body = await resp.json() if resp.content_type == "application/json" else None
    return resp.status, body, resp.headers


async def walk(client: Client, token: str, path: str, **params: Any) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = dict(params, **({"nextToken": cursor} if cursor else {}))
        status, body, _ = await get(client, token, path, **query)
        assert status == 200, body
        pages.append(body["records"])
        cursor = body.get("next_token")
        if not cursor:
            return pages


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- rate limits -----------------------------------------------------------------------


async def test_headers_on_every_response_in_whoop_format(client: Client, sandbox: Sandbox) -> None:
    _, token = await token_for(client, sandbox)
    sandbox.clock.advance(60 - sandbox.clock.time() % 60 + 1)
    answers = [
        await get(client, token, "/v2/cycle"),
        await get(client, token, "/v2/activity/sleep/" + str(uuid.uuid4())),
        await get(client, token, "/v2/cycle", limit="99"),
        await get(client, "not-a-token", "/v2/cycle"),
    ]
    assert [status for status, _, _ in answers] == [200, 404, 400, 401]
    for index, (_, _, headers) in enumerate(answers):
        assert set(headers) >= RATE_HEADERS
        assert headers["X-RateLimit-Limit"] == "100, 100;window=60, 10000;window=86400"
        assert headers["X-RateLimit-Remaining"] == str(99 - index)
        assert 1 <= int(headers["X-RateLimit-Reset"]) <= 59


async def test_minute_window_429_then_resets_on_the_clock(client: Client, sandbox: Sandbox) -> None:
    _, token = await token_for(client, sandbox)
    await configure(client, rate_limit_per_minute=5)
    sandbox.clock.advance(60 - sandbox.clock.time() % 60 + 10)
    for _ in range(5):
        assert (await get(client, token, "/v2/recovery"))[0] == 200
    status, body, headers = await get(client, token, "/v2/recovery")
    assert status == 429
    assert body["error"] == "Too Many Requests"
    assert "Retry-After" not in headers
    assert headers["X-RateLimit-Limit"] == "5, 5;window=60, 10000;window=86400"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset"] == "50"
    # Refused requests do not count; another endpoint shares the app's budget.
    assert (await get(client, token, "/v2/cycle"))[0] == 429
    stats = await (await client.get("/_sandbox/stats")).json()
    assert stats["rate_limited"] == {"whoop GET /v2/recovery": 1, "whoop GET /v2/cycle": 1}
    sandbox.clock.advance(49)
    assert (await get(client, token, "/v2/recovery"))[0] == 429
    sandbox.clock.advance(1)
    status, _, headers = await get(client, token, "/v2/recovery")
    assert status == 200
    assert headers["X-RateLimit-Remaining"] == "4"


async def test_day_window_leads_the_header_when_nearer(client: Client, sandbox: Sandbox) -> None:
    await configure(client, rate_limit_per_day=3)
    sandbox.clock.advance(86_400 - sandbox.clock.time() % 86_400 + 3600)
    _, token = await token_for(client, sandbox)
    for expected in ("2", "1", "0"):
        status, _, headers = await get(client, token, "/v2/cycle")
        assert status == 200
        assert headers["X-RateLimit-Limit"] == "3, 100;window=60, 3;window=86400"
        assert headers["X-RateLimit-Remaining"] == expected
    status, _, headers = await get(client, token, "/v2/cycle")
    assert status == 429
    assert headers["X-RateLimit-Reset"] == str(86_400 - 3600)
    sandbox.clock.advance(120)
    assert (await get(client, token, "/v2/cycle"))[0] == 429
    sandbox.clock.advance(86_400)
    _, token = await token_for(client, sandbox)
    assert (await get(client, token, "/v2/cycle"))[0] == 200


async def test_rate_limit_settings_are_validated(client: Client) -> None:
    for bad in ({"rate_limit_per_minute": 0}, {"rate_limit_per_day": "many"}, {"colour": 1}):
        resp = await client.post("/_sandbox/whoop/config", json=bad)
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "bad_request"


# -- collections -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("sleep", "/v2/activity/sleep"),
        ("cycle", "/v2/cycle"),
        ("recovery", "/v2/recovery"),
        ("workout", "/v2/activity/workout"),
    ],
)
async def test_next_token_walks_every_record_once_newest_first(
    client: Client, sandbox: Sandbox, kind: str, path: str
) -> None:
    user, token = await token_for(client, sandbox)
    await generate(client, user, kind, 53)
    pages = await walk(client, token, path, limit="25")
    assert [len(p) for p in pages] == [25, 25, 3]
    records = [r for page in pages for r in page]
    ids = [r["sleep_id"] if kind == "recovery" else r["id"] for r in records]
    assert len(set(ids)) == 53
    assert all(r["user_id"] == user for r in records)
    if kind == "recovery":
        sleeps = {
            s["id"]: s for page in await walk(client, token, "/v2/activity/sleep") for s in page
        }
        starts = [instant(sleeps[r["sleep_id"]]["start"]) for r in records]
    else:
        starts = [instant(r["start"]) for r in records]
    assert starts == sorted(starts, reverse=True)


async def test_default_limit_and_last_page_spelling(client: Client, sandbox: Sandbox) -> None:
    user, token = await token_for(client, sandbox)
    await generate(client, user, "workout", 12)
    status, body, _ = await get(client, token, "/v2/activity/workout")
    assert status == 200
    assert len(body["records"]) == 10
    assert isinstance(body["next_token"], str)
    _, last, _ = await get(client, token, "/v2/activity/workout", nextToken=body["next_token"])
    assert len(last["records"]) == 2
    assert "next_token" not in last
    await configure(client, last_page_next_token="null")
    _, last, _ = await get(client, token, "/v2/activity/workout", nextToken=body["next_token"])
    assert last["next_token"] is None
    _, empty, _ = await get(client, token, "/v2/recovery")
    assert empty == {"records": [], "next_token": None}


async def test_start_is_inclusive_and_end_exclusive(client: Client, sandbox: Sandbox) -> None:
    user, token = await token_for(client, sandbox)
    records = await generate(client, user, "sleep", 5)
    starts = sorted(r["start"] for r in records)
    _, body, _ = await get(client, token, "/v2/activity/sleep", start=starts[1], end=starts[3])
    assert [r["start"] for r in body["records"]] == [starts[2], starts[1]]
    offset = (instant(starts[4]) + timedelta(hours=-5)).astimezone(UTC).isoformat()
    _, body, _ = await get(client, token, "/v2/activity/sleep", start=offset)
    assert [r["start"] for r in body["records"]] == [starts[4]]


async def test_end_defaults_to_now(client: Client, sandbox: Sandbox) -> None:
    user, token = await token_for(client, sandbox)
    future = (sandbox.clock.now() + timedelta(hours=2)).isoformat()
    resp = await client.post(
        f"/_sandbox/whoop/users/{user}/workout", json={"records": [{"start": future}]}
    )
    assert resp.status == 201
    _, body, _ = await get(client, token, "/v2/activity/workout")
    assert body["records"] == []
    sandbox.clock.advance(3 * 3600)
    token = (await issue_token(client, user))["access_token"]
    _, body, _ = await get(client, token, "/v2/activity/workout")
    assert len(body["records"]) == 1


async def test_users_only_see_their_own_records(client: Client, sandbox: Sandbox) -> None:
    ann, ann_token = await token_for(client, sandbox, "ann")
    bob, bob_token = await token_for(client, sandbox, "bob")
    sleeps = await generate(client, ann, "sleep", 3)
    _, body, _ = await get(client, bob_token, "/v2/activity/sleep")
    assert body["records"] == []
    status, _, _ = await get(client, bob_token, "/v2/activity/sleep/" + sleeps[0]["id"])
    assert status == 404
    status, _, _ = await get(client, ann_token, "/v2/activity/sleep/" + sleeps[0]["id"])
    assert status == 200
    assert bob != ann


async def test_scopes_guard_each_collection(client: Client, sandbox: Sandbox) -> None:
    user = user_id(sandbox, "ann")
    token = (await issue_token(client, user, ["read:sleep"]))["access_token"]
    assert (await get(client, token, "/v2/activity/sleep"))[0] == 200
    for path in ("/v2/recovery", "/v2/cycle", "/v2/activity/workout", "/v2/user/profile/basic"):
        assert (await get(client, token, path))[0] == 401


# -- single records and linking --------------------------------------------------------


async def test_by_id_reads_and_links(client: Client, sandbox: Sandbox) -> None:
    user, token = await token_for(client, sandbox)
    recoveries = await generate(client, user, "recovery", 3)
    for recovery in recoveries:
        status, cycle, _ = await get(client, token, f"/v2/cycle/{recovery['cycle_id']}")
        assert status == 200
        assert cycle["id"] == recovery["cycle_id"]
        status, sleep, _ = await get(client, token, f"/v2/cycle/{cycle['id']}/sleep")
        assert status == 200
        assert sleep["id"] == recovery["sleep_id"]
        assert sleep["cycle_id"] == cycle["id"]
        assert sleep["start"] == cycle["start"]
        status, by_id, _ = await get(client, token, f"/v2/activity/sleep/{sleep['id']}")
        assert by_id == sleep
        status, found, _ = await get(client, token, f"/v2/cycle/{cycle['id']}/recovery")
        assert found == recovery
    workout = (await generate(client, user, "workout", 1))[0]
    status, found, _ = await get(client, token, f"/v2/activity/workout/{workout['id'].upper()}")
    assert (status, found) == (200, workout)
    status, mapping, _ = await get(client, token, f"/v1/activity-mapping/{workout['v1_id']}")
    assert mapping == {"v2_activity_id": workout["id"]}


async def test_cycles_run_sleep_to_sleep_and_the_newest_is_open(
    client: Client, sandbox: Sandbox
) -> None:
    user, token = await token_for(client, sandbox)
    await generate(client, user, "recovery", 4)
    _, body, _ = await get(client, token, "/v2/cycle")
    cycles = body["records"]
    assert len(cycles) == 4
    assert "end" not in cycles[0]
    for newer, older in itertools.pairwise(cycles):
        assert older["end"] == newer["start"]
    # A newer night closes the open cycle.
    sandbox.clock.advance(86_400)
    token = (await issue_token(client, user))["access_token"]
    await generate(client, user, "cycle", 1)
    _, body, _ = await get(client, token, "/v2/cycle")
    assert body["records"][1]["end"] == body["records"][0]["start"]
    assert "end" not in body["records"][0]


async def test_score_only_when_scored_and_scored_later(client: Client, sandbox: Sandbox) -> None:
    user, token = await token_for(client, sandbox)
    resp = await client.post(
        f"/_sandbox/whoop/users/{user}/sleep",
        json={"records": [{"score_state": "PENDING_SCORE"}, {"score_state": "UNSCORABLE"}]},
    )
    pending, unscorable = (await resp.json())["records"]
    assert "score" not in pending
    assert "score" not in unscorable
    _, listed, _ = await get(client, token, f"/v2/activity/sleep/{pending['id']}")
    assert listed["score_state"] == "PENDING_SCORE"
    assert "score" not in listed
    sandbox.clock.advance(600)
    resp = await client.put(
        f"/_sandbox/whoop/sleep/{pending['id']}", json={"score_state": "SCORED"}
    )
    assert resp.status == 200
    _, scored, _ = await get(client, token, f"/v2/activity/sleep/{pending['id']}")
    assert scored["score_state"] == "SCORED"
    assert scored["score"]["stage_summary"]["total_in_bed_time_milli"] > 0
    assert instant(scored["updated_at"]) > instant(pending["updated_at"])


async def test_generated_records_can_start_pending_and_score_on_the_clock(
    client: Client, sandbox: Sandbox
) -> None:
    user, token = await token_for(client, sandbox)
    await configure(client, pending_score_seconds=1800)
    recovery = (await generate(client, user, "recovery", 1))[0]
    assert recovery["score_state"] == "PENDING_SCORE"
    sandbox.clock.advance(1800)
    for _ in range(100):
        _, found, _ = await get(client, token, f"/v2/cycle/{recovery['cycle_id']}/recovery")
        if found["score_state"] == "SCORED":
            break
        await asyncio.sleep(0.02)
    assert found["score_state"] == "SCORED"
    assert 0 <= found["score"]["recovery_score"] <= 100


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/v2/cycle", {"limit": "26"}, 400),
        ("/v2/cycle", {"limit": "0"}, 400),
        ("/v2/recovery", {"limit": "ten"}, 400),
        ("/v2/activity/sleep", {"start": "yesterday"}, 400),
        ("/v2/activity/sleep", {"start": "2024-01-01"}, 400),
        ("/v2/activity/workout", {"end": "2024-13-01T00:00:00Z"}, 400),
        ("/v2/activity/workout", {"nextToken": "%%%not-base64"}, 400),
        ("/v2/activity/workout", {"nextToken": "bm8tY29sb24"}, 400),
        ("/v2/cycle/abc", {}, 400),
        ("/v2/cycle/99999999999999999999", {}, 400),
        ("/v2/cycle/123", {}, 404),
        ("/v2/cycle/123/sleep", {}, 404),
        ("/v2/cycle/123/recovery", {}, 404),
        ("/v2/activity/sleep/not-a-uuid", {}, 400),
        ("/v2/activity/sleep/" + str(uuid.UUID(int=7)), {}, 404),
        ("/v2/activity/workout/" + str(uuid.UUID(int=8)), {}, 404),
        ("/v1/activity-mapping/42", {}, 404),
    ],
)
async def test_bad_input_gets_whoop_errors_never_500(
    client: Client, sandbox: Sandbox, path: str, params: dict[str, str], status: int
) -> None:
    _, token = await token_for(client, sandbox)
    got, body, headers = await get(client, token, path, **params)
    assert got == status
    assert set(body) == {"error", "message"}
    assert body["error"] == {400: "Bad Request", 404: "Not Found"}[status]
    assert set(headers) >= RATE_HEADERS


async def test_missing_or_bad_token_is_401(client: Client) -> None:
    resp = await client.get(API + "/v2/recovery")
    assert resp.status == 401
    assert await resp.json() == {"error": "Unauthorized", "message": "Invalid authorization"}
    resp = await client.get(API + "/v2/recovery", headers={"Authorization": "Basic abc"})
    assert resp.status == 401


async def test_profile_and_body_measurement(client: Client, sandbox: Sandbox) -> None:
    user, token = await token_for(client, sandbox, "carol@example.com")
    _, profile, _ = await get(client, token, "/v2/user/profile/basic")
    assert profile["user_id"] == user
    assert profile["email"] == "carol@example.com"
    assert isinstance(profile["first_name"], str)
    assert isinstance(profile["last_name"], str)
    _, body, _ = await get(client, token, "/v2/user/measurement/body")
    assert set(body) == {"height_meter", "weight_kilogram", "max_heart_rate"}
    assert isinstance(body["max_heart_rate"], int)


async def test_calls_counted_and_faults_answered_in_whoop_shape(
    client: Client, sandbox: Sandbox
) -> None:
    user, token = await token_for(client, sandbox)
    sleep = (await generate(client, user, "sleep", 1))[0]
    await get(client, token, "/v2/recovery")
    await get(client, token, f"/v2/activity/sleep/{sleep['id']}")
    await client.post(
        "/_sandbox/faults",
        json={"provider": "whoop", "endpoint": "GET /v2/recovery", "status": 500, "count": 1},
    )
    status, body, _ = await get(client, token, "/v2/recovery")
    assert status == 500
    assert body == {
        "error": "Internal Server Error",
        "message": "Server error occurred while making request",
    }
    stats = await (await client.get("/_sandbox/stats")).json()
    assert stats["calls"]["whoop GET /v2/recovery"] == 2
    assert stats["calls"]["whoop GET /v2/activity/sleep/{sleepId}"] == 1
