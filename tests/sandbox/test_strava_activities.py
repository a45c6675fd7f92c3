"""Strava activities (PROVIDERS.md §3.3, §3.5): list paging and filters, "Only Me"
filtering, short pages, detail ownership, data fidelity, the SummaryActivity contract,
bad input, and the seeding/editing control routes."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any

import pytest
from provider_sandbox.core import Sandbox

from tests.sandbox.conftest import Client
from tests.sandbox.test_strava_oauth import (
    ACTIVITIES,
    assert_shape,
    athlete_id,
    bearer,
    configure,
    issue_token,
    payload,
    strava_error,
)

pytestmark = pytest.mark.service

READ_ALL = ["read", "activity:read_all"]
READ = ["read", "activity:read"]
NOT_FOUND = strava_error("Activity", "id", "invalid", "Record Not Found")


async def seed_athlete(
    client: Client, sandbox: Sandbox, hint: str, count: int, scopes: list[str] | None = None
) -> tuple[int, str, list[dict[str, Any]]]:
    athlete = athlete_id(sandbox, hint)
    resp = await client.post(
        f"/_sandbox/strava/athletes/{athlete}/activities", json={"generate": count}
    )
    assert resp.status == 201
    created = (await resp.json())["activities"]
    issued = await issue_token(client, athlete, scopes or READ_ALL)
    return athlete, issued["access_token"], created


async def list_page(client: Client, access: str, **params: str) -> Any:
    resp = await client.get(ACTIVITIES, headers=bearer(access), params=params)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def page_through(client: Client, access: str, per_page: int) -> list[list[Any]]:
    pages: list[list[Any]] = []
    page = 1
    while True:
        items = await list_page(client, access, page=str(page), per_page=str(per_page))
        if not items:
            return pages
        pages.append(items)
        page += 1


async def test_list_pages_newest_first_default_30_and_empty_past_the_end(
    client: Client, sandbox: Sandbox
) -> None:
    _, access, created = await seed_athlete(client, sandbox, "pager", 75)
    assert len(created) == 75
    first = await list_page(client, access)
    assert len(first) == 30
    starts = [a["start_date"] for a in first]
    assert starts == sorted(starts, reverse=True)
    pages = await page_through(client, access, 30)
    assert [len(p) for p in pages] == [30, 30, 15]
    seen = [a["id"] for p in pages for a in p]
    assert sorted(seen) == sorted(a["id"] for a in created)
    assert await list_page(client, access, page="99") == []
    everything = [a["start_date"] for p in pages for a in p]
    assert everything == sorted(everything, reverse=True)


async def test_per_page_is_capped_at_200_and_bad_parameters_get_400(
    client: Client, sandbox: Sandbox
) -> None:
    _, access, _ = await seed_athlete(client, sandbox, "bulk", 250)
    assert len(await list_page(client, access, per_page="500")) == 200
    assert len(await list_page(client, access, per_page="200", page="2")) == 50
    for name, value in (
        ("per_page", "0"),
        ("per_page", "-3"),
        ("per_page", "ten"),
        ("page", "0"),
        ("page", "1.5"),
        ("before", "yesterday"),
        ("after", "nan"),
    ):
        resp = await client.get(ACTIVITIES, headers=bearer(access), params={name: value})
        assert resp.status == 400, (name, value)
        assert await resp.json() == strava_error("Application", name, "invalid", "Bad Request")


async def test_before_and_after_filter_strictly_on_start_time(
    client: Client, sandbox: Sandbox
) -> None:
    _, access, created = await seed_athlete(client, sandbox, "filters", 40)
    epochs = sorted(int(datetime.fromisoformat(a["start_date"]).timestamp()) for a in created)
    lo, hi = epochs[10], epochs[20]
    between = await list_page(client, access, after=str(lo), before=str(hi), per_page="200")
    got = sorted(int(datetime.fromisoformat(a["start_date"]).timestamp()) for a in between)
    assert got == epochs[11:20]
    newer = await list_page(client, access, after=str(epochs[-3]))
    assert len(newer) == 2
    older = await list_page(client, access, before=str(epochs[2]), per_page="200")
    assert len(older) == 2
    await configure(client, after_ascending=True)  # the reported oldest-first quirk, opt-in
    ascending = await list_page(client, access, after=str(lo), per_page="5")
    assert [a["start_date"] for a in ascending] == sorted(a["start_date"] for a in ascending)
    assert int(datetime.fromisoformat(ascending[0]["start_date"]).timestamp()) == epochs[11]


async def test_only_me_activities_are_hidden_without_read_all(
    client: Client, sandbox: Sandbox
) -> None:
    athlete, full, created = await seed_athlete(client, sandbox, "private", 120)
    private = {a["id"] for a in created if a["private"]}
    assert 0 < len(private) < 60
    limited = (await issue_token(client, athlete, READ))["access_token"]
    visible = [a for p in await page_through(client, limited, 50) for a in p]
    assert len(visible) == 120 - len(private)
    assert not any(a["private"] for a in visible)
    assert not {a["id"] for a in visible} & private
    everything = [a for p in await page_through(client, full, 50) for a in p]
    assert len(everything) == 120
    hidden = next(iter(private))
    resp = await client.get(f"/strava/api/v3/activities/{hidden}", headers=bearer(limited))
    assert resp.status == 404
    resp = await client.get(f"/strava/api/v3/activities/{hidden}", headers=bearer(full))
    assert resp.status == 200


async def test_short_pages_mid_stream_lose_nothing(client: Client, sandbox: Sandbox) -> None:
    _, access, created = await seed_athlete(client, sandbox, "short", 64)
    await configure(client, short_pages=4)
    pages = await page_through(client, access, 10)
    sizes = [len(p) for p in pages]
    assert any(size < 10 for size in sizes[:-1]), sizes  # short, yet more follow
    assert all(size > 0 for size in sizes)
    ids = [a["id"] for p in pages for a in p]
    assert len(ids) == len(set(ids)) == 64
    assert set(ids) == {a["id"] for a in created}
    single = await page_through(client, access, 1)  # per_page 1 never yields an empty page
    assert len(single) == 64


async def test_detail_is_resource_state_3_and_only_for_the_owner(
    client: Client, sandbox: Sandbox
) -> None:
    _, access, created = await seed_athlete(client, sandbox, "owner", 3)
    _, stranger, _ = await seed_athlete(client, sandbox, "stranger", 1)
    activity = created[0]
    resp = await client.get(
        f"/strava/api/v3/activities/{activity['id']}",
        headers=bearer(access),
        params={"include_all_efforts": "true"},
    )
    assert resp.status == 200
    detail = await resp.json()
    assert detail["resource_state"] == 3
    assert detail["id"] == activity["id"]
    assert {
        k: v for k, v in detail.items() if k in activity and k not in ("resource_state", "map")
    } == {k: v for k, v in activity.items() if k not in ("resource_state", "map")}
    assert {"description", "calories", "segment_efforts", "gear"} <= set(detail)
    assert detail["map"]["resource_state"] == 3
    for path, token in (
        (f"/strava/api/v3/activities/{activity['id']}", stranger),
        ("/strava/api/v3/activities/123", access),
        ("/strava/api/v3/activities/abc", access),
    ):
        resp = await client.get(path, headers=bearer(token))
        assert resp.status == 404
        assert await resp.json() == NOT_FOUND


async def test_a_token_without_activity_scope_is_refused(client: Client, sandbox: Sandbox) -> None:
    athlete, _, created = await seed_athlete(client, sandbox, "profile-only", 1)
    only_read = (await issue_token(client, athlete, ["read"]))["access_token"]
    missing = strava_error(
        "AccessToken", "activity:read_permission", "missing", "Authorization Error"
    )
    for path in (ACTIVITIES, f"/strava/api/v3/activities/{created[0]['id']}"):
        resp = await client.get(path, headers=bearer(only_read))
        assert resp.status == 401
        assert await resp.json() == missing


async def test_data_fidelity(client: Client, sandbox: Sandbox) -> None:
    _, access, _ = await seed_athlete(client, sandbox, "fidelity", 200)
    resp = await client.get(ACTIVITIES, headers=bearer(access), params={"per_page": "200"})
    activities = await resp.json()
    timezone = re.compile(r"^\(GMT[+-]\d\d:\d\d\) [A-Za-z_]+/[A-Za-z_]+$")
    for a in activities:
        assert a["id"] > 2**31
        assert a["upload_id"] is None or a["upload_id"] > 2**63  # past int64 like the doc's
        assert a["start_date"].endswith("Z")
        assert a["start_date_local"].endswith("Z")  # local wall clock, still with a Z
        start = datetime.fromisoformat(a["start_date"]).timestamp()
        local = datetime.fromisoformat(a["start_date_local"]).timestamp()
        assert local - start == a["utc_offset"]
        assert timezone.match(a["timezone"]), a["timezone"]
        assert a["type"]
        assert a["sport_type"]
        assert a["start_latlng"] is None or len(a["start_latlng"]) == 2
    assert len({a["sport_type"] for a in activities}) >= 6
    assert {a["type"] for a in activities if a["sport_type"] == "MountainBikeRide"} <= {"Ride"}
    assert any(a["start_latlng"] for a in activities)
    assert any(a["private"] for a in activities)
    # the raw text carries the digits exactly (a double would round them)
    text = await resp.text()
    assert str(activities[0]["upload_id"] or activities[1]["upload_id"]) in text


async def test_strava_timezone_prints_the_standard_offset_and_utc_offset_the_real_one(
    client: Client, sandbox: Sandbox
) -> None:
    athlete = athlete_id(sandbox, "sf")
    resp = await client.post(
        f"/_sandbox/strava/athletes/{athlete}/activities",
        json={
            "activities": [
                {"start_date": "2018-05-02T12:15:09Z", "timezone": "America/Los_Angeles"},
                {"start_date": "2018-12-02T12:15:09Z", "timezone": "America/Los_Angeles"},
                {"start_date": "2018-05-02T12:15:09Z", "timezone": "(GMT+05:45) Asia/Kathmandu"},
            ]
        },
    )
    summer, winter, kathmandu = (await resp.json())["activities"]
    assert summer["timezone"] == winter["timezone"] == "(GMT-08:00) America/Los_Angeles"
    assert (summer["utc_offset"], winter["utc_offset"]) == (-25200, -28800)
    assert summer["start_date_local"] == "2018-05-02T05:15:09Z"  # as in the doc example
    assert kathmandu["timezone"] == "(GMT+05:45) Asia/Kathmandu"
    assert kathmandu["utc_offset"] == 20700


async def test_big_ids_go_past_2_pow_53(client: Client, sandbox: Sandbox) -> None:
    await configure(client, big_ids=True)
    _, access, created = await seed_athlete(client, sandbox, "big", 5)
    for a in created:
        assert a["id"] > 2**53
        assert int(float(a["id"])) != a["id"]  # a double cannot hold it
    resp = await client.get(ACTIVITIES, headers=bearer(access))
    text = await resp.text()
    assert all(str(a["id"]) in text for a in created)
    detail = await client.get(
        f"/strava/api/v3/activities/{created[0]['id']}", headers=bearer(access)
    )
    assert (await detail.json())["id"] == created[0]["id"]


async def test_summary_activity_matches_the_reference_example(
    client: Client, sandbox: Sandbox
) -> None:
    example = payload("strava_activity_summary.json")
    athlete = athlete_id(sandbox, "contract")
    resp = await client.post(
        f"/_sandbox/strava/athletes/{athlete}/activities",
        json={
            "activities": [
                {
                    "name": "Happy Friday",
                    "sport_type": "MountainBikeRide",
                    "start_date": "2018-05-02T12:15:09Z",
                    "timezone": "America/Los_Angeles",
                    "trainer": True,
                    "has_heartrate": True,
                    "device_watts": True,
                    "manual": False,
                }
            ]
        },
    )
    assert resp.status == 201
    issued = await issue_token(client, athlete, READ_ALL)
    listed = await list_page(client, issued["access_token"])
    assert_shape(listed, example)
    assert listed[0]["name"] == "Happy Friday"
    assert listed[0]["type"] == "Ride"
    # generated activities: the example's fields, minus metrics Strava omits when absent
    _, access, _ = await seed_athlete(client, sandbox, "generated", 60)
    optional = {
        "average_watts",
        "weighted_average_watts",
        "kilojoules",
        "device_watts",
        "max_watts",
        "average_heartrate",
        "max_heartrate",
        "suffer_score",
        "average_cadence",
    }
    for a in await list_page(client, access, per_page="60"):
        assert set(example[0]) - optional <= set(a) <= set(example[0])
        # manual entries and gear-less sports carry nulls here, as on Strava
        nullable = {"external_id", "upload_id", "gear_id"}
        assert_shape(a, {k: None if k in nullable else v for k, v in example[0].items() if k in a})


async def test_generation_is_deterministic(client: Client, sandbox: Sandbox) -> None:
    def essence(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(a["id"], a["name"], a["sport_type"], a["distance"], a["private"]) for a in items]

    _, _, first = await seed_athlete(client, sandbox, "same", 30)
    await client.post("/_sandbox/reset")
    _, _, second = await seed_athlete(client, sandbox, "same", 30)
    assert essence(first) == essence(second)


async def test_partial_activities_are_filled_and_bad_input_refused(
    client: Client, sandbox: Sandbox
) -> None:
    athlete = athlete_id(sandbox, "partial")
    url = f"/_sandbox/strava/athletes/{athlete}/activities"
    resp = await client.post(
        url,
        json={
            "activities": [
                {"id": 9_007_199_254_740_993, "sport_type": "Swim", "description": "pool"},
                {"private": True, "start_date": "2024-01-01T08:00:00+01:00"},
            ]
        },
    )
    assert resp.status == 201
    swim, private = (await resp.json())["activities"]
    assert swim["id"] == 9_007_199_254_740_993
    assert (swim["type"], swim["sport_type"], swim["start_latlng"]) == ("Swim", "Swim", None)
    assert "description" not in swim  # detail-only field
    assert private["private"] is True
    assert private["start_date"] == "2024-01-01T07:00:00Z"
    for bad in (
        {"activities": [{"colour": "red"}]},
        {"activities": [{"start_date": "2024-01-01T08:00:00"}]},
        {"activities": [{"utc_offset": 3600}]},
        {"activities": [{"id": 9_007_199_254_740_993}]},
        {"activities": [{"timezone": "Mars/Olympus"}]},
        {"activities": ["nope"]},
        {"generate": 0},
        {"generate": True},
        {},
    ):
        resp = await client.post(url, json=bad)
        assert resp.status == 400, bad
        assert (await resp.json())["error"]["code"] == "bad_request"
    assert (await client.post(url, data=b"{not json")).status == 400
    missing = await client.post("/_sandbox/strava/athletes/1/activities", json={"generate": 1})
    assert missing.status == 404


async def test_control_update_and_delete(client: Client, sandbox: Sandbox) -> None:
    _, access, created = await seed_athlete(client, sandbox, "editor", 2)
    activity_id = created[0]["id"]
    resp = await client.put(
        f"/_sandbox/strava/activities/{activity_id}",
        json={"name": "Renamed", "description": "new words", "gear_id": None},
    )
    assert resp.status == 200
    assert (await resp.json())["description"] == "new words"
    listed = await list_page(client, access)
    assert next(a for a in listed if a["id"] == activity_id)["name"] == "Renamed"
    assert (
        await client.put(f"/_sandbox/strava/activities/{activity_id}", json={"id": 5})
    ).status == 400
    assert (await client.put("/_sandbox/strava/activities/42", json={"name": "x"})).status == 404
    resp = await client.delete(f"/_sandbox/strava/activities/{activity_id}")
    assert resp.status == 200
    gone = await client.get(f"/strava/api/v3/activities/{activity_id}", headers=bearer(access))
    assert gone.status == 404
    assert len(await list_page(client, access)) == 1
    assert (await client.delete(f"/_sandbox/strava/activities/{activity_id}")).status == 404


async def test_bulk_seed_is_fast(client: Client, sandbox: Sandbox) -> None:
    started = time.perf_counter()
    resp = await client.post(
        "/_sandbox/strava/seed", json={"athletes": 1000, "activities_per_athlete": 200}
    )
    elapsed = time.perf_counter() - started
    assert resp.status == 201
    body = await resp.json()
    assert elapsed < 5.0, elapsed
    assert body["activities"] == 200_000
    assert len(body["athletes"]) == 1000
    assert body["athletes"][0]["login_hint"] == "athlete-0"
    assert body["athletes"][0]["id"] == athlete_id(sandbox, "athlete-0")
    with_tokens = await client.post(
        "/_sandbox/strava/seed",
        json={"athletes": 2, "first": 1000, "tokens": True, "scopes": READ},
    )
    seeded = (await with_tokens.json())["athletes"]
    assert {"access_token", "refresh_token", "expires_at"} <= set(seeded[0])
    tokened = athlete_id(sandbox, "athlete-5")
    access = (await issue_token(client, tokened))["access_token"]
    assert len(await list_page(client, access, per_page="200")) == 200
    bad = await client.post("/_sandbox/strava/seed", json={"athletes": -1})
    assert bad.status == 400
    assert json.loads(await bad.text())["error"]["code"] == "bad_request"
