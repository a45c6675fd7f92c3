"""The error tree's classification, the manual clock, and settings failures at start."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import Field, ValidationError
from syncplane_common import errors
from syncplane_common.clock import ManualClock, SystemClock
from syncplane_common.settings import (
    BaseConfig,
    ServiceSettings,
    describe_validation_error,
    load_settings,
)

pytestmark = pytest.mark.unit

# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "branch"),
    [
        (errors.RetryableError("503"), errors.RetryableError),
        (errors.CursorInvalidError("410 Gone"), errors.CursorInvalidError),
        (errors.PermanentError("403"), errors.PermanentError),
        (errors.MessageParseError("bad json"), errors.MessageParseError),
        (errors.ReauthRequiredError("invalid_grant"), errors.ReauthRequiredError),
        (errors.SyncplaneError("bare root"), errors.SyncplaneError),
        # Outside the tree: never allowed to drop a message, so it is retried.
        (RuntimeError("boom"), errors.RetryableError),
        (ValueError("bad"), errors.RetryableError),
        (TimeoutError(), errors.RetryableError),
    ],
)
def test_classify(exc: BaseException, branch: type[errors.SyncplaneError]) -> None:
    assert errors.classify(exc) is branch


def test_classify_keeps_a_subclass_in_its_branch() -> None:
    class RateLimited(errors.RetryableError):
        code = "rate_limited"

    class NotFound(errors.PermanentError):
        code = "not_found"

    assert errors.classify(RateLimited("429", retry_after=30)) is errors.RetryableError
    assert errors.classify(NotFound("404")) is errors.PermanentError


def test_retryable_error_carries_retry_after() -> None:
    err = errors.RetryableError("429", retry_after=12.5, details={"provider": "strava"})
    assert err.retry_after == 12.5
    assert err.details == {"provider": "strava"}
    assert err.to_dict() == {
        "type": "RetryableError",
        "code": "retryable",
        "message": "429",
        "retry_after": 12.5,
    }
    assert errors.RetryableError("timeout").retry_after is None


def test_cursor_invalid_is_retryable_at_once() -> None:
    err = errors.CursorInvalidError("sync token expired")
    assert isinstance(err, errors.RetryableError)
    assert err.retry_after == 0
    assert err.code == "cursor_invalid"


def test_codes_are_distinct_and_to_dict_is_json() -> None:
    tree = [
        errors.SyncplaneError,
        errors.RetryableError,
        errors.CursorInvalidError,
        errors.PermanentError,
        errors.MessageParseError,
        errors.ReauthRequiredError,
    ]
    assert len({cls.code for cls in tree}) == len(tree)
    err = errors.PermanentError("forbidden")
    assert json.loads(json.dumps(err.to_dict()))["code"] == "permanent"
    assert str(err) == err.message == "forbidden"


# -- clock -----------------------------------------------------------------------------------


def test_manual_clock_moves_only_when_told() -> None:
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    clock = ManualClock(start)
    assert clock.now() == start
    assert clock.monotonic() == 0.0

    clock.advance(90)

    assert clock.now() == start + timedelta(seconds=90)
    assert clock.monotonic() == 90.0


async def test_manual_clock_sleep_advances_instead_of_waiting() -> None:
    clock = ManualClock()
    before = clock.now()

    await clock.sleep(3600)
    await clock.sleep(-5)  # like asyncio.sleep, a negative sleep returns at once

    assert clock.now() - before == timedelta(hours=1)
    assert clock.monotonic() == 3600.0


def test_manual_clock_refuses_to_go_backwards() -> None:
    clock = ManualClock()
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    assert clock.monotonic() == 0.0


def test_manual_clock_refuses_a_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2026, 1, 1))


def test_manual_clock_default_start_is_aware() -> None:
    assert ManualClock().now().tzinfo is not None


def test_system_clock_is_aware_utc() -> None:
    clock = SystemClock()
    assert clock.now().tzinfo is UTC
    assert clock.monotonic() <= clock.monotonic()


# -- settings --------------------------------------------------------------------------------


class DemoSettings(BaseConfig):
    demo_api_key: str = Field(description="Required: no default.")
    demo_port: int = Field(8080, ge=1, le=65535)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("DEMO_API_KEY", raising=False)
    monkeypatch.delenv("DEMO_PORT", raising=False)
    return monkeypatch


def validation_error() -> ValidationError:
    try:
        DemoSettings()
    except ValidationError as err:
        return err
    raise AssertionError("DemoSettings() should have failed")


def test_describe_missing_setting(clean_env: pytest.MonkeyPatch) -> None:
    line = describe_validation_error(validation_error())
    assert line == "DEMO_API_KEY is required but not set"


def test_describe_invalid_setting(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DEMO_API_KEY", "k")
    clean_env.setenv("DEMO_PORT", "not-a-port")

    line = describe_validation_error(validation_error())

    assert line.startswith("DEMO_PORT is invalid: ")
    assert "\n" not in line


def test_describe_several_problems_on_one_line(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DEMO_PORT", "70000")

    line = describe_validation_error(validation_error())

    assert "\n" not in line
    assert "DEMO_API_KEY is required but not set" in line
    assert "DEMO_PORT is invalid" in line


def test_load_settings_exits_2_with_one_line(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        load_settings(DemoSettings, "demo-service")

    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "demo-service: configuration error: DEMO_API_KEY is required but not set"
    ]


def test_load_settings_reads_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DEMO_API_KEY", "k")
    clean_env.setenv("DEMO_PORT", "9000")

    loaded = load_settings(DemoSettings, "demo-service")

    assert (loaded.demo_api_key, loaded.demo_port) == ("k", 9000)


def test_service_settings_name_a_bad_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAX_DELIVER", "0")

    with pytest.raises(SystemExit):
        load_settings(ServiceSettings, "svc")

    assert "MAX_DELIVER is invalid" in capsys.readouterr().err
