"""The one error tree of syncplane, classified by what the caller must do.

    SyncplaneError
     ├── RetryableError          try again later; ``retry_after`` seconds if known
     │    ├── CursorInvalidError the stored cursor/sync token is gone: restart from scratch
     │    ├── ConflictError      someone else wrote first: reload and decide again
     │    ├── ProviderUnavailableError  a provider failed and nothing stored can stand in
     │    │                      for its answer (a smart read): HTTP 502
     │    └── TokenRejectedError the provider refused this access token: token.get with
     │                           force_refresh + its fingerprint, then retry once
     ├── PermanentError          retrying cannot help: dead-letter the message / fail the item
     │    ├── MessageParseError  a message on the bus that does not match its contract
     │    ├── NotFoundError      the thing asked for does not exist
     │    ├── NotConnectedError  the user never connected this provider
     │    └── RevokedError       the connection was revoked: nothing to do until reconnect
     └── ReauthRequiredError     the user must reconnect; stop this connection's work

Provider clients translate HTTP errors into this tree in one function each (always
``raise ... from err``); the ack middleware (:mod:`syncplane_common.acks`) maps it to
nack-with-backoff, terminate + dead-letter, or ack. Anything outside the tree is
treated as retryable: an unknown failure is never allowed to drop a message.
"""

from __future__ import annotations


class SyncplaneError(Exception):
    """Root of the tree. ``code`` is the stable machine-readable name."""

    code = "error"

    def __init__(self, message: str, *, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, object]:
        return {"type": type(self).__name__, "code": self.code, "message": self.message}


class RetryableError(SyncplaneError):
    """Transient: network, timeout, 5xx, 429, a dependency down. Retry after a delay."""

    code = "retryable"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "retry_after": self.retry_after}


class CursorInvalidError(RetryableError):
    """The provider no longer accepts our cursor (e.g. Google 410): resync from scratch."""

    code = "cursor_invalid"

    def __init__(self, message: str, *, details: dict[str, object] | None = None) -> None:
        super().__init__(message, retry_after=0.0, details=details)


class ConflictError(RetryableError):
    """An optimistic write lost to a concurrent one (or an id exists already)."""

    code = "conflict"

    def __init__(self, message: str, *, details: dict[str, object] | None = None) -> None:
        # Nothing to wait for: reload and decide again on what the other writer wrote.
        super().__init__(message, retry_after=0.0, details=details)


class ProviderUnavailableError(RetryableError):
    """A provider failed a read that nothing stored can answer instead (a smart read of a
    type never synced): the app API's 502, distinct from our own service being down."""

    code = "provider_unavailable"


class TokenRejectedError(RetryableError):
    """The provider answered 401 to this access token; token-service may hold a newer one
    or can refresh, so it is not yet a reason to re-authenticate.

    Only the fingerprint is kept, never the token, so the error can be logged and
    published freely.
    """

    code = "token_rejected"

    def __init__(
        self,
        message: str,
        *,
        fingerprint: str,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message, retry_after=0.0, details=details)
        self.fingerprint = fingerprint

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "fingerprint": self.fingerprint}


class PermanentError(SyncplaneError):
    """Bad data, forbidden, not found: the same input will fail the same way."""

    code = "permanent"


class MessageParseError(PermanentError):
    """A message on a subscribed subject does not decode into its contract."""

    code = "parse_error"


class NotFoundError(PermanentError):
    code = "not_found"


class NotConnectedError(PermanentError):
    code = "not_connected"


class RevokedError(PermanentError):
    code = "revoked"


class ReauthRequiredError(SyncplaneError):
    """The provider definitively refused our credentials; the user must reconnect."""

    code = "reauth_required"


def classify(exc: BaseException) -> type[SyncplaneError]:
    """The branch of the tree an exception belongs to; unknown ones count as retryable."""
    if isinstance(exc, SyncplaneError):
        for branch in (CursorInvalidError, RetryableError, MessageParseError, PermanentError):
            if isinstance(exc, branch):
                return branch
        return type(exc) if isinstance(exc, ReauthRequiredError) else SyncplaneError
    return RetryableError
