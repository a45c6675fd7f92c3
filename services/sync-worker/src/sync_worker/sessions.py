"""Sync sessions as a pure state machine: states, the transition table, and the functions
that move a session, each returning a new one (no I/O, no clock: ``now`` is passed in).

ARCHITECTURE.md §4 "Sync session" and the robust sync design (seeds/001) are the spec::

    INITIATED ──start──▶ FETCHING ──▶ ENRICHING ──▶ STORING ──complete──▶ COMPLETED
                            ▲  └──────(no enrichment)──────▶│
                            └──────────(next page)──────────┘
    FETCHING / ENRICHING / STORING ──fail──▶ FAILED ──retry──▶ RETRYING ──▶ the failed phase
    any non-terminal state ──cancel──▶ CANCELLED (the connection was revoked)

A failed session whose error is not retryable is terminal (the same input would fail
the same way), as are COMPLETED and CANCELLED; a terminal session accepts no event.
``finished_at`` is set exactly when a session becomes terminal, so "running" is
``finished_at IS NULL`` for the store.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from syncplane_common.errors import PermanentError, RetryableError, classify

Checkpoint = Mapping[str, object]


class SessionState(StrEnum):
    INITIATED = "initiated"
    FETCHING = "fetching"
    ENRICHING = "enriching"
    STORING = "storing"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"


class Phase(StrEnum):
    """The work phases; a session in one of them is in the state of the same name."""

    FETCHING = "fetching"
    ENRICHING = "enriching"
    STORING = "storing"


class SessionKind(StrEnum):
    BACKFILL = "backfill"
    INCREMENTAL = "incremental"
    WEBHOOK = "webhook"
    SCHEDULED = "scheduled"
    ON_DEMAND = "on_demand"


class Event(StrEnum):
    START = "start"
    FETCH = "fetch"
    ENRICH = "enrich"
    STORE = "store"
    PAGE_DONE = "page_done"
    FAIL = "fail"
    RETRY = "retry"
    GIVE_UP = "give_up"
    COMPLETE = "complete"
    CANCEL = "cancel"


S = SessionState
E = Event

# The whole machine. A pair that is absent is forbidden. Two guards sit on top, in the
# functions below: RETRY and GIVE_UP need a retryable error, and from RETRYING a session
# may only go back into the phase that failed.
TRANSITIONS: Mapping[tuple[SessionState, Event], SessionState] = {
    (S.INITIATED, E.START): S.FETCHING,
    (S.INITIATED, E.CANCEL): S.CANCELLED,
    (S.FETCHING, E.ENRICH): S.ENRICHING,
    # Work that needs no enrichment (a delete, a provider without weather) skips it.
    (S.FETCHING, E.STORE): S.STORING,
    (S.FETCHING, E.PAGE_DONE): S.FETCHING,
    (S.FETCHING, E.FAIL): S.FAILED,
    # An empty first page: nothing to enrich or store.
    (S.FETCHING, E.COMPLETE): S.COMPLETED,
    (S.FETCHING, E.CANCEL): S.CANCELLED,
    (S.ENRICHING, E.STORE): S.STORING,
    (S.ENRICHING, E.PAGE_DONE): S.ENRICHING,
    (S.ENRICHING, E.FAIL): S.FAILED,
    (S.ENRICHING, E.CANCEL): S.CANCELLED,
    # Work goes page by page: after a page is stored, the next one is fetched.
    (S.STORING, E.FETCH): S.FETCHING,
    (S.STORING, E.PAGE_DONE): S.STORING,
    (S.STORING, E.FAIL): S.FAILED,
    (S.STORING, E.COMPLETE): S.COMPLETED,
    (S.STORING, E.CANCEL): S.CANCELLED,
    (S.FAILED, E.RETRY): S.RETRYING,
    (S.FAILED, E.GIVE_UP): S.FAILED,
    (S.FAILED, E.CANCEL): S.CANCELLED,
    (S.RETRYING, E.FETCH): S.FETCHING,
    (S.RETRYING, E.ENRICH): S.ENRICHING,
    (S.RETRYING, E.STORE): S.STORING,
    (S.RETRYING, E.FAIL): S.FAILED,
    (S.RETRYING, E.CANCEL): S.CANCELLED,
}

PHASE_STATES: frozenset[SessionState] = frozenset({S.FETCHING, S.ENRICHING, S.STORING})
_PHASE_EVENT: Mapping[Phase, Event] = {
    Phase.FETCHING: E.FETCH,
    Phase.ENRICHING: E.ENRICH,
    Phase.STORING: E.STORE,
}


class InvalidTransition(PermanentError):
    """An event the session's state does not accept; a bug in the caller, never retried."""

    code = "invalid_transition"


@dataclass(frozen=True, slots=True)
class Counts:
    """Items per phase; ``skipped`` are duplicates and filtered items, never stored."""

    fetched: int = 0
    enriched: int = 0
    stored: int = 0
    failed: int = 0
    skipped: int = 0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if getattr(self, field.name) < 0:
                raise ValueError(f"count {field.name} cannot be negative")

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            fetched=self.fetched + other.fetched,
            enriched=self.enriched + other.enriched,
            stored=self.stored + other.stored,
            failed=self.failed + other.failed,
            skipped=self.skipped + other.skipped,
        )

    def dominates(self, other: Counts) -> bool:
        """Whether every count is at least the other's (counts only ever grow)."""
        return all(
            getattr(self, f.name) >= getattr(other, f.name) for f in dataclasses.fields(self)
        )


@dataclass(frozen=True, slots=True)
class SessionError:
    type: str
    message: str
    retryable: bool

    @classmethod
    def of(cls, exc: BaseException, *, retryable: bool | None = None) -> SessionError:
        """From an exception, retryable as the error tree says unless told otherwise.

        Unknown exceptions count as retryable, as everywhere in syncplane; reauth and
        permanent errors do not.
        """
        if retryable is None:
            retryable = issubclass(classify(exc), RetryableError)
        return cls(type=type(exc).__name__, message=str(exc), retryable=retryable)


@dataclass(frozen=True, slots=True)
class Session:
    id: uuid.UUID
    user_id: str
    provider: str
    kind: SessionKind
    state: SessionState
    created_at: datetime
    updated_at: datetime
    phase: Phase | None = None
    checkpoint: Checkpoint = dataclasses.field(default_factory=dict)
    counts: Counts = Counts()
    pages_done: int = 0
    pages_expected: int | None = None
    error: SessionError | None = None
    failed_phase: Phase | None = None
    retry_count: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # The stored revision, for the store's optimistic save; the functions here keep it.
    version: int = 0

    @property
    def terminal(self) -> bool:
        return is_terminal(self)


def is_terminal(session: Session) -> bool:
    if session.state in (S.COMPLETED, S.CANCELLED):
        return True
    return session.state is S.FAILED and session.error is not None and not session.error.retryable


def new(
    *,
    user_id: str,
    provider: str,
    kind: SessionKind,
    now: datetime,
    id: uuid.UUID | None = None,
    checkpoint: Checkpoint | None = None,
    pages_expected: int | None = None,
) -> Session:
    """An INITIATED session; ``checkpoint`` seeds the cursor (e.g. incremental ``after``)."""
    return Session(
        id=id or uuid.uuid4(),
        user_id=user_id,
        provider=provider,
        kind=kind,
        state=S.INITIATED,
        created_at=now,
        updated_at=now,
        checkpoint=dict(checkpoint or {}),
        pages_expected=pages_expected,
    )


def _target(session: Session, event: Event) -> SessionState:
    if is_terminal(session):
        raise InvalidTransition(
            f"session {session.id} is {session.state}: terminal, {event} refused",
            details={"state": str(session.state), "event": str(event)},
        )
    target = TRANSITIONS.get((session.state, event))
    if target is None:
        raise InvalidTransition(
            f"session {session.id}: {event} is not allowed in state {session.state}",
            details={"state": str(session.state), "event": str(event)},
        )
    return target


def start(session: Session, now: datetime) -> Session:
    _target(session, E.START)
    return dataclasses.replace(
        session, state=S.FETCHING, phase=Phase.FETCHING, started_at=now, updated_at=now
    )


def advance(session: Session, to_phase: Phase, now: datetime) -> Session:
    """Into ``to_phase``; from RETRYING only back into the phase that failed."""
    target = _target(session, _PHASE_EVENT[to_phase])
    if session.state is S.RETRYING:
        if to_phase is not session.failed_phase:
            raise InvalidTransition(
                f"session {session.id} failed in {session.failed_phase}: "
                f"it resumes there, not in {to_phase}",
                details={"state": str(session.state), "event": str(_PHASE_EVENT[to_phase])},
            )
        return dataclasses.replace(
            session,
            state=target,
            phase=to_phase,
            error=None,
            failed_phase=None,
            updated_at=now,
        )
    return dataclasses.replace(session, state=target, phase=to_phase, updated_at=now)


def resume(session: Session, now: datetime) -> Session:
    """RETRYING → the phase that failed; the checkpoint is kept, so work picks up there."""
    if session.failed_phase is None:
        raise InvalidTransition(
            f"session {session.id} in {session.state} has no failed phase to resume",
            details={"state": str(session.state), "event": "resume"},
        )
    return advance(session, session.failed_phase, now)


def page_done(
    session: Session,
    checkpoint: Checkpoint,
    now: datetime,
    *,
    fetched: int = 0,
    enriched: int = 0,
    stored: int = 0,
    skipped: int = 0,
    failed: int = 0,
) -> Session:
    """A page went through: its counts are added and ``checkpoint`` replaces the cursor.

    Saved in the transaction that upserts the page, so a redelivered session resumes
    after the last page that really landed.
    """
    _target(session, E.PAGE_DONE)
    delta = Counts(
        fetched=fetched, enriched=enriched, stored=stored, failed=failed, skipped=skipped
    )
    return dataclasses.replace(
        session,
        checkpoint=dict(checkpoint),
        counts=session.counts + delta,
        pages_done=session.pages_done + 1,
        updated_at=now,
    )


def fail(
    session: Session,
    error: BaseException | SessionError,
    now: datetime,
    *,
    retryable: bool | None = None,
) -> Session:
    """FAILED in the current phase; a non-retryable error makes the session terminal."""
    _target(session, E.FAIL)
    if isinstance(error, SessionError):
        info = error if retryable is None else dataclasses.replace(error, retryable=retryable)
    else:
        info = SessionError.of(error, retryable=retryable)
    # From RETRYING the phase that failed is still the one recorded when it first failed.
    failed_phase = session.failed_phase if session.state is S.RETRYING else session.phase
    return dataclasses.replace(
        session,
        state=S.FAILED,
        error=info,
        failed_phase=failed_phase,
        updated_at=now,
        finished_at=None if info.retryable else now,
    )


def _require_retryable(session: Session, event: Event) -> None:
    if session.error is None or not session.error.retryable:
        raise InvalidTransition(
            f"session {session.id} failed permanently: {event} refused",
            details={"state": str(session.state), "event": str(event)},
        )


def retry(session: Session, now: datetime) -> Session:
    """FAILED → RETRYING; then :func:`resume` goes back into the failed phase."""
    _target(session, E.RETRY)
    _require_retryable(session, E.RETRY)
    return dataclasses.replace(
        session, state=S.RETRYING, retry_count=session.retry_count + 1, updated_at=now
    )


def give_up(session: Session, now: datetime) -> Session:
    """A retryable failure the caller stops retrying (attempts exhausted): now terminal."""
    _target(session, E.GIVE_UP)
    _require_retryable(session, E.GIVE_UP)
    assert session.error is not None  # checked just above
    return dataclasses.replace(
        session,
        error=dataclasses.replace(session.error, retryable=False),
        updated_at=now,
        finished_at=now,
    )


def complete(session: Session, now: datetime) -> Session:
    _target(session, E.COMPLETE)
    return dataclasses.replace(session, state=S.COMPLETED, updated_at=now, finished_at=now)


def cancel(session: Session, now: datetime) -> Session:
    """The connection was revoked (or reauth is required): stop, keeping what was stored."""
    _target(session, E.CANCEL)
    return dataclasses.replace(session, state=S.CANCELLED, updated_at=now, finished_at=now)


@dataclass(frozen=True, slots=True)
class Estimate:
    fraction: float
    eta: datetime | None


def estimate(session: Session, now: datetime) -> Estimate | None:
    """Share of expected pages done and, from the pace so far, when the rest will be.

    None while the total is unknown (most providers never say how much history there is).
    """
    if session.state is S.COMPLETED:
        return Estimate(fraction=1.0, eta=session.finished_at)
    if not session.pages_expected or session.pages_expected <= 0:
        return None
    fraction = min(session.pages_done / session.pages_expected, 1.0)
    if session.pages_done == 0 or session.started_at is None or is_terminal(session):
        return Estimate(fraction=fraction, eta=None)
    elapsed = (now - session.started_at).total_seconds()
    remaining = max(session.pages_expected - session.pages_done, 0)
    per_page = elapsed / session.pages_done
    return Estimate(fraction=fraction, eta=now + timedelta(seconds=per_page * remaining))
