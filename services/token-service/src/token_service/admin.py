"""token-service's answers to the admin console: connection counts by provider and status
(``token.connections.stats``). Read-only; the console never sees a token or an account."""

from __future__ import annotations

from collections.abc import Callable

from faststream.nats import NatsBroker
from syncplane_common import rpc, subjects
from syncplane_common.contracts import ConnectionCount, ConnectionsStats, ConnectionsStatsReply

from token_service.handlers import QUEUE
from token_service.service import TokenService

STATS = """
SELECT provider, status, count(*)::int AS count
FROM connections
GROUP BY provider, status
ORDER BY provider, status
"""


def register(broker: NatsBroker, service: Callable[[], TokenService]) -> None:
    @rpc.responder(
        broker, subjects.CONNECTIONS_STATS, ConnectionsStats, ConnectionsStatsReply, queue=QUEUE
    )
    async def connections_stats(_: ConnectionsStats) -> ConnectionsStatsReply:
        records = await service().pool.fetch(STATS)
        counts = tuple(
            ConnectionCount(provider=r["provider"], status=r["status"], count=r["count"])
            for r in records
        )
        return ConnectionsStatsReply(counts=counts, total=sum(c.count for c in counts))
