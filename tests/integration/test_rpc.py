"""Request/reply over a real nats-server: typed replies, typed errors, one answer per request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from syncplane_common import rpc
from syncplane_common.contracts import TokenGet, TokenGetReply
from syncplane_common.errors import (
    NotConnectedError,
    PermanentError,
    ReauthRequiredError,
    RetryableError,
    RevokedError,
)
from syncplane_devstack.embedded import EmbeddedNats

pytestmark = pytest.mark.integration

SUBJECT = "test.token.get"
AT = datetime(2026, 11, 1, tzinfo=UTC)


def _replica(url: str, name: str, served: list[str]) -> NatsBroker:
    broker = NatsBroker(url, logger=None)

    @rpc.responder(broker, SUBJECT, TokenGet, TokenGetReply, queue="token-service")
    async def token_get(ask: TokenGet) -> TokenGetReply:
        served.append(name)
        if ask.user_id == "reauth":
            raise ReauthRequiredError("refresh token revoked")
        if ask.user_id == "nobody":
            raise NotConnectedError("no strava connection for nobody")
        if ask.user_id == "crash":
            raise ZeroDivisionError("bug")
        return TokenGetReply(access_token=f"token-{ask.user_id}", expires_at=AT)

    return broker


@pytest.fixture
async def brokers(nats_server: EmbeddedNats) -> AsyncIterator[tuple[NatsBroker, list[str]]]:
    served: list[str] = []
    replicas = [_replica(nats_server.url, f"r{i}", served) for i in range(3)]
    caller = NatsBroker(nats_server.url, logger=None)
    for broker in [*replicas, caller]:
        await broker.start()
        await rpc.start_responders(broker)
    yield caller, served
    for broker in [*replicas, caller]:
        await broker.stop()


async def test_each_request_is_answered_once_by_the_queue_group(
    brokers: tuple[NatsBroker, list[str]],
) -> None:
    caller, served = brokers
    for i in range(30):
        reply = await rpc.request(
            caller, SUBJECT, TokenGet(user_id=f"u{i}", provider="strava"), TokenGetReply
        )
        assert reply.access_token == f"token-u{i}"
    assert len(served) == 30  # one replica per request, not all three
    assert len(set(served)) > 1  # and the group spreads the load


async def test_errors_come_back_as_the_error_tree(
    brokers: tuple[NatsBroker, list[str]],
) -> None:
    caller, _ = brokers
    with pytest.raises(ReauthRequiredError):
        await rpc.request(
            caller, SUBJECT, TokenGet(user_id="reauth", provider="strava"), TokenGetReply
        )
    with pytest.raises(NotConnectedError):
        await rpc.request(
            caller, SUBJECT, TokenGet(user_id="nobody", provider="strava"), TokenGetReply
        )
    with pytest.raises(RetryableError):  # an owner's bug is "try later", never a hang
        await rpc.request(
            caller, SUBJECT, TokenGet(user_id="crash", provider="strava"), TokenGetReply
        )


async def test_malformed_request_is_a_bad_request_not_a_timeout(
    brokers: tuple[NatsBroker, list[str]],
) -> None:
    caller, _ = brokers
    msg = await caller.connection.request(SUBJECT, b'{"user_id": ""}', timeout=2)
    reply = TokenGetReply.model_validate_json(msg.data)
    assert reply.error is not None
    assert reply.error.code == "bad_request"
    assert "user_id" in reply.error.message
    with pytest.raises(PermanentError):
        rpc.raise_error(reply.error)


async def test_no_owner_running_is_retryable_at_once(nats_server: EmbeddedNats) -> None:
    caller = NatsBroker(nats_server.url, logger=None)
    await caller.start()
    try:
        with pytest.raises(RetryableError, match="nobody serves"):
            await rpc.request(
                caller, "test.nobody.home", TokenGet(user_id="u", provider="strava"), TokenGetReply
            )
    finally:
        await caller.stop()


async def test_request_json_passes_a_success_through_and_maps_errors(
    brokers: tuple[NatsBroker, list[str]],
) -> None:
    caller, _ = brokers
    ask = TokenGet(user_id="u1", provider="strava")
    body = await rpc.request_json(caller, SUBJECT, ask, TokenGetReply)
    expected = TokenGetReply(access_token="token-u1", expires_at=AT)
    # The owner's bytes, less the envelope fields, not a re-encoding of them.
    assert body == expected.model_dump_json(exclude={"schema_version", "error"}).encode()
    assert json.loads(body)["access_token"] == "token-u1"
    assert b"schema_version" not in body
    assert b'"error"' not in body
    with pytest.raises(NotConnectedError):
        await rpc.request_json(
            caller, SUBJECT, TokenGet(user_id="nobody", provider="strava"), TokenGetReply
        )
    with pytest.raises(RetryableError):
        await rpc.request_json(
            caller, SUBJECT, TokenGet(user_id="crash", provider="strava"), TokenGetReply
        )


async def test_request_json_reads_other_spellings_through_the_contract(
    nats_server: EmbeddedNats,
) -> None:
    """A reply not written by pydantic (spaces, another field order) takes the parsing
    path: passed on when it keeps the contract, refused ('unavailable') when it breaks it."""
    nc = NatsBroker(nats_server.url, logger=None)
    await nc.start()
    answers = iter(
        [
            b'{"error": null, "schema_version": 1, "access_token": "t", '
            b'"expires_at": "2026-11-01T00:00:00Z"}',
            b'{"schema_version": 1, "error": {"code": "revoked", "message": "gone"}}',
            b'{"schema_version": 1, "error": null, "access_token": 42}',
        ]
    )

    async def answer(msg: Msg) -> None:
        await msg.respond(next(answers))

    await nc.connection.subscribe("test.spelled", cb=answer)
    ask = TokenGet(user_id="u", provider="strava")
    try:
        body = await rpc.request_json(nc, "test.spelled", ask, TokenGetReply)
        envelope = {"schema_version", "error"}
        expected = TokenGetReply(access_token="t", expires_at=AT).model_dump(
            mode="json", exclude=envelope
        )
        assert json.loads(body) == expected
        with pytest.raises(RevokedError):
            await rpc.request_json(nc, "test.spelled", ask, TokenGetReply)
        with pytest.raises(RetryableError, match="unreadable reply"):
            await rpc.request_json(nc, "test.spelled", ask, TokenGetReply)
    finally:
        await nc.stop()


async def test_a_handler_may_answer_with_bytes_it_encoded_itself(
    nats_server: EmbeddedNats,
) -> None:
    broker = NatsBroker(nats_server.url, logger=None)
    written = TokenGetReply(access_token="pre-encoded", expires_at=AT).to_bytes()

    @rpc.responder(broker, "test.encoded", TokenGet, TokenGetReply, queue="q")
    async def encoded(ask: TokenGet) -> TokenGetReply | rpc.Encoded:
        if ask.user_id == "nobody":
            raise NotConnectedError("no connection")  # errors still become ErrorReply
        return rpc.Encoded(written)

    await broker.start()
    await rpc.start_responders(broker)
    try:
        ask = TokenGet(user_id="u", provider="strava")
        msg = await broker.connection.request("test.encoded", ask.to_bytes(), timeout=2)
        assert msg.data == written
        reply = await rpc.request(broker, "test.encoded", ask, TokenGetReply)
        assert reply.access_token == "pre-encoded"
        with pytest.raises(NotConnectedError):
            await rpc.request(
                broker, "test.encoded", TokenGet(user_id="nobody", provider="strava"), TokenGetReply
            )
    finally:
        await rpc.stop_responders(broker)
        await broker.stop()


async def test_an_owner_that_never_answers_is_retryable_after_the_wait(
    nats_server: EmbeddedNats,
) -> None:
    caller = NatsBroker(nats_server.url, logger=None)
    await caller.start()
    await caller.connection.subscribe("test.silent", cb=_ignore)
    try:
        with pytest.raises(RetryableError, match=r"did not answer within 0\.2s"):
            await rpc.request(
                caller,
                "test.silent",
                TokenGet(user_id="u", provider="strava"),
                TokenGetReply,
                wait=0.2,
            )
    finally:
        await caller.stop()


async def _ignore(msg: Msg) -> None:
    return None


async def test_concurrent_requests_each_get_their_own_reply(
    brokers: tuple[NatsBroker, list[str]],
) -> None:
    caller, _ = brokers
    users = [f"c{i}" for i in range(200)]
    replies = await asyncio.gather(
        *(
            rpc.request(caller, SUBJECT, TokenGet(user_id=u, provider="strava"), TokenGetReply)
            for u in users
        )
    )
    assert [r.access_token for r in replies] == [f"token-{u}" for u in users]
