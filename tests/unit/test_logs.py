"""The JSON log line: its fields, the trace ids of the active span, and masked secrets."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime

import pytest
from opentelemetry.sdk.trace import TracerProvider
from syncplane_common.logs import setup_logging

pytestmark = pytest.mark.unit


def read(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]


@pytest.fixture
def captured(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """The JSON handler installed on pytest's captured stderr, removed afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    setup_logging("test-svc", "debug")
    yield capsys
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def test_one_json_object_per_record(captured: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("syncplane.test").info(
        "synced %d items", 3, extra={"session_id": "s-1", "provider": "strava"}
    )

    [entry] = read(captured)

    assert entry["level"] == "INFO"
    assert entry["logger"] == "syncplane.test"
    assert entry["service"] == "test-svc"
    assert entry["message"] == "synced 3 items"
    assert entry["session_id"] == "s-1"
    assert entry["provider"] == "strava"
    assert "trace_id" not in entry
    assert "span_id" not in entry
    stamp = str(entry["ts"])
    assert stamp.endswith("Z")
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")).utcoffset() is not None


def test_exceptions_are_one_text_field(captured: pytest.CaptureFixture[str]) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("syncplane.test").exception("failed")

    [entry] = read(captured)

    assert entry["level"] == "ERROR"
    assert "RuntimeError: boom" in str(entry["exc"])


def test_trace_ids_of_the_active_span(captured: pytest.CaptureFixture[str]) -> None:
    # A private provider: the test needs a valid span, not the process-wide pipeline.
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("syncplane.test").warning("inside")
        context = span.get_span_context()

    [entry] = read(captured)

    assert re.fullmatch(r"[0-9a-f]{32}", str(entry["trace_id"]))
    assert re.fullmatch(r"[0-9a-f]{16}", str(entry["span_id"]))
    assert entry["trace_id"] == f"{context.trace_id:032x}"
    assert entry["span_id"] == f"{context.span_id:016x}"


def test_secrets_in_extra_fields_are_masked(captured: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("syncplane.test").info(
        "token refreshed",
        extra={
            "access_token": "ya29.secret",
            "client_secret": "shh",
            "Authorization": "Bearer abc",
            "db_password": "hunter2",
            "request": {"headers": {"authorization": "Bearer xyz"}, "path": "/v1"},
            "user_id": "u-1",
        },
    )

    out = captured.readouterr().err
    [entry] = [json.loads(line) for line in out.splitlines()]

    for secret in ("ya29.secret", "shh", "Bearer abc", "hunter2", "Bearer xyz"):
        assert secret not in out
    assert entry["access_token"] == "***"
    assert entry["client_secret"] == "***"
    assert entry["Authorization"] == "***"
    assert entry["db_password"] == "***"
    assert entry["request"] == {"headers": {"authorization": "***"}, "path": "/v1"}
    assert entry["user_id"] == "u-1"


def test_setup_again_replaces_its_handler(captured: pytest.CaptureFixture[str]) -> None:
    setup_logging("test-svc", "warning")
    logger = logging.getLogger("syncplane.test")

    logger.info("filtered out")
    logger.warning("once")

    assert [entry["message"] for entry in read(captured)] == ["once"]
