"""The repository's copy of the providers' example payloads matches the shared original
(where the shared folder is present: a fresh clone elsewhere has only the copy)."""

from __future__ import annotations

import pytest

from tests.provider_payloads import PAYLOADS, SHARED

pytestmark = pytest.mark.unit


def test_the_copy_is_the_shared_original() -> None:
    copied = {p.name: p.read_bytes() for p in PAYLOADS.iterdir()}
    assert copied, f"no payloads in {PAYLOADS}"
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not on this machine; the repository's copy stands")
    shared = {p.name: p.read_bytes() for p in SHARED.iterdir() if p.is_file()}
    assert copied == shared, "refresh tests/fixtures/provider_payloads from the shared folder"
