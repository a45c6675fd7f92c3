"""The alerting rules parse as PromQL, cover what the robust-sync design asks to alert on,
and keep the rules on not-yet-exported metrics apart, in groups that name their issue.

Which metrics exist is checked against the services' real /metrics in
tests/integration/test_deploy_metrics.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RULES: list[dict[str, Any]] = yaml.safe_load(
    (ROOT / "deploy" / "prometheus" / "syncplane.rules.yml").read_text()
)["groups"]
PENDING = "syncplane-pending-"


def metric_names(expr: str) -> set[str]:
    """Every metric an expression selects, from the parsed PromQL (not a regex)."""
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def active_metric_names() -> set[str]:
    return {
        name
        for group in RULES
        if not group["name"].startswith(PENDING)
        for rule in group["rules"]
        for name in metric_names(rule["expr"])
    }


ALL_RULES = [(group["name"], rule) for group in RULES for rule in group["rules"]]


@pytest.mark.parametrize(("group", "rule"), ALL_RULES, ids=[r["alert"] for _, r in ALL_RULES])
def test_every_rule_is_valid_promql_with_severity_and_summary(
    group: str, rule: dict[str, Any]
) -> None:
    assert metric_names(rule["expr"]), f"{rule['alert']} selects no metric"
    assert rule["labels"]["severity"] in ("warning", "critical")
    assert rule["annotations"]["summary"]
    if "for" in rule:
        promql_parser.parse_duration(rule["for"])
    assert all(name.startswith("syncplane_") for name in metric_names(rule["expr"])), group


def test_the_design_alerts_are_all_there() -> None:
    alerts = {rule["alert"] for _, rule in ALL_RULES}
    assert {
        "SyncplaneSyncFailureRateHigh",  # > 5% of syncs fail
        "SyncplaneSyncSlow",  # > twice the usual duration
        "SyncplaneProviderQuotaHigh",  # > 80% of a provider quota
        "SyncplaneDatabasePoolExhausted",
        "SyncplaneDeadLettersGrowing",
        "SyncplaneWebhookRejectionsSpiking",
    } <= alerts
    failure = next(r for _, r in ALL_RULES if r["alert"] == "SyncplaneSyncFailureRateHigh")
    assert "> 0.05" in failure["expr"]
    quota = next(r for _, r in ALL_RULES if r["alert"] == "SyncplaneProviderQuotaHigh")
    assert "> 0.8" in quota["expr"]
    slow = next(r for _, r in ALL_RULES if r["alert"] == "SyncplaneSyncSlow")
    assert "> 2 *" in slow["expr"]


def test_pending_groups_say_what_they_wait_for() -> None:
    text = (ROOT / "deploy" / "prometheus" / "syncplane.rules.yml").read_text()
    for group in RULES:
        if group["name"].startswith(PENDING):
            block = text[text.index(f"- name: {group['name']}") :]
            assert "waiting for" in block.splitlines()[1], group["name"]
    assert active_metric_names(), "at least one active group"
