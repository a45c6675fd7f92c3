"""Strava activity storage, indexed per athlete by start time so that
``GET /athlete/activities`` pages cost O(log n + page) (PROVIDERS.md §3.3)."""

from __future__ import annotations

import json
import math
from bisect import bisect_left, insort
from collections.abc import Iterable

from provider_sandbox.providers._strava_activities import Activity
from provider_sandbox.providers._strava_render import summary

NORMAL_ID_BASE = 10_000_000_001  # current Strava ids are already past 2^33
BIG_ID_BASE = 2**53 + 1  # odd and past 2^53: not representable as a double
ID_STEP = 34  # even step keeps big ids odd
CACHE_LIMIT = 50_000


class AthleteIndex:
    __slots__ = ("all", "visible")

    def __init__(self) -> None:
        self.all: list[tuple[int, int]] = []  # (start, id), ascending
        self.visible: list[tuple[int, int]] = []  # the same without "Only Me" activities


class ActivityStore:
    def __init__(self) -> None:
        self.by_id: dict[int, Activity] = {}
        self.athletes: dict[int, AthleteIndex] = {}
        self.sequence = 0
        self._json: dict[int, bytes] = {}

    def reset(self) -> None:
        self.by_id.clear()
        self.athletes.clear()
        self._json.clear()
        self.sequence = 0

    def new_id(self, big: bool) -> int:
        self.sequence += 1
        return (BIG_ID_BASE if big else NORMAL_ID_BASE) + self.sequence * ID_STEP

    def count(self, athlete_id: int) -> int:
        index = self.athletes.get(athlete_id)
        return len(index.all) if index else 0

    def add_many(self, athlete_id: int, activities: Iterable[Activity]) -> None:
        index = self.athletes.setdefault(athlete_id, AthleteIndex())
        for a in activities:
            self.by_id[a.id] = a
            index.all.append(a.key())
            if not a.private:
                index.visible.append(a.key())
        index.all.sort()
        index.visible.sort()

    def _unindex(self, a: Activity) -> None:
        index = self.athletes[a.athlete_id]
        key = a.key()
        for keys in (index.all, index.visible):
            at = bisect_left(keys, key)
            if at < len(keys) and keys[at] == key:
                del keys[at]

    def _index(self, a: Activity) -> None:
        index = self.athletes.setdefault(a.athlete_id, AthleteIndex())
        insort(index.all, a.key())
        if not a.private:
            insort(index.visible, a.key())

    def add(self, a: Activity) -> None:
        self.by_id[a.id] = a
        self._index(a)

    def remove(self, activity_id: int) -> Activity | None:
        a = self.by_id.pop(activity_id, None)
        if a is not None:
            self._unindex(a)
            self._json.pop(activity_id, None)
        return a

    def detach(self, a: Activity) -> None:
        """Take ``a`` out of the index before an edit that may move it; ``attach`` after."""
        self._unindex(a)
        self._json.pop(a.id, None)

    def attach(self, a: Activity) -> None:
        self._index(a)

    def page(
        self,
        athlete_id: int,
        *,
        before: float | None,
        after: float | None,
        page: int,
        per_page: int,
        include_private: bool,
        holes: int = 0,
        ascending: bool = False,
    ) -> list[Activity]:
        """One page, newest first. With ``holes`` = P, every P-th page slot is empty, so
        pages run short mid-stream while every activity still appears exactly once."""
        index = self.athletes.get(athlete_id)
        if index is None:
            return []
        keys = index.all if include_private else index.visible
        lo = 0 if after is None else bisect_left(keys, (math.floor(after) + 1,))
        hi = len(keys) if before is None else bisect_left(keys, (math.ceil(before),))
        total = hi - lo
        first, last = (page - 1) * per_page, page * per_page
        if holes >= 2 and per_page >= 2:
            first, last = first - first // holes, last - last // holes
        if total <= 0 or first >= total:
            return []
        last = min(last, total)
        if ascending:
            chosen = keys[lo + first : lo + last]
        else:
            chosen = keys[hi - last : hi - first]
            chosen.reverse()
        by_id = self.by_id
        return [by_id[activity_id] for _, activity_id in chosen]

    def summary_json(self, a: Activity) -> bytes:
        cached = self._json.get(a.id)
        if cached is None:
            if len(self._json) >= CACHE_LIMIT:
                self._json.clear()
            cached = json.dumps(summary(a), separators=(",", ":")).encode()
            self._json[a.id] = cached
        return cached

    def list_json(self, activities: list[Activity]) -> bytes:
        return b"[" + b",".join(self.summary_json(a) for a in activities) + b"]"
