"""Tokens at rest: AES-256-GCM, a fresh nonce each time, bound to connection and field."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st
from token_service.crypto import NONCE_BYTES, Binding, Keyring, KeyringError

pytestmark = pytest.mark.unit

K1, K2 = secrets.token_bytes(32), secrets.token_bytes(32)
HERE = Binding("7c9e6679-7425-40de-944b-e07fc1f90ae7", "strava")


@given(st.text(min_size=16, max_size=300))
def test_what_is_sealed_opens_to_the_same_text(token: str) -> None:
    ring = Keyring({"k1": K1}, "k1")
    blob = ring.seal(token, HERE, "access")
    assert ring.open(blob, HERE, "k1", "access") == token
    assert token.encode() not in blob


def test_each_seal_draws_a_fresh_nonce() -> None:
    ring = Keyring({"k1": K1}, "k1")
    blobs = {ring.seal("same token", HERE, "refresh") for _ in range(50)}
    assert len(blobs) == 50
    assert len({blob[:NONCE_BYTES] for blob in blobs}) == 50


@pytest.mark.parametrize(
    ("binding", "key_id", "field"),
    [
        (Binding("00000000-0000-0000-0000-000000000000", "strava"), "k1", "access"),
        (Binding(HERE.connection_id, "whoop"), "k1", "access"),
        (HERE, "k1", "refresh"),
        (HERE, "k2", "access"),
    ],
    ids=["other-connection", "other-provider", "other-field", "other-key-id"],
)
def test_a_ciphertext_moved_elsewhere_does_not_open(
    binding: Binding, key_id: str, field: str
) -> None:
    # k2 holds the same bytes as k1, so only the key id in the AAD tells them apart.
    ring = Keyring({"k1": K1, "k2": K1}, "k1")
    blob = ring.seal("access-token", HERE, "access")
    with pytest.raises(KeyringError, match="failed authentication") as err:
        ring.open(blob, binding, key_id, field)  # type: ignore[arg-type]
    assert "access-token" not in str(err.value)


def test_a_flipped_bit_does_not_open() -> None:
    ring = Keyring({"k1": K1}, "k1")
    blob = bytearray(ring.seal("access-token", HERE, "access"))
    blob[-1] ^= 1
    with pytest.raises(KeyringError):
        ring.open(bytes(blob), HERE, "k1", "access")


def test_rotation_reads_old_keys_and_writes_the_active_one() -> None:
    old = Keyring({"k1": K1}, "k1")
    blob = old.seal("refresh-token", HERE, "refresh")
    both = Keyring({"k1": K1, "k2": K2}, "k2")
    assert both.open(blob, HERE, "k1", "refresh") == "refresh-token"
    resealed = both.seal("refresh-token", HERE, "refresh")
    assert Keyring({"k2": K2}, "k2").open(resealed, HERE, "k2", "refresh") == "refresh-token"
    with pytest.raises(KeyringError, match="not in TOKEN_KEYS"):
        Keyring({"k2": K2}, "k2").open(blob, HERE, "k1", "refresh")


def test_a_keyring_needs_its_active_key_and_aes_256_keys() -> None:
    with pytest.raises(KeyringError):
        Keyring({"k1": K1}, "k2")
    with pytest.raises(KeyringError):
        Keyring({"k1": secrets.token_bytes(16)}, "k1")
