"""Provisioning is idempotent and repairs drift; durable publishes dedupe by msg id."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from faststream.nats import NatsBroker
from nats.js import JetStreamContext
from syncplane_common import bus, subjects
from syncplane_common.contracts import SyncRequested
from syncplane_common.provision import consumer_config, provision, provision_js
from syncplane_devstack.embedded import EmbeddedNats

pytestmark = pytest.mark.integration


async def test_provision_creates_everything_then_is_a_no_op(
    js: JetStreamContext, nats_server: EmbeddedNats
) -> None:
    first = await provision(nats_server.url)
    expected = len(subjects.STREAMS) + len(subjects.CONSUMERS) + len(subjects.BUCKETS)
    assert len(first.created) == expected
    names = {info.config.name for info in await js.streams_info()}
    assert {s.name for s in subjects.STREAMS} <= names
    for item in subjects.CONSUMERS:
        info = await js.consumer_info(item.stream, item.durable)
        assert info.config.max_deliver == item.max_deliver
    for bucket in subjects.BUCKETS:
        await js.key_value(bucket.name)
    second = await provision_js(js)
    assert second.created == []
    assert second.updated == []
    assert len(second.unchanged) == expected


async def test_provision_repairs_a_drifted_consumer(js: JetStreamContext) -> None:
    await provision_js(js)
    item = subjects.consumer("sync-worker-requests")
    drifted = consumer_config(item)
    drifted.max_deliver = 99
    await js.add_consumer(item.stream, drifted)
    report = await provision_js(js)
    assert report.updated == [f"consumer {item.stream}/{item.durable}"]
    info = await js.consumer_info(item.stream, item.durable)
    assert info.config.max_deliver == item.max_deliver


async def test_durable_publish_lands_once_per_msg_id(
    js: JetStreamContext, nats_server: EmbeddedNats
) -> None:
    await provision_js(js)
    broker = NatsBroker(nats_server.url)
    await broker.start()
    try:
        command = SyncRequested(
            request_id="r-1",
            user_id="u-1",
            provider="strava",
            kind="on_demand",
            requested_at=datetime(2026, 11, 1, tzinfo=UTC),
        )
        for _ in range(3):  # a provider-style retry of the same work
            await bus.publish(broker, command.subject, command, msg_id=command.request_id)
        info = await js.stream_info(subjects.SYNC.name)
        assert info.state.messages == 1
        stored = await js.get_msg(subjects.SYNC.name, info.state.last_seq)
        assert SyncRequested.model_validate_json(stored.data or b"") == command
        with pytest.raises(ValueError, match="Nats-Msg-Id"):
            await bus.publish(broker, command.subject, command, msg_id="")
    finally:
        await broker.stop()
