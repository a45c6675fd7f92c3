"""Request/reply over core NATS the one way syncplane does it (ARCHITECTURE §3).

Callers use :func:`request`: a typed request, a typed reply, and the error tree on the
way back (an ``ErrorReply`` becomes the matching exception; no responder or a timeout
becomes ``RetryableError`` — the owner is not running or too slow, try later). Owners
use :func:`responder`: a queue group per service so replicas share requests, and every
failure answered as an ``ErrorReply`` instead of leaving the caller to time out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from syncplane_common.contracts import Contract, ErrorReply, Reply
from syncplane_common.errors import (
    NotConnectedError,
    NotFoundError,
    PermanentError,
    ProviderUnavailableError,
    ReauthRequiredError,
    RetryableError,
    RevokedError,
    SyncplaneError,
)
from syncplane_common.telemetry import exporting, inject, nats_hop

log = logging.getLogger(__name__)

Req = TypeVar("Req", bound=Contract)
Rep = TypeVar("Rep", bound=Reply)

DEFAULT_TIMEOUT = 5.0


def error_reply(err: BaseException) -> ErrorReply:
    """The wire form of an exception, by what the caller must do about it."""
    if isinstance(err, ValidationError):
        return ErrorReply(code="bad_request", message=describe_validation(err))
    if isinstance(err, ProviderUnavailableError):
        return ErrorReply(
            code="provider_unavailable", message=err.message, retry_after=err.retry_after
        )
    if isinstance(err, RetryableError):
        return ErrorReply(code="unavailable", message=err.message, retry_after=err.retry_after)
    if isinstance(err, ReauthRequiredError):
        return ErrorReply(code="reauth_required", message=err.message)
    if isinstance(err, (NotFoundError, NotConnectedError, RevokedError)):
        return ErrorReply(code=err.code, message=err.message)
    if isinstance(err, PermanentError):
        return ErrorReply(code="bad_request", message=err.message)
    return ErrorReply(code="internal", message="internal error")


def raise_error(error: ErrorReply) -> None:
    """The exception an ``ErrorReply`` stands for, raised on the caller's side."""
    match error.code:
        case "unavailable" | "internal":
            raise RetryableError(error.message, retry_after=error.retry_after)
        case "provider_unavailable":
            raise ProviderUnavailableError(error.message, retry_after=error.retry_after)
        case "reauth_required":
            raise ReauthRequiredError(error.message)
        case "not_connected":
            raise NotConnectedError(error.message)
        case "revoked":
            raise RevokedError(error.message)
        case "not_found":
            raise NotFoundError(error.message)
        case _:
            raise PermanentError(error.message, details={"code": error.code})


async def request(
    broker: NatsBroker,
    subject: str,
    message: Contract,
    reply_type: type[Rep],
    *,
    wait: float = DEFAULT_TIMEOUT,
) -> Rep:
    """Ask the owner of ``subject``; returns its reply or raises the error tree."""
    return _parse(subject, reply_type, await _ask(broker, subject, message, wait))


# How pydantic writes every successful reply: ``Contract.schema_version`` and then
# ``Reply.error`` are the first fields declared, so they open the JSON, in this order.
_SUCCESS_PREFIX = b'{"schema_version":1,"error":null'


async def request_json(
    broker: NatsBroker,
    subject: str,
    message: Contract,
    reply_type: type[Rep],
    *,
    wait: float = DEFAULT_TIMEOUT,
) -> bytes:
    """Ask like :func:`request`, for a caller that only forwards the answer: the reply's
    own fields (without ``schema_version`` and ``error``) as a JSON object, or the error
    tree. A success as pydantic wrote it is passed on without being parsed; anything
    else (an error, another writer's spelling) is read through ``reply_type`` as
    :func:`request` reads it."""
    data = await _ask(broker, subject, message, wait)
    if data.startswith(_SUCCESS_PREFIX):
        rest = data[len(_SUCCESS_PREFIX) :]
        if rest[:1] == b",":
            return b"{" + rest[1:]
        if rest == b"}":
            return b"{}"
    reply = _parse(subject, reply_type, data)
    return reply.model_dump_json(exclude={"error", "schema_version"}).encode()


async def _ask(broker: NatsBroker, subject: str, message: Contract, wait: float) -> bytes:
    headers: dict[str, str] = {}
    try:
        with nats_hop(f"{subject} request", SpanKind.CLIENT, subject):
            inject(headers)
            msg = await broker.connection.request(
                subject, message.to_bytes(), timeout=wait, headers=headers or None
            )
    except NoRespondersError as err:
        raise RetryableError(f"nobody serves {subject} right now", retry_after=1.0) from err
    except (NatsTimeoutError, TimeoutError) as err:
        raise RetryableError(f"{subject} did not answer within {wait}s", retry_after=1.0) from err
    data: bytes = msg.data
    return data


def _parse(subject: str, reply_type: type[Rep], data: bytes) -> Rep:
    try:
        reply = reply_type.model_validate_json(data)
    except ValidationError as err:
        raise RetryableError(f"unreadable reply on {subject}: {_first_line(str(err))}") from err
    if reply.error is not None:
        raise_error(reply.error)
    return reply


@dataclass(frozen=True, slots=True)
class Encoded:
    """A reply its handler wrote out itself, byte for byte what the reply contract's
    ``to_bytes`` would write (a hot path that keeps parts of its answers encoded)."""

    body: bytes

    def to_bytes(self) -> bytes:
        return self.body


@dataclass
class _Responder:
    subject: str
    queue: str
    max_workers: int
    serve: Callable[[bytes], Awaitable[bytes]]
    subscription: Subscription | None = None
    inflight: set[asyncio.Task[None]] = field(default_factory=set)


# Responders per broker, subscribed by start_responders once the broker is connected.
_RESPONDERS: weakref.WeakKeyDictionary[NatsBroker, list[_Responder]] = weakref.WeakKeyDictionary()


def responder(
    broker: NatsBroker,
    subject: str,
    request_type: type[Req],
    reply_type: type[Rep],
    *,
    queue: str,
    max_workers: int = 1,
) -> Callable[[Callable[[Req], Awaitable[Rep | Encoded]]], Any]:
    """Decorator: serve ``subject`` in queue group ``queue`` with a typed handler.

    Served on a plain nats-py subscription, not a FastStream subscriber: request/reply is
    the hottest path (``token.get`` for every provider call) and FastStream's per-message
    pipeline cost more than the handler. ``start_responders(broker)`` subscribes them
    (``ServiceRuntime`` does it after connecting). ``max_workers`` > 1 serves that many
    requests at once, so a slow one (a refresh waiting on a provider) does not hold up the
    fast ones behind it.
    """

    def register(
        handler: Callable[[Req], Awaitable[Rep | Encoded]],
    ) -> Callable[[Req], Awaitable[Rep | Encoded]]:
        async def serve(body: bytes) -> bytes:
            try:
                ask = request_type.model_validate_json(body)
                answer = await handler(ask)
            except (ValidationError, SyncplaneError) as err:
                answer = reply_type(error=error_reply(err))
            except Exception as err:
                log.exception("responder on %s failed", subject)
                answer = reply_type(error=error_reply(err))
            return answer.to_bytes()

        spec = _Responder(subject, queue, max_workers, serve)
        _RESPONDERS.setdefault(broker, []).append(spec)
        return handler

    return register


async def start_responders(broker: NatsBroker) -> None:
    """Subscribe every responder registered on ``broker`` (after ``broker.start()``)."""
    nc = broker.connection
    for spec in _RESPONDERS.get(broker, []):
        if spec.subscription is None:
            spec.subscription = await nc.subscribe(
                spec.subject, queue=spec.queue, cb=_dispatcher(spec)
            )


async def stop_responders(broker: NatsBroker, grace: float = 10.0) -> None:
    """Stop taking requests, then let the ones in flight answer (up to ``grace``)."""
    specs = _RESPONDERS.get(broker, [])
    for spec in specs:
        if spec.subscription is not None:
            with contextlib.suppress(Exception):
                await spec.subscription.unsubscribe()
            spec.subscription = None
    pending = [task for spec in specs for task in spec.inflight]
    if pending:
        await asyncio.wait(pending, timeout=grace)


def _dispatcher(spec: _Responder) -> Callable[[Msg], Awaitable[None]]:
    slots = asyncio.Semaphore(spec.max_workers)
    tracer = trace.get_tracer(__name__)

    async def answer(msg: Msg) -> None:
        try:
            if msg.headers is None and not exporting():
                # No trace to continue and none recorded here: the span would be dropped
                # and its context, unsampled, would make no one downstream record either.
                reply = await spec.serve(msg.data)
            else:
                context = propagate.extract(msg.headers or {})
                with tracer.start_as_current_span(
                    f"{spec.subject} process", context=context, kind=SpanKind.SERVER
                ):
                    reply = await spec.serve(msg.data)
            if msg.reply:
                await msg.respond(reply)
        except Exception:
            log.exception("could not answer on %s", spec.subject)
        finally:
            slots.release()

    async def dispatch(msg: Msg) -> None:
        # nats-py runs a subscription's callbacks one after another; taking a slot here
        # and answering in a task gives max_workers concurrency with backpressure.
        await slots.acquire()
        task = asyncio.create_task(answer(msg))
        spec.inflight.add(task)
        task.add_done_callback(spec.inflight.discard)

    return dispatch


def describe_validation(err: ValidationError) -> str:
    """``field: problem; ...`` — what a caller needs to fix its request."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in err.errors()
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
