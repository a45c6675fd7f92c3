"""deploy/nats/nats.conf, run by a real nats-server: each service works with its own user,
and what it must not do is refused.

The services do here what they do in production, through the same code: the
``ServiceRuntime`` (broker, advisory watchers), ``bus.durable_subscriber`` on the
provisioned durable consumers, ``bus.publish`` with PubAck, ``rpc`` requests and
responders in queue groups, KV buckets, dead-lettering (middleware and exhausted
advisories) and the console's dead-letter listing and replay. The server's own log is
the referee: the allowed scenario must leave no permission violation in it, and every
forbidden action must leave exactly the violation it should.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from faststream.nats import NatsBroker
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from syncplane_common import bus, dlq, rpc, subjects
from syncplane_common.contracts import (
    CalendarEventBody,
    CalendarLocalChanged,
    CalendarRemoteChanged,
    ConnectionConnected,
    ConnectionsList,
    ConnectionsListReply,
    RecordsChanged,
    SyncProgress,
    SyncRequested,
    TokenExchange,
    TokenExchangeReply,
    TokenGet,
    TokenGetReply,
    WebhookReceived,
)
from syncplane_common.errors import PermanentError, RetryableError
from syncplane_common.provision import provision
from syncplane_common.runtime import ServiceRuntime
from syncplane_common.settings import ServiceSettings
from syncplane_devstack import deploy_gen
from syncplane_devstack.embedded import EmbeddedNats
from webhook_gateway import _api_events

from tests.integration.gateway_harness import running_gateway

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "nats" / "nats.conf"
AT = datetime(2026, 11, 1, tzinfo=UTC)
VIOLATION = re.compile(
    r'"\$G/user:(?P<user>[^"]+)" - (?P<kind>Publish|Subscription) Violation'
    r' - Subject "(?P<subject>[^"]+)"'
)


@dataclass
class SecuredNats:
    server: EmbeddedNats
    passwords: dict[str, str]

    def url(self, user: str) -> str:
        return f"nats://{user}:{self.passwords[user]}@127.0.0.1:{self.server.port}"

    def violations(self) -> list[tuple[str, str, str]]:
        log = (self.server.workdir / "nats.log").read_text(errors="replace")
        return [(m["user"], m["kind"], m["subject"]) for m in VIOLATION.finditer(log)]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredNats]:
    """nats-server on the checked-in nats.conf, passwords from its environment."""
    passwords = {user: secrets.token_hex(16) for user in deploy_gen.nats_users()}
    with pytest.MonkeyPatch.context() as env:
        for user, password in passwords.items():
            env.setenv(deploy_gen.password_variable(user), password)
        server = EmbeddedNats(tmp_path_factory.mktemp("nats-secured"), config_file=CONF).start()
    yield SecuredNats(server, passwords)
    server.stop()


@pytest.fixture(scope="module")
async def provisioned(secured: SecuredNats) -> SecuredNats:
    report = await provision(secured.url(deploy_gen.PROVISIONER))
    assert report.created, "the provisioner user creates streams, consumers and buckets"
    return secured


@dataclass
class Recorder:
    seen: dict[str, list[str]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, key: str, value: str) -> None:
        self.seen.setdefault(key, []).append(value)
        self.changed.set()

    async def wait_for(self, key: str, value: str, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while value not in self.seen.get(key, []):
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def running(runtimes: list[ServiceRuntime]) -> AsyncIterator[None]:
    """Each runtime serving as in production (``serve``) until the block ends."""
    started = [asyncio.Event() for _ in runtimes]
    for runtime, event in zip(runtimes, started, strict=True):

        async def mark(_: ServiceRuntime, event: asyncio.Event = event) -> None:
            event.set()

        runtime.on_start.append(mark)
    tasks = [asyncio.create_task(runtime.serve()) for runtime in runtimes]
    try:
        async with asyncio.timeout(15):
            await asyncio.gather(*(event.wait() for event in started))
        yield
    finally:
        for runtime in runtimes:
            runtime.stop()
        await asyncio.gather(*tasks, return_exceptions=True)


def runtime_for(secured: SecuredNats, service: str) -> ServiceRuntime:
    # No schema: this is about the bus; the database side is test_deploy_postgres.
    settings = ServiceSettings(
        nats_url=secured.url(service), broker_graceful_timeout=2.0, log_level="WARNING"
    )
    return ServiceRuntime(service, settings, None)


def _body(calendar_id: str = "primary") -> CalendarEventBody:
    return CalendarEventBody(
        calendar_id=calendar_id, start="2026-11-02T10:00:00Z", end="2026-11-02T11:00:00Z"
    )


def _token_service(secured: SecuredNats, rec: Recorder) -> ServiceRuntime:
    runtime = runtime_for(secured, "token-service")
    broker = runtime.broker

    @rpc.responder(broker, subjects.TOKEN_GET, TokenGet, TokenGetReply, queue="token-service")
    async def token_get(ask: TokenGet) -> TokenGetReply:
        rec.add("token.get", ask.user_id)
        return TokenGetReply(access_token=f"at-{ask.user_id}", expires_at=AT)

    @rpc.responder(
        broker, subjects.TOKEN_EXCHANGE, TokenExchange, TokenExchangeReply, queue="token-service"
    )
    async def token_exchange(ask: TokenExchange) -> TokenExchangeReply:
        rec.add("token.exchange", ask.user_id)
        return TokenExchangeReply(provider_account_id="42")

    async def deauth(event: WebhookReceived) -> None:
        rec.add("token-service-deauth", event.event_id)

    bus.durable_subscriber(broker, "token-service-deauth")(deauth)

    async def on_start(rt: ServiceRuntime) -> None:
        connected = ConnectionConnected(user_id="u-cal", provider="google_calendar", occurred_at=AT)
        await bus.publish(
            rt.broker,
            subjects.connection_event("connected", "google_calendar"),
            connected,
            msg_id="c-1",
        )

    runtime.on_start.append(on_start)
    return runtime


def _sync_worker(secured: SecuredNats, rec: Recorder) -> ServiceRuntime:
    runtime = runtime_for(secured, "sync-worker")
    broker = runtime.broker

    async def webhooks(event: WebhookReceived) -> None:
        rec.add("sync-worker-webhooks", event.event_id)
        if event.object_id == "poison":
            raise PermanentError("cannot be processed")  # -> dlq.webhook.received...

    bus.durable_subscriber(broker, "sync-worker-webhooks")(webhooks)

    async def requests(command: SyncRequested) -> None:
        rec.add("sync-worker-requests", command.request_id)
        rec.add("sync-worker-requests-users", command.user_id)
        if command.request_id == "stuck":
            raise RetryableError("provider down", retry_after=120)  # stays in SYNC

    bus.durable_subscriber(broker, "sync-worker-requests")(requests)

    async def lifecycle(event: ConnectionConnected) -> None:
        rec.add("sync-worker-lifecycle", event.user_id)

    bus.durable_subscriber(broker, "sync-worker-lifecycle")(lifecycle)

    @rpc.responder(
        broker, subjects.DATA_QUERY, ConnectionsList, ConnectionsListReply, queue="sync-worker"
    )
    async def data_query(ask: ConnectionsList) -> ConnectionsListReply:
        rec.add("data.query", ask.user_id)
        return ConnectionsListReply()

    return runtime


def _calendar_sync(secured: SecuredNats, rec: Recorder) -> ServiceRuntime:
    runtime = runtime_for(secured, "calendar-sync")
    broker = runtime.broker

    async def pushes(event: WebhookReceived) -> None:
        rec.add("calendar-sync-webhooks", event.event_id)

    bus.durable_subscriber(broker, "calendar-sync-webhooks")(pushes)

    async def local(change: CalendarLocalChanged) -> None:
        rec.add("calendar-sync-local", change.change_id)

    bus.durable_subscriber(broker, "calendar-sync-local")(local)

    async def lifecycle(event: ConnectionConnected) -> None:
        rec.add("calendar-sync-lifecycle", event.user_id)

    bus.durable_subscriber(broker, "calendar-sync-lifecycle")(lifecycle)

    @rpc.responder(
        broker, "calendar.events.list", ConnectionsList, ConnectionsListReply, queue="calendar-sync"
    )
    async def events_list(ask: ConnectionsList) -> ConnectionsListReply:
        rec.add("calendar.events.list", ask.user_id)
        return ConnectionsListReply()

    return runtime


async def _publish(broker: NatsBroker, message: WebhookReceived) -> None:
    await bus.publish(broker, message.subject, message, msg_id=message.event_id)


def _webhook(provider: str, kind: str, event_id: str, object_id: str = "1") -> WebhookReceived:
    return WebhookReceived.model_validate(
        {
            "provider": provider,
            "kind": kind,
            "event_id": event_id,
            "object_id": object_id,
            "received_at": AT,
        }
    )


async def test_every_service_works_with_its_own_user(provisioned: SecuredNats) -> None:
    secured = provisioned
    rec = Recorder()
    token, worker, calendar = (
        _token_service(secured, rec),
        _sync_worker(secured, rec),
        _calendar_sync(secured, rec),
    )
    async with (
        running([token, worker, calendar]),
        running_gateway(secured.url("webhook-gateway")) as gateway,
    ):
        gw = gateway.runtime.broker
        console = gateway.auth("ops", admin=True)
        # gateway -> every consumer of the bus
        await _publish(gw, _webhook("strava", "activity", "wh-1"))
        await _publish(gw, _webhook("strava", "activity", "wh-poison", object_id="poison"))
        await _publish(gw, _webhook("gcal", "events", "wh-gcal"))
        await _publish(gw, _webhook("strava", "athlete", "wh-deauth"))
        local = CalendarLocalChanged(change_id="lc-1", user_id="u", event=_body(), at=AT)
        await bus.publish(gw, subjects.CALENDAR_LOCAL_CHANGED, local, msg_id="lc-1")
        on_demand = SyncRequested(
            request_id="sr-1", user_id="u", provider="whoop", kind="on_demand", requested_at=AT
        )
        await bus.publish(gw, on_demand.subject, on_demand, msg_id="sr-1")
        for key, value in [
            ("sync-worker-webhooks", "wh-1"),
            ("calendar-sync-webhooks", "wh-gcal"),
            ("token-service-deauth", "wh-deauth"),
            ("calendar-sync-local", "lc-1"),
            ("sync-worker-requests", "sr-1"),
            ("sync-worker-lifecycle", "u-cal"),  # token-service's connection event
            ("calendar-sync-lifecycle", "u-cal"),
        ]:
            await rec.wait_for(key, value)

        # gateway -> request/reply owners
        exchange = TokenExchange(
            user_id="u",
            provider="strava",
            code="c",
            redirect_uri="http://x/cb",
            state_nonce="n" * 8,
        )
        reply = await rpc.request(gw, subjects.TOKEN_EXCHANGE, exchange, TokenExchangeReply)
        assert reply.provider_account_id == "42"
        await rpc.request(
            gw, subjects.DATA_QUERY, ConnectionsList(user_id="dq"), ConnectionsListReply
        )
        await rpc.request(
            gw, "calendar.events.list", ConnectionsList(user_id="ce"), ConnectionsListReply
        )

        # workers -> token.get, and their own publishes
        for runtime in (worker, calendar):
            got = await rpc.request(
                runtime.broker,
                subjects.TOKEN_GET,
                TokenGet(user_id=runtime.service, provider="strava"),
                TokenGetReply,
            )
            assert got.access_token == f"at-{runtime.service}"
        follow_up = SyncRequested(
            request_id="sr-2", user_id="u", provider="strava", kind="scheduled", requested_at=AT
        )
        await bus.publish(worker.broker, follow_up.subject, follow_up, msg_id="sr-2")
        changed = RecordsChanged(user_id="u", provider="strava", data_type="activities", at=AT)
        await bus.publish(
            worker.broker, subjects.records_changed("strava", "activities"), changed, msg_id="rc-1"
        )
        progress = SyncProgress(
            session_id="s-1", user_id="u", provider="strava", phase="FETCHING", at=AT
        )
        await bus.publish(
            worker.broker, subjects.sync_event("progress", "strava"), progress, msg_id="sp-1"
        )
        remote = CalendarRemoteChanged(
            change_id="rc-1", user_id="u", google_event_id="g1", event=_body(), at=AT
        )
        await bus.publish(calendar.broker, subjects.CALENDAR_REMOTE_CHANGED, remote, msg_id="rc-1")

        # the app API: an on-demand sync is a durable publish the worker receives
        resp = await gateway.client.post(
            "/api/v1/users/u-api/sync",
            json={"mode": "manual", "provider": "strava"},
            headers=gateway.auth("u-api"),
        )
        assert resp.status < 300, await resp.text()
        await rec.wait_for("sync-worker-requests-users", "u-api")

        # KV: each writer its bucket, the gateway reads what it verifies webhooks with
        budgets = await worker.jetstream().key_value("rate_budgets")
        await budgets.put("strava.15m", b"1")
        assert (await budgets.get("strava.15m")).value == b"1"
        channels = await calendar.jetstream().key_value("gcal_channels")
        await channels.put("chan-1", b"token-1")
        gw_js = gateway.runtime.jetstream()
        assert (await (await gw_js.key_value("gcal_channels")).get("chan-1")).value == b"token-1"
        # the Strava subscription id the admin route records
        await (await gw_js.key_value("webhook_config")).put("strava.subscription_id", b"777")
        assert (
            await (await gw_js.key_value("webhook_config")).get("strava.subscription_id")
        ).value == b"777"

        # dead letters: the middleware's, and an exhausted message read back and removed
        await rec.wait_for("sync-worker-webhooks", "wh-poison")
        stuck = SyncRequested(
            request_id="stuck", user_id="u", provider="strava", kind="webhook", requested_at=AT
        )
        await bus.publish(gw, stuck.subject, stuck, msg_id="stuck")
        await rec.wait_for("sync-worker-requests", "stuck")
        letters = await _wait_letters(gw_js, 1)
        async with client(secured, deploy_gen.PROVISIONER) as (admin, _):
            info = await admin.jetstream().stream_info(subjects.SYNC.name)
        advisory = {
            "stream": subjects.SYNC.name,
            "stream_seq": info.state.last_seq,
            "consumer": "sync-worker-requests",
            "deliveries": 5,
        }
        assert await dlq.dead_letter_exhausted(worker.jetstream(), advisory)
        letters = await _wait_letters(gw_js, 2)
        assert {letter.original_subject for letter in letters} == {
            "webhook.received.strava.activity",
            "sync.requested.strava",
        }

        # the console, through its routes: overview, dead letters, replay
        resp = await gateway.client.get("/api/v1/admin/overview", headers=console)
        assert resp.status == 200, await resp.text()
        overview = await resp.json()
        assert overview["dead_letters"] == 2
        assert all(c.get("status") != "missing" for c in overview["consumers"])
        resp = await gateway.client.get("/api/v1/admin/dead-letters", headers=console)
        assert resp.status == 200, await resp.text()
        assert len((await resp.json())["dead_letters"]) == 2
        poison = next(x for x in letters if x.original_subject.startswith("webhook."))
        resp = await gateway.client.post(
            "/api/v1/admin/dead-letters/replay",
            json={"sequences": [poison.sequence]},
            headers=console,
        )
        assert resp.status == 200, await resp.text()
        await _until(lambda: rec.seen["sync-worker-webhooks"].count("wh-poison") == 2)

        # SSE: an ordered consumer on EVENTS with the progress hub's filter
        sse = await gw_js.subscribe(
            _api_events.FILTER, stream=subjects.EVENTS.name, ordered_consumer=True
        )
        msg = await sse.next_msg(timeout=5)
        assert msg.subject.startswith("sync.")
        await sse.unsubscribe()
    assert secured.violations() == [], "a service lacked a grant it needs"


async def _wait_letters(js: JetStreamContext, count: int) -> list[dlq.DeadLetter]:
    async with asyncio.timeout(10):
        while len(letters := await dlq.list_dead_letters(js)) < count:
            await asyncio.sleep(0.05)
    return letters


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


# -- what each user must not be able to do -------------------------------------------------


@contextlib.asynccontextmanager
async def client(secured: SecuredNats, user: str) -> AsyncIterator[tuple[NatsClient, list[str]]]:
    errors: list[str] = []

    async def on_error(err: Exception) -> None:
        errors.append(str(err))

    # Each user may read replies under its own inbox prefix only, as the runtime connects.
    prefix = subjects.inbox_prefix(user) if user != deploy_gen.PROVISIONER else "_INBOX"
    nc = await nats.connect(
        secured.url(user), error_cb=on_error, max_reconnect_attempts=0, inbox_prefix=prefix
    )
    try:
        yield nc, errors
    finally:
        await nc.close()


async def _violation(secured: SecuredNats, user: str, kind: str, subject: str) -> None:
    await _until(lambda: (user, kind, subject) in secured.violations(), timeout=5)


async def test_gateway_cannot_ask_for_tokens(provisioned: SecuredNats) -> None:
    rec = Recorder()
    token = _token_service(provisioned, rec)
    gateway = runtime_for(provisioned, "webhook-gateway")
    async with running([token, gateway]):
        with pytest.raises(RetryableError):
            await rpc.request(
                gateway.broker,
                subjects.TOKEN_GET,
                TokenGet(user_id="x", provider="strava"),
                TokenGetReply,
                wait=1.0,
            )
        await _violation(provisioned, "webhook-gateway", "Publish", subjects.TOKEN_GET)
    assert "token.get" not in rec.seen  # the request never reached token-service


async def test_sync_worker_cannot_fake_webhooks(provisioned: SecuredNats) -> None:
    worker = runtime_for(provisioned, "sync-worker")
    async with running([worker]), client(provisioned, deploy_gen.PROVISIONER) as (admin, _):
        js = admin.jetstream()
        before = (await js.stream_info(subjects.WEBHOOKS.name)).state.messages
        forged = _webhook("strava", "activity", "forged")
        with pytest.raises(Exception, match=r"[Tt]imeout"):
            await bus.publish(
                worker.broker, forged.subject, forged, msg_id=forged.event_id, ack_timeout=1.0
            )
        await _violation(provisioned, "sync-worker", "Publish", "webhook.received.strava.activity")
        assert (await js.stream_info(subjects.WEBHOOKS.name)).state.messages == before


async def test_only_token_service_may_serve_token_get(provisioned: SecuredNats) -> None:
    rec = Recorder()
    token = _token_service(provisioned, rec)
    intercepted: list[bytes] = []
    async with running([token]):
        eavesdroppers = [u for u in deploy_gen.nats_users() if u != "token-service"]
        clients = [client(provisioned, user) for user in eavesdroppers]
        async with contextlib.AsyncExitStack() as stack:
            for user, ctx in zip(eavesdroppers, clients, strict=True):
                nc, _ = await stack.enter_async_context(ctx)

                async def steal(msg: Msg) -> None:
                    intercepted.append(msg.data)

                await nc.subscribe(subjects.TOKEN_GET, cb=steal)
                await nc.subscribe(subjects.TOKEN_GET, queue="token-service", cb=steal)
                await nc.flush()
                await _violation(provisioned, user, "Subscription", subjects.TOKEN_GET)
            async with client(provisioned, "sync-worker") as (nc, _):
                for i in range(5):
                    await nc.request(
                        subjects.TOKEN_GET,
                        TokenGet(user_id=f"u{i}", provider="strava").to_bytes(),
                        timeout=5,
                    )
    assert intercepted == []
    assert len(rec.seen["token.get"]) == 5


@pytest.mark.parametrize(
    "user", ["webhook-gateway", "token-service", "sync-worker", "calendar-sync"]
)
async def test_services_cannot_administer_jetstream(provisioned: SecuredNats, user: str) -> None:
    """Only the provisioner creates streams and consumers: services bind to them."""
    async with client(provisioned, user) as (nc, _):
        js = nc.jetstream(timeout=0.3)
        with pytest.raises(nats.errors.TimeoutError):
            await js.add_stream(name="ROGUE", subjects=["rogue.>"])
        with pytest.raises(nats.errors.TimeoutError):
            await js.delete_stream(subjects.WEBHOOKS.name)
    await _violation(provisioned, user, "Publish", "$JS.API.STREAM.CREATE.ROGUE")
    await _violation(provisioned, user, "Publish", "$JS.API.STREAM.DELETE.WEBHOOKS")


async def test_a_service_cannot_take_another_services_work(provisioned: SecuredNats) -> None:
    async with client(provisioned, "calendar-sync") as (nc, _):
        js = nc.jetstream(timeout=1.0)
        with pytest.raises(Exception, match=r"[Tt]imeout"):
            await js.pull_subscribe(
                "sync.requested.>", durable="sync-worker-requests", stream="SYNC"
            )
    await _violation(
        provisioned, "calendar-sync", "Publish", "$JS.API.CONSUMER.INFO.SYNC.sync-worker-requests"
    )


async def test_wrong_password_is_refused(provisioned: SecuredNats) -> None:
    url = provisioned.url("sync-worker").replace(provisioned.passwords["sync-worker"], "wrong")
    with pytest.raises(Exception, match="Authorization Violation"):
        await nats.connect(url, max_reconnect_attempts=0, allow_reconnect=False, connect_timeout=2)


async def test_no_service_can_read_another_services_replies(provisioned: SecuredNats) -> None:
    """``token.get`` replies carry access tokens: they land under the asker's own inbox
    prefix, which no other service user may subscribe to."""
    async with client(provisioned, "webhook-gateway") as (nc, _):
        stolen = f"{subjects.inbox_prefix('sync-worker')}.>"
        await nc.subscribe(stolen)
        await nc.flush()
        await _violation(provisioned, "webhook-gateway", "Subscription", stolen)
