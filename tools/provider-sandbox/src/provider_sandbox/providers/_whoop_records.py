"""WHOOP v2 records and their wire bodies (PROVIDERS.md §7.3), and the per-user series that
serves newest-first keyset pages without scanning a user's history."""

from __future__ import annotations

import json
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from typing import Any

from provider_sandbox.providers._whoop_values import iso_ms

KINDS = ("cycle", "sleep", "recovery", "workout")
SCORED = "SCORED"
SCORE_STATES = ("SCORED", "PENDING_SCORE", "UNSCORABLE")

SortKey = tuple[int, str]


@dataclass(frozen=True)
class Event:
    """A webhook notification (§7.4); for ``recovery.*`` the id is the sleep's UUID."""

    type: str
    id: str
    user_id: int


@dataclass
class Record:
    kind: str
    # cycle: the int64 id as text; sleep, workout: the UUID; recovery: its sleep's UUID.
    key: str
    user_id: int
    # The sort and filter instant: the record's start (a recovery's: its sleep's start).
    start_ms: int
    end_ms: int | None
    created_ms: int
    updated_ms: int
    timezone_offset: str
    score_state: str = SCORED
    score: dict[str, Any] | None = None
    # cycle_id, v1_id, nap, sport_name, sport_id, whichever the kind carries.
    links: dict[str, Any] = field(default_factory=dict)
    night: int | None = None
    score_due_ms: int | None = None
    body: dict[str, Any] = field(default_factory=dict)
    # The body serialized once per change: lists join these instead of encoding per request.
    json: str = ""

    @property
    def sort_key(self) -> SortKey:
        return (self.start_ms, self.key)

    def render(self) -> None:
        """Rebuild the wire body (field order as in WHOOP's examples) and its JSON text."""
        common = {
            "user_id": self.user_id,
            "created_at": iso_ms(self.created_ms),
            "updated_at": iso_ms(self.updated_ms),
        }
        body: dict[str, Any]
        if self.kind == "cycle":
            body = {"id": int(self.key), **common, "start": iso_ms(self.start_ms)}
            if self.end_ms is not None:
                body["end"] = iso_ms(self.end_ms)
            body["timezone_offset"] = self.timezone_offset
        elif self.kind == "sleep":
            body = {"id": self.key, "cycle_id": self.links["cycle_id"]}
            body.update(v1_id=self.links["v1_id"], **common, **self._span())
            body["nap"] = self.links["nap"]
        elif self.kind == "recovery":
            body = {"cycle_id": self.links["cycle_id"], "sleep_id": self.key, **common}
        else:
            body = {"id": self.key, "v1_id": self.links["v1_id"], **common, **self._span()}
            body["sport_name"] = self.links["sport_name"]
        body["score_state"] = self.score_state
        if self.score_state == SCORED and self.score is not None:
            body["score"] = self.score
        if self.kind == "workout":
            body["sport_id"] = self.links["sport_id"]
        self.body = body
        self.json = json.dumps(body)

    def _span(self) -> dict[str, Any]:
        assert self.end_ms is not None
        return {
            "start": iso_ms(self.start_ms),
            "end": iso_ms(self.end_ms),
            "timezone_offset": self.timezone_offset,
        }


class Series:
    """One user's records of one kind, sorted by (start, key)."""

    def __init__(self) -> None:
        self.keys: list[SortKey] = []
        self.records: dict[str, Record] = {}

    def add(self, record: Record) -> None:
        insort(self.keys, record.sort_key)
        self.records[record.key] = record

    def remove(self, record: Record) -> None:
        index = bisect_left(self.keys, record.sort_key)
        if index < len(self.keys) and self.keys[index] == record.sort_key:
            del self.keys[index]
        self.records.pop(record.key, None)

    def neighbours(self, record: Record) -> tuple[Record | None, Record | None]:
        index = bisect_left(self.keys, record.sort_key)
        before = self.records[self.keys[index - 1][1]] if index > 0 else None
        after_index = index + 1
        after = self.records[self.keys[after_index][1]] if after_index < len(self.keys) else None
        return before, after

    def containing(self, instant: int) -> Record | None:
        """The last record starting at or before ``instant`` whose span covers it."""
        index = bisect_left(self.keys, (instant + 1, "")) - 1
        if index < 0:
            return None
        record = self.records[self.keys[index][1]]
        return record if record.end_ms is None or record.end_ms > instant else None

    def page(
        self, start: int | None, end: int, cursor: SortKey | None, limit: int
    ) -> tuple[list[Record], SortKey | None]:
        """Newest first: start inclusive, end exclusive, strictly older than the cursor."""
        keys = self.keys
        low = bisect_left(keys, (start, "")) if start is not None else 0
        high = bisect_left(keys, (end, ""))
        if cursor is not None:
            high = min(high, bisect_left(keys, cursor))
        first = max(low, high - limit)
        records = self.records
        page = [records[keys[i][1]] for i in range(high - 1, first - 1, -1)]
        return page, (keys[first] if first > low else None)
