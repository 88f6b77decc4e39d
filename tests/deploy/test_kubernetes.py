"""deploy/kubernetes: every manifest passes strict schema validation (offline, bundled schemas), the pods keep
their security settings, the objects refer to each other correctly, the policies are valid, and the overlays
change what they should. The rendered overlays (kubectl from the test extras) are checked too, here and in
test_k8s_*.py."""

from __future__ import annotations

import copy
import re
import socket
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ccweb.cli import parser
from ccweb.config import ROLE_ARN, parse_config
from deploy.k8s import BASE, COMPONENTS, KUBE, OVERLAY, OVERLAYS, Object, Peer, Pod, admits, main_container, rel, render

KUSTOMIZATIONS = [BASE, *OVERLAYS]
COMPONENT_DIRS = sorted(d for d in COMPONENTS.iterdir() if (d / "kustomization.yaml").is_file())
KUBERNETES_VERSION = "1.33"  # the schemas kubernetes-validate bundles for this version (EKS standard support)
CUSTOM_KINDS = {"monitoring.coreos.com/v1": {"PodMonitor", "ServiceMonitor", "PrometheusRule"}}
"""Custom resources (no bundled schema): test_k8s_monitoring.py checks their structure."""
CLUSTER_SCOPED = {"Namespace", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
IRSA = "eks.amazonaws.com/role-arn"


def load(path: Path) -> Object:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{rel(path)}: not a mapping"
    return data


def kustomization(directory: Path) -> Object:
    return load(directory / "kustomization.yaml")


def manifest_files(directory: Path) -> list[Path]:
    """The whole Kubernetes objects a kustomization reads: its resource files (patches are checked as part of
    the rendered output)."""
    return [directory / r for r in kustomization(directory).get("resources", []) if (directory / r).is_file()]


def patch_files(directory: Path) -> list[Path]:
    return [directory / p["path"] for p in kustomization(directory).get("patches", [])]


def generator_files(directory: Path) -> dict[str, Path]:
    """configMapGenerator files: ConfigMap key → file."""
    found = {}
    for generator in kustomization(directory).get("configMapGenerator", []):
        for entry in generator.get("files", []):
            key, _, name = entry.rpartition("=")
            found[key or PurePosixPath(name).name] = directory / name
    return found


def objects(path: Path) -> list[Object]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def one(directory: Path, kind: str) -> Object:
    """The one object of ``kind`` among a kustomization's resources and strategic-merge patches."""
    files = manifest_files(directory) + [p for p in patch_files(directory) if isinstance(load_any(p), dict)]
    (found,) = [o for path in files for o in objects(path) if o["kind"] == kind]
    return found


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation must work offline: any connection attempt fails the test."""

    def refuse(*args: object) -> None:
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def validate(obj: Object) -> None:
    if obj["kind"] in CUSTOM_KINDS.get(obj["apiVersion"], set()):
        return
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError as exc:  # the CLI only warns about these
        pytest.fail(exc.message)


# -- every file, strictly -----------------------------------------------------------------------------------

MANIFESTS = [f for d in [*KUSTOMIZATIONS, *COMPONENT_DIRS] for f in manifest_files(d)]


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("path", MANIFESTS, ids=[rel(p) for p in MANIFESTS])
def test_manifest_passes_strict_validation(path: Path) -> None:
    docs = objects(path)
    assert docs, f"{rel(path)} is empty"
    for obj in docs:
        validate(obj)


@pytest.mark.usefixtures("no_network")
def test_strict_validation_refuses_a_misspelt_field() -> None:
    deployment = copy.deepcopy(one(BASE, "Deployment"))
    pod = deployment["spec"]["template"]["spec"]
    pod["securityContext"]["runAsNonRoot"] = pod["securityContext"].pop("runAsNonRoot")
    pod["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_yaml_file_is_a_manifest_a_patch_a_kustomization_or_a_policy() -> None:
    known = {p.resolve() for p in MANIFESTS}
    for directory in [*KUSTOMIZATIONS, *COMPONENT_DIRS]:
        known |= {(directory / "kustomization.yaml").resolve()}
        known |= {p.resolve() for p in generator_files(directory).values()}
        known |= {p.resolve() for p in patch_files(directory)}
    known |= {(d / "policy-cases.yaml").resolve() for d in OVERLAYS}  # test-policy's cases (tests/deploy elsewhere)
    stray = sorted(rel(p) for p in KUBE.rglob("*.y*ml") if p.resolve() not in known)
    assert not stray, f"not part of any kustomization, so never validated: {stray}"


# -- the kustomizations -------------------------------------------------------------------------------------

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "namespace", "labels", "resources", "components", "patches", "images",
                      "configMapGenerator"}
"""No ``replicas``: the HPA owns the count."""


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=[rel(d) for d in KUSTOMIZATIONS])
def test_kustomization_structure(directory: Path) -> None:
    spec = kustomization(directory)
    assert spec["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and spec["kind"] == "Kustomization"
    assert set(spec) <= KUSTOMIZATION_KEYS, f"unexpected keys (or deprecated ones): {set(spec) - KUSTOMIZATION_KEYS}"
    for resource in spec.get("resources", []):
        target = directory / resource
        assert target.is_file() or (target / "kustomization.yaml").is_file(), f"{rel(directory)}: {resource}"
    for component in spec.get("components", []):
        assert (directory / component).resolve() in {d.resolve() for d in COMPONENT_DIRS}, component
    for patch in spec.get("patches", []):
        assert set(patch) <= {"path", "target"} and (directory / patch["path"]).is_file()
        if isinstance(load_any(directory / patch["path"]), list):  # a JSON patch names its target
            assert set(patch["target"]) <= {"kind", "name"} and patch["target"]["kind"], patch
    for generator in spec.get("configMapGenerator", []):
        assert all((directory / f.rpartition("=")[2]).is_file() for f in generator["files"])


def load_any(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("directory", COMPONENT_DIRS, ids=[d.name for d in COMPONENT_DIRS])
def test_component_structure(directory: Path) -> None:
    spec = kustomization(directory)
    assert spec["apiVersion"] == "kustomize.config.k8s.io/v1alpha1" and spec["kind"] == "Component"
    assert set(spec) <= {"apiVersion", "kind", "labels", "resources", "patches"}, set(spec)
    for resource in spec.get("resources", []):
        assert (directory / resource).is_file(), resource
    for patch in spec.get("patches", []):
        assert set(patch) <= {"path", "target"} and (directory / patch["path"]).is_file()
        operations = load_any(directory / patch["path"])
        if isinstance(operations, list):  # JSON 6902: a test first, so a patch never lands on another rule
            assert all(set(op) <= {"op", "path", "value"} for op in operations), patch


# -- the policies -------------------------------------------------------------------------------------------

POLICIES = [generator_files(d)["policy.yaml"] for d in KUSTOMIZATIONS]


@pytest.mark.parametrize("path", POLICIES, ids=[rel(p) for p in POLICIES])
def test_policy_is_valid(path: Path) -> None:
    config = parse_config(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert config.rules


def test_the_policy_configmap_is_mounted_where_the_service_reads_it() -> None:
    (generator,) = kustomization(BASE)["configMapGenerator"]
    pod = one(BASE, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config = PurePosixPath(next(e["value"] for e in container["env"] if e["name"] == "CCWEB_CONFIG"))
    assert config.name in generator_files(BASE)
    (volume,) = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") == generator["name"]]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert PurePosixPath(mount["mountPath"]) == config.parent and mount["readOnly"] is True
    assert "subPath" not in mount, "a subPath mount never sees an updated ConfigMap"


# -- the pod's security -------------------------------------------------------------------------------------


def effective(pod: Object, container: Object, key: str) -> Any:
    """A security setting as the container gets it: its own, else the pod's."""
    own = container.get("securityContext", {})
    return own[key] if key in own else pod.get("securityContext", {}).get(key)


def cpu(quantity: str | int) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory(quantity: str | int) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"([0-9.]+)([KMG]i?)?", str(quantity))
    assert match, quantity
    return float(match[1]) * units.get(match[2] or "", 1)


def _resources(pod: Object, c: Object) -> bool:
    requests, limits = c.get("resources", {}).get("requests", {}), c.get("resources", {}).get("limits", {})
    return (set(requests) >= {"cpu", "memory"} and set(limits) >= {"cpu", "memory"}
            and cpu(requests["cpu"]) <= cpu(limits["cpu"]) and memory(requests["memory"]) <= memory(limits["memory"]))


def _tmp_is_writable(pod: Object, c: Object) -> bool:
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    return any(m["mountPath"] == "/tmp" and m["name"] in empty_dirs for m in c.get("volumeMounts", []))


def _probe(kind: str, path: str) -> Callable[[Object, Object], bool]:
    def check(pod: Object, c: Object) -> bool:
        get = c.get(kind, {}).get("httpGet", {})
        ports = {p["name"] for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
        return get.get("path") == path and get.get("port") in ports
    return check


SECURITY: dict[str, Callable[[Object, Object], bool]] = {
    "runAsNonRoot": lambda pod, c: effective(pod, c, "runAsNonRoot") is True,
    "not-uid-0": lambda pod, c: effective(pod, c, "runAsUser") not in (0, "0"),
    "allowPrivilegeEscalation-false": lambda pod, c: effective(pod, c, "allowPrivilegeEscalation") is False,
    "not-privileged": lambda pod, c: effective(pod, c, "privileged") in (None, False),
    "readOnlyRootFilesystem": lambda pod, c: effective(pod, c, "readOnlyRootFilesystem") is True,
    "capabilities-drop-ALL": lambda pod, c: (
        "ALL" in (effective(pod, c, "capabilities") or {}).get("drop", [])
        and not (effective(pod, c, "capabilities") or {}).get("add")
    ),
    "seccomp-RuntimeDefault": lambda pod, c: (
        (effective(pod, c, "seccompProfile") or {}).get("type") == "RuntimeDefault"
    ),
    "no-host-namespaces": lambda pod, c: not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")),
    "no-hostPath": lambda pod, c: not any("hostPath" in v for v in pod.get("volumes", [])),
    "tmp-emptyDir": _tmp_is_writable,
    "requests-and-limits": _resources,
}
PROBES: dict[str, Callable[[Object, Object], bool]] = {  # the service's container (a sidecar on loopback has none)
    "readiness-on-readyz": _probe("readinessProbe", "/readyz"),
    "liveness-on-healthz": _probe("livenessProbe", "/healthz"),
}


def findings(deployment: Object) -> list[str]:
    pod = deployment["spec"]["template"]["spec"]
    containers = pod["containers"] + pod.get("initContainers", [])
    found = [f"{c['name']}: {name}" for c in containers for name, check in SECURITY.items() if not check(pod, c)]
    service = main_container(deployment)
    return found + [f"ccweb: {name}" for name, check in PROBES.items() if not check(pod, service)]


@pytest.mark.parametrize("check", [*SECURITY.values(), *PROBES.values()], ids=[*SECURITY, *PROBES])
def test_base_pod_keeps(check: Callable[[Object, Object], bool]) -> None:
    pod = one(BASE, "Deployment")["spec"]["template"]["spec"]
    for container in pod["containers"]:
        assert check(pod, container), container["name"]


def _drop(*keys: str) -> Callable[[Object], None]:
    def edit(deployment: Object) -> None:
        pod = deployment["spec"]["template"]["spec"]
        for holder in (pod, pod["containers"][0]):
            target = holder
            for key in keys[:-1]:
                target = target.get(key, {})
            target.pop(keys[-1], None)
    return edit


def _set(*keys: str, value: Any) -> Callable[[Object], None]:
    def edit(deployment: Object) -> None:
        target = deployment["spec"]["template"]["spec"]["containers"][0]
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value
    return edit


MUTATIONS = {
    "runAsNonRoot-dropped": _drop("securityContext", "runAsNonRoot"),
    "root-user": _set("securityContext", "runAsUser", value=0),
    "privilege-escalation": _set("securityContext", "allowPrivilegeEscalation", value=True),
    "writable-root": _drop("securityContext", "readOnlyRootFilesystem"),
    "a-capability-added": _set("securityContext", "capabilities", value={"drop": ["ALL"], "add": ["NET_ADMIN"]}),
    "seccomp-unconfined": _set("securityContext", "seccompProfile", value={"type": "Unconfined"}),
    "no-limits": _drop("resources", "limits"),
    "readiness-dropped": _drop("readinessProbe"),
    "liveness-on-readyz": _set("livenessProbe", "httpGet", "path", value="/readyz"),
}


@pytest.mark.parametrize("mutate", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_a_weakened_pod_is_caught(mutate: Callable[[Object], None]) -> None:
    deployment = copy.deepcopy(one(BASE, "Deployment"))
    assert findings(deployment) == []
    mutate(deployment)
    assert findings(deployment)


# -- the objects fit together -------------------------------------------------------------------------------


def pod_labels() -> dict[str, str]:
    deployment = one(BASE, "Deployment")
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    return labels


def test_the_deployment_runs_the_images_command_on_its_port() -> None:
    deployment = one(BASE, "Deployment")
    assert "replicas" not in deployment["spec"], "the HPA owns the count: a fixed one is reset by every apply"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = parser().parse_args(container["args"])
    assert args.command == "serve" and args.config is None
    assert args.host == "0.0.0.0"  # noqa: S104 - in a pod, the service listens on all its interfaces
    (port,) = [p for p in container["ports"] if p["name"] == "http"]
    assert port["containerPort"] == args.port == 8080  # the image's EXPOSE and HEALTHCHECK


def test_pods_spread_over_zones_and_nodes() -> None:
    pod = one(BASE, "Deployment")["spec"]["template"]["spec"]
    spreads = pod.get("topologySpreadConstraints", [])
    assert {s["topologyKey"] for s in spreads} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert all(s["labelSelector"]["matchLabels"].items() <= pod_labels().items() for s in spreads)


def test_service_account_is_annotated_for_irsa_and_used() -> None:
    account = one(BASE, "ServiceAccount")
    assert ROLE_ARN.fullmatch(account["metadata"]["annotations"][IRSA])
    assert one(BASE, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_service_selects_the_pods_and_targets_the_named_port() -> None:
    service = one(BASE, "Service")
    assert service["spec"]["selector"].items() <= pod_labels().items()
    (container,) = one(BASE, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= {p["name"] for p in container["ports"]}


def test_hpa_scales_the_deployment_from_two_replicas() -> None:
    hpa = one(BASE, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    deployment = one(BASE, "Deployment")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_pdb_keeps_pods_up_but_lets_nodes_drain() -> None:
    pdb = one(BASE, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels().items()
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable", 0) < 2


def test_network_policy_admits_the_api_port_and_lets_out_only_dns_and_https() -> None:
    policy = one(BASE, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels().items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    (container,) = one(BASE, "Deployment")["spec"]["template"]["spec"]["containers"]
    api = {p["name"] for p in container["ports"]} | {p["containerPort"] for p in container["ports"]}
    assert all(p["port"] in api for rule in policy["ingress"] for p in rule["ports"])
    egress = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert egress == {(53, "UDP"), (53, "TCP"), (443, "TCP")}
    (dns,) = [rule for rule in policy["egress"] if any(p["port"] == 53 for p in rule["ports"])]
    assert dns.get("to"), "DNS goes to the cluster's resolver only"


# -- /metrics: on a port of its own, scraped by Prometheus, reachable from the monitoring namespace only -----

MONITORING = "monitoring"


NOT_MONITORING = {  # who must not reach the metrics port
    "a pod of another namespace": Peer("10.40.40.7", "default", {"app": "anything"}),
    "a pod of the same namespace": Peer("10.40.40.8", "ccweb", {"app": "anything"}),
    "an address outside the cluster": Peer("203.0.113.9"),
    "an address in the VPC": Peer("10.40.0.10"),
}
PROMETHEUS = Peer("10.40.50.5", MONITORING, {"app.kubernetes.io/name": "prometheus"})


def scrape_findings(docs: list[Object]) -> list[str]:
    """What is wrong with how ``docs`` (a Deployment, its Service and NetworkPolicies) expose ``/metrics``."""
    (deployment,) = [o for o in docs if o["kind"] == "Deployment"]
    (service,) = [o for o in docs if o["kind"] == "Service" and o["metadata"]["name"] == "ccweb"]  # the API's
    policies = [o for o in docs if o["kind"] == "NetworkPolicy"]
    template = deployment["spec"]["template"]
    container = main_container(deployment)
    args = parser().parse_args(container["args"])
    found = []
    metrics = [p for p in container["ports"] if p["name"] == "metrics"]
    if args.metrics_port is None or args.metrics_port == args.port:
        return ["serve has no --metrics-port of its own: /metrics is on the API's port"]
    if args.metrics_host not in (None, "0.0.0.0"):  # noqa: S104 - Prometheus scrapes the pod's address
        found.append(f"--metrics-host {args.metrics_host}: Prometheus cannot reach it at the pod's address")
    if [p["containerPort"] for p in metrics] != [args.metrics_port]:
        return [*found, "no container port named metrics is --metrics-port"]
    annotations = template["metadata"].get("annotations", {})
    wanted = {"prometheus.io/scrape": "true", "prometheus.io/port": str(args.metrics_port),
              "prometheus.io/path": "/metrics"}
    found += [f"pod annotation {k}: {annotations.get(k)!r}, not {v!r}" for k, v in wanted.items()
              if annotations.get(k) != v]
    found += [f"the Service exposes {p['targetPort']}" for p in service["spec"]["ports"]
              if p["targetPort"] in (metrics[0]["name"], args.metrics_port)]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    pod = Pod(deployment["metadata"].get("namespace", "ccweb"), template["metadata"]["labels"], ports)
    found += [f"the NetworkPolicies admit the metrics port from {who}" for who, peer in NOT_MONITORING.items()
              if admits(policies, pod, "Ingress", peer, args.metrics_port)]
    if not admits(policies, pod, "Ingress", PROMETHEUS, args.metrics_port):
        found.append("the NetworkPolicies keep Prometheus (the monitoring namespace) from the metrics port")
    return found


def base_objects() -> list[Object]:
    return [copy.deepcopy(one(BASE, kind)) for kind in ("Deployment", "Service", "NetworkPolicy")]


def test_prometheus_scrapes_the_metrics_port_which_only_the_monitoring_namespace_reaches() -> None:
    assert scrape_findings(base_objects()) == []


def _container(docs: list[Object]) -> Object:
    container: Object = docs[0]["spec"]["template"]["spec"]["containers"][0]
    return container


def _metrics_args(*args: str) -> Callable[[list[Object]], None]:
    """Replace the container's --metrics-* arguments (the last ones) with ``args``."""
    def edit(docs: list[Object]) -> None:
        given = _container(docs)["args"]
        given[given.index("--metrics-port"):] = args
    return edit


def _annotate(docs: list[Object]) -> None:
    docs[0]["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] = "8080"


def _expose(docs: list[Object]) -> None:
    docs[1]["spec"]["ports"].append({"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"})


def _open_ingress(docs: list[Object]) -> None:
    for rule in docs[2]["spec"]["ingress"]:
        rule.pop("from", None)


def _all_ports(docs: list[Object]) -> None:
    docs[2]["spec"]["ingress"][0].pop("ports")


def _any_namespace(docs: list[Object]) -> None:
    for rule in docs[2]["spec"]["ingress"]:
        for peer in rule.get("from", []):
            peer["namespaceSelector"] = {}


SCRAPE_MUTATIONS = {
    "metrics-on-the-api-port": _metrics_args(),
    "metrics-on-loopback": _metrics_args("--metrics-port", "9090", "--metrics-host", "127.0.0.1"),
    "another-metrics-port": _metrics_args("--metrics-port", "9191"),
    "annotation-on-the-api-port": _annotate,
    "service-exposes-metrics": _expose,
    "metrics-from-anywhere": _open_ingress,
    "api-rule-admits-every-port": _all_ports,
    "metrics-from-every-namespace": _any_namespace,
}


@pytest.mark.parametrize("mutate", SCRAPE_MUTATIONS.values(), ids=SCRAPE_MUTATIONS.keys())
def test_a_metrics_port_exposed_or_unscraped_is_caught(mutate: Callable[[list[Object]], None]) -> None:
    docs = base_objects()
    mutate(docs)
    assert scrape_findings(docs)


# -- the overlays -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("directory", OVERLAYS, ids=[rel(d) for d in OVERLAYS])
def test_the_overlay_builds_on_the_base_and_changes_image_and_policy_but_never_the_replicas(directory: Path) -> None:
    spec = kustomization(directory)
    assert "../../base" in spec["resources"]
    (container,) = one(BASE, "Deployment")["spec"]["template"]["spec"]["containers"]
    (image,) = spec["images"]
    assert image["name"] == container["image"] and image["newName"] != container["image"] and image["newTag"]
    assert "replicas" not in spec, "the HPA owns the count: `replicas:` is reset by every apply or sync"
    (generator,) = spec["configMapGenerator"]
    assert generator["behavior"] == "replace"
    assert generator["name"] == kustomization(BASE)["configMapGenerator"][0]["name"]
    assert generator_files(directory)["policy.yaml"].read_text() != generator_files(BASE)["policy.yaml"].read_text()


def test_the_irsa_overlay_sets_its_role_and_the_hpas_bounds() -> None:
    role = one(OVERLAY, "ServiceAccount")["metadata"]["annotations"][IRSA]
    assert ROLE_ARN.fullmatch(role) and role != one(BASE, "ServiceAccount")["metadata"]["annotations"][IRSA]
    hpa = load(OVERLAY / "hpa.yaml")["spec"]
    assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"]


@pytest.mark.parametrize("directory", OVERLAYS, ids=[rel(d) for d in OVERLAYS])
def test_the_overlay_namespace_enforces_the_restricted_pod_security_standard(directory: Path) -> None:
    namespace = one(directory, "Namespace")
    assert namespace["metadata"]["name"] == kustomization(directory)["namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# -- rendered (kubectl kustomize) ---------------------------------------------------------------------------

EXPECTED_KINDS = {
    BASE: {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget", "Service",
           "ServiceAccount"},
}
EXPECTED_KINDS[OVERLAY] = EXPECTED_KINDS[BASE] | {
    "Namespace", "Ingress", "ServiceMonitor", "PrometheusRule", "Role", "RoleBinding", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding"}
EXPECTED_KINDS[OVERLAYS[1]] = EXPECTED_KINDS[BASE] | {"Namespace", "Ingress", "ServiceMonitor", "PrometheusRule"}


@pytest.fixture(scope="module", params=KUSTOMIZATIONS, ids=[rel(d) for d in KUSTOMIZATIONS])
def rendered(request: pytest.FixtureRequest) -> tuple[Path, list[Object]]:
    return request.param, render(request.param)


def test_rendered_output_is_valid_secure_and_carries_the_policy(rendered: tuple[Path, list[Object]]) -> None:
    directory, docs = rendered
    for obj in docs:
        validate(obj)
    assert {o["kind"] for o in docs} == EXPECTED_KINDS[directory]
    (deployment,) = [o for o in docs if o["kind"] == "Deployment"]
    assert findings(deployment) == []
    assert scrape_findings(docs) == []
    (configmap,) = [o for o in docs if o["kind"] == "ConfigMap"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert configmap["metadata"]["name"] in {v.get("configMap", {}).get("name") for v in volumes}
    assert configmap["data"]["policy.yaml"] == generator_files(directory)["policy.yaml"].read_text(encoding="utf-8")
    parse_config(yaml.safe_load(configmap["data"]["policy.yaml"]))
    assert web_secret_findings(configmap["data"]["policy.yaml"], deployment) == []


@pytest.mark.parametrize("directory", OVERLAYS, ids=[rel(d) for d in OVERLAYS])
def test_the_rendered_overlay_has_the_overlays_image_and_namespace(directory: Path) -> None:
    docs = render(directory)
    spec = kustomization(directory)
    namespaced = [o for o in docs if o["kind"] not in CLUSTER_SCOPED]
    assert {o["metadata"]["namespace"] for o in namespaced} == {spec["namespace"]}
    (deployment,) = [o for o in docs if o["kind"] == "Deployment"]
    (image,) = spec["images"]
    assert main_container(deployment)["image"] == f"{image['newName']}:{image['newTag']}"


def test_the_rendered_irsa_overlay_has_its_role() -> None:
    (account,) = [o for o in render(OVERLAY) if o["kind"] == "ServiceAccount"]
    assert account["metadata"]["annotations"][IRSA] == one(OVERLAY, "ServiceAccount")["metadata"]["annotations"][IRSA]


# -- the web page's secrets: from one Secret, mounted as files where the policy's `web:` reads them ----------


def secret_files(deployment: Object) -> dict[PurePosixPath, Object]:
    """Each file a Secret volume puts into the container (path → the volume); only listed ``items`` count."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"] if "secret" in v}
    return {
        PurePosixPath(mount["mountPath"]) / item["path"]: volumes[mount["name"]]
        for mount in container.get("volumeMounts", []) if mount["name"] in volumes
        for item in volumes[mount["name"]]["secret"].get("items", [])
    }


def web_secret_findings(policy: str, deployment: Object) -> list[str]:
    """Why the secrets the policy's ``web:`` names would not reach the service as the Deployment runs it."""
    web = parse_config(yaml.safe_load(policy)).web
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounted = secret_files(deployment)
    found = []
    for key, source in (("web.session_secret", web.session_secret), ("web.client_secret", web.client_secret)):
        if source is None:
            continue
        if source.env is not None:
            variable = next((e for e in container.get("env", []) if e["name"] == source.env), None)
            if variable is None or "secretKeyRef" not in variable.get("valueFrom", {}):
                found.append(f"{key}: the variable {source.env} is not set from a Secret")
            continue
        path = PurePosixPath(str(source.file))
        volume = mounted.get(path)
        if volume is None:
            found.append(f"{key}: no Secret volume puts a file at {path}")
            continue
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        if mount.get("readOnly") is not True or "subPath" in mount:
            found.append(f"{key}: the mount of {volume['name']} is writable or a subPath")
        if volume["secret"].get("defaultMode", 0o644) & 0o007:
            found.append(f"{key}: {path} is readable by every user of the pod")
    return found


def test_the_overlay_policy_signs_in_on_the_web_page() -> None:
    web = parse_config(yaml.safe_load(generator_files(OVERLAY)["policy.yaml"].read_text(encoding="utf-8"))).web
    assert web.issuer is not None and web.session_secret is not None and web.session_secret.file is not None
    assert web.client_secret is not None


@pytest.mark.parametrize("path", POLICIES, ids=[rel(p) for p in POLICIES])
def test_the_web_secrets_are_mounted_where_the_policy_reads_them(path: Path) -> None:
    assert web_secret_findings(path.read_text(encoding="utf-8"), one(BASE, "Deployment")) == []


def test_the_secret_volume_is_optional_for_a_policy_without_sign_in() -> None:
    """The base policy has no `web:` sign-in: its pods must start without the Secret."""
    policy = parse_config(yaml.safe_load(generator_files(BASE)["policy.yaml"].read_text(encoding="utf-8")))
    assert policy.web.issuer is None
    volumes = list(secret_files(one(BASE, "Deployment")).values())
    assert volumes and all(v["secret"].get("optional") is True for v in volumes)


def test_no_secret_value_is_in_the_manifests() -> None:
    """The Secret is created with kubectl (deployment.yaml says how), never committed."""
    assert all(o["kind"] != "Secret" for path in MANIFESTS for o in objects(path))
    assert all(o["kind"] != "Secret" for d in KUSTOMIZATIONS for o in render(d))
    assert all("secretGenerator" not in kustomization(d) for d in KUSTOMIZATIONS)


OVERLAY_WEB = generator_files(OVERLAY)["policy.yaml"]


def _policy_reads(file: str) -> Callable[[str, Object], str]:
    def edit(policy: str, deployment: Object) -> str:
        return policy.replace("/var/run/secrets/ccweb/session-secret", file)
    return edit


def _policy_env(policy: str, deployment: Object) -> str:
    return policy.replace("{file: /var/run/secrets/ccweb/session-secret}", "{env: CCWEB_SESSION_SECRET}")


def _env_literal(policy: str, deployment: Object) -> str:
    _container([deployment])["env"].append({"name": "CCWEB_SESSION_SECRET", "value": "x" * 48})
    return _policy_env(policy, deployment)


def _unmount(policy: str, deployment: Object) -> str:
    container = _container([deployment])
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "web-secrets"]
    return policy


def _world_readable(policy: str, deployment: Object) -> str:
    for volume in deployment["spec"]["template"]["spec"]["volumes"]:
        if "secret" in volume:
            volume["secret"]["defaultMode"] = 0o444
    return policy


def _writable(policy: str, deployment: Object) -> str:
    for mount in _container([deployment])["volumeMounts"]:
        if mount["name"] == "web-secrets":
            mount["readOnly"] = False
    return policy


WEB_SECRET_MUTATIONS = {
    "policy-reads-another-file": _policy_reads("/etc/ccweb/session-secret"),
    "policy-reads-an-unlisted-key": _policy_reads("/var/run/secrets/ccweb/other-secret"),
    "policy-reads-an-unset-variable": _policy_env,
    "variable-set-in-the-manifest": _env_literal,
    "secret-not-mounted": _unmount,
    "secret-world-readable": _world_readable,
    "secret-mount-writable": _writable,
}


@pytest.mark.parametrize("mutate", WEB_SECRET_MUTATIONS.values(), ids=WEB_SECRET_MUTATIONS.keys())
def test_a_web_secret_the_service_would_not_find_is_caught(mutate: Callable[[str, Object], str]) -> None:
    policy, deployment = OVERLAY_WEB.read_text(encoding="utf-8"), copy.deepcopy(one(BASE, "Deployment"))
    assert web_secret_findings(policy, deployment) == []
    assert web_secret_findings(mutate(policy, deployment), deployment)


def test_a_variable_from_a_secret_is_accepted() -> None:
    deployment = copy.deepcopy(one(BASE, "Deployment"))
    _container([deployment])["env"].append({"name": "CCWEB_SESSION_SECRET", "valueFrom": {
        "secretKeyRef": {"name": "ccweb-web", "key": "session-secret"}}})
    assert web_secret_findings(_policy_env(OVERLAY_WEB.read_text(encoding="utf-8"), deployment), deployment) == []
