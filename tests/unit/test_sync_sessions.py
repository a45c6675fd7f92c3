"""The sync session state machine (sync_worker.sessions): every allowed and every
forbidden transition, what each one records, the estimate, and properties over random
event sequences."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sync_worker import sessions as ss
from sync_worker.sessions import (
    TRANSITIONS,
    Counts,
    Event,
    InvalidTransition,
    Phase,
    Session,
    SessionError,
    SessionKind,
    SessionState,
)
from syncplane_common.errors import (
    PermanentError,
    ReauthRequiredError,
    RetryableError,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
S = SessionState
E = Event


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fresh(**kw: object) -> Session:
    return ss.new(
        user_id="u1",
        provider="strava",
        kind=SessionKind.BACKFILL,
        now=T0,
        **kw,  # type: ignore[arg-type]
    )


def apply(session: Session, event: Event, now: datetime = T0) -> Session:
    """One event through the public function that carries it."""
    match event:
        case E.START:
            return ss.start(session, now)
        case E.FETCH:
            return ss.advance(session, Phase.FETCHING, now)
        case E.ENRICH:
            return ss.advance(session, Phase.ENRICHING, now)
        case E.STORE:
            return ss.advance(session, Phase.STORING, now)
        case E.PAGE_DONE:
            cursor = {"page": session.pages_done + 1}
            return ss.page_done(session, cursor, now, fetched=2, enriched=1, stored=1, skipped=1)
        case E.FAIL:
            return ss.fail(session, RetryableError("upstream 503"), now)
        case E.RETRY:
            return ss.retry(session, now)
        case E.GIVE_UP:
            return ss.give_up(session, now)
        case E.COMPLETE:
            return ss.complete(session, now)
        case E.CANCEL:
            return ss.cancel(session, now)
    raise AssertionError(event)


def _enriching() -> Session:
    return ss.advance(ss.start(fresh(), T0), Phase.ENRICHING, T0)


# Every state a session can be in, reached through the public functions. FAILED comes
# twice: whether it is terminal depends on the error. RETRYING failed while ENRICHING.
BUILDERS: dict[str, Callable[[], Session]] = {
    "initiated": fresh,
    "fetching": lambda: ss.start(fresh(), T0),
    "enriching": _enriching,
    "storing": lambda: ss.advance(_enriching(), Phase.STORING, T0),
    "completed": lambda: ss.complete(ss.start(fresh(), T0), T0),
    "failed_retryable": lambda: ss.fail(_enriching(), RetryableError("503"), T0),
    "failed_permanent": lambda: ss.fail(_enriching(), PermanentError("bad data"), T0),
    "retrying": lambda: ss.retry(ss.fail(_enriching(), RetryableError("503"), T0), T0),
    "cancelled": lambda: ss.cancel(fresh(), T0),
}

# Written out independently of TRANSITIONS, guards included: (start, event) -> end state.
ALLOWED: dict[tuple[str, Event], SessionState] = {
    ("initiated", E.START): S.FETCHING,
    ("initiated", E.CANCEL): S.CANCELLED,
    ("fetching", E.ENRICH): S.ENRICHING,
    ("fetching", E.STORE): S.STORING,
    ("fetching", E.PAGE_DONE): S.FETCHING,
    ("fetching", E.FAIL): S.FAILED,
    ("fetching", E.COMPLETE): S.COMPLETED,
    ("fetching", E.CANCEL): S.CANCELLED,
    ("enriching", E.STORE): S.STORING,
    ("enriching", E.PAGE_DONE): S.ENRICHING,
    ("enriching", E.FAIL): S.FAILED,
    ("enriching", E.CANCEL): S.CANCELLED,
    ("storing", E.FETCH): S.FETCHING,
    ("storing", E.PAGE_DONE): S.STORING,
    ("storing", E.FAIL): S.FAILED,
    ("storing", E.COMPLETE): S.COMPLETED,
    ("storing", E.CANCEL): S.CANCELLED,
    ("failed_retryable", E.RETRY): S.RETRYING,
    ("failed_retryable", E.GIVE_UP): S.FAILED,
    ("failed_retryable", E.CANCEL): S.CANCELLED,
    ("retrying", E.ENRICH): S.ENRICHING,  # the phase it failed in, and only that one
    ("retrying", E.FAIL): S.FAILED,
    ("retrying", E.CANCEL): S.CANCELLED,
}

MATRIX = [(name, event) for name in BUILDERS for event in Event]


@pytest.mark.parametrize(("name", "event"), [m for m in MATRIX if m in ALLOWED])
def test_allowed_transition(name: str, event: Event) -> None:
    before = BUILDERS[name]()
    after = apply(before, event, at(5))

    assert after.state is ALLOWED[(name, event)]
    assert after.updated_at == at(5)
    assert after.id == before.id
    assert after.version == before.version
    assert after.counts.dominates(before.counts)
    assert before != after  # a new value; the old one is untouched (frozen)


@pytest.mark.parametrize(("name", "event"), [m for m in MATRIX if m not in ALLOWED])
def test_forbidden_transition(name: str, event: Event) -> None:
    before = BUILDERS[name]()

    with pytest.raises(InvalidTransition) as caught:
        apply(before, event, at(5))

    assert isinstance(caught.value, PermanentError)
    assert caught.value.details["event"] == str(event)


def test_table_matches_the_written_out_matrix_apart_from_the_guards() -> None:
    states = {name: BUILDERS[name]().state for name in BUILDERS}
    expected = {(states[name], event) for name, event in ALLOWED}
    guarded = {(S.RETRYING, E.FETCH), (S.RETRYING, E.STORE)}  # other failed phases
    assert set(TRANSITIONS) == expected | guarded


def test_start_records_the_phase_and_start_time() -> None:
    session = ss.start(fresh(), at(3))
    assert (session.phase, session.started_at, session.finished_at) == (Phase.FETCHING, at(3), None)


def test_page_done_adds_counts_and_replaces_the_checkpoint() -> None:
    session = ss.start(fresh(checkpoint={"after": 100}), T0)
    session = ss.page_done(session, {"after": 100, "page": 1}, at(1), fetched=200, stored=190)
    session = ss.page_done(session, {"after": 100, "page": 2}, at(2), fetched=5, skipped=3)

    assert session.checkpoint == {"after": 100, "page": 2}
    assert session.counts == Counts(fetched=205, stored=190, skipped=3)
    assert session.pages_done == 2


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="fetched"):
        ss.page_done(ss.start(fresh(), T0), {}, T0, fetched=-1)


def test_fail_records_the_error_its_class_and_the_phase() -> None:
    session = ss.fail(_enriching(), RetryableError("upstream 503"), at(4))

    assert session.error == SessionError("RetryableError", "upstream 503", retryable=True)
    assert session.failed_phase is Phase.ENRICHING
    assert session.finished_at is None
    assert not session.terminal


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (RetryableError("429"), True),
        (TimeoutError("db"), True),  # outside the tree: retryable, as the tree says
        (PermanentError("bad data"), False),
        (ReauthRequiredError("refresh token revoked"), False),
    ],
)
def test_failures_are_classified_by_the_error_tree(exc: Exception, retryable: bool) -> None:
    session = ss.fail(_enriching(), exc, at(4))
    assert session.error is not None
    assert session.error.retryable is retryable
    assert session.terminal is not retryable
    assert session.finished_at == (None if retryable else at(4))


def test_the_caller_may_overrule_the_classification() -> None:
    session = ss.fail(_enriching(), RetryableError("503"), T0, retryable=False)
    assert session.terminal


def test_retry_goes_back_into_the_failed_phase_from_the_checkpoint() -> None:
    storing = ss.advance(_enriching(), Phase.STORING, T0)
    storing = ss.page_done(storing, {"page": 7}, at(1), fetched=10, stored=10)
    failed = ss.fail(storing, RetryableError("db timeout"), at(2))

    retrying = ss.retry(failed, at(3))
    resumed = ss.resume(retrying, at(4))

    assert retrying.retry_count == 1
    assert (resumed.state, resumed.phase) == (S.STORING, Phase.STORING)
    assert resumed.checkpoint == {"page": 7}
    assert resumed.counts == storing.counts
    assert resumed.error is None
    assert resumed.failed_phase is None
    with pytest.raises(InvalidTransition):
        ss.advance(retrying, Phase.FETCHING, at(4))


def test_failing_again_while_retrying_keeps_the_original_phase() -> None:
    retrying = BUILDERS["retrying"]()
    again = ss.fail(retrying, RetryableError("still 503"), at(9))
    assert again.failed_phase is Phase.ENRICHING
    assert ss.resume(ss.retry(again, at(10)), at(11)).retry_count == 2


def test_give_up_makes_a_retryable_failure_terminal() -> None:
    session = ss.give_up(BUILDERS["failed_retryable"](), at(7))
    assert session.terminal
    assert session.finished_at == at(7)
    assert session.error is not None
    assert session.error.type == "RetryableError"


def test_complete_and_cancel_finish_the_session() -> None:
    assert ss.complete(ss.start(fresh(), T0), at(8)).finished_at == at(8)
    assert ss.cancel(BUILDERS["failed_retryable"](), at(8)).finished_at == at(8)


def test_estimate_unknown_without_a_total() -> None:
    assert ss.estimate(ss.start(fresh(), T0), at(10)) is None


def test_estimate_from_the_pace_so_far() -> None:
    session = ss.start(fresh(pages_expected=10), T0)
    assert ss.estimate(session, T0) == ss.Estimate(fraction=0.0, eta=None)
    for i in range(4):
        session = ss.page_done(session, {"page": i}, at(2 * (i + 1)), fetched=1)

    # 4 pages in 8 s: 6 left at 2 s each.
    assert ss.estimate(session, at(8)) == ss.Estimate(fraction=0.4, eta=at(20))


def test_estimate_caps_at_one_and_is_done_when_complete() -> None:
    session = ss.start(fresh(pages_expected=1), T0)
    session = ss.page_done(session, {}, at(1))
    session = ss.page_done(session, {}, at(2))
    assert ss.estimate(session, at(2)) == ss.Estimate(fraction=1.0, eta=at(2))
    done = ss.complete(session, at(3))
    assert ss.estimate(done, at(5)) == ss.Estimate(fraction=1.0, eta=at(3))


# -- properties ----------------------------------------------------------------------------

events = st.lists(st.sampled_from(list(Event)), max_size=40)


def run(sequence: list[Event]) -> list[Session]:
    """Applies the events in turn, skipping refused ones; every session reached."""
    trail = [fresh()]
    for step, event in enumerate(sequence, start=1):
        try:
            trail.append(apply(trail[-1], event, at(step)))
        except InvalidTransition:
            continue
    return trail


@settings(max_examples=300, deadline=None)
@given(events)
def test_counts_and_pages_never_decrease(sequence: list[Event]) -> None:
    trail = run(sequence)
    for before, after in itertools.pairwise(trail):
        assert after.counts.dominates(before.counts)
        assert after.pages_done >= before.pages_done
        assert after.retry_count >= before.retry_count


@settings(max_examples=300, deadline=None)
@given(events)
def test_only_page_done_moves_the_checkpoint(sequence: list[Event]) -> None:
    trail = run(sequence)
    for before, after in itertools.pairwise(trail):
        if after.pages_done == before.pages_done:
            assert after.checkpoint == before.checkpoint


@settings(max_examples=300, deadline=None)
@given(events, st.sampled_from(list(Event)))
def test_terminal_sessions_accept_nothing(sequence: list[Event], last: Event) -> None:
    session = run(sequence)[-1]
    if session.terminal:
        with pytest.raises(InvalidTransition):
            apply(session, last, at(99))
        assert session.finished_at is not None
    else:
        assert session.finished_at is None


@settings(max_examples=300, deadline=None)
@given(events)
def test_failed_phase_is_set_exactly_while_failed_or_retrying(sequence: list[Event]) -> None:
    for session in run(sequence):
        # A cancelled session keeps the error it was cancelled in, if any.
        if session.state is not S.CANCELLED:
            in_failure = session.state in (S.FAILED, S.RETRYING)
            assert (session.failed_phase is not None) is in_failure
            assert (session.error is not None) is in_failure
        if session.state in ss.PHASE_STATES:
            assert session.phase is not None
            assert str(session.phase) == str(session.state)
