"""The monitoring component: the PodMonitor scrapes the pods' metrics port, and every alert of the PrometheusRule
parses (promql_parser) and asks only for series and labels the running service exports, with label values it
writes or documents."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.metrics import Metrics
from ccweb.sandbox.issuer import DevIssuer
from deploy.k8s import COMPONENTS, OVERLAYS, ROOT, Object, load, main_container, rel, render, the
from support import RecordingSTS, serve, serve_issuer

RULE_FILE = COMPONENTS / "monitoring" / "prometheusrule.yaml"
README = ROOT / "README.md"
ROLE = "arn:aws:iam::111122223333:role/ccweb/developers"
BODY = {"protocol": "https", "host": "git-codecommit.us-east-1.amazonaws.com", "path": "v1/repos/demo"}
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "endpoint"}
"""What Prometheus adds to every scraped series (a PodMonitor's target labels)."""
KUBE_STATE_METRICS = {  # the series of kube-state-metrics the pod alerts read, and their labels
    "kube_pod_container_status_waiting_reason": {"namespace", "pod", "container", "reason"},
    "kube_deployment_status_replicas_unavailable": {"namespace", "deployment"},
}
WANTED_ALERTS = {"CcwebCredentialErrors", "CcwebStsFailing", "CcwebIssuerKeysStale", "CcwebPolicyReloadRefused",
                 "CcwebRateLimited", "CcwebPodsCrashLooping", "CcwebPodsUnavailable"}


def alerts(rule: Object) -> list[Object]:
    return [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]


# -- structure (custom resources: no schema to validate against) --------------------------------------------


@pytest.mark.parametrize("directory", OVERLAYS, ids=[rel(d) for d in OVERLAYS])
def test_the_pod_monitor_scrapes_the_metrics_port_of_the_ccweb_pods(directory: Path) -> None:
    docs = render(directory)
    monitor, deployment = the(docs, "PodMonitor"), the(docs, "Deployment")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    container = main_container(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = container["args"]
    assert endpoint["port"] == "metrics" and ports["metrics"] == int(args[args.index("--metrics-port") + 1])
    assert endpoint.get("path", "/metrics") == "/metrics"
    rule = the(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert {a["alert"] for a in alerts(rule)} == WANTED_ALERTS
    assert all(set(r) <= {"alert", "expr", "for", "labels", "annotations"} for r in alerts(rule))


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
