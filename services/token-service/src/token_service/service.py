"""What token-service does, behind its subjects: serve and refresh access tokens, store
connections from OAuth codes, revoke them, follow Strava deauthorizations, keep idle
connections alive (ADR 0003).

Three failures it exists to prevent, and how:

1. Two refreshes racing for one connection (a rotated refresh token lost): every refresh
   runs under the connection's row lock (``SELECT ... FOR UPDATE``), which holds across
   replicas, and re-reads the row once the lock is held; within a process, concurrent
   callers share one in-flight refresh. The rotated refresh token is written in the
   same transaction as the access token it came with.
2. A transient provider error taken for a revocation: only a provider's definitive
   refusal (``ReauthRequiredError`` from a provider module) changes a status; network
   errors, timeouts, 5xx and 429 reach the caller as ``unavailable`` and are counted.
3. A broken connection that looks healthy: a refusal marks it ``reauth_required`` and
   publishes ``connection.reauth_required.<provider>`` in the same transaction (outbox);
   a connect that yields no refresh token, or fewer scopes than asked, stores nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import asyncpg
from prometheus_client import Counter
from syncplane_common import contracts
from syncplane_common.clock import Clock
from syncplane_common.contracts import (
    ConnectionsList,
    ConnectionsListReply,
    ConnectionView,
    ErrorReply,
    StravaSubscriptionEnsure,
    StravaSubscriptionEnsureReply,
    TokenExchange,
    TokenExchangeReply,
    TokenGet,
    TokenGetReply,
    TokenRevoke,
    TokenRevokeReply,
    WebhookReceived,
    token_fingerprint,
)
from syncplane_common.errors import (
    NotConnectedError,
    PermanentError,
    ReauthRequiredError,
    RetryableError,
    SyncplaneError,
)

from token_service import domain, store
from token_service.crypto import Binding, Keyring, KeyringError
from token_service.domain import Decision, Need, Policy, Snapshot, TokenGrant
from token_service.flight import SingleFlight
from token_service.outbox import Outbox, enqueue
from token_service.providers.base import OAuthProvider
from token_service.providers.strava import StravaOAuth

log = logging.getLogger(__name__)

REFRESHES = Counter(
    "syncplane_token_refreshes_total",
    "Refresh attempts against providers, by outcome (refreshed, reauth_required, "
    "unavailable, failed).",
    ["provider", "outcome"],
)
LIFECYCLE = Counter(
    "syncplane_token_connections_total",
    "Connection lifecycle changes (connected, reconnected, reauth_required, revoked, "
    "deauthorized, refused).",
    ["provider", "action"],
)

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Settings:
    """The knobs the service reads (a slice of TokenServiceSettings)."""

    margin_seconds: int = 120
    cooldown_seconds: int = 30
    lock_timeout_seconds: float = 15.0
    max_concurrent_refreshes: int = 5
    keepalive_idle_days: float = 0
    keepalive_batch_size: int = 50
    nonce_retention_seconds: int = 86_400
    last_used_resolution_seconds: int = 60
    token_cache_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Served:
    access_token: str
    expires_at: datetime
    account_id: str | None
    scopes: tuple[str, ...]
    # Refreshed at the provider to answer this request; false when served as stored.
    refreshed: bool = False

    def __repr__(self) -> str:
        return f"Served(expires_at={self.expires_at!r}, account_id={self.account_id!r})"

    def reply(self) -> TokenGetReply:
        return TokenGetReply(
            access_token=self.access_token,
            expires_at=self.expires_at,
            provider_account_id=self.account_id,
            scopes=self.scopes,
            refreshed=self.refreshed,
        )


@dataclass(frozen=True, slots=True)
class _Opened:
    row: store.ConnectionRow
    access: str | None
    refresh: str | None

    def snapshot(self) -> Snapshot:
        return Snapshot(
            status=self.row.status,
            expires_at=self.row.expires_at,
            last_refreshed_at=self.row.last_refreshed_at,
            access_fingerprint=None if self.access is None else token_fingerprint(self.access),
        )

    def served(self) -> Served:
        row = self.row
        assert self.access is not None
        assert row.expires_at is not None
        return Served(self.access, row.expires_at, row.provider_account_id, row.scopes)


class TokenService:
    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        keyring: Keyring,
        providers: Mapping[str, OAuthProvider],
        outbox: Outbox,
        clock: Clock,
        settings: Settings,
        *,
        strava: StravaOAuth | None = None,
    ) -> None:
        self.pool = pool
        self.keyring = keyring
        self.providers = providers
        self.outbox = outbox
        self.clock = clock
        self.settings = settings
        self.policy = Policy(settings.margin_seconds, settings.cooldown_seconds)
        self.strava = strava
        self.flights: SingleFlight[Key, Served] = SingleFlight()
        self._recent: dict[Key, tuple[Served, float]] = {}
        self._refresh_slots = asyncio.Semaphore(settings.max_concurrent_refreshes)
        self._background: set[asyncio.Task[None]] = set()

    # -- sealing -----------------------------------------------------------------------

    def _seal(
        self, connection_id: uuid.UUID, provider: str, access: str, refresh: str | None
    ) -> store.Sealed:
        binding = Binding(str(connection_id), provider)
        return store.Sealed(
            key_id=self.keyring.active_key_id,
            access=self.keyring.seal(access, binding, "access"),
            refresh=None if refresh is None else self.keyring.seal(refresh, binding, "refresh"),
        )

    def _open(self, row: store.ConnectionRow) -> _Opened:
        if row.key_id is None or row.access_token_ct is None:
            return _Opened(row, None, None)
        binding = Binding(str(row.id), row.provider)
        try:
            access = self.keyring.open(row.access_token_ct, binding, row.key_id, "access")
            refresh = (
                None
                if row.refresh_token_ct is None
                else self.keyring.open(row.refresh_token_ct, binding, row.key_id, "refresh")
            )
        except KeyringError as err:
            # A deployment problem (a key dropped from TOKEN_KEYS too early), not the
            # user's: never a status change; callers wait until the keyring is fixed.
            log.error("cannot open tokens: %s", err, extra={"connection_id": str(row.id)})
            raise RetryableError("tokens cannot be decrypted right now", retry_after=60) from err
        return _Opened(row, access, refresh)

    def _provider(self, name: str) -> OAuthProvider:
        client = self.providers.get(name)
        if client is None:
            raise PermanentError(f"{name} is not configured on token-service (client id)")
        return client

    # -- token.get ---------------------------------------------------------------------

    async def get(self, ask: TokenGet) -> TokenGetReply:
        need = Need(ask.min_valid_seconds, ask.force_refresh, ask.rejected_token_fingerprint)
        key = (ask.user_id, ask.provider)
        recent = self._recently_served(key, need)
        if recent is not None:
            return recent.reply()
        try:
            served = await self._get(key, need)
        except Exception:
            self._recent.pop(key, None)
            raise
        # A later answer from memory did not refresh anything.
        self._recent[key] = (replace(served, refreshed=False), self.clock.monotonic())
        return served.reply()

    def _recently_served(self, key: Key, need: Need) -> Served | None:
        """A token this process served moments ago, if it still satisfies ``need``.

        Most token.get calls ask again for a token that is valid for hours; answering
        them from memory saves a query and a decryption each. Another replica's refresh
        or revocation is seen after TOKEN_CACHE_SECONDS at the latest, and a caller whose
        token was refused asks with force_refresh, which always goes to the database.
        """
        ttl = self.settings.token_cache_seconds
        if ttl <= 0 or need.force_refresh or need.refreshed_before is not None:
            return None
        entry = self._recent.get(key)
        if entry is None:
            return None
        served, at = entry
        if self.clock.monotonic() - at > ttl:
            del self._recent[key]
            return None
        remaining = (served.expires_at - self.clock.now()).total_seconds()
        if remaining < need.min_valid_seconds + self.policy.margin_seconds:
            return None
        return served

    async def _get(self, key: Key, need: Need) -> Served:
        for _ in range(2):
            if self.flights.busy(key):
                # A refresh is on its way: waiting for it beats reading a row it is about
                # to replace (and keeps this caller off the pool).
                served = await self.flights.run(key, lambda: self._refresh(key, need))
            else:
                row = await store.load(self.pool, *key)
                if row is None:
                    raise NotConnectedError(f"user has no {key[1]} connection")
                opened = self._open(row)
                if domain.decide(opened.snapshot(), need, self.policy, self.clock.now()) is (
                    Decision.SERVE
                ):
                    self._touch(row)
                    return opened.served()
                served = await self.flights.run(key, lambda: self._refresh(key, need))
            if self._satisfies(served, need):
                return served
        # A second flight still did not give this caller what it asked for (a provider
        # that hands back the same token): the freshest token there is will have to do.
        return served

    def _satisfies(self, served: Served, need: Need) -> bool:
        """Whether a flight started by another caller answers this one too."""
        if need.force_refresh and need.rejected_fingerprint is not None:
            rejected = domain.same_fingerprint(
                need.rejected_fingerprint, token_fingerprint(served.access_token)
            )
            return not rejected
        remaining = (served.expires_at - self.clock.now()).total_seconds()
        return remaining >= need.min_valid_seconds or need.force_refresh

    def _touch(self, row: store.ConnectionRow) -> None:
        """Record the use for keep-alive, off the reply path and at most once a minute."""
        now = self.clock.now()
        resolution = self.settings.last_used_resolution_seconds
        if not domain.should_touch(row.last_used_at, now, resolution):
            return
        unless_after = now - timedelta(seconds=resolution)
        task = asyncio.ensure_future(store.touch(self.pool, row.id, now, unless_after))
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("last_used_at not recorded", exc_info=task.exception())

    async def _refresh(self, key: Key, need: Need) -> Served:
        """Refresh one connection under its row lock, unless another replica already did."""
        # A refresh holds a pooled connection while its provider answers; queueing here
        # instead leaves the rest of the pool to the reads that serve valid tokens.
        async with self._refresh_slots:
            return await self._refresh_locked(key, need)

    async def _refresh_locked(self, key: Key, need: Need) -> Served:
        user_id, provider = key
        client = self._provider(provider)
        refusal: SyncplaneError | None = None
        served: Served | None = None
        async with self.pool.acquire() as tx, tx.transaction():
            row = await self._lock(tx, user_id, provider)
            opened = self._open(row)
            now = self.clock.now()
            if domain.decide(opened.snapshot(), need, self.policy, now) is Decision.SERVE:
                return opened.served()  # refreshed elsewhere while we waited for the lock
            if opened.refresh is None:
                if domain.usable(opened.snapshot(), now):
                    return opened.served()
                refusal = ReauthRequiredError(f"{provider} gave no refresh token to renew with")
                await self._mark_reauth(tx, row, refusal.message)
            else:
                try:
                    grant = await client.refresh(opened.refresh)
                except ReauthRequiredError as err:
                    refusal = err
                    await self._mark_reauth(tx, row, err.message)
                except (RetryableError, PermanentError) as err:
                    refusal = err
                    await store.note_failure(tx, row.id, err.message, self.clock.now())
                    outcome = "unavailable" if isinstance(err, RetryableError) else "failed"
                    REFRESHES.labels(provider, outcome).inc()
                    log.warning(
                        "refresh failed; connection left as it is",
                        extra={"user_id": user_id, "provider": provider, "error": err.message},
                    )
                else:
                    served = await self._save_refresh(tx, opened, grant)
        if refusal is not None:
            if isinstance(refusal, ReauthRequiredError):
                await self.outbox.flush()
            raise refusal
        assert served is not None
        return served

    async def _lock(self, tx: store.Tx, user_id: str, provider: str) -> store.ConnectionRow:
        # Waiting past this means another replica's refresh is stuck on its provider;
        # the caller retries rather than queueing behind it.
        timeout_ms = int(self.settings.lock_timeout_seconds * 1000)
        await tx.execute(f"SET LOCAL lock_timeout = {timeout_ms}")
        try:
            row = await store.lock(tx, user_id, provider)
        except asyncpg.LockNotAvailableError as err:
            raise RetryableError("the connection is busy refreshing", retry_after=1.0) from err
        if row is None:
            raise NotConnectedError(f"user has no {provider} connection")
        return row

    async def _save_refresh(self, tx: store.Tx, opened: _Opened, grant: TokenGrant) -> Served:
        row, now = opened.row, self.clock.now()
        refresh = domain.kept_refresh_token(opened.refresh, grant)
        expires_at = grant.expires_at(now)
        sealed = self._seal(row.id, row.provider, grant.access_token, refresh)
        await store.save_refresh(tx, row.id, sealed, expires_at, now)
        REFRESHES.labels(row.provider, "refreshed").inc()
        log.info(
            "token refreshed",
            extra={"user_id": row.user_id, "provider": row.provider, "connection_id": str(row.id)},
        )
        return Served(
            grant.access_token, expires_at, row.provider_account_id, row.scopes, refreshed=True
        )

    async def _mark_reauth(self, tx: store.Tx, row: store.ConnectionRow, reason: str) -> None:
        now = self.clock.now()
        await store.wipe(tx, row.id, "reauth_required", reason, now)
        await self._record(tx, row, "reauth_required", "reauth_required", reason)
        await enqueue(
            tx,
            contracts.ConnectionReauthRequired(
                user_id=row.user_id,
                provider=row.provider,
                provider_account_id=row.provider_account_id,
                scopes=row.scopes,
                reason=reason,
                occurred_at=now,
            ),
            self.clock,
        )
        REFRESHES.labels(row.provider, "reauth_required").inc()
        log.warning(
            "provider refused the refresh token; connection needs reauth",
            extra={"user_id": row.user_id, "provider": row.provider, "reason": reason},
        )

    async def _record(
        self,
        tx: store.Tx,
        row: store.ConnectionRow,
        action: str,
        status_after: domain.Status,
        reason: str | None,
    ) -> None:
        await store.audit(
            tx,
            row,
            connection_id=row.id,
            user_id=row.user_id,
            provider=row.provider,
            action=action,
            status_after=status_after,
            reason=reason,
            now=self.clock.now(),
        )
        LIFECYCLE.labels(row.provider, action).inc()

    # -- token.exchange ----------------------------------------------------------------

    async def exchange(self, ask: TokenExchange) -> TokenExchangeReply:
        self._recent.pop((ask.user_id, ask.provider), None)
        client = self._provider(ask.provider)
        now = self.clock.now()
        nonce = hashlib.sha256(ask.state_nonce.encode()).hexdigest()
        if not await store.claim_nonce(self.pool, nonce, ask.user_id, ask.provider, now):
            LIFECYCLE.labels(ask.provider, "refused").inc()
            return TokenExchangeReply(
                error=ErrorReply(
                    code="conflict", message="this OAuth state was already used; start again"
                )
            )
        retention = timedelta(seconds=self.settings.nonce_retention_seconds)
        await store.forget_nonces(self.pool, now - retention)
        try:
            grant = await client.exchange(ask.code, ask.redirect_uri, ask.code_verifier)
        except RetryableError:
            # No verdict on the code (the provider was unreachable): the same callback
            # may be retried. A code the provider did spend fails on its own next time.
            await store.release_nonce(self.pool, nonce)
            raise
        try:
            granted = self._granted_scopes(ask, grant)
            account_id = await client.identify(grant)
        except PermanentError:
            await self._withdraw(client, ask.provider, grant, None)
            raise
        for attempt in range(2):
            try:
                reconnected = await self._store_connection(ask, grant, granted, account_id)
                break
            except asyncpg.UniqueViolationError:
                # Two callbacks for one new connection at once: the other inserted first;
                # the second attempt finds its row and updates it.
                if attempt:
                    raise
            except PermanentError:
                await self._withdraw(client, ask.provider, grant, account_id)
                raise
        await self.outbox.flush()
        return TokenExchangeReply(
            provider_account_id=account_id, scopes=granted, reconnected=reconnected
        )

    @staticmethod
    def _granted_scopes(ask: TokenExchange, grant: TokenGrant) -> tuple[str, ...]:
        # Strava's token answer does not list scopes: the gateway passes the callback's
        # granted ``scope`` as requested_scopes, so they are taken as granted.
        requested = tuple(sorted({s for s in ask.requested_scopes if s}))
        granted = grant.scopes if grant.scopes is not None else requested
        missing = domain.missing_scopes(requested, granted)
        if missing:
            LIFECYCLE.labels(ask.provider, "refused").inc()
            raise PermanentError(
                f"the user did not grant {', '.join(missing)}; nothing was stored, "
                "connect again and keep every box ticked"
            )
        return granted

    async def _store_connection(
        self,
        ask: TokenExchange,
        grant: TokenGrant,
        granted: tuple[str, ...],
        account_id: str | None,
    ) -> bool:
        """Insert or update the connection; True when it existed (a reconnect)."""
        async with self.pool.acquire() as tx, tx.transaction():
            row = await store.lock(tx, ask.user_id, ask.provider)
            refresh = grant.refresh_token
            if refresh is None and row is not None and row.provider_account_id == account_id:
                # Google answers a repeat consent without a refresh token; the one we hold
                # for the same account still works (Google never rotates).
                refresh = self._open(row).refresh
            if refresh is None:
                LIFECYCLE.labels(ask.provider, "refused").inc()
                raise PermanentError(
                    f"{ask.provider} issued no refresh token, so the connection would die "
                    "within the hour; nothing was stored (ask for offline access: Google "
                    "access_type=offline with prompt=consent, WHOOP the offline scope)"
                )
            now = self.clock.now()
            connection_id = row.id if row is not None else uuid.uuid4()
            sealed = self._seal(connection_id, ask.provider, grant.access_token, refresh)
            expires_at = grant.expires_at(now)
            if row is None:
                await store.insert(
                    tx,
                    connection_id=connection_id,
                    user_id=ask.user_id,
                    provider=ask.provider,
                    account_id=account_id,
                    scopes=granted,
                    sealed=sealed,
                    expires_at=expires_at,
                    now=now,
                )
            else:
                await store.reconnect(
                    tx,
                    connection_id,
                    account_id=account_id,
                    scopes=granted,
                    sealed=sealed,
                    expires_at=expires_at,
                    now=now,
                )
            action = "connected" if row is None else "reconnected"
            await store.audit(
                tx,
                row,
                connection_id=connection_id,
                user_id=ask.user_id,
                provider=ask.provider,
                action=action,
                status_after="active",
                reason=None,
                now=now,
            )
            await enqueue(
                tx,
                contracts.ConnectionConnected(
                    user_id=ask.user_id,
                    provider=ask.provider,
                    provider_account_id=account_id,
                    scopes=granted,
                    reason=None if row is None else "reconnected",
                    occurred_at=now,
                ),
                self.clock,
            )
        LIFECYCLE.labels(ask.provider, action).inc()
        log.info("connection %s", action, extra={"user_id": ask.user_id, "provider": ask.provider})
        return row is not None

    async def _withdraw(
        self, client: OAuthProvider, provider: str, grant: TokenGrant, account_id: str | None
    ) -> None:
        """Give back a grant we will not store, unless another connection lives on it."""
        account_id = account_id or grant.account_id
        if account_id is not None and await self._shared(provider, account_id, None):
            return
        try:
            await client.revoke(grant.access_token, grant.refresh_token)
        except SyncplaneError as err:
            log.info("could not give back an unused grant: %s", err.message)

    async def _shared(self, provider: str, account_id: str, but: uuid.UUID | None) -> bool:
        """Whether an active connection (other than ``but``) rests on the same provider
        grant: revoking at Google or Strava would cut it too."""
        holders = await store.holders_of_account(
            self.pool, domain.grant_family(provider), account_id, active_only=True
        )
        return any(connection_id != but for connection_id in holders)

    # -- token.revoke ------------------------------------------------------------------

    async def revoke(self, ask: TokenRevoke) -> TokenRevokeReply:
        self._recent.pop((ask.user_id, ask.provider), None)
        client = self.providers.get(ask.provider)
        pending: RetryableError | None = None
        async with self._refresh_slots, self.pool.acquire() as tx, tx.transaction():
            row = await self._lock(tx, ask.user_id, ask.provider)
            if row.status == "revoked":
                return TokenRevokeReply(revoked=False)
            if row.status == "active" and client is not None:
                pending = await self._revoke_at_provider(tx, client, row)
            if pending is None:
                await self._end(tx, row, "revoked", ask.reason)
        if pending is not None:
            # Nothing was wiped: retrying completes both sides (ours and the provider's).
            raise pending
        await self.outbox.flush()
        return TokenRevokeReply(revoked=True)

    async def _revoke_at_provider(
        self, tx: store.Tx, client: OAuthProvider, row: store.ConnectionRow
    ) -> RetryableError | None:
        if row.provider_account_id is not None and await self._shared(
            row.provider, row.provider_account_id, row.id
        ):
            return None  # another connection of this user rests on the same grant
        opened = self._open(row)
        access, refresh = opened.access, opened.refresh
        try:
            if client.revoke_needs_live_access_token and not self._live(row) and refresh:
                try:
                    grant = await client.refresh(refresh)
                except ReauthRequiredError:
                    return None  # the grant is already dead: nothing left to revoke
                await self._save_refresh(tx, opened, grant)
                access, refresh = grant.access_token, domain.kept_refresh_token(refresh, grant)
            await client.revoke(access, refresh)
        except ReauthRequiredError:
            return None  # the provider no longer knows the token: revoked already
        except RetryableError as err:
            return err
        except PermanentError as err:
            # The provider will not revoke (and never will): our copy goes regardless.
            log.warning("provider refused the revocation: %s", err.message)
        return None

    def _live(self, row: store.ConnectionRow) -> bool:
        if row.expires_at is None:
            return False
        remaining = (row.expires_at - self.clock.now()).total_seconds()
        return remaining > self.settings.margin_seconds

    async def _end(self, tx: store.Tx, row: store.ConnectionRow, action: str, reason: str) -> None:
        now = self.clock.now()
        await store.wipe(tx, row.id, "revoked", reason, now)
        await self._record(tx, row, action, "revoked", reason)
        await enqueue(
            tx,
            contracts.ConnectionRevoked(
                user_id=row.user_id,
                provider=row.provider,
                provider_account_id=row.provider_account_id,
                scopes=row.scopes,
                reason=reason,
                occurred_at=now,
            ),
            self.clock,
        )
        log.info("connection %s", action, extra={"user_id": row.user_id, "provider": row.provider})

    # -- Strava deauthorization webhook ------------------------------------------------

    async def deauthorized(self, event: WebhookReceived) -> int:
        """Revoke the connections of a Strava athlete who withdrew our app; the number
        revoked. Strava does not sign events: unknown athletes are simply ignored."""
        # Which user owns the athlete is in the database; forget every remembered token.
        self._recent.clear()
        if event.provider != "strava" or event.kind != "athlete" or not event.owner_id:
            return 0
        if not domain.strava_deauthorized(event.attributes):
            return 0
        holders = await store.holders_of_account(
            self.pool, "strava", event.owner_id, active_only=False
        )
        ended = 0
        for connection_id in holders:
            async with self.pool.acquire() as tx, tx.transaction():
                row = await store.lock_by_id(tx, connection_id)
                if row is None or row.status == "revoked":
                    continue
                if row.provider_account_id != event.owner_id:
                    continue  # reconnected to another athlete meanwhile
                await self._end(tx, row, "deauthorized", "deauthorized at strava")
                ended += 1
        if ended:
            await self.outbox.flush()
        return ended

    # -- token.connections.list --------------------------------------------------------

    async def connections(self, ask: ConnectionsList) -> ConnectionsListReply:
        rows = await store.list_for_user(self.pool, ask.user_id)
        return ConnectionsListReply(
            connections=tuple(
                ConnectionView(
                    provider=row.provider,
                    status=row.status,
                    provider_account_id=row.provider_account_id,
                    scopes=row.scopes,
                    connected_at=row.connected_at,
                    updated_at=row.updated_at,
                    last_refreshed_at=row.last_refreshed_at,
                    expires_at=row.expires_at,
                )
                for row in rows
            )
        )

    # -- token.strava.subscription.ensure ----------------------------------------------

    async def ensure_subscription(
        self, ask: StravaSubscriptionEnsure
    ) -> StravaSubscriptionEnsureReply:
        """Strava allows one push subscription per app: keep it if it already points at
        ``callback_url``, else replace it (§3.4)."""
        if self.strava is None:
            raise PermanentError("strava is not configured on token-service (client id)")
        existing = await self.strava.subscriptions()
        for item in existing:
            if item.get("callback_url") == ask.callback_url and isinstance(item.get("id"), int):
                return StravaSubscriptionEnsureReply(subscription_id=item["id"], created=False)
        for item in existing:
            if isinstance(item.get("id"), int):
                await self.strava.delete_subscription(item["id"])
        created = await self.strava.create_subscription(ask.callback_url, ask.verify_token)
        log.info("strava push subscription created", extra={"subscription_id": created})
        return StravaSubscriptionEnsureReply(subscription_id=created, created=True)

    # -- keep-alive --------------------------------------------------------------------

    async def keepalive(self) -> int:
        """Refresh active connections whose refresh token sat unused for the configured
        idle period; the number refreshed."""
        cutoff = domain.keepalive_cutoff(self.clock.now(), self.settings.keepalive_idle_days)
        if cutoff is None:
            return 0
        due = await store.keepalive_due(self.pool, cutoff, self.settings.keepalive_batch_size)
        need = Need(0, refreshed_before=cutoff)
        refreshed = 0
        for key in due:
            try:
                await self._keep_alive(key, need)
                refreshed += 1
            except SyncplaneError as err:
                log.info("keep-alive refresh skipped: %s", err.message, extra={"provider": key[1]})
        return refreshed

    async def _keep_alive(self, key: Key, need: Need) -> None:
        await self.flights.run(key, lambda: self._refresh(key, need))

    async def close(self) -> None:
        await self.flights.drain()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
