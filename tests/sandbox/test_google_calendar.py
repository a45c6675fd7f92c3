"""Calendar v3 emulation (PROVIDERS.md §5): auth, calendars, writes with etags and
If-Match, ids, quotas, bad input, the events-list contract and the control routes.
Helpers here are shared by the other ``test_google_calendar_*`` files."""

from __future__ import annotations

import json
from typing import Any

import pytest
from provider_sandbox.config import SandboxConfig
from provider_sandbox.core import Sandbox

from tests.provider_payloads import PAYLOADS
from tests.sandbox.conftest import Client

pytestmark = pytest.mark.service

API = "/google/calendar/v3"
CONTROL = "/_sandbox/google_calendar"
SCOPE = "https://www.googleapis.com/auth/calendar"
ONE_HOUR = {
    "start": {"dateTime": "2030-01-10T09:00:00+00:00"},
    "end": {"dateTime": "2030-01-10T10:00:00+00:00"},
}


# -- helpers shared by the Calendar test files ---------------------------------------------


def sign_in(
    sandbox: Sandbox,
    config: SandboxConfig,
    hint: str = "alice@example.com",
    scopes: frozenset[str] = frozenset({SCOPE}),
) -> tuple[str, dict[str, str]]:
    account = sandbox.accounts.get_or_create("google", hint)
    grant = sandbox.tokens.issue("google", account.id, config.google.client_id, scopes, 3600)
    return account.id, {"Authorization": f"Bearer {grant.access_token}"}


async def insert(
    client: Client, headers: dict[str, str], body: dict[str, Any], cal: str = "primary"
) -> dict[str, Any]:
    resp = await client.post(f"{API}/calendars/{cal}/events", json=body, headers=headers)
    assert resp.status == 200, await resp.text()
    created: dict[str, Any] = await resp.json()
    return created


async def list_pages(
    client: Client, headers: dict[str, str], params: dict[str, str], cal: str = "primary"
) -> list[dict[str, Any]]:
    """Every page of one listing, following nextPageToken to the end."""
    pages: list[dict[str, Any]] = []
    query = dict(params)
    while True:
        resp = await client.get(f"{API}/calendars/{cal}/events", params=query, headers=headers)
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        pages.append(page)
        if "nextPageToken" not in page:
            return pages
        query = {**params, "pageToken": page["nextPageToken"]}


def items_of(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for page in pages for item in page["items"]]


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def shape_mismatches(example: Any, actual: Any, path: str = "$") -> list[str]:
    """Every place where ``actual`` lacks a key of ``example`` or holds another JSON type
    (null in the example matches anything; lists compare their first elements)."""
    if example is None:
        return []
    if isinstance(example, bool) or isinstance(actual, bool):
        same = isinstance(example, bool) and isinstance(actual, bool)
        return [] if same else [f"{path}: {type(actual).__name__} is not bool"]
    if isinstance(example, dict):
        if not isinstance(actual, dict):
            return [f"{path}: not an object"]
        found: list[str] = []
        for key, value in example.items():
            if key not in actual:
                found.append(f"{path}.{key}: missing")
            else:
                found += shape_mismatches(value, actual[key], f"{path}.{key}")
        return found
    if isinstance(example, list):
        if not isinstance(actual, list):
            return [f"{path}: not an array"]
        if example and actual:
            return shape_mismatches(example[0], actual[0], f"{path}[0]")
        return []
    if isinstance(example, int | float):
        return [] if isinstance(actual, int | float) else [f"{path}: not a number"]
    return [] if isinstance(actual, type(example)) else [f"{path}: not {type(example).__name__}"]


def google_error(body: dict[str, Any], status: int, reason: str) -> dict[str, Any]:
    assert body["error"]["code"] == status
    entry: dict[str, Any] = body["error"]["errors"][0]
    assert entry["reason"] == reason
    return entry


# -- auth and calendars --------------------------------------------------------------------


async def test_bearer_check_answers_401_auth_error(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    missing = await client.get(f"{API}/calendars/primary/events")
    assert missing.status == 401
    bogus = await client.get(
        f"{API}/calendars/primary/events", headers={"Authorization": "Bearer nope"}
    )
    assert bogus.status == 401
    google_error(await bogus.json(), 401, "authError")
    assert (await client.get(f"{API}/calendars/primary/events", headers=headers)).status == 200
    sandbox.clock.advance(3600)
    expired = await client.get(f"{API}/calendars/primary/events", headers=headers)
    assert expired.status == 401
    _, fit_only = sign_in(
        sandbox,
        config,
        "bob@example.com",
        frozenset({"https://www.googleapis.com/auth/fitness.activity.read"}),
    )
    narrow = await client.get(f"{API}/calendars/primary/events", headers=fit_only)
    assert narrow.status == 403


async def test_calendar_list_and_primary_alias(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    user, headers = sign_in(sandbox, config)
    added = await client.post(
        f"{CONTROL}/users/{user}/calendars",
        json={"summary": "Team", "description": "shared", "timeZone": "America/Toronto"},
    )
    assert added.status == 201
    team = await added.json()
    assert team["id"].endswith("@group.calendar.google.com")
    listing = await (await client.get(f"{API}/users/me/calendarList", headers=headers)).json()
    assert listing["kind"] == "calendar#calendarList"
    by_id = {c["id"]: c for c in listing["items"]}
    assert by_id["alice@example.com"]["primary"] is True
    assert by_id[team["id"]]["timeZone"] == "America/Toronto"
    primary = await (await client.get(f"{API}/calendars/primary", headers=headers)).json()
    assert primary["id"] == "alice@example.com"
    assert primary["kind"] == "calendar#calendar"
    via_id = await client.get(f"{API}/calendars/{team['id']}", headers=headers)
    assert (await via_id.json())["summary"] == "Team"
    events_only = sign_in(sandbox, config, "carol@example.com", frozenset({SCOPE + ".events"}))[1]
    # The events scope reaches events, not the calendar list.
    assert (await client.get(f"{API}/users/me/calendarList", headers=events_only)).status == 403
    assert (await client.get(f"{API}/calendars/primary/events", headers=events_only)).status == 200


async def test_unknown_calendar_and_event_answer_googles_404(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    for method, path in (
        ("GET", "/calendars/nobody@example.com/events"),
        ("GET", "/calendars/nobody@example.com"),
        ("POST", "/calendars/nobody@example.com/events/watch"),
        ("GET", "/calendars/primary/events/abcdefghij"),
        ("PATCH", "/calendars/primary/events/abcdefghij"),
        ("PUT", "/calendars/primary/events/abcdefghij"),
        ("DELETE", "/calendars/primary/events/abcdefghij"),
    ):
        resp = await client.request(method, API + path, headers=headers, json={})
        assert resp.status == 404, (method, path)
        body = await resp.json()
        assert body == {
            "error": {
                "errors": [{"domain": "global", "reason": "notFound", "message": "Not Found"}],
                "code": 404,
                "message": "Not Found",
            }
        }


async def test_another_users_calendar_is_not_found(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, alice = sign_in(sandbox, config)
    _, bob = sign_in(sandbox, config, "bob@example.com")
    await insert(client, alice, {"summary": "mine", **ONE_HOUR})
    resp = await client.get(f"{API}/calendars/alice@example.com/events", headers=bob)
    assert resp.status == 404


# -- writes --------------------------------------------------------------------------------


async def test_insert_get_patch_update_delete(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    created = await insert(client, headers, {"summary": "Standup", **ONE_HOUR})
    assert created["kind"] == "calendar#event"
    assert created["status"] == "confirmed"
    assert created["etag"].startswith('"')
    assert created["etag"].endswith('"')
    assert created["iCalUID"] == f"{created['id']}@google.com"
    url = f"{API}/calendars/primary/events/{created['id']}"
    got = await (await client.get(url, headers=headers)).json()
    assert got == created

    sandbox.clock.advance(1)
    patched_resp = await client.patch(url, json={"location": "Room 1"}, headers=headers)
    patched = await patched_resp.json()
    assert patched["summary"] == "Standup"
    assert patched["location"] == "Room 1"
    assert patched["etag"] != created["etag"]
    assert patched["updated"] > created["updated"]

    replaced = await (
        await client.put(url, json={"summary": "Retro", **ONE_HOUR}, headers=headers)
    ).json()
    assert replaced["summary"] == "Retro"
    assert "location" not in replaced
    assert replaced["etag"] != patched["etag"]
    assert replaced["created"] == created["created"]

    deleted = await client.delete(url, headers=headers)
    assert deleted.status == 204
    assert await deleted.read() == b""
    after = await (await client.get(url, headers=headers)).json()
    assert after["status"] == "cancelled"
    again = await client.delete(url, headers=headers)
    assert again.status == 410
    entry = google_error(await again.json(), 410, "deleted")
    assert entry == {
        "domain": "global",
        "reason": "deleted",
        "message": "Resource has been deleted",
    }


async def test_etag_changes_on_every_write_even_within_one_millisecond(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    created = await insert(client, headers, {"summary": "a", **ONE_HOUR})
    url = f"{API}/calendars/primary/events/{created['id']}"
    etags = {created["etag"]}
    for n in range(5):
        resp = await client.patch(url, json={"summary": f"v{n}"}, headers=headers)
        etags.add((await resp.json())["etag"])
    assert len(etags) == 6


async def test_if_match_stale_etag_412_and_current_etag_succeeds(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    created = await insert(client, headers, {"summary": "a", **ONE_HOUR})
    url = f"{API}/calendars/primary/events/{created['id']}"
    remote = await client.put(
        f"{CONTROL}/users/{sandbox.accounts.get_or_create('google', 'alice@example.com').id}"
        f"/calendars/primary/events/{created['id']}",
        json={"summary": "edited in Google's UI"},
    )
    current = (await remote.json())["etag"]
    for method in ("PATCH", "PUT", "DELETE"):
        stale = await client.request(
            method,
            url,
            json={"summary": "mine", **ONE_HOUR},
            headers={**headers, "If-Match": created["etag"]},
        )
        assert stale.status == 412, method
        assert await stale.json() == {
            "error": {
                "errors": [
                    {
                        "domain": "global",
                        "reason": "conditionNotMet",
                        "message": "Precondition Failed",
                        "locationType": "header",
                        "location": "If-Match",
                    }
                ],
                "code": 412,
                "message": "Precondition Failed",
            }
        }
    ok = await client.patch(url, json={"summary": "mine"}, headers={**headers, "If-Match": current})
    assert ok.status == 200
    fresh = (await ok.json())["etag"]
    gone = await client.delete(url, headers={**headers, "If-Match": fresh})
    assert gone.status == 204


async def test_if_none_match_on_get_answers_304(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    created = await insert(client, headers, {"summary": "a", **ONE_HOUR})
    url = f"{API}/calendars/primary/events/{created['id']}"
    resp = await client.get(url, headers={**headers, "If-None-Match": created["etag"]})
    assert resp.status == 304


async def test_client_chosen_ids_validated_and_unique(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    ok = await insert(client, headers, {"id": "abcdef0123uv", **ONE_HOUR})
    assert ok["id"] == "abcdef0123uv"
    for bad in ("abc", "UPPERCASE1", "has-dash-0", "w" * 6, "a" * 1025):
        resp = await client.post(
            f"{API}/calendars/primary/events", json={"id": bad, **ONE_HOUR}, headers=headers
        )
        assert resp.status == 400, bad
        entry = google_error(await resp.json(), 400, "invalid")
        assert entry["message"] == "Invalid resource id value."
    dup = await client.post(
        f"{API}/calendars/primary/events",
        json={"id": "abcdef0123uv", **ONE_HOUR},
        headers=headers,
    )
    assert dup.status == 409
    google_error(await dup.json(), 409, "duplicate")


async def test_bad_bodies_and_times_answer_400_never_500(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    events = f"{API}/calendars/primary/events"
    garbage = await client.post(events, data=b"{not json", headers=headers)
    assert garbage.status == 400
    google_error(await garbage.json(), 400, "parseError")
    array = await client.post(events, json=[1, 2], headers=headers)
    assert array.status == 400
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "required"),
        ({"start": {"dateTime": "2030-01-10T09:00:00Z"}}, "required"),
        ({"start": {"dateTime": "tomorrow"}, "end": {"dateTime": "later"}}, "invalid"),
        (
            {
                "start": {"dateTime": "2030-01-10T09:00:00"},
                "end": {"dateTime": "2030-01-10T10:00:00"},
            },
            "required",
        ),
        (
            {"start": {"date": "2030-01-10"}, "end": {"dateTime": "2030-01-10T10:00:00Z"}},
            "invalid",
        ),
        (
            {
                "start": {"dateTime": "2030-01-10T10:00:00Z"},
                "end": {"dateTime": "2030-01-10T09:00:00Z"},
            },
            "timeRangeEmpty",
        ),
        ({**ONE_HOUR, "start": {"date": "2030-02-30"}, "end": {"date": "2030-03-01"}}, "invalid"),
        ({**ONE_HOUR, "status": "maybe"}, "invalid"),
        ({**ONE_HOUR, "summary": 42}, "invalid"),
        (
            {
                "start": {"dateTime": "2030-01-10T09:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2030-01-10T10:00:00", "timeZone": "UTC"},
                "recurrence": ["RRULE:FREQ=SOMETIMES"],
            },
            "invalid",
        ),
        ({**ONE_HOUR, "recurrence": ["RRULE:FREQ=DAILY"]}, "required"),
        (
            {**ONE_HOUR, "start": {"dateTime": "2030-01-10T09:00:00", "timeZone": "Mars/Base"}},
            "invalid",
        ),
        ({**ONE_HOUR, "extendedProperties": {"private": {"k": 1}}}, "invalid"),
    ]
    for body, reason in cases:
        resp = await client.post(events, json=body, headers=headers)
        assert resp.status == 400, body
        google_error(await resp.json(), 400, reason)
    created = await insert(client, headers, {"summary": "a", **ONE_HOUR})
    one = f"{events}/{created['id']}"
    bad_patch = await client.patch(one, data=b"[", headers=headers)
    assert bad_patch.status == 400
    bad_time = await client.patch(one, json={"end": {"dateTime": "nope"}}, headers=headers)
    assert bad_time.status == 400


async def test_read_only_fields_are_ignored_and_unknown_fields_dropped(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    created = await insert(
        client,
        headers,
        {
            **ONE_HOUR,
            "etag": '"1"',
            "updated": "1999-01-01T00:00:00Z",
            "kind": "something",
            "madeUpField": 1,
            "extendedProperties": {"private": {"origin": "syncplane"}},
        },
    )
    assert created["etag"] != '"1"'
    assert created["kind"] == "calendar#event"
    assert "madeUpField" not in created
    assert created["extendedProperties"] == {"private": {"origin": "syncplane"}}


# -- quotas --------------------------------------------------------------------------------


async def test_per_user_quota_answers_403_then_429_and_slides(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    _, other = sign_in(sandbox, config, "bob@example.com")
    events = f"{API}/calendars/primary/events"
    await client.post(
        f"{CONTROL}/config", json={"user_rate_limit_per_minute": 3, "rate_limit_status": 403}
    )
    for _ in range(3):
        assert (await client.get(events, headers=headers)).status == 200
    limited = await client.get(events, headers=headers)
    assert limited.status == 403
    assert await limited.json() == {
        "error": {
            "errors": [
                {
                    "domain": "usageLimits",
                    "reason": "rateLimitExceeded",
                    "message": "Rate Limit Exceeded",
                }
            ],
            "code": 403,
            "message": "Rate Limit Exceeded",
        }
    }
    assert (await client.get(events, headers=other)).status == 200
    await client.post(f"{CONTROL}/config", json={"rate_limit_status": 429})
    too_many = await client.get(events, headers=headers)
    assert too_many.status == 429
    body = await too_many.json()
    assert body["error"]["code"] == 429
    assert body["error"]["errors"][0]["reason"] == "rateLimitExceeded"
    stats = await (await client.get("/_sandbox/stats")).json()
    assert stats["rate_limited"]["google_calendar GET /calendars/{calendarId}/events"] == 2
    sandbox.clock.advance(60)
    assert (await client.get(events, headers=headers)).status == 200


async def test_project_quota_and_injected_quota_errors(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, alice = sign_in(sandbox, config)
    _, bob = sign_in(sandbox, config, "bob@example.com")
    events = f"{API}/calendars/primary/events"
    await client.post(f"{CONTROL}/config", json={"project_rate_limit_per_minute": 2})
    assert (await client.get(events, headers=alice)).status == 200
    assert (await client.get(events, headers=bob)).status == 200
    assert (await client.get(events, headers=bob)).status in (403, 429)
    sandbox.clock.advance(61)
    await client.post(f"{CONTROL}/config", json={"project_rate_limit_per_minute": 10_000})
    for reason, status, domain in (
        ("userRateLimitExceeded", 403, "usageLimits"),
        ("quotaExceeded", 403, "usageLimits"),
        ("backendError", 500, "global"),
    ):
        set_resp = await client.post(
            f"{CONTROL}/config", json={"inject": {"reason": reason, "count": 1}}
        )
        assert set_resp.status == 200
        resp = await client.get(events, headers=alice)
        assert resp.status == status
        assert google_error(await resp.json(), status, reason)["domain"] == domain
    assert (await client.get(events, headers=alice)).status == 200
    bad = await client.post(f"{CONTROL}/config", json={"inject": {"reason": "sunspots"}})
    assert bad.status == 400
    assert (await client.post(f"{CONTROL}/config", json={"colour": 1})).status == 400


async def test_injected_faults_use_googles_envelope(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    await client.post(
        "/_sandbox/faults",
        json={
            "provider": "google_calendar",
            "endpoint": "GET /calendars/{calendarId}/events",
            "status": 410,
            "count": 1,
        },
    )
    resp = await client.get(f"{API}/calendars/primary/events", headers=headers)
    assert resp.status == 410
    google_error(await resp.json(), 410, "fullSyncRequired")


# -- contract: events.list page --------------------------------------------------------------


async def test_events_list_page_matches_the_real_shape(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    user, headers = sign_in(sandbox, config)
    cal = await (
        await client.post(
            f"{CONTROL}/users/{user}/calendars",
            json={
                "summary": "Test Calendar",
                "description": "testing",
                "timeZone": "America/Toronto",
            },
        )
    ).json()
    await insert(
        client,
        headers,
        {
            "summary": "test event",
            "start": {"dateTime": "2030-10-01T20:00:00-04:00", "timeZone": "America/Toronto"},
            "end": {"dateTime": "2030-10-01T21:00:00-04:00", "timeZone": "America/Toronto"},
        },
        cal=cal["id"],
    )
    pages = await list_pages(client, headers, {}, cal=cal["id"])
    assert len(pages) == 1
    example = payload("gcal_events_list_page.json")
    assert shape_mismatches(example, pages[0]) == []
    item = pages[0]["items"][0]
    assert item["start"] == {"dateTime": "2030-10-01T20:00:00-04:00", "timeZone": "America/Toronto"}
    assert item["organizer"]["email"] == cal["id"]
    assert "nextPageToken" not in pages[0]


# -- control routes --------------------------------------------------------------------------


async def test_control_seeds_edits_and_lists_events_as_google_would(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    user, headers = sign_in(sandbox, config)
    events = f"{CONTROL}/users/{user}/calendars/primary/events"
    generated = await client.post(events, json={"generate": 3})
    assert generated.status == 201
    made = (await generated.json())["items"]
    assert len(made) == 3
    assert all(e["id"] and e["etag"] for e in made)
    given = await client.post(events, json={"events": [{"summary": "Dentist", **ONE_HOUR}]})
    dentist = (await given.json())["items"][0]
    assert dentist["summary"] == "Dentist"
    edited = await client.put(f"{events}/{dentist['id']}", json={"location": "Downtown"})
    assert (await edited.json())["location"] == "Downtown"
    removed = await client.delete(f"{events}/{made[0]['id']}")
    assert (await removed.json())["status"] == "cancelled"
    listing = await (await client.get(events)).json()
    states = {e["id"]: e["status"] for e in listing["items"]}
    assert states[made[0]["id"]] == "cancelled"
    assert len(states) == 4
    api_view = items_of(await list_pages(client, headers, {}))
    assert {e["id"] for e in api_view} == set(states) - {made[0]["id"]}
    assert (await client.put(f"{events}/nonexistent0", json={})).status == 404
    assert (await client.post(events, json={"generate": -1})).status == 400
    assert (await client.post(events, data=b"{")).status == 400
    assert (
        await client.post(f"{CONTROL}/users/{user}/calendars/none/events", json={})
    ).status == 404


async def test_control_users_may_be_named_by_login_hint_before_sign_in(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    seeded = await client.post(
        f"{CONTROL}/users/dana@example.com/calendars/primary/events",
        json={"events": [{"summary": "Seeded", **ONE_HOUR}]},
    )
    assert seeded.status == 201
    _, headers = sign_in(sandbox, config, "dana@example.com")
    items = items_of(await list_pages(client, headers, {}))
    assert [e["summary"] for e in items] == ["Seeded"]


async def test_reset_clears_calendar_state(
    client: Client, sandbox: Sandbox, config: SandboxConfig
) -> None:
    _, headers = sign_in(sandbox, config)
    await insert(client, headers, ONE_HOUR)
    await client.post(f"{CONTROL}/config", json={"user_rate_limit_per_minute": 1})
    await client.post("/_sandbox/reset")
    config_now = await (await client.get(f"{CONTROL}/config")).json()
    assert config_now["config"]["user_rate_limit_per_minute"] == 600
    _user, headers = sign_in(sandbox, config)
    assert items_of(await list_pages(client, headers, {})) == []
