"""Errors decide acks here and nowhere else (ADR 0002).

A FastStream middleware for JetStream subscribers that maps the error tree of
:mod:`syncplane_common.errors` to what happens to the message:

    success                              -> ack (FastStream's own ack middleware)
    RetryableError / unknown exception   -> nak(delay = retry_after or backoff)
      ... on the consumer's last delivery -> dead-letter + term
    PermanentError / parse error         -> dead-letter + term, at once
    ReauthRequiredError                  -> ack: the connection's work stops, the handler
                                            has emitted the event; retrying cannot help

Dead-lettering publishes to ``dlq.<subject>`` and waits for the PubAck before the term;
if that publish fails the message is nak'ed instead, so nothing is ever dropped.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from faststream import BaseMiddleware
from faststream.exceptions import HandlerException
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter
from pydantic import ValidationError

from syncplane_common import subjects
from syncplane_common.dlq import dead_letter_headers
from syncplane_common.errors import (
    MessageParseError,
    PermanentError,
    ReauthRequiredError,
    RetryableError,
    SyncplaneError,
)
from syncplane_common.http import backoff_delay

log = logging.getLogger(__name__)

MESSAGES = Counter(
    "syncplane_messages_total",
    "JetStream messages handled, by consumer and outcome "
    "(acked, retried, dead_lettered, reauth_acked).",
    ["consumer", "outcome"],
)

_PARSE_ERRORS = (ValidationError, json.JSONDecodeError, UnicodeDecodeError)


class ErrorPolicy:
    """Configuration + factory: pass an instance in the broker's ``middlewares=``."""

    def __init__(
        self,
        jetstream: Callable[[], JetStreamContext],
        *,
        default_max_deliver: int = 5,
        max_deliver: Mapping[str, int] | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 300.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.jetstream = jetstream
        self.default_max_deliver = default_max_deliver
        self.max_deliver = dict(max_deliver or {})
        for item in subjects.CONSUMERS:
            self.max_deliver.setdefault(item.durable, item.max_deliver)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.now = now
        self.jitter = jitter

    def __call__(self, msg: Any, /, *, context: Any) -> _ErrorPolicyMiddleware:
        return _ErrorPolicyMiddleware(msg, context=context, policy=self)

    def max_deliver_for(self, durable: str) -> int:
        return self.max_deliver.get(durable, self.default_max_deliver)

    def delay_for(self, err: BaseException, deliveries: int) -> float:
        if isinstance(err, RetryableError) and err.retry_after is not None:
            return min(err.retry_after, self.backoff_max)
        # Up to +20%, drawn per message, so messages that failed together spread out.
        return backoff_delay(
            deliveries, self.backoff_base, self.backoff_max, jitter=0.2 * self.jitter()
        )


def _is_jetstream(msg: Any) -> bool:
    return isinstance(msg, Msg) and bool(msg.reply) and msg.reply.startswith("$JS.ACK.")


def _describe(err: BaseException) -> tuple[str, str, str]:
    if isinstance(err, _PARSE_ERRORS):
        return (MessageParseError.__name__, MessageParseError.code, str(err))
    if isinstance(err, SyncplaneError):
        return (type(err).__name__, err.code, err.message)
    return (type(err).__name__, "unexpected", str(err) or repr(err))


class _ErrorPolicyMiddleware(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: Any, policy: ErrorPolicy) -> None:
        super().__init__(msg, context=context)
        self.policy = policy

    async def after_processed(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> bool | None:
        raw = self.msg
        if not _is_jetstream(raw):
            return False
        assert isinstance(raw, Msg)
        durable = raw.metadata.consumer
        if exc_val is None:
            MESSAGES.labels(durable, "acked").inc()
            return False
        if isinstance(exc_val, HandlerException) or not isinstance(exc_val, Exception):
            return False  # explicit Ack/Nack/Reject from a handler, or cancellation
        await self._settle(raw, durable, exc_val)
        return True  # handled: FastStream's ack middleware finds the message settled

    async def _settle(self, raw: Msg, durable: str, err: Exception) -> None:
        deliveries = raw.metadata.num_delivered
        if isinstance(err, ReauthRequiredError):
            log.warning("reauth required, message acknowledged", extra={"subject": raw.subject})
            MESSAGES.labels(durable, "reauth_acked").inc()
            await raw.ack()
            return
        permanent = isinstance(err, (PermanentError, *_PARSE_ERRORS))
        if not permanent and deliveries < self.policy.max_deliver_for(durable):
            delay = self.policy.delay_for(err, deliveries)
            log.info(
                "retrying message",
                extra={"subject": raw.subject, "deliveries": deliveries, "delay": delay},
            )
            MESSAGES.labels(durable, "retried").inc()
            await raw.nak(delay=delay)
            return
        await self._dead_letter(raw, durable, err, deliveries)

    async def _dead_letter(self, raw: Msg, durable: str, err: Exception, deliveries: int) -> None:
        error_type, code, message = _describe(err)
        headers = dead_letter_headers(
            raw,
            error_type=error_type,
            error_code=code,
            error_message=message,
            now=self.policy.now(),
        )
        try:
            await self.policy.jetstream().publish(
                subjects.dead_letter(raw.subject),
                raw.data,
                headers=headers,
                stream=subjects.DLQ.name,
            )
        except Exception:
            # The bus refused the dead letter: keep the message rather than lose it.
            log.exception(
                "dead-letter publish failed; message kept", extra={"subject": raw.subject}
            )
            MESSAGES.labels(durable, "retried").inc()
            await raw.nak(delay=self.policy.delay_for(err, deliveries))
            return
        log.error(
            "message dead-lettered",
            extra={"subject": raw.subject, "deliveries": deliveries, "error": error_type},
        )
        MESSAGES.labels(durable, "dead_lettered").inc()
        await raw.term()
