"""Dead letters: the ``dlq.<subject>`` message format, and replay.

A dead letter keeps the original body byte for byte and the original headers, so a
replay is the same message again; what went wrong travels in ``Syncplane-*`` headers.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from syncplane_common import subjects

log = logging.getLogger(__name__)

MSG_ID = "Nats-Msg-Id"
H_ERROR_TYPE = "Syncplane-Error-Type"
H_ERROR_CODE = "Syncplane-Error-Code"
H_ERROR_MESSAGE = "Syncplane-Error-Message"
H_DELIVERIES = "Syncplane-Deliveries"
H_ORIGINAL_SUBJECT = "Syncplane-Original-Subject"
H_ORIGINAL_STREAM = "Syncplane-Original-Stream"
H_ORIGINAL_SEQ = "Syncplane-Original-Seq"
H_ORIGINAL_MSG_ID = "Syncplane-Original-Msg-Id"
H_CONSUMER = "Syncplane-Consumer"
H_FAILED_AT = "Syncplane-Failed-At"
H_REPLAYED_FROM = "Syncplane-Replayed-From"

_ERROR_HEADER_LIMIT = 1000
_OURS = frozenset(
    {
        H_ERROR_TYPE,
        H_ERROR_CODE,
        H_ERROR_MESSAGE,
        H_DELIVERIES,
        H_ORIGINAL_SUBJECT,
        H_ORIGINAL_STREAM,
        H_ORIGINAL_SEQ,
        H_ORIGINAL_MSG_ID,
        H_CONSUMER,
        H_FAILED_AT,
    }
)


def _replayable(headers: Mapping[str, str]) -> dict[str, str]:
    # Nats-Expected-* were preconditions of the original publish (e.g. the stream it
    # targeted); carried along they would make the dead-letter or replay publish fail.
    return {
        k: v
        for k, v in headers.items()
        if k != MSG_ID and not k.startswith("Nats-Expected-") and k not in _OURS
    }


def _one_line(text: str) -> str:
    # Header values cannot carry CR/LF; long errors are cut rather than dropped.
    return " ".join(text.split())[:_ERROR_HEADER_LIMIT]


def dead_letter_headers(
    msg: Msg,
    *,
    error_type: str,
    error_code: str,
    error_message: str,
    now: datetime,
) -> dict[str, str]:
    meta = msg.metadata
    headers = _replayable(msg.headers or {})
    if msg.headers and MSG_ID in msg.headers:
        headers[H_ORIGINAL_MSG_ID] = msg.headers[MSG_ID]
    headers.update(
        {
            # One dead letter per stream sequence, however often the DLQ publish retries.
            MSG_ID: f"dlq:{meta.stream}:{meta.sequence.stream}",
            H_ERROR_TYPE: error_type,
            H_ERROR_CODE: error_code,
            H_ERROR_MESSAGE: _one_line(error_message) or error_type,
            H_DELIVERIES: str(meta.num_delivered),
            H_ORIGINAL_SUBJECT: msg.subject,
            H_ORIGINAL_STREAM: meta.stream,
            H_ORIGINAL_SEQ: str(meta.sequence.stream),
            H_CONSUMER: meta.consumer,
            H_FAILED_AT: now.isoformat(),
        }
    )
    return headers


@dataclass(frozen=True)
class DeadLetter:
    sequence: int
    subject: str
    original_subject: str
    headers: Mapping[str, str]
    data: bytes

    @property
    def error(self) -> dict[str, str]:
        return {
            "type": self.headers.get(H_ERROR_TYPE, ""),
            "code": self.headers.get(H_ERROR_CODE, ""),
            "message": self.headers.get(H_ERROR_MESSAGE, ""),
            "deliveries": self.headers.get(H_DELIVERIES, ""),
        }


async def list_dead_letters(
    js: JetStreamContext, filter_subject: str = "dlq.>", limit: int = 100
) -> list[DeadLetter]:
    """Read without consuming: an ephemeral ordered look at the DLQ stream."""
    sub = await js.pull_subscribe(
        filter_subject,
        stream=subjects.DLQ.name,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30.0,
        ),
    )
    out: list[DeadLetter] = []
    try:
        while len(out) < limit:
            try:
                batch = await sub.fetch(min(100, limit - len(out)), timeout=0.5)
            except TimeoutError:
                break
            out.extend(_as_dead_letter(m) for m in batch)
    finally:
        await sub.unsubscribe()
    return out


def _as_dead_letter(msg: Msg) -> DeadLetter:
    headers = dict(msg.headers or {})
    return DeadLetter(
        sequence=msg.metadata.sequence.stream,
        subject=msg.subject,
        original_subject=headers.get(H_ORIGINAL_SUBJECT)
        or subjects.original_of_dead_letter(msg.subject),
        headers=headers,
        data=msg.data,
    )


async def replay(js: JetStreamContext, letter: DeadLetter, *, now: datetime | None = None) -> int:
    """Publish the original message again, then remove the dead letter.

    The original Nats-Msg-Id is inside the dedupe window more often than not, so the
    replay gets its own id (derived from the DLQ sequence: replaying twice is harmless).
    """
    headers = _replayable(letter.headers)
    headers[MSG_ID] = f"replay:{letter.sequence}"
    headers[H_REPLAYED_FROM] = (
        f"{letter.subject}#{letter.sequence}@{(now or _utcnow()).isoformat()}"
    )
    ack = await js.publish(letter.original_subject, letter.data, headers=headers)
    await js.delete_msg(subjects.DLQ.name, letter.sequence)
    return ack.seq


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- messages whose last delivery never settled ----------------------------------------------

MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}"
EXHAUSTED = "MaxDeliveriesExceeded"


async def dead_letter_exhausted(
    js: JetStreamContext, advisory: Mapping[str, Any], *, now: datetime | None = None
) -> bool:
    """Dead-letter a message the server gave up on without our middleware settling it.

    That happens when the process died (or hung past ack_wait) on the final delivery:
    the server emits a MAX_DELIVERIES advisory and stops redelivering, and without this
    the message would sit in its stream unseen. Returns False when it is already gone.
    """
    stream, seq = str(advisory["stream"]), int(advisory["stream_seq"])
    try:
        raw = await js.get_msg(stream, seq)
    except NotFoundError:
        return False
    subject = raw.subject or ""
    original = dict(raw.headers or {})
    headers = _replayable(original)
    if MSG_ID in original:
        headers[H_ORIGINAL_MSG_ID] = original[MSG_ID]
    headers.update(
        {
            MSG_ID: f"dlq:{stream}:{seq}",  # the same id the middleware would have used
            H_ERROR_TYPE: EXHAUSTED,
            H_ERROR_CODE: "max_deliveries",
            H_ERROR_MESSAGE: "delivery never settled: handler crashed or exceeded ack_wait",
            H_DELIVERIES: str(advisory.get("deliveries", "")),
            H_ORIGINAL_SUBJECT: subject,
            H_ORIGINAL_STREAM: stream,
            H_ORIGINAL_SEQ: str(seq),
            H_CONSUMER: str(advisory.get("consumer", "")),
            H_FAILED_AT: (now or _utcnow()).isoformat(),
        }
    )
    await js.publish(
        subjects.dead_letter(subject), raw.data or b"", headers=headers, stream=subjects.DLQ.name
    )
    if stream in _WORK_QUEUES:
        # A work-queue message nobody will ack again would block nothing but linger forever.
        with contextlib.suppress(NotFoundError):
            await js.delete_msg(stream, seq)
    return True


_WORK_QUEUES = frozenset(s.name for s in subjects.STREAMS if s.retention == "workqueue")


async def watch_exhausted(
    nc: NatsClient, js: JetStreamContext, durables: Sequence[str], queue: str
) -> list[Subscription]:
    """Subscribe (as one queue group per service) to the advisories of our consumers."""
    subs = []
    for durable in durables:
        item = subjects.consumer(durable)
        subject = MAX_DELIVERIES_ADVISORY.format(stream=item.stream, consumer=item.durable)

        async def handle(msg: Msg) -> None:
            try:
                await dead_letter_exhausted(js, json.loads(msg.data))
            except Exception:
                log.exception("could not dead-letter an exhausted message")

        subs.append(await nc.subscribe(subject, queue=queue, cb=handle))
    return subs
