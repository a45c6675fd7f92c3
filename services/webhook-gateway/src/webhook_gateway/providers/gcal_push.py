"""Google Calendar push notifications (PROVIDERS.md §5.4): everything is in the
``X-Goog-*`` headers (the body is empty), checked against the channel calendar-sync
registered, and turned into a ``WebhookReceived``. No I/O here.

Google signs nothing: the channel token we chose at watch time, echoed back, is the
proof, together with the resource id of a live channel. A notification carries no event
data, only "this calendar changed": calendar-sync runs its incremental sync.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from syncplane_common.contracts import WebhookReceived

from webhook_gateway._webhook_intake import Rejected

CHANNEL_ID = "X-Goog-Channel-ID"
CHANNEL_TOKEN = "X-Goog-Channel-Token"
MESSAGE_NUMBER = "X-Goog-Message-Number"
RESOURCE_ID = "X-Goog-Resource-ID"
RESOURCE_STATE = "X-Goog-Resource-State"
SYNC = "sync"
# Message numbers are int64 in Google's client libraries.
_MAX_NUMBER_DIGITS = 19


def _text(value: object) -> object:
    # Ids written by another service may be numbers; they are compared as text.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Text = Annotated[str, BeforeValidator(_text)]


class Channel(BaseModel):
    """The ``gcal_channels`` KV entry (key: channel id) calendar-sync writes at watch time."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    token: str
    user_id: Text = Field(min_length=1)
    calendar_id: Text = Field(min_length=1)
    # Unknown until the watch call returns (the sync message may come first).
    resource_id: Text | None = None
    # As Google returns it: epoch milliseconds (a number or a digit string); ISO 8601 too.
    expiration: int | str | None = None

    def expires_at(self) -> datetime | None:
        value = self.expiration
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        try:
            if isinstance(value, int):
                return datetime.fromtimestamp(value / 1000, UTC)
            if isinstance(value, str) and value:
                parsed = datetime.fromisoformat(value)
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except (ValueError, OverflowError, OSError):
            pass  # unreadable: the token check still stands
        return None


def parse_channel(raw: bytes | None) -> Channel | None:
    """A registered channel, or None when absent or unreadable (treated as unknown)."""
    if raw is None:
        return None
    try:
        return Channel.model_validate_json(raw)
    except ValidationError:
        return None


@dataclass(frozen=True)
class Push:
    channel_id: str
    message_number: int
    resource_id: str
    resource_state: str
    token: str | None

    @property
    def message_id(self) -> str:
        # A redelivery of one notification repeats its number; new ones always grow it.
        return f"gcal:{self.channel_id}:{self.message_number}"


def parse_headers(headers: Mapping[str, str]) -> Push:
    missing = [
        name
        for name in (CHANNEL_ID, MESSAGE_NUMBER, RESOURCE_ID, RESOURCE_STATE)
        if not headers.get(name)
    ]
    if missing:
        raise Rejected("malformed", f"missing headers: {', '.join(missing)}")
    number = headers[MESSAGE_NUMBER]
    if not (number.isascii() and number.isdigit() and len(number) <= _MAX_NUMBER_DIGITS):
        raise Rejected("malformed", f"{MESSAGE_NUMBER} is not a number")
    return Push(
        channel_id=headers[CHANNEL_ID],
        message_number=int(number),
        resource_id=headers[RESOURCE_ID],
        resource_state=headers[RESOURCE_STATE],
        token=headers.get(CHANNEL_TOKEN),
    )


def verify(push: Push, channel: Channel | None, *, now: datetime) -> Channel:
    """The channel this push belongs to, if it is ours, live, and the token matches."""
    if channel is None:
        raise Rejected("unknown_channel", "no such channel is registered")
    if (
        push.token is None
        or not channel.token
        or not hmac.compare_digest(push.token.encode(), channel.token.encode())
    ):
        raise Rejected("signature", "the channel token does not match")
    if channel.resource_id is not None and channel.resource_id != push.resource_id:
        raise Rejected("unknown_channel", "the resource id does not match the channel")
    expires = channel.expires_at()
    if expires is not None and expires < now:
        raise Rejected("unknown_channel", "the channel has expired")
    return channel


def envelope(push: Push, channel: Channel, received_at: datetime) -> WebhookReceived:
    return WebhookReceived(
        provider="gcal",
        kind="events",
        event_id=push.message_id,
        object_id=channel.calendar_id,
        action=push.resource_state,
        received_at=received_at,
        attributes={
            "channel_id": push.channel_id,
            "resource_id": push.resource_id,
            "message_number": push.message_number,
            "user_id": channel.user_id,
            "calendar_id": channel.calendar_id,
        },
    )
