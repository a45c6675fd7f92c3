"""Structured logs: one JSON object per line on stderr, with trace ids and secrets masked."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime

from opentelemetry import trace

__all__ = ["JsonFormatter", "SecretMaskFilter", "setup_logging"]

MASK = "***"
_SECRET_KEY = re.compile(r"token|secret|password|passwd|authorization|api_?key", re.IGNORECASE)
# Attributes every LogRecord carries; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class SecretMaskFilter(logging.Filter):
    """Replaces the values of secret-looking ``extra=`` keys, at any depth, with ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key in _extra_keys(record):
            value = getattr(record, key)
            setattr(record, key, MASK if _SECRET_KEY.search(key) else _mask(value))
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "service": self.service,
            "message": record.getMessage(),
        }
        entry.update(_trace_ids())
        entry.update({key: getattr(record, key) for key in _extra_keys(record)})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


class _JsonHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at emit time; its type marks it as ours."""

    # Looking stderr up per record (as logging.lastResort does) follows redirections,
    # e.g. pytest's capture, instead of writing to a stream closed behind our back.
    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def setup_logging(service: str, level: str) -> None:
    """Route every logger through one JSON handler on stderr; safe to call again."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _JsonHandler)]:
        root.removeHandler(handler)
    handler = _JsonHandler()
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(SecretMaskFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())


def _extra_keys(record: logging.LogRecord) -> list[str]:
    return [key for key in vars(record) if key not in _RECORD_ATTRS and not key.startswith("_")]


def _mask(value: object) -> object:
    if isinstance(value, Mapping):
        return {
            k: MASK if isinstance(k, str) and _SECRET_KEY.search(k) else _mask(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def _timestamp(created: float) -> str:
    stamp = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _trace_ids() -> dict[str, str]:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}
