"""calendar-sync's decisions, pure: event content and its hash, loop prevention (by
content and version, never by a time window) and conflict policies.

No I/O here; :mod:`calendar_sync.sync` carries the decisions out, and
:mod:`calendar_sync.providers.google_calendar` maps Google's event shape (PROVIDERS.md
§5.2) to :class:`Fields` / :class:`Remote`. The issue is #8.

Loop prevention in two sentences. Every mapping remembers the etag and the content hash
of what Google holds as far as we know (``hash_google``: what we last wrote or read). An
inbound change equal to it is our own echo and is dropped; an outbound change equal to
it is already on Google and is not pushed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Literal

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class Fields:
    """The content both sides share: what a hash covers and a merge combines."""

    title: str = ""
    description: str = ""
    location: str = ""
    all_day: bool = False
    start: str = ""
    end: str = ""
    time_zone: str | None = None
    metadata: JsonDict = field(default_factory=dict)

    def to_json(self) -> JsonDict:
        return {
            "title": self.title,
            "description": self.description,
            "location": self.location,
            "all_day": self.all_day,
            "start": self.start,
            "end": self.end,
            "time_zone": self.time_zone,
            "metadata": self.metadata,
        }

    @classmethod
    def from_json(cls, data: JsonDict) -> Fields:
        return cls(
            title=str(data.get("title", "")),
            description=str(data.get("description", "")),
            location=str(data.get("location", "")),
            all_day=bool(data.get("all_day", False)),
            start=str(data.get("start", "")),
            end=str(data.get("end", "")),
            time_zone=data.get("time_zone"),
            metadata=dict(data.get("metadata") or {}),
        )


# -- times -------------------------------------------------------------------------------


def instant(value: str, all_day: bool) -> datetime:
    """The moment a start/end names: a date is its midnight UTC."""
    if all_day or len(value) == 10:
        day = date.fromisoformat(value[:10])
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _normal_time(value: str, all_day: bool) -> str:
    # Google answers a dateTime in the offset it chooses (the event's zone); the same
    # instant written two ways must hash the same, or every write would look like news.
    if all_day:
        return value[:10]
    return instant(value, False).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def content_hash(fields: Fields) -> str:
    normal = {
        "title": fields.title,
        "description": fields.description,
        "location": fields.location,
        "all_day": fields.all_day,
        "start": _normal_time(fields.start, fields.all_day),
        "end": _normal_time(fields.end, fields.all_day),
        # Google keeps no zone on all-day events.
        "time_zone": None if fields.all_day else (fields.time_zone or None),
        "metadata": fields.metadata,
    }
    raw = json.dumps(normal, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()


def same_content(a: Fields | None, b: Fields | None) -> bool:
    """Whether two versions hold the same content by hash (``None``: deleted)."""
    if a is None or b is None:
        return a is None and b is None
    return content_hash(a) == content_hash(b)


# -- state as the decisions see it ---------------------------------------------------------


@dataclass(frozen=True)
class Remote:
    """One item of an events.list page (or a get), as the sync needs it (read by
    :func:`calendar_sync.providers.google_calendar.from_google`)."""

    google_id: str
    etag: str | None
    fields: Fields | None  # None: cancelled (deleted)
    updated: datetime | None
    local_id: str | None = None  # our local id, when we (or a mirror) wrote it
    unsupported: str | None = None  # why it is not mirrored (recurring series...)

    @property
    def deleted(self) -> bool:
        return self.fields is None


@dataclass(frozen=True)
class Local:
    id: str
    fields: Fields
    version: int
    updated_at: datetime
    deleted: bool = False

    @property
    def content(self) -> Fields | None:
        """The fields while the event lives; ``None`` once deleted."""
        return None if self.deleted else self.fields


@dataclass(frozen=True)
class Mapping:
    google_id: str
    etag: str | None
    hash_google: str | None
    version: int  # the local version Google holds (or that was reconciled with it)
    base: Fields | None  # the content both sides last agreed on
    google_deleted: bool = False


def pending(local: Local, mapping: Mapping | None) -> bool:
    """Whether the local event has a change Google has not received."""
    return mapping is None or local.version > mapping.version


# -- outbound ------------------------------------------------------------------------------

Outbound = Literal["insert", "patch", "delete", "skip"]


def decide_outbound(local: Local, mapping: Mapping | None) -> Outbound:
    if local.deleted:
        return "skip" if mapping is None or mapping.google_deleted else "delete"
    if mapping is None or mapping.google_deleted:
        return "insert"
    if content_hash(local.fields) == mapping.hash_google:
        # What Google holds already (we wrote it, or we read it from there).
        return "skip"
    return "patch"


# -- inbound -------------------------------------------------------------------------------

InboundKind = Literal["ignore", "echo", "create", "apply", "conflict"]


@dataclass(frozen=True)
class Inbound:
    kind: InboundKind
    reason: str


def decide_inbound(remote: Remote, mapping: Mapping | None, local: Local | None) -> Inbound:
    if remote.unsupported:
        return Inbound("ignore", remote.unsupported)
    if mapping is None or local is None:
        if remote.deleted:
            return Inbound("ignore", "deletion of an event we never mirrored")
        return Inbound("create", "new on Google")
    if remote.etag is not None and remote.etag == mapping.etag:
        return Inbound("echo", "etag we last wrote or read")
    if remote.deleted:
        if mapping.google_deleted:
            return Inbound("echo", "deletion already known")
        if pending(local, mapping) and not local.deleted:
            return Inbound("conflict", "deleted on Google, edited locally")
        return Inbound("apply", "deleted on Google")
    assert remote.fields is not None
    remote_hash = content_hash(remote.fields)
    if remote_hash == mapping.hash_google and not mapping.google_deleted:
        return Inbound("echo", "content we last wrote or read")
    if not pending(local, mapping):
        return Inbound("apply", "changed on Google")
    if not local.deleted and content_hash(local.fields) == remote_hash:
        return Inbound("apply", "both sides made the same change")
    return Inbound("conflict", "changed on both sides")


# -- conflicts -----------------------------------------------------------------------------


class Policy(StrEnum):
    LAST_WRITE_WINS = "last_write_wins"
    LOCAL_WINS = "local_wins"
    REMOTE_WINS = "remote_wins"
    FIELD_MERGE = "field_merge"


@dataclass(frozen=True)
class Side:
    fields: Fields | None  # None: deleted
    modified_at: datetime | None  # None: unknown (Google's deletions carry no time)


Winner = Literal["local", "remote", "merged"]


@dataclass(frozen=True)
class Resolution:
    winner: Winner
    fields: Fields | None  # the agreed content; None: the event is deleted on both sides


# start/end/all_day/time_zone move together: half of one side's times and half of the
# other's can make an event that ends before it starts.
_MERGE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("title",),
    ("description",),
    ("location",),
    ("all_day", "start", "end", "time_zone"),
    ("metadata",),
)


def _local_is_newer(local: Side, remote: Side) -> bool:
    if remote.modified_at is None:
        return True  # a deletion of unknown time loses to a change we know the time of
    if local.modified_at is None:
        return False
    # A tie goes to Google, the copy every mirror shares.
    return local.modified_at > remote.modified_at


def resolve(policy: Policy, base: Fields | None, local: Side, remote: Side) -> Resolution:
    if policy is Policy.LOCAL_WINS:
        return Resolution("local", local.fields)
    if policy is Policy.REMOTE_WINS:
        return Resolution("remote", remote.fields)
    newer_local = _local_is_newer(local, remote)
    if (
        policy is Policy.FIELD_MERGE
        and base is not None
        and local.fields is not None
        and remote.fields is not None
    ):
        merged = merge(base, local.fields, remote.fields, prefer_local=newer_local)
        if merged == local.fields:
            return Resolution("local", merged)
        if merged == remote.fields:
            return Resolution("remote", merged)
        return Resolution("merged", merged)
    return Resolution("local", local.fields) if newer_local else Resolution("remote", remote.fields)


def merge(base: Fields, local: Fields, remote: Fields, *, prefer_local: bool) -> Fields:
    """Three-way merge per field group: a group changed on one side only takes that
    side's value; changed on both, the newer side's."""
    changes: dict[str, Any] = {}
    for group in _MERGE_GROUPS:
        mine = tuple(getattr(local, f) for f in group)
        theirs = tuple(getattr(remote, f) for f in group)
        old = tuple(getattr(base, f) for f in group)
        if mine == old:
            chosen = theirs
        elif theirs == old:
            chosen = mine
        else:
            chosen = mine if prefer_local else theirs
        changes.update(zip(group, chosen, strict=True))
    return replace(base, **changes)


# -- pacing and channels -------------------------------------------------------------------


class Pacer:
    """Per-user spacing of Google calls (the issue's default: 10/s per user): each call
    reserves the next free slot, so a burst is spread instead of answered by 429s.

    The sender asks which users have no free slot (:meth:`paced`) before it claims an
    outbox row, and :meth:`hold` s the slot of the row it claimed: a worker then waits for
    a slot only when every due row belongs to a paced user, instead of parking on one
    user's row while another user's row could go out now. The first :meth:`reserve` for
    that user is given the held slot; :meth:`release` hands back a hold no call used.
    """

    def __init__(self, per_second: float) -> None:
        if per_second <= 0:
            raise ValueError("a rate must be positive")
        self.interval = 1.0 / per_second
        self._next: dict[str, float] = {}
        self._held: dict[str, list[float]] = {}

    def _take(self, key: str, now: float) -> float:
        slot = max(now, self._next.get(key, now))
        self._next[key] = slot + self.interval
        return slot

    def reserve(self, key: str, now: float) -> float:
        """Seconds to wait before the call may go out (monotonic time ``now``)."""
        held = self._held.get(key)
        if held:
            slot = held.pop(0)
            if not held:
                del self._held[key]
        else:
            slot = self._take(key, now)
        return max(0.0, slot - now)

    def hold(self, key: str, now: float) -> float:
        """Take ``key``'s next slot for a call about to be made; the slot (monotonic)."""
        slot = self._take(key, now)
        self._held.setdefault(key, []).append(slot)
        return slot

    def release(self, key: str, slot: float) -> None:
        """Give back a held slot no call used: it is free again if none was taken after."""
        held = self._held.get(key)
        if not held or slot not in held:
            return
        held.remove(slot)
        if not held:
            del self._held[key]
        if self._next.get(key) == slot + self.interval:
            self._next[key] = slot

    def paced(self, now: float) -> list[str]:
        """Keys with no free slot at ``now``, the soonest free first. Keys whose slot has
        come are forgotten (absent means free), so the table holds only recent callers."""
        self._next = {k: t for k, t in self._next.items() if t > now}
        return sorted((k for k, t in self._next.items() if t > now), key=self._next.__getitem__)


def needs_renewal(expires_at: datetime | None, now: datetime, margin_seconds: float) -> bool:
    """A channel is renewed once it expires within the margin (24 h by default)."""
    return expires_at is None or (expires_at - now).total_seconds() <= margin_seconds
