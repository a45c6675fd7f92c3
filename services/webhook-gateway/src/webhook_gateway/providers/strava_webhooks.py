"""Strava push subscription events (PROVIDERS.md §3.4): the validation handshake and the
unsigned event POST, checked and turned into a ``WebhookReceived``. No I/O here.

Strava signs nothing: the handshake (our verify token) proves the subscription at
creation time, and afterwards only ``subscription_id`` ties an event to us, so the route
checks it against the accepted id before anything is published. Consumers treat the
event as a hint and refetch with the athlete's token.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictInt, ValidationError
from syncplane_common.contracts import WebhookReceived

from webhook_gateway._webhook_intake import Rejected, invalid_fields

# Up to 9999-12-31: anything later cannot be a datetime, let alone an event time.
_LAST_EPOCH_SECOND = 253_402_300_799

Id = Annotated[StrictInt, Field(gt=0)]


class StravaEvent(BaseModel):
    """The seven-field event body. Ids are parsed as exact integers (they exceed 2^53, so
    a float would corrupt them) and leave this module only as strings."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    object_type: Literal["activity", "athlete"]
    object_id: Id
    aspect_type: Literal["create", "update", "delete"]
    # Title/type/private changes, or {"authorized": "false"}; create (and presumably
    # delete) carry {}. Tolerated when absent, since nothing downstream depends on it.
    updates: dict[str, JsonValue] = Field(default_factory=dict)
    owner_id: Id
    subscription_id: Id
    event_time: Annotated[StrictInt, Field(ge=0, le=_LAST_EPOCH_SECOND)]

    @property
    def message_id(self) -> str:
        # PROVIDERS.md §3.6: a retry repeats exactly these fields, so it dedupes.
        return (
            f"strava:{self.subscription_id}:{self.object_type}:{self.object_id}"
            f":{self.aspect_type}:{self.event_time}"
        )


def answer_handshake(query: Mapping[str, str], verify_token: str) -> dict[str, str]:
    """The body that confirms a subscription: exactly ``{"hub.challenge": <echo>}``."""
    mode, challenge, token = (
        query.get("hub.mode"),
        query.get("hub.challenge"),
        query.get("hub.verify_token"),
    )
    if mode != "subscribe" or not challenge or token is None:
        raise Rejected("malformed", "expected hub.mode=subscribe, hub.challenge, hub.verify_token")
    if not verify_token or not hmac.compare_digest(token.encode(), verify_token.encode()):
        # Without a configured token nothing can be confirmed: refuse rather than accept all.
        raise Rejected("unknown_subscription", "the verify token does not match")
    return {"hub.challenge": challenge}


def parse_event(body: bytes) -> StravaEvent:
    try:
        return StravaEvent.model_validate_json(body)
    except ValidationError as err:
        raise Rejected("malformed", f"not a Strava event: {invalid_fields(err)}") from err


def envelope(event: StravaEvent, received_at: datetime) -> WebhookReceived:
    return WebhookReceived(
        provider="strava",
        kind=event.object_type,
        event_id=event.message_id,
        object_id=str(event.object_id),
        owner_id=str(event.owner_id),
        action=event.aspect_type,
        event_time=datetime.fromtimestamp(event.event_time, UTC),
        received_at=received_at,
        attributes={"updates": event.updates, "subscription_id": str(event.subscription_id)},
    )
