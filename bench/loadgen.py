"""A small HTTP/1.1 keep-alive load generator, light enough that the server is the
bottleneck: raw asyncio streams, one request in flight per connection, responses framed
by Content-Length. Runs in its own process so it never shares a core with the target.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def _connection(
    host: str, port: int, raw: bytes, deadline: float, statuses: dict[int, int]
) -> tuple[int, int]:
    reader, writer = await asyncio.open_connection(host, port)
    done = errors = 0
    try:
        while time.monotonic() < deadline:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            statuses[status] = statuses.get(status, 0) + 1
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                    break
            if length:
                await reader.readexactly(length)
            done += 1
            if status >= 400:
                errors += 1
    finally:
        writer.close()
    return done, errors


async def _run(
    host: str, port: int, path: str, headers: Sequence[tuple[str, str]], conns: int, secs: float
) -> LoadResult:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers)]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    statuses: dict[int, int] = {}
    started = time.monotonic()
    deadline = started + secs
    results = await asyncio.gather(
        *(_connection(host, port, raw, deadline, statuses) for _ in range(conns))
    )
    elapsed = time.monotonic() - started
    return LoadResult(sum(r[0] for r in results), sum(r[1] for r in results), elapsed, statuses)


def _worker(args: tuple[str, int, str, tuple[tuple[str, str], ...], int, float]) -> LoadResult:
    return asyncio.run(_run(*args))


def load(
    host: str,
    port: int,
    path: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    connections: int = 32,
    seconds: float = 4.0,
) -> LoadResult:
    """Hammer one URL from a separate process for ``seconds``; blocks the caller."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_worker, ((host, port, path, tuple(headers), connections, seconds),))
