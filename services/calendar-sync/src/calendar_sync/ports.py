"""calendar-sync's ports: where access tokens and fresh ids come from, each a tiny
Protocol with the implementation the service runs beside it."""

from __future__ import annotations

import secrets
import uuid
from typing import Protocol

from faststream.nats import NatsBroker
from syncplane_common import rpc, subjects
from syncplane_common.contracts import TokenGet, TokenGetReply
from syncplane_common.errors import RetryableError


class TokenSource(Protocol):
    async def get(
        self, user_id: str, *, force_refresh: bool = False, rejected: str | None = None
    ) -> str:
        """A Google Calendar access token of ``user_id``; raises the error tree."""
        ...


class NatsTokens:
    """token-service's ``token.get`` (ADR 0003: only it refreshes)."""

    def __init__(self, broker: NatsBroker) -> None:
        self.broker = broker

    async def get(
        self, user_id: str, *, force_refresh: bool = False, rejected: str | None = None
    ) -> str:
        ask = TokenGet(
            user_id=user_id,
            provider="google_calendar",
            force_refresh=force_refresh,
            rejected_token_fingerprint=rejected,
        )
        reply = await rpc.request(self.broker, subjects.TOKEN_GET, ask, TokenGetReply)
        if not reply.access_token:
            raise RetryableError("token.get answered without a token")
        return reply.access_token


class Ids(Protocol):
    def event_id(self) -> str:
        """A local event id; also valid as a Google event id (base32hex, 32 chars)."""
        ...

    def secret(self) -> str:
        """A channel token: unguessable, URL-safe."""
        ...


class RandomIds:
    def event_id(self) -> str:
        return uuid.uuid4().hex  # hex digits are base32hex digits too

    def secret(self) -> str:
        return secrets.token_urlsafe(32)
