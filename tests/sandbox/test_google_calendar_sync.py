"""Calendar ``events.list`` and the sync protocol (PROVIDERS.md §5.2, §5.5): pages, sync
tokens, 410s, forbidden parameters, deletions, singleEvents, time bounds."""

from __future__ import annotations

from typing import Any

import pytest
from provider_sandbox.config import SandboxConfig
from provider_sandbox.core import Sandbox
from provider_sandbox.providers._gcal_times import occurrences, parse_recurrence, parse_when

from tests.sandbox.conftest import Client
from tests.sandbox.test_google_calendar import (
    API,
    CONTROL,
    ONE_HOUR,
    google_error,
    insert,
    items_of,
    list_pages,
    sign_in,
)

pytestmark = pytest.mark.service

EVENTS = f"{API}/calendars/primary/events"


def at(day: int, hour: int, length: int = 1) -> dict[str, Any]:
    return {
        "start": {"dateTime": f"2030-03-{day:02d}T{hour:02d}:00:00+00:00"},
        "end": {"dateTime": f"2030-03-{day:02d}T{hour + length:02d}:00:00+00:00"},
    }


async def seed(client: Client, user: str, count: int) -> list[dict[str, Any]]:
    resp = await client.post(
        f"{CONTROL}/users/{user}/calendars/primary/events", json={"generate": count}
    )
    assert resp.status == 201
    items: list[dict[str, Any]] = (await resp.json())["items"]
    return items


async def test_max_results_default_cap_and_sync_token_only_on_last_page(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    user, headers = sign_in(sandbox, config)
    seeded = await seed(client, user, 7)
    pages = await list_pages(client, headers, {"maxResults": "3"})
    assert [len(p["items"]) for p in pages] == [3, 3, 1]
    for page in pages[:-1]:
        assert "nextPageToken" in page
        assert "nextSyncToken" not in page
    assert "nextSyncToken" in pages[-1]
    assert "nextPageToken" not in pages[-1]
    assert {e["id"] for e in items_of(pages)} == {e["id"] for e in seeded}

    await seed(client, user, 260)
    default = await list_pages(client, headers, {})
    assert len(default[0]["items"]) == 250
    capped = await (
        await client.get(EVENTS, params={"maxResults": "99999"}, headers=headers)
    ).json()
    assert len(capped["items"]) == 267
    for bad in ("0", "-3", "ten"):
        resp = await client.get(EVENTS, params={"maxResults": bad}, headers=headers)
        assert resp.status == 400


async def test_deleting_between_pages_skips_nothing(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    user, headers = sign_in(sandbox, config)
    seeded = await seed(client, user, 6)
    first = await (await client.get(EVENTS, params={"maxResults": "2"}, headers=headers)).json()
    served = {e["id"] for e in first["items"]}
    victim = next(e for e in seeded if e["id"] in served)
    await client.delete(f"{CONTROL}/users/{user}/calendars/primary/events/{victim['id']}")
    rest = await list_pages(
        client, headers, {"maxResults": "2", "pageToken": first["nextPageToken"]}
    )
    served |= {e["id"] for e in items_of(rest)}
    assert served == {e["id"] for e in seeded}


async def test_empty_and_short_pages_still_carry_next_page_token(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    user, headers = sign_in(sandbox, config)
    seeded = await seed(client, user, 20)
    await client.post(f"{CONTROL}/config", json={"empty_page_rate": 0.4, "short_page_rate": 0.4})
    pages = await list_pages(client, headers, {"maxResults": "5"})
    assert any(p["items"] == [] and "nextPageToken" in p for p in pages)
    assert any(0 < len(p["items"]) < 5 and "nextPageToken" in p for p in pages)
    assert sorted(e["id"] for e in items_of(pages)) == sorted(e["id"] for e in seeded)
    assert all(("nextPageToken" in p) != ("nextSyncToken" in p) for p in pages)


async def test_incremental_sync_returns_exactly_the_changes_since_the_token(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    user, headers = sign_in(sandbox, config)
    seeded = await seed(client, user, 5)
    full = await list_pages(client, headers, {"maxResults": "2"})
    token = full[-1]["nextSyncToken"]

    nothing = await list_pages(client, headers, {"syncToken": token})
    assert items_of(nothing) == []
    assert nothing[-1]["nextSyncToken"]

    edited, removed = seeded[0], seeded[1]
    new = await insert(client, headers, {"summary": "new", **ONE_HOUR})
    await client.patch(f"{EVENTS}/{edited['id']}", json={"summary": "edited"}, headers=headers)
    await client.delete(f"{CONTROL}/users/{user}/calendars/primary/events/{removed['id']}")

    changes = await list_pages(client, headers, {"syncToken": token, "maxResults": "1"})
    assert all("nextSyncToken" not in p for p in changes[:-1])
    changed = {e["id"]: e for e in items_of(changes)}
    assert set(changed) == {new["id"], edited["id"], removed["id"]}
    assert changed[edited["id"]]["summary"] == "edited"
    # A deletion carries its id and the cancelled status, nothing about the old event.
    assert changed[removed["id"]]["status"] == "cancelled"
    assert "summary" not in changed[removed["id"]]
    assert "start" not in changed[removed["id"]]

    following = changes[-1]["nextSyncToken"]
    assert items_of(await list_pages(client, headers, {"syncToken": following})) == []
    # showDeleted=true is allowed with a token; deletions come back regardless.
    again = await list_pages(client, headers, {"syncToken": token, "showDeleted": "true"})
    assert {e["id"] for e in items_of(again)} == set(changed)


async def test_changes_made_during_paging_come_with_the_next_sync(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    user, headers = sign_in(sandbox, config)
    await seed(client, user, 4)
    first = await (await client.get(EVENTS, params={"maxResults": "2"}, headers=headers)).json()
    late = await insert(client, headers, {"summary": "late", **at(1, 0)})
    rest = await list_pages(
        client, headers, {"maxResults": "2", "pageToken": first["nextPageToken"]}
    )
    token = rest[-1]["nextSyncToken"]
    after = items_of(await list_pages(client, headers, {"syncToken": token}))
    assert late["id"] in {e["id"] for e in after}


async def test_forbidden_parameters_with_sync_token_answer_400(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    token = (await list_pages(client, headers, {}))[-1]["nextSyncToken"]
    forbidden = {
        "iCalUID": "x@google.com",
        "orderBy": "updated",
        "privateExtendedProperty": "a=b",
        "q": "standup",
        "sharedExtendedProperty": "a=b",
        "timeMin": "2030-01-01T00:00:00Z",
        "timeMax": "2030-01-01T00:00:00Z",
        "updatedMin": "2030-01-01T00:00:00Z",
        "showDeleted": "false",
    }
    for name, value in forbidden.items():
        resp = await client.get(EVENTS, params={"syncToken": token, name: value}, headers=headers)
        assert resp.status == 400, name
        entry = google_error(await resp.json(), 400, "invalid")
        assert entry["location"] == name
    allowed = await client.get(
        EVENTS,
        params={"syncToken": token, "singleEvents": "true", "maxResults": "5"},
        headers=headers,
    )
    assert allowed.status == 200


async def test_invalidated_token_410_then_full_sync_yields_a_fresh_token(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    user, headers = sign_in(sandbox, config)
    await seed(client, user, 3)
    token = (await list_pages(client, headers, {}))[-1]["nextSyncToken"]
    done = await client.post(
        f"{CONTROL}/invalidate_sync_tokens", json={"user_id": user, "calendar_id": "primary"}
    )
    assert (await done.json())["invalidated"] == 1
    gone = await client.get(EVENTS, params={"syncToken": token}, headers=headers)
    assert gone.status == 410
    assert await gone.json() == {
        "error": {
            "errors": [
                {
                    "domain": "calendar",
                    "reason": "fullSyncRequired",
                    "message": "Sync token is no longer valid, a full sync is required.",
                    "locationType": "parameter",
                    "location": "syncToken",
                }
            ],
            "code": 410,
            "message": "Sync token is no longer valid, a full sync is required.",
        }
    }
    full = await list_pages(client, headers, {})
    assert len(items_of(full)) == 3
    fresh = full[-1]["nextSyncToken"]
    assert fresh != token
    assert (await client.get(EVENTS, params={"syncToken": fresh}, headers=headers)).status == 200
    await client.post(f"{CONTROL}/invalidate_sync_tokens")
    assert (await client.get(EVENTS, params={"syncToken": fresh}, headers=headers)).status == 410


async def test_garbled_foreign_and_aged_tokens_answer_410(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    user, headers = sign_in(sandbox, config)
    token = (await list_pages(client, headers, {}))[-1]["nextSyncToken"]
    for bad in ("1" + token, "not-a-token", "CPjflvfe1YEDEPjflvfe1YEDGAUg0_uyjwI="):
        resp = await client.get(EVENTS, params={"syncToken": bad}, headers=headers)
        assert resp.status == 410, bad
    other = await client.post(f"{CONTROL}/users/{user}/calendars", json={"summary": "Other"})
    other_id = (await other.json())["id"]
    foreign = await client.get(
        f"{API}/calendars/{other_id}/events", params={"syncToken": token}, headers=headers
    )
    assert foreign.status == 410
    await client.post(f"{CONTROL}/config", json={"sync_token_max_age_seconds": 3600})
    sandbox.clock.advance(1800)
    assert (await client.get(EVENTS, params={"syncToken": token}, headers=headers)).status == 200
    sandbox.clock.advance(1801)
    _, headers = sign_in(sandbox, config)
    assert (await client.get(EVENTS, params={"syncToken": token}, headers=headers)).status == 410
    bad_page = await client.get(EVENTS, params={"pageToken": "zzz"}, headers=headers)
    assert bad_page.status == 400


async def test_show_deleted_and_updated_min(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _user, headers = sign_in(sandbox, config)
    keep = await insert(client, headers, {"summary": "keep", **at(2, 9)})
    drop = await insert(client, headers, {"summary": "drop", **at(3, 9)})
    await client.delete(f"{EVENTS}/{drop['id']}", headers=headers)
    plain = {e["id"] for e in items_of(await list_pages(client, headers, {}))}
    assert plain == {keep["id"]}
    shown = items_of(await list_pages(client, headers, {"showDeleted": "true"}))
    assert {e["id"]: e["status"] for e in shown} == {
        keep["id"]: "confirmed",
        drop["id"]: "cancelled",
    }
    sandbox.clock.advance(10)
    mark = sandbox.clock.now().isoformat()
    sandbox.clock.advance(10)
    touched = await insert(client, headers, {"summary": "late", **at(4, 9)})
    since = items_of(await list_pages(client, headers, {"updatedMin": mark}))
    assert [e["id"] for e in since] == [touched["id"]]
    await client.delete(f"{EVENTS}/{keep['id']}", headers=headers)
    since = items_of(await list_pages(client, headers, {"updatedMin": mark}))
    # Deletions since updatedMin are always included, showDeleted or not.
    assert {e["id"]: e["status"] for e in since} == {
        touched["id"]: "confirmed",
        keep["id"]: "cancelled",
    }
    sandbox.clock.advance(31 * 86_400)
    _, headers = sign_in(sandbox, config)
    old = await client.get(EVENTS, params={"updatedMin": mark}, headers=headers)
    assert old.status == 410
    entry = google_error(await old.json(), 410, "updatedMinTooLongAgo")
    assert entry["location"] == "updatedMin"
    assert entry["message"] == "The requested minimum modification time lies too far in the past."


async def test_time_bounds_are_exclusive_on_end_and_start(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    nine = await insert(client, headers, {"summary": "nine", **at(5, 9)})
    ten = await insert(client, headers, {"summary": "ten", **at(5, 10)})
    eleven = await insert(client, headers, {"summary": "eleven", **at(5, 11)})

    async def window(low: str, high: str) -> set[str]:
        params = {"timeMin": low, "timeMax": high}
        return {e["summary"] for e in items_of(await list_pages(client, headers, params))}

    # timeMin excludes events ending exactly at it; timeMax those starting exactly at it.
    assert await window("2030-03-05T10:00:00Z", "2030-03-05T11:00:00Z") == {"ten"}
    assert await window("2030-03-05T09:30:00Z", "2030-03-05T11:30:00Z") == {
        "nine",
        "ten",
        "eleven",
    }
    assert await window("2030-03-05T05:00:00-05:00", "2030-03-05T07:00:00-04:00") == {"ten"}
    assert {nine["id"], ten["id"], eleven["id"]}
    for params in (
        {"timeMin": "2030-03-05"},
        {"timeMin": "2030-03-05T10:00:00"},
        {"timeMax": "soon"},
        {"updatedMin": "yesterday"},
    ):
        resp = await client.get(EVENTS, params=params, headers=headers)
        assert resp.status == 400, params
    empty = await client.get(
        EVENTS,
        params={"timeMin": "2030-03-06T00:00:00Z", "timeMax": "2030-03-05T00:00:00Z"},
        headers=headers,
    )
    assert empty.status == 400
    google_error(await empty.json(), 400, "timeRangeEmpty")


async def test_filters_q_ical_uid_and_extended_properties(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    ours = await insert(
        client,
        headers,
        {
            "summary": "Team Standup",
            **at(6, 9),
            "extendedProperties": {"private": {"origin": "syncplane"}, "shared": {"k": "v"}},
        },
    )
    await insert(client, headers, {"summary": "Lunch", **at(6, 12)})

    async def ids(params: dict[str, str]) -> list[str]:
        return [e["id"] for e in items_of(await list_pages(client, headers, params))]

    assert await ids({"q": "standup"}) == [ours["id"]]
    assert await ids({"iCalUID": ours["iCalUID"]}) == [ours["id"]]
    assert await ids({"privateExtendedProperty": "origin=syncplane"}) == [ours["id"]]
    assert await ids({"sharedExtendedProperty": "k=v"}) == [ours["id"]]
    assert await ids({"privateExtendedProperty": "origin=other"}) == []
    bad = await client.get(EVENTS, params={"privateExtendedProperty": "novalue"}, headers=headers)
    assert bad.status == 400


async def test_single_events_expands_rrules_and_order_by_rules(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    series = await insert(
        client,
        headers,
        {
            "summary": "Weekly",
            "start": {"dateTime": "2030-03-04T09:00:00", "timeZone": "America/Toronto"},
            "end": {"dateTime": "2030-03-04T09:30:00", "timeZone": "America/Toronto"},
            "recurrence": [
                "RRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=6",
                "EXDATE;TZID=America/Toronto:20300306T090000",
            ],
        },
    )
    single = await insert(client, headers, {"summary": "One-off", **at(5, 15)})
    collapsed = items_of(await list_pages(client, headers, {}))
    assert {e["id"] for e in collapsed} == {series["id"], single["id"]}

    expanded = items_of(
        await list_pages(client, headers, {"singleEvents": "true", "orderBy": "startTime"})
    )
    instances = [e for e in expanded if e.get("recurringEventId") == series["id"]]
    # Six occurrences (Mon/Wed from 4 March), the excluded Wednesday 6 March left out.
    assert len(instances) == 5
    assert instances[0]["id"] == f"{series['id']}_20300304T140000Z"
    # The clocks change on 10 March: local 09:00 stays 09:00.
    assert instances[1]["start"]["dateTime"] == "2030-03-11T09:00:00-04:00"
    assert instances[0]["originalStartTime"]["dateTime"] == "2030-03-04T09:00:00-05:00"
    starts = [e["start"]["dateTime"] for e in expanded]
    assert [e["summary"] for e in expanded].index("One-off") == 1
    assert len(starts) == 6
    assert "recurrence" not in instances[0]

    windowed = items_of(
        await list_pages(
            client,
            headers,
            {
                "singleEvents": "true",
                "timeMin": "2030-03-10T00:00:00Z",
                "timeMax": "2030-03-14T00:00:00Z",
            },
        )
    )
    assert [e["start"]["dateTime"] for e in windowed] == [
        "2030-03-11T09:00:00-04:00",
        "2030-03-13T09:00:00-04:00",
    ]
    no_order = await client.get(EVENTS, params={"orderBy": "startTime"}, headers=headers)
    assert no_order.status == 400
    bad_order = await client.get(EVENTS, params={"orderBy": "colour"}, headers=headers)
    assert bad_order.status == 400
    by_updated = items_of(await list_pages(client, headers, {"orderBy": "updated"}))
    assert [e["id"] for e in by_updated] == [series["id"], single["id"]]


async def test_instance_exceptions_and_cancelled_instances(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    series = await insert(
        client,
        headers,
        {
            "summary": "Daily",
            "start": {"dateTime": "2030-05-01T08:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2030-05-01T08:15:00", "timeZone": "UTC"},
            "recurrence": ["RRULE:FREQ=DAILY;COUNT=3"],
        },
    )
    token = (await list_pages(client, headers, {"singleEvents": "true"}))[-1]["nextSyncToken"]
    second = f"{series['id']}_20300502T080000Z"
    third = f"{series['id']}_20300503T080000Z"
    got = await (await client.get(f"{EVENTS}/{second}", headers=headers)).json()
    assert got["recurringEventId"] == series["id"]
    moved = await client.patch(f"{EVENTS}/{second}", json={"summary": "Moved"}, headers=headers)
    assert (await moved.json())["summary"] == "Moved"
    assert (await client.delete(f"{EVENTS}/{third}", headers=headers)).status == 204

    expanded = items_of(await list_pages(client, headers, {"singleEvents": "true"}))
    assert [e["summary"] for e in expanded] == ["Daily", "Moved"]
    with_deleted = items_of(
        await list_pages(client, headers, {"singleEvents": "true", "showDeleted": "true"})
    )
    cancelled = [e for e in with_deleted if e["status"] == "cancelled"]
    assert cancelled == [
        {
            "kind": "calendar#event",
            "etag": cancelled[0]["etag"],
            "id": third,
            "status": "cancelled",
            "recurringEventId": series["id"],
            "originalStartTime": {"dateTime": "2030-05-03T08:00:00+00:00", "timeZone": "UTC"},
        }
    ]
    # Unexpanded, cancelled instances show up even without showDeleted.
    collapsed = items_of(await list_pages(client, headers, {}))
    assert {e["id"]: e["status"] for e in collapsed} == {
        series["id"]: "confirmed",
        second: "confirmed",
        third: "cancelled",
    }
    changes = items_of(
        await list_pages(client, headers, {"syncToken": token, "singleEvents": "true"})
    )
    assert {e["id"]: e["status"] for e in changes} == {second: "confirmed", third: "cancelled"}

    # Deleting the series reaches every instance of an expanded mirror.
    token = (await list_pages(client, headers, {"singleEvents": "true"}))[-1]["nextSyncToken"]
    assert (await client.delete(f"{EVENTS}/{series['id']}", headers=headers)).status == 204
    changes = items_of(
        await list_pages(client, headers, {"syncToken": token, "singleEvents": "true"})
    )
    assert {e["id"] for e in changes} == {f"{series['id']}_20300501T080000Z", second}
    assert all(e["status"] == "cancelled" for e in changes)
    assert items_of(await list_pages(client, headers, {"singleEvents": "true"})) == []


async def test_shrinking_a_series_cancels_the_dropped_instances_in_expanded_sync(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    series = await insert(
        client,
        headers,
        {
            "summary": "Daily",
            "start": {"date": "2030-06-01"},
            "end": {"date": "2030-06-02"},
            "recurrence": ["RRULE:FREQ=DAILY;COUNT=4"],
        },
    )
    token = (await list_pages(client, headers, {"singleEvents": "true"}))[-1]["nextSyncToken"]
    await client.patch(
        f"{EVENTS}/{series['id']}",
        json={"recurrence": ["RRULE:FREQ=DAILY;COUNT=2"]},
        headers=headers,
    )
    changes = items_of(
        await list_pages(client, headers, {"syncToken": token, "singleEvents": "true"})
    )
    states = {e["id"]: e["status"] for e in changes}
    assert states == {
        f"{series['id']}_20300601": "confirmed",
        f"{series['id']}_20300602": "confirmed",
        f"{series['id']}_20300603": "cancelled",
        f"{series['id']}_20300604": "cancelled",
    }
    collapsed = items_of(await list_pages(client, headers, {"syncToken": token}))
    assert [e["id"] for e in collapsed] == [series["id"]]


def test_rrule_subset_monthly_yearly_until_and_rdate() -> None:
    def starts(start: dict[str, str], lines: list[str]) -> list[str]:
        when = parse_when(start, "start", "UTC")
        found = occurrences(when, parse_recurrence(lines, when), None, 10**18)
        return [w.local.isoformat() if not w.all_day else w.day.isoformat() for w in found]

    jan31 = {"dateTime": "2030-01-31T08:00:00", "timeZone": "UTC"}
    # Months without a 31st are skipped, as RFC 5545 says.
    assert starts(jan31, ["RRULE:FREQ=MONTHLY;COUNT=3"]) == [
        "2030-01-31T08:00:00+00:00",
        "2030-03-31T08:00:00+00:00",
        "2030-05-31T08:00:00+00:00",
    ]
    assert starts(jan31, ["RRULE:FREQ=MONTHLY;BYMONTHDAY=1,-1;UNTIL=20300301T000000Z"]) == [
        "2030-01-31T08:00:00+00:00",
        "2030-02-01T08:00:00+00:00",
        "2030-02-28T08:00:00+00:00",
    ]
    leap = {"date": "2028-02-29"}
    assert starts(leap, ["RRULE:FREQ=YEARLY;COUNT=2"]) == ["2028-02-29", "2032-02-29"]
    assert starts(
        {"dateTime": "2030-01-01T08:00:00", "timeZone": "UTC"},
        [
            "RRULE:FREQ=DAILY;INTERVAL=2;COUNT=3",
            "RDATE:20300110T080000Z",
            "EXDATE:20300103T080000Z",
        ],
    ) == [
        "2030-01-01T08:00:00+00:00",
        "2030-01-05T08:00:00+00:00",
        "2030-01-10T08:00:00+00:00",
    ]
