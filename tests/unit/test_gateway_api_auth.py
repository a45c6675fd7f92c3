"""App API bearer JWTs: what `syncplane token` mints is accepted, and nothing looser."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from syncplane_devstack.devjwt import mint_token
from webhook_gateway.auth import AuthError, TokenCache, authenticate, bearer_from_header
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


# -- the verified-token cache ------------------------------------------------------------


def test_cached_tokens_stop_working_when_they_expire() -> None:
    cache = TokenCache(HS)
    token = mint_token(SECRET, "u-1", ttl=60)
    now = _now()
    assert cache.authenticate(token, now).subject == "u-1"
    assert len(cache) == 1
    assert cache.authenticate(token, now + timedelta(seconds=80)).subject == "u-1"  # leeway
    with pytest.raises(AuthError, match="expired") as expired:
        cache.authenticate(token, now + timedelta(seconds=120))
    assert expired.value.token_given
    assert len(cache) == 0  # an expired token is dropped, not kept for the next try
    with pytest.raises(AuthError, match="expired"):
        cache.authenticate(token, now + timedelta(seconds=120))


def test_cached_tokens_honour_not_before_on_every_hit() -> None:
    cache = TokenCache(HS)
    now = _now()
    nbf = int(now.timestamp()) + 120
    token = jwt.encode({"sub": "u", "exp": nbf + 600, "nbf": nbf}, SECRET, algorithm="HS256")
    for _ in range(2):  # the first check and the cached one
        with pytest.raises(AuthError, match="not valid yet"):
            cache.authenticate(token, now)
    assert cache.authenticate(token, now + timedelta(seconds=100)).subject == "u"


def test_only_verified_tokens_are_cached_and_a_changed_byte_is_checked_again() -> None:
    cache = TokenCache(HS)
    good = mint_token(SECRET, "u-1")
    cache.authenticate(good, _now())
    head, _, signature = good.split(".")
    forged_payload = jwt.utils.base64url_encode(
        json.dumps({"sub": "admin", "exp": 9_999_999_999, "scope": "admin"}).encode()
    ).decode()
    for token in (
        f"{head}.{forged_payload}.{signature}",  # another payload under the cached signature
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        jwt.encode({"sub": "u", "exp": 9_999_999_999}, "w" * 40, algorithm="HS256"),
    ):
        with pytest.raises(AuthError):
            cache.authenticate(token, _now())
    assert len(cache) == 1
    with pytest.raises(AuthError) as missing:
        cache.authenticate(None, _now())
    assert not missing.value.token_given


def test_the_cache_keeps_the_most_recently_used_tokens() -> None:
    cache = TokenCache(HS, max_entries=2)
    a, b, c = (mint_token(SECRET, user) for user in ("a", "b", "c"))
    now = _now()
    cache.authenticate(a, now)
    cache.authenticate(b, now)
    cache.authenticate(a, now)  # a is now the most recently used
    cache.authenticate(c, now)
    assert len(cache) == 2
    assert set(cache._verified) == {a, c}
    assert [cache.authenticate(t, now).subject for t in (a, b, c)] == ["a", "b", "c"]
