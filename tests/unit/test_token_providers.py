"""Each provider's error answers become the error tree in one function: a definitive
refusal of the refresh token is ReauthRequired, anything transient is Retryable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

import pytest
from syncplane_common.errors import (
    PermanentError,
    ReauthRequiredError,
    RetryableError,
    SyncplaneError,
)
from syncplane_common.http import Answer
from token_service.providers import google, strava, whoop
from token_service.providers.base import During

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 1, 12, 7, 30, tzinfo=UTC)
Mapper = Callable[[Answer, During, datetime], NoReturn]


def strava_error(resource: str, field: str, code: str = "invalid") -> dict[str, Any]:
    return {
        "message": "Bad Request",
        "errors": [{"resource": resource, "field": field, "code": code}],
    }


def oauth_error(error: str) -> dict[str, Any]:
    return {"error": error, "error_description": "whatever the provider says today"}


def raised(mapper: Mapper, answer: Answer, during: During) -> SyncplaneError:
    with pytest.raises(SyncplaneError) as caught:
        mapper(answer, during, NOW)
    return caught.value


CASES: list[tuple[Mapper, Answer, During, type[SyncplaneError]]] = [
    # Strava decides on errors[], never on message (§3.1)
    (
        strava.raise_for_answer,
        Answer(400, body=strava_error("RefreshToken", "refresh_token")),
        "refresh",
        ReauthRequiredError,
    ),
    (
        strava.raise_for_answer,
        Answer(400, body=strava_error("Application", "client_secret")),
        "refresh",
        PermanentError,
    ),
    (
        strava.raise_for_answer,
        Answer(400, body=strava_error("AuthorizationCode", "code")),
        "exchange",
        PermanentError,
    ),
    (
        strava.raise_for_answer,
        Answer(401, body=strava_error("Athlete", "access_token")),
        "revoke",
        ReauthRequiredError,
    ),
    (
        strava.raise_for_answer,
        Answer(500, body={"message": "Internal Server Error", "errors": []}),
        "refresh",
        RetryableError,
    ),
    (strava.raise_for_answer, Answer(502, body=None), "refresh", RetryableError),
    (
        strava.raise_for_answer,
        Answer(429, body=strava_error("Application", "rate limit", "exceeded")),
        "subscription",
        RetryableError,
    ),
    # Google branches on error only (§4.3)
    (
        google.raise_for_answer,
        Answer(400, body=oauth_error("invalid_grant")),
        "refresh",
        ReauthRequiredError,
    ),
    (
        google.raise_for_answer,
        Answer(400, body=oauth_error("admin_policy_enforced")),
        "refresh",
        ReauthRequiredError,
    ),
    (
        google.raise_for_answer,
        Answer(400, body=oauth_error("invalid_grant")),
        "exchange",
        PermanentError,
    ),
    (
        google.raise_for_answer,
        Answer(401, body=oauth_error("invalid_client")),
        "refresh",
        PermanentError,
    ),
    (
        google.raise_for_answer,
        Answer(400, body=oauth_error("invalid_token")),
        "revoke",
        ReauthRequiredError,
    ),
    (google.raise_for_answer, Answer(503, body=None), "refresh", RetryableError),
    (
        google.raise_for_answer,
        Answer(429, body=oauth_error("rate_limit_exceeded")),
        "refresh",
        RetryableError,
    ),
    # WHOOP (Hydra) likewise (§7.1)
    (
        whoop.raise_for_answer,
        Answer(400, body=oauth_error("invalid_grant")),
        "refresh",
        ReauthRequiredError,
    ),
    (
        whoop.raise_for_answer,
        Answer(400, body=oauth_error("invalid_grant")),
        "exchange",
        PermanentError,
    ),
    (
        whoop.raise_for_answer,
        Answer(401, body=oauth_error("invalid_client")),
        "refresh",
        PermanentError,
    ),
    (
        whoop.raise_for_answer,
        Answer(401, body={"error": "Unauthorized"}),
        "identify",
        PermanentError,
    ),
    (
        whoop.raise_for_answer,
        Answer(401, body={"error": "Unauthorized"}),
        "revoke",
        ReauthRequiredError,
    ),
    (
        whoop.raise_for_answer,
        Answer(503, body=oauth_error("temporarily_unavailable")),
        "refresh",
        RetryableError,
    ),
    (
        whoop.raise_for_answer,
        Answer(429, body=oauth_error("temporarily_unavailable")),
        "refresh",
        RetryableError,
    ),
]


@pytest.mark.parametrize(("mapper", "answer", "during", "expected"), CASES)
def test_error_answers_map_to_the_error_tree(
    mapper: Mapper, answer: Answer, during: During, expected: type[SyncplaneError]
) -> None:
    assert type(raised(mapper, answer, during)) is expected


def test_retry_after_comes_from_the_provider_when_it_says() -> None:
    answer = Answer(503, headers={"retry-after": "17"})
    for mapper in (strava.raise_for_answer, google.raise_for_answer, whoop.raise_for_answer):
        err = raised(mapper, answer, "refresh")
        assert isinstance(err, RetryableError)
        assert err.retry_after == 17.0


def test_strava_429_waits_for_the_next_quarter_hour() -> None:
    err = raised(strava.raise_for_answer, Answer(429), "subscription")
    assert isinstance(err, RetryableError)
    assert err.retry_after == 7 * 60 + 30  # 12:07:30 -> 12:15:00


def test_whoop_429_waits_for_its_rate_limit_reset() -> None:
    err = raised(
        whoop.raise_for_answer, Answer(429, headers={"X-RateLimit-Reset": "42"}), "refresh"
    )
    assert isinstance(err, RetryableError)
    assert err.retry_after == 42.0


def test_messages_name_the_cause_not_the_body() -> None:
    body = {"error": "invalid_grant", "error_description": "refresh token 1//0abc is revoked"}
    err = raised(google.raise_for_answer, Answer(400, body=body), "refresh")
    assert "1//0abc" not in err.message
