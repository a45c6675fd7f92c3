"""The README's configuration table, generated from the settings classes themselves.

``python -m syncplane_devstack.settings_doc`` prints it; ``--write README.md`` replaces
the block between the markers, and a test fails when the README falls behind the code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic_core import PydanticUndefined

from syncplane_devstack.stack import SERVICES

BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"

SHORT = {
    "webhook-gateway": "gateway",
    "token-service": "token",
    "sync-worker": "sync",
    "calendar-sync": "calendar",
}


def table() -> str:
    rows: dict[str, tuple[str, str, list[str]]] = {}
    for spec in SERVICES:
        for name, info in spec.settings.model_fields.items():
            key = name.upper()
            if info.default is PydanticUndefined:
                default = "**required**"
            elif info.default == "":
                default = "(empty)"
            else:
                default = f"`{info.default}`"
            description = (info.description or "").replace("|", "\\|")
            if key in rows:
                rows[key][2].append(SHORT[spec.name])
            else:
                rows[key] = (default, description, [SHORT[spec.name]])
    lines = ["| setting | default | read by | meaning |", "| --- | --- | --- | --- |"]
    for key in sorted(rows):
        default, description, readers = rows[key]
        lines.append(f"| `{key}` | {default} | {', '.join(readers)} | {description} |")
    return "\n".join(lines)


def render(readme: str) -> str:
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[:start] + "\n" + table() + "\n" + readme[end:]


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--write", type=Path, help="README to update in place")
    ns = args.parse_args()
    if ns.write:
        ns.write.write_text(render(ns.write.read_text()))
    else:
        sys.stdout.write(table() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
