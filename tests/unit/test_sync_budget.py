"""The shared rate budget (sync_worker.budget): windows and their alignment, priorities,
waits to the boundary, and corrections from usage headers.

``BudgetBehaviour`` is the behaviour every implementation must have; it runs here over
the in-memory store and in tests/integration/test_sync_budget_shared.py over NATS KV, so
the fake cannot drift from the real thing (STYLE habit 9).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from sync_worker._budget_policy import admits, corrected, released, slot_of
from sync_worker.budget import (
    DEFAULT_LIMITS,
    CountingBudget,
    Counts,
    MemoryCounterStore,
    MemoryRateBudget,
    Observed,
    Priority,
    Window,
    strava_windows,
)
from syncplane_common.clock import Clock, ManualClock

pytestmark = pytest.mark.unit

# 2026-01-01 00:00 UTC: a day, hour and quarter-hour boundary at once.
T0 = datetime(2026, 1, 1, tzinfo=UTC)
BG, FG = Priority.BACKGROUND, Priority.INTERACTIVE

MakeBudget = Callable[[Mapping[str, Sequence[Window]], Clock, float], Awaitable[CountingBudget]]


def small(provider: str = "p", quarter: int = 10, day: int = 25) -> dict[str, list[Window]]:
    return {provider: [Window("15min", 900, quarter), Window("daily", 86_400, day)]}


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def take(budget: CountingBudget, provider: str, priority: Priority, n: int) -> int:
    """Acquire one call at a time until refused or ``n`` are reserved; how many were."""
    for i in range(n):
        if await budget.acquire(provider, priority) > 0:
            return i
    return n


class BudgetBehaviour:
    """Every RateBudget implementation; subclasses provide ``make``, whose budgets all
    share one backing store (as replicas do)."""

    @pytest.fixture
    def make(self) -> MakeBudget:
        raise NotImplementedError

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock(T0 + timedelta(minutes=7, seconds=30))

    async def test_reserves_up_to_the_limit_then_waits_for_the_boundary(
        self, make: MakeBudget, clock: ManualClock
    ) -> None:
        budget = await make(small(), clock, 1.0)
        assert await take(budget, "p", BG, 10) == 10
        # 00:07:30 → the quarter ends at 00:15:00.
        assert await budget.acquire("p", BG) == pytest.approx(450.0)
        assert await budget.acquire("p", FG) == pytest.approx(450.0)
        clock.advance(449.0)
        assert await budget.acquire("p", FG) == pytest.approx(1.0)
        clock.advance(1.0)  # 00:15:00 sharp: a new window
        assert await budget.acquire("p", FG) == 0.0

    async def test_the_latest_spent_window_decides_the_wait(
        self, make: MakeBudget, clock: ManualClock
    ) -> None:
        budget = await make(small(quarter=10, day=25), clock, 1.0)
        for _ in range(2):
            assert await take(budget, "p", BG, 10) == 10
            clock.advance(await budget.acquire("p", BG))
        assert await take(budget, "p", BG, 10) == 5  # the day allows 25
        wait = await budget.acquire("p", BG)
        # Both windows refuse; only 00:00 UTC the next day admits again.
        assert clock.now() + timedelta(seconds=wait) == T0 + timedelta(days=1)
        clock.advance(wait)
        assert await budget.acquire("p", BG) == 0.0

    async def test_a_refusal_reserves_nothing_in_any_window(
        self, make: MakeBudget, clock: ManualClock
    ) -> None:
        budget = await make(small(quarter=10, day=12), clock, 1.0)
        assert await take(budget, "p", BG, 10) == 10
        clock.advance(await budget.acquire("p", BG))
        assert await take(budget, "p", BG, 5) == 2
        # The quarter had room; the day refused, so the quarter must not count the call.
        assert await budget.acquire("p", BG) > 0
        counts = {slot.window: c for slot, c in await budget.usage("p")}
        assert counts["15min"].reserved == 2
        assert counts["daily"].reserved == 12

    async def test_background_work_keeps_to_its_share(
        self, make: MakeBudget, clock: ManualClock
    ) -> None:
        budget = await make(small(quarter=10, day=1000), clock, 0.8)
        assert await take(budget, "p", BG, 10) == 8
        assert await budget.acquire("p", BG) == pytest.approx(450.0)
        # A backfill that used its whole share leaves interactive work its 20%.
        assert await take(budget, "p", FG, 10) == 2
        assert await budget.acquire("p", FG) == pytest.approx(450.0)

    async def test_interactive_work_counts_against_the_whole_limit_only(
        self, make: MakeBudget, clock: ManualClock
    ) -> None:
        budget = await make(small(quarter=10, day=1000), clock, 0.8)
        assert await take(budget, "p", FG, 5) == 5
        # Background has its own 8 but only 5 calls of room remain in the window.
        assert await take(budget, "p", BG, 10) == 5
        counts = {slot.window: c for slot, c in await budget.usage("p")}
        assert counts["15min"] == Counts(reserved=10, background=5, limit=10)

    async def test_cost_reserves_several_calls(self, make: MakeBudget, clock: ManualClock) -> None:
        budget = await make(small(quarter=10, day=1000), clock, 1.0)
        assert await budget.acquire("p", BG, cost=7) == 0.0
        assert await budget.acquire("p", BG, cost=4) > 0
        assert await budget.acquire("p", BG, cost=3) == 0.0
        with pytest.raises(ValueError, match="cost"):
            await budget.acquire("p", BG, cost=0)
        with pytest.raises(ValueError, match="exceeds"):
            await budget.acquire("p", BG, cost=11)

    async def test_a_provider_without_windows_is_not_limited(
        self, make: MakeBudget, clock: ManualClock
    ) -> None:
        budget = await make(small(), clock, 0.8)
        assert await budget.acquire("google_calendar", BG) == 0.0
        await budget.observe("google_calendar", [Observed("minute", 600, 599)])

    async def test_replicas_share_one_budget(self, make: MakeBudget, clock: ManualClock) -> None:
        one = await make(small(), clock, 1.0)
        two = await make(small(), clock, 1.0)
        assert await take(one, "p", BG, 6) == 6
        assert await take(two, "p", BG, 10) == 4
        assert await one.acquire("p", FG) > 0

    async def test_observe_raises_counts_to_what_the_provider_counted(
        self, make: MakeBudget, clock: ManualClock
    ) -> None:
        budget = await make(small(quarter=10, day=1000), clock, 1.0)
        assert await take(budget, "p", BG, 3) == 3
        await budget.observe("p", [Observed("15min", 10, 8), Observed("daily", 1000, 2)])
        counts = {slot.window: c for slot, c in await budget.usage("p")}
        assert counts["15min"].reserved == 8  # raised: calls we did not reserve
        assert counts["daily"].reserved == 3  # never lowered: ours may be in flight
        assert await take(budget, "p", BG, 5) == 2

    async def test_observe_adopts_the_providers_limit_for_every_replica(
        self, make: MakeBudget, clock: ManualClock
    ) -> None:
        one = await make(small(quarter=10, day=1000), clock, 1.0)
        two = await make(small(quarter=10, day=1000), clock, 1.0)
        await one.observe("p", [Observed("15min", 4, 1)])
        assert await take(two, "p", BG, 10) == 3
        # The adopted limit outlives the window: the provider's word beats our config.
        clock.advance(await two.acquire("p", BG))
        assert await take(one, "p", BG, 10) == 4

    async def test_a_replica_that_has_not_heard_does_not_make_others_forget(
        self, make: MakeBudget, clock: ManualClock
    ) -> None:
        told = await make(small(quarter=10, day=1000), clock, 1.0)
        unaware = await make(small(quarter=10, day=1000), clock, 1.0)
        await told.observe("p", [Observed("15min", 4, 0)])
        clock.advance(450.0)
        # The unaware replica opens the next window with the configured limit...
        assert await take(unaware, "p", BG, 1) == 1
        assert await take(told, "p", BG, 1) == 1
        clock.advance(900.0)
        # ...which does not undo what the told one learnt for the windows it opens.
        assert await take(told, "p", BG, 10) == 4

    async def test_observe_ignores_answers_about_a_window_already_over(
        self, make: MakeBudget, clock: ManualClock
    ) -> None:
        budget = await make(small(quarter=10, day=1000), clock, 1.0)
        sent = clock.now()
        clock.advance(450.0)  # the answer arrives in the next quarter
        await budget.observe("p", [Observed("15min", 10, 10)], at=sent)
        assert await take(budget, "p", BG, 10) == 10

    async def test_observe_distrusts_counts_right_after_a_boundary(
        self, make: MakeBudget, clock: ManualClock
    ) -> None:
        budget = await make(small(quarter=10, day=1000), clock, 1.0)
        clock.advance(450.0 + 1.0)  # 00:15:01: the provider's clock may still say 00:14
        await budget.observe("p", [Observed("15min", 6, 6)])
        assert await take(budget, "p", BG, 10) == 6  # limit taken, count not
        clock.advance(await budget.acquire("p", BG) + 5.0)
        await budget.observe("p", [Observed("15min", 6, 5)])
        assert await take(budget, "p", BG, 10) == 1

    async def test_observe_ignores_windows_it_does_not_budget(
        self, make: MakeBudget, clock: ManualClock
    ) -> None:
        budget = await make(small(), clock, 1.0)
        await budget.observe("p", [Observed("hour", 1, 1)])
        assert await take(budget, "p", BG, 10) == 10


class TestMemoryBudget(BudgetBehaviour):
    @pytest.fixture
    def make(self) -> MakeBudget:
        store = MemoryCounterStore()

        async def make(
            limits: Mapping[str, Sequence[Window]], clock: Clock, share: float
        ) -> CountingBudget:
            return CountingBudget(store, limits, clock, share)

        return make


# -- the in-memory budget itself and the pure policy ---------------------------------------


async def test_memory_budget_forgets_windows_that_are_over() -> None:
    clock = ManualClock(T0)
    budget = MemoryRateBudget(small(), clock, 1.0)
    for _ in range(5):
        assert await budget.acquire("p", BG) == 0.0
        clock.advance(900)
    assert len(budget._store._slots) == 2  # type: ignore[attr-defined]  # one per window


def test_windows_align_to_the_epoch() -> None:
    quarter, day = Window("15min", 900, 1), Window("daily", 86_400, 1)
    t = (T0 + timedelta(hours=13, minutes=44, seconds=59)).timestamp()
    assert slot_of("p", quarter, t).start == (T0 + timedelta(hours=13, minutes=30)).timestamp()
    assert slot_of("p", quarter, t).end == (T0 + timedelta(hours=13, minutes=45)).timestamp()
    assert slot_of("p", day, t).start == T0.timestamp()
    assert slot_of("p", quarter, t + 1).start == slot_of("p", quarter, t).end


def test_default_limits_match_the_providers() -> None:
    # PROVIDERS.md §3.2, §7.2, §8.2 and the sandbox's defaults.
    strava = {w.name: (w.seconds, w.limit) for w in DEFAULT_LIMITS["strava"]}
    assert strava == {
        "15min": (900, 200),
        "daily": (86_400, 2000),
        "read_15min": (900, 100),
        "read_daily": (86_400, 1000),
    }
    whoop = {w.name: (w.seconds, w.limit) for w in DEFAULT_LIMITS["whoop"]}
    assert whoop == {"minute": (60, 100), "day": (86_400, 10_000)}
    meteo = {w.name: (w.seconds, w.limit) for w in DEFAULT_LIMITS["open_meteo"]}
    assert meteo == {"minute": (60, 600), "hour": (3600, 5000), "day": (86_400, 10_000)}
    assert {w.limit for w in strava_windows((7, 70), (5, 50))} == {7, 70, 5, 50}


def test_invalid_configuration_is_refused() -> None:
    clock = ManualClock(T0)
    with pytest.raises(ValueError, match="background_share"):
        MemoryRateBudget(small(), clock, 0.0)
    with pytest.raises(ValueError, match="unique"):
        MemoryRateBudget({"p": [Window("a", 60, 1), Window("a", 900, 1)]}, clock)
    with pytest.raises(ValueError, match="positive"):
        Window("a", 60, 0)


def test_policy_corrections_never_lower_and_releases_never_go_negative() -> None:
    counts = Counts(reserved=5, background=3, limit=10)
    assert corrected(counts, Observed("w", 12, 2)) == Counts(5, 3, 12)
    assert corrected(counts, Observed("w", 0, 9)) == Counts(9, 3, 10)
    assert released(Counts(1, 0, 10), BG, 2) == Counts(0, 0, 10)
    assert not admits(Counts(0, 0, 10), BG, 1, 0.05)  # floor(0.5): no background at all


async def test_metrics_show_use_and_waits() -> None:
    clock = ManualClock(T0)
    budget = MemoryRateBudget(small("metered", quarter=4, day=100), clock, 0.5)
    waits = metric(
        "syncplane_provider_budget_waits_total",
        provider="metered",
        priority="background",
        window="15min",
    )
    assert await take(budget, "metered", BG, 4) == 2
    ratio = metric("syncplane_provider_budget_used_ratio", provider="metered", window="15min")
    assert ratio == 0.5
    assert (
        metric(
            "syncplane_provider_budget_waits_total",
            provider="metered",
            priority="background",
            window="15min",
        )
        == waits + 1
    )
    assert (
        metric(
            "syncplane_provider_budget_acquired_total", provider="metered", priority="background"
        )
        >= 2
    )
    await budget.observe(
        "metered", [Observed("15min", 4, 3)], at=clock.now() + timedelta(seconds=5)
    )
    assert (
        metric("syncplane_provider_budget_corrections_total", provider="metered", window="15min")
        >= 1
    )
    assert (
        metric("syncplane_provider_budget_used_ratio", provider="metered", window="15min") == 0.75
    )


# -- a property: whatever happens, no window is ever over its limits -----------------------

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.sampled_from([BG, FG]), st.integers(1, 3)),
        st.tuples(st.just("advance"), st.just(BG), st.integers(0, 1200)),
        st.tuples(st.just("observe"), st.just(BG), st.integers(0, 12)),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(steps=STEPS)
async def test_no_window_is_ever_overdrawn(steps: list[tuple[str, Priority, int]]) -> None:
    clock = ManualClock(T0)
    budget = MemoryRateBudget(small(quarter=12, day=40), clock, 0.75)
    granted: dict[tuple[str, int], dict[Priority, int]] = {}
    for kind, priority, n in steps:
        if kind == "advance":
            clock.advance(n)
        elif kind == "observe":
            await budget.observe("p", [Observed("15min", 12, n)], at=clock.now())
        elif await budget.acquire("p", priority, cost=n) == 0.0:
            for window in budget.windows("p"):
                key = (window.name, slot_of("p", window, clock.now().timestamp()).start)
                by = granted.setdefault(key, {BG: 0, FG: 0})
                by[priority] += n
    limits = {"15min": 12, "daily": 40}
    for (name, _), by in granted.items():
        assert by[BG] + by[FG] <= limits[name]
        assert by[BG] <= int(limits[name] * 0.75)
