"""AsyncAPI 3.0 documents of what each service says on NATS, generated from the code.

:mod:`subjects` (who publishes, consumes, serves and calls what) and :mod:`contracts`
(the payloads) are the source; ``docs/asyncapi/<service>.json`` is checked in, and a unit
test fails when it drifts. Regenerate with ``python -m syncplane_common.asyncapi``.
Spec: https://www.asyncapi.com/docs/reference/specification/v3.0.0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncplane_common import contracts, dlq, subjects
from syncplane_common.subjects import ConsumerDef, ServiceChannels, StreamDef

ASYNCAPI_VERSION = "3.0.0"
DOC_VERSION = "0.1.0"
DEFAULT_DIR = Path("docs/asyncapi")
REGENERATE = "python -m syncplane_common.asyncapi"

Json = dict[str, Any]

_WILDCARDS = {"*": "star", ">": "all"}
_DLQ_PATTERN = subjects.dead_letter(">")


def channel_key(subject: str) -> str:
    """``webhook.received.>`` -> ``webhook_received_all``: keys must be plain identifiers."""
    return "_".join(_WILDCARDS.get(token, token) for token in subject.split(".")).replace("-", "_")


def _pascal(key: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in key.split("_"))


def _ref(*path: str) -> Json:
    # JSON pointer escaping: channel keys never hold "/" or "~", message names neither.
    return {"$ref": "#/" + "/".join(path)}


def _stream(name: str) -> StreamDef:
    for stream in subjects.STREAMS:
        if stream.name == name:
            return stream
    raise LookupError(f"consumer bound to unknown stream {name!r}")


def _owner(subject: str) -> str:
    owners = [s.service for s in subjects.SERVICES if subject in s.replies]
    return owners[0] if owners else "the owning service"


def _merge(into: Json, new: Json, where: str) -> None:
    """Folds a second use of one address (published and consumed) into its channel."""
    for key, value in new.items():
        if key not in into:
            into[key] = value
        elif isinstance(into[key], dict) and isinstance(value, dict):
            _merge(into[key], value, f"{where}.{key}")
        elif key == "description" and value not in into[key]:
            into[key] = f"{into[key]} {value}"
        elif into[key] != value:
            raise ValueError(f"{where}.{key}: {into[key]!r} conflicts with {value!r}")


def _hoist_defs(schema: Json, schemas: dict[str, Json]) -> Json:
    """Moves pydantic's ``$defs`` into components.schemas and repoints their ``$ref``s."""
    for name, sub in schema.pop("$defs", {}).items():
        _put(schemas, name, _hoist_defs(sub, schemas))
    repointed: Json = _repoint(schema)
    return repointed


def _repoint(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: v.replace("#/$defs/", "#/components/schemas/")
            if k == "$ref" and isinstance(v, str)
            else _repoint(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_repoint(v) for v in node]
    return node


def _put(table: dict[str, Json], name: str, value: Json) -> None:
    if table.setdefault(name, value) != value:
        raise ValueError(f"two different components named {name!r}")


_JETSTREAM_HEADERS = {
    "type": "object",
    "properties": {
        dlq.MSG_ID: {
            "type": "string",
            "description": "Deterministic id: JetStream drops a repeat inside the stream's "
            "duplicate window, so a retried publish is stored once.",
        },
        "traceparent": {"type": "string", "description": "W3C trace context."},
    },
    "required": [dlq.MSG_ID],
}

_DEAD_LETTER_HEADERS = {
    "type": "object",
    "description": "The original headers (minus Nats-Expected-*) plus what went wrong.",
    "properties": {
        dlq.MSG_ID: {"type": "string", "description": "dlq:<stream>:<stream sequence>"},
        dlq.H_ERROR_TYPE: {"type": "string"},
        dlq.H_ERROR_CODE: {"type": "string", "description": "errors.SyncplaneError.code"},
        dlq.H_ERROR_MESSAGE: {"type": "string", "description": "One line, cut at 1000 chars."},
        dlq.H_DELIVERIES: {"type": "string"},
        dlq.H_ORIGINAL_SUBJECT: {"type": "string"},
        dlq.H_ORIGINAL_STREAM: {"type": "string"},
        dlq.H_ORIGINAL_SEQ: {"type": "string"},
        dlq.H_ORIGINAL_MSG_ID: {"type": "string"},
        dlq.H_CONSUMER: {"type": "string"},
        dlq.H_FAILED_AT: {"type": "string", "format": "date-time"},
    },
    "required": [
        dlq.MSG_ID,
        dlq.H_ERROR_TYPE,
        dlq.H_ERROR_CODE,
        dlq.H_ERROR_MESSAGE,
        dlq.H_DELIVERIES,
        dlq.H_ORIGINAL_SUBJECT,
        dlq.H_ORIGINAL_STREAM,
        dlq.H_ORIGINAL_SEQ,
        dlq.H_CONSUMER,
        dlq.H_FAILED_AT,
    ],
}


@dataclass
class _Document:
    service: ServiceChannels
    channels: dict[str, Json] = field(default_factory=dict)
    operations: dict[str, Json] = field(default_factory=dict)
    messages: dict[str, Json] = field(default_factory=dict)
    schemas: dict[str, Json] = field(default_factory=dict)

    # -- components ----------------------------------------------------------------------

    def contract_message(self, model: type[contracts.Contract], *, jetstream: bool) -> str:
        name = model.__name__
        schema = _hoist_defs(contracts.json_schema(model), self.schemas)
        _put(self.schemas, name, schema)
        message: Json = {
            "name": name,
            "title": name,
            "summary": schema.get("description", name),
            "contentType": "application/json",
            "payload": _ref("components", "schemas", name),
        }
        if jetstream:
            _put(self.schemas, "JetStreamHeaders", _JETSTREAM_HEADERS)
            message["headers"] = _ref("components", "schemas", "JetStreamHeaders")
        _put(self.messages, name, message)
        return name

    def placeholder_message(self, name: str, description: str) -> str:
        _put(self.schemas, name, {"type": "object", "description": description})
        _put(
            self.messages,
            name,
            {
                "name": name,
                "title": name,
                "summary": description,
                "contentType": "application/json",
                "payload": _ref("components", "schemas", name),
            },
        )
        return name

    def channel(self, key: str, body: Json, message_names: Sequence[str]) -> None:
        body = {
            **body,
            "messages": {m: _ref("components", "messages", m) for m in message_names},
        }
        if key in self.channels:
            _merge(self.channels[key], body, f"channels.{key}")
        else:
            self.channels[key] = body

    def operation(self, key: str, body: Json) -> None:
        if key in self.operations:
            raise ValueError(f"two operations named {key!r}")
        self.operations[key] = body

    # -- channels and operations ---------------------------------------------------------

    def publish(self, pattern: str) -> None:
        stream = subjects.stream_for(pattern)
        key = channel_key(pattern)
        name = self.contract_message(contracts.contract_for(pattern), jetstream=True)
        self.channel(
            key,
            {
                "address": pattern,
                "description": f"{stream.description} Published to JetStream stream "
                f"{stream.name}; every publish carries a Nats-Msg-Id and waits for the PubAck.",
                "x-jetstream": {"stream": stream.name, "retention": stream.retention},
            },
            [name],
        )
        self.operation(
            f"publish_{key}",
            {
                "action": "send",
                "channel": _ref("channels", key),
                "messages": [_ref("channels", key, "messages", name)],
            },
        )

    def consume(self, item: ConsumerDef) -> None:
        stream = _stream(item.stream)
        for pattern in item.filter_subjects:
            key = channel_key(pattern)
            name = self.contract_message(contracts.contract_for(pattern), jetstream=True)
            self.channel(
                key,
                {
                    "address": pattern,
                    "description": f"Durable consumer {item.durable} on {stream.name}: "
                    f"{item.description}",
                    "x-jetstream": {
                        "stream": stream.name,
                        "retention": stream.retention,
                        "durable": item.durable,
                        "max_deliver": item.max_deliver,
                        "ack_wait": item.ack_wait,
                        "max_ack_pending": item.max_ack_pending,
                    },
                },
                [name],
            )
            self.operation(
                f"consume_{channel_key(item.durable)}_{key}",
                {
                    "action": "receive",
                    "channel": _ref("channels", key),
                    "messages": [_ref("channels", key, "messages", name)],
                    "summary": "Explicit ack; failures are settled by the ack middleware "
                    "(docs/adr/0002-ack-and-retry-policy.md).",
                },
            )

    def dead_letters(self) -> None:
        key = channel_key(_DLQ_PATTERN)
        stream = subjects.stream_for(_DLQ_PATTERN)
        _put(self.schemas, "DeadLetterHeaders", _DEAD_LETTER_HEADERS)
        _put(
            self.schemas,
            "DeadLetterBody",
            {"description": "The original message body, byte for byte."},
        )
        _put(
            self.messages,
            "DeadLetter",
            {
                "name": "DeadLetter",
                "title": "DeadLetter",
                "summary": "A message that exhausted max_deliver or failed permanently, "
                "published to dlq.<original subject>.",
                "payload": _ref("components", "schemas", "DeadLetterBody"),
                "headers": _ref("components", "schemas", "DeadLetterHeaders"),
            },
        )
        self.channel(
            key,
            {
                "address": _DLQ_PATTERN,
                "description": f"{stream.description} Replay from the console republishes "
                "the body to the original subject under a new Nats-Msg-Id.",
                "x-jetstream": {"stream": stream.name, "retention": stream.retention},
            },
            ["DeadLetter"],
        )
        self.operation(
            "dead_letter",
            {
                "action": "send",
                "channel": _ref("channels", key),
                "messages": [_ref("channels", key, "messages", "DeadLetter")],
            },
        )

    def request_reply(self, subject: str, *, serves: bool) -> None:
        key = channel_key(subject)
        reply_key = f"{key}_reply"
        request, reply = self._request_reply_messages(subject, key)
        self.channel(
            key,
            {
                "address": subject,
                "description": "Core NATS request/reply, served by a queue group of "
                f"{_owner(subject)} so replicas share the load.",
                "x-reply": True,
            },
            [request],
        )
        self.channel(
            reply_key,
            {
                "address": None,
                "description": "The requester's inbox: the reply subject of the request.",
                "x-reply": True,
            },
            reply,
        )
        self.operation(
            f"{'reply' if serves else 'request'}_{key}",
            {
                "action": "receive" if serves else "send",
                "channel": _ref("channels", key),
                "messages": [_ref("channels", key, "messages", request)],
                "reply": {
                    "channel": _ref("channels", reply_key),
                    "messages": [_ref("channels", reply_key, "messages", m) for m in reply],
                },
            },
        )

    def _request_reply_messages(self, subject: str, key: str) -> tuple[str, list[str]]:
        error = self.contract_message(contracts.ErrorReply, jetstream=False)
        pending = f"the contract arrives with {_owner(subject)}'s issue."
        if subject in contracts.REQUESTS:
            ask, answer = contracts.REQUESTS[subject]
            request = self.contract_message(ask, jetstream=False)
            return request, [self.contract_message(answer, jetstream=False), error]
        request = self.placeholder_message(
            f"{_pascal(key)}Request", f"Request on {subject}; {pending}"
        )
        reply = self.placeholder_message(f"{_pascal(key)}Reply", f"Reply to {subject}; {pending}")
        return request, [reply, error]

    def build(self) -> Json:
        svc = self.service
        for pattern in svc.publishes:
            self.publish(pattern)
        for durable in svc.consumes:
            self.consume(subjects.consumer(durable))
        if svc.consumes:
            self.dead_letters()
        for subject in svc.replies:
            self.request_reply(subject, serves=True)
        for subject in svc.requests:
            self.request_reply(subject, serves=False)
        return {
            "asyncapi": ASYNCAPI_VERSION,
            "info": {
                "title": f"syncplane {svc.service}",
                "version": DOC_VERSION,
                "description": f"What {svc.service} publishes, consumes, serves and calls on "
                "NATS. Generated from syncplane_common.subjects and .contracts; do not edit, "
                f"run `{REGENERATE}`.",
            },
            "defaultContentType": "application/json",
            "servers": {
                "nats": {
                    "host": "localhost:4222",
                    "protocol": "nats",
                    "description": "Example: any NATS server with JetStream, as set by NATS_URL.",
                }
            },
            "channels": self.channels,
            "operations": self.operations,
            "components": {"messages": self.messages, "schemas": self.schemas},
        }


def document(service: str) -> Json:
    return _Document(subjects.service_channels(service)).build()


def render(doc: Json) -> str:
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name -> content, for every service."""
    return {f"{s.service}.json": render(document(s.service)) for s in subjects.SERVICES}


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(directory: Path) -> list[Path]:
    """Files that differ from, are missing from, or are not part of what would be written."""
    wanted = generate()
    out = [
        directory / name
        for name, text in wanted.items()
        if not (directory / name).is_file()
        or (directory / name).read_text(encoding="utf-8") != text
    ]
    if directory.is_dir():
        out += sorted(p for p in directory.glob("*.json") if p.name not in wanted)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m syncplane_common.asyncapi",
        description="Write (or with --check, verify) the AsyncAPI document of every service.",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if any file differs")
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    if args.check:
        differing = stale(args.directory)
        for path in differing:
            print(f"{path} is out of date; run `{REGENERATE}`", file=sys.stderr)
        return 1 if differing else 0
    for path in write_all(args.directory):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
