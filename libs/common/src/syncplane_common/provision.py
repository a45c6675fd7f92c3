"""Idempotent provisioning of the streams, durable consumers and KV buckets of subjects.py.

Run once per deployment (``syncplane provision``, a compose / Kubernetes job). It creates
what is missing and updates what drifted, because services bind with ``declare=False``
and an existing durable consumer is never updated by a subscriber's own config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import nats
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError

from syncplane_common.subjects import BUCKETS, CONSUMERS, STREAMS, BucketDef, ConsumerDef, StreamDef

log = logging.getLogger(__name__)


@dataclass
class ProvisionReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def stream_config(item: StreamDef, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=item.name,
        description=item.description or None,
        subjects=list(item.subjects),
        retention=RetentionPolicy.WORK_QUEUE
        if item.retention == "workqueue"
        else RetentionPolicy.LIMITS,
        max_age=item.max_age,
        duplicate_window=item.duplicate_window,
        storage=StorageType.FILE,
        num_replicas=replicas,
    )


def consumer_config(item: ConsumerDef) -> ConsumerConfig:
    filters = list(item.filter_subjects)
    return ConsumerConfig(
        durable_name=item.durable,
        name=item.durable,
        description=item.description or None,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=item.ack_wait,
        max_deliver=item.max_deliver,
        max_ack_pending=item.max_ack_pending,
        filter_subject=filters[0] if len(filters) == 1 else None,
        filter_subjects=filters if len(filters) > 1 else None,
    )


def _stream_drifted(want: StreamConfig, have: StreamConfig) -> bool:
    return (
        sorted(want.subjects or []) != sorted(have.subjects or [])
        or want.max_age != have.max_age
        or want.duplicate_window != have.duplicate_window
        or want.description != have.description
    )


def _consumer_drifted(want: ConsumerConfig, have: ConsumerConfig) -> bool:
    def filters(cfg: ConsumerConfig) -> list[str]:
        return sorted(cfg.filter_subjects or ([cfg.filter_subject] if cfg.filter_subject else []))

    return (
        filters(want) != filters(have)
        or want.ack_wait != have.ack_wait
        or want.max_deliver != have.max_deliver
        or want.max_ack_pending != have.max_ack_pending
        or want.description != have.description
    )


async def _ensure_stream(js: JetStreamContext, item: StreamDef, report: ProvisionReport) -> None:
    want = stream_config(item)
    try:
        have = (await js.stream_info(item.name)).config
    except NotFoundError:
        await js.add_stream(want)
        report.created.append(f"stream {item.name}")
        return
    if _stream_drifted(want, have):
        await js.update_stream(want)
        report.updated.append(f"stream {item.name}")
    else:
        report.unchanged.append(f"stream {item.name}")


async def _ensure_consumer(
    js: JetStreamContext, item: ConsumerDef, report: ProvisionReport
) -> None:
    want = consumer_config(item)
    label = f"consumer {item.stream}/{item.durable}"
    try:
        have = (await js.consumer_info(item.stream, item.durable)).config
    except NotFoundError:
        await js.add_consumer(item.stream, want)
        report.created.append(label)
        return
    if _consumer_drifted(want, have):
        # CONSUMER.CREATE on an existing name updates the mutable fields (server >= 2.10).
        await js.add_consumer(item.stream, want)
        report.updated.append(label)
    else:
        report.unchanged.append(label)


async def _ensure_bucket(js: JetStreamContext, item: BucketDef, report: ProvisionReport) -> None:
    try:
        await js.key_value(item.name)
    except BucketNotFoundError:
        await js.create_key_value(
            KeyValueConfig(
                bucket=item.name,
                description=item.description or None,
                history=item.history,
                ttl=item.ttl,
            )
        )
        report.created.append(f"bucket {item.name}")
        return
    report.unchanged.append(f"bucket {item.name}")


async def provision_js(js: JetStreamContext) -> ProvisionReport:
    report = ProvisionReport()
    for stream in STREAMS:
        await _ensure_stream(js, stream, report)
    for item in CONSUMERS:
        await _ensure_consumer(js, item, report)
    for bucket in BUCKETS:
        await _ensure_bucket(js, bucket, report)
    return report


async def provision(nats_url: str) -> ProvisionReport:
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        report = await provision_js(nc.jetstream())
    finally:
        await nc.drain()
    for line in report.created + report.updated:
        log.info("provisioned %s", line)
    return report
