"""Publishing and subscribing on JetStream the one way syncplane does it.

Every JetStream publish names its stream and awaits the PubAck (never a fire-and-forget
core publish) and carries a ``Nats-Msg-Id`` (so retries dedupe).
Subscribers bind to the provisioned durable consumers with ``declare=False`` and an
explicit ack policy; the :class:`~syncplane_common.acks.ErrorPolicy` middleware decides
what a failure does.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from opentelemetry import propagate
from opentelemetry.trace import SpanKind
from pydantic import BaseModel

from syncplane_common import subjects
from syncplane_common.dlq import MSG_ID
from syncplane_common.telemetry import nats_hop


async def publish(
    broker: NatsBroker,
    subject: str,
    message: BaseModel,
    *,
    msg_id: str,
    headers: Mapping[str, str] | None = None,
    ack_timeout: float = 5.0,
) -> bool:
    """Durable publish: returns only after JetStream stored the message, with True when it
    already held ``msg_id`` (a retry inside the dedupe window: stored either way).

    It goes straight through nats-py's JetStream client on the broker's connection:
    FastStream's publish pipeline cost about four times the publish itself. The message is
    what a FastStream subscriber expects: JSON with its content type, and the W3C trace
    context its telemetry middleware continues.
    """
    if not msg_id:
        raise ValueError("a JetStream publish needs a Nats-Msg-Id")
    sent = {**(headers or {}), MSG_ID: msg_id, "content-type": "application/json"}
    with nats_hop(f"{subject} publish", SpanKind.PRODUCER, subject):
        propagate.inject(sent)
        ack = await _jetstream(broker.connection).publish(
            subject,
            message.model_dump_json().encode(),
            timeout=ack_timeout,
            stream=subjects.stream_for(subject).name,
            headers=sent,
        )
    return bool(ack.duplicate)


_CONTEXTS: weakref.WeakKeyDictionary[NatsClient, JetStreamContext] = weakref.WeakKeyDictionary()


def _jetstream(connection: NatsClient) -> JetStreamContext:
    context = _CONTEXTS.get(connection)
    if context is None:
        context = _CONTEXTS[connection] = connection.jetstream()
    return context


def durable_subscriber(
    broker: NatsBroker,
    durable: str,
    *,
    batch_size: int = 10,
    max_workers: int = 1,
) -> Any:
    """A pull subscriber bound to a provisioned durable consumer of ``subjects.CONSUMERS``."""
    item = subjects.consumer(durable)
    subject = item.filter_subjects[0] if len(item.filter_subjects) == 1 else ">"
    return broker.subscriber(
        subject,
        stream=JStream(item.stream, declare=False),
        durable=item.durable,
        pull_sub=PullSub(batch_size=batch_size, timeout=5.0),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_workers=max_workers,
        # FastStream passes nats-py's default inbox to pull subscriptions explicitly; the
        # owning service's own prefix keeps deliveries inside its NATS permissions.
        inbox_prefix=f"{subjects.inbox_prefix(item.service)}.".encode(),
        description=item.description,
    )
