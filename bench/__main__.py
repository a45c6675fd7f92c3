"""``python -m bench [name ...]``: run the registered benches, record and print their figures.

With no names every bench runs and ``latest.json`` is rewritten from this run alone. With
names (a bench name, or a prefix such as ``bus``) only those run, and their figures are
merged into the existing record so a partial run never drops the others. A target that
is missed is a recorded result (exit 0); a bench that crashes or overruns is exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import traceback
from collections.abc import Sequence

from bench import (
    bus,
    calendar,
    fit_run,
    gateway,
    gateway_api,
    report,
    sandbox,
    smart_read,
    sync,
    tokens,
)
from bench.report import Bench, Figure

# New bench modules add their BENCHES here; they run in this order.
BENCHES: tuple[Bench, ...] = (
    *bus.BENCHES,
    *sandbox.BENCHES,
    *gateway.BENCHES,
    *tokens.BENCHES,
    *gateway_api.BENCHES,
    *sync.BENCHES,
    *calendar.BENCHES,
    *smart_read.BENCHES,
    *fit_run.BENCHES,
)


def select(names: Sequence[str], benches: Sequence[Bench] = BENCHES) -> list[Bench]:
    if not names:
        return list(benches)
    unknown = [n for n in names if not any(b.selected_by([n]) for b in benches)]
    if unknown:
        raise LookupError(f"no bench named {', '.join(unknown)}")
    return [b for b in benches if b.selected_by(names)]


async def run(benches: Sequence[Bench]) -> tuple[list[Figure], list[str]]:
    """Every bench runs even if an earlier one crashed, so one failure costs one figure."""
    figures: list[Figure] = []
    crashed: list[str] = []
    for item in benches:
        print(f"{item.name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            async with asyncio.timeout(item.timeout):
                figures += await item.run()
        except Exception:
            traceback.print_exc()
            crashed.append(item.name)
            continue
        print(f"{item.name} done in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return figures, crashed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benches (or prefixes, e.g. 'bus') to run")
    parser.add_argument("--list", action="store_true", help="list the benches and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(b.name for b in BENCHES))
        return 0
    try:
        benches = select(args.names)
    except LookupError as err:
        parser.error(f"{err}; known: {', '.join(b.name for b in BENCHES)}")
    figures, crashed = asyncio.run(run(benches))
    if args.names:
        figures = report.merge(report.load(), figures)
    print(report.write(figures))
    report.update_readme()
    if crashed:
        print(f"crashed: {', '.join(crashed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
