"""calendar-sync's ports: where fresh ids come from, a tiny Protocol with the
implementation the service runs beside it. Access tokens come from
:mod:`syncplane_common.tokens`, shared with sync-worker."""

from __future__ import annotations

import secrets
import uuid
from typing import Protocol


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
