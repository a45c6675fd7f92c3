"""What sync-worker keeps of its answers to fresh reads: bytes per read, checked against
the rows' versions, bounded in size; and the reply written from them is byte for byte the
one the reply contract writes."""

from __future__ import annotations

import pytest
from pydantic_core import to_json
from sync_worker import queries
from syncplane_common.contracts import DataReply

pytestmark = pytest.mark.unit


def test_an_answer_is_found_only_for_the_same_row_versions() -> None:
    kept = queries.Answered()
    kept.put("read-1", ("a@1", "b@1"), b"[1,2]")
    assert kept.get("read-1", ("a@1", "b@1")) == b"[1,2]"
    assert kept.get("read-1", ("a@1", "b@2")) is None  # b was written since
    assert kept.get("read-1", ("a@1",)) is None  # b is gone
    assert kept.get("read-1", ("c@5", "a@1", "b@1")) is None  # c is new
    assert kept.get("read-2", ("a@1", "b@1")) is None
    kept.put("read-1", ("a@1", "b@2"), b"[1,3]")
    assert kept.get("read-1", ("a@1", "b@2")) == b"[1,3]"
    assert (len(kept), kept.size) == (1, 5)


def test_the_least_recently_used_answers_go_first_past_the_byte_bound() -> None:
    kept = queries.Answered(max_bytes=10)
    for name in ("a", "b", "c"):
        kept.put(name, (name,), b"xxxx")
    assert kept.get("a", ("a",)) is None  # 12 bytes > 10: the oldest went
    assert kept.get("b", ("b",)) == b"xxxx"  # b is now the most recently used
    kept.put("d", ("d",), b"xxxx")
    assert kept.get("c", ("c",)) is None
    assert [kept.get(n, (n,)) for n in ("b", "d")] == [b"xxxx", b"xxxx"]
    kept.put("huge", ("h",), b"x" * 11)  # larger than the bound: never kept
    assert kept.get("huge", ("h",)) is None
    assert kept.size == 8


@pytest.mark.parametrize(
    "rows",
    [
        [],
        [{"id": "1", "record": {"score": 98.5, "nap": False, "note": "été ☀", "n": None}}],
        [{"id": str(i), "at": "2026-11-01T06:00:00+00:00", "v": [1, 2.0, "x"]} for i in range(3)],
    ],
)
def test_the_written_reply_is_what_the_contract_writes(rows: list[dict[str, object]]) -> None:
    metadata = {
        "source": "cache",
        "record_count": len(rows),
        "last_sync_at": "2026-11-01T06:00:00+00:00",
        "time_since_sync_seconds": 12.5,
        "time_since_sync_hours": 0.0,
        "threshold_seconds": 7200.0,
        "cached_enough": True,
        "note": "Using cached data (fresh enough)",
    }
    contract = queries._answer("success", rows, metadata).to_bytes()
    written = queries._encoded("success", to_json(rows), metadata).to_bytes()
    assert written == contract
    assert DataReply.model_validate_json(written).data == tuple(rows)
