"""The gateway's Prometheus counters (served by the runtime's /metrics, ARCHITECTURE §7).

Webhooks: one outcome per answered delivery, and one reason per rejection, so an operator
sees at a glance whether providers are being refused, by what check, or the bus is down.
"""

from __future__ import annotations

import functools
from typing import Literal

from prometheus_client import Counter

WebhookProvider = Literal["strava", "whoop", "gcal"]
# accepted: stored on the bus; duplicate: already stored (a provider retry), answered 2xx;
# ignored: verified but nothing to carry (a Calendar `sync`, a WHOOP type we do not use);
# handshake: a Strava subscription validation answered; rejected: see the reason counter.
WebhookOutcome = Literal["accepted", "duplicate", "ignored", "handshake", "rejected"]
RejectReason = Literal[
    "method",
    "content_type",
    "too_large",
    "malformed",
    "signature",
    "timestamp",
    "unknown_subscription",
    "unknown_channel",
    "bus_unavailable",
]

WEBHOOKS = Counter(
    "syncplane_webhooks_total",
    "Provider webhook deliveries answered, by outcome",
    ["provider", "outcome"],
)
WEBHOOK_REJECTIONS = Counter(
    "syncplane_webhook_rejections_total",
    "Provider webhook deliveries refused, by the check that refused them",
    ["provider", "reason"],
)


# Bound children, looked up once: labels() takes a lock and builds a key on every call,
# which is a measurable share of a webhook's cost at thousands per second.
@functools.cache
def _outcome(provider: WebhookProvider, outcome: WebhookOutcome) -> Counter:
    return WEBHOOKS.labels(provider, outcome)


@functools.cache
def _rejection(provider: WebhookProvider, reason: RejectReason) -> Counter:
    return WEBHOOK_REJECTIONS.labels(provider, reason)


def webhook_outcome(provider: WebhookProvider, outcome: WebhookOutcome) -> None:
    _outcome(provider, outcome).inc()


def webhook_rejected(provider: WebhookProvider, reason: RejectReason) -> None:
    _outcome(provider, "rejected").inc()
    _rejection(provider, reason).inc()
