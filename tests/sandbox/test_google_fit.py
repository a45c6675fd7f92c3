"""Google Fit emulation (PROVIDERS.md §6.4): bearer check, dataset:aggregate validation and
buckets, sessions.list filters and sync cursor, usage limits, turndown, control routes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from aiohttp import ClientResponse
from provider_sandbox.core import Sandbox
from provider_sandbox.providers.google_fit import FitSettings

from tests.provider_payloads import PAYLOADS
from tests.sandbox.conftest import Client
from tests.sandbox.test_google_oauth import assert_shape

pytestmark = pytest.mark.service

API = "/google/fitness/v1/users/me"
AUTH = "https://www.googleapis.com/auth/fitness."
ALL_SCOPES = [AUTH + k for k in ("activity.read", "location.read", "heart_rate.read", "sleep.read")]
STEPS = "com.google.step_count.delta"
CALORIES = "com.google.calories.expended"
DISTANCE = "com.google.distance.delta"
HEART = "com.google.heart_rate.bpm"
ACTIVE = "com.google.active_minutes"
DAY_MS = 86_400_000
GMS = "com.google.android.gms"


@dataclass
class FitUser:
    id: str
    headers: dict[str, str]


async def make_user(client: Client, scopes: list[str] | None = None) -> FitUser:
    account = await (await client.post("/_sandbox/google/accounts", json={})).json()
    resp = await client.post(
        f"/_sandbox/google/accounts/{account['id']}/tokens",
        json={"scopes": scopes or ALL_SCOPES},
    )
    token = await resp.json()
    return FitUser(account["id"], {"Authorization": f"Bearer {token['access_token']}"})


@pytest.fixture
async def user(client: Client) -> FitUser:
    return await make_user(client)


def day_start_ms(day: date) -> int:
    return int(datetime.combine(day, time(0), tzinfo=UTC).timestamp() * 1000)


def days_ago(sandbox: Sandbox, n: int) -> date:
    return sandbox.clock.now().date() - timedelta(days=n)


async def put_days(client: Client, user: FitUser, days: list[dict[str, Any]]) -> ClientResponse:
    return await client.post(f"/_sandbox/google_fit/users/{user.id}/days", json={"days": days})


def aggregate_body(types: list[str], start: int, end: int, **bucketing: Any) -> dict[str, Any]:
    return {
        "aggregateBy": [{"dataTypeName": t} for t in types],
        **(bucketing or {"bucketByTime": {"durationMillis": DAY_MS}}),
        "startTimeMillis": start,
        "endTimeMillis": end,
    }


async def aggregate(client: Client, user: FitUser, body: Any) -> ClientResponse:
    return await client.post(f"{API}/dataset:aggregate", json=body, headers=user.headers)


async def google_error(resp: ClientResponse, status: int) -> dict[str, Any]:
    """Assert the googleapis.com envelope; return its single ``errors[]`` item."""
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == status
    assert isinstance(body["error"]["message"], str)
    assert len(body["error"]["errors"]) == 1
    item: dict[str, Any] = body["error"]["errors"][0]
    return item


def values(dataset: dict[str, Any]) -> list[float]:
    [point] = dataset["point"]
    return [v.get("intVal", v.get("fpVal")) for v in point["value"]]


DAY_VALUES = {
    "steps": 8000,
    "calories": 2100.5,
    "distance": 6000.0,
    "heart_rate": {"avg": 70, "min": 52, "max": 150},
    "active_minutes": 45,
}


# -- auth ---------------------------------------------------------------------------------------


async def test_bearer_check_and_user_id_me(client: Client, sandbox: Sandbox, user: FitUser) -> None:
    missing = await client.get(f"{API}/sessions")
    assert (await google_error(missing, 401))["reason"] == "required"
    garbage = await client.get(f"{API}/sessions", headers={"Authorization": "Bearer nope"})
    assert (await google_error(garbage, 401))["reason"] == "authError"
    other = await client.get("/google/fitness/v1/users/12345/sessions", headers=user.headers)
    await google_error(other, 403)
    body = aggregate_body([STEPS], 0, DAY_MS)
    other_agg = await client.post(
        "/google/fitness/v1/users/12345/dataset:aggregate", json=body, headers=user.headers
    )
    await google_error(other_agg, 403)
    calendar_only = await make_user(client, ["https://www.googleapis.com/auth/calendar"])
    narrow = await client.get(f"{API}/sessions", headers=calendar_only.headers)
    assert (await google_error(narrow, 403))["reason"] == "insufficientPermissions"
    assert (await client.get(f"{API}/sessions", headers=user.headers)).status == 200
    sandbox.clock.advance(3600)
    expired = await client.get(f"{API}/sessions", headers=user.headers)
    assert (await google_error(expired, 401))["reason"] == "authError"


async def test_revoked_token_gets_401(client: Client, user: FitUser) -> None:
    await client.post(f"/_sandbox/google/accounts/{user.id}/revoke")
    resp = await client.get(f"{API}/sessions", headers=user.headers)
    assert (await google_error(resp, 401))["reason"] == "authError"


async def test_each_data_type_needs_its_scope(client: Client) -> None:
    steps_only = await make_user(client, [AUTH + "activity.read"])
    ok = await aggregate(client, steps_only, aggregate_body([STEPS, ACTIVE], 0, DAY_MS))
    assert ok.status == 200
    heart = await aggregate(client, steps_only, aggregate_body([STEPS, HEART], 0, DAY_MS))
    assert (await google_error(heart, 403))["reason"] == "insufficientPermissions"


# -- dataset:aggregate ------------------------------------------------------------------------


async def test_daily_buckets_carry_each_type_with_its_value_kind(
    client: Client, sandbox: Sandbox, user: FitUser
) -> None:
    first = days_ago(sandbox, 3)
    await put_days(
        client,
        user,
        [{"date": (first + timedelta(days=n)).isoformat(), **DAY_VALUES} for n in range(2)],
    )
    start = day_start_ms(first)
    resp = await aggregate(
        client,
        user,
        aggregate_body([STEPS, CALORIES, DISTANCE, HEART, ACTIVE], start, start + 3 * DAY_MS),
    )
    assert resp.status == 200
    buckets = (await resp.json())["bucket"]
    assert [(b["startTimeMillis"], b["endTimeMillis"]) for b in buckets] == [
        (str(start + n * DAY_MS), str(start + (n + 1) * DAY_MS)) for n in range(3)
    ]
    steps, calories, distance, heart, active = buckets[0]["dataset"]
    assert steps["dataSourceId"] == f"derived:{STEPS}:{GMS}:aggregated"
    assert heart["dataSourceId"] == f"derived:com.google.heart_rate.summary:{GMS}:aggregated"
    assert steps["point"][0]["value"] == [{"intVal": 8000, "mapVal": []}]
    assert values(calories) == [pytest.approx(2100.5)]
    assert values(distance) == [pytest.approx(6000.0)]
    assert isinstance(distance["point"][0]["value"][0]["fpVal"], float)
    assert values(heart) == [70, 150, 52]  # average, maximum, minimum
    assert heart["point"][0]["dataTypeName"] == "com.google.heart_rate.summary"
    assert values(active) == [45]
    point = steps["point"][0]
    for field in ("startTimeNanos", "endTimeNanos"):
        assert isinstance(point[field], str)
        assert start * 10**6 <= int(point[field]) <= (start + DAY_MS) * 10**6
    # No data on the third day: the bucket is still there, with empty datasets.
    assert [d["point"] for d in buckets[2]["dataset"]] == [[]] * 5
    assert [d["dataSourceId"] for d in buckets[2]["dataset"]] == [
        d["dataSourceId"] for d in buckets[0]["dataset"]
    ]


async def test_revised_day_returns_the_new_values(
    client: Client, sandbox: Sandbox, user: FitUser
) -> None:
    day = days_ago(sandbox, 2)
    await put_days(client, user, [{"date": day.isoformat(), **DAY_VALUES}])
    body = aggregate_body([STEPS, HEART], day_start_ms(day), day_start_ms(day) + DAY_MS)
    before = (await (await aggregate(client, user, body)).json())["bucket"][0]["dataset"]
    assert values(before[0]) == [8000]
    resp = await put_days(client, user, [{"date": day.isoformat(), "steps": 9100}])
    assert resp.status == 201
    revised = (await resp.json())["days"][0]
    assert revised["steps"] == 9100
    assert revised["heart_rate"] == DAY_VALUES["heart_rate"]  # fields left out are kept
    after = (await (await aggregate(client, user, body)).json())["bucket"][0]["dataset"]
    assert values(after[0]) == [9100]
    assert values(after[1]) == values(before[1])
    deleted = await client.delete(f"/_sandbox/google_fit/users/{user.id}/days/{day.isoformat()}")
    assert deleted.status == 200
    gone = (await (await aggregate(client, user, body)).json())["bucket"][0]["dataset"]
    assert gone[0]["point"] == []


async def test_hourly_buckets_and_the_last_bucket_cut_at_end(
    client: Client, sandbox: Sandbox, user: FitUser
) -> None:
    day = days_ago(sandbox, 1)
    await put_days(client, user, [{"date": day.isoformat(), "steps": 1000}])
    start = day_start_ms(day)
    end = start + DAY_MS - 1_800_000  # 23:30
    body = aggregate_body([STEPS], start, end, bucketByTime={"durationMillis": "3600000"})
    buckets = (await (await aggregate(client, user, body)).json())["bucket"]
    assert len(buckets) == 24
    assert buckets[-1]["startTimeMillis"] == str(start + 23 * 3_600_000)
    assert buckets[-1]["endTimeMillis"] == str(end)
    per_hour = [values(b["dataset"][0])[0] if b["dataset"][0]["point"] else 0 for b in buckets]
    assert sum(per_hour) == 1000
    assert per_hour.count(0) > 12  # nobody walks around the clock


async def test_period_buckets_follow_the_time_zone(
    client: Client, sandbox: Sandbox, user: FitUser
) -> None:
    start = day_start_ms(days_ago(sandbox, 10)) - 3_600_000  # midnight in Berlin (CET)
    body = aggregate_body(
        [STEPS],
        start,
        start + 7 * DAY_MS,
        bucketByTime={"period": {"type": "day", "value": 1, "timeZoneId": "Europe/Berlin"}},
    )
    resp = await aggregate(client, user, body)
    assert resp.status == 200
    buckets = (await resp.json())["bucket"]
    assert len(buckets) == 7
    assert all(int(b["endTimeMillis"]) - int(b["startTimeMillis"]) == DAY_MS for b in buckets)
    bad_zone = {
        **body,
        "bucketByTime": {"period": {"type": "day", "value": 1, "timeZoneId": "Mars/Olympus"}},
    }
    await google_error(await aggregate(client, user, bad_zone), 400)
    weekly = {**body, "bucketByTime": {"period": {"type": "week", "value": 1, "timeZoneId": "UTC"}}}
    assert len((await (await aggregate(client, user, weekly)).json())["bucket"]) == 1


async def test_span_over_90_days_is_rejected(client: Client, user: FitUser) -> None:
    limit = 7_776_000_000
    ok = await aggregate(client, user, aggregate_body([STEPS], 0, limit))
    assert ok.status == 200
    assert len((await ok.json())["bucket"]) == 90
    too_long = await aggregate(client, user, aggregate_body([STEPS], 0, limit + 1))
    item = await google_error(too_long, 400)
    assert item["reason"] == "invalidArgument"
    assert (await too_long.json())["error"]["status"] == "INVALID_ARGUMENT"


async def test_zero_or_several_bucketing_options_are_rejected(
    client: Client, user: FitUser
) -> None:
    base = {"aggregateBy": [{"dataTypeName": STEPS}], "startTimeMillis": 0, "endTimeMillis": DAY_MS}
    await google_error(await aggregate(client, user, base), 400)
    several = {
        **base,
        "bucketByTime": {"durationMillis": DAY_MS},
        "bucketBySession": {"minDurationMillis": 0},
    }
    await google_error(await aggregate(client, user, several), 400)
    both = {**base, "bucketByTime": {"durationMillis": DAY_MS, "period": {"type": "day"}}}
    await google_error(await aggregate(client, user, both), 400)
    no_type = {**base, "aggregateBy": [], "bucketByTime": {"durationMillis": DAY_MS}}
    item = await google_error(await aggregate(client, user, no_type), 400)
    assert item["message"] == "Require at least one aggregateby"


async def test_google_request_sample_is_accepted(client: Client, user: FitUser) -> None:
    sample = json.loads((PAYLOADS / "gfit_aggregate_request.json").read_text())
    resp = await aggregate(client, user, sample)
    assert resp.status == 200
    buckets = (await resp.json())["bucket"]
    span = sample["endTimeMillis"] - sample["startTimeMillis"]
    assert len(buckets) == -(-span // sample["bucketByTime"]["durationMillis"])


async def test_response_matches_the_real_sample_shape(
    client: Client, sandbox: Sandbox, user: FitUser
) -> None:
    example = json.loads((PAYLOADS / "gfit_aggregate_response.json").read_text())
    day = days_ago(sandbox, 1)
    await put_days(client, user, [{"date": day.isoformat(), "steps": 736, "distance": 575.29}])
    body = aggregate_body(
        [STEPS, "com.google.weight", DISTANCE], day_start_ms(day), day_start_ms(day) + DAY_MS
    )
    resp = await aggregate(client, user, body)
    scoped = await aggregate(client, await _same_user(client, user, AUTH + "body.read"), body)
    assert resp.status == 403  # weight needs a body scope
    assert scoped.status == 200
    ours = await scoped.json()
    assert_shape(ours, example)
    assert ours["bucket"][0]["dataset"][1] == {
        "dataSourceId": f"derived:com.google.weight.summary:{GMS}:aggregated",
        "point": [],
    }


async def _same_user(client: Client, user: FitUser, extra_scope: str) -> FitUser:
    resp = await client.post(
        f"/_sandbox/google/accounts/{user.id}/tokens", json={"scopes": [*ALL_SCOPES, extra_scope]}
    )
    token = await resp.json()
    return FitUser(user.id, {"Authorization": f"Bearer {token['access_token']}"})


async def test_pinned_data_source_is_echoed(
    client: Client, sandbox: Sandbox, user: FitUser
) -> None:
    day = days_ago(sandbox, 1)
    await put_days(client, user, [{"date": day.isoformat(), "steps": 4321}])
    estimated = f"derived:{STEPS}:{GMS}:estimated_steps"
    body = {
        "aggregateBy": [{"dataTypeName": STEPS, "dataSourceId": estimated}],
        "bucketByTime": {"durationMillis": DAY_MS},
        "startTimeMillis": day_start_ms(day),
        "endTimeMillis": day_start_ms(day) + DAY_MS,
    }
    dataset = (await (await aggregate(client, user, body)).json())["bucket"][0]["dataset"][0]
    assert dataset["dataSourceId"] == estimated
    assert values(dataset) == [4321]
    body["aggregateBy"] = [{"dataSourceId": f"derived:{STEPS}:{GMS}:nonsense"}]
    assert (await aggregate(client, user, body)).status == 403
    body["aggregateBy"] = [{"dataTypeName": DISTANCE, "dataSourceId": estimated}]
    await google_error(await aggregate(client, user, body), 400)
    body["aggregateBy"] = [{"dataTypeName": "com.example.made_up"}]
    await google_error(await aggregate(client, user, body), 400)


async def test_bucket_by_session_and_activity(
    client: Client, sandbox: Sandbox, user: FitUser
) -> None:
    day = days_ago(sandbox, 1)
    start = day_start_ms(day)
    await put_days(client, user, [{"date": day.isoformat(), "steps": 10000}])
    run = {"id": "run", "name": "Run", "activityType": 8}
    await client.post(
        f"/_sandbox/google_fit/users/{user.id}/sessions",
        json={
            "sessions": [
                {
                    **run,
                    "startTimeMillis": start + 18 * 3_600_000,
                    "endTimeMillis": start + 19 * 3_600_000,
                },
                {
                    "id": "walk",
                    "name": "Walk",
                    "activityType": 7,
                    "startTimeMillis": start + 7 * 3_600_000,
                    "endTimeMillis": start + 7 * 3_600_000 + 600_000,
                },
            ]
        },
    )
    window = {
        "startTimeMillis": start,
        "endTimeMillis": start + DAY_MS,
        "aggregateBy": [{"dataTypeName": STEPS}],
    }
    by_session = await (
        await aggregate(
            client, user, {**window, "bucketBySession": {"minDurationMillis": 1_200_000}}
        )
    ).json()
    [bucket] = by_session["bucket"]
    assert bucket["session"]["id"] == "run"
    assert values(bucket["dataset"][0]) == [3000]  # the 18:00 window holds 30 % of the day
    by_type = await (await aggregate(client, user, {**window, "bucketByActivityType": {}})).json()
    assert [b["activity"] for b in by_type["bucket"]] == [7, 8]


# -- sessions.list ----------------------------------------------------------------------------


async def add_sessions(
    client: Client, user: FitUser, *sessions: dict[str, Any]
) -> list[dict[str, Any]]:
    resp = await client.post(
        f"/_sandbox/google_fit/users/{user.id}/sessions", json={"sessions": list(sessions)}
    )
    assert resp.status == 201, await resp.text()
    created: list[dict[str, Any]] = (await resp.json())["sessions"]
    return created


def session(sid: str, start: int, minutes: int, activity: int = 8) -> dict[str, Any]:
    return {
        "id": sid,
        "name": sid,
        "startTimeMillis": start,
        "endTimeMillis": start + minutes * 60_000,
        "activityType": activity,
    }


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


async def list_sessions(client: Client, user: FitUser, **params: Any) -> dict[str, Any]:
    resp = await client.get(f"{API}/sessions", params=params, headers=user.headers)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_sessions_filter_by_end_time_and_activity_type(
    client: Client, sandbox: Sandbox, user: FitUser
) -> None:
    base = day_start_ms(days_ago(sandbox, 2))
    await add_sessions(
        client,
        user,
        session("straddles", base - 1_800_000, 60),  # starts before, ends inside
        session("inside", base + 3_600_000, 30, activity=1),
        session("after", base + DAY_MS + 60_000, 30),
    )
    window = {"startTime": rfc3339(base), "endTime": rfc3339(base + DAY_MS)}
    body = await list_sessions(client, user, **window)
    assert [s["id"] for s in body["session"]] == ["straddles", "inside"]
    assert "nextPageToken" not in body
    only_runs = await client.get(
        f"{API}/sessions",
        params=[*window.items(), ("activityType", "8"), ("activityType", "7")],
        headers=user.headers,
    )
    assert [s["id"] for s in (await only_runs.json())["session"]] == ["straddles"]
    created = body["session"][1]
    assert created["startTimeMillis"] == str(base + 3_600_000)
    assert created["activityType"] == 1
    assert set(created) >= {
        "id",
        "name",
        "description",
        "startTimeMillis",
        "endTimeMillis",
        "modifiedTimeMillis",
        "application",
        "activityType",
    }
    since = await list_sessions(client, user, startTime=rfc3339(base + DAY_MS))
    assert [s["id"] for s in since["session"]] == ["after"]


async def test_page_token_yields_changed_and_deleted_sessions(
    client: Client, sandbox: Sandbox, user: FitUser
) -> None:
    base = day_start_ms(days_ago(sandbox, 3))
    await add_sessions(client, user, session("a", base, 30), session("b", base + 3_600_000, 30))
    first = await list_sessions(client, user, includeDeleted="true")
    assert sorted(s["id"] for s in first["session"]) == ["a", "b"]
    token = first["nextPageToken"]
    assert (await list_sessions(client, user, pageToken=token))["session"] == []
    sandbox.clock.advance(60)
    await add_sessions(
        client, user, {"id": "a", "name": "renamed"}, session("c", base + 7_200_000, 20)
    )
    await client.delete(f"/_sandbox/google_fit/users/{user.id}/sessions/b")
    changes = await list_sessions(client, user, pageToken=token, includeDeleted="true")
    assert sorted(s["id"] for s in changes["session"]) == ["a", "c"]
    assert [s["name"] for s in changes["session"] if s["id"] == "a"] == ["renamed"]
    assert [s["id"] for s in changes["deletedSession"]] == ["b"]
    assert int(changes["nextPageToken"]) > int(token)
    without_deleted = await list_sessions(client, user, pageToken=token)
    assert without_deleted["deletedSession"] == []
    # A time bound switches sync off: the token is ignored, no deletions, no cursor.
    bounded = await list_sessions(
        client, user, pageToken=token, includeDeleted="true", startTime=rfc3339(base)
    )
    assert sorted(s["id"] for s in bounded["session"]) == ["a", "c"]
    assert "nextPageToken" not in bounded
    assert (await list_sessions(client, user, pageToken=changes["nextPageToken"]))["session"] == []


async def test_without_bounds_or_token_only_the_last_30_days(
    client: Client, sandbox: Sandbox, user: FitUser
) -> None:
    base = day_start_ms(days_ago(sandbox, 1))
    await add_sessions(client, user, session("old", base, 30))
    sandbox.clock.advance(31 * 86400)
    user = await _same_user(client, user, AUTH + "body.read")  # the old token has expired
    await add_sessions(client, user, session("new", base + 3_600_000, 30))
    body = await list_sessions(client, user)
    assert [s["id"] for s in body["session"]] == ["new"]
    everything = await list_sessions(client, user, pageToken="0")
    assert sorted(s["id"] for s in everything["session"]) == ["new", "old"]


async def test_sync_pages_when_a_page_size_is_set(
    client: Client, sandbox: Sandbox, user: FitUser
) -> None:
    await client.post("/_sandbox/google_fit/settings", json={"sessions_page_size": 2})
    base = day_start_ms(days_ago(sandbox, 5))
    await add_sessions(
        client, user, *(session(f"s{n}", base + n * 3_600_000, 30) for n in range(5))
    )
    seen: list[str] = []
    token = "0"
    pages = 0
    while True:
        page = await list_sessions(client, user, pageToken=token)
        pages += 1
        seen += [s["id"] for s in page["session"]]
        token = page["nextPageToken"]
        if not page.get("hasMoreData"):
            break
    assert seen == [f"s{n}" for n in range(5)]
    assert pages == 3


async def test_sleep_sessions_need_a_sleep_scope(
    client: Client, sandbox: Sandbox, user: FitUser
) -> None:
    base = day_start_ms(days_ago(sandbox, 1))
    await add_sessions(
        client,
        user,
        session("night", base, 480, activity=72),
        session("run", base + 10 * 3_600_000, 30),
    )
    assert sorted(s["id"] for s in (await list_sessions(client, user))["session"]) == [
        "night",
        "run",
    ]
    resp = await client.post(
        f"/_sandbox/google/accounts/{user.id}/tokens", json={"scopes": [AUTH + "activity.read"]}
    )
    no_sleep = FitUser(user.id, {"Authorization": f"Bearer {(await resp.json())['access_token']}"})
    assert [s["id"] for s in (await list_sessions(client, no_sleep))["session"]] == ["run"]


async def test_bad_session_parameters_are_400(client: Client, user: FitUser) -> None:
    for params in (
        {"startTime": "yesterday"},
        {"endTime": "2026-11-01T00:00:00"},  # no offset
        {"activityType": "running"},
        {"includeDeleted": "maybe"},
        {"pageToken": "abc"},
    ):
        resp = await client.get(f"{API}/sessions", params=params, headers=user.headers)
        assert (await google_error(resp, 400))["reason"] == "invalidArgument"


# -- limits and turndown ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 429])
async def test_usage_limit_injection(
    client: Client, sandbox: Sandbox, user: FitUser, status: int
) -> None:
    await client.post(
        "/_sandbox/faults",
        json={
            "provider": "google_fit",
            "endpoint": "GET /users/me/sessions",
            "status": status,
            "count": 1,
        },
    )
    resp = await client.get(f"{API}/sessions", headers=user.headers)
    item = await google_error(resp, status)
    assert (item["domain"], item["reason"]) == ("usageLimits", "rateLimitExceeded")
    assert sandbox.stats.rate_limited["google_fit GET /users/me/sessions"] == 1
    assert (await client.get(f"{API}/sessions", headers=user.headers)).status == 200


async def test_per_user_rate_limit_slides(client: Client, sandbox: Sandbox, user: FitUser) -> None:
    await client.post("/_sandbox/google_fit/settings", json={"user_rate_limit_per_minute": 2})
    statuses = [
        (await client.get(f"{API}/sessions", headers=user.headers)).status for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    other = await make_user(client)
    assert (await client.get(f"{API}/sessions", headers=other.headers)).status == 200
    sandbox.clock.advance(61)
    assert (await client.get(f"{API}/sessions", headers=user.headers)).status == 200
    assert sandbox.stats.rate_limited["google_fit GET /users/me/sessions"] == 1


async def test_turndown_switch(client: Client, user: FitUser) -> None:
    resp = await client.post("/_sandbox/google_fit/settings", json={"turndown_status": 410})
    assert (await resp.json())["turndown_status"] == 410
    gone = await client.get(f"{API}/sessions", headers=user.headers)
    await google_error(gone, 410)
    agg = await aggregate(client, user, aggregate_body([STEPS], 0, DAY_MS))
    await google_error(agg, 410)
    await client.post("/_sandbox/google_fit/settings", json={"turndown_status": 403})
    disabled = await client.get(f"{API}/sessions")
    assert (await google_error(disabled, 403))["reason"] == "accessNotConfigured"
    await client.post("/_sandbox/google_fit/settings", json={"turndown_status": None})
    assert (await client.get(f"{API}/sessions", headers=user.headers)).status == 200


# -- control routes ---------------------------------------------------------------------------


async def test_generate_days_is_deterministic_and_realistic(
    client: Client, sandbox: Sandbox, user: FitUser
) -> None:
    path = f"/_sandbox/google_fit/users/{user.id}/days"
    resp = await client.post(path, json={"generate": 7})
    assert resp.status == 201
    days = (await resp.json())["days"]
    assert [d["date"] for d in days] == [days_ago(sandbox, n).isoformat() for n in range(7, 0, -1)]
    for day in days:
        assert 2500 <= day["steps"] <= 14000
        assert 0.6 < day["distance"] / day["steps"] < 0.9
        assert day["heart_rate"]["min"] < day["heart_rate"]["avg"] < day["heart_rate"]["max"]
    listed = await (await client.get(path)).json()
    assert listed["days"] == days
    await client.post("/_sandbox/reset")
    again_user = await make_user(client)
    again = await client.post(
        f"/_sandbox/google_fit/users/{again_user.id}/days", json={"generate": 7}
    )
    # Same seed, same calls since the reset: the same days.
    assert [d["steps"] for d in (await again.json())["days"]] == [d["steps"] for d in days]


async def test_seed_creates_users_with_data_and_tokens(client: Client) -> None:
    resp = await client.post(
        "/_sandbox/google_fit/seed", json={"users": 3, "days": 5, "sessions": 2, "tokens": True}
    )
    assert resp.status == 201
    users = (await resp.json())["users"]
    assert len({u["id"] for u in users}) == 3
    token = users[0]["token"]
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    body = await (await client.get(f"{API}/sessions", headers=headers)).json()
    assert len(body["session"]) == 2
    listed = await (await client.get("/_sandbox/google/accounts")).json()
    assert {u["id"] for u in users} <= {a["id"] for a in listed["accounts"]}
    refreshed = await client.post(
        "/google/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": "g-client.apps.googleusercontent.com",
            "client_secret": "google-secret",
        },
    )
    assert refreshed.status == 200


@pytest.mark.parametrize(
    "body",
    [
        {"generate": 0},
        {"generate": "7"},
        {"generate": 3, "days": []},
        {"days": []},
        {"days": [{"steps": 1}]},
        {"days": [{"date": "2026-13-01"}]},
        {"days": [{"date": "2026-11-01", "steps": -1}]},
        {"days": [{"date": "2026-11-01", "heart_rate": {"avg": 50, "min": 60, "max": 70}}]},
        {"days": [{"date": "2026-11-01", "colour": "red"}]},
        {"days": ["2026-11-01"]},
    ],
)
async def test_bad_day_payloads_are_400(
    client: Client, user: FitUser, body: dict[str, Any]
) -> None:
    resp = await client.post(f"/_sandbox/google_fit/users/{user.id}/days", json=body)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_request"


async def test_control_routes_404_for_unknown_users(client: Client, user: FitUser) -> None:
    for method, path in (
        ("POST", "/_sandbox/google_fit/users/999/days"),
        ("GET", "/_sandbox/google_fit/users/999/days"),
        ("POST", "/_sandbox/google_fit/users/999/sessions"),
        ("DELETE", "/_sandbox/google_fit/users/999/sessions/x"),
        ("DELETE", f"/_sandbox/google_fit/users/{user.id}/sessions/x"),
        ("DELETE", f"/_sandbox/google_fit/users/{user.id}/days/2020-01-01"),
    ):
        resp = await client.request(method, path, json={"generate": 1})
        assert resp.status == 404, (method, path)
    bad_sessions: list[dict[str, Any]] = [
        {"sessions": [{"id": "x"}]},
        {"sessions": [session("x", 1000, -5)]},
        {"sessions": [{**session("x", 1000, 5), "activityType": "run"}]},
        {"users": 1},
    ]
    for bad in bad_sessions:
        resp = await client.post(f"/_sandbox/google_fit/users/{user.id}/sessions", json=bad)
        assert resp.status == 400, bad
    bad_seeds: list[dict[str, Any]] = [
        {"users": 0, "days": 1},
        {"users": 1, "days": 1, "extra": 1},
        {"users": True},
    ]
    for seed in bad_seeds:
        assert (await client.post("/_sandbox/google_fit/seed", json=seed)).status == 400
    assert (
        await client.post("/_sandbox/google_fit/settings", json={"time_zone": "Nowhere/City"})
    ).status == 400


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "x",
        {"aggregateBy": "steps"},
        {"aggregateBy": [STEPS]},
        {"aggregateBy": [{"dataTypeName": 5}]},
        {"aggregateBy": [{"dataTypeName": STEPS}], "startTimeMillis": "soon", "endTimeMillis": 1},
        {
            "aggregateBy": [{"dataTypeName": STEPS}],
            "startTimeMillis": 10,
            "endTimeMillis": 5,
            "bucketByTime": {"durationMillis": 1},
        },
        {
            "aggregateBy": [{"dataTypeName": STEPS}],
            "startTimeMillis": 0,
            "endTimeMillis": 5,
            "bucketByTime": {"durationMillis": 0},
        },
        {
            "aggregateBy": [{"dataTypeName": STEPS}],
            "startTimeMillis": 0,
            "endTimeMillis": DAY_MS * 80,
            "bucketByTime": {"durationMillis": 1},
        },
        {
            "aggregateBy": [{"dataTypeName": STEPS}],
            "startTimeMillis": 0,
            "endTimeMillis": 5,
            "bucketByTime": [],
        },
        {
            "aggregateBy": [{"dataTypeName": STEPS}],
            "startTimeMillis": 0,
            "endTimeMillis": 5,
            "bucketByTime": {"period": {"type": "year"}},
        },
        {
            "aggregateBy": [{"dataTypeName": STEPS}],
            "startTimeMillis": 0,
            "endTimeMillis": 5,
            "bucketByTime": {"period": {"type": "day", "value": 0}},
        },
        {
            "aggregateBy": [{"dataTypeName": STEPS}],
            "startTimeMillis": 0,
            "endTimeMillis": 5,
            "bucketByTime": {"period": {"type": "day", "timeZoneId": 3}},
        },
        {
            "aggregateBy": [{"dataTypeName": STEPS}],
            "startTimeMillis": 0,
            "endTimeMillis": 5,
            "bucketBySession": {"minDurationMillis": "x"},
        },
        {
            "aggregateBy": [{"dataTypeName": STEPS}],
            "startTimeMillis": 2**70,
            "endTimeMillis": 5,
            "bucketBySession": {},
        },
        {
            "aggregateBy": [{"dataSourceId": "nonsense"}],
            "startTimeMillis": 0,
            "endTimeMillis": 5,
            "bucketBySession": {},
        },
    ],
)
async def test_bad_aggregate_requests_are_4xx_never_500(
    client: Client, user: FitUser, body: Any
) -> None:
    resp = await aggregate(client, user, body)
    assert 400 <= resp.status < 500, await resp.text()
    await google_error(resp, resp.status)
    raw = await client.post(f"{API}/dataset:aggregate", data=b"{not json", headers=user.headers)
    assert (await google_error(raw, 400))["reason"] == "parseError"


async def test_fit_settings_come_from_the_environment() -> None:
    settings = FitSettings.from_env(
        {
            "SANDBOX_GOOGLE_FIT_TURNDOWN_STATUS": "410",
            "SANDBOX_GOOGLE_FIT_TIME_ZONE": "Europe/Paris",
        }
    )
    assert settings.turndown_status == 410
    assert settings.time_zone == "Europe/Paris"
    assert FitSettings.from_env({}).turndown_status is None
    with pytest.raises(ValueError, match="time_zone"):
        FitSettings.from_env({"SANDBOX_GOOGLE_FIT_TIME_ZONE": "Atlantis"})


async def test_days_follow_the_configured_time_zone(
    client: Client, sandbox: Sandbox, user: FitUser
) -> None:
    await client.post("/_sandbox/google_fit/settings", json={"time_zone": "Asia/Tokyo"})
    day = days_ago(sandbox, 2)
    await put_days(client, user, [{"date": day.isoformat(), "steps": 5000}])
    tokyo_midnight = day_start_ms(day) - 9 * 3_600_000
    local = aggregate_body([STEPS], tokyo_midnight, tokyo_midnight + DAY_MS)
    assert values(
        (await (await aggregate(client, user, local)).json())["bucket"][0]["dataset"][0]
    ) == [5000]
    utc = aggregate_body([STEPS], day_start_ms(day), day_start_ms(day) + DAY_MS)
    utc_steps = (await (await aggregate(client, user, utc)).json())["bucket"][0]["dataset"][0]
    assert values(utc_steps)[0] < 5000  # the Tokyo morning falls on the UTC day before
