"""Provider API clients of the sync-worker, one module per provider (STYLE.md habit 1).

Each module turns its provider's HTTP answers into the error tree in one function. What
they share lives here: a provider refusing the access token we sent is not yet a reason
to re-authenticate — token-service may hold a newer one, or can refresh — so it is
:class:`TokenRejectedError`, naming the refused token by fingerprint (``token.get`` with
``force_refresh`` and ``rejected_token_fingerprint``; retry once with the answer).
"""

from __future__ import annotations

from syncplane_common.contracts import token_fingerprint
from syncplane_common.errors import TokenRejectedError

__all__ = ["TokenRejectedError", "token_fingerprint"]
