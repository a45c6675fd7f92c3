"""The generated AsyncAPI documents, and the subject/stream/consumer invariants behind them."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from syncplane_common import asyncapi, contracts, subjects

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs" / "asyncapi"


def captures(pattern: str, inner: str) -> bool:
    """Every subject ``inner`` can match is matched by ``pattern``.

    ``subject_matches`` reads the wildcards of ``inner`` as plain tokens, which is right
    for ``*`` but not for a trailing ``>``: only a ``>`` in ``pattern`` covers that.
    """
    return subjects.subject_matches(pattern, inner) and (
        not inner.endswith(">") or pattern.endswith(">")
    )


def overlap(a: str, b: str) -> bool:
    """Some subject matches both patterns."""
    ta, tb = a.split("."), b.split(".")
    for x, y in itertools.zip_longest(ta, tb):
        if x is None or y is None:
            return False
        if ">" in (x, y):
            return True
        if "*" not in (x, y) and x != y:
            return False
    return True


def example(pattern: str) -> str:
    return pattern.replace(">", "strava.activity").replace("*", "strava")


def published() -> list[str]:
    return sorted({p for s in subjects.SERVICES for p in s.publishes})


def request_reply() -> list[str]:
    return sorted({r for s in subjects.SERVICES for r in (*s.replies, *s.requests)})


def load(service: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DOCS / f"{service}.json").read_text(encoding="utf-8"))
    return doc


def addresses(doc: dict[str, Any]) -> set[str]:
    return {c["address"] for c in doc["channels"].values() if c["address"] is not None}


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        assert isinstance(node, dict), f"{ref} does not resolve"
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


SERVICE_NAMES = [s.service for s in subjects.SERVICES]


# -- the checked-in documents ----------------------------------------------------------------


def test_checked_in_docs_are_what_the_generator_writes() -> None:
    fix = f"run `{asyncapi.REGENERATE}` and commit docs/asyncapi"
    for name, text in asyncapi.generate().items():
        path = DOCS / name
        assert path.is_file(), f"{path} is missing: {fix}"
        assert path.read_text(encoding="utf-8") == text, f"{path} is out of date: {fix}"
    assert asyncapi.stale(DOCS) == [], f"stale files in {DOCS}: {fix}"


def test_check_mode_names_a_drifted_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert asyncapi.main([str(tmp_path)]) == 0
    assert asyncapi.main(["--check", str(tmp_path)]) == 0
    (tmp_path / "token-service.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "retired-service.json").write_text("{}\n", encoding="utf-8")
    capsys.readouterr()

    assert asyncapi.main(["--check", str(tmp_path)]) == 1

    err = capsys.readouterr().err
    assert "token-service.json" in err
    assert "retired-service.json" in err
    assert "sync-worker.json" not in err


def test_write_all_writes_one_file_per_service(tmp_path: Path) -> None:
    written = asyncapi.write_all(tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(f"{s}.json" for s in SERVICE_NAMES)


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_every_subject_of_a_service_is_a_channel_of_its_doc(service: str) -> None:
    svc = subjects.service_channels(service)
    have = addresses(load(service))
    filters = [f for d in svc.consumes for f in subjects.consumer(d).filter_subjects]
    for subject in (*svc.publishes, *svc.requests, *svc.replies, *filters):
        assert subject in have, f"{subject} missing from docs/asyncapi/{service}.json"
    if svc.consumes:
        assert subjects.dead_letter(">") in have


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_doc_is_structurally_valid(service: str) -> None:
    doc = load(service)
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == f"syncplane {service}"
    assert doc["servers"]["nats"]["protocol"] == "nats"
    for key in (*doc["channels"], *doc["operations"]):
        assert key.isidentifier(), key
    for ref in refs(doc):
        resolve(doc, ref)
    for name, op in doc["operations"].items():
        assert op["action"] in ("send", "receive"), name
        channel = op["channel"]["$ref"]
        assert channel.startswith("#/channels/")
        # AsyncAPI 3: an operation's messages are a subset of its channel's.
        for message in op["messages"]:
            assert message["$ref"].startswith(channel + "/messages/"), name
        if "reply" in op:
            reply_channel = op["reply"]["channel"]["$ref"]
            for message in op["reply"]["messages"]:
                assert message["$ref"].startswith(reply_channel + "/messages/"), name
    for message in doc["components"]["messages"].values():
        assert "$ref" in message["payload"]


def test_request_reply_with_contract_documents_both_messages() -> None:
    doc = load("sync-worker")
    operation = doc["operations"]["request_token_get"]
    assert {"$ref": "#/channels/token_get/messages/TokenGet"} in operation["messages"]
    reply = operation["reply"]["messages"]
    assert {"$ref": "#/channels/token_get_reply/messages/TokenGetReply"} in reply
    assert {"$ref": "#/channels/token_get_reply/messages/ErrorReply"} in reply
    assert "min_valid_seconds" in doc["components"]["schemas"]["TokenGet"]["properties"]


def test_sync_worker_replies_document_their_contracts() -> None:
    doc = load("sync-worker")
    reply = doc["operations"]["reply_data_query"]["reply"]
    assert {"$ref": "#/channels/data_query_reply/messages/DataReply"} in reply["messages"]
    assert {"$ref": "#/channels/data_query_reply/messages/ErrorReply"} in reply["messages"]
    assert "force_refresh" in doc["components"]["schemas"]["DataQuery"]["properties"]


def test_every_request_reply_subject_has_a_contract() -> None:
    """A subject served without a contract would be documented as an untyped object;
    every owner has published its request and reply models."""
    served = {subject for service in subjects.SERVICES for subject in service.replies}
    assert served - set(contracts.REQUESTS) == set()
    for service in subjects.SERVICES:
        doc = load(service.service)
        for subject in service.replies:
            name = subject.replace(".", "_")
            reply = doc["operations"][f"reply_{name}"]["reply"]
            assert {"$ref": f"#/channels/{name}_reply/messages/ErrorReply"} in reply["messages"]


# -- subjects, streams and consumers ---------------------------------------------------------


@pytest.mark.parametrize("item", subjects.CONSUMERS, ids=lambda c: c.durable)
def test_consumer_filters_are_captured_by_its_stream(item: subjects.ConsumerDef) -> None:
    [stream] = [s for s in subjects.STREAMS if s.name == item.stream]
    for pattern in item.filter_subjects:
        assert any(captures(s, pattern) for s in stream.subjects), (item.durable, pattern)


@pytest.mark.parametrize("pattern", published())
def test_published_pattern_is_captured_by_exactly_one_stream(pattern: str) -> None:
    owners = [s for s in subjects.STREAMS if any(captures(p, pattern) for p in s.subjects)]
    assert len(owners) == 1, (pattern, [s.name for s in owners])
    assert subjects.stream_for(pattern) == owners[0]
    assert subjects.stream_for(example(pattern)) == owners[0]


def test_no_two_streams_overlap() -> None:
    for a, b in itertools.combinations(subjects.STREAMS, 2):
        for x, y in itertools.product(a.subjects, b.subjects):
            assert not overlap(x, y), f"{a.name} {x} overlaps {b.name} {y}"


def test_consumers_of_a_workqueue_stream_do_not_overlap() -> None:
    # A work-queue stream refuses a second consumer whose filter overlaps the first.
    for stream in (s for s in subjects.STREAMS if s.retention == "workqueue"):
        bound = [c for c in subjects.CONSUMERS if c.stream == stream.name]
        for a, b in itertools.combinations(bound, 2):
            for x, y in itertools.product(a.filter_subjects, b.filter_subjects):
                assert not overlap(x, y), f"{a.durable} {x} overlaps {b.durable} {y}"


@pytest.mark.parametrize("subject", request_reply())
def test_request_reply_subjects_are_not_stored_by_a_stream(subject: str) -> None:
    # A stream capturing a request would answer it with a PubAck before the service does.
    for stream in subjects.STREAMS:
        assert not any(overlap(p, subject) for p in stream.subjects), (subject, stream.name)


@pytest.mark.parametrize("item", subjects.CONSUMERS, ids=lambda c: c.durable)
def test_dead_letters_of_a_consumer_land_in_dlq(item: subjects.ConsumerDef) -> None:
    for pattern in item.filter_subjects:
        assert subjects.stream_for(subjects.dead_letter(example(pattern))) is subjects.DLQ


@pytest.mark.parametrize(
    "pattern",
    published() + sorted({f for c in subjects.CONSUMERS for f in c.filter_subjects}),
)
def test_published_and_consumed_patterns_have_a_contract(pattern: str) -> None:
    assert issubclass(contracts.contract_for(example(pattern)), contracts.Contract)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("a.>", "a.b", True),
        ("a.>", "a", False),
        ("a.*", "a.b.c", False),
        ("a.*.c", "a.b.*", True),
        ("a.b", "a.c", False),
        ("sync.requested.>", "sync.progress.>", False),
    ],
)
def test_overlap_helper(a: str, b: str, expected: bool) -> None:
    assert overlap(a, b) is expected
    assert overlap(b, a) is expected


@pytest.mark.parametrize(
    ("pattern", "inner", "expected"),
    [
        ("a.>", "a.b.>", True),
        ("a.*", "a.>", False),
        ("a.*", "a.*", True),
        ("a.b", "a.*", False),
    ],
)
def test_captures_helper(pattern: str, inner: str, expected: bool) -> None:
    assert captures(pattern, inner) is expected


@pytest.mark.parametrize(
    ("subject", "key"),
    [
        ("webhook.received.>", "webhook_received_all"),
        ("connection.*.google_calendar", "connection_star_google_calendar"),
        ("sync-worker-requests", "sync_worker_requests"),
    ],
)
def test_channel_key(subject: str, key: str) -> None:
    assert asyncapi.channel_key(subject) == key
