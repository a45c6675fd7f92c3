"""token-service refuses to start on a missing, short or malformed key, in one line."""

from __future__ import annotations

import base64
import secrets

import pytest
from syncplane_common.settings import load_settings
from token_service.settings import TokenServiceSettings

pytestmark = pytest.mark.unit

SECRET = base64.b64encode(secrets.token_bytes(16)).decode()
GOOD = base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.mark.parametrize(
    ("keys", "active", "says"),
    [
        (None, None, "TOKEN_KEYS is required but not set"),
        ("", None, "at least one key is required"),
        (f"k1:{SECRET}", None, "key 'k1' must be 32 bytes for AES-256, got 16"),
        (f"k1-{SECRET}", None, "each entry must be 'key_id:base64_key'"),
        (f":{GOOD}", None, "each entry must be 'key_id:base64_key'"),
        ("k1:not*base64!", None, "key 'k1' is not valid base64"),
        (f"k1:{GOOD},k1:{GOOD}", None, "key id 'k1' appears twice"),
        (f"k1:{GOOD}", "k2", "TOKEN_ACTIVE_KEY_ID 'k2' is not in TOKEN_KEYS"),
    ],
    ids=["missing", "empty", "short", "no-id", "empty-id", "not-base64", "twice", "bad-active"],
)
def test_a_bad_keyring_stops_the_service_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    keys: str | None,
    active: str | None,
    says: str,
) -> None:
    monkeypatch.delenv("TOKEN_KEYS", raising=False)
    monkeypatch.delenv("TOKEN_ACTIVE_KEY_ID", raising=False)
    if keys is not None:
        monkeypatch.setenv("TOKEN_KEYS", keys)
    if active is not None:
        monkeypatch.setenv("TOKEN_ACTIVE_KEY_ID", active)
    with pytest.raises(SystemExit) as exited:
        load_settings(TokenServiceSettings, "token-service")
    assert exited.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("token-service: configuration error:")
    assert says in lines[0]
    assert SECRET not in lines[0]
    assert GOOD not in lines[0]


def test_the_active_key_defaults_to_the_last_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKEN_ACTIVE_KEY_ID", raising=False)
    monkeypatch.setenv("TOKEN_KEYS", f"old:{GOOD}, new:{GOOD}")
    settings = load_settings(TokenServiceSettings, "token-service")
    assert settings.active_key_id == "new"
    assert set(settings.keyring) == {"old", "new"}
