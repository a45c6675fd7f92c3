"""Sync sessions on /metrics (ARCHITECTURE §7: sync success and failure rates, durations).

A session is counted once, when the save that makes it terminal lands: the optimistic
version in :mod:`sync_worker.session_store` lets only one writer finish a session, and a
terminal session accepts no further event, so no session is counted twice. Its duration
runs from the command's arrival (``created_at``) to ``finished_at``, budget waits and
retries included: the time a user waited for their data.
"""

from __future__ import annotations

import functools

from prometheus_client import Counter, Histogram

from sync_worker.sessions import Session, SessionState

SESSIONS = Counter(
    "syncplane_sync_sessions_total",
    "Sync sessions finished, by provider, kind and outcome (completed, failed, cancelled)",
    ["provider", "kind", "outcome"],
)
DURATION = Histogram(
    "syncplane_sync_duration_seconds",
    "Seconds from a sync session's request to its end, by provider and kind",
    ["provider", "kind"],
    # A webhook's one object takes tens of ms; a backfill minutes to an hour.
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)

_OUTCOMES = {
    SessionState.COMPLETED: "completed",
    SessionState.FAILED: "failed",
    SessionState.CANCELLED: "cancelled",
}


@functools.cache
def _children(provider: str, kind: str, outcome: str) -> tuple[Counter, Histogram]:
    return SESSIONS.labels(provider, kind, outcome), DURATION.labels(provider, kind)


def saved(session: Session) -> None:
    """Call with every session a save returned; counts the ones that just finished."""
    if not session.terminal or session.finished_at is None:
        return
    count, duration = _children(session.provider, str(session.kind), _OUTCOMES[session.state])
    count.inc()
    duration.observe(max(0.0, (session.finished_at - session.created_at).total_seconds()))
