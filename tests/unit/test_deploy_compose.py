"""docker-compose.yml and the Dockerfile, checked without a container engine: the compose
file against the compose-spec schema, then what running it needs (health checks, start
order by conditions, no secret literal, scalable workers, every setting present); the
Dockerfile with hadolint. The generated parts must match the code that generates them.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from syncplane_devstack import deploy_gen
from syncplane_devstack.stack import SERVICES, ServiceSpec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _vendored_compose_schema() -> Path:
    # check-jsonschema ships the compose-spec schema; found without importing the CLI
    spec = importlib.util.find_spec("check_jsonschema")
    assert spec is not None
    assert spec.submodule_search_locations
    package = Path(next(iter(spec.submodule_search_locations)))
    return package / "builtin_schemas" / "vendor" / "compose-spec.json"


COMPOSE_SCHEMA = _vendored_compose_schema()
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SVC: dict[str, dict[str, Any]] = COMPOSE["services"]
JOBS = {"db-roles", "migrate", "provision"}
REFERENCE = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(:?[-?][^}]*)?\}$")


def test_generated_deploy_files_are_current() -> None:
    stale = deploy_gen.stale_files()
    assert not stale, (
        f"{[str(p) for p in stale]} fell behind the code: "
        "run `.venv/bin/python -m syncplane_devstack.deploy_gen --write`"
    )


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.validate(COMPOSE, schema)


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in SVC.items():
        if name in JOBS:
            assert service["restart"] == "no", name
            continue
        check = service.get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), name


def test_dependencies_are_conditions_on_health_or_completed_jobs() -> None:
    for name, service in SVC.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must use conditions"
        for dependency, rule in depends.items():
            assert dependency in SVC, f"{name} depends on unknown {dependency}"
            expected = "service_completed_successfully" if dependency in JOBS else "service_healthy"
            assert rule["condition"] == expected, f"{name} -> {dependency}"
    for spec in SERVICES:
        depends = SVC[spec.name]["depends_on"]
        assert {"nats", "provision"} <= depends.keys(), spec.name
        if spec.db_role is not None:
            assert {"postgres", "migrate"} <= depends.keys(), spec.name
    assert SVC["migrate"]["depends_on"]["db-roles"]["condition"] == (
        "service_completed_successfully"
    )


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping"
    return {k: str(v) for k, v in env.items()}


def _is_credential(name: str) -> bool:
    return deploy_gen.is_secret(name) or "PASSWORD" in name


def test_no_secret_literal_anywhere() -> None:
    for name, service in SVC.items():
        for key, value in _environment(service).items():
            if _is_credential(key):
                assert REFERENCE.match(value), f"{name}: {key} must be a ${{...}} reference"
            credentials = re.match(r"^\w+://([^:@/]+):([^@]+)@", value)
            if credentials:
                assert REFERENCE.match(credentials.group(2)), f"{name}: {key} embeds a password"
    required = {f"${{{v}:?" for v in deploy_gen.nats_password_variables()}
    text = (ROOT / "docker-compose.yml").read_text()
    assert all(ref in text for ref in required), "NATS passwords are required references"


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_every_setting_the_service_reads_is_in_its_environment(spec: ServiceSpec) -> None:
    env = _environment(SVC[spec.name])
    reads = set(deploy_gen.settings_of(spec))
    missing = sorted(reads - env.keys())
    assert not missing, (
        f"{spec.name} reads {missing}: regenerate (deploy_gen --write) or add them to its "
        "environment in docker-compose.yml"
    )
    foreign = {k for k in env if _is_credential(k)} - reads
    assert not foreign, f"{spec.name} is handed credentials it does not read: {foreign}"
    assert env["NATS_URL"].startswith(f"nats://{spec.name}:${{")
    if spec.db_role is None:
        assert "DATABASE_URL" not in env
    else:
        assert env["DATABASE_URL"].startswith(f"postgresql://{spec.db_role}:${{")


def test_workers_scale_by_construction() -> None:
    for name, service in SVC.items():
        assert "container_name" not in service, f"{name}: a fixed name prevents --scale"
    assert "ports" not in SVC["sync-worker"]
    published = {n for n, s in SVC.items() if s.get("ports")}
    assert published == {"webhook-gateway", "nats", "provider-sandbox"}
    for name in ("nats", "provider-sandbox"):
        assert all(str(p).startswith("127.0.0.1:") for p in SVC[name]["ports"]), name


def test_shutdown_grace_exceeds_the_brokers_drain() -> None:
    graceful = float(deploy_gen.shared_settings()["BROKER_GRACEFUL_TIMEOUT"])
    for spec in SERVICES:
        grace = SVC[spec.name]["stop_grace_period"]
        assert grace.endswith("s")
        assert float(grace[:-1]) > graceful, spec.name


def test_images_build_each_service_package_and_run_its_module() -> None:
    for spec in SERVICES:
        build = SVC[spec.name]["build"]
        assert build["dockerfile"] == "deploy/docker/Dockerfile"
        assert build["args"]["MODULE"] == spec.module
        assert (ROOT / "services" / build["args"]["PACKAGE"] / "pyproject.toml").exists()
    for job in ("migrate", "provision"):
        assert SVC[job]["command"][:3] == ["python", "-m", "syncplane_devstack"]
        assert SVC[job]["build"]["args"]["PACKAGE"] == "syncplane-devstack"
    sandbox = SVC["provider-sandbox"]
    assert sandbox["profiles"] == ["sandbox"]
    assert sandbox["command"][:3] == ["python", "-m", "provider_sandbox"]


def test_nats_runs_the_generated_config_and_the_jobs_use_their_own_credentials() -> None:
    nats = SVC["nats"]
    assert "./deploy/nats/nats.conf:/etc/nats/nats.conf:ro" in nats["volumes"]
    assert set(_environment(nats)) == set(deploy_gen.nats_password_variables())
    assert _environment(SVC["provision"])["NATS_URL"].startswith("nats://provisioner:${")
    roles = _environment(SVC["db-roles"])
    assert {f"PG_PASSWORD_{s.db_role.upper()}" for s in SERVICES if s.db_role} <= roles.keys()
    assert "./deploy/postgres/roles.sql:/deploy/roles.sql:ro" in SVC["db-roles"]["volumes"]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_is_multi_stage_uv_no_dev_non_root_with_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) == 2
    syncs = re.findall(r"uv sync [^\n]*", text)
    assert syncs
    assert all("--frozen" in s and "--no-dev" in s and '--package "${PACKAGE}"' in s for s in syncs)
    assert re.search(r"^USER 10001", text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n.*/readyz", text, re.M)
    assert "COPY --from=build /app/.venv /app/.venv" in text
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[1] == "*", "the build context starts from nothing"
