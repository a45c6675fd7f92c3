"""App API bearer JWTs: what `syncplane token` mints is accepted, and nothing looser."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from syncplane_devstack.devjwt import mint_token
from webhook_gateway.auth import AuthError, authenticate, bearer_from_header
from webhook_gateway.settings import GatewaySettings

pytestmark = pytest.mark.unit

SECRET = "s" * 64
HS = GatewaySettings(api_jwt_secret=SECRET, oauth_state_secret="t" * 40)


def _now() -> datetime:
    return datetime.now(UTC)


def test_minted_tokens_are_accepted() -> None:
    user = authenticate(mint_token(SECRET, "u-1"), HS, _now())
    assert (user.subject, user.admin) == ("u-1", False)
    admin = authenticate(mint_token(SECRET, "ops", admin=True), HS, _now())
    assert admin.admin


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"exp": 9_999_999_999}, "sub"),
        ({"sub": "u"}, "exp"),
        ({"sub": "u", "exp": "never"}, "exp"),
        ({"sub": "", "exp": 9_999_999_999}, "subject"),
        ({"sub": "u", "exp": 9_999_999_999, "scope": ["admin"]}, "scope"),
    ],
)
def test_malformed_claims_are_refused(claims: dict[str, object], why: str) -> None:
    with pytest.raises(AuthError, match=why) as caught:
        authenticate(jwt.encode(claims, SECRET, algorithm="HS256"), HS, _now())
    assert caught.value.token_given


def test_expiry_uses_the_given_clock_with_a_little_leeway() -> None:
    token = mint_token(SECRET, "u-1", ttl=60)
    now = _now()
    authenticate(token, HS, now + timedelta(seconds=80))
    with pytest.raises(AuthError, match="expired"):
        authenticate(token, HS, now + timedelta(seconds=120))


def test_other_keys_and_algorithms_are_refused() -> None:
    claims = {"sub": "u", "exp": int(time.time()) + 60}
    for token in (
        jwt.encode(claims, "w" * 40, algorithm="HS256"),
        jwt.encode(claims, SECRET, algorithm="HS512"),
        jwt.encode(claims, "", algorithm="none"),
        "not.a.jwt",
    ):
        with pytest.raises(AuthError):
            authenticate(token, HS, _now())
    with pytest.raises(AuthError) as missing:
        authenticate(None, HS, _now())
    assert not missing.value.token_given


def test_eddsa_public_key_verifies_and_hs256_is_then_refused() -> None:
    private = Ed25519PrivateKey.generate()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = GatewaySettings(
        api_jwt_secret=SECRET,
        oauth_state_secret="t" * 40,
        api_jwt_algorithm="EdDSA",
        api_jwt_public_key=public_pem,
    )
    claims = {"sub": "u-9", "exp": int(time.time()) + 60, "scope": "user admin"}
    assert authenticate(jwt.encode(claims, private, algorithm="EdDSA"), settings, _now()).admin
    with pytest.raises(AuthError):
        authenticate(mint_token(SECRET, "u-9"), settings, _now())


def test_bearer_header_parsing() -> None:
    assert bearer_from_header("Bearer abc") == "abc"
    assert bearer_from_header("bearer  abc ") == "abc"
    for value in (None, "", "Basic abc", "Bearer", "Bearer   "):
        assert bearer_from_header(value) is None
