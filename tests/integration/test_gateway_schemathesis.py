"""Schemathesis against the running gateway's own /openapi.json: no 5xx (a 503 from an
owner that is not running is the documented answer), no way in without a valid token."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
import urllib3
from hypothesis import HealthCheck, given, settings
from schemathesis import Case as GenericCase
from syncplane_common.provision import provision
from syncplane_devstack.devjwt import mint_token
from syncplane_devstack.embedded import EmbeddedNats, free_port

pytestmark = pytest.mark.integration

SECRET = "schemathesis-api-jwt-secret-0123456789abcdef"
Case = GenericCase[Any]
HTTP = urllib3.PoolManager(timeout=urllib3.Timeout(total=2.0), retries=False)
# Long-lived event streams are exercised by the gateway's own SSE tests.
STREAMING = r".*/sync/events$"


@pytest.fixture(scope="module")
def gateway_url(nats_server: EmbeddedNats) -> Iterator[str]:
    asyncio.run(provision(nats_server.url))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "NATS_URL": nats_server.url,
        "HTTP_PORT": str(port),
        "PUBLIC_BASE_URL": url,
        "API_JWT_SECRET": SECRET,
        "OAUTH_STATE_SECRET": "schemathesis-oauth-state-secret-0123456789",
        "REQUEST_TIMEOUT_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "webhook_gateway"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if HTTP.request("GET", f"{url}/readyz").status == 200:
                    break
            except urllib3.exceptions.HTTPError:
                pass
            assert time.monotonic() < deadline, "gateway did not become ready"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.fixture(scope="module")
def api_schema(gateway_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{gateway_url}/openapi.json").exclude(
        path_regex=STREAMING
    )


FUZZ = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


def _fuzz(api_schema: schemathesis.BaseSchema, check: Callable[[Case], None]) -> int:
    """Run ``check`` on generated cases of every operation (Schemathesis strategies driven
    by Hypothesis directly: its pytest plugin does not support this pytest yet)."""
    operations = 0
    for result in api_schema.get_all_operations():
        # An operation Schemathesis cannot read is a broken document: fail on it.
        operation = result.ok()  # type: ignore[union-attr]

        # A fresh wrapper per operation: Hypothesis settles settings once per function.
        def run(case: Case) -> None:
            check(case)

        FUZZ(given(case=operation.as_strategy())(run))()
        operations += 1
    return operations


def test_admin_requests_never_fail_the_server(
    api_schema: schemathesis.BaseSchema, gateway_url: str
) -> None:
    token = mint_token(SECRET, "ops", admin=True)

    def check(case: Case) -> None:
        response = case.call(base_url=gateway_url, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code < 500 or response.status_code == 503, (
            case.method,
            case.formatted_path,
            response.status_code,
            response.text[:300],
        )

    assert _fuzz(api_schema, check) > 20


def test_the_app_api_needs_a_valid_token(
    api_schema: schemathesis.BaseSchema, gateway_url: str
) -> None:
    def check(case: Case) -> None:
        response = case.call(base_url=gateway_url, headers={"Authorization": "Bearer not-a-jwt"})
        assert response.status_code < 500 or response.status_code == 503
        if case.path.startswith("/api/v1"):
            assert response.status_code == 401, (case.method, case.formatted_path)

    _fuzz(api_schema, check)


def test_a_user_cannot_reach_another_users_data(
    api_schema: schemathesis.BaseSchema, gateway_url: str
) -> None:
    token = mint_token(SECRET, "u-1")

    def check(case: Case) -> None:
        if "{user_id}" not in case.path:
            return
        case.path_parameters = {**(case.path_parameters or {}), "user_id": "someone-else"}
        response = case.call(base_url=gateway_url, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code in (400, 401, 403, 404, 405, 415, 422), (
            case.method,
            case.formatted_path,
            response.status_code,
        )

    _fuzz(api_schema, check)
