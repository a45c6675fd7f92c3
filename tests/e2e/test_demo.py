"""`syncplane demo` as a newcomer runs it (`make demo`): the whole story on embedded
servers and the sandbox, under three minutes, ending in an audit with no losses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SYNCPLANE = Path(sys.executable).parent / "syncplane"
STEPS = (
    "Connecting every user through the real OAuth redirect flow",
    "Backfills",
    "New data arrives by webhook",
    "Smart reads",
    "Calendar edits both ways, and a conflict",
    "Every access token expires",
    "The scheduler comes round",
    "An athlete deauthorizes syncplane on Strava",
    "Summary",
)


def test_the_demo_tells_the_whole_story_without_a_loss() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"NATS_URL", "DATABASE_URL"}}
    started = time.monotonic()
    done = subprocess.run(
        [str(SYNCPLANE), "demo", "--users", "20"],
        env=env,
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    took = time.monotonic() - started
    out = done.stdout
    assert done.returncode == 0, f"demo exited {done.returncode}\n{out}\n{done.stderr[-3000:]}"
    for step in STEPS:
        assert step in out, f"{step!r} missing from the demo's story\n{out}"
    for scene in (
        "killed sync-worker",
        "completed in the same session",
        "source=cache",
        "source=strava_api",
        "conflict detected",
        "Strava revoked",
    ):
        assert scene in out, f"{scene!r} missing\n{out}"
    # The audit: one row per provider, twenty users each, and no losses anywhere.
    rows = re.findall(
        r"^\s+(strava|google_fit|whoop|google_calendar)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)"
        r"\s+(\d+)\s+(\d+)\s*$",
        out,
        re.M,
    )
    assert {r[0] for r in rows} == {"strava", "google_fit", "whoop", "google_calendar"}, out
    for provider, users, records, _calls, limited, _refreshes, _conflicts, losses in rows:
        assert (users, losses) == ("20", "0"), f"{provider}: {out}"
        assert int(records) > 0, f"{provider} stored nothing\n{out}"
        assert limited == "0", f"{provider} was answered 429\n{out}"
    assert "No losses, no failed syncs, no dead letters." in out
    # The bound is three minutes on a quiet machine; leave room for a loaded one.
    assert took < 300, f"the demo took {took:.0f}s"
