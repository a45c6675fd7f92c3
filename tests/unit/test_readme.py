"""The README stays true: its settings table is what the code reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from syncplane_devstack import settings_doc
from syncplane_devstack.stack import SERVICES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_readme_settings_table_matches_the_settings_classes() -> None:
    readme = (ROOT / "README.md").read_text()
    assert settings_doc.render(readme) == readme, (
        "README settings table is stale: run "
        "`.venv/bin/python -m syncplane_devstack.settings_doc --write README.md`"
    )


def test_every_setting_has_a_description() -> None:
    for spec in SERVICES:
        for name, info in spec.settings.model_fields.items():
            assert info.description, f"{spec.name}: setting {name.upper()} is undocumented"


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make up" in readme
    assert "make test" in readme


def test_readme_performance_table_matches_latest_bench_results() -> None:
    from bench import report

    readme = (ROOT / "README.md").read_text()
    assert report.render_readme(readme) == readme, (
        "README performance table is stale: `make bench` (or "
        "`.venv/bin/python -c 'from bench import report; report.update_readme()'`) rewrites it"
    )
