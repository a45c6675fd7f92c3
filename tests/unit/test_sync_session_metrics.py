"""A finished sync session is counted once by outcome and timed from its request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sync_worker import _session_metrics, sessions
from sync_worker.sessions import SessionKind
from syncplane_common.errors import PermanentError, RetryableError

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PROVIDER = "metrics-test"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"provider": PROVIDER, **labels}) or 0.0


def finished(outcome: str) -> float:
    return sample("syncplane_sync_sessions_total", kind="backfill", outcome=outcome)


def test_only_a_finished_session_is_counted_with_its_duration() -> None:
    before = {o: finished(o) for o in ("completed", "failed", "cancelled")}
    seconds = sample("syncplane_sync_duration_seconds_sum", kind="backfill")
    s = sessions.new(user_id="u", provider=PROVIDER, kind=SessionKind.BACKFILL, now=T0)
    _session_metrics.saved(s)
    s = sessions.start(s, T0 + timedelta(seconds=1))
    _session_metrics.saved(s)
    # A retryable failure is not the end: the session will be retried.
    retried = sessions.fail(s, RetryableError("503"), T0 + timedelta(seconds=2))
    _session_metrics.saved(retried)
    assert {o: finished(o) - before[o] for o in before} == {
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
    }

    _session_metrics.saved(sessions.complete(s, T0 + timedelta(seconds=90)))
    _session_metrics.saved(sessions.fail(s, PermanentError("403"), T0 + timedelta(seconds=5)))
    _session_metrics.saved(sessions.cancel(s, T0 + timedelta(seconds=7)))

    assert {o: finished(o) - before[o] for o in before} == {
        "completed": 1,
        "failed": 1,
        "cancelled": 1,
    }
    took = sample("syncplane_sync_duration_seconds_sum", kind="backfill") - seconds
    assert took == pytest.approx(90 + 5 + 7)
