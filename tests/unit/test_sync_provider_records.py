"""sync_worker.providers._records: a page's odd items are set aside, not fatal; a single
record that does not fit is permanent; the content hash ignores serialization."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, StrictInt
from sync_worker.providers._records import content_hash, parse_each, parse_one
from syncplane_common.errors import PermanentError

pytestmark = pytest.mark.unit


class Thing(BaseModel):
    id: StrictInt


def parse(item: dict[str, Any]) -> Thing:
    return Thing.model_validate(item)


def test_parse_each_keeps_order_and_sets_aside_what_does_not_fit() -> None:
    items: list[Any] = [{"id": 1}, "text", {"id": "2"}, None, {"id": 3}, [4]]
    parsed, invalid = parse_each(items, parse)
    assert parsed == [Thing(id=1), Thing(id=3)]
    assert invalid == ["text", {"id": "2"}, None, [4]]


def test_parse_each_lets_other_errors_through() -> None:
    def broken(item: dict[str, Any]) -> Thing:
        raise KeyError("a bug, not an odd record")

    with pytest.raises(KeyError):
        parse_each([{"id": 1}], broken)


def test_parse_one_is_permanent_with_the_validation_errors() -> None:
    assert parse_one({"id": 7}, parse, "thing 7") == Thing(id=7)
    with pytest.raises(PermanentError, match="thing 8 does not match the wire model") as caught:
        parse_one({"id": "8"}, parse, "thing 8")
    errors = caught.value.details["errors"]
    assert isinstance(errors, list)
    assert [e["loc"] for e in errors] == [("id",)]
    assert all("input" not in e for e in errors)


def test_content_hash_ignores_key_order_and_spacing_not_values() -> None:
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 1.5})
    assert content_hash({"id": 2**63}) != content_hash({"id": 2**63 + 1})
