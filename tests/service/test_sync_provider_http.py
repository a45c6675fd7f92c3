"""sync_worker.providers._http against a local aiohttp server: ids past 2**53 stay exact,
every status comes back for the provider to map, a 2xx that is not JSON is retryable,
a transport failure is RetryableError, and Retry-After is read in any case."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY
from sync_worker.providers._http import utc_millis
from syncplane_common.errors import RetryableError
from syncplane_common.http import Answer, bearer, call, retry_after

pytestmark = pytest.mark.service

BIG_ID = 2**63 - 1  # a float would round this
LABELS = {"provider": "testprov", "operation": "probe"}


async def _echo(request: web.Request) -> web.Response:
    body = await request.json() if request.can_read_body else None
    seen = {
        "method": request.method,
        "query": [[k, v] for k, v in request.query.items()],
        "authorization": request.headers.get("Authorization"),
        "accept": request.headers.get("Accept"),
        "body": body,
        "id": BIG_ID,
    }
    return web.json_response(seen, headers={"retry-AFTER": "7"})


async def _text(request: web.Request) -> web.Response:
    status = int(request.query.get("status", "200"))
    return web.Response(status=status, text=request.query.get("text", ""))


@pytest.fixture
async def base() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/echo", _echo)
    app.router.add_get("/text", _text)
    async with TestServer(app) as server:
        yield str(server.make_url("")).rstrip("/")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_a_call_sends_token_params_and_body_and_keeps_ids_exact(
    base: str, session: aiohttp.ClientSession
) -> None:
    params = [("activityType", "1"), ("activityType", "8")]
    answer = await call(
        session,
        "POST",
        f"{base}/echo",
        provider="testprov",
        operation="probe",
        headers=bearer("t0k"),
        params=params,
        json_body={"a": 1},
    )
    assert answer.status == 200
    assert answer.decode_error is None
    seen = answer.json_object("echo")
    assert seen["method"] == "POST"
    assert seen["query"] == [["activityType", "1"], ["activityType", "8"]]
    assert (seen["authorization"], seen["accept"]) == ("Bearer t0k", "application/json")
    assert seen["body"] == {"a": 1}
    assert seen["id"] == BIG_ID
    assert type(seen["id"]) is int
    assert retry_after(answer.headers, datetime(2026, 1, 1, tzinfo=UTC)) == 7.0


async def test_an_error_status_comes_back_with_its_text(
    base: str, session: aiohttp.ClientSession
) -> None:
    answer = await call(
        session,
        "GET",
        f"{base}/text",
        provider="testprov",
        operation="probe",
        params={"status": "403", "text": "<html>blocked"},
    )
    assert answer.status == 403
    assert answer.body is None
    assert isinstance(answer.decode_error, ValueError)
    assert answer.text == "<html>blocked"


@pytest.mark.parametrize("text", ["<html>", '{"records": [', "[1, 2]"])
async def test_a_2xx_that_is_not_a_json_object_is_retryable(
    base: str, session: aiohttp.ClientSession, text: str
) -> None:
    answer = await call(
        session,
        "GET",
        f"{base}/text",
        provider="testprov",
        operation="probe",
        params={"text": text},
    )
    with pytest.raises(RetryableError, match="not a JSON object"):
        answer.json_object("whoop list")
    if text == "[1, 2]":
        assert answer.json("strava list") == [1, 2]
    else:
        with pytest.raises(RetryableError, match="not JSON") as broken:
            answer.json("strava list")
        assert isinstance(broken.value.__cause__, ValueError)


async def test_an_empty_2xx_decodes_to_none(base: str, session: aiohttp.ClientSession) -> None:
    answer = await call(session, "GET", f"{base}/text", provider="testprov", operation="probe")
    assert answer == Answer(200, answer.headers, None, b"", None)
    assert answer.json("strava get") is None


async def test_a_refused_connection_is_retryable(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(RetryableError) as refused:
        await call(
            session,
            "GET",
            f"http://127.0.0.1:{closed_port}/",
            provider="testprov",
            operation="probe",
            headers=bearer("secret"),
        )
    assert type(refused.value) is RetryableError
    assert "secret" not in str(refused.value)


def _calls(status: str) -> float:
    value = REGISTRY.get_sample_value(
        "syncplane_provider_calls_total", {**LABELS, "status": status}
    )
    return value or 0.0


def _timed() -> float:
    return REGISTRY.get_sample_value("syncplane_provider_call_seconds_count", LABELS) or 0.0


async def test_every_call_is_counted_by_status_and_timed(
    base: str, session: aiohttp.ClientSession
) -> None:
    before = {s: _calls(s) for s in ("200", "429", "error")}
    timed = _timed()
    await call(session, "GET", f"{base}/text", provider="testprov", operation="probe")
    await call(
        session,
        "GET",
        f"{base}/text",
        provider="testprov",
        operation="probe",
        params={"status": "429"},
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(RetryableError):
        await call(
            session,
            "GET",
            f"http://127.0.0.1:{closed_port}/",
            provider="testprov",
            operation="probe",
        )
    assert {s: _calls(s) - before[s] for s in before} == {"200": 1, "429": 1, "error": 1}
    assert _timed() - timed == 3


def test_retry_after_in_any_case_or_absent() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after({"Retry-After": "3"}, now) == 3.0
    assert retry_after({"retry-after": "Thu, 01 Jan 2026 00:00:30 GMT"}, now) == 30.0
    assert retry_after({"X-RateLimit-Reset": "9"}, now) is None


def test_utc_millis_is_rfc3339_in_utc_and_refuses_naive() -> None:
    berlin = timezone(timedelta(hours=1))
    at = datetime(2026, 3, 1, 13, 0, 5, 123456, tzinfo=berlin)
    assert utc_millis(at, "bounds") == "2026-03-01T12:00:05.123Z"
    with pytest.raises(ValueError, match="bounds must be timezone-aware"):
        utc_millis(datetime(2026, 3, 1), "bounds")
