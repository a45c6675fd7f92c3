"""Finding migration files and deciding which to apply: no database involved."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from syncplane_common.migrations import MigrationError, discover, pending
from syncplane_common.migrations_registry import service_migrations

pytestmark = pytest.mark.unit


def write(directory: Path, name: str, sql: str = "SELECT 1;") -> Path:
    path = directory / name
    path.write_text(sql, encoding="utf-8")
    return path


def test_orders_by_version_and_hashes_the_bytes(tmp_path: Path) -> None:
    write(tmp_path, "0010_later.sql", "SELECT 10;")
    first = write(tmp_path, "0002_first.sql", "SELECT 2;")

    found = discover(tmp_path)

    assert [(m.version, m.name) for m in found] == [(2, "0002_first.sql"), (10, "0010_later.sql")]
    assert found[0].path == first
    assert found[0].checksum == hashlib.sha256(b"SELECT 2;").hexdigest()


def test_empty_directory_has_no_migrations(tmp_path: Path) -> None:
    assert discover(tmp_path) == []


def test_skips_dotfiles_and_subdirectories(tmp_path: Path) -> None:
    write(tmp_path, "0001_init.sql")
    write(tmp_path, ".gitkeep", "")
    (tmp_path / "__pycache__").mkdir()

    assert [m.name for m in discover(tmp_path)] == ["0001_init.sql"]


@pytest.mark.parametrize(
    "name",
    [
        "init.sql",
        "001_init.sql",
        "00001_init.sql",
        "0001_Init.sql",
        "0001-init.sql",
        "0001_.sql",
        "0001_init.SQL",
        "0001_init.sql.bak",
        "0001_init.sq",
        "README.md",
    ],
)
def test_refuses_badly_named_files(tmp_path: Path, name: str) -> None:
    write(tmp_path, "0001_ok.sql")
    write(tmp_path, name)

    with pytest.raises(MigrationError, match=r"NNNN_lower_snake\.sql") as info:
        discover(tmp_path)
    assert name in str(info.value)


def test_refuses_duplicate_versions(tmp_path: Path) -> None:
    write(tmp_path, "0001_init.sql")
    write(tmp_path, "0001_other.sql")

    with pytest.raises(MigrationError, match=r"0001_init\.sql and 0001_other\.sql share version 1"):
        discover(tmp_path)


def test_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="does not exist"):
        discover(tmp_path / "nope")


def test_pending_skips_applied_and_keeps_order(tmp_path: Path) -> None:
    for name in ("0001_a.sql", "0002_b.sql", "0003_c.sql"):
        write(tmp_path, name, name)
    found = discover(tmp_path)

    todo = pending("svc", found, {1: found[0].checksum, 3: found[2].checksum})

    assert [m.name for m in todo] == ["0002_b.sql"]


def test_pending_ignores_versions_the_directory_no_longer_has(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql")
    found = discover(tmp_path)

    assert pending("svc", found, {1: found[0].checksum, 2: "from-a-newer-image"}) == []


def test_pending_refuses_an_edited_applied_file(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql", "edited")
    found = discover(tmp_path)

    with pytest.raises(MigrationError) as info:
        pending("svc", found, {1: hashlib.sha256(b"original").hexdigest()})

    message = str(info.value)
    assert "svc" in message
    assert "0001_a.sql was edited after being applied" in message
    assert "add a new numbered file instead" in message


def test_every_service_ships_a_valid_first_migration() -> None:
    targets = service_migrations()

    assert [service for service, _ in targets] == ["token-service", "sync-worker", "calendar-sync"]
    for _, directory in targets:
        assert discover(directory)[0].name == "0001_init.sql"
