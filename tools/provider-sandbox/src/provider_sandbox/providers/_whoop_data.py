"""WHOOP v2 data and how it links (PROVIDERS.md §7.3, §7.5): one cycle per night from sleep
onset to the next (the latest left open), a sleep in it, a recovery keyed by that sleep's
UUID, daytime workouts. Every change reports the webhook events WHOOP would send (§7.4)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from provider_sandbox.providers import _whoop_values as values
from provider_sandbox.providers._whoop_fields import EDITABLE, LINKS, parse_fields
from provider_sandbox.providers._whoop_records import (
    KINDS,
    SCORED,
    Event,
    Record,
    Series,
    SortKey,
)
from provider_sandbox.providers._whoop_settings import WhoopSettings

PENDING = "PENDING_SCORE"
UNSCORABLE = "UNSCORABLE"


class NotFound(LookupError):
    pass


@dataclass
class Outcome:
    records: list[Record] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def extend(self, other: Outcome) -> None:
        self.records.extend(other.records)
        self.events.extend(other.events)


class WhoopData:
    def __init__(
        self,
        seed: int,
        now_ms: Callable[[], int],
        settings: WhoopSettings,
    ) -> None:
        self.seed = seed
        # WHOOP's own id stream, from the sandbox seed: what another provider draws from the
        # shared generator cannot shift WHOOP's ids.
        self.rng = random.Random()
        self.now_ms = now_ms
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        self.rng.seed(f"whoop-ids:{self.seed}")
        self.series: dict[tuple[int, str], Series] = {}
        self.index: dict[str, dict[str, Record]] = {kind: {} for kind in KINDS}
        self.nights: dict[tuple[int, str], dict[int, str]] = {}
        self.cycle_sleeps: dict[str, list[str]] = {}
        self.v1_ids: dict[int, str] = {}
        self.pending: dict[tuple[str, str], Record] = {}
        self.next_cycle_id = 1_000_000 + self.rng.randrange(100_000)
        self.next_v1_id = 2_000_000 + self.rng.randrange(100_000)

    # -- reads ---------------------------------------------------------------------------

    def page(
        self,
        user_id: int,
        kind: str,
        start: int | None,
        end: int,
        cursor: SortKey | None,
        limit: int,
    ) -> tuple[list[Record], SortKey | None]:
        series = self.series.get((user_id, kind))
        if series is None:
            return [], None
        return series.page(start, end, cursor, limit)

    def get(self, kind: str, key: str) -> Record | None:
        return self.index[kind].get(key)

    def sleep_of_cycle(self, cycle_key: str) -> Record | None:
        sleeps = (self.index["sleep"][key] for key in self.cycle_sleeps.get(cycle_key, ()))
        main = [s for s in sleeps if not s.links["nap"]]
        return max(main, key=lambda s: s.start_ms) if main else None

    def count(self, user_id: int, kind: str) -> int:
        series = self.series.get((user_id, kind))
        return len(series.keys) if series else 0

    # -- writes --------------------------------------------------------------------------

    def generate(self, user_id: int, kind: str, n: int) -> Outcome:
        out = Outcome()
        for night in self._candidates(user_id, kind, n):
            out.records.append(self._for_night(user_id, kind, night, {}, out))
        return out

    def generate_days(self, user_id: int, days: int, workout_rate: float) -> Outcome:
        """``days`` complete nights up to the last one, oldest first (seeding)."""
        out = Outcome()
        last = self._last_complete_night(user_id, "sleep")
        last_workout = self._last_complete_night(user_id, "workout")
        for night in range(last - days + 1, last + 1):
            if night not in self._nights(user_id, "recovery"):
                out.records.append(self._for_night(user_id, "recovery", night, {}, out))
            if (
                night <= last_workout
                and night not in self._nights(user_id, "workout")
                and values.takes_place(self.seed, user_id, night, workout_rate)
            ):
                out.records.append(self._for_night(user_id, "workout", night, {}, out))
        return out

    def create(self, user_id: int, kind: str, fields: dict[str, Any]) -> Outcome:
        """One record from caller-given fields over realistic defaults; ``ValueError`` on
        fields WHOOP would not have."""
        given = parse_fields(kind, fields, EDITABLE[kind] | LINKS[kind])
        out = Outcome()
        if "cycle_id" in given and "start" not in given:
            given["start"] = self._owned("cycle", str(given["cycle_id"]), user_id).start_ms
        if kind == "recovery" and "sleep_id" in given:
            sleep = self._owned("sleep", given["sleep_id"], user_id)
            out.records.append(self._make_recovery(sleep, given, out))
        elif "start" in given:
            out.records.append(self._at(user_id, kind, given, out))
        else:
            night = self._candidates(user_id, kind, 1)[0]
            out.records.append(self._for_night(user_id, kind, night, given, out))
        return out

    def update(self, kind: str, key: str, fields: dict[str, Any]) -> Outcome:
        record = self.index[kind].get(key)
        if record is None:
            raise NotFound(f"no {kind} {key}")
        given = parse_fields(kind, fields, EDITABLE[kind])
        start = given.get("start", record.start_ms)
        end = given.get("end", record.end_ms)
        if end is not None and end <= start:
            raise ValueError("end must be after start")
        if "nap" in given:
            record.links["nap"] = given["nap"]
        if "sport_name" in given:
            record.links["sport_name"] = given["sport_name"]
        if "sport_id" in given:
            record.links["sport_id"] = given["sport_id"]
        if "timezone_offset" in given:
            record.timezone_offset = given["timezone_offset"]
        if start != record.start_ms:
            self._move(record, start)
        record.end_ms = end
        if "score_state" in given or "score" in given:
            self._set_score(record, given)
        record.updated_ms = self.now_ms()
        record.render()
        out = Outcome(records=[record])
        if kind != "cycle":
            out.events.append(Event(f"{kind}.updated", key, record.user_id))
        return out

    def delete(self, kind: str, key: str) -> Outcome:
        record = self.index[kind].get(key)
        if record is None:
            raise NotFound(f"no {kind} {key}")
        out = Outcome(records=[record])
        if kind == "cycle":
            for sleep_key in list(self.cycle_sleeps.get(key, ())):
                out.events.extend(self.delete("sleep", sleep_key).events)
            self.cycle_sleeps.pop(key, None)
        self._remove(record)
        if kind != "cycle":
            out.events.append(Event(f"{kind}.deleted", key, record.user_id))
        if kind == "sleep":
            siblings = self.cycle_sleeps.get(str(record.links["cycle_id"]), [])
            if key in siblings:
                siblings.remove(key)
            # Deleting a sleep deletes its recovery too (§7.4).
            recovery = self.index["recovery"].get(key)
            if recovery is not None:
                self._remove(recovery)
                out.events.append(Event("recovery.deleted", key, record.user_id))
        return out

    def score_due(self, now_ms: int) -> Outcome:
        """Score the PENDING_SCORE records whose time has come (each with an update event)."""
        out = Outcome()
        for record in [r for r in self.pending.values() if (r.score_due_ms or 0) <= now_ms]:
            out.extend(self.update(record.kind, record.key, {"score_state": SCORED}))
        return out

    # -- placement -----------------------------------------------------------------------

    def _nights(self, user_id: int, kind: str) -> dict[int, str]:
        return self.nights.setdefault((user_id, kind), {})

    def _series(self, user_id: int, kind: str) -> Series:
        series = self.series.get((user_id, kind))
        if series is None:
            series = self.series[(user_id, kind)] = Series()
        return series

    def _offset(self, user_id: int) -> int:
        return values.tz_offset_minutes(user_id)

    def _last_complete_night(self, user_id: int, kind: str) -> int:
        return values.last_complete_night(self.seed, user_id, kind, self.now_ms())

    def _candidates(self, user_id: int, kind: str, n: int) -> list[int]:
        last = self._last_complete_night(user_id, kind)
        return values.nights_to_fill(self._nights(user_id, kind).keys(), last, n)

    def _for_night(
        self, user_id: int, kind: str, night: int, given: dict[str, Any], out: Outcome
    ) -> Record:
        offset = self._offset(user_id)
        if kind == "cycle":
            start = values.sleep_window(self.seed, user_id, night, offset)[0]
            return self._make_cycle(user_id, night, start, given)
        if kind == "sleep":
            cycle = self._ensure_cycle(user_id, night)
            start, end = values.sleep_window(self.seed, user_id, night, offset)
            return self._make_sleep(user_id, night, start, end, cycle, given, out)
        if kind == "recovery":
            return self._make_recovery(self._ensure_sleep(user_id, night, out), given, out)
        start, end = values.workout_window(self.seed, user_id, night, offset)
        return self._make_workout(user_id, night, start, end, given, out)

    def _at(self, user_id: int, kind: str, given: dict[str, Any], out: Outcome) -> Record:
        """A record at caller-given times, linked to whatever cycle covers its start."""
        start: int = given["start"]
        offset = values.offset_of(given.get("timezone_offset") or self._default_tz(user_id))
        if kind == "workout":
            end = given.get("end") or start + values.HOUR_MS
            night = values.night_of_workout(start, offset)
            return self._make_workout(user_id, night, start, end, given, out)
        night = values.night_of_sleep(start, offset)
        if kind == "cycle":
            return self._make_cycle(user_id, night, start, given)
        end = given.get("end") or start + 15 * values.HOUR_MS // 2
        if "cycle_id" in given:
            cycle = self._owned("cycle", str(given["cycle_id"]), user_id)
        else:
            covering = self._series(user_id, "cycle").containing(start)
            cycle = covering or self._make_cycle(user_id, night, start, {})
        return self._make_sleep(user_id, night, start, end, cycle, given, out)

    def _ensure_cycle(self, user_id: int, night: int) -> Record:
        key = self._nights(user_id, "cycle").get(night)
        if key is not None:
            return self.index["cycle"][key]
        return self._for_night(user_id, "cycle", night, {}, Outcome())

    def _ensure_sleep(self, user_id: int, night: int, out: Outcome) -> Record:
        key = self._nights(user_id, "sleep").get(night)
        if key is not None:
            return self.index["sleep"][key]
        return self._for_night(user_id, "sleep", night, {}, out)

    def _owned(self, kind: str, key: str, user_id: int) -> Record:
        record = self.index[kind].get(key)
        if record is None or record.user_id != user_id:
            raise ValueError(f"no {kind} {key} for user {user_id}")
        return record

    # -- construction --------------------------------------------------------------------

    def _default_tz(self, user_id: int) -> str:
        return values.tz_designator(self._offset(user_id))

    def _new_uuid(self) -> str:
        while True:
            candidate = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            if candidate not in self.index["sleep"] and candidate not in self.index["workout"]:
                return candidate

    def _new_v1_id(self, key: str) -> int:
        self.next_v1_id += 1 + self.rng.randrange(3)
        self.v1_ids[self.next_v1_id] = key
        return self.next_v1_id

    def _recorded_at(self, record_key: str, after_ms: int, spread_min: tuple[int, int]) -> int:
        lag = values.stream(self.seed, record_key, "lag").randint(*spread_min) * 60_000
        return min(self.now_ms(), after_ms + lag)

    def _new(
        self, kind: str, key: str, user_id: int, start: int, end: int | None, given: dict[str, Any]
    ) -> Record:
        return Record(
            kind=kind,
            key=key,
            user_id=user_id,
            start_ms=start,
            end_ms=end,
            created_ms=0,
            updated_ms=0,
            timezone_offset=given.get("timezone_offset") or self._default_tz(user_id),
        )

    def _make_cycle(self, user_id: int, night: int, start: int, given: dict[str, Any]) -> Record:
        self.next_cycle_id += 1 + self.rng.randrange(5)
        record = self._new("cycle", str(self.next_cycle_id), user_id, start, None, given)
        self._add(record, night)
        before, after = self._series(user_id, "cycle").neighbours(record)
        # A cycle runs until the next one starts; the newest stays open (no ``end``).
        record.end_ms = given.get("end", after.start_ms if after else None)
        if before is not None and (before.end_ms is None or before.end_ms > start):
            before.end_ms = start
            before.updated_ms = max(before.created_ms, min(self.now_ms(), start))
            if before.score_state == SCORED:
                before.score = self._fresh_score(before)
            before.render()
        record.created_ms = record.updated_ms = self._recorded_at(record.key, start, (20, 90))
        self._set_score(record, given)
        record.render()
        return record

    def _make_sleep(
        self,
        user_id: int,
        night: int,
        start: int,
        end: int,
        cycle: Record,
        given: dict[str, Any],
        out: Outcome,
    ) -> Record:
        if end <= start:
            raise ValueError("end must be after start")
        record = self._new("sleep", self._new_uuid(), user_id, start, end, given)
        nap = bool(given.get("nap", False))
        record.links = {"cycle_id": int(cycle.key), "v1_id": self._new_v1_id(record.key)}
        record.links["nap"] = nap
        self._add(record, None if nap else night)
        self.cycle_sleeps.setdefault(cycle.key, []).append(record.key)
        record.created_ms = record.updated_ms = self._recorded_at(record.key, end, (2, 40))
        self._set_score(record, given)
        record.render()
        out.events.append(Event("sleep.updated", record.key, user_id))
        return record

    def _make_recovery(self, sleep: Record, given: dict[str, Any], out: Outcome) -> Record:
        if sleep.links["nap"]:
            raise ValueError("a nap has no recovery")
        if sleep.key in self.index["recovery"]:
            raise ValueError(f"sleep {sleep.key} already has a recovery")
        record = self._new("recovery", sleep.key, sleep.user_id, sleep.start_ms, None, given)
        record.links = {"cycle_id": sleep.links["cycle_id"]}
        self._add(record, sleep.night)
        assert sleep.end_ms is not None
        record.created_ms = record.updated_ms = self._recorded_at(record.key, sleep.end_ms, (3, 45))
        self._set_score(record, given)
        record.render()
        out.events.append(Event("recovery.updated", record.key, sleep.user_id))
        return record

    def _make_workout(
        self,
        user_id: int,
        night: int,
        start: int,
        end: int,
        given: dict[str, Any],
        out: Outcome,
    ) -> Record:
        if end <= start:
            raise ValueError("end must be after start")
        record = self._new("workout", self._new_uuid(), user_id, start, end, given)
        sport_name, sport_id = values.pick_sport(values.stream(self.seed, record.key, "sport"))
        if "sport_name" in given:
            sport_name = given["sport_name"]
            sport_id = next((i for n, i, _ in values.SPORTS if n == sport_name), -1)
        record.links = {
            "v1_id": self._new_v1_id(record.key),
            "sport_name": sport_name,
            "sport_id": given.get("sport_id", sport_id),
        }
        self._add(record, night)
        record.created_ms = record.updated_ms = self._recorded_at(record.key, end, (1, 20))
        self._set_score(record, given)
        record.render()
        out.events.append(Event("workout.updated", record.key, user_id))
        return record

    def _set_score(self, record: Record, given: dict[str, Any]) -> None:
        state = given.get("score_state")
        if state is None and "score" in given:
            state = SCORED
        if state is None and record.score_state == SCORED and record.score is None:
            # A new record: its state was not chosen by the caller.
            if self.settings.pending_score_seconds > 0:
                state = PENDING
                delay = int(self.settings.pending_score_seconds * 1000)
                record.score_due_ms = self.now_ms() + delay
            else:
                draw = values.stream(self.seed, record.kind, record.key, "state").random()
                state = UNSCORABLE if draw < self.settings.unscorable_rate else SCORED
        if state is None:
            return
        record.score_state = state
        if state == PENDING and record.score_due_ms is not None:
            self.pending[(record.kind, record.key)] = record
        else:
            self.pending.pop((record.kind, record.key), None)
            record.score_due_ms = None
        if state != SCORED:
            record.score = None
            return
        fresh = record.score or self._fresh_score(record)
        record.score = {**fresh, **given.get("score", {})}

    def _fresh_score(self, record: Record) -> dict[str, Any]:
        rng = values.stream(self.seed, record.kind, record.key, "score")
        if record.kind == "cycle":
            return values.cycle_score(rng, record.end_ms is None)
        if record.kind == "recovery":
            return values.recovery_score(rng)
        assert record.end_ms is not None
        if record.kind == "sleep":
            return values.sleep_score(rng, record.start_ms, record.end_ms, record.links["nap"])
        sport = record.links["sport_name"]
        return values.workout_score(rng, sport, record.start_ms, record.end_ms)

    # -- indexes -------------------------------------------------------------------------

    def _add(self, record: Record, night: int | None) -> None:
        self._series(record.user_id, record.kind).add(record)
        self.index[record.kind][record.key] = record
        nights = self._nights(record.user_id, record.kind)
        if night is not None and night not in nights:
            nights[night] = record.key
            record.night = night

    def _remove(self, record: Record) -> None:
        self._series(record.user_id, record.kind).remove(record)
        self.index[record.kind].pop(record.key, None)
        self.pending.pop((record.kind, record.key), None)
        if record.night is not None:
            self._nights(record.user_id, record.kind).pop(record.night, None)
        v1_id = record.links.get("v1_id")
        if v1_id is not None:
            self.v1_ids.pop(v1_id, None)

    def _move(self, record: Record, start: int) -> None:
        related: Iterable[Record] = [record]
        if record.kind == "sleep" and record.key in self.index["recovery"]:
            related = [record, self.index["recovery"][record.key]]
        for item in related:
            series = self._series(item.user_id, item.kind)
            series.remove(item)
            item.start_ms = start
            series.add(item)
