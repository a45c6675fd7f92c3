"""The error tree decides acks, over a real nats-server with a durable pull consumer."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, StreamConfig
from pydantic import BaseModel
from syncplane_common import dlq
from syncplane_common.acks import ErrorPolicy
from syncplane_common.errors import PermanentError, ReauthRequiredError, RetryableError
from syncplane_common.provision import stream_config
from syncplane_common.subjects import DLQ
from syncplane_devstack.embedded import EmbeddedNats

pytestmark = pytest.mark.integration

STREAM = "ACKTEST"
DURABLE = "acktest"
MAX_DELIVER = 3


class Job(BaseModel):
    kind: str
    n: int = 0


@dataclass
class Seen:
    times: dict[str, list[float]] = field(default_factory=dict)
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, key: str) -> int:
        self.times.setdefault(key, []).append(time.monotonic())
        self.event.set()
        return len(self.times[key])


async def _setup_streams(js: JetStreamContext) -> None:
    await js.add_stream(StreamConfig(name=STREAM, subjects=["acktest.>"], duplicate_window=60))
    await js.add_stream(stream_config(DLQ))
    await js.add_consumer(
        STREAM,
        ConsumerConfig(durable_name=DURABLE, name=DURABLE, ack_wait=2.0, max_deliver=MAX_DELIVER),
    )


@pytest.fixture
async def harness(
    js: JetStreamContext, nats_server: EmbeddedNats
) -> AsyncIterator[tuple[NatsBroker, Seen]]:
    await _setup_streams(js)
    seen = Seen()
    broker = NatsBroker(nats_server.url, max_reconnect_attempts=-1)
    policy = ErrorPolicy(
        lambda: broker.connection.jetstream(),
        max_deliver={DURABLE: MAX_DELIVER},
        backoff_base=0.2,
        backoff_max=2.0,
    )
    broker.add_middleware(policy)

    @broker.subscriber(
        "acktest.>",
        stream=JStream(STREAM, declare=False),
        durable=DURABLE,
        pull_sub=PullSub(batch_size=5, timeout=0.2),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def handle(job: Job) -> None:
        attempt = seen.record(job.kind)
        if job.kind == "retry":
            raise RetryableError("provider 503", retry_after=0.5)
        if job.kind == "flaky" and attempt < 2:
            raise ConnectionError("reset by peer")
        if job.kind == "permanent":
            raise PermanentError("activity has no start date")
        if job.kind == "reauth":
            raise ReauthRequiredError("refresh token revoked")

    await broker.start()
    yield broker, seen
    await broker.stop()


async def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def _dead_letters(js: JetStreamContext) -> list[dlq.DeadLetter]:
    return await dlq.list_dead_letters(js)


async def _await_letters(
    js: JetStreamContext,
    count: int = 1,
    *,
    unlike: dlq.DeadLetter | None = None,
) -> list[dlq.DeadLetter]:
    """Poll the DLQ until ``count`` letters are there (none of them ``unlike``)."""
    deadline = time.monotonic() + 5
    while True:
        letters = await _dead_letters(js)
        fresh = [x for x in letters if unlike is None or x.sequence != unlike.sequence]
        if len(fresh) >= count:
            return letters
        assert time.monotonic() < deadline, f"expected {count} dead letters, saw {letters}"
        await asyncio.sleep(0.05)


async def _publish(js: JetStreamContext, subject: str, body: bytes, msg_id: str) -> None:
    await js.publish(subject, body, headers={"Nats-Msg-Id": msg_id, "X-Trace": "t-1"})


async def test_success_is_acked_once(
    harness: tuple[NatsBroker, Seen], js: JetStreamContext
) -> None:
    _, seen = harness
    await _publish(js, "acktest.ok", b'{"kind": "ok"}', "m-ok")
    await _wait_for(lambda: len(seen.times.get("ok", [])) == 1)
    await asyncio.sleep(2.5)  # past ack_wait: an unacked message would be redelivered
    assert len(seen.times["ok"]) == 1
    info = await js.consumer_info(STREAM, DURABLE)
    assert info.num_ack_pending == 0
    assert info.num_redelivered == 0
    assert await _dead_letters(js) == []


async def test_retryable_is_redelivered_after_backoff_then_dead_lettered(
    harness: tuple[NatsBroker, Seen], js: JetStreamContext
) -> None:
    _, seen = harness
    await _publish(js, "acktest.retry", b'{"kind": "retry"}', "m-retry")
    await _wait_for(lambda: len(seen.times.get("retry", [])) == MAX_DELIVER)
    times = seen.times["retry"]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.45 for gap in gaps), gaps  # retry_after=0.5 honoured, not at once
    [letter] = await _await_letters(js)
    assert letter.subject == "dlq.acktest.retry"
    assert letter.original_subject == "acktest.retry"
    assert letter.data == b'{"kind": "retry"}'
    assert letter.error["type"] == "RetryableError"
    assert letter.error["message"] == "provider 503"
    assert letter.error["deliveries"] == str(MAX_DELIVER)
    assert letter.headers["X-Trace"] == "t-1"
    assert letter.headers[dlq.H_ORIGINAL_MSG_ID] == "m-retry"
    await asyncio.sleep(1.0)
    assert len(seen.times["retry"]) == MAX_DELIVER  # no delivery past max_deliver


async def test_unknown_exception_is_retried_not_dropped(
    harness: tuple[NatsBroker, Seen], js: JetStreamContext
) -> None:
    _, seen = harness
    await _publish(js, "acktest.flaky", b'{"kind": "flaky"}', "m-flaky")
    await _wait_for(lambda: len(seen.times.get("flaky", [])) == 2)
    await asyncio.sleep(0.5)
    assert await _dead_letters(js) == []
    info = await js.consumer_info(STREAM, DURABLE)
    assert info.num_ack_pending == 0


async def test_permanent_error_goes_to_dlq_at_once(
    harness: tuple[NatsBroker, Seen], js: JetStreamContext
) -> None:
    _, seen = harness
    await _publish(js, "acktest.permanent", b'{"kind": "permanent"}', "m-perm")
    await _wait_for(lambda: len(seen.times.get("permanent", [])) == 1)
    letters = await _await_letters(js)
    assert letters[0].error["type"] == "PermanentError"
    assert letters[0].error["deliveries"] == "1"
    await asyncio.sleep(1.0)
    assert len(seen.times["permanent"]) == 1


async def test_unparseable_message_is_dead_lettered_and_consumer_survives(
    harness: tuple[NatsBroker, Seen], js: JetStreamContext
) -> None:
    _, seen = harness
    await _publish(js, "acktest.garbage", b"not json at all {", "m-garbage")
    await _publish(js, "acktest.wrong", b'{"unexpected": true}', "m-wrong")
    await _publish(js, "acktest.ok", b'{"kind": "ok"}', "m-after")
    await _wait_for(lambda: len(seen.times.get("ok", [])) == 1)
    letters = await _await_letters(js, 2)
    assert {letter.original_subject for letter in letters} == {"acktest.garbage", "acktest.wrong"}
    assert all(letter.error["code"] == "parse_error" for letter in letters)
    assert all(letter.error["deliveries"] == "1" for letter in letters)


async def test_reauth_required_is_acked(
    harness: tuple[NatsBroker, Seen], js: JetStreamContext
) -> None:
    _, seen = harness
    await _publish(js, "acktest.reauth", b'{"kind": "reauth"}', "m-reauth")
    await _wait_for(lambda: len(seen.times.get("reauth", [])) == 1)
    await asyncio.sleep(2.5)
    assert len(seen.times["reauth"]) == 1
    assert await _dead_letters(js) == []


async def test_replay_puts_the_original_message_back(
    harness: tuple[NatsBroker, Seen], js: JetStreamContext
) -> None:
    _, seen = harness
    await _publish(js, "acktest.permanent", b'{"kind": "permanent", "n": 1}', "m-replay")
    letters = await _await_letters(js)
    await dlq.replay(js, letters[0])
    await _wait_for(lambda: len(seen.times.get("permanent", [])) == 2)
    # The replayed message failed again and was dead-lettered again, as a new letter.
    again = await _await_letters(js, unlike=letters[0])
    assert len(again) == 1
    assert again[0].headers.get(dlq.H_REPLAYED_FROM, "").startswith("dlq.acktest.permanent#")


async def test_a_final_delivery_that_never_settles_is_dead_lettered(
    js: JetStreamContext, nc: NatsClient
) -> None:
    """The worker died holding the last delivery: the server's MAX_DELIVERIES advisory is
    turned into a dead letter, so the message is not left unseen in its stream."""
    await js.add_stream(StreamConfig(name="CRASHTEST", subjects=["crash.>"]))
    await js.add_stream(stream_config(DLQ))
    await js.add_consumer(
        "CRASHTEST",
        ConsumerConfig(durable_name="crashy", name="crashy", ack_wait=0.5, max_deliver=2),
    )
    advisories: asyncio.Queue[bytes] = asyncio.Queue()

    async def forward(msg: Msg) -> None:
        await advisories.put(msg.data)

    await nc.subscribe(
        dlq.MAX_DELIVERIES_ADVISORY.format(stream="CRASHTEST", consumer="crashy"), cb=forward
    )
    await js.publish("crash.job", b'{"kind": "heavy"}', headers={"Nats-Msg-Id": "c-1"})
    sub = await js.pull_subscribe_bind("crashy", "CRASHTEST")
    for _ in range(2):  # take the message and "crash": never ack, nak or term
        [msg] = await sub.fetch(1, timeout=5)
        assert msg.data == b'{"kind": "heavy"}'
    # The server notices the exhaustion when it would redeliver, i.e. while a pull is
    # waiting, as a live service's pull loop always is.
    with contextlib.suppress(TimeoutError):
        await sub.fetch(1, timeout=2)
    advisory = json.loads(await asyncio.wait_for(advisories.get(), 10))
    await sub.unsubscribe()
    assert await dlq.dead_letter_exhausted(js, advisory)
    [letter] = await dlq.list_dead_letters(js)
    assert letter.original_subject == "crash.job"
    assert letter.data == b'{"kind": "heavy"}'
    assert letter.error["type"] == dlq.EXHAUSTED
    assert letter.error["deliveries"] == "2"
    assert letter.headers[dlq.H_ORIGINAL_MSG_ID] == "c-1"
    # Handling the same advisory twice (two replicas) leaves one dead letter.
    assert await dlq.dead_letter_exhausted(js, advisory)
    assert len(await dlq.list_dead_letters(js)) == 1
