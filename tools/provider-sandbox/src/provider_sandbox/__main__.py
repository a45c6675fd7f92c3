"""`python -m provider_sandbox --port N`: serve the sandbox until SIGTERM / Ctrl-C."""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from provider_sandbox.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="provider_sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
