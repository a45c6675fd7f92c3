"""token-service's subjects: five request/reply subjects (queue group ``token-service``)
and the Strava deauthorization consumer. Thin: parse (the contracts do), call, answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from faststream.nats import NatsBroker
from syncplane_common import bus, rpc, subjects
from syncplane_common.contracts import (
    ConnectionsList,
    ConnectionsListReply,
    Contract,
    Reply,
    StravaSubscriptionEnsure,
    StravaSubscriptionEnsureReply,
    TokenExchange,
    TokenExchangeReply,
    TokenGet,
    TokenGetReply,
    TokenRevoke,
    TokenRevokeReply,
    WebhookReceived,
)

from token_service.service import TokenService

QUEUE = "token-service"
Ask = TypeVar("Ask", bound=Contract)
Answer = TypeVar("Answer", bound=Reply)
DEAUTH_DURABLE = "token-service-deauth"


def register(broker: NatsBroker, service: Callable[[], TokenService], *, max_workers: int) -> None:
    """Subscribe every handler; ``service`` gives the service once the process is up."""

    def serve(
        subject: str,
        ask_type: type[Ask],
        reply_type: type[Answer],
        handle: Callable[[Ask], Awaitable[Answer]],
    ) -> None:
        rpc.responder(broker, subject, ask_type, reply_type, queue=QUEUE, max_workers=max_workers)(
            handle
        )

    serve(subjects.TOKEN_GET, TokenGet, TokenGetReply, lambda ask: service().get(ask))
    serve(
        subjects.TOKEN_EXCHANGE,
        TokenExchange,
        TokenExchangeReply,
        lambda ask: service().exchange(ask),
    )
    serve(subjects.TOKEN_REVOKE, TokenRevoke, TokenRevokeReply, lambda ask: service().revoke(ask))
    serve(
        subjects.CONNECTIONS_LIST,
        ConnectionsList,
        ConnectionsListReply,
        lambda ask: service().connections(ask),
    )
    serve(
        subjects.STRAVA_SUBSCRIPTION_ENSURE,
        StravaSubscriptionEnsure,
        StravaSubscriptionEnsureReply,
        lambda ask: service().ensure_subscription(ask),
    )

    async def strava_deauthorized(event: WebhookReceived) -> None:
        await service().deauthorized(event)

    bus.durable_subscriber(broker, DEAUTH_DURABLE)(strava_deauthorized)
