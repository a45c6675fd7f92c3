"""calendar-sync's pure decisions: content hash, Google mapping, loop prevention and the
conflict policies (issue 8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from calendar_sync.domain import (
    Fields,
    Local,
    Mapping,
    Pacer,
    Policy,
    Remote,
    Side,
    content_hash,
    decide_inbound,
    decide_outbound,
    merge,
    needs_renewal,
    resolve,
    same_content,
)
from calendar_sync.providers.google_calendar import from_google, to_google

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
MEETING = Fields(
    title="Rent",
    description="monthly",
    location="home",
    start="2026-03-02T10:00:00+00:00",
    end="2026-03-02T11:00:00+00:00",
    time_zone="Europe/Paris",
    metadata={"amount": 1200},
)


def mapped(fields: Fields, *, version: int = 1, etag: str = '"1"') -> Mapping:
    return Mapping("g1", etag, content_hash(fields), version, fields)


def local(fields: Fields, *, version: int = 1, deleted: bool = False) -> Local:
    return Local("l1", fields, version, T0, deleted)


def google_item(fields: Fields, *, etag: str = '"2"', **extra: Any) -> dict[str, Any]:
    return {"id": "g1", "etag": etag, "updated": "2026-03-01T12:00:00.000Z"} | (
        to_google(fields, "l1") | extra
    )


def test_hash_ignores_how_an_instant_is_written() -> None:
    # Google answers in the event's zone; the same instant must not look like news.
    paris = Fields(**{**MEETING.to_json(), "start": "2026-03-02T11:00:00+01:00"})
    assert content_hash(paris) == content_hash(MEETING)
    assert content_hash(MEETING) != content_hash(Fields(**{**MEETING.to_json(), "title": "x"}))


def test_same_content_compares_by_hash_and_treats_none_as_deleted() -> None:
    paris = Fields(**{**MEETING.to_json(), "start": "2026-03-02T11:00:00+01:00"})
    assert same_content(paris, MEETING)
    assert not same_content(MEETING, Fields(**{**MEETING.to_json(), "title": "x"}))
    assert same_content(None, None)
    assert not same_content(MEETING, None)
    assert not same_content(None, MEETING)
    assert local(MEETING).content == MEETING
    assert local(MEETING, deleted=True).content is None


def test_hash_of_all_day_events_ignores_the_zone() -> None:
    day = Fields(title="Holiday", all_day=True, start="2026-03-02", end="2026-03-03")
    assert content_hash(day) == content_hash(Fields(**{**day.to_json(), "time_zone": "UTC"}))


def test_what_we_write_reads_back_as_the_same_content() -> None:
    remote = from_google(google_item(MEETING))
    assert remote.fields == MEETING
    assert remote.local_id == "l1"
    assert content_hash(remote.fields) == content_hash(MEETING)


def test_google_shapes_we_read() -> None:
    assert from_google({"id": "g9", "status": "cancelled"}).deleted
    series = from_google(google_item(MEETING, recurrence=["RRULE:FREQ=DAILY"]))
    assert series.unsupported == "recurring"
    bare = from_google(
        {"id": "g", "etag": '"1"', "start": {"date": "2026-01-01"}, "end": {"date": "2026-01-02"}}
    )
    assert bare.fields == Fields(all_day=True, start="2026-01-01", end="2026-01-02")


def test_outbound_is_skipped_when_google_already_holds_the_content() -> None:
    assert decide_outbound(local(MEETING), None) == "insert"
    assert decide_outbound(local(MEETING, version=2), mapped(MEETING)) == "skip"
    edited = Fields(**{**MEETING.to_json(), "title": "Rent (paid)"})
    assert decide_outbound(local(edited, version=2), mapped(MEETING)) == "patch"
    assert decide_outbound(local(MEETING, deleted=True), mapped(MEETING)) == "delete"
    assert decide_outbound(local(MEETING, deleted=True), None) == "skip"
    gone = Mapping("g1", None, None, 1, MEETING, google_deleted=True)
    assert decide_outbound(local(edited, version=2), gone) == "insert"


def test_inbound_echo_by_etag_or_content() -> None:
    mapping = mapped(MEETING, etag='"2"')
    assert decide_inbound(from_google(google_item(MEETING)), mapping, local(MEETING)).kind == (
        "echo"
    )
    # Same content, another etag (Google touched a field we do not mirror): still an echo.
    moved = from_google(google_item(MEETING, etag='"3"'))
    assert decide_inbound(moved, mapping, local(MEETING)).kind == "echo"


def test_inbound_apply_create_conflict() -> None:
    edited = Fields(**{**MEETING.to_json(), "title": "Moved"})
    remote = from_google(google_item(edited, etag='"9"'))
    assert decide_inbound(remote, None, None).kind == "create"
    assert decide_inbound(remote, mapped(MEETING), local(MEETING)).kind == "apply"
    mine = Fields(**{**MEETING.to_json(), "location": "bank"})
    assert decide_inbound(remote, mapped(MEETING), local(mine, version=2)).kind == "conflict"
    # A pending local edit equal to the remote one is agreement, not a conflict.
    assert decide_inbound(remote, mapped(MEETING), local(edited, version=2)).kind == "apply"
    deleted = Remote("g1", '"9"', None, None)
    assert decide_inbound(deleted, mapped(MEETING), local(MEETING)).kind == "apply"
    assert decide_inbound(deleted, mapped(MEETING), local(mine, version=2)).kind == "conflict"
    assert decide_inbound(deleted, None, None).kind == "ignore"


@pytest.mark.parametrize(
    ("policy", "local_time", "winner"),
    [
        (Policy.LAST_WRITE_WINS, T0 + timedelta(seconds=1), "local"),
        (Policy.LAST_WRITE_WINS, T0 - timedelta(seconds=1), "remote"),
        (Policy.LAST_WRITE_WINS, T0, "remote"),  # a tie goes to Google
        (Policy.LOCAL_WINS, T0 - timedelta(days=1), "local"),
        (Policy.REMOTE_WINS, T0 + timedelta(days=1), "remote"),
    ],
)
def test_policies(policy: Policy, local_time: datetime, winner: str) -> None:
    mine = Fields(**{**MEETING.to_json(), "title": "mine"})
    theirs = Fields(**{**MEETING.to_json(), "title": "theirs"})
    result = resolve(policy, MEETING, Side(mine, local_time), Side(theirs, T0))
    assert result.winner == winner
    assert result.fields == (mine if winner == "local" else theirs)


def test_field_merge_keeps_both_sides_changes() -> None:
    mine = Fields(**{**MEETING.to_json(), "title": "mine", "location": "bank"})
    theirs = Fields(**{**MEETING.to_json(), "title": "theirs", "description": "urgent"})
    result = resolve(Policy.FIELD_MERGE, MEETING, Side(mine, T0 + timedelta(1)), Side(theirs, T0))
    assert result.winner == "merged"
    assert result.fields == Fields(
        **{**MEETING.to_json(), "title": "mine", "location": "bank", "description": "urgent"}
    )
    # Times move as one group: never one side's start with the other side's end.
    a = Fields(**{**MEETING.to_json(), "start": "2026-03-02T09:00:00+00:00"})
    b = Fields(**{**MEETING.to_json(), "end": "2026-03-02T12:00:00+00:00"})
    assert merge(MEETING, a, b, prefer_local=False).start == MEETING.start


def test_deletions_in_conflicts() -> None:
    mine = Fields(**{**MEETING.to_json(), "title": "mine"})
    # Google's deletions carry no time: a local edit we know the time of wins under LWW.
    lww = resolve(Policy.LAST_WRITE_WINS, MEETING, Side(mine, T0), Side(None, None))
    assert (lww.winner, lww.fields) == ("local", mine)
    assert resolve(Policy.REMOTE_WINS, MEETING, Side(mine, T0), Side(None, None)).fields is None
    merged = resolve(Policy.FIELD_MERGE, MEETING, Side(None, T0), Side(mine, T0 - timedelta(1)))
    assert (merged.winner, merged.fields) == ("local", None)


def test_pacer_spaces_calls_per_user() -> None:
    pacer = Pacer(10)
    assert [round(pacer.reserve("u", 0.0), 3) for _ in range(3)] == [0.0, 0.1, 0.2]
    assert pacer.reserve("other", 0.0) == 0.0
    assert pacer.reserve("u", 5.0) == 0.0


def test_pacer_holds_a_claimed_users_slot_and_names_the_paced_users() -> None:
    pacer = Pacer(10)
    assert pacer.paced(0.0) == []
    slot = pacer.hold("a", 0.0)
    pacer.reserve("b", 0.0)
    pacer.reserve("b", 0.0)  # b's next slot is 0.2, a's 0.1
    assert pacer.paced(0.0) == ["a", "b"]
    # The claimed push's first call is given the held slot, not the one after it.
    assert pacer.reserve("a", 0.01) == 0.0
    assert round(pacer.reserve("a", 0.01), 3) == 0.09
    pacer.release("a", slot)  # used: nothing to give back
    assert pacer.paced(0.15) == ["a", "b"]
    assert pacer.paced(0.25) == []


def test_pacer_gives_back_a_hold_no_call_used() -> None:
    pacer = Pacer(10)
    first = pacer.hold("a", 0.0)
    pacer.release("a", first)  # e.g. the push was an echo: no Google call
    assert pacer.paced(0.0) == []
    assert pacer.reserve("a", 0.0) == 0.0
    # Two pushes of one user claimed (every due row was a's): released in the wrong
    # order, the earlier slot is not given back, since a later one was taken after it.
    pacer = Pacer(10)
    early, late = pacer.hold("a", 0.0), pacer.hold("a", 0.0)
    pacer.release("a", early)
    assert round(pacer.reserve("a", 0.0), 3) == 0.1  # the later hold's slot
    pacer.release("a", late)
    assert round(pacer.reserve("a", 0.0), 3) == 0.2


def test_channel_renewal_margin() -> None:
    day = 24 * 3600.0
    assert needs_renewal(T0 + timedelta(hours=23), T0, day)
    assert not needs_renewal(T0 + timedelta(hours=25), T0, day)
    assert needs_renewal(None, T0, day)
