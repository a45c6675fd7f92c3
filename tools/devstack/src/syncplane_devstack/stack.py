"""The dev stack: NATS and Postgres (embedded unless NATS_URL / DATABASE_URL are set),
migrations, provisioning, and every service as a child process, torn down as one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
from calendar_sync.settings import CalendarSyncSettings
from provider_sandbox.config import provider_urls as sandbox_provider_urls
from pydantic_settings import BaseSettings
from sync_worker.settings import SyncWorkerSettings
from syncplane_common.migrations import migrate_all
from syncplane_common.migrations_registry import service_migrations
from syncplane_common.provision import provision
from syncplane_common.settings import PROVIDER_URL_SETTINGS, ProviderEndpoints
from token_service.settings import TokenServiceSettings
from webhook_gateway.settings import GatewaySettings

from syncplane_devstack.devjwt import mint_token
from syncplane_devstack.embedded import EmbeddedNats, EmbeddedPostgres, free_port, make_workdir
from syncplane_devstack.secrets import dev_secrets


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    settings: type[BaseSettings]
    db_role: str | None


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("token-service", "token_service", TokenServiceSettings, "token_service"),
    ServiceSpec("sync-worker", "sync_worker", SyncWorkerSettings, "sync_worker"),
    ServiceSpec("calendar-sync", "calendar_sync", CalendarSyncSettings, "calendar_sync"),
    ServiceSpec("webhook-gateway", "webhook_gateway", GatewaySettings, None),
)

DEV_DATABASE = "syncplane"
# The gateway's Google Calendar push route (webhook_gateway.webhooks.GCAL_PATH).
GCAL_WEBHOOK_PATH = "/webhooks/google/calendar"


def role_dsn(admin_dsn: str, role: str) -> str:
    """The admin DSN with the service's own role (dev password = role name)."""
    parts = urlsplit(admin_dsn)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{role}:{role}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def service_env(
    spec: ServiceSpec, base: Mapping[str, str], values: Mapping[str, str]
) -> dict[str, str]:
    """The child's environment: only the settings its class declares (least privilege:
    the gateway never sees TOKEN_KEYS, sync-worker never sees a client secret)."""
    allowed = {name.upper() for name in spec.settings.model_fields}
    env = {k: v for k, v in base.items() if k.upper() not in _ALL_SETTINGS}
    env.update({k: v for k, v in values.items() if k in allowed})
    return env


_ALL_SETTINGS = {name.upper() for spec in SERVICES for name in spec.settings.model_fields} | set(
    PROVIDER_URL_SETTINGS
)


@dataclass
class Child:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Stack:
    workdir: Path
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    with_sandbox: bool = True
    nats: EmbeddedNats | None = None
    postgres: EmbeddedPostgres | None = None
    nats_url: str = ""
    database_url: str = ""
    secrets: dict[str, str] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)
    sandbox: Child | None = None
    owns_workdir: bool = False
    _ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(
        cls, environ: Mapping[str, str] | None = None, *, with_sandbox: bool = True
    ) -> Stack:
        return cls(
            make_workdir("syncplane-stack-"),
            dict(environ or os.environ),
            with_sandbox,
            owns_workdir=True,
        )

    # -- infrastructure --------------------------------------------------------------

    def _start_servers(self) -> None:
        if self.environ.get("NATS_URL"):
            self.nats_url = self.environ["NATS_URL"]
        else:
            self.nats = EmbeddedNats(self.workdir / "nats").start()
            self.nats_url = self.nats.url
        if self.environ.get("DATABASE_URL"):
            self.database_url = self.environ["DATABASE_URL"]
        else:
            self.postgres = EmbeddedPostgres(self.workdir / "pg").start()
            self.database_url = self.postgres.url.rsplit("/", 1)[0] + f"/{DEV_DATABASE}"

    async def _ensure_database(self) -> None:
        if self.postgres is None:
            return
        conn = await asyncpg.connect(self.postgres.url)
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", DEV_DATABASE
            )
            if not exists:
                await conn.execute(f'CREATE DATABASE "{DEV_DATABASE}"')
        finally:
            await conn.close()

    def provider_urls(self) -> dict[str, str]:
        """Environment first, then the sandbox when it runs, then the real providers."""
        defaults = ProviderEndpoints()
        sandboxed = sandbox_provider_urls(self.sandbox.url) if self.sandbox else {}
        return {
            name: self.environ.get(name) or sandboxed.get(name) or getattr(defaults, name.lower())
            for name in PROVIDER_URL_SETTINGS
        }

    def _spawn_sandbox(self) -> Child:
        port = free_port()
        env = {
            **self.environ,
            **{
                k: v
                for k, v in self.secrets.items()
                if k.endswith(("_CLIENT_ID", "_CLIENT_SECRET"))
            },
            # WHOOP delivers to one URL per app; in the dev stack that is our gateway.
            "SANDBOX_WHOOP_WEBHOOK_URL": f"{self._gateway_url()}/webhooks/whoop",
        }
        log = self.workdir / "logs" / "provider-sandbox.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "provider_sandbox", "--port", str(port)],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return Child("provider-sandbox", f"http://127.0.0.1:{port}", proc, log)

    # -- services --------------------------------------------------------------------

    def _gateway_url(self) -> str:
        return f"http://127.0.0.1:{self._ports['webhook-gateway']}"

    def service_values(self, spec: ServiceSpec) -> dict[str, str]:
        """Every setting the stack has for ``spec`` (``service_env`` keeps its own)."""
        port = self._ports[spec.name]
        values: dict[str, str] = {
            # Google pushes calendar changes to the address calendar-sync gives at watch
            # time: the gateway's route, unless the environment names another (a tunnel).
            "GCAL_WEBHOOK_URL": f"{self._gateway_url()}{GCAL_WEBHOOK_PATH}",
            **{k: v for k, v in self.environ.items() if k.upper() in _ALL_SETTINGS},
            **self.provider_urls(),
            **self.secrets,
            "NATS_URL": self.nats_url,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(port),
            "PUBLIC_BASE_URL": self._gateway_url(),
        }
        if spec.db_role is not None:
            values["DATABASE_URL"] = role_dsn(self.database_url, spec.db_role)
        return values

    def _spawn(self, spec: ServiceSpec) -> Child:
        port = self._ports[spec.name]
        env = service_env(spec, self.environ, self.service_values(spec))
        log = self.workdir / "logs" / f"{spec.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", spec.module],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return Child(spec.name, f"http://127.0.0.1:{port}", proc, log)

    async def _wait_ready(
        self, children: list[Child], ready_timeout: float, path: str = "/readyz"
    ) -> None:
        deadline = time.monotonic() + ready_timeout
        pending = {child.name: child for child in children}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while pending:
                for name, child in list(pending.items()):
                    if child.proc.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited with {child.proc.returncode}; "
                            f"last log lines:\n{_tail(child.log)}"
                        )
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with http.get(f"{child.url}{path}") as resp:
                            if resp.status == 200:
                                del pending[name]
                if pending and time.monotonic() > deadline:
                    waiting = ", ".join(pending)
                    raise RuntimeError(f"not ready after {ready_timeout:.0f}s: {waiting}")
                await asyncio.sleep(0.1)

    async def start(
        self, *, existing_secrets: Mapping[str, str] | None = None, ready_timeout: float = 30
    ) -> None:
        self.secrets = dev_secrets(self.environ, existing_secrets)
        self._start_servers()
        await self._ensure_database()
        await migrate_all(self.database_url, service_migrations())
        await provision(self.nats_url)
        self._ports = {spec.name: free_port() for spec in SERVICES}
        if self.with_sandbox:
            self.sandbox = self._spawn_sandbox()
            await self._wait_ready([self.sandbox], ready_timeout, path="/_sandbox/healthz")
        self.children = [self._spawn(spec) for spec in SERVICES]
        await self._wait_ready(self.children, ready_timeout)
        if self.sandbox is not None and not self.secrets["STRAVA_SUBSCRIPTION_ID"]:
            self.secrets["STRAVA_SUBSCRIPTION_ID"] = await self._ensure_strava_subscription()

    async def respawn(self, name: str, ready_timeout: float = 30) -> Child:
        """Start a service again after it died (the demo kills one on purpose)."""
        spec = next(s for s in SERVICES if s.name == name)
        old = next(c for c in self.children if c.name == name)
        if old.proc.poll() is None:
            raise RuntimeError(f"{name} is still running (pid {old.proc.pid})")
        child = self._spawn(spec)
        self.children[self.children.index(old)] = child
        await self._wait_ready([child], ready_timeout)
        return child

    async def _ensure_strava_subscription(self) -> str:
        """Webhooks flow with no manual step: the gateway's admin route has token-service
        create the push subscription (the sandbox validates it against the gateway)."""
        gateway = next(c for c in self.children if c.name == "webhook-gateway")
        token = mint_token(self.secrets["API_JWT_SECRET"], "syncplane-up", admin=True, ttl=300)
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http,
            http.post(
                f"{gateway.url}/api/v1/admin/strava/subscription",
                headers={"Authorization": f"Bearer {token}"},
            ) as resp,
        ):
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"Strava subscription setup failed ({resp.status}): {body}")
        return str(body["subscription_id"])

    def state(self) -> dict[str, Any]:
        services = {c.name: {"url": c.url, "pid": c.proc.pid} for c in self.children}
        gateway = services.get("webhook-gateway", {}).get("url")
        return {
            "gateway_url": gateway,
            "sandbox_url": self.sandbox.url if self.sandbox else None,
            "nats_url": self.nats_url,
            "database_url": self.database_url,
            "console_url": f"{gateway}/admin" if gateway else None,
            "services": services,
            "provider_urls": self.provider_urls(),
            "dev_secrets": self.secrets,
            "supervisor_pid": os.getpid(),
            "infrastructure": {
                "sandbox_pid": self.sandbox.proc.pid if self.sandbox else None,
                "nats_pid": self.nats.pid if self.nats else None,
                "postgres_pid": self.postgres.pid if self.postgres else None,
                "workdir": str(self.workdir),
                "logs": {c.name: str(c.log) for c in self.children},
            },
        }

    def stop(self, grace: float = 20.0) -> None:
        """Stop services first (they drain in-flight work), then NATS and Postgres."""
        for child in self.children:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children:
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait(5)
        self.children = []
        if self.sandbox is not None:
            self.sandbox.proc.terminate()
            try:
                self.sandbox.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.sandbox.proc.kill()
                self.sandbox.proc.wait(5)
            self.sandbox = None
        if self.nats is not None:
            self.nats.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.chmod(0o600)  # it holds dev secrets
    tmp.replace(path)
