"""What the dev stack hands each service: its own settings only, environment first."""

from __future__ import annotations

from pathlib import Path

import pytest
from syncplane_devstack.secrets import SECRET_SETTINGS, dev_secrets
from syncplane_devstack.stack import SERVICES, ServiceSpec, Stack, role_dsn, service_env
from webhook_gateway.webhooks import GCAL_PATH

pytestmark = pytest.mark.unit


def _spec(name: str) -> ServiceSpec:
    return next(s for s in SERVICES if s.name == name)


def test_environment_wins_over_generated_and_existing_secrets() -> None:
    env = {"API_JWT_SECRET": "from-env" * 5}
    first = dev_secrets(env)
    assert set(first) == set(SECRET_SETTINGS)
    assert first["API_JWT_SECRET"] == "from-env" * 5
    again = dev_secrets({}, existing=first)
    assert again == first  # generated once per stack, then reused
    assert dev_secrets({}) != first


def test_generated_token_key_is_a_valid_keyring() -> None:
    from token_service.settings import parse_keyring

    keys = parse_keyring(dev_secrets({})["TOKEN_KEYS"])
    assert list(keys) == ["dev1"]
    assert len(keys["dev1"]) == 32


def test_each_service_sees_only_its_own_settings() -> None:
    values = {
        **dev_secrets({}),
        "NATS_URL": "nats://x",
        "DATABASE_URL": "postgresql://x/y",
        "STRAVA_API_BASE": "http://sandbox/strava",
    }
    base = {"PATH": "/bin", "TOKEN_KEYS": "leaked-from-parent", "HOME": "/root"}
    gateway = service_env(_spec("webhook-gateway"), base, values)
    assert "TOKEN_KEYS" not in gateway
    assert "STRAVA_CLIENT_SECRET" not in gateway
    assert "DATABASE_URL" not in gateway
    assert gateway["API_JWT_SECRET"] == values["API_JWT_SECRET"]
    assert gateway["PATH"] == "/bin"
    worker = service_env(_spec("sync-worker"), base, values)
    assert not {"TOKEN_KEYS", "API_JWT_SECRET", "STRAVA_CLIENT_SECRET"} & worker.keys()
    assert worker["STRAVA_API_BASE"] == "http://sandbox/strava"
    tokens = service_env(_spec("token-service"), base, values)
    assert tokens["TOKEN_KEYS"] == values["TOKEN_KEYS"]
    assert tokens["STRAVA_CLIENT_SECRET"] == values["STRAVA_CLIENT_SECRET"]


def test_role_dsn_swaps_credentials_and_keeps_the_rest() -> None:
    dsn = role_dsn("postgresql://postgres@127.0.0.1:5555/syncplane?sslmode=disable", "sync_worker")
    assert dsn == "postgresql://sync_worker:sync_worker@127.0.0.1:5555/syncplane?sslmode=disable"


def _stack(environ: dict[str, str]) -> Stack:
    stack = Stack(Path("/nonexistent"), environ, with_sandbox=True)
    stack._ports = {spec.name: 40000 + i for i, spec in enumerate(SERVICES)}
    stack.secrets = dev_secrets({})
    stack.nats_url, stack.database_url = "nats://x", "postgresql://postgres@127.0.0.1:5/syncplane"
    return stack


def test_calendar_sync_watches_with_the_gateways_calendar_webhook_url() -> None:
    stack = _stack({})
    gateway = f"http://127.0.0.1:{stack._ports['webhook-gateway']}"
    env = service_env(_spec("calendar-sync"), {}, stack.service_values(_spec("calendar-sync")))
    assert env["GCAL_WEBHOOK_URL"] == gateway + GCAL_PATH
    assert "GCAL_WEBHOOK_URL" not in service_env(
        _spec("sync-worker"), {}, stack.service_values(_spec("sync-worker"))
    )
    # A stack behind a public tunnel names its own address.
    tunnel = "https://tunnel.example/webhooks/google/calendar"
    stack = _stack({"GCAL_WEBHOOK_URL": tunnel})
    env = service_env(_spec("calendar-sync"), {}, stack.service_values(_spec("calendar-sync")))
    assert env["GCAL_WEBHOOK_URL"] == tunnel
