"""The bench record's shape: latest.json keys, merge by name, the markdown table."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from bench import report
from bench.__main__ import run, select
from bench.report import Bench, Figure

pytestmark = pytest.mark.unit

MACHINE = {
    "cpu_count": 2,
    "cpu_model": "Test CPU",
    "memory_total_mb": 4096,
    "python": "3.11.7",
    "platform": "Linux-test",
}
FIGURE_KEYS = {
    "name",
    "value",
    "unit",
    "baseline_name",
    "baseline_value",
    "ratio",
    "target",
    "meets",
}


def rate(name: str, value: float, baseline: float = 1000.0) -> Figure:
    return Figure.compare(
        name, value, "msg/s", baseline_name="raw", baseline_value=baseline, at_least=0.6
    )


async def _no_figures() -> list[Figure]:
    return []


def test_compare_states_target_against_baseline() -> None:
    fast = rate("a", 700.0)
    slow = rate("b", 500.0)
    latency = Figure.compare(
        "p99", 4.0, "ms", baseline_name="raw p99", baseline_value=1.0, at_most=3.0
    )
    plain = Figure.compare("p50", 1.0, "ms", baseline_name="raw p50", baseline_value=2.0)

    assert (fast.ratio, fast.target, fast.meets) == (0.7, ">= 0.60 of baseline", True)
    assert (slow.ratio, slow.meets) == (0.5, False)
    assert (latency.ratio, latency.target, latency.meets) == (4.0, "<= 3.00x baseline", False)
    assert (plain.ratio, plain.target, plain.meets) == (0.5, report.REPORT_ONLY, True)


def test_compare_rounds_to_four_significant_digits() -> None:
    figure = rate("a", 12345.678, baseline=0.123456)
    assert (figure.value, figure.baseline_value) == (12350.0, 0.1235)


def test_compare_refuses_a_zero_baseline() -> None:
    with pytest.raises(ValueError, match="baseline"):
        rate("a", 1.0, baseline=0.0)


def test_write_json_has_exactly_the_documented_shape(tmp_path: Path) -> None:
    report.write([rate("bus.a", 700.0)], tmp_path, machine_info=MACHINE)

    document = json.loads((tmp_path / "latest.json").read_text())
    assert set(document) == {"machine", "figures"}
    assert document["machine"] == MACHINE
    [figure] = document["figures"]
    assert set(figure) == FIGURE_KEYS
    assert figure == {
        "name": "bus.a",
        "value": 700.0,
        "unit": "msg/s",
        "baseline_name": "raw",
        "baseline_value": 1000.0,
        "ratio": 0.7,
        "target": ">= 0.60 of baseline",
        "meets": True,
    }


def test_write_markdown_is_one_row_per_figure(tmp_path: Path) -> None:
    printed = report.write(
        [rate("bus.a", 700.0), rate("bus.b", 500.0)], tmp_path, machine_info=MACHINE
    )

    text = (tmp_path / "latest.md").read_text()
    assert text == printed
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert rows[0] == "| figure | value | baseline | ratio | target | meets |"
    assert rows[2] == (
        "| `bus.a` | 700 msg/s | 1,000 msg/s (raw) | 0.70 | >= 0.60 of baseline | yes |"
    )
    assert rows[3].endswith("| **no** |")
    assert len(rows) == 4


def test_load_reads_back_what_write_wrote(tmp_path: Path) -> None:
    figures = [rate("bus.a", 700.0), rate("bus.b", 500.0)]
    report.write(figures, tmp_path, machine_info=MACHINE)
    assert report.load(tmp_path) == figures


def test_load_of_a_missing_record_is_empty(tmp_path: Path) -> None:
    assert report.load(tmp_path) == []


def test_load_refuses_a_record_in_another_shape(tmp_path: Path) -> None:
    (tmp_path / "latest.json").write_text(
        json.dumps({"machine": {}, "figures": [{"name": "x", "value": 1}]})
    )
    with pytest.raises(TypeError):
        report.load(tmp_path)


def test_merge_replaces_by_name_in_place_and_appends_new() -> None:
    old = [rate("bus.a", 100.0), rate("bus.b", 200.0), rate("db.c", 300.0)]
    new = [rate("bus.b", 250.0), rate("http.d", 400.0)]

    merged = report.merge(old, new)

    assert [f.name for f in merged] == ["bus.a", "bus.b", "db.c", "http.d"]
    assert merged[1].value == 250.0


def test_a_partial_run_keeps_the_other_figures(tmp_path: Path) -> None:
    report.write([rate("bus.a", 100.0), rate("db.c", 300.0)], tmp_path, machine_info=MACHINE)
    report.write(
        report.merge(report.load(tmp_path), [rate("db.c", 350.0)]),
        tmp_path,
        machine_info=MACHINE,
    )
    assert [(f.name, f.value) for f in report.load(tmp_path)] == [
        ("bus.a", 100.0),
        ("db.c", 350.0),
    ]


def test_select_by_name_or_prefix() -> None:
    benches = [Bench("bus.a", _no_figures), Bench("bus.b", _no_figures), Bench("db", _no_figures)]

    assert [b.name for b in select([], benches)] == ["bus.a", "bus.b", "db"]
    assert [b.name for b in select(["bus"], benches)] == ["bus.a", "bus.b"]
    assert [b.name for b in select(["db", "bus.b"], benches)] == ["bus.b", "db"]
    with pytest.raises(LookupError, match="bu"):
        select(["bu"], benches)


async def test_a_crash_or_overrun_is_reported_and_the_rest_still_run() -> None:
    async def crashes() -> list[Figure]:
        raise RuntimeError("server gone")

    async def overruns() -> list[Figure]:
        await asyncio.sleep(10)
        return []

    async def measures() -> list[Figure]:
        return [rate("ok.a", 700.0)]

    figures, crashed = await run(
        [
            Bench("bad.crash", crashes),
            Bench("bad.slow", overruns, timeout=0.01),
            Bench("ok.a", measures),
        ]
    )

    assert [f.name for f in figures] == ["ok.a"]
    assert crashed == ["bad.crash", "bad.slow"]


def test_cpu_model_and_memory_parse_proc_files() -> None:
    assert report.cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n") == "AMD EPYC 7B13"
    assert report.cpu_model("Model\t\t: Raspberry Pi 4\n") == "Raspberry Pi 4"
    assert report.cpu_model("") is None
    assert report.memory_total_mb("MemTotal:        8388608 kB\nMemFree: 1 kB\n") == 8192
    assert report.memory_total_mb("") is None


def test_machine_names_no_host() -> None:
    info = report.machine()
    assert set(info) == set(MACHINE)
    assert socket.gethostname() not in json.dumps(info)
