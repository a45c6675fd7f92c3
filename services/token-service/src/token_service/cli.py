"""``python -m token_service rotate-keys``: re-encrypt every stored token under the active
key, in batches, while the service runs.

The rotation, step by step: add the new key to TOKEN_KEYS and make it TOKEN_ACTIVE_KEY_ID
on every replica (they read both keys and write only the new one), run this command, and
drop the old key once it reports nothing left under it. Each batch is its own
transaction and locks its rows, so a refresh running at the same moment is waited for
rather than overwritten; a rerun only touches rows still under an older key.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from syncplane_common import db
from syncplane_common.settings import load_settings

from token_service import store
from token_service.crypto import Binding, Keyring
from token_service.settings import TokenServiceSettings

SERVICE = "token-service"


async def rotate_keys(dsn: str, keyring: Keyring, *, batch_size: int = 200) -> int:
    """Re-seal every row under another key; returns how many rows were re-sealed."""
    pool = await db.create_pool(dsn, "tokens", min_size=1, max_size=1)
    total = 0
    try:
        while True:
            async with pool.acquire() as tx, tx.transaction():
                rows = await store.sealed_under_other_keys(tx, keyring.active_key_id, batch_size)
                for row in rows:
                    binding = Binding(str(row.id), row.provider)
                    access = keyring.open(row.access, binding, row.key_id, "access")
                    refresh = (
                        None
                        if row.refresh is None
                        else keyring.open(row.refresh, binding, row.key_id, "refresh")
                    )
                    await store.reseal(
                        tx,
                        row.id,
                        store.Sealed(
                            key_id=keyring.active_key_id,
                            access=keyring.seal(access, binding, "access"),
                            refresh=None
                            if refresh is None
                            else keyring.seal(refresh, binding, "refresh"),
                        ),
                    )
            total += len(rows)
            if len(rows) < batch_size:
                return total
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m token_service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rotate = sub.add_parser("rotate-keys", help="re-encrypt every token under the active key")
    rotate.add_argument("--batch-size", type=int, default=200)
    args = parser.parse_args(argv)
    settings = load_settings(TokenServiceSettings, SERVICE)
    keyring = Keyring(settings.keyring, settings.active_key_id)
    try:
        moved = asyncio.run(rotate_keys(settings.database_url, keyring, batch_size=args.batch_size))
    except Exception as err:
        print(f"rotate-keys failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(f"rotate-keys: {moved} connection(s) re-encrypted under key {keyring.active_key_id!r}")
    return 0
