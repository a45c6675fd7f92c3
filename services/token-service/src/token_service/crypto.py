"""Tokens at rest: AES-256-GCM under a keyring of named keys, one of them active.

Each encryption draws a fresh random 96-bit nonce, stored in front of the ciphertext. The
associated data binds a ciphertext to its connection, provider, key id and field, so a
blob copied to another row, provider or field (access vs refresh) fails to decrypt
instead of handing out someone else's token. ARCHITECTURE §6, ADR 0003.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32
# Versioned so a future change of the AAD layout can still open old rows.
_AAD_PREFIX = b"syncplane-token:v1"

Field = Literal["access", "refresh"]


class KeyringError(Exception):
    """A key id the keyring does not hold, or a ciphertext that fails authentication."""


@dataclass(frozen=True, slots=True)
class Binding:
    """What a ciphertext is bound to (the AES-GCM associated data)."""

    connection_id: str
    provider: str

    def aad(self, key_id: str, field: Field) -> bytes:
        parts = (self.connection_id, self.provider, key_id, field)
        return b"|".join((_AAD_PREFIX, *(part.encode() for part in parts)))


class Keyring:
    def __init__(
        self,
        keys: Mapping[str, bytes],
        active_key_id: str,
        *,
        nonce: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if active_key_id not in keys:
            raise KeyringError(f"active key {active_key_id!r} is not in the keyring")
        for kid, key in keys.items():
            if len(key) != KEY_BYTES:
                raise KeyringError(f"key {kid!r} must be {KEY_BYTES} bytes")
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.items()}
        self.active_key_id = active_key_id
        self._nonce = nonce

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._ciphers

    def seal(self, plaintext: str, binding: Binding, field: Field) -> bytes:
        """``nonce || ciphertext+tag`` under the active key."""
        nonce = self._nonce(NONCE_BYTES)
        aad = binding.aad(self.active_key_id, field)
        return nonce + self._ciphers[self.active_key_id].encrypt(nonce, plaintext.encode(), aad)

    def open(self, blob: bytes, binding: Binding, key_id: str, field: Field) -> str:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise KeyringError(f"key {key_id!r} is not in TOKEN_KEYS; it is needed to read tokens")
        nonce, sealed = blob[:NONCE_BYTES], blob[NONCE_BYTES:]
        try:
            return cipher.decrypt(nonce, sealed, binding.aad(key_id, field)).decode()
        except InvalidTag:
            # Never say more: which byte failed is no business of a log reader.
            raise KeyringError(
                f"a {field} token of connection {binding.connection_id} failed authentication"
            ) from None
