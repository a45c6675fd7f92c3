"""Spans cost nothing to record until something exports them."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.sampling import Decision
from syncplane_common.telemetry import _RecordWhenExported

pytestmark = pytest.mark.unit


def test_drops_while_nothing_exports_and_samples_once_something_does() -> None:
    sampler = _RecordWhenExported()
    assert sampler.should_sample(None, 0x1234, "publish").decision is Decision.DROP
    sampler.exporting = True
    assert sampler.should_sample(None, 0x1234, "publish").decision is Decision.RECORD_AND_SAMPLE
