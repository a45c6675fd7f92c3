"""Every metric an active alerting rule names is exported by some service's real /metrics.

The four services run as the processes `python -m <package>` the images run, each with
the settings it needs; /metrics answers before NATS or Postgres are reachable, so they
are pointed at closed ports. Rules in `syncplane-pending-*` groups wait for issues that
add their metrics and are not checked here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import urllib3
from prometheus_client.parser import text_string_to_metric_families
from syncplane_devstack.embedded import free_port
from syncplane_devstack.secrets import dev_secrets
from syncplane_devstack.stack import SERVICES, service_env

from tests.unit.test_deploy_alerts import active_metric_names

pytestmark = pytest.mark.integration

HTTP = urllib3.PoolManager(timeout=urllib3.Timeout(total=2.0), retries=False)
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
}


def exported_names(text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + s for s in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def _scrape(url: str, proc: subprocess.Popen[bytes], deadline: float) -> str:
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"exited with {proc.returncode}:\n{out[-2000:]}")
        try:
            resp = HTTP.request("GET", url)
            if resp.status == 200:
                return str(resp.data.decode())
        except urllib3.exceptions.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} never answered")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def scraped() -> Iterator[dict[str, set[str]]]:
    closed = free_port()  # nothing listens: dependencies are down, /metrics still answers
    procs: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    try:
        for spec in SERVICES:
            port = free_port()
            values = {
                **dev_secrets({}),
                "NATS_URL": f"nats://127.0.0.1:{closed}",
                "DATABASE_URL": f"postgresql://x@127.0.0.1:{closed}/x",
                "HTTP_HOST": "127.0.0.1",
                "HTTP_PORT": str(port),
                "LOG_LEVEL": "WARNING",
                "BROKER_GRACEFUL_TIMEOUT": "1",
            }
            env = service_env(spec, dict(os.environ), values)
            proc = subprocess.Popen(
                [sys.executable, "-m", spec.module],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            procs[spec.name] = (f"http://127.0.0.1:{port}/metrics", proc)
        deadline = time.monotonic() + 30
        yield {
            name: exported_names(_scrape(url, proc, deadline))
            for name, (url, proc) in procs.items()
        }
    finally:
        for _, proc in procs.values():
            proc.terminate()
        for _, proc in procs.values():
            try:
                # A service still connecting to an unreachable NATS does not stop on
                # SIGTERM (runtime: broker.start() is not raced against the stop event).
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def test_every_active_rule_metric_is_exported(scraped: dict[str, set[str]]) -> None:
    exported = set().union(*scraped.values())
    missing = sorted(active_metric_names() - exported)
    assert not missing, f"rules alert on metrics no service exports: {missing}"


def test_every_service_exports_the_runtime_metrics(scraped: dict[str, set[str]]) -> None:
    for service, names in scraped.items():
        assert {"syncplane_ready", "syncplane_process_start_time_seconds"} <= names, service
