"""Fixtures for the provider sandbox's own tests: the app in-process on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from provider_sandbox.app import PARTS_KEY, SANDBOX_KEY, create_app
from provider_sandbox.config import AppCredentials, SandboxConfig
from provider_sandbox.core import Sandbox
from provider_sandbox.providers import Part

Client = TestClient[web.Request, web.Application]

CONFIG = SandboxConfig(
    strava=AppCredentials("12345", "strava-secret"),
    whoop=AppCredentials("whoop-client", "whoop-secret"),
    google=AppCredentials("g-client.apps.googleusercontent.com", "google-secret"),
    seed=7,
)


@pytest.fixture
def config() -> SandboxConfig:
    return CONFIG


@pytest.fixture
async def client(config: SandboxConfig) -> AsyncIterator[Client]:
    app = create_app(config)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
def sandbox(client: Client) -> Sandbox:
    return client.app[SANDBOX_KEY]


@pytest.fixture
def parts(client: Client) -> dict[str, Part]:
    return client.app[PARTS_KEY]
