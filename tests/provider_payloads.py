"""The providers' real example payloads (../shared/providers/payloads), kept in the
repository so a fresh clone anywhere has what the contract tests compare against;
tests/unit/test_provider_payloads.py keeps the copy equal to the shared original."""

from __future__ import annotations

from pathlib import Path

PAYLOADS = Path(__file__).parent / "fixtures" / "provider_payloads"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "providers" / "payloads"
