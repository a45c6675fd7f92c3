"""Push channels (PROVIDERS.md §5.4): one per calendar with its own id and secret token,
registered in KV ``gcal_channels`` (channel id -> token, user, calendar) for the gateway
before the watch call (Google's ``sync`` message can beat the call's answer), renewed
with a new id when it expires within the margin, then the old one stopped. A calendar
whose channel cannot be renewed after the retries is polled instead, with an event.
Revoking the connection stops the channels and disables the calendars; connecting again
restores them."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nats.js.kv import KeyValue
from syncplane_common import subjects
from syncplane_common.contracts import CalendarPushDisabled

from calendar_sync import store
from calendar_sync.providers.google_calendar import Channel
from calendar_sync.sync import Engine

log = logging.getLogger(__name__)
BUCKET = "gcal_channels"
PRIMARY = "primary"


@dataclass(frozen=True)
class ChannelConfig:
    webhook_url: str
    ttl_seconds: int = 7 * 24 * 3600
    renew_margin_seconds: float = 24 * 3600.0
    renew_retries: int = 3
    poll_interval_seconds: float = 300.0
    backstop_interval_seconds: float = 3600.0


class Channels:
    def __init__(
        self, engine: Engine, kv: Callable[[], Awaitable[KeyValue]], config: ChannelConfig
    ) -> None:
        self.engine = engine
        self.kv = kv
        self.config = config

    # -- connection lifecycle ------------------------------------------------------------

    async def connected(self, user_id: str) -> None:
        engine = self.engine
        async with engine.pool.acquire() as conn, conn.transaction():
            await store.ensure_calendar(conn, user_id, PRIMARY)
            await store.set_sync_enabled(conn, user_id, True)
            calendars = await store.calendars_of(conn, user_id)
            for cal in calendars:
                await store.update_calendar(
                    conn, user_id, cal.calendar_id, push_enabled=True, renew_failures=0
                )
        for cal in calendars:
            try:
                await self.open(user_id, cal.calendar_id)
            except Exception:
                log.warning("watch failed; renewal retries", exc_info=True)
            await engine.sync_calendar(user_id, cal.calendar_id)

    async def revoked(self, user_id: str) -> None:
        engine = self.engine
        async with engine.pool.acquire() as conn:
            calendars = await store.calendars_of(conn, user_id)
            await store.set_sync_enabled(conn, user_id, False)
        for cal in calendars:
            await self._stop(user_id, cal.channel_id, cal.resource_id)
            async with engine.pool.acquire() as conn:
                await store.update_calendar(
                    conn,
                    user_id,
                    cal.calendar_id,
                    channel_id=None,
                    resource_id=None,
                    channel_token=None,
                    channel_expires_at=None,
                )
                await store.audit(
                    conn,
                    user_id=user_id,
                    calendar_id=cal.calendar_id,
                    action="revoke",
                    direction="channel",
                    outcome="sync_disabled",
                    now=engine.clock.now(),
                )

    # -- channels ------------------------------------------------------------------------

    async def open(self, user_id: str, calendar_id: str) -> None:
        """Watch with a new channel, then retire the old one (overlap is tolerated)."""
        if not self.config.webhook_url:
            return
        engine = self.engine
        kv = await self.kv()
        channel_id, secret = engine.ids.event_id(), engine.ids.secret()
        entry = {"token": secret, "user_id": user_id, "calendar_id": calendar_id}
        await kv.put(channel_id, json.dumps(entry).encode())
        try:
            channel = await engine.call(
                user_id,
                lambda t: engine.google.watch(
                    t,
                    calendar_id,
                    channel_id=channel_id,
                    address=self.config.webhook_url,
                    channel_token=secret,
                    ttl_seconds=self.config.ttl_seconds,
                ),
            )
        except Exception:
            await kv.delete(channel_id)
            raise
        entry.update(resource_id=channel.resource_id, expiration=str(channel.expiration_ms))
        await kv.put(channel_id, json.dumps(entry).encode())
        expires = (
            datetime.fromtimestamp(channel.expiration_ms / 1000, UTC)
            if channel.expiration_ms
            else engine.clock.now() + timedelta(seconds=self.config.ttl_seconds)
        )
        async with engine.pool.acquire() as conn, conn.transaction():
            old = await store.get_calendar(conn, user_id, calendar_id, lock=True)
            # Revoked while the watch was in flight: the revoke has cleared (or will
            # clear) the calendar's channel; this one must not be recorded over it.
            revoked = old is not None and not old.sync_enabled
            if not revoked:
                await self._record(conn, user_id, calendar_id, channel, secret, expires)
        if revoked:
            await self._stop(user_id, channel_id, channel.resource_id)
            return
        if old is not None and old.channel_id:
            await self._stop(user_id, old.channel_id, old.resource_id)

    async def _record(
        self,
        conn: store.Conn,
        user_id: str,
        calendar_id: str,
        channel: Channel,
        secret: str,
        expires: datetime,
    ) -> None:
        await store.update_calendar(
            conn,
            user_id,
            calendar_id,
            channel_id=channel.id,
            resource_id=channel.resource_id,
            channel_token=secret,
            channel_expires_at=expires,
            renew_failures=0,
            push_enabled=True,
        )
        await store.audit(
            conn,
            user_id=user_id,
            calendar_id=calendar_id,
            action="watch",
            direction="channel",
            outcome="opened",
            details={"channel_id": channel.id, "expires_at": expires.isoformat()},
            now=self.engine.clock.now(),
        )

    async def _stop(self, user_id: str, channel_id: str | None, resource_id: str | None) -> None:
        if not channel_id:
            return
        kv = await self.kv()
        await kv.delete(channel_id)
        if not resource_id:
            return
        engine = self.engine
        try:
            await engine.call(user_id, lambda t: engine.google.stop(t, channel_id, resource_id))
        except Exception as err:
            # A revoked grant cannot stop its channels; without the KV entry the gateway
            # refuses what they still deliver, and they expire on their own.
            log.info("channels.stop failed: %s", err)

    async def renew_due(self) -> int:
        engine = self.engine
        now = engine.clock.now()
        horizon = now + timedelta(seconds=self.config.renew_margin_seconds)
        if not self.config.webhook_url:
            return 0
        async with engine.pool.acquire() as conn:
            due = await store.channels_to_renew(conn, horizon)
        for cal in due:
            try:
                await self.open(cal.user_id, cal.calendar_id)
            except Exception as err:
                await self._renew_failed(cal, err)
        return len(due)

    async def _renew_failed(self, cal: store.CalendarRow, err: Exception) -> None:
        engine = self.engine
        failures = cal.renew_failures + 1
        disable = failures >= self.config.renew_retries
        now = engine.clock.now()
        async with engine.pool.acquire() as conn, conn.transaction():
            await store.update_calendar(
                conn,
                cal.user_id,
                cal.calendar_id,
                renew_failures=failures,
                push_enabled=not disable,
            )
            await store.audit(
                conn,
                user_id=cal.user_id,
                calendar_id=cal.calendar_id,
                action="renew",
                direction="channel",
                outcome="push_disabled" if disable else "failed",
                details={"error": str(err), "failures": failures},
                now=now,
            )
            if disable:
                event = CalendarPushDisabled(
                    user_id=cal.user_id,
                    calendar_id=cal.calendar_id,
                    reason=f"channel renewal failed {failures} times: {err}",
                    poll_interval_seconds=self.config.poll_interval_seconds,
                    at=now,
                )
                await store.enqueue_message(
                    conn,
                    subjects.CALENDAR_PUSH_DISABLED,
                    f"push-disabled:{cal.user_id}:{cal.calendar_id}:{now.isoformat()}",
                    event.model_dump(mode="json"),
                    now,
                )
        engine.wake_publisher()

    async def poll_due(self) -> int:
        """The backstop: pushes get lost, and disabled calendars have none."""
        engine = self.engine
        now = engine.clock.now()
        async with engine.pool.acquire() as conn:
            due = await store.calendars_to_poll(
                conn,
                now - timedelta(seconds=self.config.backstop_interval_seconds),
                now - timedelta(seconds=self.config.poll_interval_seconds),
            )
        for cal in due:
            try:
                await engine.sync_calendar(cal.user_id, cal.calendar_id)
            except Exception:
                log.warning("poll of a calendar failed", exc_info=True)
        return len(due)
