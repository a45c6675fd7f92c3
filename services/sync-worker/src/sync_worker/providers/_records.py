"""What the provider clients share: reading records into wire models, the content hash
that decides whether a stored row changes, and the page the cursor-paginated clients
(WHOOP, Google Fit) yield to the sync engine.

A page is ``(items, next_cursor)`` plus a little more. ``next_cursor`` is the session
checkpoint to store *in the same transaction as this page's rows*: a small JSON-able dict
that the client's ``resume`` takes back. Each client module documents its cursor. On the
last page of a run ``is_last`` is true; ``next_cursor`` is then ``None``, unless the
provider hands out a cursor for the *next* run (Google Fit's sessions sync token).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from pydantic import ValidationError
from syncplane_common.errors import PermanentError

__all__ = ["Cursor", "CursorPage", "content_hash", "parse_each", "parse_one"]

T = TypeVar("T")
U = TypeVar("U")

Cursor: TypeAlias = dict[str, Any]


@dataclass(frozen=True, slots=True)
class CursorPage(Generic[T, U]):
    """One page: the parsed ``items``, where to go on, and what else the answer said.

    ``invalid`` holds raw items that did not match the wire model, so the caller counts
    them as failed instead of losing the page to one odd record. ``deleted`` names records
    the provider reports as gone (Google Fit's ``deletedSession``). ``usage`` is the
    provider's rate usage as of this answer, when it sends one.
    """

    items: tuple[T, ...]
    next_cursor: Cursor | None
    is_last: bool
    invalid: tuple[Any, ...] = ()
    deleted: tuple[str, ...] = ()
    usage: U | None = None


def content_hash(value: Mapping[str, Any] | list[Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of a decoded payload.

    Key order and whitespace are how a provider happens to serialize, not content, so they
    must not make a row look changed; values (ints exact, floats by shortest repr) are.
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def parse_each(
    items: Iterable[Any], parse: Callable[[dict[str, Any]], T]
) -> tuple[list[T], list[Any]]:
    """The items of a page that parse, and the raw ones that do not (not an object, or
    not the wire model), so one odd record is counted as failed instead of costing the
    rest of its page."""
    parsed: list[T] = []
    invalid: list[Any] = []
    for item in items:
        if not isinstance(item, dict):
            invalid.append(item)
            continue
        try:
            parsed.append(parse(item))
        except ValidationError:
            invalid.append(item)
    return parsed, invalid


def parse_one(item: dict[str, Any], parse: Callable[[dict[str, Any]], T], what: str) -> T:
    """The one record a get asked for; one that does not match the wire model will not
    match on a retry either, so it is a :class:`PermanentError` naming ``what``."""
    try:
        return parse(item)
    except ValidationError as err:
        raise PermanentError(
            f"{what} does not match the wire model",
            details={"errors": err.errors(include_url=False, include_input=False)},
        ) from err
