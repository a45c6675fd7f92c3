"""WHOOP webhooks (PROVIDERS.md §7.4, §7.6): the HMAC signature over the raw bytes, the
timestamp window, and the four-field body turned into a ``WebhookReceived``. No I/O here.

WHOOP signs ``base64(HMAC-SHA256(client_secret, timestamp + raw_body))`` with the
timestamp in milliseconds and **no separator**; the signature is checked before the body
is parsed, and in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from syncplane_common.contracts import WebhookReceived

from webhook_gateway._webhook_intake import Rejected, invalid_fields

SIGNATURE_HEADER = "X-WHOOP-Signature"
TIMESTAMP_HEADER = "X-WHOOP-Signature-Timestamp"
# What syncplane consumes. WHOOP sends every event type to every URL, so the others are
# answered 2xx and dropped (§7.6); cycles get no events today, but would be taken.
KINDS = frozenset({"recovery", "sleep", "workout", "cycle"})
# Epoch milliseconds have 13 digits until the year 2286; the bound keeps int() cheap.
_MAX_STAMP_DIGITS = 16


class WhoopEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    user_id: Annotated[StrictInt, Field(gt=0)]
    # v2: a UUID (for recovery.* the UUID of the related sleep); v1: an integer id.
    id: Annotated[StrictStr, Field(min_length=1, max_length=200)] | StrictInt
    type: Annotated[StrictStr, Field(pattern=r"^[a-z_]+\.[a-z_]+$", max_length=100)]
    trace_id: Annotated[StrictStr, Field(min_length=1, max_length=200)]

    @property
    def kind(self) -> str:
        return self.type.split(".", 1)[0]

    @property
    def action(self) -> str:
        return self.type.split(".", 1)[1]

    @property
    def message_id(self) -> str:
        # WHOOP: dedupe on trace_id; type and id keep two events of one trace apart.
        return f"whoop:{self.type}:{self.id}:{self.trace_id}"


def signature(secret: str, timestamp: str, body: bytes) -> bytes:
    mac = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256)
    return base64.b64encode(mac.digest())


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
    tolerance_seconds: float,
) -> None:
    """Refuse unless the body is signed with ``secret`` inside the timestamp window."""
    given, stamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
    if not secret:
        # An empty key would make every forged signature trivially computable.
        raise Rejected("signature", "WHOOP webhook signing is not configured")
    if not given or stamp is None:
        raise Rejected("signature", f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
    if not hmac.compare_digest(signature(secret, stamp, body), given.encode()):
        raise Rejected("signature", "the signature does not match")
    # Checked after the MAC, so "timestamp" only ever describes an authentic delivery.
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= _MAX_STAMP_DIGITS):
        raise Rejected("timestamp", "the signature timestamp is not epoch milliseconds")
    skew_ms = abs(now.timestamp() * 1000 - int(stamp))
    if skew_ms > tolerance_seconds * 1000:
        raise Rejected("timestamp", "the signature timestamp is outside the accepted window")


def parse_event(body: bytes) -> WhoopEvent:
    try:
        return WhoopEvent.model_validate_json(body)
    except ValidationError as err:
        raise Rejected("malformed", f"not a WHOOP event: {invalid_fields(err)}") from err


def envelope(event: WhoopEvent, received_at: datetime) -> WebhookReceived:
    return WebhookReceived(
        provider="whoop",
        kind=event.kind,
        event_id=event.message_id,
        object_id=str(event.id),
        owner_id=str(event.user_id),
        action=event.action,
        received_at=received_at,
        attributes={"trace_id": event.trace_id, "type": event.type},
    )
