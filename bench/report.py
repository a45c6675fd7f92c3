"""The bench record: figures beside the baseline measured in the same run.

``bench/results/latest.json`` is what the repository keeps, in exactly this shape::

    {"machine": {...},
     "figures": [{"name", "value", "unit", "baseline_name", "baseline_value",
                  "ratio", "target", "meets"}, ...]}

``latest.md`` is the same figures as a markdown table. Absolute numbers move with the
machine; the ratio to a baseline taken on the same server in the same run is the figure
that means something, so every target is stated against the baseline.
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
JSON_NAME = "latest.json"
MARKDOWN_NAME = "latest.md"
REPORT_ONLY = "report only"


@dataclass(frozen=True)
class Figure:
    """One measured number, its baseline, and whether the ratio meets the target."""

    name: str
    value: float
    unit: str
    baseline_name: str
    baseline_value: float
    ratio: float
    target: str
    meets: bool

    @classmethod
    def compare(
        cls,
        name: str,
        value: float,
        unit: str,
        *,
        baseline_name: str,
        baseline_value: float,
        at_least: float | None = None,
        at_most: float | None = None,
    ) -> Figure:
        """``ratio = value / baseline``; ``at_least`` suits rates, ``at_most`` latencies."""
        if baseline_value <= 0:
            raise ValueError(f"{name}: baseline {baseline_name} measured {baseline_value}")
        if at_least is not None and at_most is not None:
            raise ValueError("a figure has one bound: at_least or at_most")
        ratio = value / baseline_value
        if at_least is not None:
            target, meets = f">= {at_least:.2f} of baseline", ratio >= at_least
        elif at_most is not None:
            target, meets = f"<= {at_most:.2f}x baseline", ratio <= at_most
        else:
            target, meets = REPORT_ONLY, True
        return cls(
            name=name,
            value=_significant(value),
            unit=unit,
            baseline_name=baseline_name,
            baseline_value=_significant(baseline_value),
            ratio=round(ratio, 3),
            target=target,
            meets=meets,
        )


BenchFn = Callable[[], Awaitable[list[Figure]]]


@dataclass(frozen=True)
class Bench:
    """A registered measurement: ``python -m bench NAME`` runs it (or ``PREFIX`` of it)."""

    name: str
    run: BenchFn
    timeout: float = 60.0

    def selected_by(self, names: Iterable[str]) -> bool:
        return any(self.name == n or self.name.startswith(f"{n}.") for n in names)


def _significant(value: float, digits: int = 4) -> float:
    # Four significant digits is already finer than the run-to-run noise of a 2-core box;
    # more would only make every rerun a diff in latest.json.
    return float(f"{value:.{digits}g}")


# -- the machine ---------------------------------------------------------------------------


def cpu_model(cpuinfo: str) -> str | None:
    # x86 says "model name"; many ARM kernels only say "Model" (or nothing at all).
    for key in ("model name", "Model", "cpu model", "Hardware"):
        found = re.search(rf"^{key}\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
        if found:
            return found.group(1).strip()
    return None


def memory_total_mb(meminfo: str) -> int | None:
    found = re.search(r"^MemTotal:\s*(\d+)\s*kB", meminfo, re.MULTILINE)
    return int(found.group(1)) // 1024 if found else None


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    """What the figures were measured on; no hostname, so the record can be committed."""
    # The CPUs this process may run on, not the host's count: containers pin fewer.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_count": cpus,
        "cpu_model": cpu_model(_read("/proc/cpuinfo")) or platform.processor() or None,
        "memory_total_mb": memory_total_mb(_read("/proc/meminfo")),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# -- reading, merging, writing -------------------------------------------------------------


def merge(existing: Sequence[Figure], new: Sequence[Figure]) -> list[Figure]:
    """Figures of ``new`` replace those of the same name in place; the rest are appended."""
    fresh = {figure.name: figure for figure in new}
    merged = [fresh.pop(figure.name, figure) for figure in existing]
    return merged + [figure for figure in new if figure.name in fresh]


def load(directory: Path = RESULTS) -> list[Figure]:
    path = directory / JSON_NAME
    if not path.exists():
        return []
    # Strict on purpose: a record in another shape is a bug to fix, not a file to patch up.
    return [Figure(**item) for item in json.loads(path.read_text())["figures"]]


def document(figures: Sequence[Figure], machine_info: Mapping[str, Any]) -> dict[str, Any]:
    return {"machine": dict(machine_info), "figures": [asdict(figure) for figure in figures]}


def _number(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def markdown(figures: Sequence[Figure], machine_info: Mapping[str, Any]) -> str:
    memory = machine_info.get("memory_total_mb")
    lines = [
        "# Bench results",
        "",
        f"Machine: {machine_info.get('cpu_count')} CPU ({machine_info.get('cpu_model')}), "
        f"{memory if memory is not None else '?'} MB, Python {machine_info.get('python')}, "
        f"{machine_info.get('platform')}.",
        "",
        "| figure | value | baseline | ratio | target | meets |",
        "|---|---:|---|---:|---|---|",
    ]
    for f in figures:
        lines.append(
            f"| `{f.name}` | {_number(f.value)} {f.unit} "
            f"| {_number(f.baseline_value)} {f.unit} ({f.baseline_name}) "
            f"| {f.ratio:.2f} | {f.target} | {'yes' if f.meets else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def write(
    figures: Sequence[Figure],
    directory: Path = RESULTS,
    *,
    machine_info: Mapping[str, Any] | None = None,
) -> str:
    """Write ``latest.json`` and ``latest.md``; returns the markdown."""
    info = machine() if machine_info is None else machine_info
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document(figures, info), indent=2) + "\n"
    (directory / JSON_NAME).write_text(text)
    table = markdown(figures, info)
    (directory / MARKDOWN_NAME).write_text(table)
    return table


README = Path(__file__).parent.parent / "README.md"
README_BEGIN = "<!-- bench:begin -->"
README_END = "<!-- bench:end -->"


def readme_block(directory: Path = RESULTS) -> str:
    """The README's performance table: latest.md without its title."""
    table = (directory / MARKDOWN_NAME).read_text()
    return table.split("\n", 2)[2].strip()


def render_readme(readme_text: str, directory: Path = RESULTS) -> str:
    start = readme_text.index(README_BEGIN) + len(README_BEGIN)
    end = readme_text.index(README_END)
    return readme_text[:start] + "\n" + readme_block(directory) + "\n" + readme_text[end:]


def update_readme(readme: Path = README, directory: Path = RESULTS) -> None:
    readme.write_text(render_readme(readme.read_text(), directory))
