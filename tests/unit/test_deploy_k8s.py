"""deploy/k8s, validated offline: kustomize builds rendered here, every resource checked
against the Kubernetes schemas (kubernetes-validate, strict) or, for CRDs, their shape;
then what the issue asks of them, checked against the code they deploy.

CI has no cluster and no kustomize binary, so :func:`build` renders the subset of
kustomize these files use (resources, namespace, labels, configMapGenerator with
envs / files / literals / merge, images, strategic-merge patches by kind and name).
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from syncplane_common import bus, subjects
from syncplane_devstack import deploy_gen
from syncplane_devstack.stack import SERVICES, ServiceSpec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"
Resource = dict[str, Any]


# -- a small kustomize -----------------------------------------------------------------------


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge as these files use it: maps merge, lists of named maps merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(x, dict) and "name" in x for x in base + patch)
    ):
        merged = {x["name"]: x for x in base}
        for item in patch:
            merged[item["name"]] = _merge(merged.get(item["name"], {}), item)
        return list(merged.values())
    return copy.deepcopy(patch)


def _read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value
    return out


def _generate(item: dict[str, Any], folder: Path) -> Resource:
    data: dict[str, str] = {}
    for env in item.get("envs", []):
        data.update(_read_env(folder / env))
    for spec in item.get("files", []):
        key, _, rel = spec.rpartition("=")
        data[key or Path(rel).name] = (folder / rel).read_text()
    for literal in item.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": item["name"]},
        "data": data,
    }


def build(folder: Path) -> list[Resource]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            resources += build(path)
        else:
            resources += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for item in kustomization.get("configMapGenerator", []):
        generated = _generate(item, folder)
        if item.get("behavior") == "merge":
            target = _find(resources, "ConfigMap", item["name"])
            target["data"] = {**target.get("data", {}), **generated["data"]}
        else:
            resources.append(generated)
    for patch in kustomization.get("patches", []):
        body = yaml.safe_load((folder / patch["path"]).read_text())
        target = _find(resources, body["kind"], body["metadata"]["name"])
        target.update(_merge(target, body))
    for pairs in kustomization.get("labels", []):
        for resource in resources:
            labels = resource["metadata"].setdefault("labels", {})
            labels.update(pairs["pairs"])
    images = {i["name"]: i for i in kustomization.get("images", [])}
    for container in _containers(resources):
        name, _, tag = container["image"].partition(":")
        if name in images:
            new = images[name]
            container["image"] = f"{new.get('newName', name)}:{new.get('newTag', tag)}"
    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] != "Namespace":
                resource["metadata"]["namespace"] = kustomization["namespace"]
    return resources


def _find(resources: list[Resource], kind: str, name: str) -> Resource:
    for resource in resources:
        if resource["kind"] == kind and resource["metadata"]["name"] == name:
            return resource
    raise LookupError(f"no {kind} {name}")


def _pod_specs(resources: list[Resource]) -> Iterator[tuple[Resource, dict[str, Any]]]:
    for resource in resources:
        if resource["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield resource, resource["spec"]["template"]["spec"]


def _containers(resources: list[Resource]) -> Iterator[dict[str, Any]]:
    for _, pod in _pod_specs(resources):
        yield from pod.get("initContainers", [])
        yield from pod["containers"]


EXAMPLE = build(K8S / "overlays" / "example")
BASE = build(K8S / "base")
HPA = build(K8S / "autoscaling" / "hpa")
ALL = [*EXAMPLE, *HPA]


def _ids(resources: list[Resource]) -> list[str]:
    return [f"{r['kind']}/{r['metadata']['name']}" for r in resources]


# -- schemas -------------------------------------------------------------------------------

_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# The CRDs' fields these files use; additionalProperties false catches misspelt keys.
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "keda.sh/v1alpha1/ScaledObject": {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["scaleTargetRef", "triggers"],
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}},
                    },
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer"},
                    "cooldownPeriod": {"type": "integer"},
                    "advanced": {"type": "object"},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["type", "metadata"],
                            "properties": {
                                "type": {"type": "string"},
                                "name": {"type": "string"},
                                # KEDA refuses non-string metadata values
                                "metadata": _STR_MAP,
                                "authenticationRef": {"type": "object"},
                            },
                        },
                    },
                },
            }
        },
    },
    "monitoring.coreos.com/v1/PrometheusRule": {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["name", "rules"],
                            "properties": {
                                "name": {"type": "string"},
                                "interval": {"type": "string"},
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "required": ["expr"],
                                        "properties": {
                                            "alert": {"type": "string"},
                                            "record": {"type": "string"},
                                            "expr": {"type": "string"},
                                            "for": {"type": "string"},
                                            "labels": _STR_MAP,
                                            "annotations": _STR_MAP,
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            }
        },
    },
    "monitoring.coreos.com/v1/PodMonitor": {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["selector", "podMetricsEndpoints"],
                "properties": {
                    "selector": {"type": "object"},
                    "podMetricsEndpoints": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "interval": {"type": "string"},
                            },
                        },
                    },
                },
            }
        },
    },
}


@pytest.mark.parametrize("resource", ALL, ids=_ids(ALL))
def test_every_resource_is_valid_against_its_schema(resource: Resource) -> None:
    key = f"{resource['apiVersion']}/{resource['kind']}"
    if key in CRD_SCHEMAS:
        jsonschema.validate(resource, CRD_SCHEMAS[key])
    else:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_no_secret_is_defined_in_git() -> None:
    assert not [r for r in ALL if r["kind"] == "Secret"]
    for path in K8S.rglob("kustomization.yaml"):
        assert "secretGenerator" not in yaml.safe_load(path.read_text()), path


# -- the services --------------------------------------------------------------------------


def _deployment(resources: list[Resource], name: str) -> Resource:
    return _find(resources, "Deployment", name)


def _main_container(resource: Resource) -> dict[str, Any]:
    container: dict[str, Any] = resource["spec"]["template"]["spec"]["containers"][0]
    return container


def _config(resources: list[Resource]) -> dict[str, str]:
    data: dict[str, str] = _find(resources, "ConfigMap", "syncplane-config")["data"]
    return data


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_deployment_probes_resources_and_shutdown(spec: ServiceSpec) -> None:
    deployment = _deployment(EXAMPLE, spec.name)
    pod = deployment["spec"]["template"]["spec"]
    container = _main_container(deployment)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"][0]["containerPort"] == deploy_gen.HTTP_PORT
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert "memory" in container["resources"]["limits"]
    graceful = float(_config(EXAMPLE)["BROKER_GRACEFUL_TIMEOUT"])
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + graceful, (
        "Kubernetes would kill the pod before the broker drained its in-flight messages"
    )
    assert container["image"].startswith("registry.example.com/syncplane/")
    assert (
        _find(EXAMPLE, "PodDisruptionBudget", spec.name)["spec"]["selector"]["matchLabels"]
        == (deployment["spec"]["selector"]["matchLabels"])
    )


def _restricted(pod: dict[str, Any], container: dict[str, Any]) -> None:
    """The Pod Security 'restricted' standard the example namespace enforces."""
    pod_ctx, ctx = pod.get("securityContext", {}), container.get("securityContext", {})
    assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True
    assert ctx.get("runAsUser", pod_ctx.get("runAsUser", 1)) != 0
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {}))
    assert seccomp.get("type") in ("RuntimeDefault", "Localhost")
    assert ctx.get("readOnlyRootFilesystem") is True


def test_every_pod_meets_the_restricted_pod_security_standard() -> None:
    for resource, pod in _pod_specs(EXAMPLE):
        assert pod.get("automountServiceAccountToken") is False, resource["metadata"]["name"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            _restricted(pod, container)


def _provided(resources: list[Resource], container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Environment variable -> where its value comes from."""
    out: dict[str, dict[str, Any]] = {}
    for source in container.get("envFrom", []):
        for key in _find(resources, "ConfigMap", source["configMapRef"]["name"])["data"]:
            out[key] = {"configMap": source["configMapRef"]["name"]}
    for item in container.get("env", []):
        out[item["name"]] = item
    return out


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_every_setting_the_service_reads_is_configured(spec: ServiceSpec) -> None:
    provided = _provided(EXAMPLE, _main_container(_deployment(EXAMPLE, spec.name)))
    missing = sorted(set(deploy_gen.settings_of(spec)) - provided.keys())
    assert not missing, (
        f"{spec.name} reads {missing} but its Deployment does not set them: regenerate "
        "(python -m syncplane_devstack.deploy_gen --write) or add a secretKeyRef"
    )
    for name in deploy_gen.settings_of(spec):
        if deploy_gen.is_secret(name):
            ref = provided[name].get("valueFrom", {}).get("secretKeyRef", {})
            assert ref.get("name") == f"syncplane-{spec.name}", f"{name} must come from a Secret"
    secrets_given = {k for k, v in provided.items() if "valueFrom" in v} - {
        "NATS_PASSWORD",
        "PG_PASSWORD",
    }
    assert secrets_given <= set(deploy_gen.settings_of(spec)), "a secret it does not read"


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_each_service_connects_as_its_own_nats_user_and_postgres_role(spec: ServiceSpec) -> None:
    env = _provided(EXAMPLE, _main_container(_deployment(EXAMPLE, spec.name)))
    assert env["NATS_URL"]["value"] == f"nats://{spec.name}:$(NATS_PASSWORD)@nats:4222"
    assert spec.name in deploy_gen.nats_users()
    if spec.db_role is not None:
        assert env["DATABASE_URL"]["value"].startswith(
            f"postgresql://{spec.db_role}:$(PG_PASSWORD)@"
        )
    else:
        assert "DATABASE_URL" not in env


def test_config_map_holds_every_shared_setting_and_no_secret() -> None:
    data = _config(BASE)
    assert data == deploy_gen.shared_settings()
    assert not [k for k in data if deploy_gen.is_secret(k)]


def test_migrate_and_provision_jobs_run_the_syncplane_commands() -> None:
    migrate = _find(EXAMPLE, "Job", "syncplane-migrate")["spec"]["template"]["spec"]
    assert migrate["initContainers"][0]["command"][-1] == "/deploy/roles.sql"
    assert migrate["containers"][0]["command"] == ["python", "-m", "syncplane_devstack", "migrate"]
    roles = _find(EXAMPLE, "ConfigMap", "syncplane-postgres-roles")["data"]["roles.sql"]
    assert roles == (ROOT / deploy_gen.ROLES_SQL).read_text()
    provision = _find(EXAMPLE, "Job", "syncplane-provision")["spec"]["template"]["spec"]
    container = provision["containers"][0]
    assert container["command"] == ["python", "-m", "syncplane_devstack", "provision"]
    url = next(e["value"] for e in container["env"] if e["name"] == "NATS_URL")
    assert url.startswith(f"nats://{deploy_gen.PROVISIONER}:")


def test_nats_runs_the_generated_config_with_passwords_from_a_secret() -> None:
    conf = _find(EXAMPLE, "ConfigMap", "syncplane-nats-config")["data"]["nats.conf"]
    assert conf == deploy_gen.render_nats_conf()
    nats = _find(EXAMPLE, "StatefulSet", "nats")["spec"]["template"]["spec"]["containers"][0]
    assert nats["envFrom"] == [{"secretRef": {"name": "syncplane-nats"}}]
    for variable in deploy_gen.nats_password_variables():
        assert f"${variable}" in conf


# -- autoscaling ---------------------------------------------------------------------------


def _pull_batch() -> int:
    default: int = inspect.signature(bus.durable_subscriber).parameters["batch_size"].default
    return default


def test_keda_scales_sync_worker_on_its_exact_consumers() -> None:
    scaled = _find(EXAMPLE, "ScaledObject", "sync-worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "sync-worker"
    namespace = _deployment(EXAMPLE, "sync-worker")["metadata"]["namespace"]
    triggers = scaled["triggers"]
    for trigger in triggers:
        meta = trigger["metadata"]
        assert trigger["type"] == "nats-jetstream"
        consumer = subjects.consumer(meta["consumer"])  # a wrong name scales to the maximum
        assert consumer.stream == meta["stream"]
        assert consumer.service == "sync-worker"
        assert meta["account"] == "$G"  # nats.conf users live in the global account
        host, _, port = meta["natsServerMonitoringEndpoint"].partition(":")
        assert host == f"nats.{namespace}.svc.cluster.local", "KEDA must reach this namespace"
        assert port == "8222"
        in_flight = scaled["maxReplicaCount"] * _pull_batch()
        assert in_flight <= consumer.max_ack_pending, (
            f"{consumer.durable}: {scaled['maxReplicaCount']} replicas x batch "
            f"{_pull_batch()} exceed max_ack_pending {consumer.max_ack_pending}"
        )
    work = {"sync-worker-requests", "sync-worker-webhooks"}
    assert {t["metadata"]["consumer"] for t in triggers} == work


def test_hpa_alternative_uses_the_same_consumers() -> None:
    hpa = _find(HPA, "HorizontalPodAutoscaler", "sync-worker")["spec"]
    scaled = _find(EXAMPLE, "ScaledObject", "sync-worker")["spec"]
    assert hpa["maxReplicas"] == scaled["maxReplicaCount"]
    for metric in hpa["metrics"]:
        labels = metric["external"]["metric"]["selector"]["matchLabels"]
        consumer = subjects.consumer(labels["consumer_name"])
        assert consumer.stream == labels["stream_name"]
        assert consumer.service == "sync-worker"


def test_sync_worker_replicas_are_left_to_the_autoscaler() -> None:
    assert "replicas" not in _deployment(EXAMPLE, "sync-worker")["spec"]


# -- network -------------------------------------------------------------------------------


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_network_policies_let_each_service_reach_exactly_its_dependencies() -> None:
    policies = [r for r in EXAMPLE if r["kind"] == "NetworkPolicy"]
    deny = _find(policies, "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {}
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]

    def egress_ports(labels: dict[str, str]) -> set[int]:
        return {
            port["port"]
            for policy in policies
            if _selects(policy["spec"]["podSelector"], labels)
            for rule in policy["spec"].get("egress", [])
            for port in rule.get("ports", [])
        }

    for spec in SERVICES:
        labels = _deployment(EXAMPLE, spec.name)["spec"]["template"]["metadata"]["labels"]
        ports = egress_ports(labels)
        assert {53, 4222} <= ports, spec.name
        assert (5432 in ports) == (spec.db_role is not None), spec.name
        assert (443 in ports) == (spec.name != "webhook-gateway"), spec.name
    nats_labels = _find(EXAMPLE, "StatefulSet", "nats")["spec"]["template"]["metadata"]["labels"]
    assert egress_ports(nats_labels) == {53}


def test_images_are_pinned_and_the_base_names_what_the_dockerfile_builds() -> None:
    for container in _containers(EXAMPLE):
        image = container["image"]
        assert not image.endswith(":latest"), image
        assert re.match(r"^[\w./-]+:[\w.-]+$", image), image


# -- sizing and operations ----------------------------------------------------------------


def _max_replicas(resources: list[Resource], name: str) -> int:
    for resource in resources:
        if (
            resource["kind"] == "ScaledObject"
            and resource["spec"]["scaleTargetRef"]["name"] == name
        ):
            count: int = resource["spec"]["maxReplicaCount"]
            return count
    replicas: int = _deployment(resources, name)["spec"].get("replicas", 1)
    return replicas


def test_database_connections_at_full_scale_fit_max_connections() -> None:
    allowed = int(
        _find(EXAMPLE, "Service", "postgres")["metadata"]["annotations"][
            "syncplane.io/max-connections"
        ]
    )
    total = 1  # the migrate job
    for spec in SERVICES:
        if spec.db_role is None:
            continue
        env = _provided(EXAMPLE, _main_container(_deployment(EXAMPLE, spec.name)))
        pool = env["DB_POOL_MAX_SIZE"].get("value") or _config(EXAMPLE)["DB_POOL_MAX_SIZE"]
        total += _max_replicas(EXAMPLE, spec.name) * int(pool)
    reserved = 3  # Postgres' superuser_reserved_connections
    assert total + reserved <= allowed, f"{total} connections at full scale, {allowed} allowed"


def test_readme_tells_which_secrets_to_create() -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    wanted: set[tuple[str, str]] = set()
    for container in _containers(EXAMPLE):
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                wanted.add((ref["name"], ref["key"]))
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                for variable in deploy_gen.nats_password_variables():
                    wanted.add((source["secretRef"]["name"], variable))
    for name, key in sorted(wanted):
        command = f"kubectl create secret generic {name} "
        assert command in readme, f"deploy/README.md does not say to create Secret {name}"
        block = readme[readme.index(command) :].split("\n\n", 1)[0]
        assert f"{key}=" in block, f"deploy/README.md: Secret {name} lacks key {key}"
