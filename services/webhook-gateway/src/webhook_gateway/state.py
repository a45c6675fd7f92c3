"""The OAuth ``state`` parameter: everything the callback needs, sealed for the round trip.

The gateway is stateless, so the state itself carries the connect attempt — user, provider,
return_to, expiry, a single-use nonce, the PKCE verifier and the requested scopes — as
AES-256-GCM ciphertext under a key derived from OAUTH_STATE_SECRET with HKDF, in url-safe
base64. Encryption keeps the PKCE verifier out of the provider's logs and the browser's
history; the GCM tag makes any change detectable; the provider is bound in as associated
data, so a state minted for one provider's callback is refused by another's. Replays are
caught downstream: token-service refuses a ``state_nonce`` it has seen.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = b"\x01"
_NONCE_BYTES = 12
_INFO = b"syncplane/oauth-state/v1"
# Far above any real state (~400 chars), far below what would cost us to decrypt.
MAX_STATE_CHARS = 8192


class StateInvalid(Exception):
    """Not a state we issued for this provider (tampered, truncated, another key)."""


class StateExpired(Exception):
    """A genuine state whose connect attempt took too long; carries it for the redirect."""

    def __init__(self, state: ConnectState) -> None:
        super().__init__("state expired")
        self.state = state


@dataclass(frozen=True)
class ConnectState:
    user_id: str
    provider: str
    return_to: str
    expires_at: int  # unix seconds
    nonce: str
    code_verifier: str | None
    scopes: tuple[str, ...]

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "u": self.user_id,
                "p": self.provider,
                "r": self.return_to,
                "e": self.expires_at,
                "n": self.nonce,
                "v": self.code_verifier,
                "s": list(self.scopes),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ConnectState:
        try:
            data = json.loads(raw)
            return cls(
                user_id=str(data["u"]),
                provider=str(data["p"]),
                return_to=str(data["r"]),
                expires_at=int(data["e"]),
                nonce=str(data["n"]),
                code_verifier=None if data["v"] is None else str(data["v"]),
                scopes=tuple(str(s) for s in data["s"]),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise StateInvalid("malformed state payload") from err


def derive_key(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def new_code_verifier() -> str:
    """RFC 7636: 43-128 characters of [A-Za-z0-9-._~]; 64 here."""
    return secrets.token_urlsafe(48)


def code_challenge(verifier: str) -> str:
    """The S256 challenge of a verifier."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _aad(provider: str) -> bytes:
    return b"syncplane-connect:" + provider.encode()


def seal(state: ConnectState, key: bytes) -> str:
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, state.to_json(), _aad(state.provider))
    return base64.urlsafe_b64encode(VERSION + nonce + sealed).rstrip(b"=").decode()


def unseal(token: str, key: bytes, provider: str, now: datetime) -> ConnectState:
    """The state behind ``token`` for ``provider``'s callback; raises StateInvalid or
    StateExpired (the latter only for genuine states, so its return_to may be trusted)."""
    if not token or len(token) > MAX_STATE_CHARS:
        raise StateInvalid("missing or oversized state")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as err:
        raise StateInvalid("state is not base64") from err
    if raw[:1] != VERSION or len(raw) < 1 + _NONCE_BYTES + 16:
        raise StateInvalid("unknown state format")
    nonce, sealed = raw[1 : 1 + _NONCE_BYTES], raw[1 + _NONCE_BYTES :]
    try:
        plain = AESGCM(key).decrypt(nonce, sealed, _aad(provider))
    except InvalidTag as err:
        raise StateInvalid("state failed authentication") from err
    state = ConnectState.from_json(plain)
    if state.provider != provider:
        raise StateInvalid("state was issued for another provider")
    if now.timestamp() >= state.expires_at:
        raise StateExpired(state)
    return state
