"""sync_worker.providers.whoop against the in-process sandbox: nextToken pagination to the
end and resuming from a checkpoint, exact fields and the raw payload, single records by
v2 id, v1 id and (for recovery) sleep id, usage headers, and the error mapping."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from provider_sandbox.core import Sandbox
from sync_worker.providers import token_fingerprint
from sync_worker.providers.whoop import (
    MAX_LIMIT,
    Cycle,
    Policy,
    Recovery,
    Sleep,
    WhoopClient,
    WhoopPage,
    WhoopUsage,
    Workout,
    parse_record,
    parse_usage,
    raise_for_answer,
)
from syncplane_common.clock import ManualClock
from syncplane_common.errors import (
    CursorInvalidError,
    NotFoundError,
    PermanentError,
    RetryableError,
    TokenRejectedError,
)

from tests.sandbox.conftest import Client
from tests.sandbox.test_whoop_oauth import (
    API,
    configure,
    generate,
    issue_token,
    payload,
    user_id,
)

pytestmark = pytest.mark.service

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
async def whoop(client: Client) -> AsyncIterator[WhoopClient]:
    async with aiohttp.ClientSession() as session:
        yield WhoopClient(session, str(client.make_url(API)), ManualClock(NOW))


async def member(client: Client, sandbox: Sandbox, hint: str) -> tuple[int, str]:
    user = user_id(sandbox, hint)
    return user, (await issue_token(client, user))["access_token"]


async def fault(client: Client, endpoint: str, status: int, **extra: Any) -> None:
    rule = {"provider": "whoop", "endpoint": endpoint, "status": status, **extra}
    assert (await client.post("/_sandbox/faults", json=rule)).status in (200, 201)


async def collect(pages: AsyncIterator[WhoopPage]) -> list[WhoopPage]:
    return [page async for page in pages]


# -- pagination ------------------------------------------------------------------------


@pytest.mark.parametrize("last_page", ["absent", "null"])
async def test_pages_walk_to_the_end_newest_first(
    client: Client, sandbox: Sandbox, whoop: WhoopClient, last_page: str
) -> None:
    await configure(client, last_page_next_token=last_page)
    user, token = await member(client, sandbox, f"walk-{last_page}")
    made = await generate(client, user, "sleep", 2 * MAX_LIMIT + 3)

    pages = await collect(whoop.pages(token, "sleep"))

    assert [len(p.items) for p in pages] == [MAX_LIMIT, MAX_LIMIT, 3]
    assert [p.is_last for p in pages] == [False, False, True]
    assert pages[-1].next_cursor is None
    for page in pages[:-1]:
        assert page.next_cursor is not None
        assert page.next_cursor["kind"] == "sleep"
        assert page.next_cursor["limit"] == MAX_LIMIT
    records = [r for p in pages for r in p.items]
    assert all(isinstance(r, Sleep) for r in records)
    assert sorted(r.key for r in records) == sorted(m["id"] for m in made)
    starts = [r.at for r in records]
    assert starts == sorted(starts, reverse=True)
    stats = await (await client.get("/_sandbox/stats")).json()
    assert stats["calls"]["whoop GET /v2/activity/sleep"] == 3


async def test_resume_from_a_checkpoint_yields_the_rest(
    client: Client, sandbox: Sandbox, whoop: WhoopClient
) -> None:
    user, token = await member(client, sandbox, "resume")
    await generate(client, user, "workout", 12)
    full = await collect(whoop.pages(token, "workout", limit=5))
    assert [len(p.items) for p in full] == [5, 5, 2]

    checkpoint = full[0].next_cursor
    assert checkpoint is not None
    # The checkpoint goes through jsonb: only JSON values in it.
    assert all(isinstance(v, str | int) or v is None for v in checkpoint.values())
    rest = await collect(whoop.resume(token, checkpoint))

    assert [[r.key for r in p.items] for p in rest] == [[r.key for r in p.items] for p in full[1:]]
    with pytest.raises(CursorInvalidError):
        whoop.resume(token, {"kind": "sleep"})


async def test_start_and_end_bound_the_walk(
    client: Client, sandbox: Sandbox, whoop: WhoopClient
) -> None:
    user, token = await member(client, sandbox, "bounds")
    made = await generate(client, user, "cycle", 10)
    starts = sorted(datetime.fromisoformat(c["start"]) for c in made)
    start, end = starts[2], starts[7]

    pages = await collect(whoop.pages(token, "cycle", start=start, end=end, limit=2))

    got = [r.at for p in pages for r in p.items]
    # start inclusive, end exclusive (§7.3).
    assert sorted(got) == starts[2:7]
    assert pages[0].next_cursor is not None
    assert pages[0].next_cursor["start"] == start.isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


async def test_an_empty_collection_is_one_last_page(
    client: Client, sandbox: Sandbox, whoop: WhoopClient
) -> None:
    _, token = await member(client, sandbox, "empty")
    pages = await collect(whoop.pages(token, "recovery"))
    assert len(pages) == 1
    assert pages[0].items == ()
    assert pages[0].is_last


# -- fields ----------------------------------------------------------------------------


async def test_exact_fields_and_raw_of_every_kind(
    client: Client, sandbox: Sandbox, whoop: WhoopClient
) -> None:
    await configure(client, unscorable_rate=0.0)
    user, token = await member(client, sandbox, "fields")
    recovery_made = (await generate(client, user, "recovery", 1))[0]
    workout_made = (await generate(client, user, "workout", 1))[0]

    [recovery] = [r for p in await collect(whoop.pages(token, "recovery")) for r in p.items]
    [sleep] = [r for p in await collect(whoop.pages(token, "sleep")) for r in p.items]
    [cycle] = [r for p in await collect(whoop.pages(token, "cycle")) for r in p.items]
    [workout] = [r for p in await collect(whoop.pages(token, "workout")) for r in p.items]

    assert isinstance(recovery, Recovery)
    assert recovery.raw == recovery_made
    assert recovery.key == recovery_made["sleep_id"] == str(sleep.key)
    assert recovery.cycle_id == recovery_made["cycle_id"]
    assert recovery.user_id == user
    assert recovery.score is not None
    assert recovery.score.recovery_score == recovery_made["score"]["recovery_score"]
    assert recovery.score.hrv_rmssd_milli == recovery_made["score"]["hrv_rmssd_milli"]

    assert isinstance(sleep, Sleep)
    assert isinstance(cycle, Cycle)
    assert sleep.cycle_id == cycle.id
    assert sleep.start == cycle.start
    assert sleep.score is not None
    assert sleep.score.stage_summary is not None
    in_bed = sleep.score.stage_summary.total_in_bed_time_milli
    assert in_bed == (sleep.end - sleep.start) // timedelta(milliseconds=1)
    assert sleep.start.tzinfo == UTC

    assert isinstance(workout, Workout)
    assert workout.raw == workout_made
    assert workout.sport_name == workout_made["sport_name"]
    assert workout.v1_id == workout_made["v1_id"]
    assert workout.score is not None
    assert workout.score.zone_durations is not None
    assert workout.score.strain == workout_made["score"]["strain"]
    assert workout.content_hash != sleep.content_hash


def test_the_documented_examples_parse_with_their_ids() -> None:
    cycle = parse_record("cycle", payload("whoop_cycle.json")["records"][0])
    recovery = parse_record("recovery", payload("whoop_recovery.json")["records"][0])
    sleep = parse_record("sleep", payload("whoop_sleep.json")["records"][0])
    workout = parse_record("workout", payload("whoop_workout.json")["records"][0])
    assert (cycle.key, recovery.key) == ("93845", "123e4567-e89b-12d3-a456-426614174000")
    assert sleep.key == workout.key == "ecfc6a15-4661-442f-a9a4-f160dd7afae8"
    assert isinstance(cycle, Cycle)
    assert cycle.score is not None
    assert cycle.score.average_heart_rate == 68
    assert isinstance(workout, Workout)
    assert (workout.v1_id, workout.sport_id) == (1043, 1)
    # A cycle in progress has no end; a pending record has no score.
    open_cycle = {**payload("whoop_cycle.json")["records"][0], "score_state": "PENDING_SCORE"}
    del open_cycle["end"], open_cycle["score"]
    parsed = parse_record("cycle", open_cycle)
    assert isinstance(parsed, Cycle)
    assert (parsed.end, parsed.score, parsed.scored) == (None, None, False)
    # Key order is serialization, not content.
    reordered = dict(reversed(list(cycle.raw.items())))
    assert parse_record("cycle", reordered).content_hash == cycle.content_hash


async def test_a_record_that_does_not_fit_is_set_aside(
    client: Client, sandbox: Sandbox, whoop: WhoopClient
) -> None:
    user, token = await member(client, sandbox, "odd")
    await generate(client, user, "cycle", 2)
    await fault(
        client,
        "GET /v2/cycle",
        200,
        count=1,
        body={"records": [{"id": "not-an-int"}, payload("whoop_cycle.json")["records"][0]]},
    )
    page = await whoop.list_page(token, "cycle")
    assert [r.key for r in page.items] == ["93845"]
    assert page.invalid == ({"id": "not-an-int"},)


# -- single records --------------------------------------------------------------------


async def test_get_each_kind_by_the_id_its_webhook_carries(
    client: Client, sandbox: Sandbox, whoop: WhoopClient
) -> None:
    await configure(client, unscorable_rate=0.0)
    user, token = await member(client, sandbox, "single")
    recovery_made = (await generate(client, user, "recovery", 1))[0]
    workout_made = (await generate(client, user, "workout", 1))[0]

    recovery = await whoop.get(token, "recovery", recovery_made["sleep_id"])
    sleep = await whoop.get(token, "sleep", recovery_made["sleep_id"])
    cycle = await whoop.get(token, "cycle", recovery_made["cycle_id"])
    workout = await whoop.get(token, "workout", workout_made["id"].upper())
    by_v1 = await whoop.get(token, "workout", workout_made["v1_id"])

    assert recovery.record.raw == recovery_made
    assert isinstance(sleep.record, Sleep)
    assert sleep.record.cycle_id == recovery_made["cycle_id"]
    assert isinstance(cycle.record, Cycle)
    assert cycle.record.id == recovery_made["cycle_id"]
    assert workout.record.raw == workout_made == by_v1.record.raw
    assert recovery.usage is not None
    stats = await (await client.get("/_sandbox/stats")).json()
    assert stats["calls"]["whoop GET /v1/activity-mapping/{activityV1Id}"] == 1
    # A recovery is reached through its sleep's cycle: two calls.
    assert stats["calls"]["whoop GET /v2/cycle/{cycleId}/recovery"] == 1


async def test_get_of_a_missing_record_or_a_nap_recovery_is_not_found(
    client: Client, sandbox: Sandbox, whoop: WhoopClient
) -> None:
    user, token = await member(client, sandbox, "missing")
    cycle = (await generate(client, user, "cycle", 1))[0]
    nap = await client.post(
        f"/_sandbox/whoop/users/{user}/sleep",
        json={"records": [{"cycle_id": cycle["id"], "nap": True}]},
    )
    assert nap.status == 201, await nap.text()
    nap_id = (await nap.json())["records"][0]["id"]

    with pytest.raises(NotFoundError):
        await whoop.get(token, "sleep", str(uuid.uuid4()))
    with pytest.raises(NotFoundError):
        await whoop.get(token, "recovery", nap_id)
    with pytest.raises(PermanentError):
        await whoop.get(token, "cycle", "not-a-number")
    with pytest.raises(PermanentError):
        await whoop.get(token, "sleep", "not-a-uuid")


async def test_another_members_record_is_not_found(
    client: Client, sandbox: Sandbox, whoop: WhoopClient
) -> None:
    owner, _ = await member(client, sandbox, "owner")
    _, other_token = await member(client, sandbox, "other")
    workout = (await generate(client, owner, "workout", 1))[0]
    with pytest.raises(NotFoundError):
        await whoop.get(other_token, "workout", workout["id"])


# -- usage and errors ------------------------------------------------------------------


async def test_usage_headers_are_parsed(
    client: Client, sandbox: Sandbox, whoop: WhoopClient
) -> None:
    _, token = await member(client, sandbox, "usage")
    sandbox.clock.advance(60 - sandbox.clock.time() % 60 + 1)
    first = await whoop.list_page(token, "cycle")
    second = await whoop.list_page(token, "cycle")
    assert first.usage is not None
    assert second.usage is not None
    assert first.usage.limit == 100
    assert first.usage.policies == (Policy(100, 60), Policy(10_000, 86_400))
    assert (first.usage.remaining, second.usage.remaining) == (99, 98)
    assert 1 <= second.usage.reset_seconds <= 59


def test_usage_parsing_edge_cases() -> None:
    headers = {
        "x-ratelimit-limit": "3, 100;window=60, 3;window=86400",
        "X-RATELIMIT-REMAINING": "0",
        "X-RateLimit-Reset": "86000",
    }
    usage = parse_usage(headers)
    assert usage == WhoopUsage(3, 0, 86000.0, (Policy(100, 60), Policy(3, 86_400)))
    assert usage.spent
    assert parse_usage({}) is None
    assert parse_usage({**headers, "X-RateLimit-Reset": "soon"}) is None
    odd = parse_usage({**headers, "x-ratelimit-limit": "3, 3 per day"})
    assert odd is not None
    assert (odd.limit, odd.policies) == (3, ())


async def test_401_is_token_rejected_with_its_fingerprint(
    client: Client, whoop: WhoopClient
) -> None:
    with pytest.raises(TokenRejectedError) as caught:
        await whoop.list_page("expired-or-unknown-token", "sleep")
    assert caught.value.fingerprint == token_fingerprint("expired-or-unknown-token")
    assert "expired-or-unknown-token" not in str(caught.value.to_dict())


async def test_429_waits_for_the_reset_header(
    client: Client, sandbox: Sandbox, whoop: WhoopClient
) -> None:
    _, token = await member(client, sandbox, "limited")
    await configure(client, rate_limit_per_minute=2)
    sandbox.clock.advance(60 - sandbox.clock.time() % 60 + 15)
    await whoop.list_page(token, "workout")
    await whoop.list_page(token, "workout")
    with pytest.raises(RetryableError) as caught:
        await whoop.list_page(token, "workout")
    assert type(caught.value) is RetryableError
    assert caught.value.retry_after == 45.0
    assert caught.value.details["status"] == 429


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retryable(
    client: Client, sandbox: Sandbox, whoop: WhoopClient, status: int
) -> None:
    _, token = await member(client, sandbox, f"down-{status}")
    await fault(client, "GET /v2/recovery", status, count=1)
    with pytest.raises(RetryableError) as caught:
        await whoop.list_page(token, "recovery")
    assert type(caught.value) is RetryableError
    # The fault was one-off: the same call now succeeds.
    assert (await whoop.list_page(token, "recovery")).is_last


async def test_a_400_is_permanent_unless_a_token_was_sent(
    client: Client, sandbox: Sandbox, whoop: WhoopClient
) -> None:
    user, token = await member(client, sandbox, "bad")
    await generate(client, user, "sleep", 3)
    await fault(client, "GET /v2/activity/sleep", 400, count=1)
    with pytest.raises(PermanentError) as first:
        await whoop.list_page(token, "sleep", limit=1)
    assert type(first.value) is PermanentError
    with pytest.raises(CursorInvalidError):
        await collect(whoop.resume(token, {"kind": "sleep", "next_token": "garbage!"}))


async def test_transport_failure_is_retryable() -> None:
    async with aiohttp.ClientSession() as session:
        dead = WhoopClient(session, "http://127.0.0.1:9/whoop/developer", ManualClock(NOW))
        with pytest.raises(RetryableError):
            await dead.list_page("token", "cycle")


def test_error_table() -> None:
    def mapped(status: int, headers: dict[str, str] | None = None, **kw: Any) -> Exception:
        try:
            raise_for_answer(
                status, {"message": "m"}, headers or {}, operation="get", token="t", now=NOW, **kw
            )
        except Exception as err:
            return err
        raise AssertionError("raise_for_answer returned")

    assert isinstance(mapped(401), TokenRejectedError)
    limited = mapped(
        429, {"X-RateLimit-Reset": "7", "X-RateLimit-Remaining": "0", "X-RateLimit-Limit": "100"}
    )
    assert isinstance(limited, RetryableError)
    assert limited.retry_after == 7.0
    fallback = mapped(429)
    assert isinstance(fallback, RetryableError)
    assert fallback.retry_after == 60.0
    assert type(mapped(500)) is RetryableError
    assert type(mapped(404)) is NotFoundError
    assert type(mapped(400)) is PermanentError
    assert type(mapped(400, sent_next_token=True)) is CursorInvalidError
    assert type(mapped(403)) is PermanentError
